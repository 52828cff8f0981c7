"""A sandbox on a free loopback port, the official SDK pointed at it, and a webhook sink."""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import stripe
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.settings import SANDBOX_API_KEY
from sandbox.server import EmbeddedServer, SandboxServer
from sandbox.store import Store

WEBHOOK_SECRET = "whsec_sandbox_tests"


@pytest.fixture(scope="session")
async def sandbox_server() -> AsyncIterator[SandboxServer]:
    server = await SandboxServer(
        store=Store(webhook_secret=WEBHOOK_SECRET), retry_delays=(0.05, 0.1, 0.2)
    ).start()
    yield server
    await server.stop()


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> SandboxServer:
    """The session's sandbox, emptied for each test."""
    sandbox_server.store.reset()
    return sandbox_server


@pytest.fixture
def stripe_client(sandbox: SandboxServer) -> stripe.StripeClient:
    return stripe.StripeClient(
        SANDBOX_API_KEY,
        base_addresses={"api": sandbox.url},
        http_client=stripe.HTTPXClient(),
        max_network_retries=0,
    )


@dataclass
class WebhookSink:
    """A real HTTP endpoint that records what the sandbox delivers; it can fail on purpose."""

    url: str = ""
    received: list[tuple[dict[str, str], str]] = field(default_factory=list)
    failures_left: int = 0
    attempts: int = 0
    delay: float = 0.0  # each answer waits this long, so deliveries can overlap
    in_flight: int = 0
    most_in_flight: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.events()


@pytest.fixture
async def webhook_sink() -> AsyncIterator[WebhookSink]:
    import socket

    import uvicorn

    sink = WebhookSink()

    async def receive(request: Request) -> Response:
        body = (await request.body()).decode()
        sink.attempts += 1
        sink.in_flight += 1
        sink.most_in_flight = max(sink.most_in_flight, sink.in_flight)
        await asyncio.sleep(sink.delay)
        sink.in_flight -= 1
        if sink.failures_left > 0:
            sink.failures_left -= 1
            return Response("try later", status_code=500)
        sink.received.append((dict(request.headers), body))
        sink.arrived.set()
        return Response("ok")

    sock = socket.socket()
    # Without it each keep-alive response waits ~40 ms for a delayed ACK (Nagle).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sink.url = f"http://127.0.0.1:{sock.getsockname()[1]}/webhooks"
    server = EmbeddedServer(
        uvicorn.Config(
            Starlette(routes=[Route("/webhooks", receive, methods=["POST"])]), log_level="warning"
        )
    )
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    yield sink
    server.should_exit = True
    await task
