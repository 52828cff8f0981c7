"""admin.customers(first: 100) with each customer's billing runs as many SQL statements for
50 customers as for 2 (no N+1), and each customer's nested pages keep their cursors."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from db.database import Database
from gateway.app import create_app
from gateway.settings import Settings
from tests import factories
from tests.conftest import error_codes, graphql
from tests.test_dashboard_queries import BATCH_TIMING_SLACK, counted_statements

CUSTOMERS = """
query ($first: Int) {
  admin {
    customers(first: $first) {
      totalCount
      edges { node {
        id userId email stripeCustomerId
        defaultPaymentMethod { last4 }
        subscriptions(first: 10) {
          totalCount
          edges { node { id status plan { productName } latestInvoice { id lines { amount { amount } } } } }
        }
        invoices(first: 10) {
          totalCount
          edges { node { id number total { amount } subscription { id } lines { description } } }
        }
      } }
    }
  }
}
"""
CUSTOMER_INVOICES = """
query ($search: String, $first: Int, $after: String) {
  admin { customers(search: $search, first: 1) { edges { node {
    invoices(first: $first, after: $after) {
      totalCount pageInfo { hasNextPage endCursor } edges { node { number } }
    }
  } } } }
}
"""
SUBSCRIPTIONS, INVOICES, LINES = 2, 3, 2


async def seed_customers(db: Database, count: int) -> None:
    plans = [await factories.add(db, factories.plan()) for _ in range(SUBSCRIPTIONS)]
    for n in range(count):
        await factories.customer_with_billing(
            db,
            user_id=f"customer-{n}",
            plans=plans,
            subscriptions=SUBSCRIPTIONS,
            invoices=INVOICES,
            lines=LINES,
            cards=1,
        )


async def customers_statements(client, db: Database, token: str) -> tuple[dict[str, Any], int]:
    with counted_statements(db) as statements:
        result = await graphql(client, CUSTOMERS, {"first": 100}, token=token)
    assert "errors" not in result, result["errors"]
    return result["data"]["admin"]["customers"], len(statements)


@pytest.fixture
async def roomy_client(settings: Settings, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway whose cost limit admits 100 customers with 10 subscriptions and invoices each
    (about 20,500: over the default limit, which is for one customer's own queries)."""
    roomy = settings.model_copy(update={"graphql_max_cost": 25_000, "graphql_cost_budget": 100_000})
    transport = httpx.ASGITransport(app=create_app(roomy, database=db))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
        yield http


async def test_the_customer_list_runs_the_same_statements_for_2_and_for_50_customers(
    roomy_client, db: Database, token_for
):
    client = roomy_client
    admin = token_for("ops", admin=True)
    counts = []
    for customers in (2, 50):
        # Given `customers` customers, each with subscriptions, invoices with lines and a card
        await seed_customers(db, customers)

        # When an admin lists up to 100 customers with their billing
        listed, count = await customers_statements(client, db, admin)
        counts.append(count)

        # Then every customer came back whole
        assert listed["totalCount"] == customers
        assert len(listed["edges"]) == customers
        for edge in listed["edges"]:
            node = edge["node"]
            assert node["defaultPaymentMethod"]["last4"] == "4242"
            assert node["subscriptions"]["totalCount"] == SUBSCRIPTIONS
            statuses = [e["node"]["status"] for e in node["subscriptions"]["edges"]]
            assert statuses == ["ACTIVE", "CANCELED"]
            latest = node["subscriptions"]["edges"][0]["node"]["latestInvoice"]
            assert len(latest["lines"]) == LINES
            invoices = [e["node"] for e in node["invoices"]["edges"]]
            assert [i["number"] for i in invoices] == [
                f"INV-{node['userId']}-{n:04d}" for n in range(INVOICES)
            ]
            assert all(i["subscription"] and len(i["lines"]) == LINES for i in invoices)
        await _empty(db)
    assert abs(counts[1] - counts[0]) <= BATCH_TIMING_SLACK, counts


async def _empty(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.exec_driver_sql(
            "TRUNCATE accounts, plans, subscriptions, invoices, invoice_lines,"
            " payment_methods, payment_transactions RESTART IDENTITY CASCADE"
        )


async def test_a_customers_invoice_cursor_stays_correct_across_inserts(
    client, db: Database, token_for
):
    # Given a customer with 3 invoices, and the first page of 2 of them
    plan = await factories.add(db, factories.plan())
    account = await factories.customer_with_billing(
        db, user_id="paged", plans=[plan], subscriptions=1, invoices=3, lines=1, cards=1
    )
    admin = token_for("ops", admin=True)
    variables: dict[str, Any] = {"search": "paged", "first": 2}
    first = await graphql(client, CUSTOMER_INVOICES, variables, token=admin)
    page = first["data"]["admin"]["customers"]["edges"][0]["node"]["invoices"]
    assert [e["node"]["number"] for e in page["edges"]] == ["INV-paged-0000", "INV-paged-0001"]
    assert page["pageInfo"]["hasNextPage"] is True

    # When a newer invoice arrives before the next page is asked for
    newer = await factories.customer_with_billing(
        db, user_id="other", plans=[plan], subscriptions=0, invoices=1, lines=1, cards=0
    )
    async with db.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE invoices SET account_id = :owner, stripe_created_at = :newest"
                " WHERE account_id = :other"
            ),
            {
                "owner": account.id,
                "newest": datetime.now(UTC) + timedelta(days=1),
                "other": newer.id,
            },
        )
    after = page["pageInfo"]["endCursor"]
    second = await graphql(client, CUSTOMER_INVOICES, variables | {"after": after}, token=admin)

    # Then the next page continues where the first ended, and the count includes the newcomer
    page = second["data"]["admin"]["customers"]["edges"][0]["node"]["invoices"]
    assert [e["node"]["number"] for e in page["edges"]] == ["INV-paged-0002"]
    assert page["pageInfo"]["hasNextPage"] is False
    assert page["totalCount"] == 4


async def test_a_nested_page_over_100_is_refused(client, db: Database, token_for):
    plan = await factories.add(db, factories.plan())
    await factories.customer_with_billing(
        db, user_id="big", plans=[plan], subscriptions=1, invoices=1, lines=1, cards=1
    )
    variables = {"search": "big", "first": 101}
    result = await graphql(client, CUSTOMER_INVOICES, variables, token=token_for("ops", admin=True))
    assert error_codes(result) == ["INVALID_INPUT"]


async def test_customers_is_refused_to_a_non_admin(client, db: Database, token_for):
    result = await graphql(client, CUSTOMERS, {"first": 10}, token=token_for("someone"))
    assert error_codes(result) == ["FORBIDDEN"]
    assert result["data"] is None
