"""customer.subscription.*: status, plan, periods, cancellation and trial of a subscription."""

from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Subscription
from services import mirror
from services.stripe.client import StripeApi
from services.webhooks import dispatch, sync
from services.webhooks.handlers.base import StripeDict, ambiguous, event_time, lock, obj


@dispatch.handles(
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.trial_will_end",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    coalesce=True,
)
async def subscription_changed(session: AsyncSession, stripe: StripeApi, event: StripeDict) -> None:
    """Apply the snapshot, or re-read the subscription when the event's order is ambiguous or
    its price is not a plan the mirror knows."""
    subscription = obj(event)
    await lock(session, subscription["id"])
    account_id = await mirror.account_id_for_customer(
        session, mirror.stripe_id(subscription["customer"])
    )
    if account_id is None:
        return
    row = await mirror.mirrored(session, Subscription, "stripe_subscription_id", subscription["id"])
    plan_id = await mirror.plan_id_for_price(session, mirror.subscription_price_id(subscription))
    if plan_id is None or ambiguous(row, event):
        await sync.mirror_subscription(
            session, stripe, subscription["id"], account_id, sync.fresh_time(event)
        )
    else:
        await mirror.upsert_subscription(
            session,
            stripe,
            subscription,
            account_id,
            plan_id,
            observed_at=event_time(event),
            event_id=event["id"],
        )
    await sync.settle_latest_invoice(session, subscription["id"])
