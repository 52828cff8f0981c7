"""Webhook delivery as Stripe does it: signed POSTs to each enabled endpoint, retried on failure
with backoff for up to three days; and, per endpoint on request, the misbehaviour real webhook
traffic shows (`Chaos`).

Every delivery owed is a record in the store (`Store.deliveries`), written in the same commit
as the event that causes it, and removed once an attempt succeeds or the three days are over.
So a sandbox that restarts (or is killed) still owes what it owed, and retries it on schedule.
Time is the sandbox-wide clock: moving it on three days ends the retries of what is pending.
"""

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

# The first retries come quickly (a receiver restarting is back within a minute); then
# Stripe's backoff: doubling from a minute, at most 12 hours apart, for up to 3 days.
DEFAULT_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
BACKOFF_START = 60.0
BACKOFF_CAP = 12 * 3600.0
RETRY_WINDOW = 3 * 86400
# The retry loop looks again at least this often (wall seconds) even when nothing is due.
IDLE_WAIT = 60.0


def signature_header(payload: str, secret: str, timestamp: int | None = None) -> str:
    """`Stripe-Signature: t=…,v1=…`: HMAC-SHA256 of "{t}.{payload}" with the endpoint secret."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def subscribes(endpoint: StripeObject, event_type: str) -> bool:
    enabled = endpoint["enabled_events"] or []
    return endpoint["status"] == "enabled" and ("*" in enabled or event_type in enabled)


def retry_delay(attempts: int, quick: Sequence[float]) -> float:
    """Seconds from a delivery's `attempts`-th failed attempt to its next."""
    if attempts <= len(quick):
        return quick[attempts - 1]
    return min(BACKOFF_START * 2 ** (attempts - len(quick) - 1), BACKOFF_CAP)


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

    @classmethod
    def from_form(cls, form: Mapping[str, Any]) -> "Chaos":
        """Settings from `/_sandbox/webhook_endpoints/{id}/chaos`; Stripe's 400 if malformed."""
        try:
            chaos = cls.from_settings(
                {
                    "duplicate": float(form.get("duplicate", 0)),
                    "delay": float(form.get("delay", 0)),
                    "reorder": form.get("reorder", "false") == "true",
                    "window": int(form.get("window", 10)),
                    "fail_first": int(form.get("fail_first", 0)),
                    "seed": int(form["seed"]) if form.get("seed") else None,
                }
            )
        except ValueError as error:
            raise invalid_request(f"Invalid chaos setting: {error}") from None
        if not 0 <= chaos.duplicate <= 1 or chaos.delay < 0 or chaos.window < 1:
            raise invalid_request("duplicate must be within 0..1, delay >= 0 and window >= 1.")
        if chaos.fail_first < 0:
            raise invalid_request("fail_first must be >= 0.", param="fail_first")
        return chaos

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> "Chaos":
        return cls(**settings, rng=random.Random(settings["seed"]))

    def settings(self) -> dict[str, Any]:
        """The settings as given (for the `/_sandbox` answer, and as persisted)."""
        names = ("duplicate", "delay", "reorder", "window", "fail_first", "seed")
        return {name: getattr(self, name) for name in names}

    def plan(self, batch: list[str]) -> list[tuple[str, bool, float]]:
        """For deliveries waiting together: (key, whether a copy, delay), copies added, order
        mixed, delays drawn."""
        planned: list[tuple[str, bool]] = []
        for key in batch:
            planned.append((key, False))
            if self.duplicate and self.rng.random() < self.duplicate:
                planned.append((key, True))
        if self.reorder:
            self.rng.shuffle(planned)
        return [
            (key, copy, self.rng.uniform(0, self.delay) if self.delay else 0.0)
            for key, copy in planned
        ]


