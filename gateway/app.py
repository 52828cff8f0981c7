"""create_app(): the HTTP process: /graphql, /webhooks/stripe, /invoices/{id}/pdf,
/exports/{token} (exportMyData's archive), /app (the reference billing app), /metrics,
/healthz and /readyz."""

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.middleware.cors import CORSMiddleware

from db.database import Database, open_database
from db.migrate import current_revision, head_revision, upgrade
from gateway.auth import TokenVerifier
from gateway.cached_queries import CachedQueryRoute
from gateway.exports import data_export_router
from gateway.graphiql import mount_graphiql_assets
from gateway.invoices import invoice_pdf_router
from gateway.live_ws import GatewayRouter
from gateway.observability import RequestIdMiddleware, metrics_router
from gateway.settings import Settings
from gateway.web_app import mount_web_app
from gateway.webhooks import WebhookRoute, webhook_endpoint
from resolvers.context import context_getter
from schema.schema import build_schema
from services import catalog, retention
from services.admission import Admission
from services.errors import DomainError
from services.live_bus import LiveBus
from services.outbox_worker import OutboxWorker
from services.response_cache import ResponseCache
from services.stripe.client import StripeApi
from services.webhooks.worker import worker_for

log = logging.getLogger("billing_gateway")

READINESS_TIMEOUT_SECONDS = 2.0
# How long a browser may reuse a preflight answer.
CORS_MAX_AGE_SECONDS = 600
# Measured with bench/graphql_dashboard.py: 20-40% more requests per second than (700, 10, 10).
GC_THRESHOLDS = (200_000, 50, 1_000)


