"""POST /webhooks/stripe: only signed, recent, well-formed events are stored, each once."""

import asyncio
import json
import time

import httpx
import pytest
from pydantic import SecretStr

from db.database import Database
from db.migrate import upgrade
from db.models import WebhookEventStatus
from gateway.app import create_app
from gateway.settings import ConfigurationError, Settings
from gateway.webhooks import MAX_BODY_BYTES
from sandbox.delivery import signature_header
from services.webhooks import inbox
from tests.conftest import create_scratch_database, drop_database
from tests.webhooks.support import make_event, post_event, stored_event, stored_events

OLD_SECRET = "whsec_old_secret_being_rotated_out"
NEW_SECRET = "whsec_new_secret_being_rotated_in"


def client_for(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test")


def rotating_settings(settings: Settings) -> Settings:
    secrets = [SecretStr(OLD_SECRET), SecretStr(NEW_SECRET)]
    return settings.model_copy(update={"stripe_webhook_secrets": secrets})


async def test_a_signed_event_is_stored_pending_and_acknowledged(client, db):
    event = make_event("invoice.paid", object_id="in_123")

    response = await post_event(client, event)

    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False}
    row = await stored_event(db, event["id"])
    assert row.status is WebhookEventStatus.PENDING and row.attempts == 0
    assert row.type == "invoice.paid" and row.object_id == "in_123"
    assert row.api_version == "2025-01-01" and row.livemode is False
    assert int(row.stripe_created_at.timestamp()) == event["created"]
    # Stored sealed: the event as received inside, only its ids and type in the clear.
    assert inbox.event_of(row.payload) == event
    assert row.payload["data"] == {"object": {"id": "in_123", "object": "thing"}}
    assert "sealed" in row.payload and json.dumps(event) not in json.dumps(row.payload)


async def test_only_post_is_allowed_on_the_webhook_route(client, db):
    response = await client.get("/webhooks/stripe")
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert await stored_events(db) == []


async def test_a_wrong_secret_is_refused_and_nothing_stored(client, db):
    response = await post_event(client, make_event(), secret="whsec_someone_else")
    assert response.status_code == 400
    assert await stored_events(db) == []


async def test_both_secrets_are_accepted_during_a_rotation(settings, db):
    async with client_for(create_app(rotating_settings(settings), database=db)) as client:
        for secret in (NEW_SECRET, OLD_SECRET):
            assert (await post_event(client, make_event(), secret=secret)).status_code == 200
        refused = await post_event(client, make_event(), secret="whsec_unknown")
    assert refused.status_code == 400
    assert len(await stored_events(db)) == 2


async def test_a_stale_timestamp_is_refused(client, db, settings):
    stale = int(time.time()) - settings.webhook_tolerance_seconds - 5
    response = await post_event(client, make_event(), timestamp=stale)
    assert response.status_code == 400
    assert await stored_events(db) == []


async def test_a_tampered_body_is_refused(client, db):
    event = make_event()
    signature = signature_header(json.dumps(event), "whsec_billing_gateway_sandbox")
    tampered = json.dumps(event | {"type": "invoice.paid"})
    response = await post_event(client, tampered, signature=signature)
    assert response.status_code == 400
    assert await stored_events(db) == []


async def test_a_missing_signature_is_refused(client, db):
    response = await client.post("/webhooks/stripe", content=json.dumps(make_event()))
    assert response.status_code == 400
    assert await stored_events(db) == []


async def test_one_valid_signature_among_several_is_enough(client, db):
    body = json.dumps(make_event())
    valid = signature_header(body, "whsec_billing_gateway_sandbox")
    timestamp, good = valid.split(",")
    header = f"{timestamp},v1={'0' * 64},{good},v1=deadbeef,v0=ignored"
    response = await post_event(client, body, signature=header)
    assert response.status_code == 200
    assert len(await stored_events(db)) == 1


async def test_only_invalid_signatures_are_refused(client, db):
    body = json.dumps(make_event())
    header = f"t={int(time.time())},v1={'0' * 64},v1={'f' * 64}"
    assert (await post_event(client, body, signature=header)).status_code == 400
    assert await stored_events(db) == []


async def test_a_body_over_one_mebibyte_is_refused(client, db):
    event = make_event()
    event["data"]["object"]["padding"] = "x" * MAX_BODY_BYTES
    response = await post_event(client, event)
    assert response.status_code == 413
    assert await stored_events(db) == []


async def test_a_large_body_without_content_length_is_refused_while_reading(client, db):
    async def chunks():
        for _ in range(5):
            yield b"x" * (MAX_BODY_BYTES // 4)

    response = await client.post(
        "/webhooks/stripe", content=chunks(), headers={"Stripe-Signature": "t=1,v1=0"}
    )
    assert response.status_code == 413
    assert await stored_events(db) == []


async def test_malformed_bodies_are_refused_even_when_signed(client, db):
    good = make_event()
    bodies = [
        "not json",
        json.dumps([good]),
        json.dumps(good | {"id": "in_123"}),
        json.dumps(good | {"id": 7}),
        json.dumps(good | {"type": None}),
        json.dumps(good | {"created": "yesterday"}),
        json.dumps(good | {"created": True}),
        json.dumps(good | {"data": {"object": "in_123"}}),
        json.dumps({key: value for key, value in good.items() if key != "data"}),
    ]
    for body in bodies:
        response = await post_event(client, body)
        assert response.status_code == 400, body
    assert await stored_events(db) == []


async def test_a_duplicate_delivery_is_acknowledged_and_stored_once(client, db):
    event = make_event()
    first = await post_event(client, event)
    again = await post_event(client, event)
    assert first.json() == {"received": True, "duplicate": False}
    assert again.status_code == 200 and again.json() == {"received": True, "duplicate": True}
    assert len(await stored_events(db)) == 1


async def test_concurrent_duplicates_store_one_row(client, db):
    event = make_event()
    responses = await asyncio.gather(*(post_event(client, event) for _ in range(10)))
    assert all(response.status_code == 200 for response in responses)
    assert sum(not response.json()["duplicate"] for response in responses) == 1
    assert len(await stored_events(db)) == 1


async def test_an_unreachable_database_answers_503_so_stripe_retries(settings):
    url = await create_scratch_database("billing_webhook_503")
    database = Database(url, pool_size=2)
    try:
        await upgrade(database.engine)
        async with client_for(create_app(settings, database=database)) as client:
            await drop_database(url)
            response = await post_event(client, make_event())
    finally:
        await database.dispose()
        await drop_database(url)
    assert response.status_code == 503


def test_webhook_settings_come_from_the_environment_and_are_checked(monkeypatch):
    monkeypatch.setenv("WEBHOOK_TOLERANCE_SECONDS", "60")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRETS", f"{OLD_SECRET}, {NEW_SECRET}")
    configured = Settings(billing_env="test")
    assert configured.webhook_tolerance_seconds == 60
    assert configured.webhook_secrets == [OLD_SECRET, NEW_SECRET]
    with pytest.raises(ConfigurationError, match="WEBHOOK_MAX_ATTEMPTS"):
        Settings(billing_env="test", webhook_max_attempts=0)
