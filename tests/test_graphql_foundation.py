"""The first slice of the contract: public config and plans, the viewer, nodes, admin customers."""

import asyncio

from sqlalchemy import func, select

from db.database import Database
from db.models import Account, PriceKind
from schema.ids import to_global_id
from tests import factories
from tests.conftest import error_codes, graphql

PUBLIC = """
query {
  billingConfig { publishableKey sandbox }
  plans { id stripePriceId productName amount { amount currency decimal formatted }
          interval intervalCount trialDays credits active }
}
"""
VIEWER = "query { viewer { userId customer { id userId email stripeCustomerId defaultPaymentMethod { stripePaymentMethodId last4 isDefault } } } }"
NODE = "query ($id: ID!) { node(id: $id) { id __typename ... on Customer { userId } ... on Plan { productName } ... on PaymentMethod { last4 isDefault } } }"
CUSTOMERS = """
query ($first: Int, $after: String, $search: String) {
  admin { customers(first: $first, after: $after, search: $search) {
    totalCount
    edges { cursor node { userId email } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  } }
}
"""


async def test_billing_config_and_plans_need_no_token(client, db: Database):
    await factories.add(db, factories.plan(product_name="Pro", amount=2900, credits=500))
    await factories.add(db, factories.plan(product_name="Starter", amount=900, trial_days=14))
    await factories.add(db, factories.plan(product_name="Old", active=False))
    await factories.add(
        db,
        factories.plan(
            product_name="Top-up", kind=PriceKind.ONE_TIME, interval=None, interval_count=None
        ),
    )

    result = await graphql(client, PUBLIC)

    assert "errors" not in result
    assert result["data"]["billingConfig"] == {
        "publishableKey": "pk_test_billing_gateway_sandbox",
        "sandbox": True,
    }
    plans = result["data"]["plans"]
    assert [plan["productName"] for plan in plans] == ["Starter", "Pro"]
    assert plans[0]["trialDays"] == 14 and plans[0]["credits"] is None
    assert plans[1]["amount"] == {
        "amount": "2900",
        "currency": "USD",
        "decimal": "29.00",
        "formatted": "$29.00",
    }
    assert plans[1]["credits"] == "500"
    assert plans[1]["interval"] == "MONTH" and plans[1]["intervalCount"] == 1


async def test_viewer_is_the_callers_own_account_created_on_first_sight(client, db, token_for):
    first = await graphql(client, VIEWER, token=token_for("alice", email="alice@example.com"))
    again = await graphql(client, VIEWER, token=token_for("alice"))
    other = await graphql(client, VIEWER, token=token_for("bob"))

    assert first["data"]["viewer"]["userId"] == "alice"
    assert first["data"]["viewer"]["customer"]["email"] == "alice@example.com"
    assert first["data"]["viewer"]["customer"]["stripeCustomerId"] is None
    assert again["data"]["viewer"]["customer"]["id"] == first["data"]["viewer"]["customer"]["id"]
    assert other["data"]["viewer"]["customer"]["id"] != first["data"]["viewer"]["customer"]["id"]
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Account)) == 2


async def test_concurrent_first_requests_make_one_account(client, db, token_for):
    token = token_for("carol")
    results = await asyncio.gather(*(graphql(client, VIEWER, token=token) for _ in range(20)))
    assert {r["data"]["viewer"]["customer"]["id"] for r in results} == {
        results[0]["data"]["viewer"]["customer"]["id"]
    }
    async with db.session() as session:
        assert await session.scalar(select(func.count()).where(Account.user_id == "carol")) == 1


async def test_viewer_shows_the_default_payment_method_of_its_own_account_only(
    client, db, token_for
):
    alice = await factories.add(
        db, factories.account(user_id="alice", default_payment_method_stripe_id="pm_alice")
    )
    bob = await factories.add(
        db,
        factories.account(
            user_id="bob", default_payment_method_stripe_id="pm_bob_points_elsewhere"
        ),
    )
    await factories.add(
        db, factories.payment_method(alice.id, stripe_payment_method_id="pm_alice", last4="1111")
    )
    # A default that names someone else's method must never show it.
    await factories.add(
        db, factories.payment_method(alice.id, stripe_payment_method_id="pm_bob_points_elsewhere")
    )

    mine = await graphql(client, VIEWER, token=token_for("alice"))
    theirs = await graphql(client, VIEWER, token=token_for("bob"))

    assert mine["data"]["viewer"]["customer"]["defaultPaymentMethod"] == {
        "stripePaymentMethodId": "pm_alice",
        "last4": "1111",
        "isDefault": True,
    }
    assert theirs["data"]["viewer"]["customer"]["defaultPaymentMethod"] is None
    assert bob.id != alice.id


