"""Reconciliation: the events Stripe has and the inbox lacks are stored and applied, by the
worker on its own, once per pass across processes, and resumed from the stored mark."""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select, update

from db.models import (
    EVENTS_MARK,
    ReconciliationMark,
    StripeEvent,
    Subscription,
    SubscriptionStatus,
    WebhookEventStatus,
)
from services.errors import DomainError, ErrorCode
from services.stripe.client import StripeApi
from services.webhooks import inbox, sync
from services.webhooks.reconcile import (
    OVERDUE_AFTER,
    RECONCILE_LOCK,
    SAFETY_MARGIN,
    listing_start,
    reconcile_events,
    reread_overdue,
)
from services.webhooks.worker import WebhookWorker
from tests.webhooks import lifecycles
from tests.webhooks.lifecycles import mirror_state, stripe_state
from tests.webhooks.support import TEST_POLICY, make_event

PATIENCE_SECONDS = 30.0


@pytest.fixture
async def api(settings, billing) -> AsyncIterator[StripeApi]:
    async with StripeApi(settings, billing.sandbox.url) as api:
        yield api


async def stored_events(db) -> dict[str, WebhookEventStatus]:
    async with db.session() as session:
        rows = await session.execute(select(StripeEvent.stripe_event_id, StripeEvent.status))
    return {event_id: status for event_id, status in rows}


async def mark(db) -> datetime | None:
    async with db.session() as session:
        return await session.scalar(
            select(ReconciliationMark.listed_through).where(ReconciliationMark.name == EVENTS_MARK)
        )


async def stripe_event_ids(billing) -> set[str]:
    """Every event the sandbox lists (the catalog's as well as the customer's)."""
    listed = await billing.stripe.v1.events.list_async({"limit": 100})
    assert not listed.has_more
    return {event.id for event in listed.data}


async def deliver(db, events) -> None:
    for event in events:
        await inbox.store_event(database=db, event=event, payload=json.dumps(event))


async def test_a_pass_stores_only_what_the_inbox_lacks_and_sets_the_mark(db, billing, api):
    recorded = await lifecycles.record(db, api, billing, lifecycles.happy_life)
    await deliver(db, recorded.events[:3])
    everything = await stripe_event_ids(billing)
    before = datetime.now(UTC)

    first = await reconcile_events(database=db, stripe=api)
    again = await reconcile_events(database=db, stripe=api)

    assert first is not None and again is not None
    assert first.added == len(everything) - 3 and again.added == 0
    assert set(await stored_events(db)) == everything
    listed_through = await mark(db)
    assert listed_through is not None and listed_through >= before


async def test_a_pass_lists_from_the_mark_less_the_margin(db):
    now = datetime.now(UTC)
    # Before any pass and any event: from now (a new install does not replay history).
    assert await listing_start(db, now) == now - SAFETY_MARGIN
    oldest = (now - timedelta(hours=2)).replace(microsecond=0)  # Stripe's whole seconds
    await deliver(db, [make_event("customer.updated", created=int(oldest.timestamp()))])
    assert await listing_start(db, now) == oldest - SAFETY_MARGIN  # before any pass
    mark_time = now - timedelta(minutes=30)
    async with db.session() as session, session.begin():
        session.add(ReconciliationMark(name=EVENTS_MARK, listed_through=mark_time))
    assert await listing_start(db, now) == mark_time - SAFETY_MARGIN
    # A mark ahead of this clock (another host's) never skips what this one has not listed.
    async with db.session() as session, session.begin():
        await session.execute(
            update(ReconciliationMark).values(listed_through=now + timedelta(hours=1))
        )
    assert await listing_start(db, now) == now - SAFETY_MARGIN


async def test_one_process_reconciles_at_a_time(db, billing, api):
    await lifecycles.record(db, api, billing, lifecycles.happy_life)
    everything = await stripe_event_ids(billing)
    async with db.driver_connection() as other:
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", RECONCILE_LOCK)
        try:
            assert await reconcile_events(database=db, stripe=api) is None
        finally:
            await other.execute("SELECT pg_advisory_unlock($1)", RECONCILE_LOCK)
    assert await stored_events(db) == {}

    racing = await asyncio.gather(*(reconcile_events(database=db, stripe=api) for _ in range(3)))
    done = [passed for passed in racing if passed is not None]
    assert sum(passed.added for passed in done) == len(everything)
    assert set(await stored_events(db)) == everything


