"""Credit spends: `credits.spend` (wallet lock, key lookup, guarded update, ledger insert,
pg_notify, one transaction) against a bare guarded UPDATE of the balance alone, in the same
run on the same database; both with `--tasks` concurrent spenders, on one wallet (every
spend contends for its row) and spread over `--wallets` wallets.

    python bench/credits_spend.py [--spends 4000] [--tasks 32] [--wallets 64]
"""

import argparse
import asyncio
import itertools
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import insert, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.support import scratch_database  # noqa: E402
from db.database import Database  # noqa: E402
from db.models import Account, CreditAccount, CreditEntryKind  # noqa: E402
from services import credits  # noqa: E402
from services.audit import Actor  # noqa: E402
from services.credits import Posting  # noqa: E402

BARE_SPEND = text(
    "UPDATE credit_accounts SET balance = balance - 1 "
    "WHERE account_id = :account AND balance >= 1 RETURNING balance"
)
ACTOR = Actor("bench")


async def fund(database: Database, wallets: int, balance: int, *, ledger: bool) -> list[int]:
    """`wallets` fresh accounts with `balance` credits each: granted through the ledger, or
    for the bare UPDATE set directly (those wallets have no entries)."""
    async with database.session() as session, session.begin():
        start = await session.scalar(text("SELECT coalesce(max(id), 0) FROM accounts"))
        ids = [start + n + 1 for n in range(wallets)]
        await session.execute(
            insert(Account), [{"id": i, "user_id": f"bench-{os.getpid()}-{i}"} for i in ids]
        )
        for account_id in ids:
            if ledger:
                grant = Posting(CreditEntryKind.GRANT, balance, "bench", "grant:bench", "bench")
                await credits.post(session, account_id=account_id, posting=grant)
            else:
                await session.execute(
                    insert(CreditAccount).values(account_id=account_id, balance=balance)
                )
    return ids


async def rate(tasks: int, spends: int, spend: Callable[[int], Awaitable[None]]) -> float:
    """Spends per second with `tasks` concurrent spenders taking numbers from one counter."""
    numbers = itertools.count()

    async def spender() -> None:
        while (n := next(numbers)) < spends:
            await spend(n)

    started = time.perf_counter()
    await asyncio.gather(*(spender() for _ in range(tasks)))
    return spends / (time.perf_counter() - started)


async def measure(database: Database, args, wallets: int) -> tuple[tuple[float, float], list[int]]:
    ledger_ids = await fund(database, wallets, args.spends, ledger=True)
    bare_ids = await fund(database, wallets, args.spends, ledger=False)

    async def ledger_spend(n: int) -> None:
        await credits.spend(
            database=database,
            account_id=ledger_ids[n % wallets],
            actor=ACTOR,
            amount=1,
            reason="bench",
            idempotency_key=f"spend-{n}",
        )

    async def bare_spend(n: int) -> None:
        async with database.session() as session, session.begin():
            await session.execute(BARE_SPEND, {"account": bare_ids[n % wallets]})

    ledger = await rate(args.tasks, args.spends, ledger_spend)
    bare = await rate(args.tasks, args.spends, bare_spend)
    return (ledger, bare), ledger_ids


async def main(args) -> None:
    async with scratch_database("credits", pool_size=args.tasks) as (database, _):
        one, one_ids = await measure(database, args, 1)
        many, many_ids = await measure(database, args, args.wallets)
        async with database.session() as session:
            mismatches = await credits.find_mismatches(session=session)
        off = [m for m in mismatches if m.account_id in set(one_ids + many_ids)]
    print(f"{args.spends} spends of 1 credit, {args.tasks} concurrent tasks, one transaction each")
    for label, (ledger, bare) in (("1 wallet", one), (f"{args.wallets} wallets", many)):
        print(f"{label:>11}: ledger {ledger:6.0f} spends/s   bare UPDATE {bare:6.0f} spends/s   "
              f"ledger / bare {ledger / bare:.2f}")  # fmt: skip
    print(f"ledger wallets off their ledger after the run: {len(off)} (must be 0)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spends", type=int, default=4000)
    parser.add_argument("--tasks", type=int, default=32)
    parser.add_argument("--wallets", type=int, default=64)
    asyncio.run(main(parser.parse_args()))
