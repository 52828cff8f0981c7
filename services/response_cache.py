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
from services import cost_budgets

CATALOG = 0
# Decisions kept about documents (may their answers be cached?) before they are forgotten.
MAX_DOCUMENTS = 1024

# Asked on every cacheable request, so it is one prepared statement on the driver's pool:
# no session, no statement construction. Rows folded away count through their totals.
_ACCOUNT_VERSION = f"""
SELECT a.id,
       (SELECT count(*) FROM read_changes c WHERE c.account_id IN (a.id, {CATALOG}))
     + (SELECT coalesce(sum(t.changes), 0) FROM read_change_totals t
        WHERE t.account_id IN (a.id, {CATALOG})) AS version
FROM accounts a
WHERE a.user_id = {{user_id}}
"""
ACCOUNT_VERSION = _ACCOUNT_VERSION.format(user_id="$1")
# The version and a spend of the held answer's cost in one round trip: the spend's
# parameters first (services/cost_budgets.py), then the user id.
ACCOUNT_VERSION_SPENDING = f"""
WITH spent AS ({cost_budgets.SPEND}), found AS ({_ACCOUNT_VERSION.format(user_id="$5")})
SELECT found.id, found.version, spent.available, spent.granted FROM spent LEFT JOIN found ON true
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


async def account_version_spending(
    *, database: Database, user_id: str, spend: cost_budgets.Spend
) -> tuple[tuple[int, int] | None, cost_budgets.Charge]:
    """`account_version`, and the outcome of `spend` from the caller's budget."""
    async with database.driver_connection() as connection:
        account_id, version, available, granted = await connection.fetchrow(
            ACCOUNT_VERSION_SPENDING, *spend.parameters, user_id
        )
    found = (account_id, int(version)) if account_id is not None else None
    return found, spend.charge(available, granted)


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

    def held(self, key: tuple[Any, ...]) -> CachedResponse | None:
        """The answer held for `key`, at whichever version it was read."""
        entry = self._entries.get(key)
        if entry is not None:
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
    user_id: str,
    is_admin: bool,
    query: str,
    operation_name: str | None,
    variables: dict[str, Any] | None,
) -> tuple[Any, ...]:
    return (user_id, is_admin, query, operation_name, repr(variables))
