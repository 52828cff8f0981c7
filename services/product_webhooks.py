"""The product's own webhooks (Standard Webhooks): events published in their cause's
transaction, delivered signed to the product's endpoints, in order per customer, retried
with backoff, never to a private address in production."""

import base64
import dataclasses
import ipaddress
import json
import logging
import secrets
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks.webhooks import Webhook
from yarl import URL

from db import sealed
from db.database import Database, driver_of
from db.models import DeliveryStatus, ProductEvent, ProductWebhookDelivery, ProductWebhookEndpoint
from gateway.settings import Settings
from services.errors import DomainError, ErrorCode, InvalidInput, NotFound
from services.observability import PRODUCT_WEBHOOK_DELIVERIES, PRODUCT_WEBHOOK_DURATION
from services.pagination import Listing, Page, paginate

log = logging.getLogger("billing_gateway.product_webhooks")

EVENT_TYPES = (
    "subscription.created",
    "subscription.updated",
    "subscription.canceled",
    "invoice.paid",
    "invoice.payment_failed",
    "payment.succeeded",
    "payment.failed",
    "credits.updated",
    "access.updated",
)
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
USER_AGENT = "billing-gateway-webhooks/1"
MAX_URL_CHARS = 2048
# What is read of an endpoint's answer, and what of it is kept to explain a failure.
MAX_RESPONSE_BYTES = 64 * 1024
MAX_ERROR_CHARS = 500
# A claimed delivery stays pending, due again this long after its attempt's time limit: a
# worker that dies mid-delivery leaves it to be sent again (same webhook-id) after that.
LEASE_MARGIN_SECONDS = 60.0
GONE_REASON = "410 Gone from the endpoint"
# Backoff doubles up to the ceiling; past this many doublings it is the ceiling anyway.
MAX_DOUBLINGS = 32

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# ---- publishing ----

PUBLISH = """
WITH event AS (
    INSERT INTO product_events (message_id, cause, type, account_id, payload)
    VALUES ($1, $2, $3, $4, $5::jsonb)
    ON CONFLICT (cause) DO NOTHING
    RETURNING id, account_id
)
INSERT INTO product_webhook_deliveries (event_id, endpoint_id, account_id)
SELECT event.id, endpoint.id, event.account_id
FROM event JOIN product_webhook_endpoints AS endpoint
    ON endpoint.enabled AND endpoint.deleted_at IS NULL
    AND (endpoint.event_types = '[]'::jsonb OR endpoint.event_types ? $3)
"""


