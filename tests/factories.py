"""Rows for tests, inserted through the models with sensible defaults."""

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from db.database import Database
from db.models import (
    Account,
    BillingInterval,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    PaymentMethod,
    PaymentStatus,
    PaymentTransaction,
    Plan,
    PriceKind,
    Subscription,
    SubscriptionStatus,
)

_sequence = itertools.count(1)


async def add(database: Database, row: Any) -> Any:
    async with database.session() as session, session.begin():
        session.add(row)
    return row


def plan(**overrides: Any) -> Plan:
    n = next(_sequence)
    values: dict[str, Any] = {
        "stripe_price_id": f"price_test_{n}",
        "stripe_product_id": f"prod_test_{n}",
        "product_name": f"Plan {n}",
        "kind": PriceKind.RECURRING,
        "amount": 1000,
        "currency": "usd",
        "interval": BillingInterval.MONTH,
        "interval_count": 1,
        "active": True,
        "stripe_created_at": datetime.now(UTC),
    }
    return Plan(**(values | overrides))


def account(**overrides: Any) -> Account:
    n = next(_sequence)
    return Account(**({"user_id": f"user-{n}", "email": f"user{n}@example.com"} | overrides))


def payment_method(account_id: int, **overrides: Any) -> PaymentMethod:
    n = next(_sequence)
    values: dict[str, Any] = {
        "stripe_payment_method_id": f"pm_test_{n}",
        "account_id": account_id,
        "type": "card",
        "brand": "visa",
        "last4": "4242",
        "exp_month": 12,
        "exp_year": 2030,
        "stripe_created_at": datetime.now(UTC),
    }
    return PaymentMethod(**(values | overrides))


async def add_all(database: Database, rows: list[Any]) -> list[Any]:
    async with database.session() as session, session.begin():
        session.add_all(rows)
    return rows


async def customer_with_billing(
    database: Database,
    *,
    user_id: str,
    plans: list[Plan],
    subscriptions: int,
    invoices: int,
    lines: int,
    cards: int,
    created_at: datetime | None = None,
) -> Account:
    """An account with cards (the first its default), subscriptions on `plans` in turn (the
    newest active, the rest canceled), paid invoices of the newest subscription with `lines`
    lines each, and a succeeded payment of each invoice: one transaction, ids from one flush."""
    now = created_at or datetime.now(UTC)
    async with database.session() as session, session.begin():
        account = Account(
            user_id=user_id, email=f"{user_id}@example.com", name=user_id.title(), created_at=now
        )
        session.add(account)
        await session.flush()
        saved = [payment_method(account.id, stripe_created_at=now) for _ in range(cards)]
        if saved:
            account.default_payment_method_stripe_id = saved[0].stripe_payment_method_id
        subs = [
            Subscription(
                stripe_subscription_id=f"sub_{user_id}_{n}",
                account_id=account.id,
                plan_id=plans[n % len(plans)].id,
                status=SubscriptionStatus.ACTIVE if n == 0 else SubscriptionStatus.CANCELED,
                current_period_start=now - timedelta(days=1),
                current_period_end=now + timedelta(days=29),
                latest_invoice_stripe_id=f"in_{user_id}_0" if n == 0 and invoices else None,
                stripe_created_at=now - timedelta(days=n),
            )
            for n in range(subscriptions)
        ]
        bills = [
            Invoice(
                stripe_invoice_id=f"in_{user_id}_{n}",
                account_id=account.id,
                subscription_stripe_id=subs[0].stripe_subscription_id if subs else None,
                number=f"INV-{user_id}-{n:04d}",
                status=InvoiceStatus.PAID,
                currency="usd",
                subtotal=1000 * lines,
                total=1000 * lines,
                amount_due=1000 * lines,
                amount_paid=1000 * lines,
                amount_remaining=0,
                period_start=now - timedelta(days=30 * (n + 1)),
                period_end=now - timedelta(days=30 * n),
                paid_at=now - timedelta(days=30 * n),
                stripe_created_at=now - timedelta(days=30 * n),
            )
            for n in range(invoices)
        ]
        session.add_all([*saved, *subs, *bills])
        await session.flush()
        for bill in bills:
            session.add_all(
                InvoiceLine(
                    invoice_id=bill.id,
                    stripe_line_id=f"il_{bill.stripe_invoice_id}_{position}",
                    position=position,
                    description=f"Seat {position + 1}",
                    amount=1000,
                    currency="usd",
                    quantity=1,
                    period_start=bill.period_start,
                    period_end=bill.period_end,
                )
                for position in range(lines)
            )
            session.add(
                PaymentTransaction(
                    stripe_payment_intent_id=f"pi_{bill.stripe_invoice_id}",
                    account_id=account.id,
                    status=PaymentStatus.SUCCEEDED,
                    amount=bill.total,
                    amount_received=bill.total,
                    currency="usd",
                    payment_method_stripe_id=saved[0].stripe_payment_method_id if saved else None,
                    invoice_stripe_id=bill.stripe_invoice_id,
                    stripe_created_at=bill.stripe_created_at,
                )
            )
    return account
