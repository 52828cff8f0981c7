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
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
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

from bench.support import free_port, require_wrk, scratch_database, wait_for, wrk_post  # noqa: E402
from db.database import Database  # noqa: E402
from gateway.settings import SANDBOX_WEBHOOK_SECRET, Settings  # noqa: E402
from sandbox.delivery import signature_header  # noqa: E402
from sandbox.store import fixture  # noqa: E402

RESEND_SHARE = 0.05
# The catalog's own events (seeded prices) are not part of the subscription/invoice mix.
SETUP_EVENTS = ("product.created", "price.created", "plan.created")
WARMUP_EVENTS = 200
BARE_INSERT = """
INSERT INTO stripe_events (stripe_event_id, type, api_version, livemode, stripe_created_at,
                           object_id, payload)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
ON CONFLICT (stripe_event_id) DO NOTHING RETURNING id
"""


def bare_app(database_url: str) -> Starlette:
    """Only what ingest cannot skip: verify, parse, insert once, answer."""
    pool: asyncpg.Pool

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal pool  # made before the first request: 32 of them at once would make 32
        async with asyncpg.create_pool(database_url, min_size=4, max_size=10) as pool:
            yield

    async def receive(request: Request) -> JSONResponse:
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

    routes = [Route("/webhooks/stripe", receive, methods=["POST"])]
    return Starlette(routes=routes, lifespan=lifespan)


def serve(kind: str, port: int, database_url: str, stripe_api_base: str | None) -> None:
    if kind == "sandbox":
        from sandbox.app import create_sandbox_app
        from sandbox.delivery import Deliverer
        from sandbox.store import Store

        store = Store(webhook_secret=SANDBOX_WEBHOOK_SECRET)
        # As Stripe does, several deliveries at once (the sandbox's default is one).
        app = create_sandbox_app(store, deliverer=Deliverer(store, concurrency=16))
    elif kind == "bare":
        url = make_url(database_url).set(drivername="postgresql")
        app = bare_app(
            url.render_as_string(hide_password=False).replace("postgresql://", "postgres://", 1)
        )
    else:
        from gateway.app import create_app

        settings = Settings(
            billing_env="test", database_url=database_url, stripe_api_base=stripe_api_base
        )
        app = create_app(settings, start_worker=kind == "gateway-worker")
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


def load(port: int, payloads: list[str], connections: int, seconds: int) -> dict[str, float]:
    """wrk posts the signed payloads (cycling) for `seconds`."""
    signed = [(signature_header(payload, SANDBOX_WEBHOOK_SECRET), payload) for payload in payloads]
    figures = wrk_post(
        port,
        "/webhooks/stripe",
        signed,
        header="Stripe-Signature",
        connections=connections,
        seconds=seconds,
    )
    return figures | {"events_per_second": figures["rps"]}


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


@asynccontextmanager
async def sandbox_stripe(database: Database) -> AsyncIterator[tuple[Any, str]]:
    """The sandbox as Stripe, in a process of its own, with the demo catalog mirrored: an
    SDK client on it and its address."""
    from sandbox.demo import seed_catalog
    from services import catalog
    from services.stripe.client import StripeApi

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", "sandbox", "--port", str(port)]
    )
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_for(port)
        async with StripeApi(Settings(billing_env="test", stripe_api_base=base), base) as api:
            await seed_catalog(api)
            async with database.session() as session:
                await catalog.sync_plans(session=session, stripe=api)
            yield api, base
    finally:
        process.terminate()
        process.wait()


async def processing_rates(
    database: Database, stripe_api: Any, args
) -> list[tuple[int, int, float, int, Counter]]:
    """One worker applies real subscription/invoice/payment events from the sandbox, once
    per concurrency; (concurrency, events, events/s, failed attempts, mix)."""
    from services.webhooks import inbox
    from services.webhooks.worker import WebhookWorker

    async with database.engine.begin() as conn:
        await conn.exec_driver_sql("TRUNCATE stripe_events")
    results = []
    for round_number, concurrency in enumerate((1, Settings().webhook_worker_concurrency)):
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
        mix = Counter(e["type"] for e in events)
        results.append((concurrency, count, rate, await failed_attempts(database), mix))
    return results


async def failed_attempts(database: Database) -> int:
    async with database.engine.connect() as conn:
        return await conn.scalar(text("SELECT coalesce(sum(attempts), 0) FROM stripe_events"))


async def pending_events(database: Database) -> int:
    async with database.engine.connect() as conn:
        return await conn.scalar(
            text("SELECT count(*) FROM stripe_events WHERE status = 'pending'")
        )


