"""Stripe objects written into the PostgreSQL mirror, by their Stripe ids.

Mutations call these with what Stripe just answered (write-through), and the webhook
handlers with what events carry; both land on the same rows. `observed_at` is when the
object was seen as it is: a row changes only when what arrives is at least as new as
what it holds, so an old event never overwrites newer state. Each applied change of a
customer's object is published (services/live.py) in the same transaction."""

import json
from datetime import UTC, datetime
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.util import identity_key
from sqlalchemy.types import TypeDecorator

from db import models, sealed
from db.database import driver_of
from db.models import (
    Account,
    Invoice,
    PaymentMethod,
    PaymentTransaction,
    Plan,
    Subscription,
)
from services import discounts, taxes
from services.live import UpdateKind, publish
from services.stripe.client import StripeApi

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


class Mirrored(NamedTuple):
    """What a mirrored row's handler needs first: its id, owner and the last change applied."""

    id: int
    account_id: int | None
    last_event_at: datetime | None
    last_event_id: str | None


@cache
def _mirrored_sql(table: str, key: str) -> str:
    owner = "id" if table == "accounts" else "account_id"
    return f"SELECT id, {owner}, last_event_at, last_event_id FROM {table} WHERE {key} = $1"


async def mirrored(
    session: AsyncSession, model: type[models.Base], key: str, value: str | None
) -> Mirrored | None:
    """A mirrored row by one of its Stripe ids (`key` its column), None when there is none."""
    if value is None:
        return None
    driver = await driver_of(session)
    row = await driver.fetchrow(_mirrored_sql(model.__tablename__, key), value)
    return Mirrored(*row) if row is not None else None


@cache
def _upsert_sql(table: Table, key: str, columns: tuple[str, ...]) -> str:
    """Insert, or update unless the row holds newer state; RETURNING the id only if applied.
    Built once per table and set of columns, prepared once per connection."""
    values = ", ".join(
        f"${n}::jsonb" if isinstance(table.c[name].type, JSONB) else f"${n}"
        for n, name in enumerate(columns, start=1)
    )
    changes = ", ".join(f"{name} = excluded.{name}" for name in columns if name != key)
    return (
        f"INSERT INTO {table.name} AS current ({', '.join(columns)}) VALUES ({values}) "
        f"ON CONFLICT ({key}) DO UPDATE SET {changes}, updated_at = now() "
        "WHERE current.last_event_at IS NULL OR current.last_event_at <= excluded.last_event_at "
        "RETURNING id"
    )


async def _upsert(
    session: AsyncSession,
    model: type[models.Base],
    key: str,
    values: dict[str, Any],
    observed_at: datetime,
    event_id: str | None,
) -> tuple[int, bool]:
    """Insert or update by Stripe id unless the row holds newer state: the row's id, and
    whether this state was applied (False: the row holds newer state)."""
    table: Table = model.__table__  # type: ignore[assignment]
    values = values | {"last_event_at": observed_at, "last_event_id": event_id}
    arguments = [_bound(table.c[name].type, value) for name, value in values.items()]
    driver = await driver_of(session)
    row_id = await driver.fetchval(_upsert_sql(table, key, tuple(values)), *arguments)
    if row_id is not None:
        if model in UPDATE_KINDS:
            await publish(
                session, UPDATE_KINDS[model], account_id=values["account_id"], row_id=row_id
            )
        return row_id, True
    # Not every mirrored table has an owner (plans): read the id alone.
    existing = await driver.fetchval(_row_id_sql(table.name, key), values[key])
    assert existing is not None, "a conflicting row exists"
    return existing, False


def _bound(column_type: Any, value: Any) -> Any:
    """A value as the driver takes it for the column: JSON as text, personal data sealed."""
    if isinstance(column_type, TypeDecorator):
        return column_type.process_bind_param(value, None)
    return json.dumps(value) if isinstance(value, dict | list) else value


@cache
def _row_id_sql(table: str, key: str) -> str:
    return f"SELECT id FROM {table} WHERE {key} = $1"


ACCOUNT_ID_OF_CUSTOMER = "SELECT id FROM accounts WHERE stripe_customer_id = $1"


async def account_id_for_customer(session: AsyncSession, customer_id: str | None) -> int | None:
    """Our account's id of a Stripe customer, None for a customer that is not ours."""
    if customer_id is None:
        return None
    driver = await driver_of(session)
    return await driver.fetchval(ACCOUNT_ID_OF_CUSTOMER, customer_id)


PLAN_ID_OF_PRICE = "SELECT id FROM plans WHERE stripe_price_id = $1"


