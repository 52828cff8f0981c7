"""Recovery without webhooks: resync an account from Stripe, and fetch the events the inbox
missed."""

import json
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select

from db.models import StripeEvent
from services.stripe.client import StripeApi
from services.webhooks import inbox, sync
from tests.webhooks import lifecycles
from tests.webhooks.lifecycles import mirror_state, stripe_state


@pytest.fixture
async def api(settings, billing) -> AsyncIterator[StripeApi]:
    async with StripeApi(settings, billing.sandbox.url) as api:
        yield api


@pytest.mark.parametrize("life", [lifecycles.three_d_secure_life, lifecycles.recovery_life])
async def test_resync_account_mirrors_stripe_without_any_event(db, billing, api, life):
    recorded = await lifecycles.record(db, api, billing, life)

    async with db.session() as session, session.begin():
        assert await sync.resync_account(
            session=session, stripe=api, account_id=recorded.customer.account_id
        )

    mirrored = await mirror_state(db, recorded.customer.account_id)
    assert mirrored == await stripe_state(billing, recorded.customer.stripe_id)


async def test_resync_accounts_skips_accounts_without_a_customer(db, billing, api):
    recorded = await lifecycles.record(db, api, billing, lifecycles.three_d_secure_life)
    await lifecycles.clear_mirror(db)
    async with db.session() as session, session.begin():
        session.add(lifecycles.Account(user_id="no-customer-yet"))

    assert await sync.resync_accounts(database=db, stripe=api) == 1

    mirrored = await mirror_state(db, recorded.customer.account_id)
    assert mirrored == await stripe_state(billing, recorded.customer.stripe_id)


async def test_ingest_missing_events_adds_only_what_the_inbox_lacks(db, billing, api):
    recorded = await lifecycles.record(db, api, billing, lifecycles.happy_life)
    everything = await billing.stripe.v1.events.list_async({"limit": 100})
    assert not everything.has_more
    delivered = recorded.events[:5]
    for event in delivered:
        await inbox.store_event(database=db, event=event, payload=json.dumps(event))

    added = await sync.ingest_missing_events(database=db, stripe=api, since=None)
    again = await sync.ingest_missing_events(database=db, stripe=api)

    async with db.session() as session:
        stored = await session.scalar(select(func.count()).select_from(StripeEvent))
        pending = await session.scalar(
            select(func.count()).select_from(StripeEvent).where(StripeEvent.status == "pending")
        )
    # Listed from the newest stored event's second on; older ones were delivered already.
    newest = max(event["created"] for event in delivered)
    missing = {e.id for e in everything.data if e.created >= newest} - {e["id"] for e in delivered}
    assert added == len(missing) and again == 0
    assert stored == len(delivered) + len(missing) == pending
