"""Convergence: whatever order Stripe delivers a lifecycle's events in, duplicated or not,
and however many workers apply them at once, the mirror ends as in-order delivery leaves it
(which is what Stripe says now)."""

import json
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select

from db.models import StripeEvent, WebhookEventStatus
from services.stripe.client import StripeApi
from services.webhooks import inbox
from services.webhooks.inbox import RetryPolicy
from services.webhooks.worker import WebhookWorker
from tests.credits.support import wallet
from tests.webhooks import lifecycles
from tests.webhooks.lifecycles import (
    Recorded,
    apply_all,
    apply_concurrently,
    clear_mirror,
    mirror_state,
    stripe_state,
)

EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
async def api(settings, billing) -> AsyncIterator[StripeApi]:
    async with StripeApi(settings, billing.sandbox.url) as api:
        yield api


async def in_order(db, billing, api, life: lifecycles.Life) -> tuple[Recorded, dict]:
    """A lifecycle's events and the mirror in-order delivery leaves (checked against Stripe)."""
    recorded = await lifecycles.record(db, api, billing, life)
    await apply_all(db, api, recorded.events)
    expected = await mirror_state(db, recorded.customer.account_id)
    assert expected == await stripe_state(billing, recorded.customer.stripe_id)
    return recorded, expected


@pytest.fixture
async def happy(db, billing, api) -> tuple[Recorded, dict]:
    return await in_order(db, billing, api, lifecycles.happy_life)


@pytest.fixture
async def recovery(db, billing, api) -> tuple[Recorded, dict]:
    return await in_order(db, billing, api, lifecycles.recovery_life)


@pytest.fixture(params=["three_d_secure_life", "renewal_life"])
async def other(request, db, billing, api) -> tuple[Recorded, dict]:
    """3-D Secure, and a test-clock renewal (events dated ahead of the wall clock)."""
    return await in_order(db, billing, api, getattr(lifecycles, request.param))


def deliveries(count: int) -> st.SearchStrategy[list[int]]:
    """Indexes of the events in any order, some of them more than once."""
    duplicates = st.lists(st.integers(0, count - 1), max_size=count // 2)
    return duplicates.flatmap(lambda extra: st.permutations(list(range(count)) + extra))


async def converges(db, api, recorded: Recorded, expected: dict, order: list[int]) -> None:
    await clear_mirror(db)
    await apply_concurrently(db, api, [recorded.events[index] for index in order])
    assert await mirror_state(db, recorded.customer.account_id) == expected


@EXAMPLES
@given(data=st.data())
async def test_any_order_with_duplicates_converges_happy(db, api, happy, data):
    recorded, expected = happy
    order = data.draw(deliveries(len(recorded.events)))
    await converges(db, api, recorded, expected, order)


@settings(EXAMPLES, max_examples=15)
@given(data=st.data())
async def test_any_order_with_duplicates_converges_recovery(db, api, recovery, data):
    recorded, expected = recovery
    order = data.draw(deliveries(len(recorded.events)))
    await converges(db, api, recorded, expected, order)


@settings(EXAMPLES, max_examples=10)
@given(data=st.data())
async def test_any_order_with_duplicates_converges_other(db, api, other, data):
    recorded, expected = other
    order = data.draw(deliveries(len(recorded.events)))
    await converges(db, api, recorded, expected, order)


async def test_newest_first_converges(db, api, happy):
    recorded, expected = happy
    await converges(db, api, recorded, expected, list(reversed(range(len(recorded.events)))))


# --- through the inbox: a worker applies an object's pending events as one ----------------


async def drain_inbox_of(
    db, api, events: list[dict], concurrency: int = 3
) -> dict[WebhookEventStatus, int]:
    """Store the events in an empty inbox (duplicates once), let `concurrency` claim loops
    drain it, and count the stored events by status."""
    async with db.session() as session, session.begin():
        await session.execute(delete(StripeEvent))
    for event in events:
        await inbox.store_event(database=db, event=event, payload=json.dumps(event, default=str))
    worker = WebhookWorker(
        database=db, stripe=api, policy=RetryPolicy(), concurrency=concurrency, listen=False
    )
    await worker.drain()
    async with db.session() as session:
        counted = await session.execute(
            select(StripeEvent.status, func.count()).group_by(StripeEvent.status)
        )
        return dict(counted.all())


@settings(EXAMPLES, max_examples=15)
@given(data=st.data())
async def test_any_order_through_the_inbox_converges(db, api, happy, data):
    recorded, expected = happy
    order = data.draw(deliveries(len(recorded.events)))
    await clear_mirror(db)

    statuses = await drain_inbox_of(db, api, [recorded.events[index] for index in order])

    assert WebhookEventStatus.PENDING not in statuses
    assert await mirror_state(db, recorded.customer.account_id) == expected
    assert sum(statuses.values()) == len(recorded.events)


async def test_an_invoices_pending_events_applied_as_one_grant_its_credits_once(db, billing, api):
    recorded = await lifecycles.record(db, api, billing, lifecycles.happy_life)
    events = recorded.events
    created = next(i for i, e in enumerate(events) if e["type"] == "invoice.created")
    invoice_id = events[created]["data"]["object"]["id"]
    of_invoice = [e for e in events if e["data"]["object"].get("id") == invoice_id]
    assert len(of_invoice) >= 3  # created, then finalized, paid and payment_succeeded

    # The draft invoice is mirrored first; its later events then wait in the inbox together
    # and one claim loop applies them as one, reading the invoice (paid) over its draft row.
    await drain_inbox_of(db, api, events[: created + 1], concurrency=1)
    statuses = await drain_inbox_of(db, api, events[created + 1 :], concurrency=1)

    assert statuses.get(WebhookEventStatus.FAILED) is None
    state = await wallet(db, recorded.customer.account_id)
    grants = [e for e in state.entries if e.idempotency_key == f"grant:{invoice_id}"]
    assert len(grants) == 1 and grants[0].amount > 0
    assert state.balance == state.ledger_sum
    assert await mirror_state(db, recorded.customer.account_id) == await stripe_state(
        billing, recorded.customer.stripe_id
    )