async def publish(
    session: AsyncSession,
    *,
    type: str,
    cause: str,
    account_id: int | None,
    data: dict[str, Any],
    occurred_at: datetime | None = None,
) -> None:
    """Store an event once per `cause` and owe it to each endpoint that takes its type, in the
    caller's transaction (committed with its cause, gone with a rollback).

    One prepared statement on the driver: it costs an insert when no endpoint exists."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown product event type {type!r}")
    message_id = f"msg_{uuid.uuid4().hex}"
    at = (occurred_at or datetime.now(UTC)).astimezone(UTC)
    clear = {"id": message_id, "type": type, "timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    # The data names the customer and may hold its tax ids: sealed.
    payload = sealed.envelope(clear, json.dumps(data))
    driver = await driver_of(session)
    await driver.execute(PUBLISH, message_id, cause, type, account_id, json.dumps(payload))


# ---- endpoints ----


async def create_endpoint(
    session: AsyncSession, *, url: str, event_types: list[str] | None, settings: Settings
) -> tuple[ProductWebhookEndpoint, str]:
    """A new endpoint (all event types when none are named) and its signing secret."""
    endpoint = ProductWebhookEndpoint(
        url=_checked_url(url, settings),
        event_types=_checked_event_types(event_types or []),
        secret=new_secret(),
    )
    async with session.begin():
        session.add(endpoint)
        await session.flush()
        await session.refresh(endpoint)
    return endpoint, endpoint.secret


async def delete_endpoint(session: AsyncSession, *, endpoint_id: int) -> None:
    """Delete an endpoint (the row is kept for its deliveries' history); what it was still
    owed is skipped."""
    async with session.begin():
        endpoint = await _live_endpoint(session, endpoint_id)
        endpoint.deleted_at = func.now()
        endpoint.enabled = False
        await _skip_pending(session, endpoint_id, "not sent: the endpoint was deleted")


async def rotate_secret(
    session: AsyncSession, *, endpoint_id: int
) -> tuple[ProductWebhookEndpoint, str]:
    """A new signing secret, used from the next attempt on (in flight ones keep the old)."""
    async with session.begin():
        endpoint = await _live_endpoint(session, endpoint_id)
        endpoint.secret = new_secret()
    return endpoint, endpoint.secret


async def list_endpoints(session: AsyncSession) -> list[ProductWebhookEndpoint]:
    """Endpoints not deleted, oldest first."""
    query = (
        select(ProductWebhookEndpoint)
        .where(ProductWebhookEndpoint.deleted_at.is_(None))
        .order_by(ProductWebhookEndpoint.created_at, ProductWebhookEndpoint.id)
    )
    return list((await session.scalars(query)).all())


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


async def _live_endpoint(session: AsyncSession, endpoint_id: int) -> ProductWebhookEndpoint:
    endpoint = await session.get(ProductWebhookEndpoint, endpoint_id, with_for_update=True)
    if endpoint is None or endpoint.deleted_at is not None:
        raise NotFound("No such webhook endpoint", ["endpointId"])
    return endpoint


async def _skip_pending(session: AsyncSession, endpoint_id: int, reason: str) -> None:
    await session.execute(
        update(ProductWebhookDelivery)
        .where(
            ProductWebhookDelivery.endpoint_id == endpoint_id,
            ProductWebhookDelivery.status == DeliveryStatus.PENDING,
        )
        .values(status=DeliveryStatus.SKIPPED, last_error=reason)
    )


def _checked_url(url: str, settings: Settings) -> str:
    url = url.strip()
    if len(url) > MAX_URL_CHARS:
        raise InvalidInput(f"The URL is longer than {MAX_URL_CHARS} characters", ["url"])
    refusal = destination_refusal(url, settings)
    if refusal is None and not settings.webhooks_may_reach_private_hosts:
        # Names are judged by what they resolve to when delivering; these never are public.
        host = (URL(url).host or "").rstrip(".").lower()
        if host == "localhost" or host.endswith(".localhost"):
            refusal = "localhost is not a public host"
    if refusal is not None:
        raise InvalidInput(f"The URL cannot be used: {refusal}", ["url"])
    return url


def _checked_event_types(event_types: list[str]) -> list[str]:
    unknown = sorted(set(event_types) - set(EVENT_TYPES))
    if unknown:
        raise InvalidInput(
            f"Unknown event types: {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}",
            ["eventTypes"],
        )
    return list(dict.fromkeys(event_types))


# ---- deliveries, for admins ----


@dataclass(frozen=True)
class ListedDelivery:
    """A delivery with what its event says of it (`message_id` is the webhook-id header)."""

    id: int
    event_id: int
    endpoint_id: int
    account_id: int | None
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    response_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    message_id: str
    event_type: str


async def list_deliveries(
    database: Database,
    *,
    statuses: Sequence[DeliveryStatus] | None = None,
    first: int | None = None,
    after: str | None = None,
) -> Page[ListedDelivery]:
    """Deliveries newest first, optionally only some statuses."""
    listing = Listing.matching(ProductWebhookDelivery.__table__, "created_at", status=statuses)
    page = await paginate(database, listing, first=first, after=after)
    async with database.read_session() as session:
        return dataclasses.replace(page, rows=await _listed(session, page.rows))


async def _listed(session: AsyncSession, deliveries: Sequence[Any]) -> list[ListedDelivery]:
    """The deliveries with their events' ids and types (paginate returns a delivery's own
    columns only: the events are read for these alone)."""
    events = {
        row.id: row
        for row in await session.execute(
            select(ProductEvent.id, ProductEvent.message_id, ProductEvent.type).where(
                ProductEvent.id.in_({row.event_id for row in deliveries})
            )
        )
    }
    fields = [field.name for field in dataclasses.fields(ListedDelivery)][:-2]
    return [
        ListedDelivery(
            **{name: getattr(row, name) for name in fields},
            message_id=events[row.event_id].message_id,
            event_type=events[row.event_id].type,
        )
        for row in deliveries
    ]


async def retry_delivery(session: AsyncSession, *, delivery_id: int) -> ListedDelivery:
    """Send a failed or skipped delivery again, now.

    It is tried once more: a delivery older than the retry window is given up after one
    failed attempt (its attempts are kept). Retrying re-enables an endpoint disabled by a
    410, which the operator says is back; its other skipped deliveries stay skipped. A
    deleted endpoint's deliveries cannot be retried."""
    async with session.begin():
        delivery = await session.get(ProductWebhookDelivery, delivery_id, with_for_update=True)
        if delivery is None:
            raise NotFound("No such webhook delivery", ["deliveryId"])
        if delivery.status not in (DeliveryStatus.FAILED, DeliveryStatus.SKIPPED):
            raise DomainError(
                ErrorCode.INVALID_STATE,
                f"The delivery is {delivery.status.value}: only a failed or skipped one is retried",
                ["deliveryId"],
            )
        endpoint = await session.get(
            ProductWebhookEndpoint, delivery.endpoint_id, with_for_update=True
        )
        assert endpoint is not None, "a delivery's endpoint row is kept"
        if endpoint.deleted_at is not None:
            raise DomainError(
                ErrorCode.INVALID_STATE, "The delivery's endpoint was deleted", ["deliveryId"]
            )
        event = await session.get(ProductEvent, delivery.event_id)
        assert event is not None, "a delivery's event row is kept"
        if sealed.SEALED not in event.payload:
            raise DomainError(
                ErrorCode.INVALID_STATE,
                "The event's data was removed by retention: it cannot be sent",
                ["deliveryId"],
            )
        endpoint.enabled, endpoint.disabled_reason = True, None
        delivery.status = DeliveryStatus.PENDING
        delivery.next_attempt_at = func.now()
        await session.flush()
        await session.refresh(delivery)
        (listed,) = await _listed(session, [delivery])
    return listed


