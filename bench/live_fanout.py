"""Live fan-out: 1,000 idle `billingUpdates` subscribers of one customer plus 1,000 of other
customers on one gateway; time from a webhook being accepted (its 200) to each matching
subscriber receiving the update, and server memory per connection. Beside it, in the same
run, a bare Starlette websocket broadcast of the same size: the same 2,000 sockets, a POST
that answers at once and then sends a message of the same size to the 1,000 matching ones.

Each server runs alone under uvicorn (1 worker) in its own process; the clients run in this
process. Delays are also given from the POST leaving the client (so the accept itself is
included); the bare route answers before it broadcasts, so its delays from the 200 can be
near zero. Memory per connection is the server's RSS growth (psutil) from before the first
socket to after all are subscribed and one update was delivered, over the socket count.

    python bench/live_fanout.py [--matching 1000] [--others 1000] [--rounds 20]
"""

import argparse
import asyncio
import contextlib
import itertools
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import stripe
import uvicorn
import websockets
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.support import free_port, scratch_database, wait_for  # noqa: E402
from db.database import Database  # noqa: E402
from gateway.auth import mint_token  # noqa: E402
from gateway.live_ws import WS_PER_MESSAGE_DEFLATE  # noqa: E402
from gateway.settings import SANDBOX_WEBHOOK_SECRET, Settings  # noqa: E402
from sandbox.delivery import signature_header  # noqa: E402
from sandbox.store import fixture  # noqa: E402

HOT_USER = "bench-hot"
HOT_CUSTOMER = "cus_bench_hot"
OTHER_CUSTOMERS = 100  # the non-matching subscribers are spread over this many customers
SUBSCRIPTION = """
subscription {
  billingUpdates {
    kind occurredAt creditBalance
    transaction { id status description amount { amount currency formatted } failureCode }
  }
}
"""
CONNECT_BATCH = 50
# Each webhook a new payment, one second later than the last: none is a duplicate or ambiguous.
WEBHOOKS = itertools.count()
BASE_TIME = int(time.time())
PATIENCE_SECONDS = 10.0
WARMUP_ATTEMPTS = 20
WARMUP_PATIENCE_SECONDS = 2.0


def settings_for(database_url: str) -> Settings:
    # One user opens 1,000 subscriptions at once: a budget that lets it (cost is not measured here).
    return Settings(billing_env="test", database_url=database_url, graphql_cost_budget=10**7)


# --- servers ---------------------------------------------------------------------------


def bare_app(message: str) -> Starlette:
    """Sockets grouped by account; a POST answers, then sends `message` to one account's."""
    by_account: dict[str, set[WebSocket]] = {}

    async def subscribe(websocket: WebSocket) -> None:
        account = websocket.query_params["account"]
        await websocket.accept(subprotocol="graphql-transport-ws")
        by_account.setdefault(account, set()).add(websocket)
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect:
            by_account[account].discard(websocket)

    async def broadcast(account: str) -> None:
        for websocket in list(by_account.get(account, ())):
            await websocket.send_text(message)

    async def receive(request: Request) -> JSONResponse:
        account = request.query_params["account"]
        return JSONResponse({"received": True}, background=BackgroundTask(broadcast, account))

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            WebSocketRoute("/graphql", subscribe),
            Route("/webhooks/stripe", receive, methods=["POST"]),
        ]
    )


def serve(kind: str, port: int, database_url: str, message_size: int) -> None:
    if kind == "bare":
        app: Any = bare_app(json.dumps({"id": "1", "type": "next", "payload": "x" * message_size}))
    else:
        from gateway.app import create_app

        app = create_app(settings_for(database_url), start_worker=True)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        ws_per_message_deflate=WS_PER_MESSAGE_DEFLATE,  # as `billing-gateway serve` runs
    )


# --- clients ---------------------------------------------------------------------------


