"""Cost growth: the cold customer dashboard and the webhook worker as the data grows, each
against its own figure at the smallest size, in the same run on the same machine.

One database grows step by step. First the customer count (1k, 10k, 100k), each customer
as tests/factories.py's `customer_with_billing` makes them (2 cards, 2 subscriptions, 12
paid invoices with 2 lines and a payment each; email and name sealed); at each size the
dashboard of 200 customers spread over all of them is measured, and the worker. Then, at
the largest size, 50 measured customers' invoices grow 10 -> 100 -> 1,000 each, and their
dashboard and the worker are measured at each count. Rows are bulk-loaded with asyncpg
(INSERT ... SELECT over generate_series; the factories' one row at a time would take hours),
then the tables are vacuumed and analyzed, as autovacuum would leave them.

- Cold dashboard: bench/graphql_dashboard.py's DASHBOARD query against its gateway
  (`--serve gateway`: one uvicorn worker, response cache off, so every request runs), wrk
  1 thread x 8 connections, the best of `--rounds` (others' work on the machine only ever
  slows a round); requests/s, p50, p99. The first answer is checked: no errors, the
  customer's own email opened, the invoice count it should have.
- Worker: bench/webhook_ingest.py's `processing_rates`, from its pieces, against the grown
  database: `--subscribers` new customers subscribe on the sandbox, its real subscription,
  invoice and payment events are stored, and one worker applies them; once 1 at a time and
  once WEBHOOK_WORKER_CONCURRENCY at a time, each with subscribers of its own.
- SQL: at each size auto_explain (ANALYZE, with the parameters each ran with, through
  ALTER DATABASE ... SET session_preload_libraries, read back from the server's log) logs
  every statement of one cold dashboard request of 3 measured customers; the column is the
  median of the server's time executing one request's statements. It is the figure the
  machine's other work disturbs least, and the one that shows what grows with the data.
- Flat: every size's requests/s and worker events/s at least 80% of the smallest size's,
  and its p50 and p99 at most 120%.
- EXPLAIN: the plans of one dashboard at the largest customer count and at the most
  invoices are printed, and a line for each distinct statement of the worker applying a
  few customers' events; every sequential scan of a table of more than 500 rows is flagged.

    python bench/graphql_growth.py [--customers 1000,10000,100000] [--invoices 10,100,1000]
        [--seconds 5] [--rounds 2] [--connections 8] [--subscribers 50] [--heavy 50]
        [--pool-size 16]

Needs Debian's `wrk`; about 2 GB of disk at 100k customers (dropped afterwards).
"""

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import uvloop
from sqlalchemy import URL, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.graphql_dashboard import DASHBOARD, bench_settings, drive, first_answer
from bench.support import free_port, require_wrk, scratch_database, wait_for
from bench.webhook_ingest import (
    SETUP_EVENTS,
    failed_attempts,
    sandbox_stripe,
    subscribe_customers,
)
from db.database import Database
from db.models import BillingInterval, Plan
from db.sealed import keyring, seal
from gateway.auth import mint_token
from gateway.settings import Settings

DASHBOARD_BENCH = ROOT / "bench" / "graphql_dashboard.py"
# The embedded server's log (db/embedded.py: the wheel writes it into its data directory).
SERVER_LOG = ROOT / ".billing" / "bench" / "postgres" / "log"
CARDS, SUBSCRIPTIONS, INVOICES, LINES = 2, 2, 12, 2
DASHBOARD_USERS = 200
LOAD_BATCH = 10_000
# The worker's warm-up subscribers are numbered from here, apart from the measured ones.
WARM_UP_SUBSCRIBERS = 10**6
FLAT = 0.20
# A sequential scan of a table this small is cheaper than its index; larger ones are flagged.
SEQ_SCAN_ROWS = 500
BILLED_TABLES = (
    "accounts, payment_methods, subscriptions, invoices, invoice_lines, payment_transactions"
)
# Fixed, so a customer's rows are the same whenever it was loaded.
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


# ---- bulk loading: customer_with_billing's rows, many at a time ----

ACCOUNT_COLUMNS = ["user_id", "email", "email_index", "name", "created_at",
                   "default_payment_method_stripe_id"]  # fmt: skip
