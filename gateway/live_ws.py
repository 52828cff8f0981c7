"""Websocket connections of /graphql: the token from `connection_init`, closed at its expiry.

Both `graphql-transport-ws` and the legacy `graphql-ws` are served by Strawberry's
handlers; this adds authentication (a missing or bad token is refused with the protocol's
rejection: 4403 for graphql-transport-ws, `connection_error` then close for graphql-ws),
a timer that closes the socket when the token expires, the close of a subscriber that
falls too far behind, lone `billingUpdates` subscriptions on shared streams
(gateway/live_streams.py), and the refusal of subscriptions over plain HTTP."""

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import orjson

from cross_web import HTTPException  # what Strawberry's router answers as an HTTP status
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.types.unset import UNSET, UnsetType

from gateway.auth import AuthError, TokenVerifier, bearer_token
from gateway.graphiql import GatewayGraphQLRouter
from gateway.graphql_http import GraphQLHttpProtocol
from gateway.live_streams import (
    LEGACY_WS_FRAMING,
    TRANSPORT_WS_FRAMING,
    Framing,
    Member,
    SharedStream,
    SharedStreams,
    is_shareable,
    is_subscription,
    run_member,
)
from services.admission import Admission
from services.live_bus import LiveBus

log = logging.getLogger("billing_gateway.live")

# uvicorn's per-message deflate keeps a zlib compressor and decompressor per socket (tens
# of KB each, for small JSON updates): `serve` turns it off so idle dashboards stay cheap.
WS_PER_MESSAGE_DEFLATE = False

# Private-use close codes (4000-4999), beside the protocols' own 4400-4499.
TOKEN_EXPIRED_CODE = 4401
LAGGING_CODE = 4008
LAGGING_REASON = "too many updates unread: the client fell behind; reconnect to resync"


class LiveConnection:
    """One authenticated websocket: its bus, its expiry timer and a close from outside."""

    __slots__ = ("_closing", "_expiry", "bus", "websocket")

    def __init__(self, websocket: WebSocket, bus: LiveBus, expires_at: int) -> None:
        self.websocket = websocket
        self.bus = bus
        self._closing: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        delay = max(0.0, expires_at - time.time())
        self._expiry = loop.call_later(
            delay, self.close, TOKEN_EXPIRED_CODE, "the token has expired"
        )

    def close(self, code: int, reason: str) -> None:
        """Close the socket in a task of its own: the caller (the bus, a timer) never waits."""
        if self._closing is None:
            self._closing = asyncio.create_task(self._close(code, reason))

    def close_lagging(self) -> None:
        log.info("live updates: closing a websocket that fell behind")
        self.close(LAGGING_CODE, LAGGING_REASON)

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):  # already closed by the client
            await self.websocket.close(code=code, reason=reason)

    def release(self) -> None:
        self._expiry.cancel()


def connection_token(params: Any) -> str | None:
    """The token of a `connection_init` payload: `authorization: "Bearer …"` or `token`."""
    if not isinstance(params, dict):
        return None
    authorization = params.get("authorization") or params.get("Authorization")
    if isinstance(authorization, str):
        return bearer_token(authorization)
    token = params.get("token")
    return token.strip() if isinstance(token, str) and token.strip() else None


def malformed_operation(payload: Any) -> str | None:
    """Why a subscribe/start payload cannot be an operation, or None when it can."""
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return "Invalid message received: the payload needs a string `query`"
    if not isinstance(payload.get("operationName"), str | None):
        return "Invalid message received: `operationName` must be a string"
    for key in ("variables", "extensions"):
        if not isinstance(payload.get(key), dict | None):
            return f"Invalid message received: `{key}` must be an object"
    return None


async def refused_as_malformed(handler: Any, payload: Any) -> bool:
    """Close with 4400 (both protocols) for a payload that is not an operation."""
    reason = malformed_operation(payload)
    if reason is None or not handler.connection_acknowledged:  # Strawberry refuses: 4401
        return False
    await handler.websocket.close(code=4400, reason=reason)
    return True


def _shareable(handler: Any, payload: Any) -> bool:
    if not handler.connection_acknowledged:
        return False
    return is_shareable(payload["query"], payload.get("operationName"))


def _join_shared_stream(
    handler: Any, operation_id: str, payload: dict[str, Any], framing: Framing
) -> tuple[Member, SharedStream]:
    """A member of the account's shared stream for this document, and that stream."""
    query, name, variables = (
        payload["query"],
        payload.get("operationName"),
        payload.get("variables"),
    )
    live: LiveConnection = handler.context.live
    member = Member(
        operation_id, framing, live.bus.queue_size, live.websocket.send_text, live.close_lagging
    )
    key = SharedStreams.key(handler.context.principal.user_id, query, name, variables)
    stream = handler.view.shared_streams.join(
        key,
        member,
        lambda started: started.start(handler.schema, query, variables, name, handler.context),
    )
    return member, stream


