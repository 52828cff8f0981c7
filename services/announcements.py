"""What a change announces: mails to the customer (services/notifications.py) and the
gateway's events to the product's endpoints (services/product_webhooks.py), written in the
transaction of the change, so they exist exactly when it does.

Stripe's events are announced after their handler has applied them (services/webhooks/
dispatch.py), each by what the mirror then holds, and keyed by their cause (the Stripe object,
or the event for what may happen more than once), so a replayed, duplicated or coalesced event
announces nothing twice. Credit entries are announced by services/credits.py as they are
posted, whether a webhook or a mutation posts them. Bodies show objects as the GraphQL API
does (schema/plain.py)."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import (
    Account,
    CreditEntry,
    Invoice,
    NotificationKind,
    PaymentTransaction,
    Plan,
    Subscription,
)
from services import notifications, product_webhooks
from services.money import formatted

StripeDict = dict[str, Any]


@dataclass(frozen=True)
class Change:
    """One applied Stripe event, as announced: its object is as Stripe has it now."""

    event_id: str
    event_type: str
    object: StripeDict
    previous: StripeDict  # the event's previous_attributes
    grace_days: int


Announcer = Callable[[AsyncSession, Change], Awaitable[None]]
ANNOUNCERS: dict[str, Announcer] = {}


def announces(*event_types: str) -> Callable[[Announcer], Announcer]:
    def register(announcer: Announcer) -> Announcer:
        for event_type in event_types:
            ANNOUNCERS[event_type] = announcer
        return announcer

    return register


async def announce_event(
    session: AsyncSession, event: StripeDict, claimed: list[tuple[str, str]], grace_days: int
) -> None:
    """Announce what the applied events (`claimed`: their ids and types; one event may stand
    for several of its object's) changed; `event` carries the object as it now is."""
    data = event["data"]
    for event_id, event_type in claimed:
        announcer = ANNOUNCERS.get(event_type)
        if announcer is not None:
            previous = data.get("previous_attributes") or {}
            change = Change(event_id, event_type, data["object"], previous, grace_days)
            await announcer(session, change)


# --- invoices -----------------------------------------------------------------------------


@announces("invoice.paid")
async def invoice_paid(session: AsyncSession, change: Change) -> None:
    invoice = await _row(session, Invoice, Invoice.stripe_invoice_id, change.object["id"])
    if invoice is None:
        return
    await _publish(session, "invoice.paid", invoice.stripe_invoice_id, invoice.account_id, invoice)
    if invoice.amount_paid > 0:
        await notifications.notify(
            session,
            account_id=invoice.account_id,
            kind=NotificationKind.RECEIPT,
            cause=f"receipt:{invoice.stripe_invoice_id}",
            context=await _invoice_context(session, invoice)
            | {
                "paid_at": _date(invoice.paid_at or datetime.now(UTC)),
                "invoice_url": invoice.hosted_invoice_url,
            },
            invoice_stripe_id=invoice.stripe_invoice_id,
        )
    await _announce_access(session, invoice.account_id, change)


@announces("invoice.payment_failed", "invoice.payment_action_required")
async def invoice_not_paid(session: AsyncSession, change: Change) -> None:
    invoice = await _row(session, Invoice, Invoice.stripe_invoice_id, change.object["id"])
    if invoice is None:
        return
    failed = change.event_type == "invoice.payment_failed"
    if failed:
        await _publish(
            session, "invoice.payment_failed", change.event_id, invoice.account_id, invoice
        )
    await _announce_access(session, invoice.account_id, change)
    if invoice.amount_remaining == 0:
        return  # paid since (the event was coalesced with later ones): nothing to ask for
    context = await _invoice_context(session, invoice) | {"pay_url": invoice.hosted_invoice_url}
    if failed:
        context["decline_message"] = await session.scalar(
            select(PaymentTransaction.failure_message)
            .where(PaymentTransaction.invoice_stripe_id == invoice.stripe_invoice_id)
            .order_by(PaymentTransaction.stripe_created_at.desc(), PaymentTransaction.id.desc())
            .limit(1)
        )
    kind = NotificationKind.PAYMENT_FAILED if failed else NotificationKind.PAYMENT_ACTION_REQUIRED
    await notifications.notify(
        session,
        account_id=invoice.account_id,
        kind=kind,
        cause=f"{kind.value}:{change.event_id}",
        context=context,
    )


async def _invoice_context(session: AsyncSession, invoice: Invoice) -> dict[str, Any]:
    plan_name = None
    if invoice.subscription_stripe_id is not None:
        plan_name = await session.scalar(
            select(Plan.product_name)
            .join(Subscription, Subscription.plan_id == Plan.id)
            .where(Subscription.stripe_subscription_id == invoice.subscription_stripe_id)
        )
    return {
        "invoice_number": invoice.number or invoice.stripe_invoice_id,
        "amount": formatted(invoice.amount_due or invoice.total, invoice.currency),
        "plan_name": plan_name,
    }


# --- subscriptions ----------------------------------------------------------------------------


@announces("customer.subscription.created", "customer.subscription.updated")
async def subscription_changed(session: AsyncSession, change: Change) -> None:
    subscription = await _subscription(session, change)
    if subscription is None:
        return
    created = change.event_type == "customer.subscription.created"
    event_type = "subscription.created" if created else "subscription.updated"
    cause = subscription.stripe_subscription_id if created else change.event_id
    await _publish_subscription(session, event_type, cause, subscription)
    await _announce_access(session, subscription.account_id, change)


@announces("customer.subscription.deleted")
async def subscription_canceled(session: AsyncSession, change: Change) -> None:
    subscription = await _subscription(session, change)
    if subscription is None:
        return
    await _publish_subscription(
        session, "subscription.canceled", subscription.stripe_subscription_id, subscription
    )
    await notifications.notify(
        session,
        account_id=subscription.account_id,
        kind=NotificationKind.SUBSCRIPTION_CANCELED,
        cause=f"subscription_canceled:{subscription.stripe_subscription_id}",
        context={
            "plan_name": await _plan_name(session, subscription),
            "ended_at": _date(subscription.ended_at or datetime.now(UTC)),
        },
    )
    await _announce_access(session, subscription.account_id, change)


@announces("customer.subscription.trial_will_end")
async def trial_ending(session: AsyncSession, change: Change) -> None:
    subscription = await _subscription(session, change)
    if subscription is None or subscription.trial_end is None:
        return
    await notifications.notify(
        session,
        account_id=subscription.account_id,
        kind=NotificationKind.TRIAL_ENDING,
        cause=f"trial_ending:{subscription.stripe_subscription_id}:"
        f"{int(subscription.trial_end.timestamp())}",
        context={
            "plan_name": await _plan_name(session, subscription),
            "trial_end": _date(subscription.trial_end),
        },
    )


async def _subscription(session: AsyncSession, change: Change) -> Subscription | None:
    stripe_id = change.object["id"]
    return await _row(session, Subscription, Subscription.stripe_subscription_id, stripe_id)


async def _plan_name(session: AsyncSession, subscription: Subscription) -> str | None:
    return await session.scalar(select(Plan.product_name).where(Plan.id == subscription.plan_id))


async def _publish_subscription(
    session: AsyncSession, event_type: str, cause: str, subscription: Subscription
) -> None:
    from schema.billing import Plan as PlanType
    from schema.plain import plain

    plan = await session.get(Plan, subscription.plan_id)
    extra = {"plan": plain(PlanType.from_model(plan)) if plan is not None else None}
    await _publish(session, event_type, cause, subscription.account_id, subscription, extra)


# --- payments and refunds -----------------------------------------------------------------


@announces("payment_intent.succeeded", "payment_intent.payment_failed")
async def payment_changed(session: AsyncSession, change: Change) -> None:
    stripe_id = change.object["id"]
    payment = await _row(
        session, PaymentTransaction, PaymentTransaction.stripe_payment_intent_id, stripe_id
    )
    if payment is None:
        return
    succeeded = change.event_type == "payment_intent.succeeded"
    event_type = "payment.succeeded" if succeeded else "payment.failed"
    cause = stripe_id if succeeded else change.event_id
    await _publish(session, event_type, cause, payment.account_id, payment)


@announces("charge.refunded")
async def refund_issued(session: AsyncSession, change: Change) -> None:
    charge = change.object
    payment = await session.scalar(
        select(PaymentTransaction).where(
            PaymentTransaction.stripe_payment_intent_id == charge.get("payment_intent")
        )
    )
    before = change.previous.get("amount_refunded", 0)
    refunded = (charge.get("amount_refunded") or 0) - before
    if payment is None or refunded <= 0:
        return
    await notifications.notify(
        session,
        account_id=payment.account_id,
        kind=NotificationKind.REFUND_ISSUED,
        cause=f"refund_issued:{change.event_id}",
        context={
            "amount": formatted(refunded, payment.currency),
            "payment_description": payment.description,
        },
    )


# --- credits and access -----------------------------------------------------------------------


async def credits_posted(session: AsyncSession, *, account_id: int, entry: CreditEntry) -> None:
    """credits.updated, for an entry just appended to the account's ledger."""
    await _publish(
        session,
        "credits.updated",
        f"credit_entry:{entry.id}",
        account_id,
        entry,
        {"balance": str(entry.balance_after)},
    )


async def _announce_access(session: AsyncSession, account_id: int, change: Change) -> None:
    """access.updated when the account's access is not what was last announced."""
    from schema.access import BillingAccess
    from schema.plain import plain
    from services import access  # it imports services.credits, which imports this

    now = await access.access_for_account(
        session=session,
        account_id=account_id,
        grace_days=change.grace_days,
        now=datetime.now(UTC),
    )
    until = now.until.isoformat() if now.until else ""
    summary = f"{now.status.value} {until}".strip()
    changed = await session.scalar(
        update(Account)
        .where(Account.id == account_id, Account.announced_access.is_distinct_from(summary))
        .values(announced_access=summary)
        .returning(Account.id)
    )
    if changed is not None:
        data = plain(BillingAccess.of(now))
        await _send(session, "access.updated", change.event_id, account_id, data)


# --- shared -----------------------------------------------------------------------------------


async def _publish(
    session: AsyncSession,
    event_type: str,
    cause: str,
    account_id: int,
    row: Any,
    extra: dict[str, Any] | None = None,
) -> None:
    from schema.plain import plain

    await _send(session, event_type, cause, account_id, plain(_api_type(row)) | (extra or {}))


async def _send(
    session: AsyncSession, event_type: str, cause: str, account_id: int, data: dict[str, Any]
) -> None:
    from schema.ids import to_global_id

    user_id = await session.scalar(select(Account.user_id).where(Account.id == account_id))
    customer = {"id": to_global_id("Customer", account_id), "userId": user_id}
    await product_webhooks.publish(
        session,
        type=event_type,
        cause=f"{event_type}:{cause}",
        account_id=account_id,
        data=data | {"customer": customer},
    )


def _api_type(row: Any) -> Any:
    """The GraphQL type showing a mirror row."""
    from schema.billing import Invoice as InvoiceType
    from schema.billing import PaymentTransaction as PaymentType
    from schema.billing import Subscription as SubscriptionType
    from schema.credits import CreditEntry as CreditEntryType

    types: dict[type, Any] = {
        Invoice: InvoiceType,
        Subscription: SubscriptionType,
        PaymentTransaction: PaymentType,
        CreditEntry: CreditEntryType,
    }
    return types[type(row)].from_model(row)


async def _row(session: AsyncSession, model: Any, column: Any, stripe_id: str) -> Any:
    return await session.scalar(select(model).where(column == stripe_id))


def _date(value: datetime) -> str:
    return f"{value.day} {value:%B %Y}"