# $1, $2: the user ids of the first and last account of the batch (zero-padded, so in order).
CARDS_SQL = """
INSERT INTO payment_methods (stripe_payment_method_id, account_id, type, brand, last4,
                             exp_month, exp_year, stripe_created_at)
SELECT 'pm_' || a.user_id || '_' || k, a.id, 'card', 'visa', '4242', 12, 2030, a.created_at
FROM accounts a CROSS JOIN generate_series(0, $3::int - 1) k
WHERE a.user_id BETWEEN $1 AND $2
"""
# The newest active, the rest canceled; plans in turn ($3).
SUBSCRIPTIONS_SQL = """
INSERT INTO subscriptions (stripe_subscription_id, account_id, plan_id, status,
                           current_period_start, current_period_end, latest_invoice_stripe_id,
                           stripe_created_at)
SELECT 'sub_' || a.user_id || '_' || k, a.id, ($3::bigint[])[k % cardinality($3::bigint[]) + 1],
       CASE WHEN k = 0 THEN 'active' ELSE 'canceled' END,
       a.created_at - interval '1 day', a.created_at + interval '29 days',
       CASE WHEN k = 0 THEN 'in_' || a.user_id || '_0' END, a.created_at - k * interval '1 day'
FROM accounts a CROSS JOIN generate_series(0, $4::int - 1) k
WHERE a.user_id BETWEEN $1 AND $2
"""
# Invoices $3 .. $4 - 1 of each account (invoice 0 the newest, one a month before the other),
# each with $5 lines and its payment. Ordered month first: a customer's bills are spread over
# the table as a year of monthly billing spreads them, not side by side.
BILLS_SQL = """
WITH bills AS (
  INSERT INTO invoices (stripe_invoice_id, account_id, subscription_stripe_id, number, status,
                        currency, subtotal, total, amount_due, amount_paid, amount_remaining,
                        period_start, period_end, paid_at, stripe_created_at)
  SELECT 'in_' || a.user_id || '_' || k, a.id, 'sub_' || a.user_id || '_0',
         'INV-' || a.user_id || '-' || lpad(k::text, greatest(4, length(k::text)), '0'),
         'paid', 'usd', 1000 * $5::int, 1000 * $5::int, 1000 * $5::int, 1000 * $5::int, 0,
         a.created_at - (k + 1) * interval '30 days', a.created_at - k * interval '30 days',
         a.created_at - k * interval '30 days', a.created_at - k * interval '30 days'
  FROM accounts a CROSS JOIN generate_series($3::int, $4::int - 1) k
  WHERE a.user_id BETWEEN $1 AND $2
  ORDER BY k, a.id
  RETURNING id, account_id, stripe_invoice_id, total, period_start, period_end,
            stripe_created_at
), lines AS (
  INSERT INTO invoice_lines (invoice_id, stripe_line_id, position, description, amount,
                             currency, quantity, period_start, period_end)
  SELECT b.id, 'il_' || b.stripe_invoice_id || '_' || p, p, 'Seat ' || (p + 1), 1000, 'usd', 1,
         b.period_start, b.period_end
  FROM bills b CROSS JOIN generate_series(0, $5::int - 1) p
)
INSERT INTO payment_transactions (stripe_payment_intent_id, account_id, status, amount,
                                  amount_received, currency, payment_method_stripe_id,
                                  invoice_stripe_id, stripe_created_at)
SELECT 'pi_' || b.stripe_invoice_id, b.account_id, 'succeeded', b.total, b.total, 'usd',
       a.default_payment_method_stripe_id, b.stripe_invoice_id, b.stripe_created_at
FROM bills b JOIN accounts a ON a.id = b.account_id
"""


def user_id(prefix: str, n: int) -> str:
    return f"{prefix}-{n:06d}"


async def loader(url: URL) -> asyncpg.Connection:
    """A connection for bulk loading: triggers off (session_replication_role), so neither
    the response cache's read_changes trigger nor the foreign keys' run per row; the rows
    are the factories', valid by construction, and the benchmark's gateway caches nothing."""
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    await connection.execute("SET session_replication_role = replica")
    return connection


