"""The sandbox's HTTP face: Stripe's v1 API (as the SDK calls it) plus `/_sandbox` endpoints
that stand in for what a customer (or their bank) does, move the sandbox-wide clock, set
Billing's Dashboard settings, and make webhook delivery misbehave on purpose."""

import dataclasses
import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox import resources  # noqa: F401 - registers the handlers
from sandbox.clocks import advance_sandbox, time_of_request
from sandbox.delivery import Chaos, Deliverer
from sandbox.errors import StripeError, invalid_request
from sandbox.expand import expanded
from sandbox.faults import Fault, injected_response
from sandbox.params import decode_form, validate
from sandbox.registry import HANDLERS, Call
from sandbox.resources.common import one_of
from sandbox.spec import API_VERSION, find_endpoint
from sandbox.store import RequestInfo, Store
from sandbox.stripe_js import browser_mount

log = logging.getLogger("billing_gateway.sandbox")


def create_sandbox_app(
    store: Store | None = None,
    *,
    deliverer: Deliverer | None = None,
    state_file: Path | None = None,
    hold_deliveries: bool = False,
) -> Starlette:
    """The sandbox; with `state_file`, its state persists there (see `Journal`) and every
    answer waits until the change it reports is on disk. With `hold_deliveries`, webhooks wait
    for `deliverer.open()` (the receiver is not listening yet)."""
    store = store if store is not None else Store()
    deliverer = deliverer if deliverer is not None else Deliverer(store)
    if state_file is not None:
        store.open_journal(state_file)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        deliverer.start(open_now=not hold_deliveries)
        try:
            yield
        finally:
            await deliverer.stop()
            store.close()

    faults: list[Fault] = []

    async def api(request: Request) -> Response:
        injected = await injected_response(faults, request.method, request.url.path)
        if injected is not None:
            return injected
        return await _dispatch(store, request)

    async def reset(request: Request) -> Response:
        store.reset()
        faults.clear()
        return JSONResponse({"reset": True})

    advance = _action(store, _advance_clock)

    async def advance_clock(request: Request) -> Response:
        answer = await advance(request)
        deliverer.wake()  # retries due by the new time are due now
        return answer

    async def chaos(request: Request) -> Response:
        endpoint_id = request.path_params["id"]
        try:
            store.get("webhook_endpoint", endpoint_id)
            if request.method == "DELETE":
                store.chaos.pop(endpoint_id, None)
                return JSONResponse({"endpoint": endpoint_id, "chaos": None})
            settings = Chaos.from_form(decode_form((await request.body()).decode())).settings()
        except StripeError as error:
            return JSONResponse({"error": error.body}, status_code=error.status)
        store.chaos[endpoint_id] = settings
        return JSONResponse({"endpoint": endpoint_id, "chaos": settings})

    async def inject_fault(request: Request) -> Response:
        if request.method == "DELETE":
            faults.clear()
            return JSONResponse({"faults": 0})
        faults.append(Fault.from_form(decode_form((await request.body()).decode())))
        return JSONResponse({"faults": len(faults)})

    from sandbox.resources.browser import BROWSER_ROUTES

    routes = [
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/faults", inject_fault, methods=["POST", "DELETE"]),
        Route("/_sandbox/webhook_endpoints/{id}/chaos", chaos, methods=["POST", "DELETE"]),
        Route("/_sandbox/clock/advance", advance_clock, methods=["POST"]),
        Route("/_sandbox/billing_settings", _action(store, _billing_settings), methods=["POST"]),
    ]
    routes.append(
        browser_mount([(path, _action(store, action)) for path, action in BROWSER_ROUTES])
    )
    routes.append(Route("/{path:path}", api, methods=["GET", "POST", "DELETE"]))
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(CommitBeforeAnswering, store=store)],
    )
    app.state.store = store
    app.state.deliverer = deliverer
    return app