async def sustained_delivery(
    database: Database, url: str, stripe_api: Any, stripe_base: str, args, pace: float | None
) -> dict:
    """Customers subscribe for `args.sustain` seconds, `pace` a second (None: as fast as the
    sandbox takes them), while the sandbox delivers their events over HTTP to a gateway with
    its in-process worker; the inbox's pending count is sampled until it is empty."""
    async with database.engine.begin() as conn:
        await conn.exec_driver_sql("TRUNCATE stripe_events")
    port = free_port()
    gateway = subprocess.Popen(
        [sys.executable, __file__, "--serve", "gateway-worker", "--port", str(port),
         "--database-url", url, "--stripe-api-base", stripe_base]
    )  # fmt: skip
    try:
        await wait_for(port)
        endpoint = await stripe_api.v1.webhook_endpoints.create_async(
            {"url": f"http://127.0.0.1:{port}/webhooks/stripe", "enabled_events": ["*"]}
        )
        samples: list[int] = []  # while customers subscribe
        first = 2 * 10**6 if pace else 10**6
        subscribing = asyncio.create_task(
            subscribe_for(database, stripe_api, first, args.sustain, pace)
        )
        while not subscribing.done():
            samples.append(await pending_events(database))
            await asyncio.sleep(0.25)
        subscribers = await subscribing
        async with database.engine.connect() as conn:
            stopped_at = await conn.scalar(text("SELECT clock_timestamp()"))
            delivered = await conn.scalar(text("SELECT count(*) FROM stripe_events"))
        after: list[int] = [0]  # while the sandbox delivers what is left, until all is applied
        while (pending := await pending_events(database)) or await stored_since(database, 0.5):
            after.append(pending)
            await asyncio.sleep(0.25)
        async with database.engine.connect() as conn:
            stored, last_received, last_applied = (
                await conn.execute(
                    text("SELECT count(*), max(received_at), max(processed_at) FROM stripe_events")
                )
            ).one()
        await stripe_api.v1.webhook_endpoints.delete_async(endpoint.id)
    finally:
        gateway.terminate()
        gateway.wait()
    return {
        "subscribers": subscribers,
        "events": stored,
        "max_pending": max(samples, default=0),
        "median_pending": statistics.median(samples) if samples else 0,
        # The second half against the first: about 1 when the inbox stays flat.
        "first_half_pending": statistics.median(samples[: len(samples) // 2] or [0]),
        "second_half_pending": statistics.median(samples[len(samples) // 2 :] or [0]),
        "max_pending_after": max(after),
        "emptied_after": (last_applied - stopped_at).total_seconds(),
        "delivered_while_subscribing": delivered,
        "delivery_lag": (last_received - stopped_at).total_seconds(),
        "applied_lag": (last_applied - last_received).total_seconds(),
        "failed_attempts": await failed_attempts(database),
    }


async def subscribe_for(
    database: Database, stripe_api: Any, first: int, seconds: float, pace: float | None
) -> int:
    """Subscribe new customers, 8 at a time, for `seconds`, at most `pace` a second; how
    many subscribed."""
    started = time.perf_counter()
    count = 0
    while time.perf_counter() < started + seconds:
        await subscribe_customers(database, stripe_api, range(first + count, first + count + 8))
        count += 8
        if pace:
            await asyncio.sleep(max(0.0, started + count / pace - time.perf_counter()))
    return count


async def stored_since(database: Database, seconds: float) -> bool:
    """Whether an event arrived in the last `seconds` (the sandbox may still be delivering)."""
    async with database.engine.connect() as conn:
        return await conn.scalar(
            text("SELECT exists(SELECT 1 FROM stripe_events WHERE received_at > now() - "
                 "make_interval(secs => :seconds))"), {"seconds": seconds}
        )  # fmt: skip


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


async def main(args) -> None:
    require_wrk()
    runs: dict[str, list[dict[str, float]]] = {"bare": [], "gateway": []}
    async with scratch_database("ingest") as (database, url):
        url_text = url.render_as_string(hide_password=False)
        # Alternating rounds, medians reported: a busy machine slows both routes alike.
        for _ in range(args.rounds):
            for kind in runs:
                runs[kind].append(await measure(kind, url_text, database, args))
        async with sandbox_stripe(database) as (stripe_api, stripe_base):
            processing = await processing_rates(database, stripe_api, args)
            sustained = [
                await sustained_delivery(database, url_text, stripe_api, stripe_base, args, pace)
                for pace in (args.pace, None)
            ]
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
    for pace, run in zip((f"{args.pace:g} a second", "as fast as it goes"), sustained, strict=True):
        print(f"sustained, customers subscribing {pace}: {run['subscribers']} in {args.sustain} s "
              f"({run['events']} events, {run['events'] / args.sustain:.0f} a second); the "
              f"sandbox delivered {run['delivered_while_subscribing']} by the last subscription "
              f"and the last {run['delivery_lag']:.1f} s after it, over HTTP to a gateway with "
              f"its in-process worker; pending while subscribing: median "
              f"{run['median_pending']:.0f} (first half {run['first_half_pending']:.0f}, second "
              f"half {run['second_half_pending']:.0f}), most {run['max_pending']}; after: most "
              f"{run['max_pending_after']}, all applied {run['emptied_after']:.1f} s after the "
              f"last subscription, the last event {run['applied_lag']:.2f} s after it arrived; "
              f"{run['failed_attempts']} failed attempts")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=12000)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--subscribers", type=int, default=150)
    parser.add_argument("--sustain", type=int, default=10, help="seconds of sustained delivery")
    parser.add_argument("--pace", type=float, default=10, help="customers a second, paced run")
    parser.add_argument("--serve", choices=["bare", "gateway", "gateway-worker", "sandbox"])
    parser.add_argument("--stripe-api-base")
    parser.add_argument("--port", type=int)
    parser.add_argument("--database-url")
    arguments = parser.parse_args()
    if arguments.serve:
        serve(arguments.serve, arguments.port, arguments.database_url, arguments.stripe_api_base)
    else:
        uvloop.run(main(arguments))  # as `serve` runs the in-process worker
