"""Mail and the product's webhooks from `billing-gateway serve` on embedded defaults, to a
real SMTP server (aiosmtpd) and a real HTTP endpoint in this process, verified as a product
backend verifies them (the `standardwebhooks` package); and a SIGKILL while a mail and a
delivery are in flight loses neither and makes no second row or message id."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook

from tests.served import ServedGateway, free_port, served
from tests.smtp_server import Inbox, serve

# Guards against a gateway that never sends, never a measure of speed.
PATIENCE_SECONDS = 120.0
BUYER = "buyer@example.com"

CREATE_ENDPOINT = """
mutation ($input: CreateProductWebhookEndpointInput!) {
  createProductWebhookEndpoint(input: $input) {
    endpoint { id } secret userErrors { code field message }
  }
}
"""
UPDATE_DETAILS = """
mutation ($input: UpdateBillingDetailsInput!) {
  updateBillingDetails(input: $input) { userErrors { code message } }
}
"""
LATEST_INVOICE = """
query { viewer { subscriptions(first: 1) { edges { node { latestInvoice { number } } } } } }
"""
MAILS = """
query { admin { notifications(first: 50) { edges { node { kind status attempts subject } } } } }
"""
DELIVERIES = """
query { admin { productWebhookDeliveries(first: 100) { edges { node {
  messageId eventType status attempts
} } } } }
"""


@dataclass
class Endpoint:
    """A product backend's webhook route; with `hold` set, the first request is held
    unanswered until `release` is set."""

    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    hold: bool = False
    held: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((dict(request.headers), body))
        if self.hold and not self.held.is_set():
            self.held.set()
            await self.release.wait()
        return web.Response(status=204)


@contextlib.asynccontextmanager
async def http_endpoint(endpoint: Endpoint) -> AsyncIterator[Endpoint]:
    app = web.Application()
    app.router.add_post("/hooks", endpoint.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    endpoint.url = f"http://127.0.0.1:{port}/hooks"
    try:
        yield endpoint
    finally:
        endpoint.release.set()
        await runner.cleanup()


@contextlib.asynccontextmanager
async def gateway_with_outbox(inbox: Inbox, endpoint: Endpoint) -> AsyncIterator[ServedGateway]:
    with serve(inbox) as smtp:
        async with http_endpoint(endpoint):
            env = {
                "SMTP_URL": f"smtp://127.0.0.1:{smtp.port}",
                "MAIL_FROM": "billing@acme.example",
                "PRODUCT_NAME": "Acme Cloud",
                "OUTBOX_POLL_SECONDS": "0.2",
                "PRODUCT_WEBHOOK_TIMEOUT_SECONDS": "5",
            }
            async with served(env) as gateway:
                yield gateway


async def eventually(check: Callable[[], Any]) -> Any:
    """`check()`'s first truthy answer, polled (it may be a coroutine function)."""
    async with asyncio.timeout(PATIENCE_SECONDS):
        while True:
            answer = check()
            if asyncio.iscoroutine(answer):
                answer = await answer
            if answer:
                return answer
            await asyncio.sleep(0.2)


async def register_endpoint(gateway: ServedGateway, url: str) -> str:
    admin = await gateway.token("ops", admin=True)
    payload = (await gateway.execute(CREATE_ENDPOINT, {"input": {"url": url}}, token=admin))[
        "createProductWebhookEndpoint"
    ]
    assert payload["userErrors"] == [], payload
    return payload["secret"]


async def subscribed_buyer(gateway: ServedGateway) -> str:
    token = await gateway.token("buyer")
    details = await gateway.execute(UPDATE_DETAILS, {"input": {"email": BUYER}}, token=token)
    assert details["updateBillingDetails"]["userErrors"] == []
    await gateway.subscribe_customer(token)
    return token


def verified(secret: str, received: list[tuple[dict[str, str], bytes]]) -> list[dict[str, Any]]:
    """Each delivery's body, verified as the product's backend verifies it."""
    hook = Webhook(secret)
    return [hook.verify(body, headers) for headers, body in received]


