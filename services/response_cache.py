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
from typing import Any, NamedTuple

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from db.database import Database

CATALOG = 0
# Decisions kept about documents (may their answers be cached?) before they are forgotten.
MAX_DOCUMENTS = 1024

# Asked on every cacheable request, so it is one prepared statement on the driver's pool:
# no session, no statement construction. Rows folded away count through their totals.
ACCOUNT_VERSION = f"""
SELECT a.id,
       (SELECT count(*) FROM read_changes c WHERE c.account_id IN (a.id, {CATALOG}))
     + (SELECT coalesce(sum(t.changes), 0) FROM read_change_totals t
        WHERE t.account_id IN (a.id, {CATALOG}))
FROM accounts a
WHERE a.user_id = $1
"""

# One statement, so every reader sees the rows and their totals both before or both after:
# versions do not move. Only committed rows are seen, so none is counted twice.
FOLD_READ_CHANGES = text("""
WITH folded AS (DELETE FROM read_changes RETURNING account_id)
INSERT INTO read_change_totals (account_id, changes)
SELECT account_id, count(*) FROM folded GROUP BY account_id
ON CONFLICT (account_id) DO UPDATE SET changes = read_change_totals.changes + excluded.changes
""")


async def account_version(*, database: Database, user_id: str) -> tuple[int, int] | None:
    """(account id, version) of a user's account, or None before the account exists."""
    async with database.driver_connection() as connection:
        row = await connection.fetchrow(ACCOUNT_VERSION, user_id)
    return (row[0], int(row[1])) if row is not None else None


async def fold_read_changes(*, session: AsyncSession) -> None:
    """Fold the committed `read_changes` rows into per-account totals, versions unchanged."""
    async with session.begin():
        await session.execute(FOLD_READ_CHANGES)


class CachedResponse(NamedTuple):
    """An answer as it is sent: its `data` as JSON, and what the operation is charged and
    counted as (a cached answer still spends the caller's cost budget)."""

    version: int
    data: bytes
    cost: int
    operation_name: str | None


class ResponseCache:
    """The most recently used responses, each with the version it was read at, and which
    documents (text and operation name as requested) may be cached at all."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[tuple[Any, ...], CachedResponse] = OrderedDict()
        self._documents: dict[tuple[str, str | None], bool] = {}

    def get(self, key: tuple[Any, ...], version: int) -> CachedResponse | None:
        entry = self._entries.get(key)
        if entry is None or entry.version != version:
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: tuple[Any, ...], entry: CachedResponse) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)

    def may_cache(self, query: str, operation_name: str | None) -> bool | None:
        """Whether the document's answers may be cached; None when it was not seen yet."""
        return self._documents.get((query, operation_name))

    def decide(self, query: str, operation_name: str | None, cacheable: bool) -> None:
        if len(self._documents) >= MAX_DOCUMENTS:
            self._documents.clear()
        self._documents[(query, operation_name)] = cacheable


def response_key(
    *,
    account_id: int,
    is_admin: bool,
    query: str,
    operation_name: str | None,
    variables: dict[str, Any] | None,
) -> tuple[Any, ...]:
    return (account_id, is_admin, query, operation_name, repr(variables))
