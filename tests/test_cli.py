"""The `billing-gateway` command, run as a user runs it: as a separate process."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import jwt
import pytest
from sqlalchemy import select, text

from db.database import Database
from db.migrate import head_revision
from db.models import Account
from gateway.auth import TokenVerifier
from gateway.settings import Settings
from tests.conftest import create_scratch_database, drop_database
from tests.credits.support import grant, new_account

COMMAND = str(Path(sys.executable).parent / "billing-gateway")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMMAND, *args], capture_output=True, text=True, timeout=120, env=os.environ | (env or {})
    )


@pytest.fixture
async def scratch_database_url():
    url = await create_scratch_database("billing_cli")
    yield url
    await drop_database(url)


def test_token_prints_a_token_the_gateway_accepts(settings: Settings):
    result = run("token", "--user", "alice", "--admin", "--ttl", "120", env={"BILLING_ENV": "test"})
    assert result.returncode == 0, result.stderr
    principal = TokenVerifier(settings).verify(result.stdout.strip())
    assert principal.user_id == "alice" and principal.is_admin
    claims = jwt.decode(result.stdout.strip(), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 120


def test_token_is_refused_in_production():
    env = {
        "BILLING_ENV": "production",
        "DATABASE_URL": "postgresql://u:p@db/billing",
        "JWT_SECRET": "s" * 40,
        "STRIPE_API_KEY": "sk_live_x",
        "STRIPE_PUBLISHABLE_KEY": "pk_live_x",
        "STRIPE_WEBHOOK_SECRETS": "whsec_live",
    }
    result = run("token", "--user", "alice", env=env)
    assert result.returncode == 2 and "production" in result.stderr and result.stdout == ""


def test_production_with_a_default_secret_refuses_to_start():
    result = run(
        "serve", env={"BILLING_ENV": "production", "DATABASE_URL": "postgresql://u:p@db/b"}
    )
    assert result.returncode == 2
    assert "JWT_SECRET" in result.stderr


def test_serve_refuses_fewer_than_one_worker():
    result = run("serve", "--workers", "0", env={"BILLING_ENV": "test"})
    assert result.returncode == 2 and "--workers must be at least 1" in result.stderr


def test_serve_exits_non_zero_when_the_database_cannot_be_reached():
    result = run(
        "serve",
        "--port",
        str(free_port()),
        env={"DATABASE_URL": "postgresql://u:p@127.0.0.1:1/none"},
    )
    assert result.returncode != 0
    assert "ConnectionRefusedError" in result.stderr
    assert "Application startup failed" in result.stderr


async def test_migrate_brings_an_empty_database_to_head_and_back(scratch_database_url):
    env = {"DATABASE_URL": scratch_database_url.render_as_string(hide_password=False)}
    up = await asyncio.to_thread(run, "migrate", env=env)
    assert up.returncode == 0, up.stderr
    assert f"database at revision {head_revision()}" in up.stdout
    down = await asyncio.to_thread(run, "migrate", "--down-to", "base", env=env)
    assert down.returncode == 0, down.stderr
    assert "database at revision None" in down.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_until_ready(url: str, process: subprocess.Popen) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            assert process.poll() is None, process.stdout.read()
            try:
                response = await client.get(url)
                if response.status_code == 200:
                    return response
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the gateway did not become ready in 30 s")


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
async def test_serve_migrates_then_serves_graphql_with_a_banner(
    scratch_database_url, stop_signal, tmp_path
):
    port = free_port()
    env = os.environ | {
        "DATABASE_URL": scratch_database_url.render_as_string(hide_password=False),
        "BILLING_DATA_DIR": str(tmp_path),
    }
    process = subprocess.Popen(
        [COMMAND, "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        ready = await wait_until_ready(f"http://127.0.0.1:{port}/readyz", process)
        assert ready.json()["revision"] == head_revision()
        async with httpx.AsyncClient() as client:
            page = await client.get(
                f"http://127.0.0.1:{port}/graphql", headers={"accept": "text/html"}
            )
            answer = await client.post(
                f"http://127.0.0.1:{port}/graphql",
                json={"query": "{ billingConfig { sandbox } plans { productName credits } }"},
            )
        assert page.status_code == 200 and "graphiql" in page.text.lower()
        data = answer.json()["data"]
        assert data["billingConfig"] == {"sandbox": True}
        # The seeded sandbox catalog was mirrored into plans at start.
        assert [plan["productName"] for plan in data["plans"]] == [
            "Starter",
            "Pro",
            "Starter",
            "Pro",
        ]
    finally:
        process.send_signal(stop_signal)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "Traceback" not in output
    assert f"http://127.0.0.1:{port}/graphql" in output
    assert "billing-gateway token --user" in output
    assert "OFFLINE SANDBOX at http://127.0.0.1:" in output
    sandbox_state = json.loads((tmp_path / "sandbox-state.json").read_text())["objects"]
    endpoints = [o for o in sandbox_state.values() if o["object"] == "webhook_endpoint"]
    assert [e["url"] for e in endpoints] == [f"http://127.0.0.1:{port}/webhooks/stripe"]
    prices = [o for o in sandbox_state.values() if o["object"] == "price"]
    assert sorted(p["lookup_key"] for p in prices) == [
        "pro_monthly",
        "pro_yearly",
        "starter_monthly",
        "starter_yearly",
    ]
    assert all(int(p["metadata"]["credits"]) > 0 for p in prices)
    database = Database(scratch_database_url, pool_size=1)
    try:
        async with database.engine.connect() as conn:
            assert (
                await conn.scalar(text("SELECT version_num FROM alembic_version"))
                == head_revision()
            )
    finally:
        await database.dispose()


async def test_the_sandbox_command_serves_stripe_to_the_sdk(tmp_path):
    import stripe

    port = free_port()
    state_file = tmp_path / "state.json"
    process = subprocess.Popen(
        [COMMAND, "sandbox", "--port", str(port), "--state-file", str(state_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        client = stripe.StripeClient(
            "sk_test_cli",
            base_addresses={"api": f"http://127.0.0.1:{port}"},
            http_client=stripe.HTTPXClient(),
            max_network_retries=0,
        )
        for _ in range(100):
            try:
                customer = await client.v1.customers.create_async({"email": "cli@example.com"})
                break
            except stripe.APIConnectionError:
                assert process.poll() is None, process.stdout.read()
                await asyncio.sleep(0.1)
        assert customer.id.startswith("cus_")
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert "OFFLINE STRIPE SANDBOX" in output
    saved = json.loads(state_file.read_text())["objects"]
    assert saved[customer.id]["email"] == "cli@example.com"


async def test_sync_plans_mirrors_the_stripe_catalog(scratch_database_url, stripe_sandbox):
    from sandbox.demo import sdk_client, seed_catalog

    stripe_sandbox.store.reset()
    async with sdk_client(stripe_sandbox.url) as client:
        await seed_catalog(client)
    env = {
        "DATABASE_URL": scratch_database_url.render_as_string(hide_password=False),
        "STRIPE_API_BASE": stripe_sandbox.url,
    }
    assert (await asyncio.to_thread(run, "migrate", env=env)).returncode == 0
    synced = await asyncio.to_thread(run, "sync", "plans", env=env)
    assert synced.returncode == 0, synced.stderr
    assert "synced 4 prices" in synced.stdout
    database = Database(scratch_database_url, pool_size=1)
    try:
        async with database.engine.connect() as conn:
            rows = (
                await conn.execute(text("SELECT product_name, credits FROM plans ORDER BY amount"))
            ).all()
    finally:
        await database.dispose()
    assert rows == [("Starter", 100), ("Pro", 1000), ("Starter", 1200), ("Pro", 12000)]


async def test_sync_plans_says_when_stripe_is_unreachable(scratch_database_url):
    env = {
        "DATABASE_URL": scratch_database_url.render_as_string(hide_password=False),
        "STRIPE_API_BASE": "http://127.0.0.1:9",
    }
    result = await asyncio.to_thread(run, "sync", "plans", env=env)
    assert result.returncode == 1 and "Stripe is unavailable" in result.stderr


async def test_sync_repairs_accounts_and_fetches_missing_events(
    scratch_database_url, stripe_sandbox
):
    from sandbox.demo import sdk_client, seed_catalog

    async with httpx.AsyncClient(base_url=stripe_sandbox.url) as browser:
        await browser.post("/_sandbox/reset")
    async with sdk_client(stripe_sandbox.url) as client:
        await seed_catalog(client)
        customer = await client.v1.customers.create_async({"email": "sync@example.com"})
    env = {
        "DATABASE_URL": scratch_database_url.render_as_string(hide_password=False),
        "STRIPE_API_BASE": stripe_sandbox.url,
    }
    assert (await asyncio.to_thread(run, "migrate", env=env)).returncode == 0
    database = Database(scratch_database_url, pool_size=1)
    try:
        async with database.engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO accounts (user_id, stripe_customer_id) VALUES ('u1', :c)"),
                {"c": customer.id},
            )
        accounts = await asyncio.to_thread(run, "sync", env=env)
        events = await asyncio.to_thread(run, "sync", "--events", env=env)
        async with database.engine.connect() as conn:
            email = await conn.scalar(select(Account.email).where(Account.user_id == "u1"))
            stored = await conn.scalar(text("SELECT count(*) FROM stripe_events"))
    finally:
        await database.dispose()
    assert accounts.returncode == 0 and "resynced 1 accounts" in accounts.stdout
    assert events.returncode == 0 and "missing events" in events.stdout
    assert email == "sync@example.com"
    assert stored > 0


async def test_credits_verify_exits_non_zero_listing_each_wallet_off_its_ledger(db):
    env = {"DATABASE_URL": db.url.render_as_string(hide_password=False)}
    honest, tampered = await new_account(db, "honest"), await new_account(db, "tampered")
    await grant(db, honest.id, 50, "in_1")
    await grant(db, tampered.id, 70, "in_2")

    clean = await asyncio.to_thread(run, "credits", "verify", env=env)
    # The trigger guards the entries, not the balance: change it behind the ledger's back.
    async with db.session() as session, session.begin():
        await session.execute(
            text("UPDATE credit_accounts SET balance = balance + 5 WHERE account_id = :id"),
            {"id": tampered.id},
        )
    found = await asyncio.to_thread(run, "credits", "verify", env=env)

    assert clean.returncode == 0 and clean.stdout == "", clean.stderr
    assert found.returncode == 1
    assert found.stdout.splitlines() == [
        f"account {tampered.id}\tuser=tampered\tbalance=75\tledger=70"
    ]
    assert "1 wallet(s)" in found.stderr


def test_the_worker_command_refuses_a_concurrency_below_one():
    result = run("worker", "--concurrency", "0", env={"BILLING_ENV": "test"})
    assert result.returncode != 0 and "--concurrency" in result.stderr


async def test_commands_reach_the_sandbox_serve_runs_and_it_keeps_its_address(
    scratch_database_url, tmp_path
):
    env = {
        "DATABASE_URL": scratch_database_url.render_as_string(hide_password=False),
        "BILLING_DATA_DIR": str(tmp_path),
    }
    addresses = []
    for _ in range(2):  # serve, and serve again after a stop
        port = free_port()
        process = subprocess.Popen(
            [COMMAND, "serve", "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=os.environ | env,
        )
        try:
            await wait_until_ready(f"http://127.0.0.1:{port}/readyz", process)
            addresses.append((tmp_path / "sandbox-url").read_text())
            synced = await asyncio.to_thread(run, "sync", "--events", env=env)
        finally:
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=30)
        assert process.returncode == 0, output
        assert synced.returncode == 0, synced.stderr
        assert synced.stdout.startswith("stored ") and "missing events" in synced.stdout
        assert f"OFFLINE SANDBOX at {addresses[-1]}" in output
    assert addresses[0] == addresses[1] and addresses[0].startswith("http://127.0.0.1:")
