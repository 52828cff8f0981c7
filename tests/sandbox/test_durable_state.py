"""The sandbox keeps Stripe's promise across crashes: its state, and the webhook deliveries it
still owes, are on disk before it answers (a journal of each change, folded into a snapshot
now and then), and a restarted sandbox retries what it owed with backoff, for up to 3 days of
sandbox time."""

import asyncio
import json
import signal
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import stripe

from gateway.settings import SANDBOX_API_KEY
from sandbox import journal
from sandbox.delivery import BACKOFF_CAP, BACKOFF_START, RETRY_WINDOW, retry_delay
from sandbox.server import SandboxServer
from sandbox.store import Store
from tests.sandbox.conftest import WEBHOOK_SECRET
from tests.sandbox.test_billing import catalog, customer_with_card, subscribe
from tests.sandbox.test_time import sandbox_post
from tests.served import CONSOLE_SCRIPT, free_port

PATIENCE_SECONDS = 60.0


def sdk(url: str) -> stripe.StripeClient:
    return stripe.StripeClient(
        SANDBOX_API_KEY,
        base_addresses={"api": url},
        http_client=stripe.HTTPXClient(),
        max_network_retries=0,
    )


def reopened(state_file: Path) -> Store:
    """What a new process finds on disk (the old one never closed its journal)."""
    store = Store()
    store.open_journal(state_file)
    return store


async def test_every_answered_change_is_on_disk_without_a_clean_stop(tmp_path):
    state_file = tmp_path / "state.json"
    server = await SandboxServer(store=Store(), state_file=state_file).start()
    client = sdk(server.url)
    _, price = await catalog(client)
    customer, _ = await customer_with_card(client)
    subscription = await subscribe(client, customer, price)
    # An invoice preview is a rehearsed change: nothing of it may be persisted.
    journal_size = state_file.with_name("state.json.journal").stat().st_size
    await client.v1.invoices.create_preview_async({"subscription": subscription.id})
    assert state_file.with_name("state.json.journal").stat().st_size == journal_size

    found = reopened(state_file)
    live = server.store
    assert dict(found.objects) == json.loads(json.dumps(dict(live.objects)))
    assert {kind: ids for kind, ids in found.ids_by_type.items() if ids} == {
        kind: ids for kind, ids in live.ids_by_type.items() if ids
    }
    assert found.objects[subscription.id]["status"] == "active"
    assert found.endpoint_secrets == live.endpoint_secrets
    await server.stop()


async def test_a_torn_last_line_is_dropped_and_the_rest_kept(tmp_path):
    state_file = tmp_path / "state.json"
    server = await SandboxServer(store=Store(), state_file=state_file).start()
    client = sdk(server.url)
    kept = await client.v1.customers.create_async({"email": "kept@example.com"})
    journal_path = state_file.with_name("state.json.journal")
    with journal_path.open("ab") as file:  # a crash in the middle of the next write
        file.write(b'{"objects": {"cus_torn": {"id": "cus_to')
    await server.stop()  # stopped without its own journal noticing: reopen reads the file
    found = reopened(state_file)
    assert kept.id in found.objects and "cus_torn" not in found.objects
    # The torn bytes are gone, so what is appended next is read back whole.
    found.objects[kept.id]["email"] = "after@example.com"
    found.commit()
    assert reopened(state_file).objects[kept.id]["email"] == "after@example.com"


async def test_the_journal_is_folded_into_the_snapshot_when_it_outgrows_it(tmp_path, monkeypatch):
    monkeypatch.setattr(journal, "COMPACT_MIN_BYTES", 4096)
    state_file = tmp_path / "state.json"
    server = await SandboxServer(store=Store(), state_file=state_file).start()
    client = sdk(server.url)
    journal_path = state_file.with_name("state.json.journal")
    created = []
    for number in range(60):
        created.append(await client.v1.customers.create_async({"email": f"c{number}@x.test"}))
        snapshot_size = state_file.stat().st_size if state_file.exists() else 0
        # A write appends what it changed (not the store); past the threshold, it is folded.
        assert journal_path.stat().st_size <= max(4096, 4 * snapshot_size) + 2048
    assert state_file.exists()
    snapshot = json.loads(state_file.read_text())
    assert created[0].id in snapshot["objects"]
    found = reopened(state_file)
    assert [c.id for c in created] == found.ids_by_type["customer"]
    await server.stop()