class Subscriber:
    """One idle dashboard: records when each message arrives."""

    def __init__(self, matching: bool) -> None:
        self.matching = matching
        self.arrivals: list[float] = []
        self.connection: Any = None
        self.task: asyncio.Task[None] | None = None

    async def open(self, url: str, token: str | None) -> None:
        self.connection = await websockets.connect(
            url,
            subprotocols=["graphql-transport-ws"],
            max_size=None,  # type: ignore[list-item]
        )
        if token is not None:
            payload = {"authorization": f"Bearer {token}"}
            await self.connection.send(json.dumps({"type": "connection_init", "payload": payload}))
            assert json.loads(await self.connection.recv())["type"] == "connection_ack"
            subscribe = {"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIPTION}}
            await self.connection.send(json.dumps(subscribe))
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for _ in self.connection:
                self.arrivals.append(time.perf_counter())
        except websockets.ConnectionClosed:
            pass

    async def close(self) -> None:
        await self.connection.close()
        if self.task is not None:
            await self.task


async def open_all(url: str, tokens: list[str | None], matching: list[bool]) -> list[Subscriber]:
    subscribers = [Subscriber(match) for match in matching]
    for start in range(0, len(subscribers), CONNECT_BATCH):
        batch = range(start, min(start + CONNECT_BATCH, len(subscribers)))
        await asyncio.gather(*(subscribers[i].open(url, tokens[i]) for i in batch))
    return subscribers


def webhook(round_number: int, base: int) -> str:
    """A payment_intent.succeeded of the hot customer; each round a new payment, a later second."""
    intent = fixture("payment_intent") | {
        "id": f"pi_bench_{base}_{round_number}",
        "customer": HOT_CUSTOMER,
        "status": "succeeded",
        "amount": 1250,
        "amount_received": 1250,
        "currency": "usd",
        "description": f"bench payment {round_number}",
        "created": base + round_number,
        "latest_charge": None,
        "payment_method": None,
        "last_payment_error": None,
        "metadata": {},
    }
    event = {
        "id": f"evt_bench_{base}_{round_number}",
        "object": "event",
        "api_version": stripe.api_version,
        "created": base + round_number,
        "livemode": False,
        "type": "payment_intent.succeeded",
        "data": {"object": intent},
    }
    return json.dumps(event)


async def run_rounds(
    port: int,
    subscribers: list[Subscriber],
    rounds: int,
    *,
    bare: bool,
    patience: float = PATIENCE_SECONDS,
) -> list[tuple[list[float], float]]:
    """Per round, each matching subscriber's delay (ms) from the webhook's POST leaving to
    its arrival, and when (ms after the POST left) the webhook's 200 came back."""
    matching = [s for s in subscribers if s.matching]
    results = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        for _ in range(rounds):
            before = [len(s.arrivals) for s in matching]
            body = webhook(next(WEBHOOKS), BASE_TIME)
            headers = {"Stripe-Signature": signature_header(body, SANDBOX_WEBHOOK_SECRET)}
            params = {"account": "hot"} if bare else {}
            sent = time.perf_counter()
            response = await http.post(
                "/webhooks/stripe", content=body, headers=headers, params=params
            )
            accepted = time.perf_counter()
            assert response.status_code == 200, response.text
            async with asyncio.timeout(patience):
                while any(len(s.arrivals) == n for s, n in zip(matching, before, strict=True)):
                    await asyncio.sleep(0.001)
            delays = [(s.arrivals[n] - sent) * 1000 for s, n in zip(matching, before, strict=True)]
            results.append((delays, (accepted - sent) * 1000))
            await asyncio.sleep(0.2)
    return results


async def warm_up(port: int, subscribers: list[Subscriber], *, bare: bool) -> None:
    """Webhooks until every matching subscriber got one: all subscriptions are registered."""
    matching = [s for s in subscribers if s.matching]
    for _ in range(WARMUP_ATTEMPTS):
        with contextlib.suppress(TimeoutError):
            await run_rounds(port, subscribers, 1, bare=bare, patience=WARMUP_PATIENCE_SECONDS)
        if all(s.arrivals for s in matching):
            for subscriber in subscribers:
                subscriber.arrivals.clear()
            return
    raise RuntimeError("some subscriptions never received an update")


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(kind: str, url: str, args: Any, settings: Settings | None) -> dict[str, Any]:
    port = free_port()
    message_size = 330  # about the size of the gateway's `next` message for SUBSCRIPTION
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--port", str(port), "--database-url", url,
         "--message-size", str(message_size)]
    )  # fmt: skip
    server = psutil.Process(process.pid)
    try:
        await wait_for(port)
        ws_url = f"ws://127.0.0.1:{port}/graphql"
        matching = [True] * args.matching + [False] * args.others
        if kind == "gateway":
            assert settings is not None
            hot = mint_token(settings, user_id=HOT_USER, ttl_seconds=7200)
            others = [
                mint_token(settings, user_id=f"bench-other-{n % OTHER_CUSTOMERS}", ttl_seconds=7200)
                for n in range(args.others)
            ]
            tokens: list[str | None] = [hot] * args.matching + list(others)
        else:
            tokens = [None] * len(matching)
            ws_url_hot, ws_url_other = f"{ws_url}?account=hot", f"{ws_url}?account=other"
        rss_before = server.memory_info().rss
        if kind == "gateway":
            subscribers = await open_all(ws_url, tokens, matching)
        else:
            hot_subs = await open_all(
                ws_url_hot, tokens[: args.matching], matching[: args.matching]
            )
            other_subs = await open_all(
                ws_url_other, tokens[args.matching :], matching[args.matching :]
            )
            subscribers = hot_subs + other_subs
        await warm_up(port, subscribers, bare=kind == "bare")
        rss_after = server.memory_info().rss
        rounds = await run_rounds(port, subscribers, args.rounds, bare=kind == "bare")
        await asyncio.sleep(0.5)
        strays = sum(len(s.arrivals) for s in subscribers if not s.matching)
        sizes = {len(s.arrivals) for s in subscribers if s.matching}
        await asyncio.gather(*(s.close() for s in subscribers))
    finally:
        process.terminate()
        process.wait()
    from_sent = [delay for round_delays, _ in rounds for delay in round_delays]
    # The measure that matters to a dashboard: from the webhook being accepted (its 200 back at the client).
    from_accept = [delay - accept for round_delays, accept in rounds for delay in round_delays]
    last_arrivals = [max(round_delays) - accept for round_delays, accept in rounds]
    first_arrivals = [min(round_delays) - accept for round_delays, accept in rounds]
    return {
        "p50": quantile(from_accept, 0.50),
        "p99": quantile(from_accept, 0.99),
        "sent_p50": quantile(from_sent, 0.50),
        "sent_p99": quantile(from_sent, 0.99),
        "all_p50": statistics.median(last_arrivals),
        "all_max": max(last_arrivals),
        "first_p50": statistics.median(first_arrivals),
        "kb_per_connection": (rss_after - rss_before) / len(subscribers) / 1024,
        "strays": strays,
        "received_per_matching": sorted(sizes),
    }


