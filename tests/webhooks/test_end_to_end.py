"""End to end over real HTTP: the sandbox delivers signed webhooks to a running gateway,
whose worker applies them to the mirror."""

import asyncio
import socket

import uvicorn
from sqlalchemy import select

from db.models import Account, Invoice, InvoiceStatus, Subscription, SubscriptionStatus
from gateway.app import create_app
from sandbox.server import EmbeddedServer


async def running_gateway(app) -> tuple[EmbeddedServer, asyncio.Task, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = EmbeddedServer(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    return server, task, sock.getsockname()[1]


async def settled(db, subscription_id: str, invoice_id: str) -> tuple[Subscription, Invoice]:
    """The mirrored subscription and invoice, once webhooks have made them active and paid."""
    async with asyncio.timeout(10):
        while True:
            async with db.session() as session:
                row = await session.scalar(
                    select(Subscription).where(
                        Subscription.stripe_subscription_id == subscription_id
                    )
                )
                invoice = await session.scalar(
                    select(Invoice).where(Invoice.stripe_invoice_id == invoice_id)
                )
            if (
                row is not None
                and row.status is SubscriptionStatus.ACTIVE
                and invoice is not None
                and invoice.status is InvoiceStatus.PAID
            ):
                return row, invoice
            await asyncio.sleep(0.05)


async def test_a_subscription_made_in_stripe_reaches_the_mirror_by_webhook(db, billing, settings):
    server, task, port = await running_gateway(create_app(settings, database=db, start_worker=True))
    try:
        await billing.stripe.v1.webhook_endpoints.create_async(
            {"url": f"http://127.0.0.1:{port}/webhooks/stripe", "enabled_events": ["*"]}
        )
        customer = await billing.stripe.v1.customers.create_async({"email": "e2e@example.com"})
        async with db.session() as session, session.begin():
            session.add(Account(user_id="e2e", stripe_customer_id=customer.id))
        method = await billing.stripe.v1.payment_methods.attach_async(
            "pm_card_visa", {"customer": customer.id}
        )
        created = await billing.stripe.v1.subscriptions.create_async(
            {
                "customer": customer.id,
                "items": [{"price": billing.plans["pro_monthly"].stripe_price_id}],
                "default_payment_method": method.id,
            }
        )

        row, invoice = await settled(db, created.id, created.latest_invoice)

        assert row.plan_id == billing.plans["pro_monthly"].id
        assert invoice.amount_paid == 2900 and invoice.subscription_stripe_id == created.id
    finally:
        server.should_exit = True
        await task
