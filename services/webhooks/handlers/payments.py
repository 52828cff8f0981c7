"""payment_intent.* and charge.*: a payment's status, failure, receipt and refunds."""

from sqlalchemy.ext.asyncio import AsyncSession

from db.database import driver_of
from db.models import PaymentTransaction
from services import credit_sources, mirror
from services.live import UpdateKind, publish
from services.stripe.client import StripeApi
from services.webhooks import dispatch, sync
from services.webhooks.handlers.base import (
    StripeDict,
    ambiguous,
    event_actor,
    event_time,
    lock,
    obj,
)


@dispatch.handles(
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.requires_action",
    "payment_intent.processing",
    "payment_intent.canceled",
    coalesce=True,
)
async def payment_intent_changed(
    session: AsyncSession, stripe: StripeApi, event: StripeDict
) -> None:
    """Apply the PaymentIntent's snapshot (or re-read it when the order is ambiguous), and
    grant a succeeded one-time payment's credits once."""
    intent = obj(event)
    await lock(session, intent["id"])
    account_id = await mirror.account_id_for_customer(
        session, mirror.stripe_id(intent.get("customer"))
    )
    if account_id is None:
        return
    row = await _transaction(session, intent["id"], None)
    if ambiguous(row, event):
        await sync.mirror_payment(session, stripe, intent["id"], account_id, sync.fresh_time(event))
    else:
        await mirror.upsert_transaction(
            session, intent, account_id, observed_at=event_time(event), event_id=event["id"]
        )
    await credit_sources.grant_for_payment(
        session, stripe, account_id=account_id, intent_id=intent["id"], actor=event_actor(event)
    )


APPLY_CHARGE = """
UPDATE payment_transactions
SET amount_refunded = greatest(amount_refunded, $2), receipt_url = coalesce(receipt_url, $3),
    updated_at = now()
WHERE id = $1
"""


@dispatch.handles("charge.succeeded", "charge.failed", "charge.refunded")
async def charge_changed(session: AsyncSession, stripe: StripeApi, event: StripeDict) -> None:
    """Carry the charge's refunds and receipt onto its payment's row; a refund reverses its
    share of the payment's credits.

    No ordering guard is needed: the refunded amount only grows (GREATEST) and a receipt,
    once there, stays; the PaymentIntent's own events never carry either."""
    charge = obj(event)
    intent_id = mirror.stripe_id(charge.get("payment_intent"))
    # The row is the PaymentIntent's: lock it, so its events and its charge's never interleave.
    await lock(session, intent_id or charge["id"])
    account_id = await mirror.account_id_for_customer(
        session, mirror.stripe_id(charge.get("customer"))
    )
    if account_id is None:
        return
    row = await _transaction(session, intent_id, charge["id"])
    if row is None:
        if intent_id is None:
            return
        # Its payment is not mirrored yet: read it whole.
        await sync.mirror_payment(session, stripe, intent_id, account_id, sync.fresh_time(event))
    else:
        receipt = charge.get("receipt_url") if charge.get("paid") else None
        driver = await driver_of(session)
        await driver.execute(APPLY_CHARGE, row.id, charge.get("amount_refunded") or 0, receipt)
        await publish(session, UpdateKind.PAYMENT_UPDATED, account_id=account_id, row_id=row.id)
    if event["type"] == "charge.refunded" and intent_id is not None:
        await credit_sources.settle_reversals(
            session, stripe, account_id=account_id, intent_id=intent_id, actor=event_actor(event)
        )


@dispatch.handles("refund.updated")
async def refund_changed(session: AsyncSession, stripe: StripeApi, event: StripeDict) -> None:
    """A refund that succeeds later (or fails) changes what its payment's credits reverse."""
    intent_id = mirror.stripe_id(obj(event).get("payment_intent"))
    if intent_id is not None:
        await settle_payment_credits(session, stripe, intent_id, event)


async def settle_payment_credits(
    session: AsyncSession, stripe: StripeApi, intent_id: str, event: StripeDict
) -> None:
    """Settle a payment's credit reversals, for events (refunds, disputes) that name the
    payment but not its customer: the account is the mirrored payment's, or Stripe's."""
    # The payment's lock: its refunds and disputes settle one at a time.
    await lock(session, intent_id)
    row = await _transaction(session, intent_id, None)
    account_id = row.account_id if row is not None else None
    if account_id is None:
        intent = (await stripe.retrieve_payment(intent_id)).to_dict()
        account_id = await mirror.account_id_for_customer(
            session, mirror.stripe_id(intent["customer"])
        )
        if account_id is None:
            return
        await mirror.upsert_transaction(
            session, intent, account_id, observed_at=sync.fresh_time(event)
        )
    await credit_sources.settle_reversals(
        session, stripe, account_id=account_id, intent_id=intent_id, actor=event_actor(event)
    )


async def _transaction(
    session: AsyncSession, intent_id: str | None, charge_id: str | None
) -> mirror.Mirrored | None:
    """The payment's row, by its PaymentIntent or else by its latest charge."""
    if intent_id is not None:
        return await mirror.mirrored(
            session, PaymentTransaction, "stripe_payment_intent_id", intent_id
        )
    return await mirror.mirrored(session, PaymentTransaction, "latest_charge_stripe_id", charge_id)
