"""`POST /webhooks/stripe`: verify, store in the inbox, acknowledge. Nothing else runs here."""

import json
import logging
from typing import Any

import stripe
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from gateway.settings import Settings
from services.webhooks import inbox

log = logging.getLogger("billing_gateway.webhooks")

MAX_BODY_BYTES = 1024 * 1024
MAX_CREATED = 10**11  # seconds: year 5138, so a timestamp always fits a timestamptz


def webhook_router(settings: Settings) -> APIRouter:
    """The Stripe webhook endpoint, verifying against every configured secret."""
    router = APIRouter()

    @router.post("/webhooks/stripe")
    async def receive_stripe_event(request: Request) -> JSONResponse:
        body = await read_limited_body(request, limit=MAX_BODY_BYTES)
        header = request.headers.get("stripe-signature")
        payload = verify_signature(body, header, settings=settings)
        event = parse_event(payload)
        try:
            async with request.app.state.database.session() as session:
                stored = await inbox.store_event(session=session, event=event)
        except Exception:  # Stripe retries a 503; the event is not lost
            log.exception("webhook %s not stored", event["id"])
            return JSONResponse({"received": False}, status_code=503)
        return JSONResponse({"received": True, "duplicate": not stored})

    return router


async def read_limited_body(request: Request, *, limit: int) -> bytes:
    """The raw body; 413 past `limit`, by the declared length or by what arrives."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, "webhook body too large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, "webhook body too large")
        chunks.append(chunk)
    return b"".join(chunks)


def verify_signature(body: bytes, header: str | None, *, settings: Settings) -> str:
    """The body as text when one configured secret signed it recently enough; else 400."""
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(400, "webhook body is not UTF-8") from None
    for secret in settings.webhook_secrets:  # during a rotation both secrets are valid
        try:
            stripe.WebhookSignature.verify_header(
                payload, header, secret, settings.webhook_tolerance_seconds
            )
            return payload
        except stripe.SignatureVerificationError:
            continue
    raise HTTPException(400, "invalid Stripe-Signature")


def parse_event(payload: str) -> dict[str, Any]:
    """The event object, if it has the shape of a Stripe event; else 400."""
    try:
        event = json.loads(payload)
    except ValueError:
        raise HTTPException(400, "webhook body is not JSON") from None
    if not _is_event(event):
        raise HTTPException(400, "webhook body is not a Stripe event")
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