class _TransportWS(BaseGraphQLTransportWSHandler[Any, None]):
    """graphql-transport-ws, with lone `billingUpdates` subscriptions on shared streams."""

    async def handle(self) -> None:
        try:
            await super().handle()
        finally:
            _release(self.context)

    async def handle_subscribe(self, message: Any) -> None:
        payload = message.get("payload")
        if await refused_as_malformed(self, payload):
            return
        if message.get("id") in self.operations or not _shareable(self, payload):
            await super().handle_subscribe(message)  # Strawberry's path, refusals included
            return
        operation_id = message["id"]
        member, stream = _join_shared_stream(self, operation_id, payload, TRANSPORT_WS_FRAMING)
        operation = Operation(
            self,
            operation_id,
            payload["query"],
            payload.get("variables"),
            payload.get("operationName"),
        )
        operation.task = asyncio.create_task(self._run_member(operation_id, stream, member))
        operation.task.add_done_callback(self._task_done)
        self.operations[operation_id] = operation

    async def _run_member(self, operation_id: str, stream: SharedStream, member: Member) -> None:
        try:
            await run_member(stream, member)
        finally:
            self.operations.pop(operation_id, None)


class _LegacyWS(BaseGraphQLWSHandler[Any, None]):
    """graphql-ws, with lone `billingUpdates` subscriptions on shared streams."""

    async def handle(self) -> None:
        try:
            await super().handle()
        finally:
            _release(self.context)

    async def handle_start(self, message: Any) -> None:
        payload = message.get("payload")
        if await refused_as_malformed(self, payload):
            return
        if not _shareable(self, payload):
            await super().handle_start(message)
            return
        operation_id = message["id"]
        if operation_id in self.tasks:  # as Strawberry does: a reused id replaces the old one
            await self.cleanup_operation(operation_id)
        member, stream = _join_shared_stream(self, operation_id, payload, LEGACY_WS_FRAMING)
        self.tasks[operation_id] = asyncio.create_task(
            self._run_member(operation_id, stream, member)
        )

    async def _run_member(self, operation_id: str, stream: SharedStream, member: Member) -> None:
        try:
            await run_member(stream, member)
        except asyncio.CancelledError:  # `stop`: graphql-ws confirms with `complete`
            with contextlib.suppress(Exception):
                await member.complete()
        finally:
            self.tasks.pop(operation_id, None)


def _release(context: Any) -> None:
    live = getattr(context, "live", None)
    if live is not None:
        live.release()


class TextFrameWebSocket(ASGIWebSocketAdapter):
    """Messages as text frames: both subprotocols are JSON text, and real clients (graphql-ws,
    Apollo, gql) refuse the binary frames Strawberry sends for an encoder returning bytes."""

    async def send_json(self, message: Mapping[str, object]) -> None:
        try:
            await self.ws.send_text(orjson.dumps(message).decode())
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc


class GatewayRouter(GraphQLHttpProtocol, GatewayGraphQLRouter):
    """/graphql over HTTP (gateway/graphql_http.py) and websockets (both subprotocols),
    websockets authenticated and allowed from the configured browser origins."""

    websocket_adapter_class = TextFrameWebSocket  # type: ignore[assignment]

    graphql_transport_ws_handler_class = _TransportWS  # type: ignore[assignment]
    graphql_ws_handler_class = _LegacyWS  # type: ignore[assignment]

    def __init__(
        self,
        *args: Any,
        verifier: TokenVerifier,
        allowed_origins: list[str],
        admission: Admission,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            *args,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
            allowed_origins=allowed_origins,
            **kwargs,
        )
        self.verifier = verifier
        self.admission = admission
        self.shared_streams = SharedStreams()

    async def execute_operation(  # noqa: PLR0913 (Strawberry's signature)
        self,
        request: Any,
        request_adapter: Any,
        request_data: Any,
        context: Any,
        root_value: Any,
        sub_response: Any,
    ) -> Any:
        """Refuse subscriptions over HTTP: they need a websocket and its authentication."""
        query = request_data.query  # one request: batching is off
        if isinstance(query, str) and is_subscription(query, request_data.operation_name):
            raise HTTPException(
                400, "Subscriptions are served over websocket (graphql-transport-ws, graphql-ws)"
            )
        return await super().execute_operation(
            request, request_adapter, request_data, context, root_value, sub_response
        )

    async def on_ws_connect(self, context: Any) -> UnsetType | dict[str, object] | None:
        try:
            token = connection_token(context.connection_params)
            if token is None:
                raise AuthError("connection_init carries no `authorization` or `token`")
            principal = self.verifier.verify(token)
        except AuthError as error:
            raise ConnectionRejectionError(
                {"message": f"Authentication required: {error}", "code": "UNAUTHENTICATED"}
            ) from error
        context.principal, context.auth_error = principal, None
        _release(context)  # graphql-ws allows a second connection_init
        bus = context.request.app.state.live_bus
        context.live = LiveConnection(context.request, bus, principal.expires_at)
        return UNSET
