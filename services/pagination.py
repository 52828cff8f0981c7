"""Keyset pagination, newest first: cursors name a row's (sort time, id), so inserts never shift pages.

Pages are read straight through the driver's pool (`Database.driver_connection`) as plain
rows of the table (db/rows.py): one prepared statement per list and shape, without a
session, statement construction or ORM objects. A page carries its list's count in an
uncorrelated subquery of the same statement.
"""

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Table

from db.database import Database
from db.rows import table_rows
from services.errors import InvalidInput

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100

Row = TypeVar("Row")


@dataclass(frozen=True)
class Page(Generic[Row]):
    rows: list[Row]
    cursors: list[str]
    has_next_page: bool
    has_previous_page: bool
    total_count: int


@dataclass(frozen=True)
class Listing:
    """A table's rows for which `where` holds (SQL over its columns, `$1`… standing for
    `values`; empty: every row), newest first by (`sort`, id)."""

    table: Table
    sort: str
    where: str = ""
    values: tuple[Any, ...] = ()

    @classmethod
    def matching(cls, table: Table, sort: str, **filters: Any) -> "Listing":
        """Rows whose every named column equals its value, or one of a sequence's; a None or
        empty filter filters nothing."""
        clauses: list[str] = []
        values: list[Any] = []
        for column, value in filters.items():
            if value is None or (isinstance(value, (list, tuple)) and not value):
                continue
            many = isinstance(value, (list, tuple))
            values.append(list(value) if many else value)
            clauses.append(
                f'"{column}" = {"ANY(" if many else ""}${len(values)}{")" if many else ""}'
            )
        return cls(table, sort, " AND ".join(clauses), tuple(values))

    def condition(self) -> str:
        return f"({self.where})" if self.where else "true"


def encode_cursor(sort_value: datetime, row_id: int) -> str:
    # The compact JSON of [ISO time, id], written out: an ISO time needs no escaping, and
    # every edge of every page has a cursor.
    raw = f'["{sort_value.isoformat()}",{int(row_id)}]'
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        sort_text, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        value = datetime.fromisoformat(sort_text)
        if not isinstance(row_id, int) or value.tzinfo is None:
            raise ValueError(cursor)
        return value, row_id
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError) as exc:
        raise InvalidInput("`after` is not a cursor this list gave out", ["after"]) from exc


def page_size(first: int | None) -> int:
    if first is None:
        return DEFAULT_PAGE_SIZE
    if not 0 <= first <= MAX_PAGE_SIZE:
        raise InvalidInput(f"`first` must be between 0 and {MAX_PAGE_SIZE}", ["first"])
    return first


async def paginate(
    database: Database, listing: Listing, *, first: int | None, after: str | None
) -> Page[Any]:
    """One page of the listing and the count of all its rows, in one statement."""
    size = page_size(first)
    rows = table_rows(listing.table)
    values = list(listing.values)
    condition = listing.condition()
    table = f'"{listing.table.name}"'
    # Uncorrelated, so counted once with the listing's own parameters, and from the index
    # alone: a window count over the rows would read every matching row from the table,
    # which grows with the list (bench/graphql_growth.py: 1,000 invoices of one customer).
    total = f"(SELECT count(*) FROM {table} WHERE {condition})"
    if after is not None:
        values += decode_cursor(after)
        condition += f' AND ("{listing.sort}", id) < (${len(values) - 1}, ${len(values)})'
    values.append(size + 1)
    statement = (
        f"SELECT {rows.columns}, {total} FROM {table} WHERE {condition}"
        f' ORDER BY "{listing.sort}" DESC, id DESC LIMIT ${len(values)}'
    )
    async with database.driver_connection() as connection:
        records = await connection.fetch(statement, *values)
        if records:
            count = records[0][-1]
        else:
            count = await connection.fetchval(
                f"SELECT count(*) FROM {table} WHERE {listing.condition()}", *listing.values
            )
    return _page(rows.build(tuple(record)[:-1] for record in records), listing, size, after, count)


async def paginate_each(
    database: Database,
    listing: Listing,
    *,
    parent: str,
    parent_ids: Sequence[int],
    first: int | None,
    after: str | None,
) -> dict[int, Page[Any]]:
    """The same page of the listing for each parent (its rows whose `parent` column is the
    parent's id), in one statement whatever their number (two after a cursor).

    A window function numbers each parent's rows past the cursor, newest first, so one
    statement returns every parent's first `first + 1` rows; without a cursor another
    window counts each parent's rows in the same statement."""
    size = page_size(first)
    rows = table_rows(listing.table)
    table = f'"{listing.table.name}"'
    values = [*listing.values, list(parent_ids)]
    owned = f'{listing.condition()} AND "{parent}" = ANY(${len(values)})'
    counting = owned
    if after is not None:
        values += decode_cursor(after)
        owned += f' AND ("{listing.sort}", id) < (${len(values) - 1}, ${len(values)})'
    values.append(size + 1)
    order = f'"{listing.sort}" DESC, id DESC'
    statement = (
        f"SELECT {rows.columns}, page_total FROM ("
        f' SELECT {rows.columns}, count(*) OVER (PARTITION BY "{parent}") AS page_total,'
        f' row_number() OVER (PARTITION BY "{parent}" ORDER BY {order}) AS page_position'
        f" FROM {table} WHERE {owned}"
        f') numbered WHERE page_position <= ${len(values)} ORDER BY "{parent}", page_position'
    )
    by_parent: dict[int, list[Any]] = {parent_id: [] for parent_id in parent_ids}
    totals: dict[int, int] = {}
    async with database.driver_connection() as connection:
        records = await connection.fetch(statement, *values)
        if after is not None:
            counted = await connection.fetch(
                f'SELECT "{parent}", count(*) FROM {table} WHERE {counting} GROUP BY "{parent}"',
                *listing.values,
                list(parent_ids),
            )
            totals = {parent_id: count for parent_id, count in counted}
    for row, record in zip(rows.build(tuple(r)[:-1] for r in records), records, strict=True):
        parent_id = getattr(row, parent)
        by_parent[parent_id].append(row)
        if after is None:
            totals[parent_id] = record[-1]
    return {
        parent_id: _page(found, listing, size, after, totals.get(parent_id, 0))
        for parent_id, found in by_parent.items()
    }


def _page(
    found: list[Any], listing: Listing, size: int, after: str | None, total: int
) -> Page[Any]:
    shown = found[:size]
    cursors = [encode_cursor(getattr(row, listing.sort), row.id) for row in shown]
    return Page(shown, cursors, len(found) > size, after is not None, total)
