"""setup_intent.succeeded: the card a customer just saved."""

from sqlalchemy.ext.asyncio import AsyncSession

from services import mirror
from services.stripe.client import StripeApi
from services.webhooks import dispatch, sync
from services.webhooks.handlers.base import StripeDict, lock, obj


@dispatch.handles("setup_intent.succeeded")
async def setup_intent_succeeded(
    session: AsyncSession, stripe: StripeApi, event: StripeDict
) -> None:
    """Mirror the saved payment method; the SetupIntent names it but carries no card details,
    so it is read from Stripe. Making it the default is the gateway's mutation's call."""
    intent = obj(event)
    method_id = mirror.stripe_id(intent.get("payment_method"))
    if method_id is None:
        return
    await lock(session, method_id)
    account_id = await mirror.account_id_for_customer(
        session, mirror.stripe_id(intent.get("customer"))
    )
    if account_id is None:
        return
    await sync.mirror_payment_method(session, stripe, method_id, account_id, sync.fresh_time(event))
