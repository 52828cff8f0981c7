"""Real PostgreSQL for every test: DATABASE_URL's server when set, else the embedded one.

Each run gets its own database, migrated to head once; tests that write get a clean
database afterwards (TRUNCATE), so tests that need real commits and races can have them.
"""

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from sqlalchemy import URL, select, text

from db import sealed
from db.database import Database, asyncpg_url, create_database_if_missing
from db.embedded import start_embedded_postgres
from db.migrate import upgrade
from db.models import Plan
from gateway.app import create_app
from gateway.auth import mint_token
from gateway.settings import SANDBOX_WEBHOOK_SECRET, Settings
from sandbox.demo import sdk_client, seed_catalog, seed_promotions
from sandbox.server import SandboxServer
from sandbox.store import Store
from schema.ids import to_global_id
from services import catalog
from services.stripe.client import StripeApi

REPO_ROOT = Path(__file__).resolve().parents[1]

# One data key for the run, in the environment, so the processes tests start (served
# gateways, the CLI) seal and open personal data as the test process does.
os.environ.setdefault("DATA_ENCRYPTION_KEYS", sealed.new_key_text("test"))
sealed.install(sealed.Keyring.parse(os.environ["DATA_ENCRYPTION_KEYS"]))


def server_url() -> URL:
    """The PostgreSQL server the tests run on (its maintenance database)."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        return asyncpg_url(configured)
    return start_embedded_postgres(REPO_ROOT / ".billing" / "test")


async def create_scratch_database(prefix: str) -> URL:
    server = server_url()
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    await create_database_if_missing(server, name)
    return server.set(database=name)


async def drop_database(url: URL) -> None:
    admin = Database(url.set(database="postgres"), pool_size=1)
    try:
        async with admin.engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    finally:
        await admin.dispose()


@pytest.fixture(scope="session")
async def database() -> AsyncIterator[Database]:
    url = await create_scratch_database("billing_test")
    db = Database(url, pool_size=20)
    await upgrade(db.engine)
    yield db
    await db.dispose()
    await drop_database(url)


@pytest.fixture
async def db(database: Database) -> AsyncIterator[Database]:
    """The run's database, emptied after the test."""
    yield database
    async with database.engine.begin() as conn:
        tables = await conn.scalars(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            )
        )
        names = ", ".join(f'"{name}"' for name in tables)
        await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(scope="session")
async def stripe_sandbox() -> AsyncIterator[SandboxServer]:
    """The offline Stripe the gateway talks to in tests, over HTTP, like real Stripe."""
    server = await SandboxServer(store=Store(webhook_secret=SANDBOX_WEBHOOK_SECRET)).start()
    yield server
    await server.stop()


@pytest.fixture
def settings(stripe_sandbox: SandboxServer) -> Settings:
    return Settings(
        billing_env="test",
        database_url=None,
        billing_data_dir=REPO_ROOT / ".billing",
        stripe_api_base=stripe_sandbox.url,
        # The session's sandbox holds every test's events: reconciliation is tested on its own
        # (tests/webhooks/test_reconcile.py), never a side effect of starting a worker.
        reconcile_interval_seconds=0,
    )


@dataclass
class Billing:
    """A clean sandbox with the demo catalog, mirrored into plans, and an SDK client on it."""

    sandbox: SandboxServer
    stripe: stripe.StripeClient
    plans: dict[str, Plan]

    def plan_id(self, lookup_key: str) -> str:
        return to_global_id("Plan", self.plans[lookup_key].id)


@pytest.fixture
async def billing(
    stripe_sandbox: SandboxServer, settings: Settings, db: Database
) -> AsyncIterator[Billing]:
    async with httpx.AsyncClient(base_url=stripe_sandbox.url) as browser:
        await browser.post("/_sandbox/reset")  # the state and any injected faults
    async with sdk_client(stripe_sandbox.url) as client:
        await seed_catalog(client)
        await seed_promotions(client)
        async with db.session() as session, StripeApi(settings, stripe_sandbox.url) as api:
            await catalog.sync_plans(session=session, stripe=api)
        async with db.session() as session:
            rows = (await session.scalars(select(Plan))).all()
        listed = (await client.v1.prices.list_async()).data
        prices = {price.id: price.lookup_key for price in listed}
        yield Billing(stripe_sandbox, client, {prices[row.stripe_price_id]: row for row in rows})


@pytest.fixture
async def client(settings: Settings, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, database=db)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
        yield http


@pytest.fixture
def token_for(settings: Settings):
    def make(user_id: str, *, admin: bool = False, **claims: Any) -> str:
        return mint_token(settings, user_id=user_id, admin=admin, **claims)

    return make


async def graphql(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def error_codes(result: dict[str, Any]) -> list[str]:
    return [error.get("extensions", {}).get("code") for error in result.get("errors", [])]


async def _app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    # No lifespan: what these clients ask (pages, assets, public fields) needs no database,
    # and the one they are handed is unreachable (its port is discard's, closed here).
    database = Database("postgresql://u:p@127.0.0.1:9/db")
    transport = httpx.ASGITransport(app=create_app(settings, database=database))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client
    await database.dispose()


@pytest.fixture
async def dev_client() -> AsyncIterator[httpx.AsyncClient]:
    """The development app, its database unreachable."""
    async for client in _app_client(Settings(billing_env="development")):
        yield client


@pytest.fixture
async def production_client() -> AsyncIterator[httpx.AsyncClient]:
    """The production app (real-looking Stripe key and secrets), its database unreachable."""
    settings = Settings(
        billing_env="production",
        database_url="postgresql://u:p@localhost/db",
        jwt_secret="x" * 40,
        stripe_api_key="sk_test_123",
        stripe_publishable_key="pk_test_123",
        stripe_webhook_secrets="whsec_real_one",
    )
    async for client in _app_client(settings):
        yield client
