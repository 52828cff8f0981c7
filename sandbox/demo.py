"""The sandbox as `serve` runs it when no Stripe key is set: on loopback, with the gateway's
webhook endpoint registered and a small catalog to subscribe to."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import stripe

from gateway.settings import SANDBOX_API_KEY
from sandbox.server import SandboxServer
from sandbox.store import Store

# (product, monthly amount in cents, credits a month); yearly prices are ten months' worth
# of money for twelve months of credits.
CATALOG = (("Starter", 900, 100), ("Pro", 2900, 1000))
# Where `serve` records its sandbox's address, for `sync`, `worker` and `events` to reach it.
SANDBOX_URL_FILE = "sandbox-url"


def recorded_sandbox_url(data_dir: Path) -> str | None:
    """The address `serve` last gave its sandbox under `data_dir`, if any."""
    path = data_dir / SANDBOX_URL_FILE
    url = path.read_text().strip() if path.is_file() else ""
    return url if url.startswith("http://127.0.0.1:") else None


@asynccontextmanager
async def sdk_client(base_url: str) -> AsyncIterator[stripe.StripeClient]:
    """The Stripe SDK on the sandbox, on its aiohttp client (closed after)."""
    http = stripe.AIOHTTPClient()
    try:
        yield stripe.StripeClient(
            SANDBOX_API_KEY, base_addresses={"api": base_url}, http_client=http
        )
    finally:
        await http.close_async()


async def start_demo_sandbox(
    *, webhook_url: str, webhook_secret: str, data_dir: Path
) -> SandboxServer:
    """The sandbox on the port it had last time (so its address survives a restart), with its
    state under `data_dir`; the address is recorded there for the other commands. Webhooks
    wait for `server.deliverer.open()`: the receiver starts listening after this."""
    store = Store(webhook_secret=webhook_secret)
    state_file = data_dir / "sandbox-state.json"
    previous = recorded_sandbox_url(data_dir)
    port = int(previous.rsplit(":", 1)[1]) if previous else 0
    server = SandboxServer(port=port, store=store, state_file=state_file, hold_deliveries=True)
    try:
        await server.start()
    except OSError:  # taken by now: any free port
        server.port = 0
        await server.start()
    (data_dir / SANDBOX_URL_FILE).write_text(server.url)
    async with sdk_client(server.url) as client:
        await ensure_webhook_endpoint(client, webhook_url)
        await seed_catalog(client)
    return server


async def ensure_webhook_endpoint(client: stripe.StripeClient, url: str) -> None:
    endpoints = await client.v1.webhook_endpoints.list_async({"limit": 100})
    if not any(endpoint.url == url for endpoint in endpoints.data):
        await client.v1.webhook_endpoints.create_async({"url": url, "enabled_events": ["*"]})


async def seed_catalog(client: stripe.StripeClient) -> None:
    """Starter and Pro, monthly and yearly, each price with `credits` metadata; once only."""
    existing = await client.v1.prices.list_async({"limit": 100})
    known = {price.lookup_key for price in existing.data}
    for name, monthly, credits in CATALOG:
        if f"{name.lower()}_monthly" in known:
            continue
        product = await client.v1.products.create_async(
            {"name": name, "description": f"The {name} plan"}
        )
        for interval, amount, cycle_credits in (
            ("month", monthly, credits),
            ("year", monthly * 10, credits * 12),
        ):
            await client.v1.prices.create_async(
                {
                    "product": product.id,
                    "currency": "usd",
                    "unit_amount": amount,
                    "recurring": {"interval": interval},
                    "lookup_key": f"{name.lower()}_{interval}ly",
                    "metadata": {"credits": str(cycle_credits)},
                }
            )
