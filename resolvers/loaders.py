"""Per-request DataLoaders. Rows by key are read straight through the driver's pool as plain
rows (db/rows.py: read by attribute like the models, without a session or ORM objects), and
so are pages under a list of parents (services/pagination.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
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


class Loaders:
    """A request's loaders, each made when first used (most requests use a few)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def _by(self, entity: type[Any], column: InstrumentedAttribute[Any]) -> DataLoader:
        return DataLoader(_rows_by(self._database, entity, column))

    @cached_property
    def account_by_id(self) -> DataLoader:
        return self._by(Account, Account.id)

    @cached_property
    def plan_by_id(self) -> DataLoader:
        return self._by(Plan, Plan.id)

    @cached_property
    def payment_method_by_stripe_id(self) -> DataLoader:
        return self._by(PaymentMethod, PaymentMethod.stripe_payment_method_id)

    @cached_property
    def subscription_by_stripe_id(self) -> DataLoader:
        return self._by(Subscription, Subscription.stripe_subscription_id)

    @cached_property
    def invoice_by_stripe_id(self) -> DataLoader:
        return self._by(Invoice, Invoice.stripe_invoice_id)

    @cached_property
    def lines_by_invoice_id(self) -> DataLoader:
        order = "invoice_id, position"
        return DataLoader(_lists_by(self._database, InvoiceLine, InvoiceLine.invoice_id, order))

    @cached_property
    def tax_ids_by_account_id(self) -> DataLoader:
        order = "account_id, stripe_created_at, id"
        return DataLoader(_lists_by(self._database, TaxId, TaxId.account_id, order))

    @cached_property
    def subscription_pages_by_account(self) -> DataLoader:
        return DataLoader(_pages_by_account(self._database, subscriptions.pages_for_accounts))

    @cached_property
    def invoice_pages_by_account(self) -> DataLoader:
        return DataLoader(_pages_by_account(self._database, invoices.pages_for_accounts))
