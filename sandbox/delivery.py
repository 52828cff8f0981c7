"""Webhook delivery as Stripe does it: signed POSTs to each enabled endpoint, retried on failure;
and, per endpoint on request, the misbehaviour real webhook traffic shows (`Chaos`)."""

import asyncio
import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from sandbox.errors import invalid_request
from sandbox.registry import StripeObject
from sandbox.store import Store

log = logging.getLogger("billing_gateway.sandbox.delivery")

DEFAULT_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


def signature_header(payload: str, secret: str, timestamp: int | None = None) -> str:
    """`Stripe-Signature: t=…,v1=…`: HMAC-SHA256 of "{t}.{payload}" with the endpoint secret."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def subscribes(endpoint: StripeObject, event_type: str) -> bool:
    enabled = endpoint["enabled_events"] or []
    return endpoint["status"] == "enabled" and ("*" in enabled or event_type in enabled)


@dataclass(frozen=True)
class Delivery:
    """One event on its way to one endpoint."""

    event: StripeObject
    # A second copy of an event already being delivered (it does not count as delivering it).
    copy: bool = False
    delay: float = 0.0


@dataclass
class Chaos:
    """One endpoint's deliveries misbehaving on purpose, as Stripe allows them to: events sent
    twice, late, out of order, or only after failed attempts. With a seed, the same events
    get the same treatment."""

    duplicate: float = 0.0  # the share of events delivered twice
    delay: float = 0.0  # each delivery waits a random time up to this many seconds
    reorder: bool = False  # events waiting together go out in random order
    window: int = 10  # at most this many waiting events are mixed together
    fail_first: int = 0  # attempts of each delivery that fail, without posting, before one is made
    seed: int | None = None
    rng: random.Random = field(default_factory=random.Random)
    failures: dict[tuple[str, bool], int] = field(default_factory=dict)

    @classmethod
    def from_form(cls, form: Mapping[str, Any]) -> "Chaos":
        """Settings from `/_sandbox/webhook_endpoints/{id}/chaos`; Stripe's 400 if malformed."""
        try:
            seed = int(form["seed"]) if form.get("seed") else None
            chaos = cls(
                duplicate=float(form.get("duplicate", 0)),
                delay=float(form.get("delay", 0)),
                reorder=form.get("reorder", "false") == "true",
                window=int(form.get("window", 10)),
                fail_first=int(form.get("fail_first", 0)),
                seed=seed,
                rng=random.Random(seed),
            )
        except ValueError as error:
            raise invalid_request(f"Invalid chaos setting: {error}") from None
        if not 0 <= chaos.duplicate <= 1 or chaos.delay < 0 or chaos.window < 1:
            raise invalid_request("duplicate must be within 0..1, delay >= 0 and window >= 1.")
        if chaos.fail_first < 0:
            raise invalid_request("fail_first must be >= 0.", param="fail_first")
        return chaos

    def settings(self) -> dict[str, Any]:
        """The settings as given (for the `/_sandbox` answer)."""
        names = ("duplicate", "delay", "reorder", "window", "fail_first", "seed")
        return {name: getattr(self, name) for name in names}

    def plan(self, batch: list[StripeObject]) -> list[Delivery]:
        """The deliveries for events waiting together: copies added, order mixed, delays drawn."""
        planned: list[tuple[StripeObject, bool]] = []
        for event in batch:
            planned.append((event, False))
            if self.duplicate and self.rng.random() < self.duplicate:
                planned.append((event, True))
        if self.reorder:
            self.rng.shuffle(planned)
        return [
            Delivery(event, copy, self.rng.uniform(0, self.delay) if self.delay else 0.0)
            for event, copy in planned
        ]

    def fails(self, delivery: Delivery) -> bool:
        """Whether this attempt is one of the first `fail_first`, failed without posting."""
        key = (delivery.event["id"], delivery.copy)
        failed = self.failures.get(key, 0)
        if failed >= self.fail_first:
            return False
        self.failures[key] = failed + 1
        return True


