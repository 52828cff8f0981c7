"""charge.dispute.*: a disputed payment's credits are reversed, and given back if it is won."""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import PaymentTransaction
from services import credit_sources, mirror
from services.stripe.client import StripeApi
from services.webhooks import dispatch, sync
from services.webhooks.handlers.base import StripeDict, event_actor, lock, obj


@dispatch.handles("charge.dispute.created", "charge.dispute.closed")
async def dispute_changed(session: AsyncSession, stripe: StripeApi, event: StripeDict) -> None:
    """Settle the disputed payment's reversals from Stripe's current disputes, so a closing
    that arrives before the opening still ends with the right entries."""
    intent_id = mirror.stripe_id(obj(event).get("payment_intent"))
    if intent_id is None:
        return
    # The payment's lock: its refunds and disputes settle one at a time.
    await lock(session, intent_id)
    account_id = await session.scalar(
        select(PaymentTransaction.account_id).where(
            PaymentTransaction.stripe_payment_intent_id == intent_id
        )
    )
    if account_id is None:  # a dispute names no customer: find it through the payment
        intent = (await stripe.retrieve_payment(intent_id)).to_dict()
        account = await mirror.account_for_customer(session, mirror.stripe_id(intent["customer"]))
        if account is None:
            return
        account_id = account.id
        await mirror.upsert_transaction(
            session, intent, account_id, observed_at=sync.fresh_time(event)
        )
    await credit_sources.settle_reversals(
        session, stripe, account_id=account_id, intent_id=intent_id, actor=event_actor(event)
    )