async def prepare(url_text: str, database: Database, args: Any) -> None:
    async with database.engine.begin() as conn:
        await conn.execute(text("TRUNCATE accounts, payment_transactions, stripe_events CASCADE"))
        await conn.execute(
            text("INSERT INTO accounts (user_id, stripe_customer_id) VALUES (:u, :c)"),
            {"u": HOT_USER, "c": HOT_CUSTOMER},
        )
        for n in range(OTHER_CUSTOMERS):
            await conn.execute(
                text("INSERT INTO accounts (user_id, stripe_customer_id) VALUES (:u, :c)"),
                {"u": f"bench-other-{n}", "c": f"cus_bench_other_{n}"},
            )


async def main(args: Any) -> None:
    async with scratch_database("live", pool_size=2) as (database, url):
        url_text = url.render_as_string(hide_password=False)
        await prepare(url_text, database, args)
        bare = await measure("bare", url_text, args, None)
        gateway = await measure("gateway", url_text, args, settings_for(url_text))
    total = args.matching + args.others
    print(f"{args.matching} matching + {args.others} other subscribers ({total} sockets), "
          f"{args.rounds} webhooks, 1 uvicorn worker each, clients in one process")  # fmt: skip
    print("delays from the webhook accepted (its 200 at the client); [from the POST sent]")
    for label, figures in (("bare broadcast", bare), ("gateway", gateway)):
        print(
            f"{label:>15}: per subscriber p50 {figures['p50']:6.1f} ms  p99 {figures['p99']:6.1f} ms"
            f" [{figures['sent_p50']:5.1f} / {figures['sent_p99']:5.1f}]"
            f" | first: median {figures['first_p50']:6.1f} ms"
            f" | last of {args.matching}: median {figures['all_p50']:6.1f} ms"
            f"  max {figures['all_max']:6.1f} ms"
            f" | {figures['kb_per_connection']:5.1f} KB/connection"
            f" | to non-matching: {figures['strays']}"
        )  # fmt: skip
    print("targets: gateway p99 <= 100 ms, <= 64 KB/connection, 0 to non-matching")
    print(f"(each matching subscriber received {gateway['received_per_matching']} updates, "
          f"{args.rounds} expected)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--matching", type=int, default=1000)
    parser.add_argument("--others", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--serve", choices=["bare", "gateway"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--database-url")
    parser.add_argument("--message-size", type=int, default=330)
    arguments = parser.parse_args()
    if arguments.serve:
        serve(arguments.serve, arguments.port, arguments.database_url, arguments.message_size)
    else:
        asyncio.run(main(arguments))