@dataclass
class Deliverer:
    """Delivers each event to each subscribed endpoint; a failed attempt is retried with
    backoff in the background, so one failing event never holds up the next.

    `concurrency` deliveries per endpoint are in flight at once, as Stripe sends them; with
    one (the default), events go out one at a time in the order they happened."""

    store: Store
    retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS
    timeout: float = 10.0
    concurrency: int = 1
    chaos: dict[str, Chaos] = field(default_factory=dict)
    _queues: dict[str, asyncio.Queue[StripeObject]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _client: aiohttp.ClientSession | None = None

    def start(self) -> None:
        self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        self.store.event_listeners.append(self.enqueue)

    async def stop(self) -> None:
        self.store.event_listeners.remove(self.enqueue)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.close()

    def enqueue(self, event: StripeObject) -> None:
        for endpoint_id in self.store.ids_by_type["webhook_endpoint"]:
            endpoint = self.store.objects[endpoint_id]
            if endpoint.get("deleted") or not subscribes(endpoint, event["type"]):
                continue
            event["pending_webhooks"] += 1
            self._queue(endpoint_id).put_nowait(event)

    async def idle(self) -> None:
        """Wait until every queued first attempt has been made (tests use this)."""
        for queue in list(self._queues.values()):
            await queue.join()

    def _queue(self, endpoint_id: str) -> asyncio.Queue[StripeObject]:
        if endpoint_id not in self._queues:
            self._queues[endpoint_id] = asyncio.Queue()
            self._spawn(self._drain(endpoint_id))
        return self._queues[endpoint_id]

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, endpoint_id: str) -> None:
        queue = self._queues[endpoint_id]
        in_flight = asyncio.Semaphore(self.concurrency)
        while True:
            batch = [await queue.get()]
            chaos = self.chaos.get(endpoint_id)
            # Events emitted by one request wait together; reordering mixes those.
            while chaos and chaos.reorder and len(batch) < chaos.window and not queue.empty():
                batch.append(queue.get_nowait())
            await in_flight.acquire()
            self._spawn(self._send_batch(endpoint_id, batch, chaos, in_flight))

    async def _send_batch(
        self,
        endpoint_id: str,
        batch: list[StripeObject],
        chaos: Chaos | None,
        in_flight: asyncio.Semaphore,
    ) -> None:
        try:
            await self._send(endpoint_id, batch, chaos)
        finally:
            in_flight.release()
            for _ in batch:
                self._queues[endpoint_id].task_done()

    async def _send(self, endpoint_id: str, batch: list[StripeObject], chaos: Chaos | None) -> None:
        deliveries = chaos.plan(batch) if chaos else [Delivery(event) for event in batch]
        for delivery in deliveries:
            if delivery.delay:
                # A late delivery does not hold up the others, so it may arrive after them.
                self._spawn(self._deliver_later(endpoint_id, delivery))
            else:
                await self._deliver(endpoint_id, delivery)

    async def _deliver_later(self, endpoint_id: str, delivery: Delivery) -> None:
        await asyncio.sleep(delivery.delay)
        await self._deliver(endpoint_id, delivery)

    async def _deliver(self, endpoint_id: str, delivery: Delivery) -> None:
        if not await self._attempt(endpoint_id, delivery):
            self._spawn(self._retry(endpoint_id, delivery))

    async def _retry(self, endpoint_id: str, delivery: Delivery) -> None:
        for delay in self.retry_delays:
            await asyncio.sleep(delay)
            if await self._attempt(endpoint_id, delivery):
                return
        log.warning("gave up delivering %s to %s", delivery.event["id"], endpoint_id)

    async def _attempt(self, endpoint_id: str, delivery: Delivery) -> bool:
        endpoint = self.store.find("webhook_endpoint", endpoint_id)
        if endpoint is None or endpoint.get("deleted"):
            return True
        chaos = self.chaos.get(endpoint_id)
        if chaos is not None and chaos.fails(delivery):
            return False
        event = delivery.event
        payload = json.dumps(event)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": signature_header(payload, self.store.endpoint_secrets[endpoint_id]),
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }
        assert self._client is not None, "start() the deliverer first"
        try:
            async with self._client.post(
                endpoint["url"], data=payload, headers=headers
            ) as response:
                status: int | None = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            log.info("delivery of %s to %s failed: %r", event["id"], endpoint["url"], error)
            status = None
        delivered = status is not None and 200 <= status < 300
        if delivered and not delivery.copy:
            event["pending_webhooks"] = max(0, event["pending_webhooks"] - 1)
        return delivered
