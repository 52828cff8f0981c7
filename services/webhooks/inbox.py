"""The webhook inbox: verified events stored once, claimed by workers, retried, replayed."""

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from db import sealed
from db.database import Database
from db.models import StripeEvent, WebhookEventStatus
from gateway.settings import GRACE_DAYS
from services import live, retention
from services.errors import DomainError, ErrorCode, NotFound
from services.live import UpdateKind
from services.pagination import Listing, Page, paginate
from services.stripe.client import StripeApi
from services.webhooks import dispatch

log = logging.getLogger("billing_gateway.webhooks.inbox")

CHANNEL = "stripe_events"
MAX_ERROR_CHARS = 2000
# Events stored within this long share one NOTIFY; workers see them this much later.
COALESCE_SECONDS = 0.002


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how late a failing event is tried again."""

    max_attempts: int = 8
    base_seconds: float = 10.0
    max_seconds: float = 3600.0

    def delay(self, attempts: int) -> timedelta:
        """Exponential backoff with full jitter over the upper half, so retries spread out."""
        ceiling = min(self.base_seconds * 2 ** (attempts - 1), self.max_seconds)
        return timedelta(seconds=ceiling * random.uniform(0.5, 1.0))


async def notify_workers(session: AsyncSession) -> None:
    """Wake listening workers; PostgreSQL delivers the NOTIFY when the transaction commits."""
    await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


STORE_EVENT = """
INSERT INTO stripe_events
    (stripe_event_id, type, api_version, livemode, stripe_created_at, object_id, payload)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
ON CONFLICT (stripe_event_id) DO NOTHING
RETURNING id
"""


# What an event's stored envelope keeps in the clear, for SQL and for retention's stub: the
# object's own ids (erasure finds a customer's events by `customer`, credit_sources a
# dispute's payment by `payment_intent`).
CLEAR_OBJECT_KEYS = ("id", "object", "customer", "payment_intent")


def event_envelope(event: dict[str, Any], payload: str) -> str:
    """The stored form of an event: ids, type and time in the clear, the rest (it carries
    emails, names, addresses) sealed as the text received."""
    obj = event["data"]["object"]
    clear = {
        "id": event["id"],
        "object": "event",
        "type": event["type"],
        "created": event["created"],
        "data": {
            "object": {key: obj[key] for key in CLEAR_OBJECT_KEYS if isinstance(obj.get(key), str)}
        },
    }
    return orjson.dumps(sealed.envelope(clear, payload)).decode()


def event_of(stored: dict[str, Any]) -> dict[str, Any] | None:
    """The event a stored envelope holds; None once retention or an erasure stripped it."""
    body = stored.get(sealed.SEALED)
    return orjson.loads(sealed.keyring().open(body)) if body is not None else None


async def store_event(*, database: Database, event: dict[str, Any], payload: str) -> bool:
    """Insert a verified event once, committed; True when it is new (False: a duplicate).

    `payload` is the event's JSON text as received, sealed as is (no re-encoding). The
    caller wakes the workers (WorkerWakeUps) once the new event is stored."""
    obj = event["data"]["object"]
    async with database.driver_connection() as connection:
        new_id = await connection.fetchval(
            STORE_EVENT,
            event["id"],
            event["type"],
            event.get("api_version"),
            bool(event.get("livemode", False)),
            datetime.fromtimestamp(event["created"], UTC),
            obj.get("id") if isinstance(obj.get("id"), str) else None,
            event_envelope(event, payload),
        )
    return new_id is not None


class WorkerWakeUps:
    """Wakes listening workers after events are stored, with one NOTIFY for many events.

    A NOTIFY serialises the commits of every transaction that sends one, so one per event
    would cap ingest at a fraction of what the database takes. One is in flight at a time;
    events stored meanwhile are covered by one more after it. A lost wake-up only delays
    an event to the workers' next poll."""

    def __init__(self) -> None:
        self._sending: asyncio.Task[None] | None = None
        self._again = False

    def event_stored(self, database: Database) -> None:
        if self._sending is None or self._sending.done():
            self._sending = asyncio.create_task(self._notify(database), name="wake-workers")
        else:
            self._again = True

    async def _notify(self, database: Database) -> None:
        while True:
            await asyncio.sleep(COALESCE_SECONDS)
            self._again = False
            try:
                async with database.driver_connection() as connection:
                    await connection.execute(f"NOTIFY {CHANNEL}")
            except Exception:  # the workers' poll finds the events
                log.warning("could not wake the webhook workers", exc_info=True)
            if not self._again:
                return


# The worker's statements run on the driver (Database.driver_transaction), prepared once
# per connection: they run for every event, and SQLAlchemy's cost per statement was more
# than the database's. The oldest due event no other worker holds; the claim lasts until
# the transaction ends. The payload is read for the claimed row only: a backlog is neither
# sorted nor decoded.
CLAIM_DUE_EVENT = """
SELECT id, stripe_event_id, type, object_id, attempts, payload->>'sealed' AS sealed
FROM stripe_events
WHERE id = (
    SELECT id FROM stripe_events
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY stripe_created_at, id LIMIT 1
    FOR UPDATE SKIP LOCKED
)
"""
CLAIM_LATER_OF_OBJECT = """
SELECT id, stripe_event_id, type, object_id, attempts, payload->>'sealed' AS sealed
FROM stripe_events
WHERE object_id = $1 AND type = ANY($2::text[]) AND id <> $3
  AND status = 'pending' AND next_attempt_at <= now()
ORDER BY stripe_created_at, id
FOR UPDATE SKIP LOCKED
"""
# Each settles the claimed events and announces them (admin webhookEvents) in one statement;
# PostgreSQL runs a data-modifying WITH whether or not the query reads it.
SETTLE = f"""
WITH settled AS (
    UPDATE stripe_events SET status = $2, processed_at = now(), last_error = NULL
    WHERE id = ANY($1::bigint[])
)
SELECT pg_notify('{live.CHANNEL}', notice) FROM unnest($3::text[]) AS notice
"""
RETRY_OR_PARK = f"""
WITH retried AS (
    UPDATE stripe_events
    SET attempts = $2, last_error = $3, status = $4,
        next_attempt_at = now() + make_interval(secs => $5)
    WHERE id = ANY($1::bigint[])
)
SELECT pg_notify('{live.CHANNEL}', notice) FROM unnest($6::text[]) AS notice
"""


