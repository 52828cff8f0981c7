"""What Stripe's money movements are worth in credits: grants for paid invoices and one-time
payments, reversals for refunds and disputes. The webhook handlers call these inside the
event's transaction, after the mirror has the event's state.

Every entry is keyed by its Stripe source (`grant:<invoice or payment>`, `refund:<re_…>`,
`dispute:<dp_…>`, `dispute-won:<dp_…>`), so duplicates, replays and both invoice.paid and
invoice.payment_succeeded apply once. Order does not matter either: a payment's reversals
are computed from Stripe's current refunds and disputes, both when they arrive and when the
grant they reverse arrives later, under the wallet lock, so neither side misses the other.

Mutations call the same functions on what Stripe answered them (write-through), so a paid
invoice or payment is credited at once even when its webhooks never come."""

from datetime import datetime

import stripe as stripe_sdk
from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import (
    CreditEntry,
    CreditEntryKind,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    PaymentStatus,
    PaymentTransaction,
    Plan,
    StripeEvent,
)
from services import credits, mirror
from services.credits import Posting
from services.stripe.client import StripeApi
from services.webhooks import sync

DISPUTE_EVENTS = ("charge.dispute.created", "charge.dispute.closed")


# Who a ledger entry made from a mutation's own answer is from (webhooks: `stripe:<evt_…>`).
WRITE_THROUGH_ACTOR = "stripe:write-through"


async def credit_sighting(
    session: AsyncSession,
    stripe: StripeApi,
    *,
    account_id: int,
    invoice_id: str | None = None,
    intent_id: str | None = None,
) -> None:
    """Grant what a mirrored invoice or one-time payment a mutation just saw is owed, in a
    transaction of its own; a no-op for one not paid yet or already granted."""
    async with session.begin():
        if invoice_id is not None:
            await grant_for_invoice(
                session,
                stripe,
                account_id=account_id,
                invoice_id=invoice_id,
                actor=WRITE_THROUGH_ACTOR,
                observed_at=sync.fresh_time(),
            )
        if intent_id is not None:
            await grant_for_payment(
                session, stripe, account_id=account_id, intent_id=intent_id, actor=WRITE_THROUGH_ACTOR
            )


def grant_key(source: str) -> str:
    """The ledger key of the grant for a paid invoice or one-time payment."""
    return f"grant:{source}"


async def grant_for_invoice(
    session: AsyncSession,
    stripe: StripeApi,
    *,
    account_id: int,
    invoice_id: str,
    actor: str,
    observed_at: datetime,
) -> None:
    """Once the mirrored invoice is paid: its plans' credits × quantity, once per invoice.

    Only lines that charged a full period count: prorations and free (trial) lines grant
    nothing. A line's price the mirror does not know yet is read from Stripe first."""
    invoice = await session.scalar(
        select(Invoice)
        .where(Invoice.stripe_invoice_id == invoice_id)
        # The handler may hold the row from before its upsert (a Core statement).
        .execution_options(populate_existing=True)
    )
    if invoice is None or invoice.status is not InvoiceStatus.PAID:
        return
    if await credits.has_entry(session, account_id=account_id, key=grant_key(invoice_id)):
        return  # the common case (invoice.paid, then invoice.payment_succeeded): no wallet lock
    lines = await session.scalars(
        select(InvoiceLine).where(
            InvoiceLine.invoice_id == invoice.id,
            InvoiceLine.proration.is_(False),
            InvoiceLine.amount > 0,
            InvoiceLine.price_stripe_id.is_not(None),
        )
    )
    total, names = 0, []
    for line in lines.all():
        assert line.price_stripe_id is not None, "filtered above"
        plan = await session.get(
            Plan, await sync.plan_id_for(session, stripe, line.price_stripe_id, observed_at)
        )
        if plan is not None and plan.credits:
            total += plan.credits * (line.quantity or 1)
            names.append(f"{plan.product_name} × {line.quantity or 1}")
    if total <= 0:
        return
    reason = f"{', '.join(names)}: invoice {invoice.number or invoice_id} paid"
    paid_by = PaymentTransaction.invoice_stripe_id == invoice_id
    await _grant(session, stripe, account_id, invoice_id, total, reason, actor, paid_by)


async def grant_for_payment(
    session: AsyncSession, stripe: StripeApi, *, account_id: int, intent_id: str, actor: str
) -> None:
    """Once a one-time payment (no invoice) succeeded: the credits its metadata names."""
    row = await _payment(session, intent_id)
    if row is None or row.status is not PaymentStatus.SUCCEEDED or row.invoice_stripe_id:
        return
    bought = str((row.metadata_ or {}).get(credits.CREDITS_METADATA, ""))
    if not bought.isdigit() or int(bought) <= 0:
        return
    reason = f"Top-up: payment {intent_id}"
    paid_by = PaymentTransaction.stripe_payment_intent_id == intent_id
    await _grant(session, stripe, account_id, intent_id, int(bought), reason, actor, paid_by)


