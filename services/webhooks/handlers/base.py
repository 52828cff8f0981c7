"""What every handler shares: the per-object lock, the event's time, and the rule that
decides when an event's snapshot cannot be trusted and Stripe must be re-read."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from db.database import driver_of
from services.mirror import Mirrored
from services.webhooks.dispatch import Coalesced

StripeDict = dict[str, Any]


LOCK_OBJECT = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"


async def lock(session: AsyncSession, stripe_object_id: str) -> None:
    """Serialize the events of one Stripe object across workers until the transaction ends."""
    driver = await driver_of(session)
    await driver.execute(LOCK_OBJECT, stripe_object_id)


def obj(event: StripeDict) -> StripeDict:
    """The object snapshot an event carries."""
    return event["data"]["object"]


def event_actor(event: StripeDict) -> str:
    """Who a ledger entry made by this event is from."""
    return f"stripe:{event['id']}"


def event_time(event: StripeDict) -> datetime:
    return datetime.fromtimestamp(event["created"], UTC)


def ambiguous(row: Mirrored | None, event: StripeDict) -> bool:
    """True when the row was last changed in the event's own second by something else.

    Stripe's `created` has one-second resolution, so two events of one second cannot be
    ordered by it; the snapshot may be older than what the row holds. Re-read then; and
    always for an event standing for several (Coalesced)."""
    if isinstance(event, Coalesced):
        return True
    if row is None or row.last_event_at is None or row.last_event_id == event["id"]:
        return False
    return int(row.last_event_at.timestamp()) == event["created"]
