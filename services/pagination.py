"""Keyset pagination, newest first: cursors name a row's (sort time, id), so inserts never shift pages."""

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

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


def encode_cursor(sort_value: datetime, row_id: int) -> str:
    raw = json.dumps([sort_value.isoformat(), row_id], separators=(",", ":"))
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
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    window = query
    if after is not None:
        window = window.where(tuple_(sort_column, id_column) < tuple_(*decode_cursor(after)))
    window = window.order_by(sort_column.desc(), id_column.desc()).limit(size + 1)
    rows = list((await session.scalars(window)).all())
    has_next = len(rows) > size
    rows = rows[:size]
    cursors = [
        encode_cursor(getattr(row, sort_column.key), getattr(row, id_column.key)) for row in rows
    ]
    return Page(rows, cursors, has_next, after is not None, total or 0)
