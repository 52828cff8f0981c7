"""What the benchmarks share: a database of their own, a free port, waiting for a server to
listen, and wrk posting prepared requests (Debian's `wrk`: Python clients top out near 400
requests/s here, which would measure the client, not the server)."""

import asyncio
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from sqlalchemy import URL
from sqlalchemy.ext.asyncio import create_async_engine

from db import sealed
from db.database import Database, create_database_if_missing
from db.embedded import start_embedded_postgres
from db.migrate import upgrade

ROOT = Path(__file__).resolve().parents[1]

# One data key per run, in the environment, so the servers a benchmark starts seal and open
# personal data as it does.
os.environ.setdefault("DATA_ENCRYPTION_KEYS", sealed.new_key_text("bench"))
sealed.install(sealed.Keyring.parse(os.environ["DATA_ENCRYPTION_KEYS"]))

WRK_SCRIPT = """
local requests = {}
local index = 0
init = function(args)
  local path, header, value = args[2], args[3], nil
  for line in io.lines(args[1]) do
    if value == nil then
      value = line
    else
      table.insert(requests, wrk.format("POST", path,
        {[header] = value, ["Content-Type"] = "application/json"}, line))
      value = nil
    end
  end
end
request = function()
  index = index % #requests + 1
  return requests[index]
end
"""


@asynccontextmanager
async def scratch_database(
    name: str, *, pool_size: int = 20
) -> AsyncIterator[tuple[Database, URL]]:
    """A migrated database for one run (`bench_<name>_<pid>` on the embedded server under
    .billing/bench), dropped afterwards: a seeded one takes about 50 MB."""
    server = start_embedded_postgres(ROOT / ".billing" / "bench")
    database_name = f"bench_{name}_{os.getpid()}"
    await create_database_if_missing(server, database_name)
    url = server.set(database=database_name)
    database = Database(url, pool_size=pool_size)
    try:
        await upgrade(database.engine)
        yield database, url
    finally:
        await database.dispose()
        engine = create_async_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.exec_driver_sql(
                    f'DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)'
                )
        finally:
            await engine.dispose()


def require_wrk() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("this benchmark drives the servers with wrk: apt-get install wrk")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_for(port: int) -> None:
    """Until the server on `port` answers anything."""
    async with httpx.AsyncClient() as client:
        for _ in range(400):
            try:
                await client.get(f"http://127.0.0.1:{port}/")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise RuntimeError("the server did not start")


def wrk_post(
    port: int,
    path: str,
    requests: list[tuple[str, str]],
    *,
    header: str,
    connections: int,
    seconds: int,
) -> dict[str, float]:
    """wrk posts the (header value, JSON body) requests in turn to `path` for `seconds`;
    the requests made, requests/s and latency quantiles. Any non-2xx answer is an error."""
    work = Path(f"/tmp/bench_wrk_{os.getpid()}")
    work.mkdir(exist_ok=True)
    script, listing = work / "post.lua", work / "requests.txt"
    script.write_text(WRK_SCRIPT)
    listing.write_text("".join(f"{value}\n{body}\n" for value, body in requests))
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "--latency",
               "-s", str(script), f"http://127.0.0.1:{port}", "--", str(listing), path, header]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert "Non-2xx" not in output, output
    return {
        "requests": int(output.split(" requests in ")[0].split()[-1]),
        "rps": float(output.split("Requests/sec:")[1].split()[0]),
        "p50_ms": _latency(output, "50%"),
        "p99_ms": _latency(output, "99%"),
    }


def _latency(output: str, quantile: str) -> float:
    value = output.split(f" {quantile}")[1].split()[0]
    for unit, factor in (("ms", 1.0), ("us", 0.001), ("s", 1000.0)):
        if value.endswith(unit):
            return float(value[: -len(unit)]) * factor
    raise ValueError(value)
