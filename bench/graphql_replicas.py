"""One serving process against two: `billing-gateway serve` and `serve --workers 2` on the
same seeded database (bench/graphql_dashboard.py's 1,000 customers), in alternating
rounds, driven by wrk (one thread, 32 connections) with the customer dashboard of 200
customers in turn; cold (response cache off) and warm (each replica's cache primed).

The machine's cores are shared by the replicas, PostgreSQL and wrk, so the ratio says what
a second process buys where the cores are already busy; on a machine with a core per
replica it says more.

    python bench/graphql_replicas.py [--seconds 8] [--rounds 3] [--connections 32]
"""

import argparse
import asyncio
import os
import signal
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.graphql_dashboard import (
    BENCH_LIMITS,
    bench_settings,
    drive,
    first_answer,
    requests_for,
    seed,
)
from bench.support import free_port, require_wrk, scratch_database


def gateway_environment(database_url: str, *, cached: bool) -> dict[str, str]:
    """The benchmark's settings as `serve` reads them: no worker, no Stripe to reach."""
    env = {key.upper(): str(value) for key, value in BENCH_LIMITS.items()}
    env.update(
        os.environ,
        BILLING_ENV="test",
        DATABASE_URL=database_url,
        # Nothing listens there: the catalog's sync at start fails fast and is skipped.
        STRIPE_API_BASE="http://127.0.0.1:9",
        WEBHOOK_WORKER_IN_PROCESS="false",
        LOG_LEVEL="WARNING",
        GRAPHQL_RESPONSE_CACHE_SIZE="2048" if cached else "0",
    )
    return env


async def measure(url: str, workers: int, *, cached: bool, args) -> dict:
    port = free_port()
    command = [sys.executable, "-m", "gateway.cli", "serve", "--no-migrate"]
    command += ["--port", str(port), "--workers", str(workers)]
    process = await asyncio.create_subprocess_exec(
        *command,
        env=gateway_environment(url, cached=cached),
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
    )
    requests = requests_for("dashboard", bench_settings(url))
    try:
        await first_answer(port, *requests[0])
        # Every replica up (a new one listens seconds after the first), its cache primed.
        await asyncio.to_thread(drive, port, requests, args.connections, 3)
        return await asyncio.to_thread(drive, port, requests, args.connections, args.seconds)
    finally:
        process.send_signal(signal.SIGINT)
        await process.wait()


async def main(args) -> None:
    require_wrk()
    async with scratch_database("replicas", pool_size=8) as (database, url):
        url_text = url.render_as_string(hide_password=False)
        await seed(database)
        results: dict[tuple[str, int], list[dict]] = {}
        for _ in range(args.rounds):
            for cached in (False, True):
                for workers in (1, 2):
                    figures = await measure(url_text, workers, cached=cached, args=args)
                    results.setdefault(("warm" if cached else "cold", workers), []).append(figures)
    print(
        f"dashboard of 200 customers in turn; wrk 1 thread x {args.connections} connections "
        f"for {args.seconds} s; {args.rounds} alternating rounds, medians "
        f"(each round's figure in brackets); {os.cpu_count()} cores"
    )
    for mode in ("cold", "warm"):
        rates = {}
        for workers in (1, 2):
            runs = results[(mode, workers)]
            rates[workers] = statistics.median(run["rps"] for run in runs)
            each = ", ".join(f"{run['rps']:.0f}" for run in runs)
            p99 = statistics.median(run["p99_ms"] for run in runs)
            print(
                f"{mode} {workers} process{'es' if workers > 1 else '  '}: "
                f"{rates[workers]:7.0f} requests/s ({each})  p99 {p99:6.1f} ms"
            )
        print(f"{mode} 2 processes / 1: {rates[2] / rates[1]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    asyncio.run(main(parser.parse_args()))
