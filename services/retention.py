"""Retention: what the gateway keeps of personal data, and for how long.

A pass (`run`; `billing-gateway retention`, and workers every RETENTION_INTERVAL_HOURS):
- strips the payloads of settled webhook events (processed or skipped) received more than
  RETENTION_EVENT_PAYLOAD_DAYS ago, or about an erased customer, to a stub (`EVENT_STUB`:
  the event's id, type, created, and the ids of its object, no personal data), which
  `events show` and the admin inbox still show. Pending and failed events keep theirs: they are still to be applied;
- strips as old mails not waiting to be sent (context `{}`, no recipient) and the `data` of
  as old product events none of whose deliveries is pending: they hold names and emails;
- deletes callers' idempotency keys older than Stripe's own window (`IDEMPOTENCY_WINDOW`):
  a retry after it would reach Stripe as a new request anyway;
- anonymises invoices and payments older than RETENTION_FINANCIAL_YEARS: the billing
  address, tax ids, description and receipt link go; amounts, dates, currency, status and
  ids stay, as the books need them;
- deletes the query cost budgets (services/cost_budgets.py) untouched for as long as a
  budget takes to refill: full, they are the same as none, and they name client addresses.

`credit_entries` and `audit_log` are left alone: they are append-only (a trigger refuses
UPDATE and DELETE), and their rows hold no personal data (ids, amounts, and reason text the
gateway writes itself).

Rows change a batch at a time, each batch its own short transaction, so a big table is never
locked for long, and rows another transaction holds are skipped until the next pass. Every
rule's condition excludes the rows it has changed already, so a pass is idempotent and an
interrupted one is finished by the next. One process at a time runs a pass (a PostgreSQL
advisory lock); the others skip it."""

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter, Gauge
from sqlalchemy import (
    ColumnElement,
    Text,
    delete,
    exists,
    func,
    inspect,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB

from db import sealed
from db.database import Database
from db.models import (
    Account,
    Base,
    CostBudget,
    DeliveryStatus,
    IdempotencyKey,
    Invoice,
    Notification,
    PaymentTransaction,
    ProductEvent,
    ProductWebhookDelivery,
    StripeEvent,
    WebhookEventStatus,
)
from gateway.settings import Settings

log = logging.getLogger("billing_gateway.retention")

# pg_try_advisory_lock key: one retention pass at a time across every process.
RETENTION_LOCK = 0x5EC0_DE1E
# Stripe keeps an idempotency key for 24 hours; ours mirror it (incomplete ones too: a first
# request is taken over after a minute, so one this old died long ago).
IDEMPOTENCY_WINDOW = timedelta(hours=24)
BATCH_SIZE = 1000
# A failed scheduled pass is tried again this soon (or at the interval, if shorter).
RETRY_AFTER = timedelta(minutes=15)

RETENTION_ROWS = Counter("billing_retention_rows", "Rows retention changed, by action", ["action"])
RETENTION_RUNS = Counter(
    "billing_retention_runs",
    "Retention passes (dry runs excluded), by outcome (ok, busy: another process held the "
    "lock, failed)",
    ["outcome"],
)
RETENTION_LAST_RUN = Gauge(
    "billing_retention_last_run_timestamp_seconds", "When the last retention pass completed"
)

# What a stripped event keeps: nothing personal, enough to show and to find it by. Its
# object's `payment_intent` stays because a dispute event is how credit_sources finds that a
# payment was disputed. `retained: false` marks it (no Stripe event has that key).
EVENT_STUB = func.jsonb_build_object(
    "id",
    StripeEvent.payload["id"],
    "type",
    StripeEvent.payload["type"],
    "object",
    "event",
    "created",
    StripeEvent.payload["created"],
    "retained",
    False,
    "data",
    func.jsonb_build_object(
        "object",
        func.jsonb_strip_nulls(
            func.jsonb_build_object(
                *(
                    part
                    for key in ("id", "object", "payment_intent")
                    for part in (key, StripeEvent.payload["data"]["object"][key])
                )
            )
        ),
    ),
)
STRIPPED_MARK = "retained"


def is_stripped(payload: dict[str, Any]) -> bool:
    """Whether an event's payload is retention's stub (its body is gone: not replayable)."""
    return payload.get(STRIPPED_MARK) is False


@dataclass
class RetentionReport:
    """Rows a pass changed (or, in a dry run, would change), by action."""

    event_payloads_stripped: int = 0
    product_payloads_stripped: int = 0
    notifications_stripped: int = 0
    idempotency_keys_deleted: int = 0
    invoices_anonymised: int = 0
    payments_anonymised: int = 0
    cost_budgets_deleted: int = 0
    dry_run: bool = False

    def counts(self) -> dict[str, int]:
        return {
            name: value for name, value in dataclasses.asdict(self).items() if name != "dry_run"
        }


@dataclass(frozen=True)
class Cutoffs:
    """Rows older than these are due."""

    payloads: datetime
    idempotency: datetime
    financial: datetime
    refilled: datetime  # a cost budget untouched since then is full

    @classmethod
    def at(cls, now: datetime, settings: Settings) -> "Cutoffs":
        refill = settings.graphql_cost_budget / settings.graphql_cost_refill_per_second
        return cls(
            payloads=now - timedelta(days=settings.retention_event_payload_days),
            idempotency=now - IDEMPOTENCY_WINDOW,
            financial=_years_before(now, settings.retention_financial_years),
            refilled=now - timedelta(seconds=refill),
        )


@dataclass(frozen=True)
class Rule:
    """One action: the rows of `table` it is due for, and what it sets (None: deletes them)."""

    action: str  # the RetentionReport field and the metric's label
    table: type[Base]
    due: Callable[[Cutoffs], ColumnElement[bool]]
    changes: dict[str, Any] | None


EMPTY_OBJECT = literal({}, JSONB)
SETTLED_EVENTS = (WebhookEventStatus.PROCESSED, WebhookEventStatus.SKIPPED)

# Events Stripe sent about a customer after its erasure (services/erasure.py strips the
# ones before) are stripped whatever their age.
ABOUT_AN_ERASED_CUSTOMER = exists().where(
    Account.erased_at.is_not(None),
    Account.stripe_customer_id.in_(
        [StripeEvent.object_id, StripeEvent.payload["data"]["object"]["customer"].astext]
    ),
)

# A product event whose data is still held and owed to no endpoint any more.
PRODUCT_EVENT_SETTLED = ProductEvent.payload.has_key(sealed.SEALED) & ~exists().where(
    ProductWebhookDelivery.event_id == ProductEvent.id,
    ProductWebhookDelivery.status == DeliveryStatus.PENDING,
)
# Its envelope's clear part (id, type, timestamp) with empty data.
PRODUCT_EVENT_STUB = ProductEvent.payload.op("-", return_type=JSONB)(
    literal(sealed.SEALED, Text)
).op("||", return_type=JSONB)(literal({"data": {}}, JSONB))

RULES = (
    Rule(
        "event_payloads_stripped",
        StripeEvent,
        lambda cut: (
            StripeEvent.status.in_(SETTLED_EVENTS)
            & ((StripeEvent.received_at < cut.payloads) | ABOUT_AN_ERASED_CUSTOMER)
            & ~StripeEvent.payload.has_key(STRIPPED_MARK)
        ),
        {"payload": EVENT_STUB},
    ),
    Rule(
        "product_payloads_stripped",
        ProductEvent,
        lambda cut: (ProductEvent.created_at < cut.payloads) & PRODUCT_EVENT_SETTLED,
        {"payload": PRODUCT_EVENT_STUB},
    ),
    Rule(
        "notifications_stripped",
        Notification,
        lambda cut: (
            (Notification.created_at < cut.payloads)
            & (Notification.status != DeliveryStatus.PENDING)
            & or_(
                Notification.context != EMPTY_OBJECT,
                Notification.recipient != "",
                Notification.recipient_name.is_not(None),
            )
        ),
        {"context": EMPTY_OBJECT, "recipient": "", "recipient_name": None},
    ),
    Rule(
        "idempotency_keys_deleted",
        IdempotencyKey,
        lambda cut: IdempotencyKey.created_at < cut.idempotency,
        None,
    ),
    Rule(
        "invoices_anonymised",
        Invoice,
        lambda cut: (
            (func.greatest(Invoice.stripe_created_at, Invoice.period_end) < cut.financial)
            & or_(
                Invoice.customer_address.is_not(None),
                Invoice.customer_tax_ids.is_not(None),
            )
        ),
        {"customer_address": None, "customer_tax_ids": None},
    ),
    Rule(
        "payments_anonymised",
        PaymentTransaction,
        lambda cut: (
            (PaymentTransaction.stripe_created_at < cut.financial)
            & or_(
                PaymentTransaction.description.is_not(None),
                PaymentTransaction.receipt_url.is_not(None),
            )
        ),
        {"description": None, "receipt_url": None},
    ),
    Rule(
        "cost_budgets_deleted",
        CostBudget,
        lambda cut: CostBudget.updated_at < cut.refilled,
        None,
    ),
)


async def run(
    database: Database, settings: Settings, *, dry_run: bool = False, now: datetime | None = None
) -> RetentionReport | None:
    """One pass: apply every rule (in a dry run only count its rows, changing nothing) and
    log the counts; None when another process is running one."""
    cutoffs = Cutoffs.at(now or datetime.now(UTC), settings)
    async with database.driver_connection() as lock:
        if not await lock.fetchval("SELECT pg_try_advisory_lock($1)", RETENTION_LOCK):
            if not dry_run:
                RETENTION_RUNS.labels("busy").inc()
            return None
        try:
            report = await _pass(database, cutoffs, dry_run)
        except Exception:
            if not dry_run:
                RETENTION_RUNS.labels("failed").inc()
            raise
        finally:
            await lock.execute("SELECT pg_advisory_unlock($1)", RETENTION_LOCK)
    if not dry_run:
        RETENTION_RUNS.labels("ok").inc()
        RETENTION_LAST_RUN.set_to_current_time()
    counts = ", ".join(f"{name}={count}" for name, count in report.counts().items())
    log.info("retention %s: %s", "dry run" if dry_run else "pass", counts)
    return report


async def _pass(database: Database, cutoffs: Cutoffs, dry_run: bool) -> RetentionReport:
    report = RetentionReport(dry_run=dry_run)
    for rule in RULES:
        if dry_run:
            count = await _count_due(database, rule, cutoffs)
        else:
            count = await _apply(database, rule, cutoffs)
            RETENTION_ROWS.labels(rule.action).inc(count)
        setattr(report, rule.action, count)
    return report


async def _count_due(database: Database, rule: Rule, cutoffs: Cutoffs) -> int:
    query = select(func.count()).select_from(rule.table).where(rule.due(cutoffs))
    async with database.read_session() as session:
        return await session.scalar(query) or 0


async def _apply(database: Database, rule: Rule, cutoffs: Cutoffs) -> int:
    """Change the rule's rows a batch at a time; how many were changed."""
    table = rule.table
    (key,) = inspect(table).primary_key
    batch = (
        select(key)
        .where(rule.due(cutoffs))
        .limit(BATCH_SIZE)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    where = key.in_(batch)
    statement = (
        delete(table).where(where)
        if rule.changes is None
        else update(table).where(where).values(rule.changes)
    )
    total = 0
    while True:
        async with database.session() as session, session.begin():
            changed = (await session.execute(statement)).rowcount
        total += changed
        if changed < BATCH_SIZE:
            return total


async def keep_running(database: Database, settings: Settings) -> None:
    """A pass now, then every RETENTION_INTERVAL_HOURS (0: none at all), until cancelled;
    a failure is logged (and counted by `run`) and the pass tried again sooner."""
    interval = timedelta(hours=settings.retention_interval_hours)
    if not interval:
        return
    while True:
        delay = interval
        try:
            await run(database, settings)
        except Exception:
            log.warning("the retention pass failed", exc_info=True)
            delay = min(interval, RETRY_AFTER)
        await asyncio.sleep(delay.total_seconds())


def _years_before(moment: datetime, years: int) -> datetime:
    """The same date `years` earlier (29 February: the 28th)."""
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:
        return moment.replace(year=moment.year - years, day=28)
