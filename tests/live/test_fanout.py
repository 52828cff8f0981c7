"""The bus: across instances, per customer, in order, past a dropped LISTEN connection,
and never held up by a client that does not read."""

import asyncio
import random

from sqlalchemy import text

from db.database import Database
from gateway.app import create_app
from schema.ids import to_global_id
from services.live import UpdateKind
from tests.live.support import (
    LEGACY_WS,
    TRANSPORT_WS,
    LiveClient,
    UnreadSocket,
    announce,
    customer,
    serving,
    subscribed,
    transaction,
)

BILLING_UPDATES = """
subscription {
  billingUpdates { kind creditBalance transaction { id description } access { status hasAccess } }
}
"""
KINDS_ONLY = "subscription { billingUpdates { kind transaction { id } } }"


async def test_customers_never_receive_each_others_updates(gateway, db, token_for):
    customers = [await customer(db, f"user-{n}") for n in range(6)]
    payments = {
        account.id: [await transaction(db, account.id) for _ in range(4)] for account in customers
    }
    owners = [account for account in customers for _ in range(2)]
    async with asyncio.TaskGroup() as group:
        dashboards = [
            group.create_task(_dashboard(gateway, token_for(account.user_id), n))
            for n, account in enumerate(owners)
        ]
        # Both sockets of an account (one per subprotocol) share its stream.
        await subscribed(gateway, len(customers), members=len(dashboards))
        changes = [(owner.id, row.id) for owner in owners for row in payments[owner.id]]
        random.Random(7).shuffle(changes)

        # Concurrent commits, interleaved across customers.
        await asyncio.gather(
            *(
                announce(db, UpdateKind.PAYMENT_UPDATED, account_id=account_id, row_id=row_id)
                for account_id, row_id in changes
            )
        )
        # Then a last update each: whatever was meant for someone else would come before it.
        for account in customers:
            await announce(db, UpdateKind.CREDITS_UPDATED, account_id=account.id, row_id=None)

    for account, dashboard in zip(owners, dashboards, strict=True):
        received = dashboard.result()
        own = [to_global_id("PaymentTransaction", row.id) for row in payments[account.id]]
        # Each of the account's payments was announced twice (once per owner entry).
        assert sorted(received) == sorted(own * 2)


async def _dashboard(gateway, token: str, n: int) -> list[str]:
    """The payment ids one dashboard receives until its CREDITS_UPDATED."""
    protocol = TRANSPORT_WS if n % 2 else LEGACY_WS
    async with LiveClient.connected(gateway, protocol=protocol) as live:
        await live.sign_in(token)
        await live.subscribe(KINDS_ONLY)
        received = []
        while (update := (await live.next_data())["billingUpdates"])["kind"] != "CREDITS_UPDATED":
            received.append(update["transaction"]["id"])
        return received


async def test_a_webhook_accepted_by_one_instance_reaches_a_subscriber_on_another(
    db, billing, settings, token_for
):
    second_database = Database(db.url, pool_size=2)  # instance B: its own pool, same database
    instance_a = create_app(settings, database=db, start_worker=True)
    instance_b = create_app(settings, database=second_database)
    try:
        async with serving(instance_a) as a, serving(instance_b) as b:
            await billing.stripe.v1.webhook_endpoints.create_async(
                {"url": f"{a.http_url}/webhooks/stripe", "enabled_events": ["*"]}
            )
            stripe_customer = await billing.stripe.v1.customers.create_async({"email": "b@x.test"})
            await customer(db, "bob", stripe_customer_id=stripe_customer.id)
            async with LiveClient.connected(b) as live:
                await live.sign_in(token_for("bob"))
                await live.subscribe(BILLING_UPDATES)
                await subscribed(b, 1)

                intent = await billing.stripe.v1.payment_intents.create_async(
                    {
                        "amount": 4200,
                        "currency": "usd",
                        "customer": stripe_customer.id,
                        "payment_method": "pm_card_visa",
                        "allowed_payment_method_types": ["card"],
                        "confirm": True,
                        "description": "via instance A",
                    }
                )

                update = (await live.next_data())["billingUpdates"]
                while update["transaction"] is None:  # other kinds may come first
                    update = (await live.next_data())["billingUpdates"]
        assert update["kind"] == "PAYMENT_UPDATED"
        assert update["transaction"]["description"] == "via instance A"
        assert intent.status == "succeeded"
    finally:
        await second_database.dispose()


