"""The subscriber side of live updates: one LISTEN per instance, fanned out in process.

Every instance hears every commit's `pg_notify` (its own included), so delivery has one
path whichever instance made the change. For each notice the bus loads the changed rows
once, in one short session, and hands the same `LiveUpdate` to every matching subscriber's
bounded queue without waiting on any of them: a subscriber whose queue is full is dropped
and told so (`on_overflow`), never waited for. When the LISTEN connection drops the bus
reconnects and sends each subscribed account a resync (`ACCESS_UPDATED`, `resync=True`)
with its current state, since notices sent meanwhile are lost."""

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from db.database import Database
from db.models import (
    Account,
    CreditAccount,
    Invoice,
    PaymentMethod,
    PaymentTransaction,
    StripeEvent,
    Subscription,
)
from services import access
from services.access import Access
from services.live import CHANNEL, UpdateKind
from services.webhooks import inbox

log = logging.getLogger("billing_gateway.live")

RECONNECT_DELAY_SECONDS = 0.5
# asyncpg reports a closed socket at once; this catches anything it reports later.
LIVENESS_CHECK_SECONDS = 5.0

Built = TypeVar("Built")


@dataclass(eq=False)
class LiveUpdate:
    """One change as loaded once for all its subscribers; shared, so never mutated."""

    kind: UpdateKind
    account_id: int | None
    occurred_at: datetime
    # Set after the LISTEN connection came back: the change itself may have been missed.
    resync: bool = False
    subscription: Subscription | None = None
    invoice: Invoice | None = None
    transaction: PaymentTransaction | None = None
    payment_method: PaymentMethod | None = None
    account: Account | None = None
    credit_balance: int | None = None
    access: Access | None = None
    webhook_event: StripeEvent | None = None
    _views: dict[object, Any] = field(default_factory=dict, repr=False)

    def view(self, key: object, build: Callable[["LiveUpdate"], Built]) -> Built:
        """`build(self)`, once per update and key however many subscribers ask for it."""
        if key not in self._views:
            self._views[key] = build(self)
        return self._views[key]


class Overflowed(Exception):
    """The subscriber read too slowly and was dropped; its queue's updates are discarded."""


class LiveSubscription:
    """One subscriber's bounded queue of updates."""

    __slots__ = ("_bus", "_key", "_on_overflow", "_queue", "overflowed")

    def __init__(
        self, bus: "LiveBus", key: int | None, size: int, on_overflow: Callable[[], None]
    ) -> None:
        self._bus = bus
        self._key = key
        self._queue: asyncio.Queue[LiveUpdate] = asyncio.Queue(size)
        self._on_overflow = on_overflow
        self.overflowed = False

    def offer(self, update: LiveUpdate) -> None:
        """Queue without waiting; a full queue drops this subscriber instead."""
        try:
            self._queue.put_nowait(update)
        except asyncio.QueueFull:
            self.overflowed = True
            self._bus.unsubscribe(self)
            self._on_overflow()

    async def next(self) -> LiveUpdate:
        if self.overflowed:
            raise Overflowed
        return await self._queue.get()


