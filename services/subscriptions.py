"""Subscriptions of an account: reads from the mirror; changes through Stripe, written through."""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import stripe as stripe_sdk
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Subscription, SubscriptionStatus
from services import catalog, mirror, payments
from services.errors import DomainError, ErrorCode, NotFound
from services.pagination import Page, paginate
from services.stripe.client import StripeApi

# A subscription in one of these still gives (or is about to give) access; an account may
# have only one at a time.
LIVE_STATUSES = (
    SubscriptionStatus.ACTIVE,
    SubscriptionStatus.TRIALING,
    SubscriptionStatus.PAST_DUE,
    SubscriptionStatus.INCOMPLETE,
    SubscriptionStatus.UNPAID,
    SubscriptionStatus.PAUSED,
)
ACTIVE_STATUSES = (
    SubscriptionStatus.ACTIVE,
    SubscriptionStatus.TRIALING,
    SubscriptionStatus.PAST_DUE,
)


async def list_for_account(
    *,
    session: AsyncSession,
    account_id: int,
    statuses: Sequence[SubscriptionStatus] | None,
    first: int | None,
    after: str | None,
) -> Page[Subscription]:
    query = select(Subscription).where(Subscription.account_id == account_id)
    if statuses:
        query = query.where(Subscription.status.in_(statuses))
    return await paginate(
        session=session,
        query=query,
        sort_column=Subscription.stripe_created_at,
        id_column=Subscription.id,
        first=first,
        after=after,
    )


async def active_for_account(*, session: AsyncSession, account_id: int) -> Subscription | None:
    """The newest subscription that gives access now (active, trialing or past due)."""
    query = (
        select(Subscription)
        .where(Subscription.account_id == account_id, Subscription.status.in_(ACTIVE_STATUSES))
        .order_by(Subscription.stripe_created_at.desc(), Subscription.id.desc())
        .limit(1)
    )
    return await session.scalar(query)


async def get_owned(
    *, session: AsyncSession, account_id: int, subscription_id: int
) -> Subscription | None:
    row = await session.get(Subscription, subscription_id)
    return row if row is not None and row.account_id == account_id else None


def stripe_key(operation: str, account_id: int, caller_key: str | None) -> str:
    """The idempotency key of a Stripe write: the caller's key scoped to them, or a fresh one
    (the SDK's own retries of this call reuse it either way)."""
    return f"{operation}:{account_id}:{caller_key or uuid.uuid4().hex}"


async def write_through(
    *,
    session: AsyncSession,
    stripe: StripeApi,
    subscription: stripe_sdk.Subscription,
    account_id: int,
) -> Subscription:
    """Mirror what Stripe answered (the subscription, its latest invoice and that invoice's
    payment) before the caller sees it; returns the subscription row.

    Call it outside a transaction: each step commits its own, short one."""
    data = subscription.to_dict()
    observed_at = datetime.now(UTC)
    plan = await catalog.plan_for_price(
        session=session, stripe=stripe, price_id=mirror.subscription_price_id(data)
    )
    async with session.begin():
        row_id = await mirror.upsert_subscription(
            session, data, account_id, plan.id, observed_at=observed_at
        )
        invoice = data.get("latest_invoice")
        if isinstance(invoice, dict):
            await mirror.upsert_invoice(session, invoice, account_id, observed_at=observed_at)
    if isinstance(invoice, dict):
        await payments.write_through_invoice_payments(
            session=session, stripe=stripe, invoice=invoice, account_id=account_id
        )
    async with session.begin():
        row = await session.get(Subscription, row_id, populate_existing=True)
    assert row is not None
    return row


async def cancel(
    *,
    session: AsyncSession,
    stripe: StripeApi,
    account_id: int,
    subscription_id: int,
    at_period_end: bool,
) -> Subscription:
    """Cancel at the period end (access stays until then) or at once."""
    async with session.begin():
        row = await get_owned(
            session=session, account_id=account_id, subscription_id=subscription_id
        )
    if row is None:
        raise NotFound("No such subscription", ["subscriptionId"])
    if row.status in (SubscriptionStatus.CANCELED, SubscriptionStatus.INCOMPLETE_EXPIRED):
        raise DomainError(
            ErrorCode.INVALID_STATE, "The subscription has already ended", ["subscriptionId"]
        )
    key = stripe_key("cancel-subscription", account_id, None)
    if at_period_end:
        changed = await stripe.set_cancel_at_period_end(
            subscription_id=row.stripe_subscription_id, cancel=True, idempotency_key=key
        )
    else:
        changed = await stripe.cancel_subscription(
            subscription_id=row.stripe_subscription_id, idempotency_key=key
        )
    return await write_through(
        session=session, stripe=stripe, subscription=changed, account_id=account_id
    )
