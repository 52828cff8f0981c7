"""Expected failures, each with a UserErrorCode value that resolvers hand to the caller."""

import contextlib
from collections.abc import Iterator
from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID_INPUT = "INVALID_INPUT"
    NOT_FOUND = "NOT_FOUND"
    RAW_CARD_DATA_REJECTED = "RAW_CARD_DATA_REJECTED"
    CARD_DECLINED = "CARD_DECLINED"
    AUTHENTICATION_REQUIRED = "AUTHENTICATION_REQUIRED"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    ALREADY_SUBSCRIBED = "ALREADY_SUBSCRIBED"
    INVALID_STATE = "INVALID_STATE"
    INSUFFICIENT_CREDITS = "INSUFFICIENT_CREDITS"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    STRIPE_UNAVAILABLE = "STRIPE_UNAVAILABLE"
    RATE_LIMITED = "RATE_LIMITED"
    INVALID_PROMOTION_CODE = "INVALID_PROMOTION_CODE"
    INVALID_TAX_ID = "INVALID_TAX_ID"
    UNSUPPORTED_CURRENCY = "UNSUPPORTED_CURRENCY"
    CUSTOMER_ERASED = "CUSTOMER_ERASED"


class DomainError(Exception):
    """A failure the caller can act on; never an internal detail."""

    def __init__(self, code: ErrorCode, message: str, field: list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class InvalidInput(DomainError):
    def __init__(self, message: str, field: list[str] | None = None) -> None:
        super().__init__(ErrorCode.INVALID_INPUT, message, field)


class NotFound(DomainError):
    def __init__(self, message: str, field: list[str] | None = None) -> None:
        super().__init__(ErrorCode.NOT_FOUND, message, field)


@contextlib.contextmanager
def about_field(field: str, *codes: ErrorCode) -> Iterator[None]:
    """Point a DomainError with one of `codes` (default NOT_FOUND) that names no input field,
    as Stripe's do not, at the input field it is about."""
    try:
        yield
    except DomainError as error:
        if error.field is None and error.code in (codes or (ErrorCode.NOT_FOUND,)):
            error.field = [field]
        raise
