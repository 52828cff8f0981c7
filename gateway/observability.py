"""The request id (X-Request-Id, in every log line) and Prometheus /metrics."""

import hmac
import logging
import re
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.core import CollectorRegistry, GaugeMetricFamily
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.settings import Settings
from services.observability import (
    REQUEST_ID,
    InboxCount,
    OutboxCount,
    current_request_id,
    outbox_counts,
    reconciliation_mark,
    webhook_inbox_counts,
)

log = logging.getLogger("billing_gateway.http")

# A caller's own id is kept (it ties their logs to ours) when it cannot smuggle anything.
CALLER_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")


class RequestIdMiddleware:
    """Gives each HTTP request an id (the caller's X-Request-Id when well formed), visible to
    everything that serves it and returned in the X-Request-Id response header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _caller_request_id(scope) or current_request_id()
        token = REQUEST_ID.set(request_id)
        header = (b"x-request-id", request_id.encode())
        started, status = time.perf_counter(), 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if log.isEnabledFor(logging.INFO):
                took = (time.perf_counter() - started) * 1000
                log.info("%s %s %d %.1f ms", scope["method"], scope["path"], status, took)
            REQUEST_ID.reset(token)


def _caller_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if CALLER_REQUEST_ID.fullmatch(text) else None
    return None


def metrics_router(settings: Settings) -> APIRouter:
    """/metrics: the process's counters, and the webhook inbox as the database has it now;
    with METRICS_TOKEN set, only to a scraper that sends it as its bearer token."""
    router = APIRouter()
    expected = settings.metrics_token.get_secret_value() if settings.metrics_token else None

    @router.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if expected is not None and not _bears(request, expected):
            return Response(
                "a bearer token (METRICS_TOKEN) is required\n",
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        started = time.perf_counter()
        async with request.app.state.database.read_session() as session:
            counts = await webhook_inbox_counts(session=session)
            reconciled = await reconciliation_mark(session=session)
            outbox = await outbox_counts(session=session)
        inbox = CollectorRegistry(auto_describe=False)
        inbox.register(
            InboxCollector(counts, reconciled, datetime.now(UTC), time.perf_counter() - started)
        )
        inbox.register(OutboxCollector(outbox))
        body = generate_latest(REGISTRY) + generate_latest(inbox)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return router


def _bears(request: Request, expected: str) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip(), expected)


class InboxCollector:
    """The webhook inbox (stripe_events) as counted at scrape time: events by type and status
    (received = all of a type; processed, skipped, failed, pending) and the inbox lag by type
    (age of the oldest pending event), and how far reconciliation has read Stripe's events."""

    def __init__(
        self,
        counts: list[InboxCount],
        reconciled: datetime | None,
        now: datetime,
        query_seconds: float,
    ) -> None:
        self.counts = counts
        self.reconciled = reconciled
        self.now = now
        self.query_seconds = query_seconds

    def collect(self) -> Any:
        events = GaugeMetricFamily(
            "billing_webhook_events",
            "Webhook events stored in the inbox, by type and status",
            labels=["type", "status"],
        )
        lag = GaugeMetricFamily(
            "billing_webhook_inbox_lag_seconds",
            "Age of the oldest pending webhook event, by type (0 when none is pending)",
            labels=["type"],
        )
        oldest: dict[str, datetime | None] = {}
        for row in self.counts:
            events.add_metric([row.type, row.status.value], row.events)
            known = oldest.get(row.type)
            if row.oldest_pending_at is not None and (
                known is None or row.oldest_pending_at < known
            ):
                oldest[row.type] = row.oldest_pending_at
            else:
                oldest.setdefault(row.type, None)
        for event_type, pending_since in oldest.items():
            age = (self.now - pending_since).total_seconds() if pending_since else 0.0
            lag.add_metric([event_type], max(age, 0.0))
        scrape = GaugeMetricFamily(
            "billing_webhook_inbox_scrape_seconds", "Time taken to count the inbox for this scrape"
        )
        scrape.add_metric([], self.query_seconds)
        reconcile_lag = GaugeMetricFamily(
            "billing_reconcile_lag_seconds",
            "Age of reconciliation's mark: events created since then are not yet known to be in "
            "the inbox unless delivered (absent before the first pass)",
        )
        if self.reconciled is not None:
            reconcile_lag.add_metric([], max((self.now - self.reconciled).total_seconds(), 0.0))
        yield from (events, lag, scrape, reconcile_lag)


class OutboxCollector:
    """The outbox as counted at scrape time: mails by kind and status, deliveries to the
    product's endpoints by endpoint and status (their pending counts are its depth)."""

    def __init__(self, counts: list[OutboxCount]) -> None:
        self.counts = counts

    def collect(self) -> Any:
        mails = GaugeMetricFamily(
            "billing_outbox_mails",
            "Mails in the outbox, by kind and status",
            labels=["kind", "status"],
        )
        deliveries = GaugeMetricFamily(
            "billing_outbox_webhook_deliveries",
            "Deliveries to the product's endpoints, by endpoint id and status",
            labels=["endpoint", "status"],
        )
        for row in self.counts:
            family = mails if row.outbox == "mail" else deliveries
            family.add_metric([row.key, row.status], row.count)
        yield from (mails, deliveries)