class CommitBeforeAnswering:
    """Persists a request's changes (`Store.commit`) before its answer starts, so whatever a
    client was told happened (and every delivery it owes) survives a crash."""

    def __init__(self, app: ASGIApp, store: Store) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_after_commit(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.store.commit()
            await send(message)

        await self.app(scope, receive, send_after_commit)


def _advance_clock(store: Store, args: dict[str, str], form: dict[str, Any]) -> dict[str, Any]:
    """Move the sandbox-wide clock (see `advance_sandbox`)."""
    return advance_sandbox(store, form)


def _billing_settings(store: Store, args: dict[str, str], form: dict[str, Any]) -> dict[str, Any]:
    """Change Billing's Dashboard settings (see `BillingSettings`); answers all of them."""
    changes: dict[str, Any] = {}
    try:
        if "retry_days" in form:
            changes["retry_days"] = tuple(int(day) for day in form["retry_days"].split(",") if day)
        for name in ("upcoming_days", "finalize_after"):
            if name in form:
                changes[name] = int(form[name])
    except ValueError as error:
        raise invalid_request(f"Invalid billing setting: {error}") from None
    if "after_retries" in form:
        changes["after_retries"] = one_of(
            form["after_retries"], ("canceled", "unpaid"), "after_retries"
        )
    store.billing = dataclasses.replace(store.billing, **changes)
    return vars(store.billing)


def _action(store: Store, action):
    """A `/_sandbox` action (such as what Stripe.js, a hosted page or a bank would do for the
    customer), run at the time of the test clock its objects live by."""

    async def run(request: Request) -> Response:
        params = decode_form((await request.body()).decode())
        store.current_request = RequestInfo(store.new_id("req", 14), None)
        try:
            with store.at(time_of_request(store, params, request.path_params)):
                return JSONResponse(action(store, request.path_params, params))
        except StripeError as error:
            return JSONResponse({"error": error.body}, status_code=error.status)
        finally:
            store.current_request = None

    return run


async def _dispatch(store: Store, request: Request) -> Response:
    request_id = store.new_id("req", 14)
    headers = {"Request-Id": request_id, "Stripe-Version": API_VERSION}
    try:
        _authenticate(request)
        _check_version(request)
        found = find_endpoint(request.method, request.url.path)
        if found is None:
            raise invalid_request(
                f"Unrecognized request URL ({request.method}: {request.url.path}).", status=404
            )
        endpoint, args = found
        raw_body = (await request.body()).decode()
        raw = decode_form(raw_body if request.method == "POST" else request.url.query)
        params = validate(endpoint.params, raw)
        handler = HANDLERS.get((endpoint.method, endpoint.template))
        if handler is None:
            raise invalid_request(
                f"The sandbox does not implement {endpoint.method} {endpoint.template}.",
                status=404,
            )
    except StripeError as error:
        return JSONResponse({"error": error.body}, status_code=error.status, headers=headers)

    key = request.headers.get("idempotency-key") if request.method == "POST" else None
    fingerprint = hashlib.sha256(
        f"{request.method} {request.url.path} {raw_body}".encode()
    ).hexdigest()
    if key is not None and key in store.idempotent_responses:
        return _replay(store.idempotent_responses[key], fingerprint, key, headers)

    call = Call(store, params, args, RequestInfo(request_id, key), request.url.path)
    status, body = _run(handler, call)
    if key is not None:
        store.idempotent_responses[key] = (fingerprint, status, body)
    return JSONResponse(body, status_code=status, headers=headers)


def _run(handler, call: Call) -> tuple[int, dict[str, Any]]:
    call.store.current_request = call.request
    try:
        with call.store.at(time_of_request(call.store, call.params, call.args)):
            result = handler(call)
            return 200, expanded(call.store, result, call.params.get("expand", []))
    except StripeError as error:
        return error.status, {"error": error.body}
    except Exception:  # a sandbox bug answers as Stripe's 500, and is logged
        log.exception("sandbox handler failed for %s", call.path)
        return 500, {"error": {"type": "api_error", "message": "An unknown error occurred."}}
    finally:
        call.store.current_request = None


def _replay(stored, fingerprint: str, key: str, headers: dict[str, str]) -> Response:
    first_fingerprint, status, body = stored
    if first_fingerprint != fingerprint:
        error = {
            "type": "idempotency_error",
            "message": "Keys for idempotent requests can only be used with the same parameters "
            f"they were first used with. Try using a key other than '{key}' if you meant to "
            "execute a different request.",
        }
        return JSONResponse({"error": error}, status_code=400, headers=headers)
    return JSONResponse(body, status_code=status, headers=headers | {"Idempotent-Replayed": "true"})


def _check_version(request: Request) -> None:
    # Objects are shaped for one API version; answering another in its shape would lie.
    version = request.headers.get("stripe-version")
    if version is not None and version != API_VERSION:
        raise invalid_request(
            f"The sandbox speaks Stripe API version {API_VERSION} only, not {version}.",
            param="Stripe-Version",
        )


def _authenticate(request: Request) -> None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key:
        raise StripeError(
            401,
            "invalid_request_error",
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
        )
    if not key.startswith(("sk_test_", "rk_test_")):
        raise StripeError(
            401,
            "invalid_request_error",
            f"Invalid API Key provided: {key[:8]}{'*' * 8}. The sandbox accepts test keys only.",
        )