async def test_the_listener_reconnects_and_resyncs_after_the_database_drops_it(
    gateway, db, token_for
):
    alice = await customer(db, "alice")
    payment = await transaction(db, alice.id)
    bus = gateway.app.state.live_bus
    async with LiveClient.connected(gateway) as live:
        await live.sign_in(token_for("alice"))
        await live.subscribe(BILLING_UPDATES)
        await subscribed(gateway, 1)

        async with db.session() as session, session.begin():
            dropped = await session.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND query LIKE 'LISTEN %'"
                    " AND pid <> pg_backend_pid()"
                )
            )
        assert dropped >= 1

        resync = (await live.next_data())["billingUpdates"]
        assert resync["kind"] == "ACCESS_UPDATED" and resync["creditBalance"] == "0"
        assert resync["access"] == {"status": "NONE", "hasAccess": False}
        assert bus.listening.is_set()
        # Listening again: later changes arrive as before.
        await announce(db, UpdateKind.PAYMENT_UPDATED, account_id=alice.id, row_id=payment.id)
        after = (await live.next_data())["billingUpdates"]
        assert after["transaction"]["id"] == to_global_id("PaymentTransaction", payment.id)


async def test_a_client_that_stops_reading_is_closed_and_delays_nobody(db, settings, token_for):
    settings = settings.model_copy(update={"live_queue_size": 4})
    alice = await customer(db, "alice")
    # Large rows, so the unread socket's buffers fill after few updates.
    payment = await transaction(db, alice.id, description="x" * 200_000)
    async with serving(create_app(settings, database=db)) as gateway:
        slow = UnreadSocket(gateway)
        try:
            await slow.open(token_for("alice"), BILLING_UPDATES)
            async with LiveClient.connected(gateway) as fast:
                await fast.sign_in(token_for("alice"))
                await fast.subscribe(KINDS_ONLY)
                await subscribed(gateway, 2)

                sent = 0
                # The slow client reads nothing; the fast one gets every update meanwhile.
                while gateway.app.state.live_bus.subscriber_count() == 2:
                    await announce(
                        db, UpdateKind.PAYMENT_UPDATED, account_id=alice.id, row_id=payment.id
                    )
                    sent += 1
                    assert (await fast.next_data())["billingUpdates"]["kind"] == "PAYMENT_UPDATED"
                    assert sent < 500, "the slow client was never closed"

            code, reason = await slow.read_until_closed()
        finally:
            slow.close()

    assert code == 4008 and "fell behind" in reason


async def test_sockets_of_one_account_share_one_stream_per_document(gateway, db, token_for):
    """Whatever their subprotocol."""
    alice = await customer(db, "alice")
    payment = await transaction(db, alice.id, description="shared")
    bus = gateway.app.state.live_bus
    streams = gateway.app.state.shared_streams
    async with (
        LiveClient.connected(gateway) as first,
        LiveClient.connected(gateway, protocol=LEGACY_WS) as second,
        LiveClient.connected(gateway) as other_shape,
    ):
        for client in (first, second, other_shape):
            await client.sign_in(token_for("alice"))
        await first.subscribe(BILLING_UPDATES)
        await second.subscribe(BILLING_UPDATES)
        await other_shape.subscribe(KINDS_ONLY)
        # Two documents: two streams on the bus for three sockets.
        await subscribed(gateway, 2)
        assert streams.member_count() == 3 and streams.stream_count() == 2

        await announce(db, UpdateKind.PAYMENT_UPDATED, account_id=alice.id, row_id=payment.id)

        expected = {
            "kind": "PAYMENT_UPDATED",
            "creditBalance": None,
            "access": None,
            "transaction": {
                "id": to_global_id("PaymentTransaction", payment.id),
                "description": "shared",
            },
        }
        assert (await first.next_data())["billingUpdates"] == expected
        assert (await second.next_data())["billingUpdates"] == expected
        assert (await other_shape.next_data())["billingUpdates"] == {
            "kind": "PAYMENT_UPDATED",
            "transaction": {"id": to_global_id("PaymentTransaction", payment.id)},
        }

        # One socket stops: the other keeps the stream.
        await first.send({"id": "1", "type": "complete"})
        async with asyncio.timeout(10):
            while streams.member_count() != 2:
                await asyncio.sleep(0.01)
        await announce(db, UpdateKind.CREDITS_UPDATED, account_id=alice.id, row_id=None)
        assert (await second.next_data())["billingUpdates"]["kind"] == "CREDITS_UPDATED"
        await second.send({"id": "1", "type": "stop"})
        assert await second.receive() == {"id": "1", "type": "complete"}
    # Everyone gone: the streams stop and leave the bus.
    await subscribed(gateway, 0)
    assert streams.stream_count() == 0 and bus.subscriber_count() == 0
