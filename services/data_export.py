"""exportMyData (GDPR art. 15 and 20): a short-lived URL to a JSON archive of what the gateway
holds about the signed-in customer.

The URL carries a random token; only its sha256 is stored, so the table (a backup, a replica)
cannot be turned back into working URLs. The archive is built when it is fetched, not when it
is asked for: it is as fresh as the download and nothing personal waits in storage. Only the
owner may fetch it, and every download is audited.

The archive holds plain JSON: ISO 8601 datetimes, amounts as integers in the currency's minor
unit beside the record's `currency`, Stripe's own values for statuses. Payment methods are
brand, last four digits, expiry and type: nothing that could be a card number.
"""

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import (
    Account,
    CreditAccount,
    CreditEntry,
    DataExport,
    Invoice,
    InvoiceLine,
    Notification,
    PaymentMethod,
    PaymentTransaction,
    Plan,
    Subscription,
    TaxId,
)
from gateway.settings import Settings
from services import audit
from services.audit import Actor

FORMAT = "billing-gateway-export/1"
# 32 random bytes (43 URL-safe characters): never guessed, and useless without the owner's sign-in.
TOKEN_BYTES = 32


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_export(
    session: AsyncSession, *, account_id: int, settings: Settings, base_url: str, actor: Actor
) -> tuple[str, datetime]:
    """A new export of the account's data: its URL and when that stops working."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    expires_at = datetime.now(UTC) + timedelta(seconds=settings.data_export_ttl_seconds)
    async with session.begin():
        export = DataExport(
            account_id=account_id, token_hash=token_hash(token), expires_at=expires_at
        )
        session.add(export)
        await session.flush()
        audit.record(
            session,
            actor=actor.name,
            action="data_export.created",
            account_id=account_id,
            details={"export_id": export.id, "expires_at": expires_at.isoformat()},
            request_id=actor.request_id,
        )
    return f"{base_url.rstrip('/')}/exports/{token}", expires_at


async def archive_for(
    session: AsyncSession, *, token: str, account_id: int, actor: Actor
) -> dict[str, Any] | None:
    """The archive behind `token` when it is `account_id`'s and not expired, else None
    (unknown, expired and someone else's look the same). Each download is audited, and the
    first one marks the export downloaded, in the transaction that reads the archive."""
    async with session.begin():
        # One statement checks owner and expiry and marks the first download, so two
        # downloads at once cannot both see "not downloaded yet".
        export_id = await session.scalar(
            update(DataExport)
            .where(
                DataExport.token_hash == token_hash(token),
                DataExport.account_id == account_id,
                DataExport.expires_at > datetime.now(UTC),
            )
            .values(downloaded_at=func.coalesce(DataExport.downloaded_at, func.now()))
            .returning(DataExport.id)
        )
        if export_id is None:
            return None
        audit.record(
            session,
            actor=actor.name,
            action="data_export.downloaded",
            account_id=account_id,
            details={"export_id": export_id},
            request_id=actor.request_id,
        )
        return await build_archive(session, account_id)


async def build_archive(session: AsyncSession, account_id: int) -> dict[str, Any]:
    """Everything the gateway holds about the account, one query per table."""
    account = await session.get(Account, account_id, populate_existing=True)
    assert account is not None, "an export's account exists (exports go with it)"
    return {
        "format": FORMAT,
        "exportedAt": _iso(datetime.now(UTC)),
        "profile": _profile(account, await _rows(session, TaxId, account_id)),
        "subscriptions": await _subscriptions(session, account_id),
        "invoices": await _invoices(session, account_id),
        "payments": [_payment(row) for row in await _rows(session, PaymentTransaction, account_id)],
        "paymentMethods": [
            _payment_method(row) for row in await _rows(session, PaymentMethod, account_id)
        ],
        "creditLedger": await _credit_ledger(session, account_id),
        "notifications": [_notification(row) for row in await _notifications(session, account_id)],
    }


async def _rows(session: AsyncSession, model: Any, account_id: int) -> list[Any]:
    """The account's rows of a mirrored table, in the order Stripe made them."""
    rows = await session.scalars(
        select(model)
        .where(model.account_id == account_id)
        .order_by(model.stripe_created_at, model.id)
    )
    return list(rows)


def _profile(account: Account, tax_ids: list[TaxId]) -> dict[str, Any]:
    return {
        "userId": account.user_id,
        "email": account.email,
        "name": account.name,
        "address": account.address,
        "currency": account.currency,
        "taxIds": [
            {
                "type": row.type,
                "value": row.value,
                "country": row.country,
                "verification": row.verification,
                "createdAt": _iso(row.stripe_created_at),
                "deletedAt": _iso(row.deleted_at),
            }
            for row in tax_ids
        ],
        "notificationPreferences": {
            "receipts": account.notify_receipts,
            "paymentProblems": account.notify_payment_problems,
            "trialReminders": account.notify_trial_reminders,
        },
        "createdAt": _iso(account.created_at),
    }


async def _subscriptions(session: AsyncSession, account_id: int) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(Subscription, Plan)
        .join(Plan, Plan.id == Subscription.plan_id)
        .where(Subscription.account_id == account_id)
        .order_by(Subscription.stripe_created_at, Subscription.id)
    )
    return [_subscription(subscription, plan) for subscription, plan in rows]


