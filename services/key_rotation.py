"""`billing-gateway keys rotate`: every sealed value re-sealed under the first data key, online.

A rotation: put the new key first in DATA_ENCRYPTION_KEYS everywhere (it seals from then on,
the old one still opens), run this, then drop the old key. Each field is walked by id in
batches, each its own short transaction holding its rows (`FOR UPDATE SKIP LOCKED`, so live
traffic is never waited on); a value written meanwhile by a process still sealing with an
old key, or a row another transaction held, is found by the count that ends each field, and
the field is walked again until none is left. Accounts' blind email index is recomputed with
the email it indexes."""

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from db import sealed
from db.database import Database
from db.models import Base

log = logging.getLogger("billing_gateway.keys")

BATCH_SIZE = 500
# Rows held by other transactions are looked at again after this long.
HELD_ROWS_PAUSE_SECONDS = 0.1


@dataclass(frozen=True)
class SealedField:
    """Where sealed values live: `value` is their SQL expression in `table`, `assign` the SET
    clause taking the re-sealed value as $2 (and `companion`'s value of the plaintext as $3)."""

    table: str
    value: str
    assign: str
    companion: Callable[[sealed.Keyring, str], Any] | None = None

    @property
    def name(self) -> str:
        return f"{self.table}.{self.value}"


def sealed_fields() -> list[SealedField]:
    """Every sealed column of the model, and the sealed bodies of the two event envelopes."""
    fields = [
        SealedField(table.name, column.name, f"{column.name} = $2")
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, sealed.SealedText | sealed.SealedJSON)
    ]
    fields = [
        SealedField(
            field.table, field.value, "email = $2, email_index = $3", sealed.Keyring.email_index
        )
        if field.name == "accounts.email"
        else field
        for field in fields
    ]
    envelope = f"payload->>'{sealed.SEALED}'"
    assign = f"payload = jsonb_set(payload, '{{{sealed.SEALED}}}', to_jsonb($2::text))"
    return fields + [
        SealedField(table, envelope, assign) for table in ("stripe_events", "product_events")
    ]


def _stale(field: SealedField) -> str:
    """Rows whose value is sealed by a key other than the first ($1: its `<id>.` prefix)."""
    return f"{field.value} <> '' AND NOT starts_with({field.value}, $1)"


async def rotate(database: Database, *, batch_size: int = BATCH_SIZE) -> dict[str, int]:
    """Re-seal every value not sealed by the first key; how many, by field."""
    keyring = sealed.keyring()
    return {
        field.name: await _rotate_field(database, keyring, field, batch_size)
        for field in sealed_fields()
    }


async def stale_values(database: Database) -> dict[str, int]:
    """How many values each field still holds under another key than the first."""
    prefix = sealed.keyring().prefix
    counts = {}
    async with database.driver_connection() as connection:
        for field in sealed_fields():
            counts[field.name] = await connection.fetchval(
                f"SELECT count(*) FROM {field.table} WHERE {_stale(field)}", prefix
            )
    return counts


async def _rotate_field(
    database: Database, keyring: sealed.Keyring, field: SealedField, batch_size: int
) -> int:
    prefix = keyring.prefix
    select_batch = (
        f"SELECT id, {field.value} AS value FROM {field.table} "
        f"WHERE {_stale(field)} AND id > $2 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED"
    )
    update_row = f"UPDATE {field.table} SET {field.assign} WHERE id = $1"
    count_stale = f"SELECT count(*) FROM {field.table} WHERE {_stale(field)}"
    resealed = 0
    while True:
        after = 0
        while True:
            async with database.driver_connection() as connection, connection.transaction():
                rows = await connection.fetch(select_batch, prefix, after, batch_size)
                await connection.executemany(
                    update_row, [_resealed(keyring, field, row) for row in rows]
                )
            if not rows:
                break
            after = rows[-1]["id"]
            resealed += len(rows)
        async with database.driver_connection() as connection:
            left = await connection.fetchval(count_stale, prefix)
        if left == 0:
            log.info("keys rotate: %s: %d value(s) re-sealed", field.name, resealed)
            return resealed
        await asyncio.sleep(HELD_ROWS_PAUSE_SECONDS)


def _resealed(keyring: sealed.Keyring, field: SealedField, row: Any) -> tuple[Any, ...]:
    if field.companion is None:
        return row["id"], keyring.reseal(row["value"])
    plaintext = keyring.open(row["value"])
    return row["id"], keyring.seal(plaintext), field.companion(keyring, plaintext)
