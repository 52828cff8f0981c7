"""How `billing-gateway serve` runs: one process, or a supervisor and N replicas.

With `--workers N` the supervisor binds the socket and runs, once, what a process runs
beside HTTP (gateway/app.process_services: the embedded database, migrations, the offline
Stripe, the catalog's sync, the webhook and outbox workers, retention). It starts N replicas
of `serve` that accept on the socket it bound and reach its database and sandbox. Each
replica serves HTTP and websockets with its own LISTEN for live updates. What replicas
must agree on lives in PostgreSQL: the response cache's versions, the cost budgets and
the inbox. The supervisor starts a replica that dies again, stops them all on SIGTERM or
SIGINT, and they die with it (PR_SET_PDEATHSIG).
"""

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping

import uvicorn
import uvloop

from db.database import Database
from gateway.app import create_app, process_services
from gateway.live_ws import WS_PER_MESSAGE_DEFLATE
from gateway.settings import Settings
from services.stripe.client import StripeApi

log = logging.getLogger("billing_gateway.serving")

LISTEN_BACKLOG = 2048
# A replica that exits within this long of its start waits before the next, doubling.
QUICK_EXIT_SECONDS = 10.0
RESTART_DELAY_SECONDS = 0.5
MAX_RESTART_DELAY_SECONDS = 30.0
STOP_PATIENCE_SECONDS = 30.0
PR_SET_PDEATHSIG = 1


def serve_one(settings: Settings, *, migrate: bool, banner: str) -> None:
    """The app and everything beside it in this process."""
    app = create_app(
        settings,
        migrate=migrate,
        start_sandbox=_starts_sandbox(settings),
        sync_catalog=True,
        start_worker=settings.webhook_worker_in_process,
    )
    server = _http_server(app, settings)
    print(banner, flush=True)
    _run_until_stopped(server.serve())


def serve_replica(settings: Settings, socket_fd: int) -> None:
    """The app alone, accepting on the supervisor's socket, which it does not outlive."""
    _die_with_parent()
    app = create_app(settings)
    listener = socket.socket(fileno=socket_fd)
    _run_until_stopped(_http_server(app, settings).serve(sockets=[listener]))


def serve_replicas(settings: Settings, *, workers: int, migrate: bool, banner: str) -> None:
    """`workers` replicas on one socket, and once what they share."""
    listener = socket.create_server(
        (settings.host, settings.port), backlog=LISTEN_BACKLOG, reuse_port=False
    )
    listener.set_inheritable(True)
    with listener:
        uvloop.run(_supervise(settings, listener, workers=workers, migrate=migrate, banner=banner))


async def _supervise(
    settings: Settings, listener: socket.socket, *, workers: int, migrate: bool, banner: str
) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(stop_signal, stopping.set)
    async with process_services(
        settings,
        database=None,
        stripe=StripeApi(settings, settings.stripe_api_base),
        migrate=migrate,
        start_sandbox=_starts_sandbox(settings),
        sync_catalog=True,
        start_worker=settings.webhook_worker_in_process,
    ) as services:
        env = replica_environment(
            settings, services.database, services.stripe.api_base, workers=workers
        )
        command = [sys.executable, "-m", "gateway.cli", "serve", "--socket-fd"]
        command.append(str(listener.fileno()))
        replicas = [
            asyncio.create_task(_keep_running(number, command, env, listener, stopping))
            for number in range(1, workers + 1)
        ]
        print(banner + f"  Replicas: {workers} processes\n", flush=True)
        await asyncio.gather(*replicas)


def replica_environment(
    settings: Settings, database: Database, stripe_api_base: str | None, *, workers: int
) -> dict[str, str]:
    """This process's environment, pointed at the supervisor's database and Stripe, with no
    worker of its own and an equal share of the connections one process would open."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database.url.render_as_string(hide_password=False),
        WEBHOOK_WORKER_IN_PROCESS="false",
        DATABASE_POOL_SIZE=str(max(1, settings.database_pool_size // workers)),
        HOST=settings.host,
        PORT=str(settings.port),
    )
    if stripe_api_base is not None:
        env["STRIPE_API_BASE"] = stripe_api_base
    return env


async def _keep_running(
    number: int,
    command: list[str],
    env: Mapping[str, str],
    listener: socket.socket,
    stopping: asyncio.Event,
) -> None:
    """Replica `number`, started again whenever it exits, until `stopping`."""
    delay = RESTART_DELAY_SECONDS
    while not stopping.is_set():
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            *command, env=dict(env), pass_fds=(listener.fileno(),), stdin=asyncio.subprocess.DEVNULL
        )
        exited = asyncio.create_task(process.wait())
        stop = asyncio.create_task(stopping.wait())
        await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
        if stopping.is_set():
            exited.cancel()
            await _stop(process)
            return
        stop.cancel()
        log.warning(
            "replica %d (pid %d) exited with %s; starting it again",
            number,
            process.pid,
            process.returncode,
        )
        quick = time.monotonic() - started < QUICK_EXIT_SECONDS
        delay = min(delay * 2, MAX_RESTART_DELAY_SECONDS) if quick else RESTART_DELAY_SECONDS
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), delay)


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM (the replica finishes its requests and closes its connections), then SIGKILL."""
    if process.returncode is None:
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_PATIENCE_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()


def _starts_sandbox(settings: Settings) -> bool:
    return settings.uses_sandbox and settings.stripe_api_base is None


def _http_server(app, settings: Settings) -> uvicorn.Server:
    # Logging is configured already (cli.main); the middleware logs each request, with its id.
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        ws_per_message_deflate=WS_PER_MESSAGE_DEFLATE,
    )
    return uvicorn.Server(config)


def _run_until_stopped(serving) -> None:
    # uvicorn re-raises the signal that stopped it; SIGTERM must unwind like Ctrl-C so that
    # the lifespan closes (the embedded database stopped, connections closed) on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serving)  # uvicorn.run would pick uvloop too


def _die_with_parent() -> None:
    """SIGTERM this process when its parent exits, even by SIGKILL (Linux; elsewhere the
    supervisor's stop is the only one)."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
