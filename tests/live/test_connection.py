"""Websocket connections: both subprotocols, the token in `connection_init`, its expiry,
unknown subprotocols, and who may subscribe to what."""

from datetime import UTC, datetime, timedelta

import pytest

from db.models import Invoice, InvoiceStatus, Subscription, SubscriptionStatus
from schema.ids import to_global_id
from services import mirror
from services.live import UpdateKind
from services.stripe.client import StripeApi
from tests import factories
from tests.conftest import error_codes
from tests.live.support import (
    LEGACY_WS,
    TRANSPORT_WS,
    LiveClient,
    announce,
    customer,
    subscribed,
    transaction,
)

BILLING_UPDATES = """
subscription {
  billingUpdates {
    kind occurredAt creditBalance
    transaction { id status description amount { amount currency } }
  }
}
"""
PAYMENT_STATUS = """
subscription ($id: ID!) { paymentStatus(transactionId: $id) { id status } }
"""
ACCESS_UPDATES = """
subscription {
  billingUpdates {
    kind
    subscription { id status }
    access { status hasAccess until subscription { id status } }
  }
}
"""
WEBHOOK_EVENTS = "subscription { webhookEvents { id stripeEventId type status } }"

BOTH_PROTOCOLS = pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])


@BOTH_PROTOCOLS
async def test_billing_updates_reach_the_signed_in_customer(gateway, db, token_for, protocol):
    alice = await customer(db, "alice")
    payment = await transaction(db, alice.id, description="coffee")
    async with LiveClient.connected(gateway, protocol=protocol) as live:
        await live.sign_in(token_for("alice"))
        await live.subscribe(BILLING_UPDATES)
        await subscribed(gateway, 1)

        await announce(db, UpdateKind.PAYMENT_UPDATED, account_id=alice.id, row_id=payment.id)
        await announce(db, UpdateKind.CREDITS_UPDATED, account_id=alice.id, row_id=None)

        payment_update = (await live.next_data())["billingUpdates"]
        assert payment_update["kind"] == "PAYMENT_UPDATED"
        assert payment_update["transaction"] == {
            "id": to_global_id("PaymentTransaction", payment.id),
            "status": "PROCESSING",
            "description": "coffee",
            "amount": {"amount": "1250", "currency": "USD"},
        }
        credits_update = (await live.next_data())["billingUpdates"]
        assert credits_update["kind"] == "CREDITS_UPDATED"
        assert credits_update["creditBalance"] == "0" and credits_update["transaction"] is None


@BOTH_PROTOCOLS
@pytest.mark.parametrize(
    "payload",
    [
        None,
        {},
        {"authorization": "Bearer not-a-jwt"},
        {"authorization": "Basic abc"},
        {"token": ""},
    ],
)
async def test_a_missing_or_bad_token_is_refused(gateway, protocol, payload):
    async with LiveClient.connected(gateway, protocol=protocol) as live:
        init = {"type": "connection_init"} | ({"payload": payload} if payload is not None else {})
        await live.send(init)
        if protocol == LEGACY_WS:
            refusal = await live.receive()
            assert refusal["type"] == "connection_error"
            assert refusal["payload"]["code"] == "UNAUTHENTICATED"
            assert (await live.closed())[0] == 1011
        else:
            assert await live.closed() == (4403, "Forbidden")


@BOTH_PROTOCOLS
async def test_an_expired_token_is_refused(gateway, token_for, protocol):
    async with LiveClient.connected(gateway, protocol=protocol) as live:
        await live.send(
            {"type": "connection_init", "payload": {"token": token_for("alice", ttl_seconds=-5)}}
        )
        if protocol == LEGACY_WS:
            refusal = await live.receive()
            assert refusal["type"] == "connection_error"
            assert refusal["payload"]["message"].endswith("the token has expired")
        else:
            assert await live.closed() == (4403, "Forbidden")


@BOTH_PROTOCOLS
async def test_the_connection_ends_when_its_token_expires(gateway, db, token_for, protocol):
    await customer(db, "alice")
    async with LiveClient.connected(gateway, protocol=protocol) as live:
        # `token` is the other accepted form of the payload.
        answer = await live.init({"token": token_for("alice", ttl_seconds=1)})
        assert answer["type"] == "connection_ack"
        await live.subscribe(BILLING_UPDATES)

        assert await live.closed() == (4401, "the token has expired")
    await subscribed(gateway, 0)


