"""create_app(): the HTTP process: /graphql, /healthz and /readyz."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from db.database import Database, open_database
from db.migrate import current_revision, head_revision, upgrade
from gateway.auth import TokenVerifier
from gateway.graphiql import GatewayGraphQLRouter, mount_graphiql_assets
from gateway.settings import Settings
from resolvers.context import context_getter
from schema.schema import build_schema

log = logging.getLogger("billing_gateway")

READINESS_TIMEOUT_SECONDS = 2.0


def create_app(
    settings: Settings, *, database: Database | None = None, migrate: bool = False
) -> FastAPI:
    """The gateway; without a database handed in, its lifespan opens and closes its own."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = database is None
        if owned:
            app.state.database = await open_database(settings)
        try:
            if migrate:
                await upgrade(app.state.database.engine)
            yield
        finally:
            if owned:
                await app.state.database.dispose()

    app = FastAPI(title="billing-gateway", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.database = database
    app.state.head_revision = head_revision()

    graphql = GatewayGraphQLRouter(
        build_schema(),
        graphql_ide=None if settings.is_production else "graphiql",
        context_getter=context_getter(settings, TokenVerifier(settings)),
    )
    app.include_router(graphql, prefix="/graphql")
    if not settings.is_production:
        mount_graphiql_assets(app)

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
