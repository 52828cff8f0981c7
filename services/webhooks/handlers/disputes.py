"""charge.dispute.*: a disputed payment's credits are reversed, and given back if it is won."""

from sqlalchemy.ext.asyncio import AsyncSession

from services import mirror
from services.stripe.client import StripeApi
from services.webhooks import dispatch
from services.webhooks.handlers.base import StripeDict, obj
from services.webhooks.handlers.payments import settle_payment_credits


@dispatch.handles("charge.dispute.created", "charge.dispute.closed")
async def dispute_changed(session: AsyncSession, stripe: StripeApi, event: StripeDict) -> None:
    """Settle the disputed payment from Stripe's current disputes, so a closing that arrives
    before the opening still ends with the right entries."""
    intent_id = mirror.stripe_id(obj(event).get("payment_intent"))
    if intent_id is not None:
        await settle_payment_credits(session, stripe, intent_id, event)
