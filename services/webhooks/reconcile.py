"""Reconciliation: the events Stripe has that the inbox lacks, stored as if delivered.

Stripe can fail to deliver an event for good (an endpoint disabled after days of failures, a
wrong secret during a rotation, a sandbox that lost its queue), and its guidance is to list
`/v1/events` as the fallback. The worker does that on start and every
`RECONCILE_INTERVAL_SECONDS`: it lists from the stored mark (how far the list was read), less
`SAFETY_MARGIN` for events that appear in the list a little after their `created`, stores what
is missing (duplicates are ignored by Stripe id) and wakes the workers; the handlers then
apply them as any delivery. One replica at a time reconciles (a PostgreSQL advisory lock);
the others skip the pass. The mark is read from the database, so a restart resumes.

Events cannot tell everything: Stripe lists only the last 30 days of them. So each pass also
re-reads, a batch at a time, the subscriptions whose mirror must be behind Stripe by now: a
renewal, trial end or cancellation the mirror shows as due for a while, with nothing heard of
the subscription since (`reread_overdue`). What a re-read finds paid is credited as any
sighting."""

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert

from db.database import Database
from db.models import (
    EVENTS_MARK,
    ReconciliationMark,
    StripeEvent,
    Subscription,
    SubscriptionStatus,
)
from services import credit_sources
from services.observability import (
    RECONCILE_EVENTS_FOUND,
    RECONCILE_REREADS,
    RECONCILE_RUNS,
    reconciliation_mark,
)
from services.stripe.client import StripeApi
from services.webhooks import inbox, sync

log = logging.getLogger("billing_gateway.webhooks.reconcile")

# Stripe lists an event a few seconds after it is created at the most; five minutes is plenty.
SAFETY_MARGIN = timedelta(minutes=5)
# pg_try_advisory_lock key: one reconciliation at a time across every process.
RECONCILE_LOCK = 0x5EC0_0E7E
# Stripe acts on a subscription's due time within this long (a renewal invoice is finalized an
# hour after it is drafted); a mirror showing it due for longer has missed what happened.
OVERDUE_AFTER = timedelta(hours=2)
REREAD_BATCH = 100
# An event this young that is not in the inbox yet is most likely on its way (a start-up's
# first pass lists what the sandbox is about to deliver): no cause for a warning.
IN_FLIGHT = timedelta(minutes=1)
ENDED = (SubscriptionStatus.CANCELED, SubscriptionStatus.INCOMPLETE_EXPIRED)


@dataclass(frozen=True)
class Reconciled:
    """One pass: how many events were listed, how many were missing and stored, the mark, and
    how many overdue subscriptions were re-read."""

    listed: int
    added: int
    listed_through: datetime
    reread: int = 0


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
    added = late = 0
    in_flight_since = (started - IN_FLIGHT).timestamp()
    for event in reversed(events):  # Stripe lists newest first; store the oldest first
        new = await inbox.store_event(database=database, event=event, payload=json.dumps(event))
        added += new
        late += new and event["created"] < in_flight_since
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
    reread = await reread_overdue(database, stripe, started)
    RECONCILE_RUNS.labels("ok").inc()
    RECONCILE_EVENTS_FOUND.inc(added)
    if late:
        log.warning("reconciliation stored %d events Stripe had not delivered", late)
    elif added:
        log.info("reconciliation stored %d recent events ahead of their delivery", added)
    return Reconciled(listed=len(events), added=added, listed_through=started, reread=reread)


def _overdue_subscriptions(now: datetime):
    """Live subscriptions with a due time (period end, trial end, cancel_at) past by more than
    OVERDUE_AFTER and nothing heard of them since it; the longest overdue first."""
    due_times = (Subscription.current_period_end, Subscription.trial_end, Subscription.cancel_at)
    overdue = [
        (due < now - OVERDUE_AFTER)
        & (Subscription.last_event_at.is_(None) | (Subscription.last_event_at < due))
        for due in due_times
    ]
    return (
        select(Subscription.stripe_subscription_id, Subscription.account_id)
        .where(Subscription.status.not_in(ENDED), or_(*overdue))
        .order_by(Subscription.current_period_end)
        .limit(REREAD_BATCH)
    )


async def reread_overdue(database: Database, stripe: StripeApi, now: datetime) -> int:
    """Re-read (with the latest invoice and its payments) the overdue subscriptions, a batch a
    pass, and credit what is paid; how many were re-read. A re-read stamps the row with its
    time, so a subscription Stripe has not changed is not re-read again for the same due."""
    async with database.session() as session:
        overdue = (await session.execute(_overdue_subscriptions(now))).all()
    for subscription_id, account_id in overdue:
        observed_at = sync.fresh_time()
        data = (await stripe.retrieve_subscription(subscription_id)).to_dict()
        async with database.session() as session:
            async with session.begin():
                await sync.mirror_subscription_data(session, stripe, data, account_id, observed_at)
            invoice = data.get("latest_invoice")
            if isinstance(invoice, dict):
                await credit_sources.credit_sighting(
                    session, stripe, account_id=account_id, invoice_id=invoice["id"]
                )
        RECONCILE_REREADS.inc()
    if overdue:
        log.warning("reconciliation re-read %d overdue subscriptions", len(overdue))
    return len(overdue)


async def listing_start(database: Database, now: datetime) -> datetime:
    """The mark less the margin; before any pass, the oldest event stored (or now) likewise:
    a new install does not replay Stripe's history (`billing-gateway sync` re-reads it)."""
    async with database.session() as session:
        mark = await reconciliation_mark(session=session)
        if mark is None:
            mark = await session.scalar(select(func.min(StripeEvent.stripe_created_at)))
    return min(mark or now, now) - SAFETY_MARGIN
