"""Live updates end to end: Stripe (the sandbox) delivers webhooks to a served gateway whose
worker applies them, and dashboards see the result over websockets."""

from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.app import create_app
from tests.conftest import Billing, graphql
from tests.live.support import LEGACY_WS, Gateway, LiveClient, serving, subscribed
from tests.webhooks.support import make_event, post_event

CREATE_PAYMENT = """
mutation ($input: CreatePaymentInput!) {
  createPayment(input: $input) {
    transaction { id status } clientSecret requiresAction userErrors { code }
  }
}
"""
PAYMENT_STATUS = """
subscription ($id: ID!) {
  paymentStatus(transactionId: $id) { id status amount { amount } failureCode }
}
"""
BILLING_UPDATES = """
subscription { billingUpdates { kind creditBalance transaction { id status } } }
"""
WEBHOOK_EVENTS = "subscription { webhookEvents { id stripeEventId type status } }"


@pytest.fixture
async def served(settings, db, billing: Billing) -> AsyncIterator[Gateway]:
    """A gateway with its worker, registered as the sandbox's webhook endpoint."""
    async with serving(create_app(settings, database=db, start_worker=True)) as gateway:
        await billing.stripe.v1.webhook_endpoints.create_async(
            {"url": f"{gateway.http_url}/webhooks/stripe", "enabled_events": ["*"]}
        )
        yield gateway


async def three_d_secure_payment(gateway: Gateway, token: str) -> str:
    """A payment waiting for 3-D Secure, made with createPayment; its id."""
    variables = {
        "input": {
            "amount": "1250",
            "currency": "usd",
            "paymentMethodId": "pm_card_authenticationRequired",
            "idempotencyKey": "3ds-1",
        }
    }
    async with httpx.AsyncClient(base_url=gateway.http_url) as http:
        created = await graphql(http, CREATE_PAYMENT, variables, token=token)
    payment = created["data"]["createPayment"]
    assert payment["userErrors"] == [] and payment["requiresAction"] is True
    return payment["transaction"]["id"]


async def answer_challenge(billing: Billing, outcome: str) -> None:
    """The customer passes (or fails) the challenge in their browser."""
    [intent] = (await billing.stripe.v1.payment_intents.list_async({"limit": 1})).data
    async with httpx.AsyncClient(base_url=billing.sandbox.url) as browser:
        answer = await browser.post(
            f"/_sandbox/payment_intents/{intent.id}/authenticate", data={"outcome": outcome}
        )
    answer.raise_for_status()


async def test_three_d_secure_payment_settles_live(served, billing, token_for):
    token = token_for("alice")
    transaction_id = await three_d_secure_payment(served, token)
    async with (
        LiveClient.connected(served) as status_client,
        LiveClient.connected(served) as dashboard,
    ):
        await dashboard.sign_in(token)
        await dashboard.subscribe(BILLING_UPDATES)
        await status_client.sign_in(token)
        await status_client.subscribe(PAYMENT_STATUS, {"id": transaction_id})
        first = (await status_client.next_data())["paymentStatus"]
        assert first == {
            "id": transaction_id,
            "status": "REQUIRES_ACTION",
            "amount": {"amount": "1250"},
            "failureCode": None,
        }
        await subscribed(served, 2)

        await answer_challenge(billing, "succeed")

        status = first
        while status["status"] != "SUCCEEDED":
            status = (await status_client.next_data())["paymentStatus"]
        # Settled: the subscription completes by itself.
        assert (await status_client.receive())["type"] == "complete"

        # The dashboard sees the payment settle and the credits it bought (the payment's grant:
        # 12.50 USD at 10 credits per dollar), in whichever order they commit.
        seen: list[dict] = []
        while not (settled_payment(seen) and credited(seen)):
            seen.append((await dashboard.next_data())["billingUpdates"])
    assert settled_payment(seen)["transaction"]["id"] == transaction_id
    assert credited(seen)["creditBalance"] == "125"


def settled_payment(updates: list[dict]) -> dict | None:
    return next(
        (
            update
            for update in updates
            if update["kind"] == "PAYMENT_UPDATED"
            and update["transaction"]["status"] == "SUCCEEDED"
        ),
        None,
    )


def credited(updates: list[dict]) -> dict | None:
    return next((update for update in updates if update["kind"] == "CREDITS_UPDATED"), None)


async def test_payment_status_completes_when_three_d_secure_fails(served, billing, token_for):
    token = token_for("alice")
    transaction_id = await three_d_secure_payment(served, token)
    async with LiveClient.connected(served, protocol=LEGACY_WS) as live:
        await live.sign_in(token)
        await live.subscribe(PAYMENT_STATUS, {"id": transaction_id})
        status = (await live.next_data())["paymentStatus"]
        await subscribed(served, 1)

        await answer_challenge(billing, "fail")

        while status["failureCode"] is None:
            status = (await live.next_data())["paymentStatus"]
        assert (await live.receive())["type"] == "complete"
    assert status["status"] == "REQUIRES_PAYMENT_METHOD"
    assert status["failureCode"] == "payment_intent_authentication_failure"


async def test_admins_see_webhook_events_received_and_settled(served, token_for):
    async with LiveClient.connected(served) as live:
        await live.sign_in(token_for("ops", admin=True))
        await live.subscribe(WEBHOOK_EVENTS)
        await subscribed(served, 1)
        event = make_event("test.nothing_handles_this")

        async with httpx.AsyncClient(base_url=served.http_url) as http:
            assert (await post_event(http, event)).status_code == 200

        seen = [(await live.next_data())["webhookEvents"]]
        while seen[-1]["status"] != "SKIPPED":
            seen.append((await live.next_data())["webhookEvents"])
    assert {item["stripeEventId"] for item in seen} == {event["id"]}
    assert {item["type"] for item in seen} == {"test.nothing_handles_this"}
