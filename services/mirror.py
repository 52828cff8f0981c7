"""Stripe objects written into the PostgreSQL mirror, by their Stripe ids.

Mutations call these with what Stripe just answered (write-through), and the webhook
handlers with what events carry; both land on the same rows. `observed_at` is when the
object was seen as it is: a row changes only when what arrives is at least as new as
what it holds, so an old event never overwrites newer state. Each applied change of a
customer's object is published (services/live.py) in the same transaction."""

from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import Table, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db import models
from db.models import (
    Account,
    Invoice,
    InvoiceLine,
    PaymentMethod,
    PaymentTransaction,
    Plan,
    Subscription,
)
from services.live import UpdateKind, publish

StripeDict = dict[str, Any]

# The live update each mirrored table announces when a change to one of its rows applied.
UPDATE_KINDS: dict[type[models.Base], UpdateKind] = {
    Subscription: UpdateKind.SUBSCRIPTION_UPDATED,
    Invoice: UpdateKind.INVOICE_UPDATED,
    PaymentTransaction: UpdateKind.PAYMENT_UPDATED,
    PaymentMethod: UpdateKind.PAYMENT_METHOD_UPDATED,
}


def timestamp(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


def stripe_id(value: Any) -> str | None:
    """The id of an expandable field, expanded or not."""
    if isinstance(value, dict):
        return value.get("id")
    return value


@cache
def _excluded(table: Table) -> Any:
    """The `excluded` row of an upsert into `table`: built once, it costs a column copy."""
    return insert(table).excluded


async def _upsert(
    session: AsyncSession,
    model: type[models.Base],
    key: str,
    values: dict[str, Any],
    observed_at: datetime,
    event_id: str | None,
) -> int:
    """Insert or update by Stripe id unless the row holds newer state; the row's id."""
    row_id, _ = await _upsert_applied(session, model, key, values, observed_at, event_id)
    return row_id


async def _upsert_applied(
    session: AsyncSession,
    model: type[models.Base],
    key: str,
    values: dict[str, Any],
    observed_at: datetime,
    event_id: str | None,
) -> tuple[int, bool]:
    """The row's id, and whether this state was applied (False: the row holds newer state)."""
    table: Table = model.__table__  # type: ignore[assignment]
    values = values | {"last_event_at": observed_at, "last_event_id": event_id}
    inserting = insert(table).values(values)
    excluded = _excluded(table)
    changes: dict[str, Any] = {name: excluded[name] for name in values if name != key}
    changes["updated_at"] = func.now()
    current = table.c.last_event_at
    upsert = inserting.on_conflict_do_update(
        index_elements=[table.c[key]],
        set_=changes,
        where=or_(current.is_(None), current <= excluded.last_event_at),
    ).returning(table.c.id)
    row_id = await session.scalar(upsert)
    if row_id is not None:
        if model in UPDATE_KINDS:
            await publish(
                session, UPDATE_KINDS[model], account_id=values["account_id"], row_id=row_id
            )
        return row_id, True
    existing = await session.scalar(select(table.c.id).where(table.c[key] == values[key]))
    assert existing is not None, "a conflicting row exists"
    return existing, False


async def account_for_customer(session: AsyncSession, customer_id: str | None) -> Account | None:
    if customer_id is None:
        return None
    return await session.scalar(select(Account).where(Account.stripe_customer_id == customer_id))


ACCOUNT_ID_OF_CUSTOMER = text("SELECT id FROM accounts WHERE stripe_customer_id = :customer")


async def account_id_for_customer(session: AsyncSession, customer_id: str | None) -> int | None:
    """Our account's id of a Stripe customer, None for a customer that is not ours."""
    if customer_id is None:
        return None
    return await session.scalar(ACCOUNT_ID_OF_CUSTOMER, {"customer": customer_id})


async def plan_for_price(session: AsyncSession, price_id: str) -> Plan | None:
    return await session.scalar(select(Plan).where(Plan.stripe_price_id == price_id))


async def upsert_plan(
    session: AsyncSession,
    price: StripeDict,
    product: StripeDict,
    *,
    observed_at: datetime,
    event_id: str | None = None,
) -> int:
    recurring = price.get("recurring")
    credits = (price.get("metadata") or {}).get("credits") or (product.get("metadata") or {}).get(
        "credits"
    )
    values = {
        "stripe_price_id": price["id"],
        "stripe_product_id": product["id"],
        "product_name": product["name"],
        "description": product.get("description"),
        "kind": models.PriceKind.RECURRING if recurring else models.PriceKind.ONE_TIME,
        "amount": price.get("unit_amount") or 0,
        "currency": price["currency"],
        "interval": recurring["interval"] if recurring else None,
        "interval_count": recurring["interval_count"] if recurring else None,
        "trial_days": recurring.get("trial_period_days") if recurring else None,
        "credits": int(credits) if credits and str(credits).isdigit() else None,
        "active": bool(price["active"] and product.get("active", True)),
        "stripe_created_at": timestamp(price["created"]),
    }
    return await _upsert(session, Plan, "stripe_price_id", values, observed_at, event_id)


async def upsert_customer(
    session: AsyncSession,
    customer: StripeDict,
    *,
    observed_at: datetime,
    event_id: str | None = None,
) -> None:
    """Copy a Stripe customer's default payment method, email and name onto its account."""
    account = await account_for_customer(session, customer["id"])
    if account is None or (account.last_event_at and account.last_event_at > observed_at):
        return
    settings = customer.get("invoice_settings") or {}
    account.default_payment_method_stripe_id = stripe_id(settings.get("default_payment_method"))
    account.email = customer.get("email") or account.email
    account.name = customer.get("name") or account.name
    account.last_event_at, account.last_event_id = observed_at, event_id


async def upsert_payment_method(
    session: AsyncSession,
    method: StripeDict,
    account_id: int,
    *,
    observed_at: datetime,
    event_id: str | None = None,
) -> int:
    card = method.get("card") or {}
    values = {
        "stripe_payment_method_id": method["id"],
        "account_id": account_id,
        "type": method["type"],
        "brand": card.get("brand"),
        "last4": card.get("last4"),
        "exp_month": card.get("exp_month"),
        "exp_year": card.get("exp_year"),
        "detached_at": None if method.get("customer") else observed_at,
        "stripe_created_at": timestamp(method["created"]),
    }
    return await _upsert(
        session, PaymentMethod, "stripe_payment_method_id", values, observed_at, event_id
    )


async def upsert_subscription(
    session: AsyncSession,
    subscription: StripeDict,
    account_id: int,
    plan_id: int,
    *,
    observed_at: datetime,
    event_id: str | None = None,
) -> int:
    item = subscription["items"]["data"][0]
    values = {
        "stripe_subscription_id": subscription["id"],
        "account_id": account_id,
        "plan_id": plan_id,
        "status": models.SubscriptionStatus(subscription["status"]),
        "quantity": item.get("quantity") or 1,
        "current_period_start": timestamp(item["current_period_start"]),
        "current_period_end": timestamp(item["current_period_end"]),
        "cancel_at_period_end": bool(subscription.get("cancel_at_period_end")),
        "cancel_at": timestamp(subscription.get("cancel_at")),
        "canceled_at": timestamp(subscription.get("canceled_at")),
        "ended_at": timestamp(subscription.get("ended_at")),
        "trial_start": timestamp(subscription.get("trial_start")),
        "trial_end": timestamp(subscription.get("trial_end")),
        "latest_invoice_stripe_id": stripe_id(subscription.get("latest_invoice")),
        "default_payment_method_stripe_id": stripe_id(subscription.get("default_payment_method")),
        "stripe_created_at": timestamp(subscription["created"]),
    }
    status_before = await session.scalar(
        select(Subscription.status).where(Subscription.stripe_subscription_id == subscription["id"])
    )
    row_id, applied = await _upsert_applied(
        session, Subscription, "stripe_subscription_id", values, observed_at, event_id
    )
    if applied and values["status"] != status_before:
        # Access follows the subscription's status: announce it only when that moved.
        await publish(session, UpdateKind.ACCESS_UPDATED, account_id=account_id, row_id=row_id)
    return row_id


def subscription_price_id(subscription: StripeDict) -> str:
    return stripe_id(subscription["items"]["data"][0]["price"])  # type: ignore[return-value]


def invoice_subscription_id(invoice: StripeDict) -> str | None:
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return stripe_id(details.get("subscription"))


async def upsert_invoice(
    session: AsyncSession,
    invoice: StripeDict,
    account_id: int,
    *,
    observed_at: datetime,
    event_id: str | None = None,
) -> int:
    taxes = invoice.get("total_taxes")
    transitions = invoice.get("status_transitions") or {}
    values = {
        "stripe_invoice_id": invoice["id"],
        "account_id": account_id,
        "subscription_stripe_id": invoice_subscription_id(invoice),
        "number": invoice.get("number"),
        "status": models.InvoiceStatus(invoice["status"]),
        "billing_reason": invoice.get("billing_reason"),
        "currency": invoice["currency"],
        "subtotal": invoice.get("subtotal") or 0,
        "tax": sum(tax["amount"] for tax in taxes) if taxes else None,
        "total": invoice.get("total") or 0,
        "amount_due": invoice.get("amount_due") or 0,
        "amount_paid": invoice.get("amount_paid") or 0,
        "amount_remaining": invoice.get("amount_remaining") or 0,
        "period_start": timestamp(invoice.get("period_start")),
        "period_end": timestamp(invoice.get("period_end")),
        "due_date": timestamp(invoice.get("due_date")),
        "paid_at": timestamp(transitions.get("paid_at")),
        "hosted_invoice_url": invoice.get("hosted_invoice_url"),
        "stripe_pdf_url": invoice.get("invoice_pdf"),
        "stripe_created_at": timestamp(invoice["created"]),
    }
    row_id, applied = await _upsert_applied(
        session, Invoice, "stripe_invoice_id", values, observed_at, event_id
    )
    # The lines belong to the state applied: an older snapshot's lines must not win either.
    if applied and invoice.get("lines") is not None:
        await _replace_lines(session, row_id, invoice["lines"]["data"])
    return row_id


async def _replace_lines(
    session: AsyncSession, invoice_row_id: int, lines: list[StripeDict]
) -> None:
    await session.execute(delete(InvoiceLine).where(InvoiceLine.invoice_id == invoice_row_id))
    for position, line in enumerate(lines):
        session.add(
            InvoiceLine(
                invoice_id=invoice_row_id,
                stripe_line_id=line["id"],
                position=position,
                description=line.get("description"),
                amount=line["amount"],
                currency=line["currency"],
                quantity=line.get("quantity"),
                proration=_line_is_proration(line),
                price_stripe_id=_line_price(line),
                period_start=timestamp((line.get("period") or {}).get("start")),
                period_end=timestamp((line.get("period") or {}).get("end")),
            )
        )
    await session.flush()


def _line_is_proration(line: StripeDict) -> bool:
    parent = line.get("parent") or {}
    details = parent.get("subscription_item_details") or parent.get("invoice_item_details") or {}
    return bool(details.get("proration"))


def _line_price(line: StripeDict) -> str | None:
    details = (line.get("pricing") or {}).get("price_details") or {}
    return stripe_id(details.get("price"))


def invoice_payment_intents(invoice: StripeDict) -> list[str]:
    """The PaymentIntents of an invoice's expanded `payments`."""
    payments = (invoice.get("payments") or {}).get("data") or []
    return [
        intent
        for payment in payments
        if (intent := stripe_id((payment.get("payment") or {}).get("payment_intent")))
    ]


async def upsert_transaction(
    session: AsyncSession,
    intent: StripeDict,
    account_id: int,
    *,
    observed_at: datetime,
    invoice_id: str | None = None,
    event_id: str | None = None,
) -> int:
    charge = intent.get("latest_charge")
    error = intent.get("last_payment_error") or {}
    values = {
        "stripe_payment_intent_id": intent["id"],
        "account_id": account_id,
        "status": models.PaymentStatus(intent["status"]),
        "amount": intent["amount"],
        "amount_received": intent.get("amount_received") or 0,
        "currency": intent["currency"],
        "description": intent.get("description"),
        "failure_code": error.get("decline_code") or error.get("code"),
        "failure_message": error.get("message"),
        "payment_method_stripe_id": stripe_id(intent.get("payment_method")),
        "latest_charge_stripe_id": stripe_id(charge),
        "metadata": intent.get("metadata") or {},
        "stripe_created_at": timestamp(intent["created"]),
    }
    if isinstance(charge, dict):
        # Refunds and the receipt live on the charge; without it expanded, keep what we have.
        values["amount_refunded"] = charge.get("amount_refunded") or 0
        values["receipt_url"] = charge.get("receipt_url")
        values["payment_method_stripe_id"] = values["payment_method_stripe_id"] or charge.get(
            "payment_method"
        )
    if invoice_id is not None:
        values["invoice_stripe_id"] = invoice_id
    row_id, applied = await _upsert_applied(
        session, PaymentTransaction, "stripe_payment_intent_id", values, observed_at, event_id
    )
    if invoice_id is not None and not applied:
        # The row holds newer state (a concurrent re-read), which may lack the link; a link
        # never changes once made, so it holds whatever the order.
        await session.execute(
            update(PaymentTransaction)
            .where(PaymentTransaction.id == row_id)
            .values(invoice_stripe_id=invoice_id)
        )
    return row_id