async def depth(session: AsyncSession) -> int:
    """Deliveries still owed (pending), for /metrics."""
    query = select(func.count()).where(ProductWebhookDelivery.status == DeliveryStatus.PENDING)
    return await session.scalar(query) or 0


# ---- where deliveries may go ----


class RefusedAddress(OSError):
    """A host name resolved to an address deliveries may not reach."""


def address_refusal(address: IPAddress) -> str | None:
    """Why deliveries may not reach `address` (None: a public address)."""
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4 address inside an IPv6 one reaches that IPv4 address.
        address = address.ipv4_mapped or address.sixtofour or address
    kinds = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("non-public", not address.is_global),
    )
    return next((f"{kind} address {address}" for kind, refused in kinds if refused), None)


def destination_refusal(url: str, settings: Settings) -> str | None:
    """Why a delivery may not go to `url`, judged without DNS: its scheme and a literal
    address (names are judged by the resolver of `http_client`, on what they resolve to)."""
    try:
        parsed = URL(url)
    except ValueError:
        return "not a URL"
    if parsed.scheme not in ("http", "https") or not parsed.is_absolute() or not parsed.host:
        return "not an absolute http(s) URL with a host"
    allowed = settings.webhooks_may_reach_private_hosts
    if parsed.scheme != "https" and not allowed:
        return "only https URLs are allowed"
    host = parsed.host
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return _numeric_host_refusal(host)
    return None if allowed else address_refusal(address)


def _numeric_host_refusal(host: str) -> str | None:
    try:
        # Legacy forms (2130706433, 127.1, 0x7f.1) name an address too; aiohttp refuses them.
        socket.inet_aton(host)
    except OSError:
        return None
    return f"{host} is not a dotted-decimal IPv4 address"


class PublicAddressResolver(AbstractResolver):
    """DNS that refuses a name resolving to any non-public address: the check is made on
    the addresses connected to, so a name cannot be re-pointed between check and use."""

    def __init__(self) -> None:
        self._resolver = aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        for result in results:
            refusal = address_refusal(ipaddress.ip_address(result["host"]))
            if refusal is not None:
                raise RefusedAddress(f"{host} resolves to a {refusal}")
        return results

    async def close(self) -> None:
        await self._resolver.close()


def http_client(settings: Settings) -> aiohttp.ClientSession:
    """The aiohttp session a worker delivers with (make it with a loop running; use it as an
    async context manager, or close it). Unless private hosts are allowed its resolver
    refuses names of non-public addresses; it keeps no cookies and uses no proxy."""
    resolver = None if settings.webhooks_may_reach_private_hosts else PublicAddressResolver()
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=resolver),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=settings.product_webhook_timeout_seconds),
    )


# ---- delivering ----


