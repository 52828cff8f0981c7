"""End to end over real HTTP: the sandbox delivers each event twice and out of order to a
running gateway, whose worker grants and reverses credits exactly once."""

import asyncio

import httpx
from sqlalchemy import func, select

from db.models import Account, StripeEvent, WebhookEventStatus
from gateway.app import create_app
from tests.credits.support import wallet
from tests.webhooks.test_end_to_end import running_gateway


async def settled_ledger(db, account_id: int, entries: int) -> list[tuple[str, int]]:
    """The ledger once it has `entries` entries and the inbox has nothing pending."""
    async with asyncio.timeout(30):
        while True:
            state = await wallet(db, account_id)
            async with db.session() as session:
                pending = await session.scalar(
                    select(func.count())
                    .select_from(StripeEvent)
                    .where(StripeEvent.status == WebhookEventStatus.PENDING)
                )
            if len(state.entries) >= entries and pending == 0:
                assert state.balance == state.ledger_sum
                return [(e.kind.value, e.amount) for e in state.entries]
            await asyncio.sleep(0.05)


async def test_duplicated_and_reordered_deliveries_grant_and_reverse_once(db, billing, settings):
    server, task, port = await running_gateway(create_app(settings, database=db, start_worker=True))
    try:
        v1 = billing.stripe.v1
        endpoint = await v1.webhook_endpoints.create_async(
            {"url": f"http://127.0.0.1:{port}/webhooks/stripe", "enabled_events": ["*"]}
        )
        async with httpx.AsyncClient(base_url=billing.sandbox.url) as http:
            chaos = {"duplicate": "1", "reorder": "true", "window": "50", "seed": "11"}
            response = await http.post(
                f"/_sandbox/webhook_endpoints/{endpoint.id}/chaos", data=chaos
            )
            response.raise_for_status()
        customer = await v1.customers.create_async({"email": "chaos@example.com"})
        async with db.session() as session, session.begin():
            account = Account(user_id="chaos", stripe_customer_id=customer.id)
            session.add(account)
        method = await v1.payment_methods.attach_async("pm_card_visa", {"customer": customer.id})
        created = await v1.subscriptions.create_async(
            {
                "customer": customer.id,
                "items": [{"price": billing.plans["starter_monthly"].stripe_price_id}],
                "default_payment_method": method.id,
                "expand": ["latest_invoice.payments"],
            }
        )
        intent = created.to_dict()["latest_invoice"]["payments"]["data"][0]["payment"]
        await v1.refunds.create_async({"payment_intent": intent["payment_intent"], "amount": 450})

        ledger = await settled_ledger(db, account.id, entries=2)

        assert ledger == [("grant", 100), ("reversal", -50)]
    finally:
        server.should_exit = True
        await task
