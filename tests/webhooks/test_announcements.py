"""What Stripe's events announce (services/announcements.py): real sandbox lifecycles, their
events applied as the worker applies them (shuffled, twice, concurrently), and the outbox's
mails and product events read back: one per cause, whatever the delivery."""

import json
import random
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select, update

from db.models import (
    Account,
    CreditEntryKind,
    DeliveryStatus,
    Notification,
    ProductEvent,
    ProductWebhookDelivery,
)
from services import credits, notifications, product_webhooks
from services.credits import Posting
from services.stripe.client import StripeApi
from tests.smtp_server import Inbox, serve
from tests.webhooks import lifecycles
from tests.webhooks.lifecycles import apply_all, apply_concurrently


def data_of(event: ProductEvent) -> Any:
    """A stored product event's data, as its deliveries carry it (it is stored sealed)."""
    return json.loads(product_webhooks.body_of(event.payload))["data"]


EMAIL = "buyer@example.com"


@pytest.fixture
async def api(settings, billing):
    async with StripeApi(settings, billing.sandbox.url) as api:
        yield api


@pytest.fixture
async def endpoint(db, settings):
    """An endpoint of the product's backend receiving every event type."""
    async with db.session() as session:
        row, _ = await product_webhooks.create_endpoint(
            session, url="http://127.0.0.1:9/hooks", event_types=None, settings=settings
        )
    return row.id


async def lived(db, api, billing, life: lifecycles.Life, **params: Any) -> lifecycles.Recorded:
    """A lifecycle of a customer with an email address, its events not applied yet."""
    user_id = f"user-{random.randrange(10**9)}"
    customer = await lifecycles.new_customer(db, billing, user_id, email=EMAIL, **params)
    async with db.session() as session, session.begin():
        await session.execute(
            update(Account).where(Account.id == customer.account_id).values(email=EMAIL)
        )
    await life(api, billing, customer)
    return lifecycles.Recorded(customer, await lifecycles.events_of(billing, customer.stripe_id))


async def mails(db, account_id: int) -> Counter[tuple[str, str]]:
    async with db.session() as session:
        rows = await session.execute(
            select(Notification.kind, Notification.status).where(
                Notification.account_id == account_id
            )
        )
    return Counter((kind.value, status.value) for kind, status in rows)


async def product_events(db, account_id: int) -> list[ProductEvent]:
    async with db.session() as session:
        rows = await session.scalars(
            select(ProductEvent)
            .where(ProductEvent.account_id == account_id)
            .order_by(ProductEvent.id)
        )
    return list(rows)


async def test_a_lifecycle_announces_each_cause_once_however_its_events_arrive(
    db, api, billing, endpoint
):
    recorded = await lived(db, api, billing, lifecycles.happy_life)
    shuffled = random.Random(7).sample(recorded.events, len(recorded.events))

    await apply_all(db, api, shuffled)
    await apply_concurrently(db, api, recorded.events + shuffled)

    account_id = recorded.customer.account_id
    # Paid: the first invoice and the upgrade's proration; refunded once; canceled once.
    assert await mails(db, account_id) == Counter(
        {
            ("receipt", "pending"): 2,
            ("refund_issued", "pending"): 1,
            ("subscription_canceled", "pending"): 1,
        }
    )
    events = await product_events(db, account_id)
    types = Counter(event.type for event in events)
    assert types["subscription.created"] == 1 and types["subscription.canceled"] == 1
    assert types["invoice.paid"] == 2 and types["payment.succeeded"] == 2
    assert types["access.updated"] >= 1
    assert len({event.cause for event in events}) == len(events)
    async with db.session() as session:
        deliveries = (
            await session.scalars(
                select(ProductWebhookDelivery).where(
                    ProductWebhookDelivery.account_id == account_id
                )
            )
        ).all()
    assert sorted(delivery.event_id for delivery in deliveries) == [event.id for event in events]
    assert {delivery.endpoint_id for delivery in deliveries} == {endpoint}


async def test_bodies_show_objects_as_the_api_does(db, api, billing, endpoint):
    recorded = await lived(db, api, billing, lifecycles.happy_life)
    await apply_all(db, api, recorded.events)

    events = await product_events(db, recorded.customer.account_id)
    paid = next(event for event in events if event.type == "invoice.paid")
    body = json.loads(product_webhooks.body_of(paid.payload))
    assert body["id"] == paid.message_id and body["id"].startswith("msg_")
    assert body["type"] == "invoice.paid"
    assert datetime.fromisoformat(body["timestamp"]).tzinfo is not None
    invoice = body["data"]
    assert invoice["status"] == "PAID" and invoice["stripeInvoiceId"].startswith("in_")
    assert invoice["amountPaid"]["currency"] == "USD"
    assert int(invoice["amountPaid"]["amount"]) > 0
    async with db.session() as session:
        user_id = await session.scalar(
            select(Account.user_id).where(Account.id == recorded.customer.account_id)
        )
    assert invoice["customer"]["userId"] == user_id
    created = next(event for event in events if event.type == "subscription.created")
    assert data_of(created)["plan"]["productName"] == "Starter"
    access = [data_of(event) for event in events if event.type == "access.updated"]
    assert access[0]["status"] in {"ACTIVE", "CANCELING"} and access[0]["hasAccess"] is True