def body_of(payload: dict[str, Any]) -> bytes:
    """The bytes sent for an event's stored payload (its data opened): the same on every
    attempt."""
    body = {key: value for key, value in payload.items() if key != sealed.SEALED}
    body["data"] = json.loads(sealed.keyring().open(payload[sealed.SEALED]))
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def signed_headers(*, secret: str, message_id: str, body: bytes, at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt to send `body`."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, at, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


@dataclass(frozen=True)
class Claimed:
    """A delivery claimed for one attempt (`attempts` counts it)."""

    id: int
    attempts: int
    endpoint_id: int
    url: str
    secret: str
    live: bool  # the endpoint is enabled and not deleted
    message_id: str
    payload: str  # the event's JSON text


@dataclass(frozen=True)
class Attempt:
    """What came of sending once: an HTTP status, or why there was none."""

    status: int | None
    error: str | None = None
    refused: bool = False  # never sent: the destination is not allowed


# The oldest due delivery whose customer has no earlier one pending at the same endpoint
# (NULL accounts compare unequal: no order), leased by moving its next attempt on.
CLAIM = """
WITH due AS (
    SELECT delivery.id FROM product_webhook_deliveries AS delivery
    WHERE delivery.status = 'pending' AND delivery.next_attempt_at <= now()
      AND NOT EXISTS (
          SELECT 1 FROM product_webhook_deliveries AS earlier
          WHERE earlier.status = 'pending'
            AND earlier.endpoint_id = delivery.endpoint_id
            AND earlier.account_id = delivery.account_id
            AND earlier.event_id < delivery.event_id
      )
    ORDER BY delivery.next_attempt_at, delivery.id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE product_webhook_deliveries AS delivery
SET attempts = delivery.attempts + 1, next_attempt_at = now() + $1::interval
FROM due, product_webhook_endpoints AS endpoint, product_events AS event
WHERE delivery.id = due.id AND endpoint.id = delivery.endpoint_id AND event.id = delivery.event_id
RETURNING delivery.id, delivery.attempts, delivery.endpoint_id, endpoint.url, endpoint.secret,
    endpoint.enabled AND endpoint.deleted_at IS NULL AS live, event.message_id, event.payload
"""

# Each outcome is recorded only for the claim it belongs to (attempts), so a worker that
# outlived its lease does not overwrite the attempt that took over.
RECORD_SENT = """
UPDATE product_webhook_deliveries
SET status = 'sent', delivered_at = now(), response_status = $3, last_error = NULL
WHERE id = $1 AND attempts = $2 AND status = 'pending'
"""
RECORD_FAILED = """
UPDATE product_webhook_deliveries
SET status = 'failed', response_status = $3, last_error = $4
WHERE id = $1 AND attempts = $2 AND status = 'pending'
"""
RECORD_RETRY = """
UPDATE product_webhook_deliveries
SET response_status = $3, last_error = $4, next_attempt_at = now() + $5::interval,
    status = CASE WHEN created_at <= now() - $6::interval THEN 'failed' ELSE 'pending' END
WHERE id = $1 AND attempts = $2 AND status = 'pending'
RETURNING status
"""
RECORD_SKIPPED = """
UPDATE product_webhook_deliveries SET status = 'skipped', last_error = $3
WHERE id = $1 AND attempts = $2 AND status = 'pending'
"""
# The endpoint asked never to be called again: disabled, and nothing more sent to it.
RECORD_GONE = """
WITH endpoint AS (
    UPDATE product_webhook_endpoints SET enabled = false, disabled_reason = $3 WHERE id = $2
)
UPDATE product_webhook_deliveries
SET status = 'skipped',
    response_status = CASE WHEN id = $1 THEN 410 ELSE response_status END,
    last_error = CASE WHEN id = $1 THEN $3 ELSE $4 END
WHERE endpoint_id = $2 AND status = 'pending'
"""


async def deliver_next(database: Database, settings: Settings, http: aiohttp.ClientSession) -> int:
    """Claim one due delivery and attempt it: 1 when one was claimed, else 0.

    `http` comes from `http_client(settings)`. The claim commits before sending and the
    outcome after, so no transaction waits on an endpoint; a worker killed in between leaves
    the delivery pending, sent again with the same webhook-id once its lease ends."""
    claimed = await _claim(database, settings)
    if claimed is None:
        return 0
    if not claimed.live:
        # Published while the endpoint was being deleted or disabled, after its skip.
        async with database.driver_connection() as connection:
            reason = "not sent: the endpoint was deleted or disabled"
            await connection.execute(RECORD_SKIPPED, claimed.id, claimed.attempts, reason)
        return 1
    attempt = await _attempt(http, settings, claimed)
    outcome = await _record(database, settings, claimed, attempt)
    PRODUCT_WEBHOOK_DELIVERIES.labels(endpoint=str(claimed.endpoint_id), outcome=outcome).inc()
    return 1


async def _claim(database: Database, settings: Settings) -> Claimed | None:
    lease = timedelta(seconds=settings.product_webhook_timeout_seconds + LEASE_MARGIN_SECONDS)
    async with database.driver_connection() as connection:
        row = await connection.fetchrow(CLAIM, lease)
    if row is None:
        return None
    return Claimed(**dict(row) | {"secret": sealed.keyring().open(row["secret"])})


async def _attempt(http: aiohttp.ClientSession, settings: Settings, claimed: Claimed) -> Attempt:
    refusal = destination_refusal(claimed.url, settings)
    if refusal is not None:
        return Attempt(None, f"refused: {refusal}", refused=True)
    body = body_of(json.loads(claimed.payload))
    headers = signed_headers(
        secret=claimed.secret, message_id=claimed.message_id, body=body, at=datetime.now(UTC)
    )
    started = time.perf_counter()
    try:
        return await _post(http, settings, claimed.url, headers, body)
    finally:
        PRODUCT_WEBHOOK_DURATION.labels(endpoint=str(claimed.endpoint_id)).observe(
            time.perf_counter() - started
        )


async def _post(
    http: aiohttp.ClientSession, settings: Settings, url: str, headers: dict[str, str], body: bytes
) -> Attempt:
    limit = settings.product_webhook_timeout_seconds
    try:
        async with http.post(
            url,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=limit),
            allow_redirects=False,
        ) as response:
            text = await _read_capped(response.content)
    except TimeoutError:
        return Attempt(None, f"timed out after {limit:g} s")
    except aiohttp.ClientConnectorError as error:
        if isinstance(error.os_error, RefusedAddress):
            return Attempt(None, f"refused: {error.os_error}", refused=True)
        return Attempt(None, _clipped(f"could not connect: {error}"))
    except aiohttp.ClientError as error:
        return Attempt(None, _clipped(f"{type(error).__name__}: {error}"))
    if 200 <= response.status < 300:
        return Attempt(response.status)
    return Attempt(response.status, _clipped(_status_text(response.status, text)))


