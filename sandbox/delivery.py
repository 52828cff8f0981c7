"""Webhook delivery as Stripe does it: signed POSTs to each enabled endpoint, retried on failure."""

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

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


@dataclass
class Deliverer:
    """Delivers each event to each subscribed endpoint; a failed attempt is retried with
    backoff in the background, so one failing event never holds up the next."""

    store: Store
    retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS
    timeout: float = 10.0
    _queues: dict[str, asyncio.Queue[StripeObject]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _client: httpx.AsyncClient | None = None

    def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.timeout)
        self.store.event_listeners.append(self.enqueue)

    async def stop(self) -> None:
        self.store.event_listeners.remove(self.enqueue)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

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
        while True:
            event = await queue.get()
            try:
                if not await self._attempt(endpoint_id, event):
                    self._spawn(self._retry(endpoint_id, event))
            finally:
                queue.task_done()

    async def _retry(self, endpoint_id: str, event: StripeObject) -> None:
        for delay in self.retry_delays:
            await asyncio.sleep(delay)
            if await self._attempt(endpoint_id, event):
                return
        log.warning("gave up delivering %s to %s", event["id"], endpoint_id)

    async def _attempt(self, endpoint_id: str, event: StripeObject) -> bool:
        endpoint = self.store.find("webhook_endpoint", endpoint_id)
        if endpoint is None or endpoint.get("deleted"):
            return True
        payload = json.dumps(event)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": signature_header(payload, self.store.endpoint_secrets[endpoint_id]),
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }
        assert self._client is not None, "start() the deliverer first"
        try:
            response = await self._client.post(endpoint["url"], content=payload, headers=headers)
            status: int | None = response.status_code
        except httpx.HTTPError as error:
            log.info("delivery of %s to %s failed: %r", event["id"], endpoint["url"], error)
            status = None
        delivered = status is not None and 200 <= status < 300
        if delivered:
            event["pending_webhooks"] = max(0, event["pending_webhooks"] - 1)
        return delivered
