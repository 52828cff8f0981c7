"""Webhook ingest: the gateway's POST /webhooks/stripe against a bare route that does only
the same signature check and ON CONFLICT insert, in the same run on the same machine.

Each server runs alone under uvicorn (1 worker); wrk (one thread, 32 connections) posts
pre-signed events, 5% of them re-sends. Then one gateway worker drains what the gateway
stored. wrk is Debian's `wrk` package; Python clients top out near 400 requests/s here,
which would measure the client, not the servers.

    python bench/webhook_ingest.py [--events 12000] [--seconds 3] [--connections 32]
"""

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import stripe
import uvicorn
from sqlalchemy import make_url
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from db.database import Database, create_database_if_missing  # noqa: E402
from db.embedded import start_embedded_postgres  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from gateway.settings import SANDBOX_WEBHOOK_SECRET, Settings  # noqa: E402
from sandbox.delivery import signature_header  # noqa: E402
from sandbox.store import fixture  # noqa: E402

RESEND_SHARE = 0.05
WARMUP_EVENTS = 200
BARE_INSERT = """
INSERT INTO stripe_events (stripe_event_id, type, api_version, livemode, stripe_created_at,
                           object_id, payload)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
ON CONFLICT (stripe_event_id) DO NOTHING RETURNING id
"""


def bare_app(database_url: str) -> Starlette:
    """Only what ingest cannot skip: verify, parse, insert once, answer."""
    pool: asyncpg.Pool | None = None

    async def receive(request: Request) -> JSONResponse:
        nonlocal pool
        if pool is None:
            pool = await asyncpg.create_pool(database_url, min_size=4, max_size=10)
        payload = (await request.body()).decode()
        try:
            stripe.WebhookSignature.verify_header(
                payload, request.headers.get("stripe-signature"), SANDBOX_WEBHOOK_SECRET, 300
            )
        except stripe.SignatureVerificationError:
            return JSONResponse({"received": False}, status_code=400)
        event = json.loads(payload)
        obj = event["data"]["object"]
        created = datetime.fromtimestamp(event["created"], UTC)
        new_id = await pool.fetchval(
            BARE_INSERT, event["id"], event["type"], event.get("api_version"),
            bool(event.get("livemode")), created, obj.get("id"), payload,
        )  # fmt: skip
        return JSONResponse({"received": True, "duplicate": new_id is None})

    return Starlette(routes=[Route("/webhooks/stripe", receive, methods=["POST"])])


def serve(kind: str, port: int, database_url: str) -> None:
    if kind == "bare":
        url = make_url(database_url).set(drivername="postgresql")
        app = bare_app(
            url.render_as_string(hide_password=False).replace("postgresql://", "postgres://", 1)
        )
    else:
        from gateway.app import create_app

        settings = Settings(billing_env="test", database_url=database_url)
        app = create_app(settings)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def make_events(count: int) -> list[str]:
    """Signed payloads: subscription events of a realistic size, 5% of them sent twice."""
    subscription = fixture("subscription")
    now = int(time.time())
    events = []
    for n in range(count):
        event = {
            "id": f"evt_bench_{n:08d}",
            "object": "event",
            "api_version": stripe.api_version,
            "created": now,
            "livemode": False,
            "type": "customer.subscription.updated",
            "data": {"object": subscription | {"id": f"sub_bench_{n % 500}"}},
        }
        events.append(json.dumps(event))
    resends = random.Random(7).sample(events, int(count * RESEND_SHARE))
    return events + resends


WRK_SCRIPT = """
local requests = {}
local index = 0
init = function(args)
  local signature = nil
  for line in io.lines(args[1]) do
    if signature == nil then
      signature = line
    else
      table.insert(requests, wrk.format("POST", "/webhooks/stripe",
        {["Stripe-Signature"] = signature, ["Content-Type"] = "application/json"}, line))
      signature = nil
    end
  end
end
request = function()
  index = index % #requests + 1
  return requests[index]
end
"""