async def process_next_event(
    *, database: Database, stripe: StripeApi, policy: RetryPolicy, grace_days: int = GRACE_DAYS
) -> int:
    """Claim one due event, with the later due events of its object its handler may apply at
    once (Coalesced), and apply them; the number settled or retried, 0 when none is due.

    One transaction holds the claim throughout: the handler runs in a savepoint, so a
    failing handler's work is undone while its failure is recorded under the same lock,
    and no other worker can take the events before their backoff is set."""
    async with database.driver_transaction() as (session, driver):
        first = await driver.fetchrow(CLAIM_DUE_EVENT)
        if first is None:
            return 0
        claimed = [first, *await _later_of_same_object(driver, first)]
        ids = [row["id"] for row in claimed]
        notices = live.notices(UpdateKind.WEBHOOK_EVENT, account_id=None, row_ids=ids)
        if first["type"] not in dispatch.HANDLERS:
            await driver.execute(SETTLE, ids, WebhookEventStatus.SKIPPED.value, notices)
            return len(ids)
        payload = orjson.loads(sealed.keyring().open(claimed[-1]["sealed"]))
        event = payload if len(claimed) == 1 else dispatch.Coalesced(payload)
        try:
            async with driver.transaction():  # a savepoint
                await dispatch.apply_event(
                    session=session,
                    stripe=stripe,
                    event=event,
                    claimed=[(row["stripe_event_id"], row["type"]) for row in claimed],
                    grace_days=grace_days,
                )
                await session.flush()
        except Exception as error:
            attempts = max(row["attempts"] for row in claimed) + 1
            await driver.execute(
                RETRY_OR_PARK, *_retry_or_park(ids, attempts, error, policy), notices
            )
        else:
            await driver.execute(SETTLE, ids, WebhookEventStatus.PROCESSED.value, notices)
    return len(ids)


async def _later_of_same_object(
    driver: asyncpg.Connection, first: asyncpg.Record
) -> list[asyncpg.Record]:
    """The due events after `first` of its object that its handler applies with it, claimed.

    Under a backlog an object's events pile up (an invoice's created, finalized, paid and
    payment_succeeded come within a second); applying them as one keeps the work per object,
    not per event. Events another worker holds are skipped: it applies them after us."""
    types = dispatch.coalescing_types(first["type"])
    if not types or first["object_id"] is None:
        return []
    return await driver.fetch(CLAIM_LATER_OF_OBJECT, first["object_id"], types, first["id"])


def _retry_or_park(
    ids: list[int], attempts: int, error: Exception, policy: RetryPolicy
) -> tuple[list[int], int, str, str, float]:
    """Count the failed attempt and schedule the next, or park the events after the last."""
    parked = attempts >= policy.max_attempts
    status = WebhookEventStatus.FAILED if parked else WebhookEventStatus.PENDING
    error_text = f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS]
    return ids, attempts, error_text, status.value, policy.delay(attempts).total_seconds()


async def get_event(*, session: AsyncSession, event_id: int | str) -> StripeEvent:
    """One event by row id or Stripe id (evt_…); NOT_FOUND otherwise."""
    column = StripeEvent.stripe_event_id if isinstance(event_id, str) else StripeEvent.id
    row = await session.scalar(select(StripeEvent).where(column == event_id))
    if row is None:
        raise NotFound(f"no webhook event {event_id}")
    return row


async def list_events(
    database: Database,
    *,
    statuses: Sequence[WebhookEventStatus] | None = None,
    event_type: str | None = None,
    first: int | None = None,
    after: str | None = None,
) -> Page[StripeEvent]:
    """Events newest received first, optionally only some statuses or one type."""
    listing = Listing.matching(
        StripeEvent.__table__, "received_at", status=statuses, type=event_type or None
    )
    return await paginate(database, listing, first=first, after=after)


def _replay_values() -> dict[str, Any]:
    return {
        "status": WebhookEventStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": func.now(),
        "processed_at": None,
    }


async def replay_event(*, session: AsyncSession, event_id: int | str) -> StripeEvent:
    """Queue an event to be applied again now, whatever its status; NOT_FOUND if unknown,
    INVALID_STATE once retention or an erasure stripped its payload."""
    async with session.begin():
        row = await get_event(session=session, event_id=event_id)
        if retention.is_stripped(row.payload):
            raise DomainError(
                ErrorCode.INVALID_STATE,
                "This event's payload was stripped (retention or erasure): it cannot be applied",
            )
        await session.execute(
            update(StripeEvent).where(StripeEvent.id == row.id).values(**_replay_values())
        )
        await notify_workers(session)
    await session.refresh(row)
    return row


async def replay_failed_events(*, session: AsyncSession) -> int:
    """Queue every failed event again; the number queued."""
    statement = (
        update(StripeEvent)
        .where(StripeEvent.status == WebhookEventStatus.FAILED)
        .values(**_replay_values())
        .returning(StripeEvent.id)
    )
    async with session.begin():
        count = len((await session.scalars(statement)).all())
        if count:
            await notify_workers(session)
    return count
