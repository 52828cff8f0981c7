"""Billing metrics for admins, computed from the mirror at the moment they are asked for.

- MRR counts active and past-due subscriptions (past due still bills; a trial does not
  yet): the plan's amount times the quantity, each interval normalised to a month (a year
  is 1/12, a week 52/12, a day 365/12, divided by the interval count), summed exactly and
  rounded half up to the minor unit once per currency (the subscription's: a plan sold in
  several currencies counts its amount in each). ARR is 12 times that MRR.
- churnRate30d: of the subscriptions live 30 days ago (started by then, not ended, never
  merely incomplete), the share that has ended since.
- paymentSuccessRate30d: of the PaymentIntents created in the last 30 days that were
  attempted (succeeded, or carrying a failure code), the share that succeeded; 1 when
  there were no attempts (nothing failed).
- revenue30d: what the payments created in the last 30 days received, net of what has
  been refunded of them, per currency.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import (
    BillingInterval,
    PaymentStatus,
    PaymentTransaction,
    Plan,
    Subscription,
    SubscriptionStatus,
)

WINDOW = timedelta(days=30)
MONTHS_PER_INTERVAL = {
    BillingInterval.DAY: Fraction(12, 365),
    BillingInterval.WEEK: Fraction(12, 52),
    BillingInterval.MONTH: Fraction(1),
    BillingInterval.YEAR: Fraction(12),
}
RECURRING_REVENUE_STATUSES = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)
NEVER_LIVE_STATUSES = (SubscriptionStatus.INCOMPLETE, SubscriptionStatus.INCOMPLETE_EXPIRED)

# Money per currency: lowercase ISO code -> amount in minor units.
Amounts = dict[str, int]


@dataclass(frozen=True)
class BillingMetrics:
    mrr: Amounts
    arr: Amounts
    active_subscriptions: int
    trialing_subscriptions: int
    past_due_subscriptions: int
    churn_rate_30d: float
    payment_success_rate_30d: float
    revenue_30d: Amounts


async def compute(*, session: AsyncSession, now: datetime) -> BillingMetrics:
    mrr = await monthly_recurring_revenue(session=session)
    counts = await subscription_counts(session=session)
    return BillingMetrics(
        mrr=mrr,
        arr={currency: 12 * amount for currency, amount in mrr.items()},
        active_subscriptions=counts.get(SubscriptionStatus.ACTIVE, 0),
        trialing_subscriptions=counts.get(SubscriptionStatus.TRIALING, 0),
        past_due_subscriptions=counts.get(SubscriptionStatus.PAST_DUE, 0),
        churn_rate_30d=await churn_rate(session=session, since=now - WINDOW),
        payment_success_rate_30d=await payment_success_rate(session=session, since=now - WINDOW),
        revenue_30d=await net_revenue(session=session, since=now - WINDOW),
    )


async def monthly_recurring_revenue(*, session: AsyncSession) -> Amounts:
    # A subscription is billed in its own currency, at the plan's amount in that currency.
    billed_currency = func.coalesce(Subscription.currency, Plan.currency)
    amount = func.coalesce(Plan.other_amounts[billed_currency].as_integer(), Plan.amount)
    query = (
        select(billed_currency, Plan.interval, Plan.interval_count, amount, Subscription.quantity)
        .join(Plan, Plan.id == Subscription.plan_id)
        .where(Subscription.status.in_(RECURRING_REVENUE_STATUSES))
    )
    exact: dict[str, Fraction] = {}
    for currency, interval, interval_count, amount, quantity in await session.execute(query):
        assert interval is not None and interval_count is not None, "subscriptions are to plans"
        per_month = Fraction(amount * quantity) / (MONTHS_PER_INTERVAL[interval] * interval_count)
        exact[currency] = exact.get(currency, Fraction(0)) + per_month
    return {currency: _round_half_up(total) for currency, total in sorted(exact.items())}


def _round_half_up(value: Fraction) -> int:
    return int((value + Fraction(1, 2)) // 1)


async def subscription_counts(*, session: AsyncSession) -> dict[SubscriptionStatus, int]:
    query = select(Subscription.status, func.count()).group_by(Subscription.status)
    return {status: count for status, count in await session.execute(query)}


async def churn_rate(*, session: AsyncSession, since: datetime) -> float:
    ended_at = func.coalesce(
        Subscription.ended_at,
        # A canceled subscription Stripe reported without `ended_at` ended when canceled.
        case((Subscription.status == SubscriptionStatus.CANCELED, Subscription.canceled_at)),
    )
    live_then = and_(
        Subscription.stripe_created_at <= since,
        Subscription.status.not_in(NEVER_LIVE_STATUSES),
        or_(ended_at.is_(None), ended_at > since),
    )
    query = select(
        func.count().filter(live_then),
        func.count().filter(live_then, ended_at.is_not(None)),
    )
    live, ended = (await session.execute(query)).one()
    return ended / live if live else 0.0


async def payment_success_rate(*, session: AsyncSession, since: datetime) -> float:
    succeeded = PaymentTransaction.status == PaymentStatus.SUCCEEDED
    attempted = or_(succeeded, PaymentTransaction.failure_code.is_not(None))
    query = select(func.count().filter(attempted), func.count().filter(succeeded)).where(
        PaymentTransaction.stripe_created_at > since
    )
    attempts, successes = (await session.execute(query)).one()
    return successes / attempts if attempts else 1.0


async def net_revenue(*, session: AsyncSession, since: datetime) -> Amounts:
    net = func.sum(PaymentTransaction.amount_received - PaymentTransaction.amount_refunded)
    query = (
        select(PaymentTransaction.currency, net)
        .where(
            PaymentTransaction.status == PaymentStatus.SUCCEEDED,
            PaymentTransaction.stripe_created_at > since,
        )
        .group_by(PaymentTransaction.currency)
        .order_by(PaymentTransaction.currency)
    )
    return {currency: int(total) for currency, total in await session.execute(query)}