def load(port: int, payloads: list[str], connections: int, seconds: int) -> dict[str, float]:
    """wrk posts the payloads (cycling) for `seconds`; its requests/s and latency quantiles."""
    work = Path(f"/tmp/bench_ingest_{os.getpid()}")
    work.mkdir(exist_ok=True)
    script, requests = work / "post.lua", work / "requests.txt"
    script.write_text(WRK_SCRIPT)
    with requests.open("w") as out:
        for payload in payloads:
            out.write(signature_header(payload, SANDBOX_WEBHOOK_SECRET) + "\n" + payload + "\n")
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
               f"http://127.0.0.1:{port}", "--", str(requests)]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert "Non-2xx" not in output, output
    return {
        "events_per_second": float(output.split("Requests/sec:")[1].split()[0]),
        "p50_ms": _latency(output, "50%"),
        "p99_ms": _latency(output, "99%"),
    }


def _latency(output: str, quantile: str) -> float:
    value = output.split(f" {quantile}")[1].split()[0]
    for unit, factor in (("ms", 1.0), ("us", 0.001), ("s", 1000.0)):
        if value.endswith(unit):
            return float(value[: -len(unit)]) * factor
    raise ValueError(value)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_for(port: int) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                await client.post(f"http://127.0.0.1:{port}/webhooks/stripe", content="{}")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise RuntimeError("the server did not start")


async def measure(kind: str, url: str, database: Database, args) -> dict[str, float]:
    async with database.engine.begin() as conn:
        await conn.exec_driver_sql("TRUNCATE stripe_events")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--port", str(port), "--database-url", url]
    )
    try:
        await wait_for(port)
        warmup = [e.replace("evt_bench", f"evt_warm_{kind}") for e in make_events(WARMUP_EVENTS)]
        await asyncio.to_thread(load, port, warmup, args.connections, 1)
        events = make_events(args.events)
        return await asyncio.to_thread(load, port, events, args.connections, args.seconds)
    finally:
        process.terminate()
        process.wait()


async def processing_rate(database: Database) -> tuple[int, float]:
    """One gateway worker drains the inbox the gateway filled; (events, events per second)."""
    from services.stripe.client import StripeApi
    from services.webhooks.worker import worker_for

    settings = Settings(billing_env="test")
    worker = worker_for(database=database, stripe=StripeApi(settings, None), settings=settings)
    started = time.perf_counter()
    count = await worker.drain()
    return count, count / (time.perf_counter() - started)


async def main(args) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("this benchmark drives the servers with wrk: apt-get install wrk")
    server = start_embedded_postgres(ROOT / ".billing" / "bench")
    name = f"bench_ingest_{os.getpid()}"
    await create_database_if_missing(server, name)
    url = server.set(database=name)
    database = Database(url, pool_size=4)
    await upgrade(database.engine)
    url_text = url.render_as_string(hide_password=False)
    try:
        bare = await measure("bare", url_text, database, args)
        gateway = await measure("gateway", url_text, database, args)
        processed, rate = await processing_rate(database)
    finally:
        await database.dispose()
    print(f"{args.events} events (+{int(args.events * RESEND_SHARE)} re-sends) cycled for "
          f"{args.seconds} s, wrk 1 thread x {args.connections} connections, "
          f"1 uvicorn worker each")  # fmt: skip
    for label, figures in (("bare route", bare), ("gateway", gateway)):
        print(f"{label:>10}: {figures['events_per_second']:7.0f} events/s  "
              f"p50 {figures['p50_ms']:6.1f} ms  p99 {figures['p99_ms']:6.1f} ms")  # fmt: skip
    ratio = gateway["events_per_second"] / bare["events_per_second"]
    print(f"gateway / bare: {ratio:.2f} (target >= 0.80); gateway p99 target <= 50 ms")
    print(f"processing: one worker applied {processed} events at {rate:.0f} events/s "
          f"(unknown customers: handler is a lookup and a no-op)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=12000)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--serve", choices=["bare", "gateway"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--database-url")
    arguments = parser.parse_args()
    if arguments.serve:
        serve(arguments.serve, arguments.port, arguments.database_url)
    else:
        asyncio.run(main(arguments))
