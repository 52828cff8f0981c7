"""Keyset pagination, newest first: cursors name a row's (sort time, id), so inserts never shift pages."""

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from services.errors import InvalidInput

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
# The column a first page's rows carry their list's count in.
TOTAL = "total_count"

Row = TypeVar("Row")


@dataclass(frozen=True)
class Page(Generic[Row]):
    rows: list[Row]
    cursors: list[str]
    has_next_page: bool
    has_previous_page: bool
    total_count: int


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
    *,
    session: AsyncSession,
    query: Select[Any],
    sort_column: InstrumentedAttribute[datetime],
    id_column: InstrumentedAttribute[int],
    first: int | None,
    after: str | None,
) -> Page[Any]:
    """One page of `query` (a filtered select of one entity) and the count of all its rows."""
    size = page_size(first)
    window = _as_rows(query)
    total: int | None = None
    if after is None:
        # A window over the filtered rows is taken before LIMIT: the first page counts them.
        window = window.add_columns(func.count().over().label(TOTAL))
    else:
        total = await session.scalar(select(func.count()).select_from(query.subquery()))
        window = window.where(tuple_(sort_column, id_column) < tuple_(*decode_cursor(after)))
    window = window.order_by(sort_column.desc(), id_column.desc()).limit(size + 1)
    rows = list((await session.execute(window)).all())
    if total is None:
        total = getattr(rows[0], TOTAL) if rows else 0
    has_next = len(rows) > size
    rows = rows[:size]
    cursors = [
        encode_cursor(getattr(row, sort_column.key), getattr(row, id_column.key)) for row in rows
    ]
    return Page(rows, cursors, has_next, after is not None, total or 0)


async def paginate_each(
    *,
    session: AsyncSession,
    query: Select[Any],
    parent_column: InstrumentedAttribute[int],
    parent_ids: Sequence[int],
    sort_column: InstrumentedAttribute[datetime],
    id_column: InstrumentedAttribute[int],
    first: int | None,
    after: str | None,
) -> dict[int, Page[Any]]:
    """The same page of `query` for each parent, in one statement whatever their number
    (two after a cursor).

    A window function numbers each parent's rows past the cursor, newest first, so one
    statement returns every parent's first `first + 1` rows; without a cursor another
    window counts each parent's rows in the same statement."""
    size = page_size(first)
    owned = query.where(parent_column.in_(parent_ids))
    totals: dict[int, int] = {}
    ranked = _as_rows(owned)
    if after is None:
        ranked = ranked.add_columns(func.count().over(partition_by=parent_column).label(TOTAL))
    else:
        everything = owned.subquery()
        parent_of = everything.c[parent_column.key]
        counted = select(parent_of, func.count()).group_by(parent_of)
        totals = {parent: count for parent, count in await session.execute(counted)}
        ranked = ranked.where(tuple_(sort_column, id_column) < tuple_(*decode_cursor(after)))
    position = func.row_number().over(
        partition_by=parent_column, order_by=(sort_column.desc(), id_column.desc())
    )
    numbered = ranked.add_columns(position.label("position")).subquery()
    window = (
        select(*(column for column in numbered.c if column.key != "position"))
        .where(numbered.c.position <= size + 1)
        .order_by(numbered.c[parent_column.key], numbered.c.position)
    )
    by_parent: dict[int, list[Any]] = {parent_id: [] for parent_id in parent_ids}
    for row in (await session.execute(window)).all():
        by_parent[getattr(row, parent_column.key)].append(row)
        if after is None:
            totals[getattr(row, parent_column.key)] = getattr(row, TOTAL)
    pages = {}
    for parent_id, rows in by_parent.items():
        shown = rows[:size]
        cursors = [
            encode_cursor(getattr(row, sort_column.key), getattr(row, id_column.key))
            for row in shown
        ]
        pages[parent_id] = Page(
            shown, cursors, len(rows) > size, after is not None, totals.get(parent_id, 0)
        )
    return pages


def _table_of(query: Select[Any]) -> Any:
    return query.column_descriptions[0]["entity"].__table__


def _as_rows(query: Select[Any]) -> Select[Any]:
    """The query with its entity's columns instead of the entity: plain rows, read by
    attribute like the entity (`row.id`), without building ORM objects (several times
    cheaper on a page of a hundred)."""
    return query.with_only_columns(*_table_of(query).columns)