async def test_an_unknown_subprotocol_is_closed(gateway):
    async with LiveClient.connected(gateway, protocol="graphql-made-up") as live:
        assert await live.closed() == (4406, "Subprotocol not acceptable")


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"query": BILLING_UPDATES, "operationName": {"a": 1}}, "`operationName` must be a string"),
        ({"query": BILLING_UPDATES, "operationName": ["a"]}, "`operationName` must be a string"),
        ({"query": BILLING_UPDATES, "variables": [1]}, "`variables` must be an object"),
        ({"query": BILLING_UPDATES, "extensions": "x"}, "`extensions` must be an object"),
        ({"query": 7}, "the payload needs a string `query`"),
        ("subscription", "the payload needs a string `query`"),
    ],
)
async def test_a_malformed_operation_closes_with_4400(
    gateway, db, token_for, protocol, payload, reason
):
    await customer(db, "alice")
    async with LiveClient.connected(gateway, protocol=protocol) as live:
        await live.sign_in(token_for("alice"))
        start = "subscribe" if protocol == TRANSPORT_WS else "start"
        await live.send({"id": "1", "type": start, "payload": payload})
        assert await live.closed() == (4400, f"Invalid message received: {reason}")
    await subscribed(gateway, 0)


async def test_a_subscription_needs_connection_init_first(gateway):
    async with LiveClient.connected(gateway) as live:
        await live.subscribe(BILLING_UPDATES)
        assert await live.closed() == (4401, "Unauthorized")


@BOTH_PROTOCOLS
async def test_payment_status_of_another_customers_payment_is_not_found(
    gateway, db, token_for, protocol
):
    await customer(db, "alice")
    mallory = await customer(db, "mallory")
    theirs = await transaction(db, mallory.id)
    async with LiveClient.connected(gateway, protocol=protocol) as live:
        await live.sign_in(token_for("alice"))
        await live.subscribe(PAYMENT_STATUS, {"id": to_global_id("PaymentTransaction", theirs.id)})

        result = await live.receive()

    payload = result["payload"]
    assert payload.get("data") is None
    assert error_codes(payload) == ["NOT_FOUND"]


async def test_payment_status_needs_a_payment_id(gateway, db, token_for):
    await customer(db, "alice")
    async with LiveClient.connected(gateway) as live:
        await live.sign_in(token_for("alice"))
        await live.subscribe(PAYMENT_STATUS, {"id": to_global_id("Invoice", 1)})

        result = await live.receive()

    assert error_codes(result["payload"]) == ["INVALID_INPUT"]


async def test_webhook_events_are_for_admins_only(gateway, db, token_for):
    await customer(db, "alice")
    async with LiveClient.connected(gateway) as live:
        await live.sign_in(token_for("alice"))
        await live.subscribe(WEBHOOK_EVENTS)

        result = await live.receive()

    assert result["payload"].get("data") is None
    assert error_codes(result["payload"]) == ["FORBIDDEN"]
    assert gateway.app.state.live_bus.subscriber_count() == 0


async def test_subscriptions_are_refused_over_http(client, db, token_for):
    headers = {"Authorization": f"Bearer {token_for('alice')}"}
    response = await client.post("/graphql", json={"query": BILLING_UPDATES}, headers=headers)

    assert response.status_code == 400
    assert "websocket" in response.text
    # Queries still work.
    assert (await client.post("/graphql", json={"query": "{ plans { id } }"})).status_code == 200


