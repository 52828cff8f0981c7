"""The outbox worker: sends due mails (services/notifications.py) and delivers due events to
the product's endpoints (services/product_webhooks.py), apart from the worker that applies
Stripe's events, so a slow SMTP server or endpoint never holds Stripe's events back."""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from db.database import Database
from gateway.settings import Settings
from services import notifications, product_webhooks

log = logging.getLogger("billing_gateway.outbox")

# Deliveries in flight at once: one endpoint that answers slowly holds one of them.
DELIVERY_CONCURRENCY = 4


class OutboxWorker:
    def __init__(self, *, database: Database, settings: Settings) -> None:
        self.database = database
        self.settings = settings
        self._task: asyncio.Task[None] | None = None

    def start(self) -> "OutboxWorker":
        self._task = asyncio.create_task(self.run(), name="outbox-worker")
        return self

    async def stop(self) -> None:
        """Cancel the loops; a mail or delivery in flight is claimed by lease, so it is tried
        again once the lease ends."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        async with (
            product_webhooks.http_client(self.settings) as http,
            asyncio.TaskGroup() as loops,
        ):
            loops.create_task(
                self._keep_going(
                    "mail", lambda: notifications.send_next(self.database, self.settings)
                )
            )
            for _ in range(DELIVERY_CONCURRENCY):
                loops.create_task(
                    self._keep_going(
                        "webhook",
                        lambda: product_webhooks.deliver_next(self.database, self.settings, http),
                    )
                )

    async def _keep_going(self, name: str, next_one: Callable[[], Awaitable[int]]) -> None:
        """Work while something is due, then wait for the next poll."""
        while True:
            try:
                if await next_one():
                    continue
            except Exception:  # the database or the network failed: try again at the next poll
                log.exception("the outbox worker could not send a %s", name)
            await asyncio.sleep(self.settings.outbox_poll_seconds)