async def _read_capped(content: aiohttp.StreamReader) -> str:
    """At most MAX_RESPONSE_BYTES of a body; the rest is never read (the connection closes)."""
    chunks: list[bytes] = []
    size = 0
    while size < MAX_RESPONSE_BYTES:
        chunk = await content.read(MAX_RESPONSE_BYTES - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks).decode(errors="replace").strip()


def _status_text(status: int, body: str) -> str:
    note = " (redirects are not followed)" if 300 <= status < 400 else ""
    return f"HTTP {status}{note}: {body}" if body else f"HTTP {status}{note}"


def _clipped(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


async def _record(
    database: Database, settings: Settings, claimed: Claimed, attempt: Attempt
) -> str:
    """Store what came of the attempt; its outcome for the metrics."""
    key = (claimed.id, claimed.attempts)
    async with database.driver_connection() as connection:
        if attempt.refused:
            await connection.execute(RECORD_FAILED, *key, attempt.status, attempt.error)
            log.warning("product webhook %s refused: %s", claimed.id, attempt.error)
            return "failed"
        if attempt.status is not None and 200 <= attempt.status < 300:
            await connection.execute(RECORD_SENT, *key, attempt.status)
            return "sent"
        if attempt.status == 410:
            reason = f"not sent: the endpoint answered {GONE_REASON}"
            await connection.execute(
                RECORD_GONE, claimed.id, claimed.endpoint_id, GONE_REASON, reason
            )
            log.warning(
                "product webhook endpoint %s disabled: %s", claimed.endpoint_id, GONE_REASON
            )
            return "gone"
        status = await connection.fetchval(
            RECORD_RETRY,
            *key,
            attempt.status,
            attempt.error,
            backoff(settings, claimed.attempts),
            timedelta(hours=settings.product_webhook_retry_hours),
        )
    if status == DeliveryStatus.FAILED:
        log.warning("product webhook %s given up: %s", claimed.id, attempt.error)
        return "failed"
    return "retry"


def backoff(settings: Settings, attempts: int) -> timedelta:
    """How long after its `attempts`-th failed attempt a delivery is tried again."""
    doublings = min(max(attempts - 1, 0), MAX_DOUBLINGS)
    seconds = settings.product_webhook_retry_base_seconds * 2**doublings
    return timedelta(seconds=min(seconds, settings.product_webhook_retry_max_seconds))