async def test_a_declined_renewal_mails_the_customer_and_announces_the_grace_period(
    db, api, billing, endpoint, settings
):
    now = int(datetime.now(UTC).timestamp())
    clock = await billing.stripe.v1.test_helpers.test_clocks.create_async({"frozen_time": now})

    async def declined_renewal(api, billing, customer):
        good = await lifecycles.attach(api, customer, "pm_card_visa")
        subscription = await lifecycles.subscribe(api, billing, customer, good, "starter_monthly")
        bad = await lifecycles.attach(api, customer, "pm_card_chargeCustomerFail")
        await billing.stripe.v1.subscriptions.update_async(
            subscription["id"], {"default_payment_method": bad}
        )
        period_end = subscription["items"]["data"][0]["current_period_end"]
        await billing.stripe.v1.test_helpers.test_clocks.advance_async(
            clock.id, {"frozen_time": period_end + 7200}
        )

    recorded = await lived(db, api, billing, declined_renewal, test_clock=clock.id)
    await apply_all(db, api, recorded.events)
    account_id = recorded.customer.account_id
    announced = [event.cause for event in await product_events(db, account_id)]
    await apply_all(db, api, recorded.events)

    assert [event.cause for event in await product_events(db, account_id)] == announced
    found = await mails(db, account_id)
    assert found[("receipt", "pending")] == 1
    assert found[("payment_failed", "pending")] >= 1
    async with db.session() as session:
        failed = await session.scalar(
            select(Notification).where(
                Notification.account_id == account_id, Notification.kind == "payment_failed"
            )
        )
    assert failed.recipient == EMAIL and failed.context["pay_url"]
    events = await product_events(db, account_id)
    assert any(event.type == "invoice.payment_failed" for event in events)
    access = [data_of(event) for event in events if event.type == "access.updated"]
    # Applied in order, the mirror (and so access) follows Stripe: it ends in the grace period.
    assert access[-1]["status"] == "GRACE_PERIOD" and access[-1]["hasAccess"] is True
    assert access[-1]["until"] and access[-1]["subscription"]["status"] == "PAST_DUE"

    inbox = Inbox()
    with serve(inbox) as smtp:
        url = f"smtp://127.0.0.1:{smtp.port}"
        mailing = settings.model_copy(update={"smtp_url": SecretStr(url)})
        while await notifications.send_next(db, mailing):
            pass
    (sent,) = [got.message for got in inbox.messages if got.message["Subject"] == failed.subject]
    text = sent.get_body(("plain",)).get_content()
    assert sent["To"] == EMAIL
    assert failed.context["amount"] in text and failed.context["pay_url"] in text


async def test_three_d_secure_asks_the_customer_to_act(db, api, billing, endpoint):
    async def challenged(api, billing, customer):
        method = await lifecycles.attach(api, customer, "pm_card_authenticationRequired")
        await lifecycles.subscribe(api, billing, customer, method, "pro_monthly")

    recorded = await lived(db, api, billing, challenged)
    await apply_all(db, api, recorded.events)
    account_id = recorded.customer.account_id
    asked = await mails(db, account_id)

    intent = next(
        event["data"]["object"]["id"]
        for event in recorded.events
        if event["type"] == "payment_intent.requires_action"
    )
    await lifecycles.browser(
        billing, f"/_sandbox/payment_intents/{intent}/authenticate", outcome="succeed"
    )
    await apply_all(db, api, await lifecycles.events_of(billing, recorded.customer.stripe_id))

    assert asked == Counter({("payment_action_required", "pending"): 1})
    assert await mails(db, account_id) == Counter(
        {("payment_action_required", "pending"): 1, ("receipt", "pending"): 1}
    )


async def test_receipts_turned_off_are_kept_as_skipped(db, api, billing, endpoint):
    recorded = await lived(db, api, billing, lifecycles.happy_life)
    async with db.session() as session, session.begin():
        await session.execute(
            update(Account)
            .where(Account.id == recorded.customer.account_id)
            .values(notify_receipts=False)
        )
    await apply_all(db, api, recorded.events)

    found = await mails(db, recorded.customer.account_id)
    assert found[("receipt", "skipped")] == 2 and found[("receipt", "pending")] == 0
    # Cancellation is not a receipt: it still goes.
    assert found[("subscription_canceled", "pending")] == 1


async def test_every_credit_entry_announces_credits_updated(db, billing, endpoint):
    customer = await lifecycles.new_customer(db, billing, "credits-user")
    async with db.session() as session, session.begin():
        for key in ("grant-1", "grant-1", "grant-2"):
            await credits.post(
                session,
                account_id=customer.account_id,
                posting=Posting(
                    kind=CreditEntryKind.GRANT,
                    amount=50,
                    reason="test",
                    idempotency_key=key,
                    actor="test",
                ),
            )

    events = await product_events(db, customer.account_id)
    assert [event.type for event in events] == ["credits.updated", "credits.updated"]
    assert [data_of(event)["balance"] for event in events] == ["50", "100"]
    assert data_of(events[1])["kind"] == "GRANT"


async def test_no_endpoint_no_deliveries(db, api, billing):
    recorded = await lived(db, api, billing, lifecycles.happy_life)
    await apply_all(db, api, recorded.events)

    assert await product_events(db, recorded.customer.account_id)
    async with db.session() as session:
        pending = await session.scalar(
            select(ProductWebhookDelivery.id).where(
                ProductWebhookDelivery.status == DeliveryStatus.PENDING
            )
        )
    assert pending is None
