"""Stripe's error body and statuses: {"error": {type, code, decline_code, message, param}}."""

from typing import Any


class StripeError(Exception):
    def __init__(
        self,
        status: int,
        type: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"type": type, "message": message}
        for key, value in {"code": code, "param": param, "decline_code": decline_code}.items():
            if value is not None:
                self.body[key] = value
        if code is not None:
            self.body["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
        self.body.update(extra)


def invalid_request(
    message: str, *, param: str | None = None, code: str | None = None, status: int = 400
) -> StripeError:
    return StripeError(status, "invalid_request_error", message, code=code, param=param)


def unknown_parameter(param: str) -> StripeError:
    return invalid_request(
        f"Received unknown parameter: {param}", param=param, code="parameter_unknown"
    )


def missing_parameter(param: str) -> StripeError:
    return invalid_request(
        f"Missing required param: {param}.", param=param, code="parameter_missing"
    )


def no_such(kind: str, object_id: str, param: str | None = "id") -> StripeError:
    return invalid_request(
        f"No such {kind}: '{object_id}'", param=param, code="resource_missing", status=404
    )


def state_error(message: str, *, param: str | None = None, code: str | None = None) -> StripeError:
    return invalid_request(message, param=param, code=code)