async def _grant(
    session: AsyncSession,
    stripe: StripeApi,
    account_id: int,
    source: str,
    amount: int,
    reason: str,
    actor: str,
    paid_by: ColumnElement[bool],
) -> None:
    """Grant once per source; a new grant settles the reversals of the payments (`paid_by`)
    whose refunds or disputes were applied before it existed."""
    posting = Posting(
        kind=CreditEntryKind.GRANT,
        amount=amount,
        reason=reason,
        idempotency_key=grant_key(source),
        actor=actor,
        source_ref=source,
    )
    posted = await credits.post(session, account_id=account_id, posting=posting)
    if not posted.created:
        return
    for intent_id in (await session.scalars(_maybe_reversed(paid_by))).all():
        await settle_reversals(
            session, stripe, account_id=account_id, intent_id=intent_id, actor=actor
        )


def _maybe_reversed(paid_by: ColumnElement[bool]) -> Select[str]:
    """The payments (`paid_by`) a refund or dispute may have been applied to before the grant.

    Only theirs is Stripe read (under the wallet lock, which spends wait on). Every other
    refund or dispute is still to be applied: its charge.refunded or charge.dispute.* event
    comes after this grant commits (they wait on the wallet lock), and settles it then."""
    intent_id = PaymentTransaction.stripe_payment_intent_id
    disputed = select(StripeEvent.id).where(
        StripeEvent.type.in_(DISPUTE_EVENTS),
        StripeEvent.payload["data"]["object"]["payment_intent"].astext == intent_id,
    )
    return select(intent_id).where(
        paid_by, or_(PaymentTransaction.amount_refunded > 0, disputed.exists())
    )


async def settle_reversals(
    session: AsyncSession, stripe: StripeApi, *, account_id: int, intent_id: str, actor: str
) -> None:
    """Reverse the payment's grant for each of its refunds (in proportion) and disputes.

    The refunds' reversals add up to floor(grant × refunded / paid) whatever order they come
    in; a dispute reverses what the refunds left, and a won dispute gives that back."""
    wallet_id = await credits.lock_wallet(session, account_id)
    row = await _payment(session, intent_id)
    if row is None or row.amount <= 0:
        return
    grant = await credits.find_entry(
        session, wallet_id, grant_key(row.invoice_stripe_id or intent_id)
    )
    if grant is None:
        return  # nothing granted yet; the grant settles its reversals when it comes
    # Stripe lists newest first; oldest first, each refund takes its share in turn. A pending
    # refund counts once it succeeds (refund.updated settles again).
    listed = reversed(await stripe.list_refunds(intent_id))
    refunds = [refund for refund in listed if refund.status == "succeeded"]
    reversed_total = -await _sum_of(session, wallet_id, [f"refund:{r.id}" for r in refunds])
    refunded = 0
    for refund in refunds:
        refunded += refund.amount
        owed = grant.amount * refunded // row.amount - reversed_total
        key = f"refund:{refund.id}"
        if owed > 0 and await credits.find_entry(session, wallet_id, key) is None:
            reason = f"Refund {refund.id} of payment {intent_id}"
            await _reverse(session, account_id, key, refund.id, owed, reason, actor)
            reversed_total += owed
    for dispute in await stripe.list_disputes(intent_id):
        await _settle_dispute(
            session, account_id, wallet_id, dispute, grant.amount - reversed_total, actor
        )


async def _settle_dispute(
    session: AsyncSession,
    account_id: int,
    wallet_id: int,
    dispute: stripe_sdk.Dispute,
    unreversed: int,
    actor: str,
) -> None:
    dispute_id = dispute.id
    key = f"dispute:{dispute_id}"
    reversal = await credits.find_entry(session, wallet_id, key)
    if reversal is None and unreversed > 0:
        reason = f"Dispute {dispute_id} of payment {mirror.stripe_id(dispute.payment_intent)}"
        reversal = await _reverse(session, account_id, key, dispute_id, unreversed, reason, actor)
    if reversal is None or dispute.status != "won":
        return
    posting = Posting(
        kind=CreditEntryKind.GRANT,
        amount=-reversal.amount,
        reason=f"Dispute {dispute_id} won: credits restored",
        idempotency_key=f"dispute-won:{dispute_id}",
        actor=actor,
        source_ref=dispute_id,
    )
    await credits.post(session, account_id=account_id, posting=posting)


async def _reverse(
    session: AsyncSession,
    account_id: int,
    key: str,
    source: str,
    amount: int,
    reason: str,
    actor: str,
) -> CreditEntry:
    posting = Posting(
        kind=CreditEntryKind.REVERSAL,
        amount=-amount,
        reason=reason,
        idempotency_key=key,
        actor=actor,
        source_ref=source,
    )
    return (await credits.post(session, account_id=account_id, posting=posting)).entry


async def _sum_of(session: AsyncSession, wallet_id: int, keys: list[str]) -> int:
    if not keys:
        return 0
    total = await session.scalar(
        select(func.coalesce(func.sum(CreditEntry.amount), 0)).where(
            CreditEntry.credit_account_id == wallet_id, CreditEntry.idempotency_key.in_(keys)
        )
    )
    return int(total or 0)


async def _payment(session: AsyncSession, intent_id: str) -> PaymentTransaction | None:
    return await session.scalar(
        select(PaymentTransaction)
        .where(PaymentTransaction.stripe_payment_intent_id == intent_id)
        .execution_options(populate_existing=True)
    )
