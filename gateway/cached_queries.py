"""Answers the response cache holds, sent ahead of FastAPI and Strawberry.

A customer reloading a dashboard that nothing has changed under asks for an answer the
process already holds (services/response_cache.py); running it through routing, the
context, parsing, validation and the extensions cost more than reading the data did.
`CachedQueryRoute` serves such a POST /graphql itself: it authenticates the caller as the
context does (gateway/auth.py) and reads their version; when it holds an answer for the
request, the same prepared statement spends that answer's cost from the caller's budget
(services/cost_budgets.py, shared by all replicas). If the answer is at that version and
the budget covered it, it counts the operation (schema/extensions.py) and sends the stored
data with `extensions.cost`. Everything else goes on, with the body as received, to the one
GraphQL pipeline (Strawberry's router): another method, no or a bad token, a document not
known to be cacheable, an exhausted budget (the pipeline refuses it), and a miss, which
carries the version read so that the pipeline's answer is kept (schema/cache.py) and the
spend made already (schema/limits.py `PREPAID`), so that it is not charged twice.

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
from schema.limits import PREPAID, Prepaid, budget_spend, cost_extension, user_caller
from services import response_cache
from services.cost_budgets import Charge
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
    ) -> None:
        self.app = app
        self.settings = settings
        self.verifier = verifier
        self.responses = responses

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
        if request is None:
            await self.app(scope, receive, send)
            return
        key = response_cache.response_key(
            user_id=request.principal.user_id,
            is_admin=request.principal.is_admin,
            query=request.query,
            operation_name=request.operation_name,
            variables=request.variables,
        )
        held = self.responses.held(key)
        read = await self._read_version(scope, request, held)
        if read is None:
            await self.app(scope, receive, send)
            return
        found, prepaid = read
        if held is not None and found is not None and held.version == found[1]:
            assert prepaid is not None, "a held answer's cost was spent with the version"
            if prepaid.charge.allowed:
                await _send_cached(held, prepaid.charge, request, send, self.settings)
                record_operation(held.operation_name, "query", started, ())
                return
        missed = (
            MissedResponse(key, found[1], request.query, request.operation_name)
            if found is not None
            else None
        )
        missed_token, prepaid_token = MISSED_RESPONSE.set(missed), PREPAID.set(prepaid)
        try:
            await self.app(scope, receive, send)
        finally:
            MISSED_RESPONSE.reset(missed_token)
            PREPAID.reset(prepaid_token)

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

    async def _read_version(
        self, scope: Scope, request: CacheableRequest, held: CachedResponse | None
    ) -> tuple[tuple[int, int] | None, Prepaid | None] | None:
        """The caller's (account id, version), None before the account exists (this request
        creates it); with an answer held, its cost spent in the same round trip. None when
        they cannot be read: the pipeline then answers, or reports the failure as it
        reports any (masked, with the request id)."""
        database = scope["app"].state.database
        user_id = request.principal.user_id
        try:
            if held is None:
                found = await response_cache.account_version(database=database, user_id=user_id)
                return found, None
            spend = budget_spend(user_caller(user_id), held.cost, self.settings)
            found, charge = await response_cache.account_version_spending(
                database=database, user_id=user_id, spend=spend
            )
            return found, Prepaid(spend, charge)
        except Exception:
            log.warning("response cache: the caller's version was not read", exc_info=True)
            return None


async def _send_cached(
    entry: CachedResponse, charge: Charge, request: CacheableRequest, send: Send, settings: Settings
) -> None:
    body = _response_body(entry, cost_extension(entry.cost, charge, settings))
    headers = [
        (b"content-length", str(len(body)).encode()),
        (b"content-type", request.media_type.encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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