def _subscription(row: Subscription, plan: Plan) -> dict[str, Any]:
    return {
        "id": row.stripe_subscription_id,
        "plan": {
            "productName": plan.product_name,
            "priceId": plan.stripe_price_id,
            "amount": plan.amount,
            "currency": plan.currency,
            "interval": _value(plan.interval),
            "intervalCount": plan.interval_count,
        },
        "status": row.status.value,
        "quantity": row.quantity,
        "currency": row.currency,
        "currentPeriodStart": _iso(row.current_period_start),
        "currentPeriodEnd": _iso(row.current_period_end),
        "cancelAtPeriodEnd": row.cancel_at_period_end,
        "cancelAt": _iso(row.cancel_at),
        "canceledAt": _iso(row.canceled_at),
        "endedAt": _iso(row.ended_at),
        "trialStart": _iso(row.trial_start),
        "trialEnd": _iso(row.trial_end),
        "discount": row.discount,
        "createdAt": _iso(row.stripe_created_at),
    }


async def _invoices(session: AsyncSession, account_id: int) -> list[dict[str, Any]]:
    invoices = await _rows(session, Invoice, account_id)
    lines = await session.scalars(
        select(InvoiceLine)
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .where(Invoice.account_id == account_id)
        .order_by(InvoiceLine.invoice_id, InvoiceLine.position)
    )
    lines_of: dict[int, list[dict[str, Any]]] = {row.id: [] for row in invoices}
    for line in lines:
        lines_of[line.invoice_id].append(_invoice_line(line))
    return [_invoice(row, lines_of[row.id]) for row in invoices]


def _invoice(row: Invoice, lines: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": row.stripe_invoice_id,
        "number": row.number,
        "subscriptionId": row.subscription_stripe_id,
        "status": row.status.value,
        "billingReason": row.billing_reason,
        "currency": row.currency,
        "subtotal": row.subtotal,
        "totalDiscount": row.total_discount,
        "tax": row.tax,
        "total": row.total,
        "amountDue": row.amount_due,
        "amountPaid": row.amount_paid,
        "amountRemaining": row.amount_remaining,
        "discounts": row.discounts,
        "taxes": row.taxes,
        "customerTaxIds": row.customer_tax_ids or [],
        "customerAddress": row.customer_address,
        "periodStart": _iso(row.period_start),
        "periodEnd": _iso(row.period_end),
        "dueDate": _iso(row.due_date),
        "paidAt": _iso(row.paid_at),
        "createdAt": _iso(row.stripe_created_at),
        "lines": lines,
    }


def _invoice_line(row: InvoiceLine) -> dict[str, Any]:
    return {
        "description": row.description,
        "amount": row.amount,
        "currency": row.currency,
        "quantity": row.quantity,
        "proration": row.proration,
        "tax": row.tax,
        "priceId": row.price_stripe_id,
        "periodStart": _iso(row.period_start),
        "periodEnd": _iso(row.period_end),
    }


def _payment(row: PaymentTransaction) -> dict[str, Any]:
    # The mirror keeps a payment's refunds as their total (no refunds table): that is all
    # there is to export of them.
    return {
        "id": row.stripe_payment_intent_id,
        "status": row.status.value,
        "currency": row.currency,
        "amount": row.amount,
        "amountReceived": row.amount_received,
        "amountRefunded": row.amount_refunded,
        "description": row.description,
        "failureCode": row.failure_code,
        "failureMessage": row.failure_message,
        "invoiceId": row.invoice_stripe_id,
        "createdAt": _iso(row.stripe_created_at),
    }


def _payment_method(row: PaymentMethod) -> dict[str, Any]:
    # Never more than this: an export is a file that travels.
    return {
        "type": row.type,
        "brand": row.brand,
        "last4": row.last4,
        "expMonth": row.exp_month,
        "expYear": row.exp_year,
    }


async def _credit_ledger(session: AsyncSession, account_id: int) -> list[dict[str, Any]]:
    entries = await session.scalars(
        select(CreditEntry)
        .join(CreditAccount, CreditAccount.id == CreditEntry.credit_account_id)
        .where(CreditAccount.account_id == account_id)
        # The wallet's lock orders its entries by id: the order balanceAfter follows.
        .order_by(CreditEntry.id)
    )
    return [
        {
            "kind": entry.kind.value,
            "amount": entry.amount,
            "balanceAfter": entry.balance_after,
            "reason": entry.reason,
            "createdAt": _iso(entry.created_at),
        }
        for entry in entries
    ]


async def _notifications(session: AsyncSession, account_id: int) -> list[Notification]:
    rows = await session.scalars(
        select(Notification)
        .where(Notification.account_id == account_id)
        .order_by(Notification.created_at, Notification.id)
    )
    return list(rows)


def _notification(row: Notification) -> dict[str, Any]:
    return {
        "kind": row.kind.value,
        "status": row.status.value,
        "subject": row.subject,
        "recipient": row.recipient,
        "createdAt": _iso(row.created_at),
        "sentAt": _iso(row.sent_at),
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _value(member: Any) -> str | None:
    return member.value if member is not None else None
