"""Plain rows of a table read straight through the driver's pool (`Database.driver_connection`):
no session, statement construction or result processing, and one prepared statement per
table and key column whatever the number of keys (`= ANY($1)`, where an `IN` list is a new
statement for each length). They read like the engine's rows of the table's columns:
attributes named by column, enum columns as their enum members, JSONB decoded, sealed
columns opened."""

from collections import namedtuple
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import Enum, Table
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

from db.database import Database


def _decoder(column_type: Any) -> Callable[[Any], Any] | None:
    """How a value of the column comes out of the engine, when asyncpg returns it otherwise."""
    if isinstance(column_type, Enum) and column_type.enum_class is not None:
        return column_type.enum_class
    if isinstance(column_type, JSONB):
        return orjson.loads
    if isinstance(column_type, TypeDecorator):  # personal data, sealed (db/sealed.py)
        return lambda value: column_type.process_result_value(value, None)
    return None


class TableRows:
    """How one table's rows are selected and built."""

    def __init__(self, table: Table) -> None:
        names = [column.name for column in table.columns]
        self.table = table
        self.columns = ", ".join(f'"{name}"' for name in names)
        self.row: Any = namedtuple(f"{table.name}_row", names)  # type: ignore[misc]
        self.decoders = tuple(
            (position, decoder)
            for position, column in enumerate(table.columns)
            if (decoder := _decoder(column.type)) is not None
        )
        self._statements: dict[tuple[str, str], str] = {}

    def where(self, condition: str, order_by: str) -> str:
        """The statement selecting the rows for which `condition` (SQL, $1… its parameters)
        holds, optionally ordered."""
        key = (condition, order_by)
        if key not in self._statements:
            order = f" ORDER BY {order_by}" if order_by else ""
            self._statements[key] = (
                f'SELECT {self.columns} FROM "{self.table.name}" WHERE {condition}{order}'
            )
        return self._statements[key]

    def build(self, records: Iterable[Any]) -> list[Any]:
        make = self.row._make
        if not self.decoders:
            return [make(record) for record in records]
        rows = []
        for record in records:
            values = list(record)
            for position, decode in self.decoders:
                if values[position] is not None:
                    values[position] = decode(values[position])
            rows.append(make(values))
        return rows


_tables: dict[str, TableRows] = {}


def table_rows(table: Table) -> TableRows:
    if table.name not in _tables:
        _tables[table.name] = TableRows(table)
    return _tables[table.name]


async def rows_where(
    database: Database, table: Table, condition: str, *values: Any, order_by: str = ""
) -> list[Any]:
    """The table's rows for which `condition` (SQL over its columns, $1… standing for
    `values`) holds, optionally ordered (SQL text)."""
    rows = table_rows(table)
    async with database.driver_connection() as connection:
        records = await connection.fetch(rows.where(condition, order_by), *values)
    return rows.build(records)


async def rows_where_in(
    database: Database, table: Table, column: str, keys: Sequence[Any], *, order_by: str = ""
) -> list[Any]:
    """The table's rows whose `column` is one of `keys`, optionally ordered (SQL text)."""
    return await rows_where(database, table, f'"{column}" = ANY($1)', list(keys), order_by=order_by)
