"""checkout.session.completed: what a hosted Checkout page bought."""

from sqlalchemy.ext.asyncio import AsyncSession

from services import mirror
from services.stripe.client import StripeApi
from services.webhooks import dispatch, sync
from services.webhooks.handlers.base import StripeDict, lock, obj


@dispatch.handles("checkout.session.completed")
async def checkout_completed(session: AsyncSession, stripe: StripeApi, event: StripeDict) -> None:
    """Mirror the subscription (or one-time payment) the session made, read from Stripe: the
    session names it but carries none of its state."""
    checkout = obj(event)
    await lock(session, checkout["id"])
    account_id = await mirror.account_id_for_customer(
        session, mirror.stripe_id(checkout.get("customer"))
    )
    if account_id is None:
        return
    observed_at = sync.fresh_time(event)
    subscription_id = mirror.stripe_id(checkout.get("subscription"))
    if subscription_id is not None:
        await lock(session, subscription_id)
        await sync.mirror_subscription(session, stripe, subscription_id, account_id, observed_at)
    intent_id = mirror.stripe_id(checkout.get("payment_intent"))
    if intent_id is not None:
        await lock(session, intent_id)
        await sync.mirror_payment(session, stripe, intent_id, account_id, observed_at)
