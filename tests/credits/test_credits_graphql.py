"""spendCredits, grantCredits and viewer.credits over GraphQL: codes, refusals, pages."""

from sqlalchemy import select

from db.models import AuditLogEntry
from tests.conftest import error_codes, graphql

SPEND = """
mutation($input: SpendCreditsInput!) {
  spendCredits(input: $input) {
    entry { id kind amount balanceAfter reason sourceRef }
    balance
    userErrors { field code }
  }
}
"""

GRANT = """
mutation($input: GrantCreditsInput!) {
  grantCredits(input: $input) {
    entry { id kind amount balanceAfter reason sourceRef }
    userErrors { field code }
  }
}
"""

CUSTOMER_ID = "query { viewer { customer { id } } }"

CREDITS = """
query($first: Int, $after: String) {
  viewer {
    credits {
      balance
      entries(first: $first, after: $after) {
        edges { cursor node { id kind amount balanceAfter reason sourceRef createdAt } }
        pageInfo { hasNextPage endCursor }
        totalCount
      }
    }
  }
}
"""

NODE = "query($id: ID!) { node(id: $id) { ... on CreditEntry { id amount } } }"


async def customer_id(client, token: str) -> str:
    return (await graphql(client, CUSTOMER_ID, token=token))["data"]["viewer"]["customer"]["id"]


async def grant(client, admin: str, customer: str, amount: str = "100", key: str = "g1"):
    variables = {
        "input": {
            "customerId": customer,
            "amount": amount,
            "reason": "welcome",
            "idempotencyKey": key,
        }
    }
    return (await graphql(client, GRANT, variables, token=admin))["data"]["grantCredits"]


async def spend(client, token: str, amount: str, key: str, reason: str = "a report"):
    variables = {"input": {"amount": amount, "reason": reason, "idempotencyKey": key}}
    return await graphql(client, SPEND, variables, token=token)


async def test_an_admin_grants_and_the_customer_spends_and_reads_the_ledger(client, db, token_for):
    alice = token_for("alice")
    customer = await customer_id(client, alice)

    granted = await grant(client, token_for("root", admin=True), customer)
    spent = (await spend(client, alice, "30", "s1"))["data"]["spendCredits"]
    page = (await graphql(client, CREDITS, {"first": 1}, token=alice))["data"]["viewer"]
    rest = await graphql(
        client,
        CREDITS,
        {"first": 1, "after": page["credits"]["entries"]["pageInfo"]["endCursor"]},
        token=alice,
    )

    assert granted["userErrors"] == []
    assert granted["entry"] | {"id": None} == {
        "id": None,
        "kind": "ADJUSTMENT",
        "amount": "100",
        "balanceAfter": "100",
        "reason": "welcome",
        "sourceRef": "g1",
    }
    assert spent["userErrors"] == [] and spent["balance"] == "70"
    assert (spent["entry"]["kind"], spent["entry"]["amount"]) == ("SPEND", "-30")
    assert spent["entry"]["sourceRef"] == "s1"
    credits = page["credits"]
    assert credits["balance"] == "70" and credits["entries"]["totalCount"] == 2
    [newest] = credits["entries"]["edges"]
    assert newest["node"]["id"] == spent["entry"]["id"]
    assert credits["entries"]["pageInfo"]["hasNextPage"] is True
    [older] = rest["data"]["viewer"]["credits"]["entries"]["edges"]
    assert older["node"]["id"] == granted["entry"]["id"]
    async with db.session() as session:
        [audit] = (await session.scalars(select(AuditLogEntry))).all()
    assert (audit.action, audit.actor, audit.details["credits"]) == (
        "credits.grant",
        "admin:root",
        100,
    )


