"""Faults injected at the HTTP layer, so callers can test how they handle Stripe failing:
`POST /_sandbox/faults` with status (429, 500, 503, …) and/or delay, for the next `count`
requests whose path starts with `path` (and whose method is `method`, when given)."""

import asyncio
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse, Response

ERROR_TYPES = {429: "invalid_request_error", 409: "idempotency_error"}
MESSAGES = {
    429: "Too many requests hit the API too quickly. We recommend an exponential backoff "
    "of your requests.",
    409: "There is currently another in-progress request using this Idempotent Key.",
}


@dataclass
class Fault:
    remaining: int
    path: str
    method: str | None
    status: int | None
    delay: float

    @classmethod
    def from_form(cls, form: dict[str, Any]) -> "Fault":
        status = int(form["status"]) if form.get("status") else None
        return cls(
            remaining=int(form.get("count", 1)),
            path=form.get("path", "/v1/"),
            method=form.get("method", "").upper() or None,
            status=status,
            delay=float(form.get("delay", 0)),
        )

    def matches(self, method: str, path: str) -> bool:
        return self.remaining > 0 and path.startswith(self.path) and self.method in (None, method)


async def injected_response(faults: list[Fault], method: str, path: str) -> Response | None:
    """Apply the first matching fault: wait its delay, then answer its status (if any)."""
    fault = next((fault for fault in faults if fault.matches(method, path)), None)
    if fault is None:
        return None
    fault.remaining -= 1
    if fault.delay:
        await asyncio.sleep(fault.delay)
    if fault.status is None:
        return None
    error = {
        "type": ERROR_TYPES.get(fault.status, "api_error"),
        "message": MESSAGES.get(fault.status, "An unknown error occurred (injected fault)."),
    }
    if fault.status == 429:
        error["code"] = "rate_limit"
    return JSONResponse({"error": error}, status_code=fault.status)