def test_retries_back_off_as_stripe_does():
    quick = (0.5, 1.0)
    assert [retry_delay(n, quick) for n in (1, 2, 3, 4, 5)] == [
        0.5,
        1.0,
        BACKOFF_START,
        2 * BACKOFF_START,
        4 * BACKOFF_START,
    ]
    assert retry_delay(40, quick) == BACKOFF_CAP
    # Within the three days there are many tries, but not one a second.
    total, attempts = 0.0, 0
    while total < RETRY_WINDOW:
        attempts += 1
        total += retry_delay(attempts, quick)
    assert 10 < attempts < 30


async def test_deliveries_wait_until_opened(webhook_sink):
    server = SandboxServer(store=Store(webhook_secret=WEBHOOK_SECRET), hold_deliveries=True)
    await server.start()
    client = sdk(server.url)
    await client.v1.webhook_endpoints.create_async(
        {"url": webhook_sink.url, "enabled_events": ["*"]}
    )
    customer = await client.v1.customers.create_async({"email": "held@example.com"})
    await asyncio.sleep(0.3)
    assert webhook_sink.attempts == 0
    server.deliverer.open()
    received = await webhook_sink.wait_for(1)
    assert received[0]["data"]["object"]["id"] == customer.id
    await server.stop()


async def test_owed_deliveries_give_up_after_three_days_of_sandbox_time(webhook_sink):
    server = await SandboxServer(
        store=Store(webhook_secret=WEBHOOK_SECRET), retry_delays=(0.05,)
    ).start()
    client = sdk(server.url)
    webhook_sink.failures_left = 10**6
    await client.v1.webhook_endpoints.create_async(
        {"url": webhook_sink.url, "enabled_events": ["customer.created"]}
    )
    await client.v1.customers.create_async({"email": "late@example.com"})
    async with asyncio.timeout(PATIENCE_SECONDS):
        while webhook_sink.attempts < 2:  # the first attempt and the quick retry failed
            await asyncio.sleep(0.05)
    assert len(server.store.deliveries) == 1  # next due a minute on: still owed
    await sandbox_post(server, "/_sandbox/clock/advance", {"seconds": str(RETRY_WINDOW + 60)})
    async with asyncio.timeout(PATIENCE_SECONDS):
        while server.store.deliveries:  # one last try, failed, and then no more
            await asyncio.sleep(0.05)
    assert webhook_sink.attempts == 3 and webhook_sink.received == []
    await server.stop()


@dataclass
class SandboxProcess:
    """`billing-gateway sandbox` on a state file, as a user runs it."""

    port: int
    state_file: Path
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            CONSOLE_SCRIPT,
            *("sandbox", "--port", str(self.port), "--state-file", str(self.state_file)),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        async with httpx.AsyncClient() as http, asyncio.timeout(PATIENCE_SECONDS):
            while True:
                try:
                    await http.get(f"{self.url}/v1/events", headers={"Authorization": "Bearer x"})
                    return
                except httpx.TransportError:
                    await asyncio.sleep(0.1)

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()


@pytest.fixture
async def sandbox_process(tmp_path):
    sandbox = SandboxProcess(free_port(), tmp_path / "state.json")
    yield sandbox
    await sandbox.kill()


async def all_events(client: stripe.StripeClient) -> list[stripe.Event]:
    return (await client.v1.events.list_async({"limit": 100})).data


async def test_a_killed_sandbox_delivers_what_it_owed_after_restart(sandbox_process, webhook_sink):
    await sandbox_process.start()
    client = sdk(sandbox_process.url)
    endpoint = await client.v1.webhook_endpoints.create_async(
        {"url": webhook_sink.url, "enabled_events": ["*"]}
    )
    path = f"/_sandbox/webhook_endpoints/{endpoint.id}/chaos"
    assert (await sandbox_post(sandbox_process, path, {"duplicate": "1"})).status_code == 200
    webhook_sink.failures_left = 10**6  # the receiver is down
    _, price = await catalog(client)
    customer, _ = await customer_with_card(client)
    await subscribe(client, customer, price)
    sent = [event.id for event in await all_events(client)]
    async with asyncio.timeout(PATIENCE_SECONDS):
        while webhook_sink.attempts < 2 * len(sent):  # each event and its copy failed once
            await asyncio.sleep(0.05)
    await sandbox_process.kill()

    webhook_sink.failures_left = 0  # the receiver is back, and so is the sandbox
    await sandbox_process.start()
    # Every event, and its copy (the chaos settings were persisted too), arrives once more.
    received = await webhook_sink.wait_for(2 * len(sent), timeout=PATIENCE_SECONDS)
    assert sorted(event["id"] for event in received) == sorted(sent * 2)
    async with asyncio.timeout(PATIENCE_SECONDS):
        while any(event.pending_webhooks for event in await all_events(client)):
            await asyncio.sleep(0.1)