def receipts(inbox: Inbox) -> list[EmailMessage]:
    return [got.message for got in inbox.messages if "Receipt" in got.message["Subject"]]


async def test_a_subscription_mails_its_receipt_and_signs_its_events():
    inbox, endpoint = Inbox(), Endpoint()
    async with gateway_with_outbox(inbox, endpoint) as gateway:
        secret = await register_endpoint(gateway, endpoint.url)
        token = await subscribed_buyer(gateway)

        (receipt,) = await eventually(lambda: receipts(inbox))
        types = await eventually(
            lambda: (
                {"invoice.paid", "access.updated"}
                <= {body["type"] for body in verified(secret, endpoint.received)}
                and {body["type"] for body in verified(secret, endpoint.received)}
            )
        )
        edges = (await gateway.execute(LATEST_INVOICE, token=token))["viewer"]["subscriptions"]
        number = edges["edges"][0]["node"]["latestInvoice"]["number"]

    assert receipt["To"] == BUYER and "Acme Cloud" in receipt["From"]
    assert number in receipt["Subject"]
    text = receipt.get_body(("plain",)).get_content()
    assert number in text and "Acme Cloud" in text
    (pdf,) = [part for part in receipt.iter_attachments()]
    assert pdf.get_content_type() == "application/pdf"
    assert pdf.get_content().startswith(b"%PDF") and number in pdf.get_filename()
    assert {"subscription.created", "invoice.paid", "payment.succeeded", "access.updated"} <= types
    bodies = verified(secret, endpoint.received)
    paid = next(body for body in bodies if body["type"] == "invoice.paid")
    assert paid["data"]["number"] == number and paid["data"]["status"] == "PAID"
    access = next(body for body in bodies if body["type"] == "access.updated")
    assert access["data"]["status"] == "ACTIVE" and access["data"]["hasAccess"] is True
    ids = [headers["webhook-id"] for headers, _ in endpoint.received]
    assert len(ids) == len(set(ids)) and all(body["id"] in ids for body in bodies)


async def test_a_kill_mid_send_loses_and_duplicates_nothing():
    inbox, endpoint = Inbox(hold=True), Endpoint(hold=True)
    async with gateway_with_outbox(inbox, endpoint) as gateway:
        secret = await register_endpoint(gateway, endpoint.url)
        await subscribed_buyer(gateway)
        await eventually(inbox.held.is_set)
        await eventually(endpoint.held.is_set)
        interrupted_id = endpoint.received[0][0]["webhook-id"]

        await gateway.kill()
        inbox.hold = False  # the server answers what comes next
        inbox.release.set()
        endpoint.release.set()
        await gateway.restart()

        (receipt,) = await eventually(lambda: receipts(inbox))
        admin = await gateway.token("ops", admin=True)

        async def all_sent() -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
            mails = (await gateway.execute(MAILS, token=admin))["admin"]["notifications"]
            deliveries = (await gateway.execute(DELIVERIES, token=admin))["admin"]
            rows = [edge["node"] for edge in deliveries["productWebhookDeliveries"]["edges"]]
            nodes = [edge["node"] for edge in mails["edges"]]
            done = all(row["status"] == "SENT" for row in rows + nodes)
            return (rows, nodes) if done and rows and nodes else None

        deliveries, mails = await eventually(all_sent)

    bodies = verified(secret, endpoint.received)
    retried = [
        headers for headers, _ in endpoint.received if headers["webhook-id"] == interrupted_id
    ]
    # The interrupted delivery was sent again with its id, and nothing else twice.
    assert len(retried) == 2
    delivered_ids = {row["messageId"] for row in deliveries}
    assert len(delivered_ids) == len(deliveries) == len({body["id"] for body in bodies})
    assert {headers["webhook-id"] for headers, _ in endpoint.received} == delivered_ids
    # One receipt row, sent on its second attempt, and one message: the interrupted attempt
    # was answered by nobody.
    assert [(mail["kind"], mail["attempts"]) for mail in mails] == [("RECEIPT", 2)]
    assert len(receipts(inbox)) == 1 and receipt["To"] == BUYER