async def test_a_subscription_becoming_active_updates_access(gateway, db, token_for, settings):
    alice = await customer(db, "alice")
    plan = await factories.add(db, factories.plan())
    start = datetime.now(UTC).replace(microsecond=0)
    stripe_subscription = {
        "id": "sub_live",
        "status": "active",
        "created": int(start.timestamp()),
        "items": {
            "data": [
                {
                    "quantity": 1,
                    "current_period_start": int(start.timestamp()),
                    "current_period_end": int((start + timedelta(days=30)).timestamp()),
                }
            ]
        },
    }
    async with LiveClient.connected(gateway) as live:
        await live.sign_in(token_for("alice"))
        await live.subscribe(ACCESS_UPDATES)
        await subscribed(gateway, 1)

        async with db.session() as session, session.begin(), StripeApi(settings, None) as stripe:
            row_id = await mirror.upsert_subscription(
                session, stripe, stripe_subscription, alice.id, plan.id, observed_at=start
            )

        first = (await live.next_data())["billingUpdates"]
        second = (await live.next_data())["billingUpdates"]
    subscription_id = to_global_id("Subscription", row_id)
    assert first["kind"] == "SUBSCRIPTION_UPDATED" and first["access"] is None
    assert first["subscription"] == {"id": subscription_id, "status": "ACTIVE"}
    assert second["kind"] == "ACCESS_UPDATED"
    assert second["access"] == {
        "status": "ACTIVE",
        "hasAccess": True,
        "until": (start + timedelta(days=30)).isoformat(),
        "subscription": {"id": subscription_id, "status": "ACTIVE"},
    }


@BOTH_PROTOCOLS
async def test_a_too_deep_billing_updates_document_is_refused(gateway, db, token_for, protocol):
    await customer(db, "alice")
    nested = "id"
    for _ in range(8):
        nested = f"subscription {{ latestInvoice {{ {nested} }} }}"
    async with LiveClient.connected(gateway, protocol=protocol) as live:
        await live.sign_in(token_for("alice"))
        await live.subscribe(f"subscription {{ billingUpdates {{ invoice {{ {nested} }} }} }}")

        refusal = await live.receive()

    assert refusal["type"] == "error"
    errors = refusal["payload"] if protocol == TRANSPORT_WS else [refusal["payload"]]
    assert [error["extensions"]["code"] for error in errors] == ["QUERY_TOO_COMPLEX"]
    assert gateway.app.state.live_bus.subscriber_count() == 0


RELATIONS = """
subscription {
  billingUpdates {
    kind
    invoice { number subscription { stripeSubscriptionId plan { productName } } }
    paymentMethod { last4 isDefault }
  }
}
"""


async def test_updates_resolve_their_relations(gateway, db, token_for):
    alice = await customer(db, "alice", default_payment_method_stripe_id="pm_live_default")
    plan = await factories.add(db, factories.plan(product_name="Pro"))
    method = await factories.add(
        db, factories.payment_method(alice.id, stripe_payment_method_id="pm_live_default")
    )
    now = datetime.now(UTC).replace(microsecond=0)
    subscription = await factories.add(
        db,
        Subscription(
            stripe_subscription_id="sub_related",
            account_id=alice.id,
            plan_id=plan.id,
            status=SubscriptionStatus.ACTIVE,
            quantity=1,
            current_period_start=now,
            current_period_end=now + timedelta(days=30),
            stripe_created_at=now,
        ),
    )
    invoice = await factories.add(
        db,
        Invoice(
            stripe_invoice_id="in_related",
            account_id=alice.id,
            subscription_stripe_id=subscription.stripe_subscription_id,
            number="INV-7",
            status=InvoiceStatus.PAID,
            currency="usd",
            subtotal=2900,
            total=2900,
            amount_due=2900,
            amount_paid=2900,
            amount_remaining=0,
            stripe_created_at=now,
        ),
    )
    async with LiveClient.connected(gateway) as live:
        await live.sign_in(token_for("alice"))
        await live.subscribe(RELATIONS)
        await subscribed(gateway, 1)

        await announce(db, UpdateKind.INVOICE_UPDATED, account_id=alice.id, row_id=invoice.id)
        await announce(db, UpdateKind.PAYMENT_METHOD_UPDATED, account_id=alice.id, row_id=method.id)

        invoiced = (await live.next_data())["billingUpdates"]
        carded = (await live.next_data())["billingUpdates"]
    assert invoiced == {
        "kind": "INVOICE_UPDATED",
        "invoice": {
            "number": "INV-7",
            "subscription": {"stripeSubscriptionId": "sub_related", "plan": {"productName": "Pro"}},
        },
        "paymentMethod": None,
    }
    assert carded == {
        "kind": "PAYMENT_METHOD_UPDATED",
        "invoice": None,
        "paymentMethod": {"last4": "4242", "isDefault": True},
    }
