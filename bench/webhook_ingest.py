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
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import stripe
import uvicorn
import uvloop
from sqlalchemy import make_url, select, text
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
# The catalog's own events (seeded prices) are not part of the subscription/invoice mix.
SETUP_EVENTS = ("product.created", "price.created")
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
    if kind == "sandbox":
        from sandbox.app import create_sandbox_app
        from sandbox.store import Store

        app = create_sandbox_app(Store(webhook_secret=SANDBOX_WEBHOOK_SECRET))
    elif kind == "bare":
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
        "requests": int(output.split(" requests in ")[0].split()[-1]),
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
        server = psutil.Process(process.pid)
        cpu_before = sum(server.cpu_times()[:2])
        figures = await asyncio.to_thread(load, port, events, args.connections, args.seconds)
        cpu_seconds = sum(server.cpu_times()[:2]) - cpu_before
        # Server CPU per event: what the route costs, whatever else runs on the machine.
        return figures | {"cpu_ms_per_event": 1000 * cpu_seconds / figures["requests"]}
    finally:
        process.terminate()
        process.wait()


async def subscribe_customers(database: Database, stripe_api: Any, numbers: range) -> None:
    """New subscribers as the product makes them: account, card attached, subscribed, paid."""
    from db.models import Account, Plan

    async with database.session() as session:
        prices = list(await session.scalars(select(Plan.stripe_price_id).order_by(Plan.id)))

    async def subscriber(n: int) -> None:
        customer = await stripe_api.v1.customers.create_async({"email": f"bench{n}@x.test"})
        async with database.session() as session, session.begin():
            session.add(Account(user_id=f"bench-{n}", stripe_customer_id=customer.id))
        method = await stripe_api.attach_payment_method(
            payment_method_id="pm_card_visa", customer_id=customer.id, idempotency_key=f"pm{n}"
        )
        await stripe_api.create_subscription(
            customer_id=customer.id,
            price_id=prices[n % len(prices)],
            quantity=1 + n % 3,
            payment_method_id=method.id,
            trial_days=None,
            idempotency_key=f"sub{n}",
        )

    for start in range(numbers.start, numbers.stop, 8):
        await asyncio.gather(*(subscriber(n) for n in range(start, min(start + 8, numbers.stop))))


async def processing_rates(database: Database, args) -> list[tuple[int, int, float, int, Counter]]:
    """One worker applies real subscription/invoice/payment events from the sandbox (run as
    Stripe in a process of its own), once per concurrency; (concurrency, events, events/s, mix)."""
    from sandbox.demo import seed_catalog
    from services import catalog
    from services.stripe.client import StripeApi
    from services.webhooks import inbox
    from services.webhooks.worker import WebhookWorker

    async with database.engine.begin() as conn:
        await conn.exec_driver_sql("TRUNCATE stripe_events")
    port = free_port()
    sandbox = subprocess.Popen(
        [sys.executable, __file__, "--serve", "sandbox", "--port", str(port)]
    )
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_for(port)
        settings = Settings(billing_env="test", stripe_api_base=base)
        stripe_api = StripeApi(settings, base)
        await seed_catalog(stripe_api)
        async with database.session() as session:
            await catalog.sync_plans(session=session, stripe=stripe_api)
        results = []
        for round_number, concurrency in enumerate((1, settings.webhook_worker_concurrency)):
            since = int(time.time()) - 1
            first = round_number * args.subscribers
            await subscribe_customers(database, stripe_api, range(first, first + args.subscribers))
            events = [e for e in await stripe_api.list_events(created_gte=since)
                      if e["type"] not in SETUP_EVENTS]  # fmt: skip
            for event in reversed(events):
                await inbox.store_event(database=database, event=event, payload=json.dumps(event))
            worker = WebhookWorker(
                database=database, stripe=stripe_api, policy=inbox.RetryPolicy(),
                concurrency=concurrency, listen=False,
            )  # fmt: skip
            started = time.perf_counter()
            count = await worker.drain()
            rate = count / (time.perf_counter() - started)
            async with database.engine.connect() as conn:
                retried = await conn.scalar(text("SELECT sum(attempts) FROM stripe_events"))
            mix = Counter(e["type"] for e in events)
            results.append((concurrency, count, rate, retried, mix))
        return results
    finally:
        sandbox.terminate()
        sandbox.wait()


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


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
    runs: dict[str, list[dict[str, float]]] = {"bare": [], "gateway": []}
    try:
        # Alternating rounds, medians reported: a busy machine slows both routes alike.
        for _ in range(args.rounds):
            for kind in runs:
                runs[kind].append(await measure(kind, url_text, database, args))
        processing = await processing_rates(database, args)
    finally:
        await database.dispose()
    print(f"{args.events} events (+{int(args.events * RESEND_SHARE)} re-sends) cycled for "
          f"{args.seconds} s, wrk 1 thread x {args.connections} connections, "
          f"1 uvicorn worker each; medians of {args.rounds} alternating rounds")  # fmt: skip
    for kind, label in (("bare", "bare route"), ("gateway", "gateway")):
        print(f"{label:>10}: {median(runs[kind], 'events_per_second'):7.0f} events/s  "
              f"p50 {median(runs[kind], 'p50_ms'):6.1f} ms  "
              f"p99 {median(runs[kind], 'p99_ms'):6.1f} ms  "
              f"server CPU {median(runs[kind], 'cpu_ms_per_event'):5.3f} ms/event")  # fmt: skip
    ratios = [
        g["events_per_second"] / b["events_per_second"]
        for b, g in zip(runs["bare"], runs["gateway"], strict=True)
    ]
    print(f"gateway / bare: {statistics.median(ratios):.2f} (rounds: "
          f"{', '.join(f'{r:.2f}' for r in ratios)}; target >= 0.80); "
          f"gateway p99 target <= 50 ms")  # fmt: skip
    for concurrency, count, rate, retried, _ in processing:
        print(f"processing: one worker, {concurrency} at a time, applied {count} sandbox events "
              f"at {rate:.0f} events/s ({retried} failed attempts so far)")  # fmt: skip
    mix = processing[-1][4]
    print("  event mix: " + ", ".join(f"{kind} {n}" for kind, n in mix.most_common()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=12000)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--subscribers", type=int, default=150)
    parser.add_argument("--serve", choices=["bare", "gateway", "sandbox"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--database-url")
    arguments = parser.parse_args()
    if arguments.serve:
        serve(arguments.serve, arguments.port, arguments.database_url)
    else:
        uvloop.run(main(arguments))  # as `serve` runs the in-process worker
