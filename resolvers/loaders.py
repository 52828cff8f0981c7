"""Per-request DataLoaders. Rows by key are read straight through the driver's pool as plain
rows (db/rows.py: read by attribute like the models, without a session or ORM objects), and
so are pages under a list of parents (services/pagination.py)."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiodataloader import DataLoader
from sqlalchemy.orm import InstrumentedAttribute

from db.database import Database
from db.models import Account, Invoice, InvoiceLine, PaymentMethod, Plan, Subscription, TaxId
from db.rows import rows_where_in
from services import invoices, subscriptions
from services.errors import DomainError


def _rows_by(
    database: Database, entity: type[Any], column: InstrumentedAttribute[Any]
) -> Callable[[Sequence[Any]], Any]:
    async def load(keys: Sequence[Any]) -> list[Any]:
        rows = await rows_where_in(database, entity.__table__, column.key, keys)
        by_key = {getattr(row, column.key): row for row in rows}
        return [by_key.get(key) for key in keys]

    return load


def _lists_by(
    database: Database, entity: type[Any], column: InstrumentedAttribute[Any], order_by: str
) -> Callable[[Sequence[Any]], Any]:
    """Each key's rows, in `order_by` order."""

    async def load(keys: Sequence[Any]) -> list[list[Any]]:
        rows = await rows_where_in(database, entity.__table__, column.key, keys, order_by=order_by)
        by_key: dict[Any, list[Any]] = {key: [] for key in keys}
        for row in rows:
            by_key[getattr(row, column.key)].append(row)
        return [by_key[key] for key in keys]

    return load


# A connection's arguments below a list of parents: (parent id, first, after, statuses).
PageKey = tuple[int, int | None, str | None, tuple[str, ...] | None]


def _pages_by_account(database: Database, pages_for_accounts: Callable[..., Any]) -> Any:
    """Pages of each account's rows: keys asking the same page share one service call."""

    async def load(keys: Sequence[PageKey]) -> list[Any]:
        groups: dict[tuple[Any, ...], list[int]] = {}
        for account_id, *arguments in keys:
            groups.setdefault(tuple(arguments), []).append(account_id)
        pages: dict[PageKey, Any] = {}
        for (first, after, statuses), account_ids in groups.items():
            try:
                found = await pages_for_accounts(
                    database=database,
                    account_ids=account_ids,
                    statuses=statuses,
                    first=first,
                    after=after,
                )
            except DomainError as error:  # aiodataloader raises it from each load
                found = dict.fromkeys(account_ids, error)
            for account_id, page in found.items():
                pages[(account_id, first, after, statuses)] = page
        return [pages[key] for key in keys]

    return load


@dataclass(frozen=True)
class Loaders:
    account_by_id: DataLoader
    plan_by_id: DataLoader
    payment_method_by_stripe_id: DataLoader
    subscription_by_stripe_id: DataLoader
    invoice_by_stripe_id: DataLoader
    lines_by_invoice_id: DataLoader
    tax_ids_by_account_id: DataLoader
    subscription_pages_by_account: DataLoader
    invoice_pages_by_account: DataLoader

    @classmethod
    def create(cls, database: Database) -> "Loaders":
        def by(entity: type[Any], column: InstrumentedAttribute[Any]) -> DataLoader:
            return DataLoader(_rows_by(database, entity, column))

        return cls(
            account_by_id=by(Account, Account.id),
            plan_by_id=by(Plan, Plan.id),
            payment_method_by_stripe_id=by(PaymentMethod, PaymentMethod.stripe_payment_method_id),
            subscription_by_stripe_id=by(Subscription, Subscription.stripe_subscription_id),
            invoice_by_stripe_id=by(Invoice, Invoice.stripe_invoice_id),
            lines_by_invoice_id=DataLoader(
                _lists_by(database, InvoiceLine, InvoiceLine.invoice_id, "invoice_id, position")
            ),
            tax_ids_by_account_id=DataLoader(
                _lists_by(database, TaxId, TaxId.account_id, "account_id, stripe_created_at, id")
            ),
            subscription_pages_by_account=DataLoader(
                _pages_by_account(database, subscriptions.pages_for_accounts)
            ),
            invoice_pages_by_account=DataLoader(
                _pages_by_account(database, invoices.pages_for_accounts)
            ),
        )
