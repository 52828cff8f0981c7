"""Live update tests over real sockets: gateways served by uvicorn on the test loop, and a
websocket client that speaks graphql-transport-ws or the legacy graphql-ws."""

import asyncio
import contextlib
import itertools
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import uvicorn
import websockets
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection
from websockets.client import ClientProtocol
from websockets.frames import Frame
from websockets.protocol import State
from websockets.uri import parse_uri

from db.database import Database
from db.models import Account, PaymentStatus, PaymentTransaction
from sandbox.server import EmbeddedServer
from services.live import UpdateKind, publish
from tests import factories

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
# A guard against a hung test, never a measure of speed.
PATIENCE_SECONDS = 15.0

_intents = itertools.count(1)


@dataclass
class Gateway:
    app: FastAPI
    port: int

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[Gateway]:
    """The app on a free loopback port, its lifespan run, its live bus listening."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = EmbeddedServer(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(PATIENCE_SECONDS):
            while not server.started:
                await asyncio.sleep(0.01)
            await app.state.live_bus.listening.wait()
        yield Gateway(app, sock.getsockname()[1])
    finally:
        server.should_exit = True
        await task


class LiveClient:
    """One websocket of a dashboard; `protocol` is the subprotocol it speaks."""

    def __init__(self, connection: ClientConnection, protocol: str) -> None:
        self.connection = connection
        self.protocol = protocol
        self._ids = itertools.count(1)

    @classmethod
    @contextlib.asynccontextmanager
    async def connected(
        cls, gateway: Gateway, *, protocol: str = TRANSPORT_WS, **connect: Any
    ) -> AsyncIterator["LiveClient"]:
        async with websockets.connect(
            gateway.ws_url,
            subprotocols=[protocol],
            **connect,  # type: ignore[list-item]
        ) as connection:
            yield cls(connection, protocol)

    async def send(self, message: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(message))

    async def receive(self) -> dict[str, Any]:
        """The next message that is not a keep-alive."""
        async with asyncio.timeout(PATIENCE_SECONDS):
            while True:
                frame = await self.connection.recv()
                # Both protocols are JSON text: real clients refuse binary frames.
                assert isinstance(frame, str), f"a binary frame: {frame!r}"
                message = json.loads(frame)
                if message.get("type") not in ("ka", "ping", "pong"):
                    return message

    async def init(self, payload: dict[str, Any] | None) -> dict[str, Any]:
        await self.send({"type": "connection_init", "payload": payload})
        return await self.receive()

    async def sign_in(self, token: str) -> None:
        answer = await self.init({"authorization": f"Bearer {token}"})
        assert answer["type"] == "connection_ack", answer

    async def subscribe(self, query: str, variables: dict[str, Any] | None = None) -> str:
        operation_id = str(next(self._ids))
        start = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        payload = {"query": query, "variables": variables or {}}
        await self.send({"id": operation_id, "type": start, "payload": payload})
        return operation_id

    async def next_data(self) -> dict[str, Any]:
        """The data of the next result; fails on anything else."""
        message = await self.receive()
        expected = "next" if self.protocol == TRANSPORT_WS else "data"
        assert message["type"] == expected, message
        assert "errors" not in message["payload"], message
        return message["payload"]["data"]

    async def closed(self) -> tuple[int | None, str | None]:
        """Wait for the server to close the socket; its close code and reason."""
        try:
            async with asyncio.timeout(PATIENCE_SECONDS):
                while True:
                    await self.connection.recv()
        except websockets.ConnectionClosed as closed:
            received = closed.rcvd
            return (received.code, received.reason) if received else (None, None)


async def announce(
    database: Database, kind: UpdateKind, *, account_id: int | None, row_id: int | None
) -> None:
    """A committed change's announcement, as the services make it."""
    async with database.session() as session, session.begin():
        await publish(session, kind, account_id=account_id, row_id=row_id)


async def subscribed(gateway: Gateway, count: int, *, members: int | None = None) -> None:
    """Wait until the gateway's bus holds exactly `count` subscribers (a subscription
    registers after its `subscribe` message, so an update sent before then is not for it)
    and, when given, its shared `billingUpdates` streams exactly `members` sockets."""
    async with asyncio.timeout(PATIENCE_SECONDS):
        while gateway.app.state.live_bus.subscriber_count() != count or (
            members is not None and gateway.app.state.shared_streams.member_count() != members
        ):
            await asyncio.sleep(0.01)


async def customer(db: Database, user_id: str, **overrides: Any) -> Account:
    return await factories.add(db, factories.account(user_id=user_id, **overrides))


async def transaction(
    db: Database, account_id: int, *, description: str = "a payment"
) -> PaymentTransaction:
    """A mirrored payment of the account, as a webhook would have left it."""
    row = PaymentTransaction(
        stripe_payment_intent_id=f"pi_live_{next(_intents)}",
        account_id=account_id,
        status=PaymentStatus.PROCESSING,
        amount=1250,
        currency="usd",
        description=description,
        stripe_created_at=datetime.now(UTC),
    )
    return await factories.add(db, row)


class UnreadSocket:
    """A websocket client that subscribes and then never reads: a stalled dashboard.

    A plain socket with a tiny receive buffer, driven by websockets' sans-I/O protocol,
    so nothing reads on its behalf."""

    def __init__(self, gateway: Gateway) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.setblocking(False)
        self.protocol = ClientProtocol(
            parse_uri(gateway.ws_url),
            subprotocols=[TRANSPORT_WS],  # type: ignore[list-item]
        )
        self.gateway = gateway

    async def open(self, token: str, query: str) -> None:
        loop = asyncio.get_running_loop()
        await loop.sock_connect(self.sock, ("127.0.0.1", self.gateway.port))
        request = self.protocol.connect()
        self.protocol.send_request(request)
        await self._flush()
        while self.protocol.state is not State.OPEN:
            assert self.protocol.handshake_exc is None, self.protocol.handshake_exc
            self.protocol.receive_data(await loop.sock_recv(self.sock, 65536))
        ack = await self._send_and_read(
            {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        )
        assert ack["type"] == "connection_ack", ack
        message = {"id": "1", "type": "subscribe", "payload": {"query": query}}
        self.protocol.send_text(json.dumps(message).encode())
        await self._flush()

    async def _send_and_read(self, message: dict[str, Any]) -> dict[str, Any]:
        self.protocol.send_text(json.dumps(message).encode())
        await self._flush()
        loop = asyncio.get_running_loop()
        while True:
            for event in self.protocol.events_received():
                if isinstance(event, Frame):
                    return json.loads(event.data)
            self.protocol.receive_data(await loop.sock_recv(self.sock, 65536))

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        for data in self.protocol.data_to_send():
            if data:
                await loop.sock_sendall(self.sock, data)

    async def read_until_closed(self) -> tuple[int | None, str | None]:
        """Now read everything; the close code and reason the server sent."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(PATIENCE_SECONDS):
            while self.protocol.close_rcvd is None:
                data = await loop.sock_recv(self.sock, 1 << 20)
                if not data:
                    break
                self.protocol.receive_data(data)
                self.protocol.events_received()
        received = self.protocol.close_rcvd
        return (received.code, received.reason) if received else (None, None)

    def close(self) -> None:
        self.sock.close()
