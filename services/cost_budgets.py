"""Per-caller budgets of GraphQL query cost (token buckets), kept in PostgreSQL so that every
replica spends from the same one: N replicas allow the configured rate, not N times it.

One statement refills a caller's bucket for the time since it was last touched (up to its
capacity), takes the cost if the bucket holds it and says whether it did. The row's lock
orders concurrent spends, in any process. The table is UNLOGGED: a crash of the database
empties it, which gives every caller a full budget, and spends write no WAL. A bucket
untouched for as long as it takes to refill is full, exactly like one never created, so
retention deletes those (services/retention.py): callers are user ids and client addresses.
"""

import math
from dataclasses import dataclass

from db.database import Database

# $1 caller, $2 cost, $3 capacity, $4 refill per second. A spend waiting on the row's lock
# may carry an earlier now() than the one before it wrote: no negative refill.
_REFILLED = (
    "least($3::float8, b.available"
    " + greatest(0, extract(epoch FROM now() - b.updated_at)) * $4::float8)"
)
SPEND = f"""
INSERT INTO cost_budgets AS b (caller, available, updated_at, granted)
VALUES ($1, $3::float8 - $2::float8, now(), true)
ON CONFLICT (caller) DO UPDATE SET
  available = {_REFILLED} - CASE WHEN {_REFILLED} >= $2::float8 THEN $2::float8 ELSE 0 END,
  updated_at = now(),
  granted = {_REFILLED} >= $2::float8
RETURNING available, granted
"""


@dataclass(frozen=True)
class Charge:
    """The outcome of spending cost from a caller's budget."""

    allowed: bool
    available: float
    retry_after: int


@dataclass(frozen=True)
class Spend:
    """`cost` to take from the caller's bucket of `capacity`, refilling as configured."""

    caller: str
    cost: int
    capacity: int
    refill_per_second: float

    @property
    def parameters(self) -> tuple[str, int, int, float]:
        """SPEND's parameters, $1 to $4."""
        return self.caller, self.cost, self.capacity, self.refill_per_second

    def charge(self, available: float, granted: bool) -> Charge:
        """What SPEND's row means: taken, or in how many seconds it can be taken."""
        if granted:
            return Charge(True, available, 0)
        wait = math.ceil((self.cost - available) / self.refill_per_second)
        return Charge(False, available, max(wait, 1))


async def spend(database: Database, spend: Spend) -> Charge:
    """Take the spend's cost from the caller's bucket, or say when it can be taken."""
    async with database.driver_connection() as connection:
        available, granted = await connection.fetchrow(SPEND, *spend.parameters)
    return spend.charge(available, granted)
