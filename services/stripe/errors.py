"""Stripe's failures as the domain's: what the caller can act on, never Stripe's internals."""

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, cast

import stripe

from services.errors import DomainError, ErrorCode

log = logging.getLogger("billing_gateway.stripe")


class PaymentRequiresAction(DomainError):
    """The payment waits for the customer (3-D Secure); the client secret lets Stripe.js finish it."""

    def __init__(self, message: str, client_secret: str | None) -> None:
        super().__init__(ErrorCode.AUTHENTICATION_REQUIRED, message)
        self.client_secret = client_secret


@contextlib.contextmanager
def translated_errors(operation: str) -> Iterator[None]:
    """Raise a DomainError for any Stripe failure inside the block."""
    try:
        yield
    except stripe.StripeError as error:
        raise domain_error(operation, error) from error


def domain_error(operation: str, error: stripe.StripeError) -> DomainError:
    if isinstance(error, stripe.CardError):
        return _card_error(error)
    if isinstance(error, stripe.RateLimitError):
        return DomainError(ErrorCode.RATE_LIMITED, "Stripe is rate limiting; retry shortly")
    if isinstance(error, stripe.InvalidRequestError):
        return _invalid_request(operation, error)
    # Network faults, timeouts, Stripe 5xx, and our own misconfiguration (bad key) alike:
    # the caller can only retry later; the operator learns the cause from the log.
    log.error("stripe %s failed: %s %r", operation, type(error).__name__, error.user_message)
    return DomainError(ErrorCode.STRIPE_UNAVAILABLE, "Stripe is unavailable; retry shortly")


def _card_error(error: stripe.CardError) -> DomainError:
    code = error.code or ""
    decline = getattr(error, "decline_code", None) or ""
    if "authentication_required" in (code, decline):
        body = cast(dict[str, Any], error.json_body or {})
        intent = body.get("error", {}).get("payment_intent") or {}
        return PaymentRequiresAction(
            "The bank requires the customer to authenticate this payment",
            intent.get("client_secret"),
        )
    message = error.user_message or "The card was declined"
    if code == "card_declined":
        reason = f" ({decline})" if decline else ""
        return DomainError(ErrorCode.CARD_DECLINED, f"{message}{reason}", ["paymentMethodId"])
    return DomainError(ErrorCode.PAYMENT_FAILED, message, ["paymentMethodId"])


def _invalid_request(operation: str, error: stripe.InvalidRequestError) -> DomainError:
    if error.http_status == 404 or error.code == "resource_missing":
        return DomainError(ErrorCode.NOT_FOUND, "Stripe does not know that object")
    log.warning("stripe %s refused the request: %s (param %s)", operation, error.code, error.param)
    return DomainError(ErrorCode.INVALID_INPUT, error.user_message or "Stripe refused the request")
