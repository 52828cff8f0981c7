"""The sandbox as `serve` runs it when no Stripe key is set: on loopback, with the gateway's
webhook endpoint registered and a small catalog to subscribe to."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import stripe

from gateway.settings import SANDBOX_API_KEY
from sandbox.server import SandboxServer
from sandbox.store import Store

# (product, monthly amount in US cents, in Australian cents, credits a month); yearly prices
# are ten months' worth of money for twelve months of credits.
CATALOG = (("Starter", 900, 1400, 100), ("Pro", 2900, 4500, 1000))
# The promotion code the demo's customers can type (20% off their first invoice).
WELCOME_CODE = "WELCOME20"
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
        await seed_promotions(client)
    return server


async def ensure_webhook_endpoint(client: stripe.StripeClient, url: str) -> None:
    endpoints = await client.v1.webhook_endpoints.list_async({"limit": 100})
    if not any(endpoint.url == url for endpoint in endpoints.data):
        await client.v1.webhook_endpoints.create_async({"url": url, "enabled_events": ["*"]})


async def seed_promotions(client: stripe.StripeClient) -> None:
    """The "20% off" coupon (the first invoice only) and its promotion code; once only."""
    existing = await client.v1.promotion_codes.list_async({"code": WELCOME_CODE, "limit": 1})
    if existing.data:
        return
    coupon = await client.v1.coupons.create_async(
        {"name": "20% off", "percent_off": 20, "duration": "once"}
    )
    await client.v1.promotion_codes.create_async(
        {"promotion": {"type": "coupon", "coupon": coupon.id}, "code": WELCOME_CODE}
    )


async def seed_catalog(client: stripe.StripeClient) -> None:
    """Starter and Pro, monthly and yearly, in USD and AUD (tax exclusive), each price with
    `credits` metadata; once only (a catalog seeded before AUD gains it)."""
    existing = await client.v1.prices.list_async(
        {"limit": 100, "expand": ["data.currency_options"]}
    )
    known = {price.lookup_key: price for price in existing.data}
    for name, usd, aud, credits in CATALOG:
        if f"{name.lower()}_monthly" not in known:
            await _new_product(client, name, usd, aud, credits)
            continue
        for interval, months in (("month", 1), ("year", 10)):
            price = known.get(f"{name.lower()}_{interval}ly")
            if price is not None and "aud" not in price.currency_options.to_dict():
                options: Any = {"aud": {"unit_amount": aud * months, "tax_behavior": "exclusive"}}
                # A price's tax behavior can be set once while it is still unspecified.
                await client.v1.prices.update_async(
                    price.id, {"currency_options": options, "tax_behavior": "exclusive"}
                )


async def _new_product(
    client: stripe.StripeClient, name: str, usd: int, aud: int, credits: int
) -> None:
    product = await client.v1.products.create_async(
        {"name": name, "description": f"The {name} plan"}
    )
    for interval, months, cycle_credits in (("month", 1, credits), ("year", 10, credits * 12)):
        await client.v1.prices.create_async(
            {
                "product": product.id,
                "currency": "usd",
                "unit_amount": usd * months,
                "tax_behavior": "exclusive",
                "currency_options": {
                    "aud": {"unit_amount": aud * months, "tax_behavior": "exclusive"}
                },
                "recurring": {"interval": interval},
                "lookup_key": f"{name.lower()}_{interval}ly",
                "metadata": {"credits": str(cycle_credits)},
            }
        )
