"""invoice.*: an invoice's status and amounts, and the payments that pay it."""

from sqlalchemy.ext.asyncio import AsyncSession

from db.database import driver_of
from db.models import Invoice, Subscription
from services import credit_sources, mirror
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

PAYMENT_EVENTS = (
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "invoice.payment_action_required",
)


@dispatch.handles(
    "invoice.created",
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "invoice.payment_action_required",
    "invoice.voided",
    "invoice.marked_uncollectible",
    coalesce=True,
)
async def invoice_changed(session: AsyncSession, stripe: StripeApi, event: StripeDict) -> None:
    """Apply the snapshot (or re-read it when ambiguous), link its payments, and grant the
    credits of a paid invoice once."""
    invoice = obj(event)
    await lock(session, invoice["id"])
    account_id = await mirror.account_id_for_customer(
        session, mirror.stripe_id(invoice["customer"])
    )
    if account_id is None:
        return
    subscription_id = mirror.invoice_subscription_id(invoice)
    if subscription_id is not None:
        # Always after the invoice's own lock, and before any row lock: no lock cycles.
        await lock(session, subscription_id)
        await _ensure_subscription(session, stripe, subscription_id, account_id, event)
    await _apply(session, stripe, invoice, account_id, event)
    if subscription_id is not None:
        await sync.settle_latest_invoice(session, subscription_id)
    await credit_sources.grant_for_invoice(
        session,
        stripe,
        account_id=account_id,
        invoice_id=invoice["id"],
        actor=event_actor(event),
        observed_at=sync.fresh_time(event),
    )


async def _apply(
    session: AsyncSession,
    stripe: StripeApi,
    invoice: StripeDict,
    account_id: int,
    event: StripeDict,
) -> None:
    """The snapshot, or Stripe's invoice when the snapshot's order is ambiguous."""
    row = await mirror.mirrored(session, Invoice, "stripe_invoice_id", invoice["id"])
    if ambiguous(row, event):
        observed_at = sync.fresh_time(event)
        await sync.mirror_invoice(session, stripe, invoice["id"], account_id, observed_at)
        return
    await mirror.upsert_invoice(
        session, stripe, invoice, account_id, observed_at=event_time(event), event_id=event["id"]
    )
    if await _may_bring_payments(session, invoice, event):
        # Event snapshots leave out `payments` (an includable field); only a read has them.
        fetched = (await stripe.retrieve_invoice(invoice["id"])).to_dict()
        await sync.link_payments(session, stripe, fetched, account_id, sync.fresh_time(event))


PAID_BY_LINKED_PAYMENTS = """
SELECT coalesce(sum(amount), 0) FROM payment_transactions
WHERE invoice_stripe_id = $1 AND status = 'succeeded'
"""


async def _may_bring_payments(
    session: AsyncSession, invoice: StripeDict, event: StripeDict
) -> bool:
    """Whether the invoice may have payments the mirror has not linked to it yet.

    Every payment attempt is announced by one of PAYMENT_EVENTS, so the others bring none;
    nor does a paid invoice whose linked, succeeded payments already cover what it was paid
    (the second of invoice.paid and invoice.payment_succeeded). Only then is Stripe read."""
    if event["type"] not in PAYMENT_EVENTS:
        return False
    if invoice["status"] != "paid":
        return True
    driver = await driver_of(session)
    return await driver.fetchval(PAID_BY_LINKED_PAYMENTS, invoice["id"]) < invoice["amount_paid"]


async def _ensure_subscription(
    session: AsyncSession,
    stripe: StripeApi,
    subscription_id: str,
    account_id: int,
    event: StripeDict,
) -> None:
    """Mirror the invoice's subscription from Stripe when its own events have not come yet."""
    known = await mirror.mirrored(session, Subscription, "stripe_subscription_id", subscription_id)
    if known is None:
        await sync.mirror_subscription(
            session, stripe, subscription_id, account_id, sync.fresh_time(event)
        )
