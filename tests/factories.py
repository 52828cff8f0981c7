"""Rows for tests, inserted through the models with sensible defaults."""

import itertools
from datetime import UTC, datetime
from typing import Any

from db.database import Database
from db.models import Account, BillingInterval, PaymentMethod, Plan, PriceKind

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
