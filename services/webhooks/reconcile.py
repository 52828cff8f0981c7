"""Reconciliation: the events Stripe has that the inbox lacks, stored as if delivered.

Stripe can fail to deliver an event for good (an endpoint disabled after days of failures, a
wrong secret during a rotation, a sandbox that lost its queue), and its guidance is to list
`/v1/events` as the fallback. The worker does that on start and every
`RECONCILE_INTERVAL_SECONDS`: it lists from the stored mark (how far the list was read), less
`SAFETY_MARGIN` for events that appear in the list a little after their `created`, stores what
is missing (duplicates are ignored by Stripe id) and wakes the workers; the handlers then
apply them as any delivery. One replica at a time reconciles (a PostgreSQL advisory lock);
the others skip the pass. The mark is read from the database, so a restart resumes."""

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from db.database import Database
from db.models import EVENTS_MARK, ReconciliationMark, StripeEvent
from services.observability import RECONCILE_EVENTS_FOUND, RECONCILE_RUNS, reconciliation_mark
from services.stripe.client import StripeApi
from services.webhooks import inbox

log = logging.getLogger("billing_gateway.webhooks.reconcile")

# Stripe lists an event a few seconds after it is created at the most; five minutes is plenty.
SAFETY_MARGIN = timedelta(minutes=5)
# pg_try_advisory_lock key: one reconciliation at a time across every process.
RECONCILE_LOCK = 0x5EC0_0E7E


@dataclass(frozen=True)
class Reconciled:
    """One pass: how many events were listed, how many were missing and stored, and the mark."""

    listed: int
    added: int
    listed_through: datetime


async def reconcile_events(
    *, database: Database, stripe: StripeApi, since: datetime | None = None
) -> Reconciled | None:
    """Store the events created since the mark (less the margin; or `since`) that the inbox
    lacks; None when another process is reconciling. Stripe's failures propagate, with the
    mark unchanged, so the next pass lists the same stretch again."""
    async with database.driver_connection() as lock:
        if not await lock.fetchval("SELECT pg_try_advisory_lock($1)", RECONCILE_LOCK):
            RECONCILE_RUNS.labels("busy").inc()
            return None
        try:
            return await _reconcile(database, stripe, since)
        except Exception:
            RECONCILE_RUNS.labels("failed").inc()
            raise
        finally:
            await lock.execute("SELECT pg_advisory_unlock($1)", RECONCILE_LOCK)


async def _reconcile(database: Database, stripe: StripeApi, since: datetime | None) -> Reconciled:
    started = datetime.now(UTC)
    start = since if since is not None else await listing_start(database, started)
    events = await stripe.list_events(created_gte=int(start.timestamp()))
    added = 0
    for event in reversed(events):  # Stripe lists newest first; store the oldest first
        added += await inbox.store_event(database=database, event=event, payload=json.dumps(event))
    async with database.session() as session, session.begin():
        if added:
            await inbox.notify_workers(session)
        await session.execute(
            insert(ReconciliationMark)
            .values(name=EVENTS_MARK, listed_through=started)
            .on_conflict_do_update(
                index_elements=["name"],
                set_={
                    "listed_through": func.greatest(ReconciliationMark.listed_through, started),
                    "updated_at": func.now(),
                },
            )
        )
    RECONCILE_RUNS.labels("ok").inc()
    RECONCILE_EVENTS_FOUND.inc(added)
    if added:
        log.warning("reconciliation stored %d events Stripe had not delivered", added)
    return Reconciled(listed=len(events), added=added, listed_through=started)


async def listing_start(database: Database, now: datetime) -> datetime:
    """The mark less the margin; before any pass, the oldest event stored (or now) likewise:
    a new install does not replay Stripe's history (`billing-gateway sync` re-reads it)."""
    async with database.session() as session:
        mark = await reconciliation_mark(session=session)
        if mark is None:
            mark = await session.scalar(select(func.min(StripeEvent.stripe_created_at)))
    return min(mark or now, now) - SAFETY_MARGIN

