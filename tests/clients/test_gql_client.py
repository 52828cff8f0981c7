"""Python's `gql` client against `billing-gateway serve`: billingUpdates over both websocket
subprotocols, and a query and a mutation over HTTP."""

import asyncio
from typing import Any

import pytest
from gql import Client, gql
from graphql import GraphQLError
from gql.transport.aiohttp import AIOHTTPTransport
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport

from tests.clients.support import PATIENCE_SECONDS, new_user
from tests.served import ServedGateway

BILLING_UPDATES = gql(
    "subscription { billingUpdates { kind occurredAt subscription { id status } } }"
)
PROTOCOLS = [WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL, WebsocketsTransport.APOLLO_SUBPROTOCOL]


async def _collect(session: Any, into: asyncio.Queue[dict[str, Any]]) -> None:
    async for result in session.subscribe(BILLING_UPDATES):
        await into.put(result["billingUpdates"])


@pytest.mark.parametrize("subprotocol", PROTOCOLS)
async def test_gql_receives_billing_updates(gateway: ServedGateway, subprotocol):
    token = await gateway.token(new_user(f"gql-{subprotocol}"))
    await gateway.execute("{ viewer { customer { id } } }", token=token)
    transport = WebsocketsTransport(
        url=gateway.ws_url,
        init_payload={"authorization": f"Bearer {token}"},
        subprotocols=[subprotocol],
        connect_timeout=PATIENCE_SECONDS,
    )
    updates: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    async with Client(transport=transport) as session:
        assert transport.subprotocol == subprotocol
        collecting = asyncio.create_task(_collect(session, updates))
        await asyncio.sleep(0)  # the subscribe/start message is sent before billing activity
        try:
            subscription = await gateway.subscribe_customer(token)
            async with asyncio.timeout(PATIENCE_SECONDS):
                while (update := await updates.get())["kind"] != "SUBSCRIPTION_UPDATED":
                    assert update["occurredAt"]
        finally:
            collecting.cancel()
            await asyncio.gather(collecting, return_exceptions=True)

    assert update["subscription"] == {"id": subscription["id"], "status": "ACTIVE"}


def _http_client(gateway: ServedGateway, token: str) -> Client:
    transport = AIOHTTPTransport(url=gateway.url, headers={"Authorization": f"Bearer {token}"})
    return Client(transport=transport, fetch_schema_from_transport=True)


async def test_gql_queries_over_http_with_the_fetched_schema(gateway: ServedGateway):
    user = new_user("gql-http")
    async with _http_client(gateway, await gateway.token(user)) as session:
        result = await session.execute(
            gql("{ viewer { userId customer { id } } plans { id productName } }")
        )
        # gql validates against the schema it introspected, before sending.
        with pytest.raises(GraphQLError, match="noSuchField"):
            await session.execute(gql("{ viewer { noSuchField } }"))

    assert result["viewer"]["userId"] == user and result["viewer"]["customer"]["id"]
    assert result["plans"] and all(plan["productName"] for plan in result["plans"])


async def test_gql_runs_a_mutation_over_http(gateway: ServedGateway):
    attach = gql(
        """
        mutation ($input: AttachPaymentMethodInput!) {
          attachPaymentMethod(input: $input) {
            paymentMethod { id isDefault brand last4 }
            userErrors { code message }
          }
        }
        """
    )
    async with _http_client(gateway, await gateway.token(new_user("gql-mutation"))) as session:
        attach.variable_values = {"input": {"paymentMethodId": "pm_card_visa", "makeDefault": True}}
        result = await session.execute(attach)
        methods = await session.execute(gql("{ viewer { paymentMethods { id } } }"))

    payload = result["attachPaymentMethod"]
    assert payload["userErrors"] == []
    assert payload["paymentMethod"]["isDefault"] is True
    method = payload["paymentMethod"]
    assert (method["brand"], method["last4"]) == ("visa", "4242")
    assert methods["viewer"]["paymentMethods"] == [{"id": payload["paymentMethod"]["id"]}]


async def test_gql_sees_a_refused_token_as_an_error(gateway: ServedGateway):
    transport = AIOHTTPTransport(url=gateway.url, headers={"Authorization": "Bearer not-a-token"})
    async with Client(transport=transport) as session:
        with pytest.raises(TransportQueryError) as refused:
            await session.execute(gql("{ viewer { userId } }"))
    assert refused.value.errors and refused.value.errors[0]["message"]
