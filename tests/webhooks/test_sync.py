"""Recovery without webhooks: resync an account from Stripe (the inbox's catch-up is
tests/webhooks/test_reconcile.py)."""

from collections.abc import AsyncIterator

import pytest
from services.stripe.client import StripeApi
from services.webhooks import sync
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