class LiveBus:
    """Listens on the update and inbox channels and fans each change out to subscribers."""

    def __init__(self, database: Database, *, queue_size: int, grace_days: int) -> None:
        self.database = database
        self.queue_size = queue_size
        self.grace_days = grace_days
        # Reads only, each seeing what is committed: no BEGIN and ROLLBACK round trips
        # between a commit and its subscribers.
        self._reads = async_sessionmaker(
            database.engine.execution_options(isolation_level="AUTOCOMMIT"),
            expire_on_commit=False,
        )
        self._by_account: dict[int, set[LiveSubscription]] = {}
        self._admins: set[LiveSubscription] = set()
        # Inbox NOTIFYs carry no id: admins get the events received after this row id.
        self._seen_event_id = 0
        self._notices: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    # --- subscribers ------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def subscription(
        self, *, account_id: int | None, on_overflow: Callable[[], None]
    ) -> AsyncIterator[LiveSubscription]:
        """A queue of the account's updates (None: the admins' webhook events), while open."""
        subscriber = LiveSubscription(self, account_id, self.queue_size, on_overflow)
        if account_id is None:
            if not self._admins:
                self._seen_event_id = await self._newest_event_id()
            self._admins.add(subscriber)
        else:
            self._by_account.setdefault(account_id, set()).add(subscriber)
        try:
            yield subscriber
        finally:
            self.unsubscribe(subscriber)

    def unsubscribe(self, subscriber: LiveSubscription) -> None:
        key = subscriber._key
        if key is None:
            self._admins.discard(subscriber)
            return
        subscribers = self._by_account.get(key)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self._by_account[key]

    def subscriber_count(self) -> int:
        return len(self._admins) + sum(len(found) for found in self._by_account.values())

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> "LiveBus":
        self._task = asyncio.create_task(self._run(), name="live-bus")
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        dispatcher = asyncio.create_task(self._dispatch_notices(), name="live-bus-dispatch")
        # Every LISTEN after the first may have missed notices: subscribers resync then.
        resync = False
        try:
            while True:
                try:
                    await self._listen_until_dropped(resync=resync)
                except Exception:  # the database is unreachable: try again shortly
                    log.warning("live updates: LISTEN failed; retrying", exc_info=True)
                resync = True
                await asyncio.sleep(RECONNECT_DELAY_SECONDS)
        finally:
            dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dispatcher

    async def _listen_until_dropped(self, *, resync: bool) -> None:
        connection: AsyncConnection = await self.database.engine.connect()
        lost = asyncio.Event()
        try:
            raw = await connection.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            driver.add_termination_listener(lambda _: lost.set())
            await driver.add_listener(CHANNEL, self._on_update_notice)
            await driver.add_listener(inbox.CHANNEL, self._on_inbox_notice)
            if resync:
                self._notices.put_nowait(None)  # None: resync every subscriber
            self.listening.set()
            log.info("live updates: listening on %s and %s", CHANNEL, inbox.CHANNEL)
            while not lost.is_set() and not driver.is_closed():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), timeout=LIVENESS_CHECK_SECONDS)
            log.warning("live updates: the LISTEN connection dropped; reconnecting")
        finally:
            self.listening.clear()
            # The connection is dead or we are stopping: never hand it back to the pool.
            with contextlib.suppress(Exception):
                await connection.invalidate()
            with contextlib.suppress(Exception):
                await connection.close()

    def _on_update_notice(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            notice = json.loads(payload)
            notice["kind"] = UpdateKind(notice["kind"])
        except (ValueError, KeyError, TypeError):
            log.warning("live updates: ignored a malformed notice %r", payload)
            return
        self._notices.put_nowait(notice)

    def _on_inbox_notice(self, *_: Any) -> None:
        if self._admins:
            self._notices.put_nowait({"kind": UpdateKind.WEBHOOK_EVENT, "account": None})

    # --- fan-out ----------------------------------------------------------------------

    async def _dispatch_notices(self) -> None:
        """One notice at a time, in commit order, so each subscriber sees changes in order."""
        while True:
            notice = await self._notices.get()
            try:
                if notice is None:
                    await self._resync_all()
                else:
                    await self._deliver(notice)
            except Exception:  # one bad notice must not stop the bus
                log.exception("live updates: could not deliver %r", notice)

    async def _deliver(self, notice: dict[str, Any]) -> None:
        kind: UpdateKind = notice["kind"]
        if kind is UpdateKind.WEBHOOK_EVENT:
            await self._deliver_webhook_events(notice.get("row"))
            return
        account_id = notice.get("account")
        if not isinstance(account_id, int) or not self._by_account.get(account_id):
            return  # nobody here listens to this account: nothing is loaded
        async with self._reads() as session:
            update = await load_update(
                session,
                kind=kind,
                account_id=account_id,
                row_id=notice.get("row"),
                grace_days=self.grace_days,
            )
        if update is not None:
            _fan_out(update, self._by_account.get(account_id, ()))

    async def _deliver_webhook_events(self, row_id: int | None) -> None:
        if not self._admins:
            return
        async with self._reads() as session:
            if row_id is None:  # received: every event stored since the last one sent
                query = select(StripeEvent).where(StripeEvent.id > self._seen_event_id)
            else:  # settled: that event
                query = select(StripeEvent).where(StripeEvent.id == row_id)
            rows = (await session.scalars(query.order_by(StripeEvent.id))).all()
        for row in rows:
            if row_id is None:
                self._seen_event_id = max(self._seen_event_id, row.id)
            update = LiveUpdate(
                kind=UpdateKind.WEBHOOK_EVENT,
                account_id=None,
                occurred_at=datetime.now(UTC),
                webhook_event=row,
            )
            _fan_out(update, self._admins)

    async def _resync_all(self) -> None:
        for account_id in list(self._by_account):
            async with self._reads() as session:
                update = await load_update(
                    session,
                    kind=UpdateKind.ACCESS_UPDATED,
                    account_id=account_id,
                    row_id=None,
                    grace_days=self.grace_days,
                )
            assert update is not None
            update.resync = True
            _fan_out(update, self._by_account.get(account_id, ()))
        if self._admins:
            await self._deliver_webhook_events(None)

    async def _newest_event_id(self) -> int:
        async with self._reads() as session:
            return await session.scalar(select(func.coalesce(func.max(StripeEvent.id), 0))) or 0


def _fan_out(update: LiveUpdate, subscribers: Any) -> None:
    # A copy: an overflowing subscriber leaves the set while it is walked.
    for subscriber in list(subscribers):
        subscriber.offer(update)


async def load_update(
    session: AsyncSession,
    *,
    kind: UpdateKind,
    account_id: int,
    row_id: int | None,
    grace_days: int,
) -> LiveUpdate | None:
    """The rows a notice names, if they still belong to the account; None when gone."""
    update = LiveUpdate(kind=kind, account_id=account_id, occurred_at=datetime.now(UTC))
    if kind is UpdateKind.SUBSCRIPTION_UPDATED:
        update.subscription = await _owned(session, Subscription, row_id, account_id)
        return update if update.subscription is not None else None
    if kind is UpdateKind.INVOICE_UPDATED:
        update.invoice = await _owned(session, Invoice, row_id, account_id)
        return update if update.invoice is not None else None
    if kind is UpdateKind.PAYMENT_UPDATED:
        update.transaction = await _owned(session, PaymentTransaction, row_id, account_id)
        return update if update.transaction is not None else None
    if kind is UpdateKind.PAYMENT_METHOD_UPDATED:
        update.payment_method = await _owned(session, PaymentMethod, row_id, account_id)
        update.account = await session.get(Account, account_id)
        return update if update.payment_method is not None else None
    if kind is UpdateKind.CREDITS_UPDATED:
        update.credit_balance = await credit_balance(session, account_id)
        return update
    # ACCESS_UPDATED: the account's current state.
    update.access = await access.access_for_account(
        session=session, account_id=account_id, grace_days=grace_days, now=update.occurred_at
    )
    update.subscription = update.access.subscription
    update.credit_balance = await credit_balance(session, account_id)
    return update


async def _owned(session: AsyncSession, model: Any, row_id: int | None, account_id: int) -> Any:
    if row_id is None:
        return None
    row = await session.get(model, row_id)
    return row if row is not None and row.account_id == account_id else None


async def credit_balance(session: AsyncSession, account_id: int) -> int:
    """The account's balance; 0 before its wallet exists."""
    balance = await session.scalar(
        select(CreditAccount.balance).where(CreditAccount.account_id == account_id)
    )
    return balance or 0