async def test_a_rate_limited_pass_changes_nothing_and_the_next_catches_up(db, billing, api):
    recorded = await lifecycles.record(db, api, billing, lifecycles.happy_life)
    await deliver(db, recorded.events[:1])
    async with httpx.AsyncClient(base_url=billing.sandbox.url) as http:
        # The SDK does not retry a 429 (Stripe sends no Stripe-Should-Retry with it).
        form = {"status": "429", "count": "1", "path": "/v1/events"}
        (await http.post("/_sandbox/faults", data=form)).raise_for_status()

    with pytest.raises(DomainError) as refused:
        await reconcile_events(database=db, stripe=api)
    assert refused.value.code is ErrorCode.RATE_LIMITED
    assert await mark(db) is None and len(await stored_events(db)) == 1

    passed = await reconcile_events(database=db, stripe=api)
    assert passed is not None and passed.added == len(await stripe_event_ids(billing)) - 1


async def test_the_worker_reconciles_on_start_and_applies_what_was_never_delivered(
    db, billing, api
):
    recorded = await lifecycles.record(db, api, billing, lifecycles.three_d_secure_life)
    await deliver(db, recorded.events[:2])  # the rest was lost on the way
    everything = await stripe_event_ids(billing)
    worker = WebhookWorker(
        database=db, stripe=api, policy=TEST_POLICY, poll_seconds=0.2, reconcile_seconds=300
    ).start()
    try:
        async with asyncio.timeout(PATIENCE_SECONDS):
            while True:
                statuses = await stored_events(db)
                if set(statuses) == everything and WebhookEventStatus.PENDING not in (
                    statuses.values()
                ):
                    break
                await asyncio.sleep(0.1)
    finally:
        await worker.stop()

    mirrored = await mirror_state(db, recorded.customer.account_id)
    assert mirrored == await stripe_state(billing, recorded.customer.stripe_id)


async def test_metrics_export_the_reconciliation_lag(db, billing, api, client):
    async with db.session() as session:
        before = await session.scalar(select(func.count()).select_from(ReconciliationMark))
    assert before == 0
    assert sample(await scrape(client), "billing_reconcile_lag_seconds") is None

    await reconcile_events(database=db, stripe=api)

    scraped = await scrape(client)
    lag = sample(scraped, "billing_reconcile_lag_seconds")
    assert lag is not None and 0 <= lag < 60
    assert 'billing_reconcile_runs_total{outcome="ok"}' in scraped


async def test_an_older_reading_of_a_plan_keeps_the_newer_one(db, billing, api):
    """Reconciled events come in any order: a product event's older re-read of a plan whose
    row holds newer state changes nothing (it used to fail: plans have no owner column)."""
    price = billing.plans["pro_monthly"].stripe_price_id
    now = datetime.now(UTC)
    async with db.session() as session, session.begin():
        newer = await sync.mirror_price(session, api, price, now)
    async with db.session() as session, session.begin():
        older = await sync.mirror_price(session, api, price, now - timedelta(minutes=1))
    assert older == newer


async def scrape(client) -> str:
    return (await client.get("/metrics")).text


def sample(scraped: str, name: str) -> float | None:
    """The value of an unlabelled sample, None when the scrape has none."""
    for line in scraped.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[-1])
    return None


async def test_a_pass_rereads_subscriptions_the_mirror_shows_long_overdue(db, billing, api):
    """What no event will tell any more (Stripe lists 30 days of them): a mirror still showing
    a period that ended hours ago, with nothing heard since, is re-read from Stripe."""
    stale = await lifecycles.record(db, api, billing, lifecycles.happy_life)
    current = await lifecycles.record(db, api, billing, lifecycles.happy_life)
    await lifecycles.apply_all(db, api, stale.events + current.events)
    expected = await stripe_state(billing, stale.customer.stripe_id)
    assert await mirror_state(db, stale.customer.account_id) == expected
    now = datetime.now(UTC)
    async with db.session() as session, session.begin():
        await session.execute(
            update(Subscription)
            .where(Subscription.account_id == stale.customer.account_id)
            .values(
                status=SubscriptionStatus.PAST_DUE,
                current_period_start=now - timedelta(days=31),
                current_period_end=now - OVERDUE_AFTER - timedelta(minutes=5),
                last_event_at=now - timedelta(days=31),
            )
        )

    assert await reread_overdue(db, api, now) == 1
    assert await mirror_state(db, stale.customer.account_id) == expected
    assert await mirror_state(db, current.customer.account_id) == await stripe_state(
        billing, current.customer.stripe_id
    )
    # Stamped by the re-read: not overdue again until Stripe's next due time passes.
    assert await reread_overdue(db, api, now) == 0