async def plan_id_for_price(session: AsyncSession, price_id: str) -> int | None:
    driver = await driver_of(session)
    return await driver.fetchval(PLAN_ID_OF_PRICE, price_id)


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
    options = price.get("currency_options")
    if options is not None:  # only when expanded: otherwise keep what the mirror has
        values["other_amounts"] = {
            currency: option["unit_amount"]
            for currency, option in options.items()
            if currency != price["currency"] and option.get("unit_amount") is not None
        }
    row_id, _ = await _upsert(session, Plan, "stripe_price_id", values, observed_at, event_id)
    return row_id


# An account takes a customer's state unless it holds newer; RETURNING the id if it did.
UPDATE_CUSTOMER = """
UPDATE accounts
SET default_payment_method_stripe_id = $2, email = coalesce($3, email),
    email_index = coalesce($9, email_index), name = coalesce($4, name), address = $7,
    currency = coalesce($8, currency),
    last_event_at = $5, last_event_id = $6, updated_at = now()
WHERE stripe_customer_id = $1 AND (last_event_at IS NULL OR last_event_at <= $5)
RETURNING id
"""
# Stripe cancels a deleted customer's subscriptions and voids its invoices around the
# deletion, and those events must still find the account; Stripe never reuses an id.
MARK_CUSTOMER_DELETED = """
UPDATE accounts
SET stripe_deleted_at = coalesce(stripe_deleted_at, $2), default_payment_method_stripe_id = NULL,
    last_event_at = greatest(last_event_at, $2),
    last_event_id = CASE WHEN last_event_at IS NULL OR last_event_at <= $2 THEN $3
                         ELSE last_event_id END,
    updated_at = now()
WHERE stripe_customer_id = $1
RETURNING id
"""


async def upsert_customer(
    session: AsyncSession,
    customer: StripeDict,
    *,
    observed_at: datetime,
    event_id: str | None = None,
) -> None:
    """Copy a Stripe customer's default payment method, email, name, address and currency
    onto its account."""
    settings = customer.get("invoice_settings") or {}
    email = customer.get("email") or None
    driver = await driver_of(session)
    account_id = await driver.fetchval(
        UPDATE_CUSTOMER,
        customer["id"],
        stripe_id(settings.get("default_payment_method")),
        sealed.seal(email),
        sealed.seal(customer.get("name") or None),
        observed_at,
        event_id,
        sealed.seal_json(customer.get("address") or None),
        customer.get("currency") or None,
        sealed.keyring().email_index(email),
    )
    _expire_loaded(session, Account, account_id)


async def mark_customer_deleted(
    session: AsyncSession, customer_id: str, *, observed_at: datetime, event_id: str | None
) -> None:
    """Mark the account's customer deleted, keeping its id (and its card default cleared)."""
    driver = await driver_of(session)
    account_id = await driver.fetchval(MARK_CUSTOMER_DELETED, customer_id, observed_at, event_id)
    _expire_loaded(session, Account, account_id)


def _expire_loaded(session: AsyncSession, model: type[models.Base], row_id: int | None) -> None:
    """Have the session reload a row it holds that a driver statement changed."""
    if row_id is None:
        return
    loaded = session.identity_map.get(identity_key(model, row_id))
    if loaded is not None:
        session.expire(loaded)


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
    row_id, _ = await _upsert(
        session, PaymentMethod, "stripe_payment_method_id", values, observed_at, event_id
    )
    return row_id


SUBSCRIPTION_STATUS = "SELECT status FROM subscriptions WHERE stripe_subscription_id = $1"
SET_ACCOUNT_CURRENCY = (
    "UPDATE accounts SET currency = $2 WHERE id = $1 AND currency IS NULL RETURNING id"
)


async def upsert_subscription(
    session: AsyncSession,
    stripe: StripeApi,
    subscription: StripeDict,
    account_id: int,
    plan_id: int,
    *,
    observed_at: datetime,
    event_id: str | None = None,
) -> int:
    item = subscription["items"]["data"][0]
    described = await discounts.described(session, stripe, subscription)
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
        "currency": subscription.get("currency"),
        "discount": discounts.subscription_discount(subscription, described),
        "stripe_created_at": timestamp(subscription["created"]),
    }
    driver = await driver_of(session)
    status_before = await driver.fetchval(SUBSCRIPTION_STATUS, subscription["id"])
    row_id, applied = await _upsert(
        session, Subscription, "stripe_subscription_id", values, observed_at, event_id
    )
    if applied and values["currency"]:
        # A subscription's currency is its customer's from then on (Stripe bills in one).
        _expire_loaded(
            session,
            Account,
            await driver.fetchval(SET_ACCOUNT_CURRENCY, account_id, values["currency"]),
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
    stripe: StripeApi,
    invoice: StripeDict,
    account_id: int,
    *,
    observed_at: datetime,
    event_id: str | None = None,
) -> int:
    """The invoice with its lines, discounts and taxes; Stripe is read only for a discount or
    tax rate the mirror has never seen (services/discounts.py, services/taxes.py)."""
    described_taxes = await taxes.described_taxes(session, stripe, invoice)
    described_discounts = await discounts.described(session, stripe, invoice)
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
        "total_discount": sum(
            entry["amount"] for entry in invoice.get("total_discount_amounts") or []
        ),
        "tax": sum(tax["amount"] for tax in described_taxes) if described_taxes else None,
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
        "discounts": discounts.invoice_discounts(invoice, described_discounts),
        "taxes": described_taxes,
        "customer_tax_ids": [
            {"type": entry["type"], "value": entry["value"]}
            for entry in invoice.get("customer_tax_ids") or []
        ]
        or None,
        "customer_address": invoice.get("customer_address"),
        "stripe_created_at": timestamp(invoice["created"]),
    }
    row_id, applied = await _upsert(
        session, Invoice, "stripe_invoice_id", values, observed_at, event_id
    )
    # The lines belong to the state applied: an older snapshot's lines must not win either.
    if applied and invoice.get("lines") is not None:
        await _replace_lines(session, row_id, invoice["lines"]["data"])
    return row_id


