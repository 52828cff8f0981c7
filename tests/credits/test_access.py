"""viewer.access across a test clock: trials end, renewals fail, grace runs out, a cancel at
the period end takes effect; each state read from the mirror the events leave."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from db.models import Subscription, SubscriptionStatus
from services import access
from services.access import AccessStatus
from services.stripe.client import StripeApi
from tests.conftest import graphql
from tests.webhooks import lifecycles
from tests.webhooks.lifecycles import apply_all, events_of

DAY = 86400
GRACE_DAYS = 7


@pytest.fixture
async def api(settings, billing) -> AsyncIterator[StripeApi]:
    async with StripeApi(settings, billing.sandbox.url) as api:
        yield api


class ClockedCustomer:
    """A customer living on a test clock, whose events are applied after each advance."""

    def __init__(self, db, billing, api, customer, clock_id: str, now: int) -> None:
        self.db, self.billing, self.api = db, billing, api
        self.customer, self.clock_id, self.now = customer, clock_id, now

    @classmethod
    async def create(cls, db, billing, api, user_id: str) -> "ClockedCustomer":
        now = int(datetime.now(UTC).timestamp())
        clock = await billing.stripe.v1.test_helpers.test_clocks.create_async({"frozen_time": now})
        customer = await lifecycles.new_customer(db, billing, user_id, test_clock=clock.id)
        return cls(db, billing, api, customer, clock.id, now)

    async def subscribe(self, card: str, trial_days: int | None) -> dict[str, Any]:
        method = await lifecycles.attach(self.api, self.customer, card)
        created = await self.api.create_subscription(
            customer_id=self.customer.stripe_id,
            price_id=lifecycles.price(self.billing, "pro_monthly"),
            quantity=1,
            payment_method_id=method,
            trial_days=trial_days,
            idempotency_key=lifecycles.key(),
        )
        return created.to_dict()

    async def advance_to(self, moment: int) -> None:
        await self.billing.stripe.v1.test_helpers.test_clocks.advance_async(
            self.clock_id, {"frozen_time": moment}
        )
        self.now = moment

    async def access(self) -> access.Access:
        """Apply every event so far (again: replays change nothing), then read access."""
        await apply_all(self.db, self.api, await events_of(self.billing, self.customer.stripe_id))
        async with self.db.session() as session:
            return await access.access_for_account(
                session=session,
                account_id=self.customer.account_id,
                grace_days=GRACE_DAYS,
                now=datetime.fromtimestamp(self.now, UTC),
            )


def at(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


async def test_trial_then_active_then_canceling_until_the_period_ends(db, billing, api):
    life = await ClockedCustomer.create(db, billing, api, "trial-good-card")
    created = await life.subscribe("pm_card_visa", trial_days=14)
    trial_end = created["trial_end"]

    trialing = await life.access()
    await life.advance_to(trial_end + 2 * 3600)  # the first invoice is charged an hour later
    active = await life.access()
    period_end = active.subscription.current_period_end if active.subscription else None
    await life.api.set_cancel_at_period_end(
        subscription_id=created["id"], cancel=True, idempotency_key=lifecycles.key()
    )
    canceling = await life.access()
    assert period_end is not None
    await life.advance_to(int(period_end.timestamp()) + 60)
    ended = await life.access()

    assert (trialing.status, trialing.until) == (AccessStatus.TRIALING, at(trial_end))
    assert trialing.subscription is not None and trialing.has_access
    assert (active.status, active.until) == (AccessStatus.ACTIVE, period_end)
    assert period_end > at(trial_end)
    assert (canceling.status, canceling.until) == (AccessStatus.CANCELING, period_end)
    assert (ended.status, ended.until, ended.subscription) == (AccessStatus.NONE, None, None)
    assert not ended.has_access


async def test_a_failed_renewal_gives_a_grace_period_until_it_runs_out(db, billing, api):
    life = await ClockedCustomer.create(db, billing, api, "trial-failing-card")
    created = await life.subscribe("pm_card_chargeCustomerFail", trial_days=7)
    trial_end = created["trial_end"]

    trialing = await life.access()
    await life.advance_to(trial_end + 2 * 3600)  # the renewal's charge fails
    grace = await life.access()
    await life.advance_to(trial_end + (GRACE_DAYS + 1) * DAY)  # retried on day 3, in vain
    expired = await life.access()
    async with db.session() as session:
        row = await session.get(Subscription, grace.subscription.id if grace.subscription else 0)

    assert trialing.status is AccessStatus.TRIALING
    assert grace.status is AccessStatus.GRACE_PERIOD and grace.has_access
    # The renewal started the new period at the trial's end; the grace counts from there.
    assert grace.until == at(trial_end) + timedelta(days=GRACE_DAYS)
    # Still past due (Stripe retries on): only the grace period has run out.
    assert row is not None and row.status is SubscriptionStatus.PAST_DUE
    assert expired.status is AccessStatus.NONE and not expired.has_access


def subscription(status: SubscriptionStatus, **overrides: Any) -> Subscription:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    values: dict[str, Any] = {
        "status": status,
        "current_period_start": start,
        "current_period_end": start + timedelta(days=30),
        "cancel_at_period_end": False,
        "trial_end": None,
    }
    return Subscription(**(values | overrides))


@pytest.mark.parametrize(
    ("status", "days_in", "expected"),
    [
        (SubscriptionStatus.PAST_DUE, 6.9, AccessStatus.GRACE_PERIOD),
        (SubscriptionStatus.PAST_DUE, 7, AccessStatus.NONE),
        (SubscriptionStatus.UNPAID, 1, AccessStatus.NONE),
        (SubscriptionStatus.INCOMPLETE, 1, AccessStatus.NONE),
        (SubscriptionStatus.CANCELED, 1, AccessStatus.NONE),
        (SubscriptionStatus.ACTIVE, 31, AccessStatus.ACTIVE),
    ],
)
def test_each_status_at_its_boundary(status, days_in, expected):
    row = subscription(status)
    now = row.current_period_start + timedelta(days=days_in)

    assert access.access_of(row, grace_days=GRACE_DAYS, now=now).status is expected


def test_canceling_ends_at_the_period_end():
    row = subscription(SubscriptionStatus.ACTIVE, cancel_at_period_end=True)

    before = access.access_of(
        row, grace_days=GRACE_DAYS, now=row.current_period_end - timedelta(seconds=1)
    )
    after = access.access_of(row, grace_days=GRACE_DAYS, now=row.current_period_end)

    assert (before.status, before.until) == (AccessStatus.CANCELING, row.current_period_end)
    assert after.status is AccessStatus.NONE


ACCESS = """
query {
  viewer {
    access { status hasAccess until subscription { id status } }
    activeSubscription { id }
  }
}
"""

SUBSCRIBE = """
mutation($input: CreateSubscriptionInput!) {
  createSubscription(input: $input) { subscription { id currentPeriodEnd } userErrors { code } }
}
"""


async def test_viewer_access_agrees_with_active_subscription(client, billing, token_for):
    alice, bob = token_for("alice"), token_for("bob")
    made = await graphql(
        client,
        SUBSCRIBE,
        {"input": {"planId": billing.plan_id("pro_monthly"), "paymentMethodId": "pm_card_visa"}},
        token=alice,
    )
    subscription = made["data"]["createSubscription"]["subscription"]

    subscribed = (await graphql(client, ACCESS, token=alice))["data"]["viewer"]
    nobody = (await graphql(client, ACCESS, token=bob))["data"]["viewer"]

    assert subscribed["access"] == {
        "status": "ACTIVE",
        "hasAccess": True,
        "until": subscription["currentPeriodEnd"],
        "subscription": {"id": subscription["id"], "status": "ACTIVE"},
    }
    assert subscribed["activeSubscription"] == {"id": subscription["id"]}
    assert nobody["access"] == {
        "status": "NONE",
        "hasAccess": False,
        "until": None,
        "subscription": None,
    }
    assert nobody["activeSubscription"] is None
