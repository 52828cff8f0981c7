"""The worker: applies due inbox events, woken by NOTIFY, with a poll in case one is lost."""

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from db.database import Database
from gateway.settings import GRACE_DAYS, Settings
from services import response_cache
from services.stripe.client import StripeApi
from services.webhooks import inbox, reconcile
from services.webhooks.inbox import RetryPolicy

log = logging.getLogger("billing_gateway.webhooks.worker")

FOLD_READ_CHANGES_SECONDS = 300.0
# How long stop() lets claim loops finish the events in their hands.
STOP_GRACE_SECONDS = 10.0
# A failed reconciliation pass is tried again this soon (or at the interval, if shorter).
RECONCILE_RETRY_SECONDS = 30.0


class WebhookWorker:
    """Claims and applies events, `concurrency` at a time; run several in many processes.

    Handlers mostly wait on the database and on Stripe, so one process applies several
    events at once; the per-object advisory lock keeps each object's events in order."""

    def __init__(
        self,
        *,
        database: Database,
        stripe: StripeApi,
        policy: RetryPolicy,
        poll_seconds: float = 2.0,
        concurrency: int = 4,
        listen: bool = True,
        reconcile_seconds: float = 0.0,
        grace_days: int = GRACE_DAYS,
    ) -> None:
        self.database = database
        self.concurrency = concurrency
        self.stripe = stripe
        self.policy = policy
        self.poll_seconds = poll_seconds
        self.listen = listen
        self.reconcile_seconds = reconcile_seconds  # 0: no reconciliation passes
        self.grace_days = grace_days
        self._idle: deque[asyncio.Future[None]] = deque()  # claim loops waiting for work
        self._missed_wake = False  # a NOTIFY came while no loop was waiting
        self._listener: AsyncConnection | None = None
        self._driver: Any = None  # the asyncpg connection under the listener
        self._task: asyncio.Task[None] | None = None
        self._claimers: list[asyncio.Task[None]] = []
        self._stopping = False
        self._next_fold = 0.0

    def start(self) -> "WebhookWorker":
        self._task = asyncio.create_task(self.run(), name="webhook-worker")
        return self

    async def stop(self) -> None:
        """Let each claim loop finish the event in its hands (a cancelled one could leave its
        connection mid-transaction), then cancel the loops; an event still running after
        STOP_GRACE_SECONDS is rolled back and stays pending."""
        self._stopping = True
        self._wake_all()
        if self._claimers:
            await asyncio.wait(self._claimers, timeout=STOP_GRACE_SECONDS)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        """`concurrency` claim loops, each applying due events and then waiting for a NOTIFY
        or its next poll on its own; until cancelled."""
        try:
            async with asyncio.TaskGroup() as loops:
                loops.create_task(self._keep_listening())
                if self.reconcile_seconds > 0:
                    loops.create_task(self._keep_reconciling())
                self._claimers = [
                    loops.create_task(self._claim_loop()) for _ in range(self.concurrency)
                ]
        finally:
            await self._stop_listening()

    async def _keep_reconciling(self) -> None:
        """A reconciliation pass now, then every `reconcile_seconds`; sooner after a failure
        (Stripe unreachable or rate limiting), whose stretch the next pass lists again."""
        while True:
            delay = self.reconcile_seconds
            try:
                await reconcile.reconcile_events(database=self.database, stripe=self.stripe)
            except Exception:
                log.warning("reconciliation with Stripe's events failed", exc_info=True)
                delay = min(delay, RECONCILE_RETRY_SECONDS)
            await asyncio.sleep(delay)

    async def drain(self) -> int:
        """Apply every due event, then return; how many were settled or retried."""
        async with asyncio.TaskGroup() as claimers:  # one failing cancels the others
            tasks = [claimers.create_task(self._drain_one()) for _ in range(self.concurrency)]
        return sum(task.result() for task in tasks)

    async def _drain_one(self) -> int:
        count = 0
        while claimed := await self._process_next_event():
            count += claimed
        return count

    def _process_next_event(self) -> Awaitable[int]:
        return inbox.process_next_event(
            database=self.database,
            stripe=self.stripe,
            policy=self.policy,
            grace_days=self.grace_days,
        )

    async def _claim_loop(self) -> None:
        """Claim until nothing is due, then wait. A loop that found an event wakes one more:
        a backlog brings every loop in, one event at a time, while a trickle keeps the
        others waiting rather than claiming in vain on every NOTIFY."""
        while not self._stopping:
            try:
                claimed = await self._process_next_event()
            except Exception:  # the database is unreachable: try again at the next poll
                log.exception("webhook worker could not reach the database")
                await asyncio.sleep(self.poll_seconds)
                continue
            if claimed:
                self._wake_one(remember=False)
            else:
                await self._wait_for_work()

    def _wake_one(self, *, remember: bool) -> None:
        while self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        # No loop waits: every one is claiming, so the next to find nothing claims again.
        self._missed_wake = self._missed_wake or remember

    def _wake_all(self) -> None:
        while self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def _wait_for_work(self) -> None:
        if self._stopping:
            return
        if self._missed_wake:
            self._missed_wake = False
            return
        waiter = asyncio.get_running_loop().create_future()
        self._idle.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout=self.poll_seconds)
        except TimeoutError:  # the poll: a lost NOTIFY is found here
            with contextlib.suppress(ValueError):
                self._idle.remove(waiter)

    def _on_notify(self, *_: Any) -> None:
        self._wake_one(remember=True)

    async def _keep_listening(self) -> None:
        """LISTEN again after the server dropped the connection, and fold the read cache's
        change log when due; every poll."""
        while True:
            await self._ensure_listening()
            try:
                await self._fold_read_changes_when_due()
            except Exception:
                log.exception("webhook worker could not fold the read cache's changes")
            await asyncio.sleep(self.poll_seconds)

    async def _fold_read_changes_when_due(self) -> None:
        """Keep the response cache's change log small; the background work of any worker."""
        if time.monotonic() < self._next_fold:
            return
        self._next_fold = time.monotonic() + FOLD_READ_CHANGES_SECONDS
        async with self.database.session() as session:
            await response_cache.fold_read_changes(session=session)

    async def _ensure_listening(self) -> None:
        """LISTEN on a connection of its own; again after the server dropped it."""
        if not self.listen or (self._driver is not None and not self._driver.is_closed()):
            return
        await self._stop_listening()
        try:
            connection = await self.database.engine.connect()
            raw = await connection.get_raw_connection()
            self._listener, self._driver = connection, raw.driver_connection
            await self._driver.add_listener(inbox.CHANNEL, self._on_notify)
        except Exception:  # polling still finds every event, only later
            log.warning("webhook worker cannot LISTEN; polling only", exc_info=True)
            await self._stop_listening()

    async def _stop_listening(self) -> None:
        connection, driver = self._listener, self._driver
        self._listener = self._driver = None
        if driver is not None:
            with contextlib.suppress(Exception):
                # A pooled connection must not keep calling this worker once returned.
                await driver.remove_listener(inbox.CHANNEL, self._on_notify)
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()


def worker_for(*, database: Database, stripe: StripeApi, settings: Settings) -> WebhookWorker:
    """A worker configured from Settings."""
    policy = RetryPolicy(
        max_attempts=settings.webhook_max_attempts,
        base_seconds=settings.webhook_retry_base_seconds,
        max_seconds=settings.webhook_retry_max_seconds,
    )
    return WebhookWorker(
        database=database,
        stripe=stripe,
        policy=policy,
        poll_seconds=settings.webhook_poll_seconds,
        concurrency=settings.webhook_worker_concurrency,
        reconcile_seconds=settings.reconcile_interval_seconds,
        grace_days=settings.billing_grace_days,
    )
