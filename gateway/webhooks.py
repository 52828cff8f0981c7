"""`POST /webhooks/stripe`: verify, store in the inbox, acknowledge. Nothing else runs here.

It is the hottest route (Stripe may send thousands of events a second), so it is served by
`WebhookRoute` in front of FastAPI's routing and exception layers, which would otherwise
cost it a good part of its throughput; it answers its own errors."""

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import stripe
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.settings import Settings
from services.webhooks import inbox

log = logging.getLogger("billing_gateway.webhooks")

MAX_BODY_BYTES = 1024 * 1024
MAX_CREATED = 10**11  # seconds: year 5138, so a timestamp always fits a timestamptz
PATH = "/webhooks/stripe"

Endpoint = Callable[[Request], Awaitable[JSONResponse]]


class Rejected(Exception):
    """A delivery refused with a 4xx status; nothing was stored."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


class WebhookRoute:
    """ASGI middleware serving PATH itself; every other request goes on to the app."""

    def __init__(self, app: ASGIApp, *, endpoint: Endpoint) -> None:
        self.app = app
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "POST":
            response = await self.endpoint(Request(scope, receive))
        else:
            response = JSONResponse(
                {"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": "POST"}
            )
        await response(scope, receive, send)


def webhook_endpoint(settings: Settings) -> Endpoint:
    """The Stripe webhook endpoint, verifying against every configured secret."""
    wake_ups = inbox.WorkerWakeUps()

    async def receive_stripe_event(request: Request) -> JSONResponse:
        try:
            body = await read_limited_body(request, limit=MAX_BODY_BYTES)
            header = request.headers.get("stripe-signature")
            payload = verify_signature(body, header, settings=settings)
            event = parse_event(payload)
        except Rejected as rejected:
            return JSONResponse({"detail": rejected.detail}, status_code=rejected.status_code)
        database = request.app.state.database
        try:
            stored = await inbox.store_event(database=database, event=event, payload=payload)
        except Exception:  # Stripe retries a 503; the event is not lost
            log.exception("webhook %s not stored", event["id"])
            return JSONResponse({"received": False}, status_code=503)
        if stored:
            wake_ups.event_stored(database)
        return JSONResponse({"received": True, "duplicate": not stored})

    return receive_stripe_event


async def read_limited_body(request: Request, *, limit: int) -> bytes:
    """The raw body; 413 past `limit`, by the declared length or by what arrives."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Rejected(413, "webhook body too large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Rejected(413, "webhook body too large")
        chunks.append(chunk)
    return b"".join(chunks)


def verify_signature(body: bytes, header: str | None, *, settings: Settings) -> str:
    """The body as text when one configured secret signed it recently enough; else 400."""
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(400, "webhook body is not UTF-8") from None
    for secret in settings.webhook_secrets:  # during a rotation both secrets are valid
        try:
            stripe.WebhookSignature.verify_header(
                payload, header, secret, settings.webhook_tolerance_seconds
            )
            return payload
        except stripe.SignatureVerificationError:
            continue
    raise Rejected(400, "invalid Stripe-Signature")


def parse_event(payload: str) -> dict[str, Any]:
    """The event object, if it has the shape of a Stripe event; else 400."""
    try:
        event = json.loads(payload)
    except ValueError:
        raise Rejected(400, "webhook body is not JSON") from None
    if not _is_event(event):
        raise Rejected(400, "webhook body is not a Stripe event")
    return event


def _is_event(event: Any) -> bool:
    if not isinstance(event, dict):
        return False
    data = event.get("data")
    created = event.get("created")
    return (
        isinstance(event.get("id"), str)
        and event["id"].startswith("evt_")
        and isinstance(event.get("type"), str)
        and bool(event["type"])
        and isinstance(created, int)
        and not isinstance(created, bool)
        and 0 < created < MAX_CREATED
        and isinstance(data, dict)
        and isinstance(data.get("object"), dict)
        and isinstance(event.get("api_version"), str | None)
    )
