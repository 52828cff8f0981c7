"""A real receiving endpoint (aiohttp on loopback) and helpers for the product's webhooks."""

import asyncio
import socket
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import REGISTRY
from sqlalchemy import text

from db.database import Database
from db.models import Account, ProductWebhookEndpoint
from gateway.settings import Settings
from services import product_webhooks
from tests import factories

# Answers a test may program, besides a status: hold the request until the test ends, or
# stream a body far larger than anything the gateway reads.
HANG = "hang"
HUGE = "huge"
HUGE_CHUNK = b"x" * 65536
HUGE_LIMIT = 64 * 1024 * 1024


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Records each request and answers the next programmed status (200 once they run out)."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    answers: deque[int | str] = field(default_factory=deque)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def answer(self, *answers: int | str) -> None:
        self.answers.extend(answers)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Received(dict(request.headers), await request.read()))
        self.arrived.set()
        answer = self.answers.popleft() if self.answers else 200
        if answer == HANG:
            await self.released.wait()
            return web.Response(status=200)
        if answer == HUGE:
            return await self._huge(request)
        return web.Response(status=int(answer), text=f"answered {answer}")

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=500)
        await response.prepare(request)
        sent = 0
        try:
            while sent < HUGE_LIMIT:
                await response.write(HUGE_CHUNK)
                sent += len(HUGE_CHUNK)
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            pass  # the gateway stopped reading and closed the connection
        return response


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    target = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", target.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    target.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hooks"
    yield target
    target.released.set()
    await runner.cleanup()


def webhook_settings(**overrides: Any) -> Settings:
    """Test settings (private hosts allowed) unless overridden."""
    values: dict[str, Any] = {
        "billing_env": "test",
        "database_url": None,
        "product_webhook_timeout_seconds": 5.0,
        "product_webhook_retry_base_seconds": 5.0,
        "product_webhook_retry_max_seconds": 3600.0,
        "product_webhook_retry_hours": 72.0,
    }
    return Settings(**(values | overrides))


def production_like(**overrides: Any) -> Settings:
    """What production judges destinations by: no private hosts, https only."""
    return webhook_settings(product_webhook_allow_private=False, **overrides)


@pytest.fixture
def settings() -> Settings:
    return webhook_settings()


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[aiohttp.ClientSession]:
    async with product_webhooks.http_client(settings) as client:
        yield client


async def make_endpoint(
    db: Database, url: str, event_types: list[str] | None = None, settings: Settings | None = None
) -> tuple[ProductWebhookEndpoint, str]:
    async with db.session() as session:
        return await product_webhooks.create_endpoint(
            session, url=url, event_types=event_types, settings=settings or webhook_settings()
        )


async def make_account(db: Database) -> Account:
    return await factories.add(db, factories.account())


async def publish(
    db: Database,
    cause: str,
    *,
    type: str = "invoice.paid",
    account_id: int | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Publish one event in a transaction of its own, committed."""
    async with db.session() as session, session.begin():
        await product_webhooks.publish(
            session, type=type, cause=cause, account_id=account_id, data=data or {"cause": cause}
        )


async def rows(db: Database, sql: str, **params: Any) -> list[Any]:
    async with db.session() as session:
        return list((await session.execute(text(sql), params)).all())


async def execute(db: Database, sql: str, **params: Any) -> None:
    async with db.session() as session, session.begin():
        await session.execute(text(sql), params)


async def deliveries(db: Database) -> list[Any]:
    """Every delivery with its event's message id and cause, in event order."""
    return await rows(
        db,
        "SELECT d.*, e.message_id, e.cause, "
        "extract(epoch FROM d.next_attempt_at - now()) AS due_in "
        "FROM product_webhook_deliveries d JOIN product_events e ON e.id = d.event_id "
        "ORDER BY d.event_id, d.endpoint_id",
    )


async def make_due(db: Database) -> None:
    """Time passes: every pending delivery's next attempt comes."""
    await execute(
        db, "UPDATE product_webhook_deliveries SET next_attempt_at = now() WHERE status = 'pending'"
    )


async def deliver_all(db: Database, settings: Settings, http: aiohttp.ClientSession) -> int:
    """Deliver until nothing is due; how many were claimed."""
    claimed = 0
    while await product_webhooks.deliver_next(db, settings, http):
        claimed += 1
    return claimed


def delivered_count(endpoint_id: int, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "billing_product_webhook_deliveries_total",
        {"endpoint": str(endpoint_id), "outcome": outcome},
    )
    return value or 0.0