async def add_customers(
    connection: asyncpg.Connection, prefix: str, numbers: range, plan_ids: list[int], invoices: int
) -> None:
    """Customers `numbers`, each as customer_with_billing makes one: its email and name
    sealed one by one (each seal has its own nonce), the blind index beside the email."""
    for start in range(numbers.start, numbers.stop, LOAD_BATCH):
        batch = range(start, min(start + LOAD_BATCH, numbers.stop))
        records = []
        for n in batch:
            user, email = user_id(prefix, n), f"{user_id(prefix, n)}@example.com"
            records.append((user, seal(email), keyring().email_index(email), seal(user.title()),
                            EPOCH + timedelta(minutes=n), f"pm_{user}_0"))  # fmt: skip
        first, last = user_id(prefix, batch.start), user_id(prefix, batch.stop - 1)
        async with connection.transaction():
            await connection.copy_records_to_table(
                "accounts", records=records, columns=ACCOUNT_COLUMNS
            )
            await connection.execute(CARDS_SQL, first, last, CARDS)
            await connection.execute(SUBSCRIPTIONS_SQL, first, last, plan_ids, SUBSCRIPTIONS)
            await connection.execute(BILLS_SQL, first, last, 0, invoices, LINES)


async def add_invoices(
    connection: asyncpg.Connection, prefix: str, numbers: range, have: int, want: int
) -> None:
    """Customers `numbers` get older invoices until each has `want`."""
    first, last = user_id(prefix, numbers.start), user_id(prefix, numbers.stop - 1)
    async with connection.transaction():
        await connection.execute(BILLS_SQL, first, last, have, want, LINES)


async def settle(connection: asyncpg.Connection) -> None:
    """VACUUM and ANALYZE what was loaded: fresh statistics and a visibility map, as
    autovacuum leaves a table (and so autovacuum does not do it during a measurement)."""
    await connection.execute(f"VACUUM (ANALYZE) {BILLED_TABLES}")


async def plans_of(database: Database) -> list[int]:
    """The sandbox's monthly Starter and Pro: new subscribers of the worker's rounds
    subscribe to the catalog, so the loaded customers do too."""
    async with database.session() as session:
        monthly = select(Plan.id).where(Plan.interval == BillingInterval.MONTH).order_by(Plan.id)
        return list(await session.scalars(monthly))


# ---- measuring ----


def start_gateway(url_text: str, pool_size: int) -> tuple[subprocess.Popen, int]:
    """graphql_dashboard.py's cold gateway, its pool DATABASE_POOL_SIZE connections: the
    embedded server's 100 are shared with whatever else runs on it, and the default 40 (and
    the driver's 10) beside another benchmark's is more than it has."""
    port = free_port()
    command = [sys.executable, str(DASHBOARD_BENCH), "--serve", "gateway", "--port", str(port),
               "--database-url", url_text]  # fmt: skip
    environment = os.environ | {"DATABASE_POOL_SIZE": str(pool_size)}
    return subprocess.Popen(command, env=environment), port


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    process.wait()


def dashboard_requests(url_text: str, users: list[str]) -> list[tuple[str, str]]:
    settings = bench_settings(url_text)
    body = orjson.dumps({"query": DASHBOARD}).decode()
    return [(mint_token(settings, user_id=user, ttl_seconds=86400), body) for user in users]


def check_answer(answer: dict[str, Any], user: str, invoices: int) -> None:
    """The measured customer is real: its sealed email opens, its invoices are all counted."""
    viewer = answer["data"]["viewer"]
    assert viewer["customer"]["email"] == f"{user}@example.com", viewer["customer"]
    assert viewer["invoices"]["totalCount"] == invoices, viewer["invoices"]["totalCount"]
    assert len(viewer["invoices"]["edges"][0]["node"]["lines"]) == LINES


async def cold_dashboard(url_text: str, users: list[str], invoices: int, args) -> dict:
    """The best of `args.rounds` wrk rounds of the dashboards of `users` in turn."""
    requests = dashboard_requests(url_text, users)
    process, port = start_gateway(url_text, args.pool_size)
    try:
        check_answer(await first_answer(port, *requests[0]), users[0], invoices)
        await asyncio.to_thread(drive, port, requests, args.connections, 2)  # warm-up
        rounds = [
            await asyncio.to_thread(drive, port, requests, args.connections, args.seconds)
            for _ in range(args.rounds)
        ]
    finally:
        stop(process)
    return max(rounds, key=lambda figures: figures["rps"])