def create_app(
    settings: Settings,
    *,
    database: Database | None = None,
    migrate: bool = False,
    start_sandbox: bool = False,
    sync_catalog: bool = False,
    start_worker: bool = False,
) -> FastAPI:
    """The gateway; without a database handed in, its lifespan opens and closes its own.

    With `start_sandbox` (serve without a Stripe key) the offline Stripe runs beside it;
    with `start_worker` a webhook worker applies the inbox's events in this process, and an
    outbox worker sends the mails and the product's webhooks they cause, and retention
    passes run (services/retention.py).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with process_services(
            settings,
            database=database,
            stripe=app.state.stripe,
            migrate=migrate,
            start_sandbox=start_sandbox,
            sync_catalog=sync_catalog,
            start_worker=start_worker,
        ) as services:
            app.state.database, app.state.stripe = services.database, services.stripe
            app.state.live_bus = LiveBus(
                services.database,
                queue_size=settings.live_queue_size,
                grace_days=settings.billing_grace_days,
            )
            bus = app.state.live_bus.start()
            try:
                # What start-up built lives as long as the process: moved out of the
                # collector's sight, it is no longer traversed by every collection while
                # requests run. A response builds thousands of short-lived objects, freed by
                # reference counting; collecting young objects every 700 allocations mostly
                # walks live requests.
                gc.collect()
                gc.freeze()
                gc.set_threshold(*GC_THRESHOLDS)
                yield
            finally:
                await bus.stop()

    app = FastAPI(
        title="billing-gateway",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # FastAPI's OpenTelemetry hooks ask the global providers on every request;
        # this service exports Prometheus metrics instead.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.database = database
    app.state.stripe = StripeApi(settings, settings.stripe_api_base)
    app.state.head_revision = head_revision()

    verifier = TokenVerifier(settings)
    responses = ResponseCache(settings.graphql_response_cache_size)
    graphql = GatewayRouter(
        build_schema(responses=responses),
        graphql_ide=None if settings.is_production else "graphiql",
        context_getter=context_getter(settings, verifier),
        verifier=verifier,
        allowed_origins=settings.allowed_origins,
        admission=Admission(settings.graphql_concurrency),
    )
    app.include_router(graphql, prefix="/graphql")
    app.state.shared_streams = graphql.shared_streams
    app.include_router(invoice_pdf_router(settings, verifier))
    app.include_router(data_export_router(settings, verifier))
    app.include_router(metrics_router(settings))
    # Inside the request-id layer: a cached answer has its id header and log line too.
    app.add_middleware(
        CachedQueryRoute,
        settings=settings,
        verifier=verifier,
        responses=responses,
    )
    app.add_middleware(RequestIdMiddleware)
    # Browsers on the allowed origins (their websockets: the router checks those).
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["authorization", "content-type", "x-request-id"],
        expose_headers=["x-request-id"],
        max_age=CORS_MAX_AGE_SECONDS,
    )
    # Added last, so outermost: Stripe's deliveries skip the request-id layer as well (the
    # route logs only failures, with the event's id).
    app.add_middleware(WebhookRoute, endpoint=webhook_endpoint(settings))
    if not settings.is_production:
        mount_graphiql_assets(app)
    mount_web_app(app, settings)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        try:
            async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
                async with app.state.database.engine.connect() as conn:
                    revision = await current_revision(conn)
        except Exception as exc:  # any failure to reach the database means not ready
            log.warning("readiness check failed: %r", exc)
            return JSONResponse({"status": "unavailable", "reason": "database"}, status_code=503)
        if revision != app.state.head_revision:
            body = {"status": "unavailable", "reason": "migrations", "revision": revision}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ready", "revision": revision})

    return app


@dataclass(frozen=True)
class ProcessServices:
    database: Database
    stripe: StripeApi


@asynccontextmanager
async def process_services(
    settings: Settings,
    *,
    database: Database | None,
    stripe: StripeApi,
    migrate: bool,
    start_sandbox: bool,
    sync_catalog: bool,
    start_worker: bool,
) -> AsyncIterator[ProcessServices]:
    """What a serving process runs beside HTTP, closed in reverse on exit: the database
    (opened here unless handed in), migrations, the offline Stripe (then `stripe` is a client
    on it), the catalog's sync, and the workers. `serve` runs it in its one process; with
    `--workers N`, the supervisor runs it once for its N replicas (gateway/replicas.py)."""
    async with AsyncExitStack() as stack:
        if database is None:
            database = await open_database(settings)
            stack.push_async_callback(database.dispose)
        if migrate:
            await upgrade(database.engine)
        if start_sandbox:
            sandbox = await _start_sandbox(settings)
            stack.push_async_callback(sandbox.stop)
            opener = asyncio.create_task(_open_deliveries_when_listening(sandbox, settings))
            stack.callback(opener.cancel)
            stripe = StripeApi(settings, sandbox.url)
        stack.push_async_callback(stripe.close)
        if sync_catalog:
            await _sync_catalog(database, stripe)
        if start_worker:
            worker = worker_for(database=database, stripe=stripe, settings=settings)
            stack.push_async_callback(worker.start().stop)
            outbox = OutboxWorker(database=database, settings=settings)
            stack.push_async_callback(outbox.start().stop)
            retaining = asyncio.create_task(
                retention.keep_running(database, settings), name="retention"
            )
            stack.push_async_callback(_cancel, retaining)
        yield ProcessServices(database, stripe)


async def _start_sandbox(settings: Settings):
    from sandbox.demo import start_demo_sandbox

    settings.billing_data_dir.mkdir(parents=True, exist_ok=True)
    sandbox = await start_demo_sandbox(
        webhook_url=f"http://{_loopback(settings)}:{settings.port}/webhooks/stripe",
        webhook_secret=settings.webhook_secrets[0],
        data_dir=settings.billing_data_dir,
    )
    print(f"  Stripe:   OFFLINE SANDBOX at {sandbox.url} (no real money moves)", flush=True)
    return sandbox


def _loopback(settings: Settings) -> str:
    """Where this process is reached from the same machine."""
    return "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host


async def _open_deliveries_when_listening(sandbox, settings: Settings) -> None:
    """The sandbox's webhooks come to this process, which listens only once start-up is over:
    they wait until it accepts a connection (delivering earlier would only fail and retry)."""
    while True:
        try:
            _, writer = await asyncio.open_connection(_loopback(settings), settings.port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        sandbox.deliverer.open()
        return


async def _cancel(task: asyncio.Task[None]) -> None:
    """Cancel a background task and wait for it: what it holds (a pass's connection) is
    given back before the database closes."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _sync_catalog(database: Database, stripe: StripeApi) -> None:
    """Mirror Stripe's prices at start; an unreachable Stripe delays this, never the start."""
    try:
        async with database.session() as session:
            count = await catalog.sync_plans(session=session, stripe=stripe)
        log.info("synced %d prices from Stripe into plans", count)
    except DomainError as error:
        log.warning("plans not synced at start: %s", error.message)