async def test_a_spend_beyond_the_balance_or_not_positive_is_refused_and_changes_nothing(
    client, token_for
):
    alice = token_for("alice")
    await grant(client, token_for("root", admin=True), await customer_id(client, alice), "10")

    too_much = (await spend(client, alice, "11", "s1"))["data"]["spendCredits"]
    zero = (await spend(client, alice, "0", "s2"))["data"]["spendCredits"]
    negative = (await spend(client, alice, "-5", "s3"))["data"]["spendCredits"]
    blank_reason = (await spend(client, alice, "1", "s4", reason=" "))["data"]["spendCredits"]

    assert too_much["userErrors"] == [{"field": ["amount"], "code": "INSUFFICIENT_CREDITS"}]
    assert zero["userErrors"] == [{"field": ["amount"], "code": "INVALID_INPUT"}]
    assert negative["userErrors"] == [{"field": ["amount"], "code": "INVALID_INPUT"}]
    assert blank_reason["userErrors"] == [{"field": ["reason"], "code": "INVALID_INPUT"}]
    assert too_much["entry"] is None and too_much["balance"] is None
    credits = (await graphql(client, CREDITS, token=alice))["data"]["viewer"]["credits"]
    assert credits["balance"] == "10" and credits["entries"]["totalCount"] == 1


async def test_a_spend_key_replays_its_first_outcome_and_refuses_other_input(client, token_for):
    alice = token_for("alice")
    await grant(client, token_for("root", admin=True), await customer_id(client, alice))

    first = (await spend(client, alice, "40", "same"))["data"]["spendCredits"]
    await spend(client, alice, "10", "other")
    replay = (await spend(client, alice, "40", "same"))["data"]["spendCredits"]
    changed = (await spend(client, alice, "41", "same"))["data"]["spendCredits"]

    assert replay == first and first["balance"] == "60"
    assert changed["userErrors"] == [
        {"field": ["idempotencyKey"], "code": "IDEMPOTENCY_KEY_REUSED"}
    ]
    credits = (await graphql(client, CREDITS, token=alice))["data"]["viewer"]["credits"]
    assert credits["balance"] == "50"


async def test_grant_credits_is_for_admins_only(client, token_for):
    alice = token_for("alice")
    customer = await customer_id(client, alice)
    variables = {
        "input": {"customerId": customer, "amount": "100", "reason": "me", "idempotencyKey": "k"}
    }

    by_user = await graphql(client, GRANT, variables, token=alice)
    anonymous = await graphql(client, GRANT, variables)

    assert error_codes(by_user) == ["FORBIDDEN"] and by_user["data"] is None
    assert error_codes(anonymous) == ["UNAUTHENTICATED"]
    credits = (await graphql(client, CREDITS, token=alice))["data"]["viewer"]["credits"]
    assert credits["balance"] == "0" and credits["entries"]["totalCount"] == 0


async def test_grant_credits_checks_the_customer_and_the_amount(client, token_for):
    admin = token_for("root", admin=True)
    customer = await customer_id(client, token_for("alice"))

    unknown = await grant(client, admin, "Q3VzdG9tZXI6OTk5OQ")  # Customer:9999
    not_a_customer = await grant(client, admin, "UGxhbjox")  # Plan:1
    negative = await grant(client, admin, customer, amount="-1")

    assert unknown["userErrors"] == [{"field": ["customerId"], "code": "NOT_FOUND"}]
    assert not_a_customer["userErrors"] == [{"field": ["customerId"], "code": "INVALID_INPUT"}]
    assert negative["userErrors"] == [{"field": ["amount"], "code": "INVALID_INPUT"}]


async def test_spending_needs_a_token_and_touches_only_the_callers_wallet(client, token_for):
    alice, bob = token_for("alice"), token_for("bob")
    admin = token_for("root", admin=True)
    await grant(client, admin, await customer_id(client, alice), "50", key="a")
    await grant(client, admin, await customer_id(client, bob), "5", key="b")

    anonymous = await spend(client, "", "1", "x")
    by_bob = (await spend(client, bob, "20", "x"))["data"]["spendCredits"]
    alice_entry = (await spend(client, alice, "20", "x"))["data"]["spendCredits"]["entry"]
    seen_by_bob = await graphql(client, NODE, {"id": alice_entry["id"]}, token=bob)
    seen_by_alice = await graphql(client, NODE, {"id": alice_entry["id"]}, token=alice)
    seen_by_admin = await graphql(client, NODE, {"id": alice_entry["id"]}, token=admin)

    assert error_codes(anonymous) == ["UNAUTHENTICATED"]
    assert by_bob["userErrors"] == [{"field": ["amount"], "code": "INSUFFICIENT_CREDITS"}]
    assert seen_by_bob["data"]["node"] is None
    assert seen_by_alice["data"]["node"] == {"id": alice_entry["id"], "amount": "-20"}
    assert seen_by_admin["data"]["node"] == seen_by_alice["data"]["node"]
