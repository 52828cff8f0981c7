"""Signatures checked against the Standard Webhooks spec, computed independently."""

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime

import aiohttp

from db.database import Database
from gateway.settings import Settings
from services import product_webhooks
from services.product_webhooks import deliver_next

from .conftest import Receiver, make_endpoint, publish, rows

# The vector of the spec's Python library's tests (libraries/python/tests/test_webhooks.py,
# test_sign_function, in github.com/standard-webhooks/standard-webhooks).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_MESSAGE_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def spec_signature(secret: str, message_id: str, timestamp: str, body: bytes) -> str:
    """The spec's signature, by hand: HMAC-SHA256 of "id.timestamp.body" under the secret's
    base64-decoded bytes after "whsec_"."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def test_the_hand_computation_matches_the_spec_vector() -> None:
    assert (
        spec_signature(SPEC_SECRET, SPEC_MESSAGE_ID, str(SPEC_TIMESTAMP), SPEC_BODY)
        == SPEC_SIGNATURE
    )


def test_the_gateway_signs_the_spec_vector() -> None:
    headers = product_webhooks.signed_headers(
        secret=SPEC_SECRET,
        message_id=SPEC_MESSAGE_ID,
        body=SPEC_BODY,
        at=datetime.fromtimestamp(SPEC_TIMESTAMP, UTC),
    )
    assert headers["webhook-signature"] == SPEC_SIGNATURE
    assert headers["webhook-timestamp"] == str(SPEC_TIMESTAMP)
    assert headers["webhook-id"] == SPEC_MESSAGE_ID


async def test_a_delivery_carries_the_spec_signature_of_its_bytes(
    db: Database, receiver: Receiver, settings: Settings, http: aiohttp.ClientSession
) -> None:
    # Given an event with keys out of order and text outside ASCII
    _, secret = await make_endpoint(db, receiver.url)
    await publish(db, "invoice.paid:in_sig", data={"zeta": 1, "alpha": "Zoë", "nested": {"b": 2}})

    # When it is delivered
    await deliver_next(db, settings, http)

    # Then the signature is the spec's over the bytes received, with the headers' id and time
    [request] = receiver.requests
    expected = spec_signature(
        secret, request.headers["webhook-id"], request.headers["webhook-timestamp"], request.body
    )
    assert request.headers["webhook-signature"] == expected
    # and those bytes are the stored payload in one canonical form, the same on every attempt
    [event] = await rows(db, "SELECT payload FROM product_events")
    assert request.body == product_webhooks.body_of(event.payload)
    body = json.loads(request.body)
    assert request.body == json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    assert body["data"] == {"zeta": 1, "alpha": "Zoë", "nested": {"b": 2}} and "sealed" not in body


def test_secrets_are_24_random_bytes_in_the_spec_format() -> None:
    made = {product_webhooks.new_secret() for _ in range(50)}
    assert len(made) == 50
    for secret in made:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 24
