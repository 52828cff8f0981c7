"""Responses of a customer's read-only queries, kept in process memory and served again
while nothing they were read from has changed.

Triggers on every table such a response reads (db migration 0002) insert one
`read_changes` row per account and writing transaction, in that transaction; plans count
as account 0, the catalog every customer reads. An account's version is the number of its
rows and the catalog's, so it moves exactly when a transaction that changed them commits,
in any process, whatever wrote it (a mutation, a webhook, an operator's SQL). A request
reads the version first and its data afterwards, so an entry is never older than its
version: a commit in between only makes the next request miss.
"""

from collections import OrderedDict
from typing import Any

import orjson
from sqlalchemy import bindparam, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Account, ReadChange, ReadChangeTotal

CATALOG = 0


# Built once: asked on every cacheable request, it should cost one round trip and no
# statement construction. Rows folded away count through their totals.
ACCOUNT_VERSION = select(
    Account.id,
    select(func.count())
    .where(or_(ReadChange.account_id == Account.id, ReadChange.account_id == CATALOG))
    .scalar_subquery()
    + select(func.coalesce(func.sum(ReadChangeTotal.changes), 0))
    .where(ReadChangeTotal.account_id.in_([Account.id, CATALOG]))
    .scalar_subquery(),
).where(Account.user_id == bindparam("user_id"))

# One statement, so every reader sees the rows and their totals both before or both after:
# versions do not move. Only committed rows are seen, so none is counted twice.
FOLD_READ_CHANGES = text("""
WITH folded AS (DELETE FROM read_changes RETURNING account_id)
INSERT INTO read_change_totals (account_id, changes)
SELECT account_id, count(*) FROM folded GROUP BY account_id
ON CONFLICT (account_id) DO UPDATE SET changes = read_change_totals.changes + excluded.changes
""")


async def account_version(*, session: AsyncSession, user_id: str) -> tuple[int, int] | None:
    """(account id, version) of a user's account, or None before the account exists."""
    row = (await session.execute(ACCOUNT_VERSION, {"user_id": user_id})).first()
    return (row[0], row[1]) if row is not None else None


async def fold_read_changes(*, session: AsyncSession) -> None:
    """Fold the committed `read_changes` rows into per-account totals, versions unchanged."""
    async with session.begin():
        await session.execute(FOLD_READ_CHANGES)


class ResponseCache:
    """The most recently used responses, each with the version it was read at. Kept as
    JSON (a fifth of the memory of the objects, and every hit gets its own copy)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[tuple[Any, ...], tuple[int, bytes]] = OrderedDict()

    def get(self, key: tuple[Any, ...], version: int) -> Any | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] != version:
            return None
        self._entries.move_to_end(key)
        return orjson.loads(entry[1])

    def put(self, key: tuple[Any, ...], version: int, data: Any) -> None:
        self._entries[key] = (version, orjson.dumps(data))
        self._entries.move_to_end(key)
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)
