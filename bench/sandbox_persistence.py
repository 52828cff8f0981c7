"""What persisting one sandbox write costs as the store grows: the journal (`sandbox/journal.py`:
append what the write changed, fsync'd, folded into a snapshot now and then) against the
whole-store rewrite it replaced (JSON of every object written on every write), with and
without fsync.

The store is filled with copies of real objects (customers, subscriptions, invoices,
payments, events of subscriptions made through the SDK). One write is what a request does: an
object changed in place and an event added.

    python bench/sandbox_persistence.py [--sizes 1000,10000,100000]
"""

import argparse
import asyncio
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import stripe

from gateway.settings import SANDBOX_API_KEY
from sandbox.server import SandboxServer
from sandbox.store import Store

TEMPLATE_SUBSCRIPTIONS = 10


async def template_objects() -> list[dict]:
    """The objects of a few real subscriptions, as the sandbox made them."""
    server = await SandboxServer().start()
    client = stripe.StripeClient(
        SANDBOX_API_KEY, base_addresses={"api": server.url}, http_client=stripe.HTTPXClient()
    )
    product = await client.v1.products.create_async({"name": "Pro"})
    price = await client.v1.prices.create_async(
        {
            "product": product.id,
            "currency": "usd",
            "unit_amount": 2900,
            "recurring": {"interval": "month"},
        }
    )
    for number in range(TEMPLATE_SUBSCRIPTIONS):
        customer = await client.v1.customers.create_async({"email": f"c{number}@example.com"})
        method = await client.v1.payment_methods.attach_async(
            "pm_card_visa", {"customer": customer.id}
        )
        await client.v1.subscriptions.create_async(
            {
                "customer": customer.id,
                "items": [{"price": price.id}],
                "default_payment_method": method.id,
            }
        )
    objects = [copy.deepcopy(obj) for obj in server.store.objects.values()]
    await server.stop()
    return objects


def filled_store(templates: list[dict], size: int) -> Store:
    store = Store()
    for number in range(size):
        obj = copy.deepcopy(templates[number % len(templates)])
        obj["id"] = f"{obj['id'].split('_')[0]}_{number:012d}"
        store.add(obj)
    return store


def one_write(store: Store, number: int, event: dict) -> None:
    """What one request does: an object changed in place, an event added."""
    customer_ids = store.ids_by_type["customer"]
    customer = store.objects[customer_ids[number % len(customer_ids)]]
    customer["metadata"] = {"write": str(number)}
    store.add(copy.deepcopy(event) | {"id": f"evt_bench_{number:012d}"})


def rewrite_all(store: Store, path: Path, fsync: bool) -> None:
    """The old persistence: the whole store as JSON on every write."""
    state = {
        "objects": store.objects,
        "ids_by_type": store.ids_by_type,
        "endpoint_secrets": store.endpoint_secrets,
        "clock_offset": store.clock_offset,
    }
    with path.open("w") as file:
        file.write(json.dumps(state))
        if fsync:
            file.flush()
            os.fsync(file.fileno())


def per_write_ms(action, writes: int) -> float:
    started = time.perf_counter()
    for number in range(writes):
        action(number)
    return (time.perf_counter() - started) * 1000 / writes


def measure(templates: list[dict], size: int, directory: Path) -> dict[str, float]:
    event = next(obj for obj in templates if obj["object"] == "event")
    writes = max(5, 100_000 // size)
    store = filled_store(templates, size)
    results = {}
    for fsync in (False, True):
        path = directory / f"full-{size}-{fsync}.json"
        results[f"rewrite{'+fsync' if fsync else ''}"] = per_write_ms(
            lambda n, path=path, fsync=fsync: (
                one_write(store, n, event),
                rewrite_all(store, path, fsync),
            ),
            writes,
        )
    store = filled_store(templates, size)
    store.open_journal(directory / f"journal-{size}.json")
    assert store.journal is not None
    store.journal.compact()  # the state as it stands is the snapshot, as after a restart
    # Enough writes to fold the journal into the snapshot at least once at the smaller sizes:
    # what folding costs is spread over the writes that filled the journal.
    journal_writes = writes * 10
    results["journal+fsync"] = per_write_ms(
        lambda n: (one_write(store, size + n, event), store.commit()), journal_writes
    )
    store.close()
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    args = parser.parse_args()
    templates = await template_objects()
    print(
        f"{'objects':>8} | {'rewrite':>10} | {'rewrite+fsync':>14} | {'journal+fsync':>14} |"
        " rewrite+fsync / journal"
    )
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parents[1] / ".billing") as tmp:
        for size in (int(value) for value in args.sizes.split(",")):
            figures = measure(templates, size, Path(tmp))
            ratio = figures["rewrite+fsync"] / figures["journal+fsync"]
            print(
                f"{size:>8} | {figures['rewrite']:>8.2f}ms | {figures['rewrite+fsync']:>12.2f}ms"
                f" | {figures['journal+fsync']:>12.3f}ms | {ratio:>6.1f}x"
            )


if __name__ == "__main__":
    asyncio.run(main())