async def test_node_finds_plans_for_anyone_and_customers_only_for_their_owner(
    client, db, token_for
):
    plan = await factories.add(db, factories.plan(product_name="Pro"))
    alice = await factories.add(db, factories.account(user_id="alice"))
    method = await factories.add(db, factories.payment_method(alice.id, last4="4444"))
    plan_id, alice_id = to_global_id("Plan", plan.id), to_global_id("Customer", alice.id)
    method_id = to_global_id("PaymentMethod", method.id)

    public = await graphql(client, NODE, {"id": plan_id})
    own = await graphql(client, NODE, {"id": alice_id}, token=token_for("alice"))
    own_method = await graphql(client, NODE, {"id": method_id}, token=token_for("alice"))
    stranger = await graphql(client, NODE, {"id": alice_id}, token=token_for("mallory"))
    stranger_method = await graphql(client, NODE, {"id": method_id}, token=token_for("mallory"))
    anonymous = await graphql(client, NODE, {"id": alice_id})
    admin = await graphql(client, NODE, {"id": alice_id}, token=token_for("root", admin=True))

    assert public["data"]["node"] == {"id": plan_id, "__typename": "Plan", "productName": "Pro"}
    assert own["data"]["node"]["userId"] == "alice"
    assert own_method["data"]["node"] == {
        "id": method_id,
        "__typename": "PaymentMethod",
        "last4": "4444",
        "isDefault": False,
    }
    assert stranger["data"]["node"] is None
    assert stranger_method["data"]["node"] is None
    assert anonymous["data"]["node"] is None
    assert admin["data"]["node"]["userId"] == "alice"


async def test_node_refuses_an_id_it_never_gave_out(client):
    result = await graphql(client, NODE, {"id": "not-an-id"})
    assert error_codes(result) == ["INVALID_INPUT"]


async def test_admin_customers_pages_stay_correct_across_inserts(client, db, token_for):
    for n in range(5):
        await factories.add(
            db, factories.account(user_id=f"user-{n}", email=f"user{n}@example.com")
        )
    admin = token_for("root", admin=True)

    first_page = await graphql(client, CUSTOMERS, {"first": 2}, token=admin)
    connection = first_page["data"]["admin"]["customers"]
    assert connection["totalCount"] == 5
    assert [e["node"]["userId"] for e in connection["edges"]] == ["user-4", "user-3"]
    assert connection["pageInfo"]["hasNextPage"] and not connection["pageInfo"]["hasPreviousPage"]

    await factories.add(db, factories.account(user_id="user-new"))
    after = connection["pageInfo"]["endCursor"]
    second_page = await graphql(client, CUSTOMERS, {"first": 10, "after": after}, token=admin)
    connection = second_page["data"]["admin"]["customers"]
    assert [e["node"]["userId"] for e in connection["edges"]] == ["user-2", "user-1", "user-0"]
    assert not connection["pageInfo"]["hasNextPage"] and connection["pageInfo"]["hasPreviousPage"]


async def test_admin_customers_search_by_email_user_or_stripe_id(client, db, token_for):
    await factories.add(db, factories.account(user_id="u-1", email="Ada@Example.com"))
    await factories.add(
        db,
        factories.account(user_id="u-2", email="grace@example.com", stripe_customer_id="cus_123"),
    )
    await factories.add(db, factories.account(user_id="u_3", email="linus@example.com"))
    admin = token_for("root", admin=True)

    async def found(search: str) -> list[str]:
        result = await graphql(client, CUSTOMERS, {"search": search}, token=admin)
        return sorted(e["node"]["userId"] for e in result["data"]["admin"]["customers"]["edges"])

    # An email matches exactly, in any case (it is sealed: found by its blind index).
    assert await found("ada@example.com") == ["u-1"]
    assert await found("ADA@example.COM") == ["u-1"]
    assert await found("ada@example") == []
    assert await found("cus_123") == ["u-2"]
    assert await found("u_3") == ["u_3"]
    assert await found("example.com") == []


async def test_admin_customers_refuses_pages_over_100_and_foreign_cursors(client, token_for):
    admin = token_for("root", admin=True)
    too_many = await graphql(client, CUSTOMERS, {"first": 101}, token=admin)
    bad_cursor = await graphql(client, CUSTOMERS, {"after": "bogus"}, token=admin)
    assert error_codes(too_many) == ["INVALID_INPUT"]
    assert error_codes(bad_cursor) == ["INVALID_INPUT"]
