"""What a customer's browser calls in the sandbox: a stand-in for the part of Stripe.js a
billing page uses (`static/stripe.js`), and the `/_sandbox` browser actions, open to pages on
any origin as Stripe's own API is to Stripe.js."""

from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from gateway.settings import SANDBOX_STRIPE_JS_PATH

STRIPE_JS = Path(__file__).parent / "static" / "stripe.js"
BROWSER_PREFIX = "/_sandbox"


async def stripe_js(request: Request) -> Response:
    return FileResponse(
        STRIPE_JS, media_type="text/javascript", headers={"Cache-Control": "no-cache"}
    )


def browser_mount(actions: list[tuple[str, object]]) -> Mount:
    """`/_sandbox/stripe.js` and the browser actions (path, endpoint) under one CORS policy."""
    routes: list[BaseRoute] = [
        Route(SANDBOX_STRIPE_JS_PATH.removeprefix(BROWSER_PREFIX), stripe_js, methods=["GET"])
    ]
    routes += [
        Route(path.removeprefix(BROWSER_PREFIX), endpoint, methods=["POST"])  # type: ignore[arg-type]
        for path, endpoint in actions
    ]
    cors = Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "POST"])
    return Mount(BROWSER_PREFIX, app=Starlette(routes=routes, middleware=[cors]))
