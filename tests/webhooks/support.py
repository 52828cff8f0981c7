"""Helpers for the webhook inbox tests: events signed as Stripe signs them, counting
handlers, and workers that are always stopped."""

import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from db.database import Database
from db.models import StripeEvent
from gateway.settings import SANDBOX_WEBHOOK_SECRET, Settings
from sandbox.delivery import signature_header
from services.stripe.client import StripeApi
from services.webhooks import dispatch
from services.webhooks.inbox import RetryPolicy
from services.webhooks.worker import WebhookWorker

# A policy whose retries are far enough away that a test sees them scheduled, not run.
TEST_POLICY = RetryPolicy(max_attempts=3, base_seconds=60, max_seconds=600)


def make_event(
    event_type: str = "test.thing_happened",
    *,
    event_id: str | None = None,
    object_id: str = "obj_123",
    created: int | None = None,
) -> dict[str, Any]:
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "type": event_type,
        "api_version": "2025-01-01",
        "created": created if created is not None else int(time.time()),
        "livemode": False,
        "data": {"object": {"id": object_id, "object": "thing"}},
    }


async def post_event(
    client: httpx.AsyncClient,
    event: dict[str, Any] | str,
    *,
    secret: str = SANDBOX_WEBHOOK_SECRET,
    timestamp: int | None = None,
    signature: str | None = None,
) -> httpx.Response:
    """POST a body signed exactly as Stripe signs it (or with the given header)."""
    body = event if isinstance(event, str) else json.dumps(event)
    header = signature if signature is not None else signature_header(body, secret, timestamp)
    return await client.post(
        "/webhooks/stripe",
        content=body.encode(),
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    )


async def stored_events(db: Database) -> list[StripeEvent]:
    async with db.session() as session:
        return list((await session.scalars(select(StripeEvent).order_by(StripeEvent.id))).all())


async def stored_event(db: Database, stripe_event_id: str) -> StripeEvent:
    async with db.session() as session:
        query = select(StripeEvent).where(StripeEvent.stripe_event_id == stripe_event_id)
        return (await session.scalars(query)).one()


async def make_due_now(db: Database) -> None:
    """Skip the backoff wait instead of sleeping through it."""
    async with db.session() as session, session.begin():
        await session.execute(update(StripeEvent).values(next_attempt_at=StripeEvent.received_at))


@contextlib.contextmanager
def handler_for(
    event_type: str, handler: dispatch.Handler, *, coalesce: bool = False
) -> Iterator[None]:
    """Register a made-up event type's handler for one test only."""
    dispatch.handles(event_type, coalesce=coalesce)(handler)
    try:
        yield
    finally:
        dispatch.HANDLERS.pop(event_type, None)
        dispatch.COALESCING.discard(handler)


class Calls:
    """A handler that records each call and fails while `failures` remain."""

    def __init__(self, failures: int = 0, delay: float = 0.0) -> None:
        self.event_ids: list[str] = []
        self.coalesced: list[bool] = []
        self.failures = failures
        self.delay = delay

    async def __call__(self, session: Any, stripe: Any, event: dict[str, Any]) -> None:
        import asyncio

        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("the mirror is not ready yet")
        self.event_ids.append(event["id"])
        self.coalesced.append(isinstance(event, dispatch.Coalesced))


@pytest.fixture
async def workers(db: Database, settings: Settings) -> AsyncIterator[Any]:
    """`workers(n, poll_seconds=…)` starts n workers on the test database; all stop afterwards."""
    started: list[WebhookWorker] = []
    stripe = StripeApi(settings, settings.stripe_api_base)

    def start(count: int = 1, *, poll_seconds: float = 0.2, listen: bool = True) -> list[Any]:
        for _ in range(count):
            worker = WebhookWorker(
                database=db,
                stripe=stripe,
                policy=TEST_POLICY,
                poll_seconds=poll_seconds,
                listen=listen,
            )
            started.append(worker.start())
        return started[-count:]

    yield start
    for worker in started:
        await worker.stop()
    await stripe.close()


def worker_on(db: Database, settings: Settings, concurrency: int = 4) -> WebhookWorker:
    """A worker not started: tests call `drain()` themselves, step by step."""
    stripe = StripeApi(settings, settings.stripe_api_base)
    return WebhookWorker(database=db, stripe=stripe, policy=TEST_POLICY, concurrency=concurrency)