async def worker_rates(
    database: Database, stripe_api: Any, subscribers: range, applying: Database | None = None
) -> dict[int, float]:
    """Events/s of one worker, 1 and WEBHOOK_WORKER_CONCURRENCY at a time, as
    webhook_ingest.py's `processing_rates` measures them, from its pieces: that function
    subscribes customers 0 .. 2N each time, and the sandbox refuses its idempotency keys
    (pm0, sub0, ...) the second time, so each step subscribes customers of its own. The
    worker applies the events through `applying` (by default `database`)."""
    from services.webhooks import inbox
    from services.webhooks.worker import WebhookWorker

    concurrencies = (1, Settings().webhook_worker_concurrency)
    share = len(subscribers) // len(concurrencies)
    rates = {}
    for round_number, concurrency in enumerate(concurrencies):
        async with database.engine.begin() as conn:
            await conn.exec_driver_sql("TRUNCATE stripe_events")
        since = int(time.time()) - 1
        first = subscribers.start + round_number * share
        await subscribe_customers(database, stripe_api, range(first, first + share))
        events = [e for e in await stripe_api.list_events(created_gte=since)
                  if e["type"] not in SETUP_EVENTS]  # fmt: skip
        for event in reversed(events):
            await inbox.store_event(database=database, event=event, payload=json.dumps(event))
        worker = WebhookWorker(
            database=applying or database, stripe=stripe_api, policy=inbox.RetryPolicy(),
            concurrency=concurrency, listen=False,
        )  # fmt: skip
        started = time.perf_counter()
        count = await worker.drain()
        rates[concurrency] = count / (time.perf_counter() - started)
        failed = await failed_attempts(database)
        assert failed == 0 and count == len(events), f"{count}/{len(events)}, {failed} failed"
    return rates


