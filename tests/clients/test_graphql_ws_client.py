"""The reference graphql-ws client under Node (what Apollo, urql and Relay use) subscribed to
billingUpdates on `billing-gateway serve`, and the raw websocket frames behind it."""

import asyncio
import json

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.clients.support import PATIENCE_SECONDS, new_user, node_subscriber, run_script
from tests.served import ServedGateway

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"


async def test_the_client_receives_the_customers_billing_updates(gateway: ServedGateway):
    token = await gateway.token(new_user("node"))
    await gateway.execute("{ viewer { customer { id } } }", token=token)

    async with node_subscriber(gateway.ws_url, token) as subscriber:
        assert await subscriber.line() == {"ready": True}
        subscription = await gateway.subscribe_customer(token)
        updates = await subscriber.updates_until(
            "SUBSCRIPTION_UPDATED", "subscription", subscription["id"]
        )

    kinds = [update["kind"] for update in updates]
    assert "PAYMENT_METHOD_UPDATED" in kinds
    assert updates[-1]["subscription"] == {"id": subscription["id"], "status": "ACTIVE"}
    assert all(update["occurredAt"] for update in updates)


async def test_the_client_sees_only_its_own_customers_updates(gateway: ServedGateway):
    watcher = await gateway.token(new_user("watcher"))
    buyer = await gateway.token(new_user("buyer"))
    await gateway.execute("{ viewer { customer { id } } }", token=watcher)

    async with node_subscriber(gateway.ws_url, watcher) as others:
        assert await others.line() == {"ready": True}
        await gateway.subscribe_customer(buyer)
        mine = await gateway.subscribe_customer(watcher)
        updates = await others.updates_until("SUBSCRIPTION_UPDATED", "subscription", mine["id"])

    # The buyer's subscription was made first: had it reached the watcher, it would be here.
    ids = {update["subscription"]["id"] for update in updates if update["subscription"]}
    assert ids == {mine["id"]}


async def test_a_refused_token_closes_with_forbidden(gateway: ServedGateway):
    code, closed, stderr = await run_script(
        "subscribe.mjs", gateway.ws_url, "not-a-token", "1", str(int(PATIENCE_SECONDS))
    )
    assert code == 1, stderr
    assert closed == {"closed": {"code": 4403, "reason": "Forbidden"}}


async def _frames_until_closed(connection: ClientConnection) -> list[str | bytes]:
    frames: list[str | bytes] = []
    try:
        async with asyncio.timeout(PATIENCE_SECONDS):
            while True:
                frames.append(await connection.recv())
    except websockets.ConnectionClosed:
        return frames


@pytest.mark.parametrize(
    ("protocol", "start"), [(TRANSPORT_WS, "subscribe"), (LEGACY_WS, "start")]
)
@pytest.mark.parametrize("operation_name", [{"name": "Q"}, ["Q"]])
async def test_an_operation_name_that_is_not_a_string_closes_with_4400_in_text_frames(
    gateway: ServedGateway, protocol, start, operation_name
):
    token = await gateway.token(new_user("raw"))
    async with websockets.connect(
        gateway.ws_url,
        subprotocols=[protocol],  # type: ignore[list-item]
        open_timeout=PATIENCE_SECONDS,
    ) as connection:
        await connection.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        )
        ack = await connection.recv()
        # Both protocols are JSON text frames; lenient libraries also take bytes, clients do not.
        assert isinstance(ack, str) and json.loads(ack)["type"] == "connection_ack", ack
        query = "subscription Q { billingUpdates { kind } }"
        payload = {"query": query, "operationName": operation_name}
        await connection.send(json.dumps({"id": "1", "type": start, "payload": payload}))
        frames = await _frames_until_closed(connection)

    assert [frame for frame in frames if not isinstance(frame, str)] == []
    assert connection.close_code == 4400, (connection.close_code, connection.close_reason)


@pytest.mark.parametrize(("protocol", "start"), [(TRANSPORT_WS, "subscribe"), (LEGACY_WS, "start")])
async def test_every_frame_of_a_live_subscription_is_text(gateway: ServedGateway, protocol, start):
    token = await gateway.token(new_user("frames"))
    await gateway.execute("{ viewer { customer { id } } }", token=token)
    async with websockets.connect(
        gateway.ws_url,
        subprotocols=[protocol],  # type: ignore[list-item]
    ) as connection:
        await connection.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        )
        frames = [await connection.recv()]
        query = "subscription { billingUpdates { kind subscription { id } } }"
        await connection.send(json.dumps({"id": "1", "type": start, "payload": {"query": query}}))
        subscription = await gateway.subscribe_customer(token)
        async with asyncio.timeout(PATIENCE_SECONDS):
            while subscription["id"] not in frames[-1]:
                frames.append(await connection.recv())

    assert [frame for frame in frames if not isinstance(frame, str)] == []
    messages = [json.loads(frame) for frame in frames]
    assert messages[0]["type"] == "connection_ack"
    data = "next" if protocol == TRANSPORT_WS else "data"
    assert messages[-1]["type"] == data and messages[-1]["id"] == "1"