@dataclass
class Deliverer:
    """Delivers each event to each subscribed endpoint. First attempts go out per endpoint in
    the order the events happened (`concurrency` at once, as Stripe sends them); a failed
    attempt is retried by the retry loop when due, so one failing event never holds up the
    next. Nothing is sent until `open()` (`start(open_now=True)` opens at once)."""

    store: Store
    retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS
    timeout: float = 10.0
    concurrency: int = 1
    _queues: dict[str, asyncio.Queue[str]] = field(default_factory=dict)
    # Keys waiting for or in their first attempt, or in an attempt now: not the retry loop's.
    _busy: set[str] = field(default_factory=set)
    _chaos: dict[str, tuple[dict[str, Any], Chaos]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _client: aiohttp.ClientSession | None = None
    _open: asyncio.Event = field(default_factory=asyncio.Event)
    _due_changed: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self, *, open_now: bool = True) -> None:
        self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        self.store.event_listeners.append(self.enqueue)
        self._spawn(self._retry_when_due())
        if open_now:
            self.open()

    def open(self) -> None:
        """Start sending (e.g. once the receiver listens)."""
        self._open.set()

    def wake(self) -> None:
        """Look again at what is due (the sandbox clock moved, or a record changed)."""
        self._due_changed.set()

    async def stop(self) -> None:
        self.store.event_listeners.remove(self.enqueue)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.close()

    def chaos(self, endpoint_id: str) -> Chaos | None:
        """The endpoint's chaos, as its persisted settings say (its random draws kept)."""
        settings = dict.get(self.store.chaos, endpoint_id)
        if settings is None:
            return None
        cached = self._chaos.get(endpoint_id)
        if cached is None or cached[0] is not settings:
            cached = self._chaos[endpoint_id] = (settings, Chaos.from_settings(settings))
        return cached[1]

    def enqueue(self, event: StripeObject) -> None:
        """Owe the event to each endpoint subscribed to it (part of the emitting change)."""
        for endpoint_id in self.store.ids_by_type["webhook_endpoint"]:
            endpoint = self.store.objects[endpoint_id]
            if endpoint.get("deleted") or not subscribes(endpoint, event["type"]):
                continue
            event["pending_webhooks"] += 1
            key = self._owe(event["id"], endpoint_id, copy=False, due=self._now())
            self._busy.add(key)
            self._queue(endpoint_id).put_nowait(key)

    def _now(self) -> float:
        """The sandbox-wide clock (a test clock's frozen time does not age deliveries)."""
        return time.time() + self.store.clock_offset

    def _owe(self, event_id: str, endpoint_id: str, *, copy: bool, due: float) -> str:
        key = f"{event_id}:{endpoint_id}" + (":copy" if copy else "")
        self.store.deliveries[key] = {
            "event": event_id,
            "endpoint": endpoint_id,
            "copy": copy,
            "attempts": 0,
            "owed_since": self._now(),
            "due": due,
        }
        return key

    def _queue(self, endpoint_id: str) -> asyncio.Queue[str]:
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
            await self._open.wait()
            chaos = self.chaos(endpoint_id)
            # Events emitted by one request wait together; reordering mixes those.
            while chaos and chaos.reorder and len(batch) < chaos.window and not queue.empty():
                batch.append(queue.get_nowait())
            await in_flight.acquire()
            self._spawn(self._send_batch(endpoint_id, batch, chaos, in_flight))

    async def _send_batch(
        self,
        endpoint_id: str,
        batch: list[str],
        chaos: Chaos | None,
        in_flight: asyncio.Semaphore,
    ) -> None:
        try:
            planned = chaos.plan(batch) if chaos else [(key, False, 0.0) for key in batch]
            for key, delay in self._owe_copies(endpoint_id, planned):
                if delay:
                    # A late delivery does not hold up the others, so it may arrive after them.
                    self._reschedule(key, self.store.deliveries[key], self._now() + delay)
                else:
                    await self._attempt(key)
        finally:
            in_flight.release()

    def _owe_copies(
        self, endpoint_id: str, planned: list[tuple[str, bool, float]]
    ) -> list[tuple[str, float]]:
        """The planned deliveries' keys and delays, each copy owed as its own delivery (before
        any attempt, which settles the original)."""
        keys = []
        for key, copy, delay in planned:
            record = dict.get(self.store.deliveries, key)
            if record is None:  # the store was reset meanwhile
                self._busy.discard(key)
                continue
            if copy:
                key = self._owe(record["event"], endpoint_id, copy=True, due=self._now())
                self._busy.add(key)
            keys.append((key, delay))
        return keys

    async def _retry_when_due(self) -> None:
        await self._open.wait()
        while True:
            self._due_changed.clear()
            now = self._now()
            waiting = [
                (record["due"], key)
                for key, record in dict.items(self.store.deliveries)
                if key not in self._busy
            ]
            for _, key in sorted(waiting):
                record = dict.get(self.store.deliveries, key)
                if record is not None and record["due"] <= now and key not in self._busy:
                    self._busy.add(key)
                    await self._attempt(key)
            soonest = min((due for due, _ in waiting if due > now), default=now + IDLE_WAIT)
            try:
                async with asyncio.timeout(min(soonest - now, IDLE_WAIT)):
                    await self._due_changed.wait()
            except TimeoutError:
                pass

    async def _attempt(self, key: str) -> None:
        """One attempt of the delivery `key`; it is then settled or rescheduled, durably."""
        record = dict.get(self.store.deliveries, key)
        if record is None:  # the store was reset meanwhile
            self._busy.discard(key)
            return
        endpoint = self.store.find("webhook_endpoint", record["endpoint"])
        event = self.store.find("event", record["event"])
        delivered = True  # an endpoint or event gone is owed nothing
        if endpoint is not None and not endpoint.get("deleted") and event is not None:
            chaos = self.chaos(record["endpoint"])
            if chaos is not None and record["attempts"] < chaos.fail_first:
                delivered = False
            else:
                delivered = await self._post(endpoint, event)
        if delivered:
            if not record["copy"] and event is not None:
                event["pending_webhooks"] = max(0, event["pending_webhooks"] - 1)
            self._settle(key)
        elif self._now() - record["owed_since"] >= RETRY_WINDOW:
            log.warning("gave up delivering %s to %s", record["event"], record["endpoint"])
            self._settle(key)
        else:
            attempts = record["attempts"] + 1
            due = self._now() + retry_delay(attempts, self.retry_delays)
            self._reschedule(key, record | {"attempts": attempts}, due)

    def _settle(self, key: str) -> None:
        self.store.deliveries.pop(key, None)
        self.store.commit()
        self._busy.discard(key)

    def _reschedule(self, key: str, record: dict[str, Any], due: float) -> None:
        """Hand the delivery to the retry loop, due at `due`."""
        self.store.deliveries[key] = record | {"due": due}
        self.store.commit()
        self._busy.discard(key)
        self.wake()

    async def _post(self, endpoint: StripeObject, event: StripeObject) -> bool:
        payload = json.dumps(event)
        secret = self.store.endpoint_secrets[endpoint["id"]]
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": signature_header(payload, secret),
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }
        assert self._client is not None, "start() the deliverer first"
        try:
            async with self._client.post(endpoint["url"], data=payload, headers=headers) as answer:
                return 200 <= answer.status < 300
        except (aiohttp.ClientError, TimeoutError) as error:
            log.info("delivery of %s to %s failed: %r", event["id"], endpoint["url"], error)
            return False
