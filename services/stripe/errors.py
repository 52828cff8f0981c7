"""Stripe's failures as the domain's: what the caller can act on, never Stripe's internals."""

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, cast

import stripe

from services.errors import DomainError, ErrorCode

log = logging.getLogger("billing_gateway.stripe")


class PaymentFailed(DomainError):
    """A card payment that did not go through; names its PaymentIntent (when Stripe made one)
    so the failed attempt can still be mirrored."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        field: list[str] | None = None,
        *,
        payment_intent_id: str | None = None,
    ) -> None:
        super().__init__(code, message, field)
        self.payment_intent_id = payment_intent_id


class PaymentRequiresAction(PaymentFailed):
    """The payment waits for the customer (3-D Secure); the client secret lets Stripe.js finish it."""

    def __init__(
        self, message: str, client_secret: str | None, *, payment_intent_id: str | None = None
    ) -> None:
        super().__init__(
            ErrorCode.AUTHENTICATION_REQUIRED, message, payment_intent_id=payment_intent_id
        )
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
    if isinstance(error, stripe.IdempotencyError):
        # Our Stripe keys derive from the caller's: Stripe saw this key with other parameters.
        return DomainError(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            "This idempotency key was used with different input",
            ["idempotencyKey"],
        )
    if isinstance(error, stripe.InvalidRequestError):
        return _invalid_request(operation, error)
    # Network faults, timeouts, Stripe 5xx, and our own misconfiguration (bad key) alike:
    # the caller can only retry later; the operator learns the cause from the log.
    log.error("stripe %s failed: %s %r", operation, type(error).__name__, error.user_message)
    return DomainError(ErrorCode.STRIPE_UNAVAILABLE, "Stripe is unavailable; retry shortly")


# Stripe's answer to paying an invoice on session with a card that asks for 3-D Secure.
INVOICE_REQUIRES_ACTION = "invoice_payment_intent_requires_action"


def _card_error(error: stripe.CardError) -> DomainError:
    code = error.code or ""
    # The SDK keeps the decline code only on the parsed error object, not on the exception.
    decline = (error.error.decline_code if error.error is not None else None) or ""
    body = cast(dict[str, Any], error.json_body or {})
    intent = body.get("error", {}).get("payment_intent") or {}
    intent_id = intent.get("id")
    if "authentication_required" in (code, decline) or code == INVOICE_REQUIRES_ACTION:
        return PaymentRequiresAction(
            "The bank requires the customer to authenticate this payment",
            intent.get("client_secret"),
            payment_intent_id=intent_id,
        )
    message = error.user_message or "The card was declined"
    if code == "card_declined":
        reason = f" ({decline})" if decline else ""
        return PaymentFailed(
            ErrorCode.CARD_DECLINED,
            f"{message}{reason}",
            ["paymentMethodId"],
            payment_intent_id=intent_id,
        )
    return PaymentFailed(
        ErrorCode.PAYMENT_FAILED, message, ["paymentMethodId"], payment_intent_id=intent_id
    )


# Stripe's refusals of what the caller chose, by the parameter (or error code) Stripe names:
# the domain's code and the input field it is about.
REFUSALS = {
    "discounts": (ErrorCode.INVALID_PROMOTION_CODE, "promotionCode"),
    "coupon_expired": (ErrorCode.INVALID_PROMOTION_CODE, "promotionCode"),
    "currency": (ErrorCode.UNSUPPORTED_CURRENCY, "currency"),
    "tax_id_invalid": (ErrorCode.INVALID_TAX_ID, "value"),
}


def _invalid_request(operation: str, error: stripe.InvalidRequestError) -> DomainError:
    refusal = REFUSALS.get((error.param or "").split("[", 1)[0]) or REFUSALS.get(error.code or "")
    if refusal is not None:
        code, field = refusal
        return DomainError(code, error.user_message or "Stripe refused it", [field])
    if error.http_status == 404 or error.code == "resource_missing":
        return DomainError(ErrorCode.NOT_FOUND, "Stripe does not know that object")
    log.warning("stripe %s refused the request: %s (param %s)", operation, error.code, error.param)
    return DomainError(ErrorCode.INVALID_INPUT, error.user_message or "Stripe refused the request")