def spread(prefix: str, customers: int, count: int) -> list[str]:
    """`count` user ids spread evenly over the first `customers`."""
    return [user_id(prefix, n) for n in range(0, customers, max(1, customers // count))][:count]


# ---- EXPLAIN: auto_explain's plans from the server's log ----

AUTO_EXPLAIN = {
    "session_preload_libraries": "auto_explain",
    "auto_explain.log_min_duration": "0",
    "auto_explain.log_analyze": "on",
    "auto_explain.log_buffers": "on",
    "auto_explain.log_format": "json",
    "auto_explain.log_nested_statements": "on",  # the triggers' statements too
}
PLAN_MESSAGE = re.compile(r"LOG:  duration: ([0-9.]+) ms  plan:\n(.*?)(?=^\d{4}-\d\d-\d\d |\Z)",
                          re.MULTILINE | re.DOTALL)  # fmt: skip
# What asyncpg runs on a new connection (type lookups, jit off around them), not the app.
DRIVER_STATEMENTS = ("typeinfo_tree", "set_config('jit'", "current_schema()", "version()")


@asynccontextmanager
async def explaining(url: URL) -> AsyncIterator[None]:
    """Every session of the database started inside the block logs its statements' plans.
    Set and reset on a connection of its own, so no pooled connection starts with them."""
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        for setting, value in AUTO_EXPLAIN.items():
            await connection.execute(f"ALTER DATABASE \"{url.database}\" SET {setting} = '{value}'")
        yield
    finally:
        for setting in AUTO_EXPLAIN:
            await connection.execute(f'ALTER DATABASE "{url.database}" RESET {setting}')
        await connection.close()


def log_size() -> int:
    return SERVER_LOG.stat().st_size


def plans_logged_since(offset: int) -> list[tuple[float, dict]]:
    """(duration ms, auto_explain's JSON) of each plan logged after `offset`, but the
    driver's own."""
    with SERVER_LOG.open("rb") as log:
        log.seek(offset)
        text = log.read().decode(errors="replace")
    found = [(float(duration), json.loads(body)) for duration, body in PLAN_MESSAGE.findall(text)]
    return [(duration, logged) for duration, logged in found
            if not any(marker in logged["Query Text"] for marker in DRIVER_STATEMENTS)]  # fmt: skip


async def explained_dashboards(
    url: URL, users: list[str], invoices: int, others: list[str], args
) -> dict[str, list]:
    """The plans of one cold dashboard request of each of `users`, from a gateway started
    with auto_explain on. It first answers `others` for a second, so its pools hold their
    connections and the driver knows its types: what is logged then is each request's."""
    url_text = url.render_as_string(hide_password=False)
    captured = {}
    async with explaining(url):
        process, port = start_gateway(url_text, args.pool_size)
        try:
            await wait_for(port)
            others_requests = dashboard_requests(url_text, others)
            await asyncio.to_thread(drive, port, others_requests, args.connections, 1)
            await asyncio.sleep(1)  # the last of them answered and logged
            for user in users:
                ((token, body),) = dashboard_requests(url_text, [user])
                offset = log_size()
                check_answer(await first_answer(port, token, body), user, invoices)
                await asyncio.sleep(0.5)  # the server writes its log a moment later
                captured[user] = plans_logged_since(offset)
        finally:
            stop(process)
    return captured


async def explained_worker(
    database: Database, url: URL, stripe_api: Any, subscribers: range
) -> list:
    """The plans of the worker applying a few new subscribers' events, through a pool opened
    with auto_explain on (only the worker's: subscribing and storing the events go through
    `database`, whose connections were opened before)."""
    async with explaining(url):
        applying = Database(url, pool_size=8)
        try:
            offset = log_size()
            await worker_rates(database, stripe_api, subscribers, applying)
            await asyncio.sleep(0.5)
            return plans_logged_since(offset)
        finally:
            await applying.dispose()


async def table_rows(database: Database) -> dict[str, float]:
    async with database.engine.connect() as conn:
        rows = await conn.exec_driver_sql(
            "SELECT c.relname, c.reltuples FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'"
        )
        return {name: tuples for name, tuples in rows}


def nodes(plan: dict) -> list[dict]:
    return [plan, *(node for child in plan.get("Plans", []) for node in nodes(child))]


def seq_scans(logged: dict, rows: dict[str, float]) -> list[str]:
    """Tables of more than SEQ_SCAN_ROWS rows the plan reads whole."""
    return [node["Relation Name"] for node in nodes(logged["Plan"])
            if node["Node Type"] == "Seq Scan"
            and rows.get(node["Relation Name"], 0) > SEQ_SCAN_ROWS]  # fmt: skip


def one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def plan_lines(plan: dict, depth: int = 0) -> list[str]:
    """The plan's nodes, one a line: what it reads, by which index, the rows it gave."""
    name = plan["Node Type"]
    if "Index Name" in plan:
        name += f" using {plan['Index Name']}"
    if "Relation Name" in plan:
        name += f" on {plan['Relation Name']}"
    conditions = [f"{key}: {plan[key]}" for key in ("Index Cond", "Filter", "Hash Cond")
                  if key in plan]  # fmt: skip
    figures = (f"rows={plan.get('Actual Rows', 0):g} loops={plan.get('Actual Loops', 0):g} "
               f"{plan.get('Actual Total Time', 0):.3f} ms")  # fmt: skip
    line = "  " * depth + one_line(f"-> {name} ({figures}) " + " ".join(conditions), 160)
    return [line] + [
        line for child in plan.get("Plans", []) for line in plan_lines(child, depth + 1)
    ]


def sql_ms(plans: list[tuple[float, dict]]) -> float:
    """How long the server spent executing a request's statements."""
    return sum(duration for duration, _ in plans)


def print_dashboard_plans(label: str, plans: list, rows: dict[str, float]) -> list[str]:
    """Each statement's plan; the sequential scans found."""
    print(f"\n== EXPLAIN ANALYZE, {label}: {len(plans)} statements, {sql_ms(plans):.2f} ms ==")
    found = []
    for duration, logged in plans:
        print(f"\n[{duration:.3f} ms] {one_line(logged['Query Text'], 300)}")
        if logged.get("Query Parameters"):
            print(f"  parameters: {one_line(logged['Query Parameters'], 160)}")
        print("\n".join("  " + line for line in plan_lines(logged["Plan"])))
        found += [f"{label}: Seq Scan on {table} in {one_line(logged['Query Text'], 120)}"
                  for table in seq_scans(logged, rows)]  # fmt: skip
    return found


def print_worker_plans(plans: list, rows: dict[str, float]) -> list[str]:
    """One line per distinct statement (how often, the slowest run, what it scans), the most
    time first; the whole plan only of those with a sequential scan."""
    by_text: dict[str, list[tuple[float, dict]]] = {}
    for duration, logged in plans:
        by_text.setdefault(one_line(logged["Query Text"], 10**6), []).append((duration, logged))
    print(f"\n== EXPLAIN ANALYZE, the worker applying events: {len(plans)} statements "
          f"({len(by_text)} distinct), {sql_ms(plans):.1f} ms ==")  # fmt: skip
    found = []
    for text, runs in sorted(by_text.items(), key=lambda item: -sql_ms(item[1])):
        duration, slowest = max(runs, key=lambda run: run[0])
        scans = sorted({" ".join(filter(None, (node["Node Type"], node.get("Relation Name"))))
                        for node in nodes(slowest["Plan"]) if "Scan" in node["Node Type"]})  # fmt: skip
        print(f"{len(runs):4d}x max {duration:6.3f} ms [{', '.join(scans)}] {one_line(text, 100)}")
        tables = seq_scans(slowest, rows)
        if tables:
            print("\n".join("      " + line for line in plan_lines(slowest["Plan"])))
            found += [f"worker: Seq Scan on {table} in {one_line(text, 120)}" for table in tables]
    return found


# ---- the run ----


@dataclass
class Run:
    """What every step measures against, and what it found."""

    database: Database
    url: URL
    stripe_api: Any
    args: argparse.Namespace
    started: float = field(default_factory=time.perf_counter)
    rows: list[dict] = field(default_factory=list)
    # The dashboard plans of the last step of each series, to print.
    plans: dict[str, list] = field(default_factory=dict)

    async def measure(
        self, series: str, label: str, users: list[str], invoices: int, loaded_in: float
    ) -> None:
        """The cold dashboard of `users`, the worker, and the SQL of 3 of the dashboards."""
        url_text = self.url.render_as_string(hide_password=False)
        # The gateway's connections and ours are not needed at once: ours are closed.
        await self.database.dispose()
        dashboard = await cold_dashboard(url_text, users, invoices, self.args)
        per_step = 2 * self.args.subscribers
        subscribers = range(len(self.rows) * per_step, (len(self.rows) + 1) * per_step)
        worker = await worker_rates(self.database, self.stripe_api, subscribers)
        explained = await explained_dashboards(
            self.url, users[:3], invoices, users[3:23] or users, self.args
        )
        self.plans[series] = (label, next(iter(explained.values())))
        sql = statistics.median(sql_ms(plans) for plans in explained.values())
        self.rows.append(dashboard | {"label": label, "worker": worker, "sql_ms": sql})
        print(f"{label}: loaded in {loaded_in:.0f} s; {dashboard['rps']:.0f} req/s, "
              f"p50 {dashboard['p50_ms']:.1f} ms, p99 {dashboard['p99_ms']:.1f} ms, "
              f"SQL {sql:.2f} ms; worker "
              + ", ".join(f"x{c} {rate:.0f} events/s" for c, rate in worker.items())
              + f" ({time.perf_counter() - self.started:.0f} s)", flush=True)  # fmt: skip


async def grow_customers(run: Run, connection: asyncpg.Connection, sizes: list[int]) -> int:
    """Customers added to reach each size, measured at each; how many there are."""
    plan_ids = await plans_of(run.database)
    loaded = 0
    for customers in sizes:
        started = time.perf_counter()
        await add_customers(connection, "growth", range(loaded, customers), plan_ids, INVOICES)
        await settle(connection)
        loaded = customers
        users = spread("growth", customers, DASHBOARD_USERS)
        label = f"{customers:,} customers x {INVOICES} invoices"
        await run.measure("customers", label, users, INVOICES, time.perf_counter() - started)
    return loaded


async def grow_invoices(
    run: Run, connection: asyncpg.Connection, counts: list[int], customers: int
) -> None:
    """The measured customers' invoices grown to each count, measured at each."""
    plan_ids = await plans_of(run.database)
    heavy = range(run.args.heavy)
    have = 0
    for invoices in counts:
        started = time.perf_counter()
        if have == 0:
            await add_customers(connection, "heavy", heavy, plan_ids, invoices)
        else:
            await add_invoices(connection, "heavy", heavy, have, invoices)
        await settle(connection)
        have = invoices
        users = [user_id("heavy", n) for n in heavy]
        label = f"{customers:,} + {len(heavy)} x {invoices:,} invoices"
        await run.measure("invoices", label, users, invoices, time.perf_counter() - started)


def ratio(value: float, base: float) -> str:
    return f"{value / base:5.2f}" if base else "  n/a"


def flat(row: dict, base: dict) -> bool:
    """Within FLAT of the smallest size: as many requests and events a second, no slower."""
    checks = [row["rps"] >= (1 - FLAT) * base["rps"],
              row["p50_ms"] <= (1 + FLAT) * base["p50_ms"],
              row["p99_ms"] <= (1 + FLAT) * base["p99_ms"]]  # fmt: skip
    checks += [row["worker"][c] >= (1 - FLAT) * rate for c, rate in base["worker"].items()]
    return all(checks)


def print_table(rows: list[dict]) -> None:
    base = rows[0]
    concurrencies = list(base["worker"])
    worker_heads = "".join(f"{f'worker x{c} ev/s':>17}" for c in concurrencies)
    print(f"\n{'size':<34}{'req/s':>7}{'p50 ms':>8}{'p99 ms':>8}{worker_heads}{'SQL ms':>8}"
          f"  | vs smallest: req/s   p50   p99"
          + "".join(f"{f'x{c}':>6}" for c in concurrencies) + "   SQL")  # fmt: skip
    for row in rows:
        workers = "".join(f"{row['worker'][c]:>17.0f}" for c in concurrencies)
        ratios = [ratio(row[key], base[key]) for key in ("rps", "p50_ms", "p99_ms")]
        ratios += [ratio(row["worker"][c], base["worker"][c]) for c in concurrencies]
        ratios.append(ratio(row["sql_ms"], base["sql_ms"]))
        print(f"{row['label']:<34}{row['rps']:7.0f}{row['p50_ms']:8.1f}{row['p99_ms']:8.1f}"
              f"{workers}{row['sql_ms']:8.2f}  |            " + " ".join(ratios)
              + f"  {'flat' if flat(row, base) else 'NOT FLAT'}")  # fmt: skip


def report(run: Run, worker_plans: list, sizes: dict[str, float]) -> None:
    args = run.args
    found = []
    for label, plans in run.plans.values():
        found += print_dashboard_plans(f"one cold dashboard at {label}", plans, sizes)
    found += print_worker_plans(worker_plans, sizes)
    print("\ntable rows at the end: " + ", ".join(
        f"{name} {n:,.0f}" for name, n in sorted(sizes.items()) if n > SEQ_SCAN_ROWS))  # fmt: skip
    print(f"\ncold dashboard: wrk 1 thread x {args.connections} connections, best of "
          f"{args.rounds} x {args.seconds} s rounds, 1 uvicorn worker, response cache off; "
          f"worker: {args.subscribers} new subscribers' sandbox events per concurrency; SQL: "
          f"the server's time executing one request's statements (auto_explain ANALYZE, "
          f"median of 3 customers)")  # fmt: skip
    print_table(run.rows)
    verdict = all(flat(row, run.rows[0]) for row in run.rows)
    print(f"\nflat within {FLAT:.0%} (req/s, p50, p99, worker events/s) from the smallest "
          f"size to the largest: {'PASS' if verdict else 'FAIL'}")  # fmt: skip
    print(f"sequential scans of tables over {SEQ_SCAN_ROWS} rows: {len(found) or 'none'}")
    for scan in found:
        print(f"  {scan}")
    print(f"run time {time.perf_counter() - run.started:.0f} s")


async def main(args) -> None:
    require_wrk()
    if not SERVER_LOG.exists():
        raise SystemExit(f"no server log at {SERVER_LOG}: EXPLAIN reads auto_explain's plans there")
    customer_sizes = sorted(int(n) for n in args.customers.split(","))
    invoice_counts = sorted(int(n) for n in args.invoices.split(","))
    # As many connections as the worker's concurrency, and one to claim with.
    pool_size = Settings().webhook_worker_concurrency + 1
    async with (
        scratch_database("growth", pool_size=pool_size) as (database, url),
        sandbox_stripe(database) as (stripe_api, _),
    ):
        run = Run(database, url, stripe_api, args)
        # Unmeasured: the first round otherwise also pays for the sandbox's and the worker's
        # first use (imports, prepared statements), and it is the baseline.
        await worker_rates(
            database, stripe_api, range(WARM_UP_SUBSCRIBERS, WARM_UP_SUBSCRIBERS + 20)
        )
        connection = await loader(url)
        try:
            customers = await grow_customers(run, connection, customer_sizes)
            await grow_invoices(run, connection, invoice_counts, customers)
        finally:
            await connection.close()
        first = len(run.rows) * 2 * args.subscribers
        worker_plans = await explained_worker(database, url, stripe_api, range(first, first + 6))
        sizes = await table_rows(database)
    report(run, worker_plans, sizes)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", default="1000,10000,100000")
    parser.add_argument("--invoices", default="10,100,1000")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--heavy", type=int, default=50, help="customers whose invoices grow")
    parser.add_argument("--pool-size", type=int, default=16, help="the gateway's connections")
    uvloop.run(main(parser.parse_args()))  # as webhook_ingest.py runs its worker