DELETE_LINES = "DELETE FROM invoice_lines WHERE invoice_id = $1"
INSERT_LINES = """
INSERT INTO invoice_lines (invoice_id, stripe_line_id, position, description, amount, currency,
    quantity, proration, price_stripe_id, period_start, period_end, tax)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
"""


async def _replace_lines(
    session: AsyncSession, invoice_row_id: int, lines: list[StripeDict]
) -> None:
    driver = await driver_of(session)
    await driver.execute(DELETE_LINES, invoice_row_id)
    await driver.executemany(
        INSERT_LINES,
        [
            (
                invoice_row_id,
                line["id"],
                position,
                line.get("description"),
                line["amount"],
                line["currency"],
                line.get("quantity"),
                line_is_proration(line),
                _line_price(line),
                timestamp((line.get("period") or {}).get("start")),
                timestamp((line.get("period") or {}).get("end")),
                taxes.line_tax(line),
            )
            for position, line in enumerate(lines)
        ],
    )


def line_is_proration(line: StripeDict) -> bool:
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
    row_id, applied = await _upsert(
        session, PaymentTransaction, "stripe_payment_intent_id", values, observed_at, event_id
    )
    if invoice_id is not None and not applied:
        # The row holds newer state (a concurrent re-read), which may lack the link; a link
        # never changes once made, so it holds whatever the order.
        await link_transaction(session, intent["id"], invoice_id)
    return row_id


LINK_TRANSACTION = """
UPDATE payment_transactions SET invoice_stripe_id = $2 WHERE stripe_payment_intent_id = $1
RETURNING id
"""


async def link_transaction(session: AsyncSession, intent_id: str, invoice_id: str) -> bool:
    """Point a mirrored payment at the invoice it paid; False when it is not mirrored."""
    driver = await driver_of(session)
    return await driver.fetchval(LINK_TRANSACTION, intent_id, invoice_id) is not None


# A deletion is final: no state seen earlier (or in the same second) brings a tax id back.
UPSERT_TAX_ID = """
INSERT INTO tax_ids AS current (stripe_tax_id, account_id, type, value, country, verification,
    deleted_at, stripe_created_at, last_event_at, last_event_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (stripe_tax_id) DO UPDATE SET verification = excluded.verification,
    deleted_at = coalesce(current.deleted_at, excluded.deleted_at),
    last_event_at = excluded.last_event_at, last_event_id = excluded.last_event_id,
    updated_at = now()
WHERE current.last_event_at IS NULL OR current.last_event_at <= excluded.last_event_at
"""


async def upsert_tax_id(
    session: AsyncSession,
    tax_id: StripeDict,
    account_id: int,
    *,
    observed_at: datetime,
    event_id: str | None = None,
    deleted: bool = False,
) -> int:
    driver = await driver_of(session)
    await driver.execute(
        UPSERT_TAX_ID,
        tax_id["id"],
        account_id,
        tax_id["type"],
        sealed.seal(tax_id["value"]),
        tax_id.get("country"),
        (tax_id.get("verification") or {}).get("status") or "unavailable",
        observed_at if deleted else None,
        timestamp(tax_id.get("created")) or observed_at,
        observed_at,
        event_id,
    )
    return await driver.fetchval(_row_id_sql("tax_ids", "stripe_tax_id"), tax_id["id"])


# Deleted is final: an older event arriving later must not bring the tax id back.
MARK_TAX_ID_DELETED = """
UPDATE tax_ids
SET deleted_at = coalesce(deleted_at, $2), last_event_at = greatest(last_event_at, $2),
    updated_at = now()
WHERE stripe_tax_id = $1
"""


async def mark_tax_id_deleted(session: AsyncSession, tax_id: str, *, observed_at: datetime) -> None:
    driver = await driver_of(session)
    await driver.execute(MARK_TAX_ID_DELETED, tax_id, observed_at)
