"""`billing-gateway serve` as a user runs it: the console script in a subprocess on embedded
defaults (its own data directory, a free loopback port), for tests that talk to it with the
clients products run. Also: development tokens from `billing-gateway token`, billing activity
caused through the API as a signed-in customer, and crashes (SIGKILL) followed by a restart on
the same data directory and port."""

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from db.embedded import postmaster_pid

REPO_ROOT = Path(__file__).resolve().parent.parent
CONSOLE_SCRIPT = Path(sys.executable).parent / "billing-gateway"
# Guards against a hung start or stop, never measures of speed: a first start runs initdb
# for the embedded PostgreSQL, migrates and seeds the sandbox's catalog.
START_PATIENCE_SECONDS = 180.0
STOP_PATIENCE_SECONDS = 60.0
PATIENCE_SECONDS = 30.0

CREATE_SUBSCRIPTION = """
mutation ($input: CreateSubscriptionInput!) {
  createSubscription(input: $input) {
    subscription { id status plan { id } }
    userErrors { code field message }
  }
}
"""
ATTACH_PAYMENT_METHOD = """
mutation ($input: AttachPaymentMethodInput!) {
  attachPaymentMethod(input: $input) {
    paymentMethod { id }
    userErrors { code field message }
  }
}
"""
PLANS = "{ plans { id productName interval } }"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServedGateway:
    """A running `billing-gateway serve`; `env` and `args` are what it runs with."""

    url: str
    ws_url: str
    data_dir: Path
    process: asyncio.subprocess.Process
    env: dict[str, str]
    args: tuple[str, ...]
    log_path: Path

    @property
    def base_url(self) -> str:
        return self.url.removesuffix("/graphql")

    def output(self) -> str:
        """What the server has printed so far (stdout and stderr), across restarts; gone once
        stopped."""
        return self.log_path.read_text(errors="replace")

    async def kill(self) -> None:
        """A crash: SIGKILL, so nothing unwinds (what it started on its own, such as the
        embedded PostgreSQL, keeps running as a crash would leave it)."""
        if self.process.returncode is None:
            self.process.kill()
        async with asyncio.timeout(STOP_PATIENCE_SECONDS):
            await self.process.wait()

    async def restart(self) -> None:
        """`serve` again, with the same environment on the same data directory and port,
        ready (`/readyz` 200) on return; a running one is stopped first (SIGTERM)."""
        await stop_process(self.process)
        with self.log_path.open("ab") as log:
            log.write(b"\n--- billing-gateway serve restarted ---\n")
        self.process = await _launch(self.env, self.args, self.log_path)
        await _wait_ready(self)

    async def token(self, user: str, *, admin: bool = False) -> str:
        """A token minted by `billing-gateway token` with the server's own settings."""
        args = ["token", "--user", user] + (["--admin"] if admin else [])
        process = await asyncio.create_subprocess_exec(
            str(CONSOLE_SCRIPT),
            *args,
            env=self.env,
            cwd=REPO_ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(PATIENCE_SECONDS):
            out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        return out.decode().strip()

    async def execute(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        """One GraphQL POST; its data (fails on errors)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(timeout=PATIENCE_SECONDS) as client:
            response = await client.post(
                self.url, json={"query": query, "variables": variables or {}}, headers=headers
            )
        body = response.json()
        assert response.status_code == 200 and "errors" not in body, body
        return body["data"]

    async def plan_id(self, interval: str = "MONTH") -> str:
        plans = (await self.execute(PLANS))["plans"]
        return next(plan["id"] for plan in plans if plan["interval"] == interval)

    async def subscribe_customer(self, token: str, plan_id: str | None = None) -> dict[str, Any]:
        """Billing activity as the customer does it: a card attached, then a subscription
        bought with it (`plan_id`, by default the first monthly plan). The sandbox's webhooks
        then reach the worker, which publishes billing updates. Returns the new subscription
        (id, status, plan)."""
        attached = await self.execute(
            ATTACH_PAYMENT_METHOD,
            {"input": {"paymentMethodId": "pm_card_visa", "makeDefault": True}},
            token=token,
        )
        assert attached["attachPaymentMethod"]["userErrors"] == [], attached
        plan_id = plan_id or await self.plan_id()
        created = await self.execute(
            CREATE_SUBSCRIPTION, {"input": {"planId": plan_id}}, token=token
        )
        payload = created["createSubscription"]
        assert payload["userErrors"] == [], payload
        return payload["subscription"]


def _environment(data_dir: Path, port: int, extra: Mapping[str, str]) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        # The embedded defaults: no database, Stripe or origins inherited from the shell.
        if key not in {"DATABASE_URL", "STRIPE_API_KEY", "STRIPE_API_BASE", "CORS_ALLOWED_ORIGINS"}
    }
    env.update(
        BILLING_ENV="development",
        BILLING_DATA_DIR=str(data_dir),
        HOST="127.0.0.1",
        PORT=str(port),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


async def _wait_ready(gateway: ServedGateway) -> None:
    async with httpx.AsyncClient(timeout=5.0) as client:
        async with asyncio.timeout(START_PATIENCE_SECONDS):
            while True:
                if gateway.process.returncode is not None:
                    raise RuntimeError(
                        f"billing-gateway serve exited with {gateway.process.returncode}:\n"
                        + gateway.output()
                    )
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.get(f"{gateway.base_url}/readyz")
                    if response.status_code == 200:
                        return
                await asyncio.sleep(0.2)


async def stop_process(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(STOP_PATIENCE_SECONDS):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()


async def _launch(
    env: Mapping[str, str], args: Sequence[str], log_path: Path
) -> asyncio.subprocess.Process:
    """`billing-gateway serve` with `env` and `args`, its output appended to `log_path`."""
    with log_path.open("ab") as log:
        return await asyncio.create_subprocess_exec(
            str(CONSOLE_SCRIPT),
            "serve",
            *args,
            env=dict(env),
            cwd=REPO_ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )


@contextlib.asynccontextmanager
async def served(
    extra_env: Mapping[str, str] | None = None, args: Sequence[str] = ()
) -> AsyncIterator[ServedGateway]:
    """`billing-gateway serve` on a fresh data directory and a free port, ready (`/readyz`
    200) when entered, stopped with SIGTERM (SIGKILL after a while) on exit, whichever
    process (after `kill` and `restart`) runs by then. `extra_env` adds or overrides
    variables, e.g. CORS_ALLOWED_ORIGINS; `args` are serve's, e.g. --workers 2."""
    data_dir = Path(tempfile.mkdtemp(prefix="served-", dir=_data_root()))
    port = free_port()
    env = _environment(data_dir, port, extra_env or {})
    log_path = data_dir / "serve.log"
    log_path.write_bytes(b"")
    process = await _launch(env, args, log_path)
    gateway = ServedGateway(
        url=f"http://127.0.0.1:{port}/graphql",
        ws_url=f"ws://127.0.0.1:{port}/graphql",
        data_dir=data_dir,
        process=process,
        env=env,
        args=tuple(args),
        log_path=log_path,
    )
    try:
        await _wait_ready(gateway)
        yield gateway
    finally:
        await stop_process(gateway.process)
        await _stop_orphaned_postgres(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


async def _stop_orphaned_postgres(data_dir: Path) -> None:
    """The embedded PostgreSQL a killed `serve` left running (nobody else stops it), shut
    down (fast) before its data directory is deleted; a stopped serve stopped it already."""
    pgdata = data_dir / "postgres"
    pid = postmaster_pid(pgdata)
    try:
        if pid is None:
            return
        postmaster = psutil.Process(pid)
        if str(pgdata) not in " ".join(postmaster.cmdline()):
            return  # a stale pid file, its pid reused by someone else
        postmaster.send_signal(signal.SIGINT)
    except psutil.Error:
        return
    try:
        await asyncio.to_thread(postmaster.wait, STOP_PATIENCE_SECONDS)
    except psutil.TimeoutExpired:
        postmaster.kill()


def _data_root() -> Path:
    # Under the repo's .billing/ (ignored by git), beside the test suite's own data.
    root = REPO_ROOT / ".billing" / "served"
    root.mkdir(parents=True, exist_ok=True)
    return root
