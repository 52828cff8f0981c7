"""Request ids in headers, errors and JSON logs; Prometheus /metrics."""

import io
import json
import logging
from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from db.database import Database
from db.migrate import upgrade
from db.models import StripeEvent, WebhookEventStatus
from gateway.app import create_app
from gateway.logs import JsonFormatter
from tests import factories
from tests.conftest import Billing, create_scratch_database, drop_database
from tests.test_readiness import client_for


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics answer: (name, sorted labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def json_lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class JsonCapture:
    """The given logger's records, formatted by JsonFormatter as they are emitted."""

    def __init__(self, name: str) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(JsonFormatter())
        self.logger = logging.getLogger(name)

    def __enter__(self) -> "JsonCapture":
        self.logger.addHandler(self.handler)
        self.previous_level = self.logger.level
        self.logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.previous_level)

    def lines(self) -> list[dict]:
        return json_lines(self.stream)


async def test_every_response_carries_a_request_id_and_a_callers_own_is_kept(client, db):
    first = await client.get("/healthz")
    second = await client.get("/healthz")
    assert len(first.headers["x-request-id"]) == 32
    assert first.headers["x-request-id"] != second.headers["x-request-id"]

    kept = await client.get("/healthz", headers={"X-Request-Id": "trace-0123456789"})
    assert kept.headers["x-request-id"] == "trace-0123456789"
    # Anything that could forge a log line is replaced
    forged = await client.get("/healthz", headers={"X-Request-Id": 'x\\n{"level": "ERROR"}'})
    assert forged.headers["x-request-id"] != 'x\\n{"level": "ERROR"}'


async def test_a_masked_error_names_the_request_id_of_the_header_and_the_json_log(settings):
    url = await create_scratch_database("billing_observed")
    database = Database(url, pool_size=2)
    try:
        await upgrade(database.engine)
        with JsonCapture("billing_gateway") as logs:
            async with client_for(create_app(settings, database=database)) as client:
                await drop_database(url)
                response = await client.post("/graphql", json={"query": "{ plans { id } }"})
    finally:
        await database.dispose()
        await drop_database(url)

    request_id = response.headers["x-request-id"]
    error = response.json()["errors"][0]
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id}
    lines = [line for line in logs.lines() if line["request_id"] == request_id]
    failure = next(line for line in lines if line["level"] == "ERROR")
    assert request_id in failure["message"] and "Traceback" in failure["exception"]
    access = next(line for line in lines if line["logger"] == "billing_gateway.http")
    assert access["message"].startswith("POST /graphql 200")


async def test_metrics_count_operations_errors_and_stripe_calls(client, billing: Billing):
    # `billing` synced the plans from the sandbox: prices.list was called through StripeApi
    await client.post("/graphql", json={"query": "query Catalog { plans { id } }"})
    await client.post("/graphql", json={"query": "query Mine { viewer { userId } }"})
    await client.post("/graphql", json={"query": "query Broken { nothing }"})

    response = await client.get("/metrics")

    assert response.status_code == 200
    found = samples(response.text)
    ops = "billing_graphql_operations_total"
    assert found[(ops, (("operation", "Catalog"), ("type", "query")))] >= 1
    errors = "billing_graphql_errors_total"
    assert found[(errors, (("code", "UNAUTHENTICATED"), ("operation", "Mine")))] >= 1
    assert found[(errors, (("code", "GRAPHQL_VALIDATION_FAILED"), ("operation", "Broken")))] >= 1
    latency = "billing_graphql_operation_duration_seconds_count"
    assert found[(latency, (("operation", "Catalog"),))] >= 1
    stripe_calls = "billing_stripe_calls_total"
    assert found[(stripe_calls, (("operation", "prices.list"), ("outcome", "ok")))] >= 1
    stripe_latency = "billing_stripe_call_duration_seconds_count"
    assert found[(stripe_latency, (("operation", "prices.list"),))] >= 1
    assert ("billing_websocket_connections", ()) in found


async def test_metrics_report_the_webhook_inbox_by_type_and_status(client, db: Database):
    # Given 2 processed and 1 failed invoice events, and a subscription event pending
    # for 10 minutes
    now = datetime.now(UTC)
    rows = [
        ("invoice.paid", WebhookEventStatus.PROCESSED, now),
        ("invoice.paid", WebhookEventStatus.PROCESSED, now),
        ("invoice.paid", WebhookEventStatus.FAILED, now),
        ("customer.subscription.updated", WebhookEventStatus.PENDING, now - timedelta(minutes=10)),
    ]
    for n, (event_type, status, received) in enumerate(rows):
        event = StripeEvent(
            stripe_event_id=f"evt_metrics_{n}",
            type=event_type,
            stripe_created_at=received,
            payload={},
            status=status,
            received_at=received,
        )
        await factories.add(db, event)

    found = samples((await client.get("/metrics")).text)

    events = "billing_webhook_events"
    assert found[(events, (("status", "processed"), ("type", "invoice.paid")))] == 2
    assert found[(events, (("status", "failed"), ("type", "invoice.paid")))] == 1
    pending = (("status", "pending"), ("type", "customer.subscription.updated"))
    assert found[(events, pending)] == 1
    lag = "billing_webhook_inbox_lag_seconds"
    assert found[(lag, (("type", "invoice.paid"),))] == 0
    assert 600 <= found[(lag, (("type", "customer.subscription.updated"),))] < 900
