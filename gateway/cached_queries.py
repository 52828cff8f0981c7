"""Answers the response cache holds, sent ahead of FastAPI and Strawberry.

A customer reloading a dashboard that nothing has changed under asks for an answer the
process already holds (services/response_cache.py); running it through routing, the
context, parsing, validation and the extensions cost more than reading the data did.
`CachedQueryRoute` serves such a POST /graphql itself: it authenticates the caller as the
context does (gateway/auth.py), reads their version (one prepared statement), and when the
cache holds the answer at that version it spends the answer's cost from the caller's
budget (schema/limits.py), counts the operation (schema/extensions.py) and sends the stored
data with `extensions.cost`. Everything else goes on, with the body as received, to the one
GraphQL pipeline (Strawberry's router): another method, no or a bad token, a document not
known to be cacheable, an exhausted budget (the pipeline refuses it), and a miss, which
carries the version read so that the pipeline's answer is kept (schema/cache.py).

The router serves no HTTP stream transport (its protocols are websocket only), so a
query's answer is always this one JSON object.
"""

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.auth import Principal, TokenVerifier, authenticate
from gateway.graphql_http import response_media_type
from gateway.settings import Settings
from schema.cache import MISSED_RESPONSE, MissedResponse
from schema.extensions import record_operation
from schema.limits import CostBudgets, charge_budget, cost_extension, user_caller
from services import response_cache
from services.response_cache import CachedResponse, ResponseCache

log = logging.getLogger("billing_gateway.graphql")

PATH = "/graphql"


@dataclass(frozen=True)
class CacheableRequest:
    """A signed-in caller's request for a document whose answers may be cached."""

    principal: Principal
    query: str
    operation_name: str | None
    variables: dict[str, Any] | None
    media_type: str  # what the answer is sent as (gateway/graphql_http.py)


class CachedQueryRoute:
    """ASGI middleware answering cached queries at PATH; the rest goes on to the app."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        verifier: TokenVerifier,
        responses: ResponseCache,
        budgets: CostBudgets,
    ) -> None:
        self.app = app
        self.settings = settings
        self.verifier = verifier
        self.responses = responses
        self.budgets = budgets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or self.responses.maxsize == 0
        ):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        body, received = await _received_request(receive)
        receive = _replaying(received, receive)
        request = self._cacheable_request(scope, body)
        found = await self._account_version(scope, request) if request is not None else None
        if request is None or found is None:
            await self.app(scope, receive, send)
            return
        account_id, version = found
        key = response_cache.response_key(
            account_id=account_id,
            is_admin=request.principal.is_admin,
            query=request.query,
            operation_name=request.operation_name,
            variables=request.variables,
        )
        entry = self.responses.get(key, version)
        if entry is not None and await self._send_cached(entry, request, send):
            record_operation(entry.operation_name, "query", started, ())
            return
        token = MISSED_RESPONSE.set(
            MissedResponse(key, version, request.query, request.operation_name)
        )
        try:
            await self.app(scope, receive, send)
        finally:
            MISSED_RESPONSE.reset(token)

    def _cacheable_request(self, scope: Scope, body: bytes) -> CacheableRequest | None:
        """The request, if it is one the cache may answer; anything odd is the pipeline's."""
        headers = Headers(scope=scope)
        if "application/json" not in headers.get("content-type", ""):
            return None
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(payload, dict):
            return None
        query, name, variables = (
            payload.get("query"),
            payload.get("operationName"),
            payload.get("variables"),
        )
        if (
            not isinstance(query, str)
            or not isinstance(name, str | None)
            or not isinstance(variables, dict | None)
            or self.responses.may_cache(query, name) is False
        ):
            return None
        principal, _ = authenticate(self.verifier, headers.get("authorization"))
        if principal is None:
            return None
        media_type = response_media_type(headers.get("accept"))
        return CacheableRequest(principal, query, name, variables, media_type)

    @staticmethod
    async def _account_version(scope: Scope, request: CacheableRequest) -> tuple[int, int] | None:
        """The caller's (account id, version); None before the account exists (this request
        creates it) or when it cannot be read (the pipeline then answers, or reports the
        failure as it reports any: masked, with the request id)."""
        database = scope["app"].state.database
        user_id = request.principal.user_id
        try:
            return await response_cache.account_version(database=database, user_id=user_id)
        except Exception:
            log.warning("response cache: the caller's version was not read", exc_info=True)
            return None

    async def _send_cached(
        self, entry: CachedResponse, request: CacheableRequest, send: Send
    ) -> bool:
        """Send the answer if the caller's budget covers it (else the pipeline refuses it)."""
        caller = user_caller(request.principal.user_id)
        charge = charge_budget(self.budgets, caller, entry.cost, self.settings)
        if not charge.allowed:
            return False
        body = _response_body(entry, cost_extension(entry.cost, charge, self.settings))
        headers = [
            (b"content-length", str(len(body)).encode()),
            (b"content-type", request.media_type.encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return True


def _response_body(entry: CachedResponse, cost: dict[str, Any]) -> bytes:
    """What Strawberry's router sends for the same answer: data, then extensions."""
    return b'{"data":' + entry.data + b',"extensions":' + orjson.dumps({"cost": cost}) + b"}"


async def _received_request(receive: Receive) -> tuple[bytes, list[Message]]:
    """The request's body, and the messages it came in, for the app to receive again."""
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    body = b"".join(message.get("body", b"") for message in messages)
    return body, messages


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    pending = deque(messages)

    async def replay() -> Message:
        return pending.popleft() if pending else await receive()

    return replay
