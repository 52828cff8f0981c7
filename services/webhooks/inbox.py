"""The webhook inbox: verified events stored once, claimed by workers, retried, replayed."""

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import StripeEvent, WebhookEventStatus
from services.errors import NotFound
from services.live import UpdateKind, publish
from services.pagination import Page, paginate
from services.stripe.client import StripeApi
from services.webhooks import dispatch

CHANNEL = "stripe_events"
MAX_ERROR_CHARS = 2000


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


async def store_event(*, session: AsyncSession, event: dict[str, Any]) -> bool:
    """Insert a verified event once; True when it is new (False: a duplicate delivery)."""
    obj = event["data"]["object"]
    values = {
        "stripe_event_id": event["id"],
        "type": event["type"],
        "api_version": event.get("api_version"),
        "livemode": bool(event.get("livemode", False)),
        "stripe_created_at": datetime.fromtimestamp(event["created"], UTC),
        "object_id": obj.get("id") if isinstance(obj.get("id"), str) else None,
        "payload": event,
    }
    statement = (
        insert(StripeEvent)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[StripeEvent.stripe_event_id])
        .returning(StripeEvent.id)
    )
    async with session.begin():
        new_id = await session.scalar(statement)
        if new_id is not None:
            await notify_workers(session)
    return new_id is not None


def _due_event_query() -> Any:
    return (
        select(StripeEvent)
        .where(
            StripeEvent.status == WebhookEventStatus.PENDING,
            StripeEvent.next_attempt_at <= func.now(),
        )
        .order_by(StripeEvent.stripe_created_at, StripeEvent.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )


async def process_next_event(
    *, sessions: async_sessionmaker[AsyncSession], stripe: StripeApi, policy: RetryPolicy
) -> bool:
    """Claim one due event and apply it in one transaction; False when none is due."""
    claimed: tuple[int, int] | None = None
    async with sessions() as session:
        try:
            async with session.begin():
                row = await session.scalar(_due_event_query())
                if row is None:
                    return False
                claimed = (row.id, row.attempts)
                await _apply(session=session, stripe=stripe, row=row)
        except Exception as error:
            if claimed is None:  # the database failed, not a handler: the worker backs off
                raise
            # The rollback undid the handler's work; the failure is recorded on its own.
            event_id, seen_attempts = claimed
            await record_failure(
                session=session,
                event_id=event_id,
                seen_attempts=seen_attempts,
                error=error,
                policy=policy,
            )
    return True


async def _apply(*, session: AsyncSession, stripe: StripeApi, row: StripeEvent) -> None:
    """Run the event's handler and mark it in the same transaction."""
    applied = await dispatch.apply_event(session=session, stripe=stripe, event=row.payload)
    row.status = WebhookEventStatus.PROCESSED if applied else WebhookEventStatus.SKIPPED
    row.processed_at = datetime.now(UTC)
    row.last_error = None
    await publish(session, UpdateKind.WEBHOOK_EVENT, account_id=None, row_id=row.id)


async def record_failure(
    *,
    session: AsyncSession,
    event_id: int,
    seen_attempts: int,
    error: BaseException,
    policy: RetryPolicy,
) -> None:
    """Count a failed attempt, schedule the next one, or park the event as failed."""
    attempts = seen_attempts + 1
    parked = attempts >= policy.max_attempts
    status = WebhookEventStatus.FAILED if parked else WebhookEventStatus.PENDING
    message = f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS]
    # The lock was released by the rollback: guard on the attempts seen, so a worker that
    # claimed the event meanwhile and settled it is not overwritten.
    statement = (
        update(StripeEvent)
        .where(
            StripeEvent.id == event_id,
            StripeEvent.status == WebhookEventStatus.PENDING,
            StripeEvent.attempts == seen_attempts,
        )
        .values(
            attempts=attempts,
            last_error=message,
            next_attempt_at=func.now() + policy.delay(attempts),
            status=status,
        )
    )
    async with session.begin():
        await session.execute(statement)


async def get_event(*, session: AsyncSession, event_id: int | str) -> StripeEvent:
    """One event by row id or Stripe id (evt_…); NOT_FOUND otherwise."""
    column = StripeEvent.stripe_event_id if isinstance(event_id, str) else StripeEvent.id
    row = await session.scalar(select(StripeEvent).where(column == event_id))
    if row is None:
        raise NotFound(f"no webhook event {event_id}")
    return row


async def list_events(
    *,
    session: AsyncSession,
    statuses: Sequence[WebhookEventStatus] | None = None,
    event_type: str | None = None,
    first: int | None = None,
    after: str | None = None,
) -> Page[StripeEvent]:
    """Events newest received first, optionally only some statuses or one type."""
    query = select(StripeEvent)
    if statuses:
        query = query.where(StripeEvent.status.in_(list(statuses)))
    if event_type:
        query = query.where(StripeEvent.type == event_type)
    return await paginate(
        session=session,
        query=query,
        sort_column=StripeEvent.received_at,
        id_column=StripeEvent.id,
        first=first,
        after=after,
    )


def _replay_values() -> dict[str, Any]:
    return {
        "status": WebhookEventStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": func.now(),
        "processed_at": None,
    }


async def replay_event(*, session: AsyncSession, event_id: int | str) -> StripeEvent:
    """Queue an event to be applied again now, whatever its status; NOT_FOUND if unknown."""
    async with session.begin():
        row = await get_event(session=session, event_id=event_id)
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
