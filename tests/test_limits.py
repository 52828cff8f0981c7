"""Guard rails: too deep, too wide, too aliased or too long queries are refused before they
run; each caller spends a cost budget; production hides introspection and suggestions."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from db.database import Database
from gateway.app import create_app
from gateway.settings import ConfigurationError, Settings
from schema.limits import OperationMeasure
from services import cost_budgets
from services.cost_budgets import Charge, Spend
from tests.conftest import error_codes, graphql

# The dashboard of tests/billing/test_viewer_billing.py.
DASHBOARD = """
query {
  viewer {
    activeSubscription { id status quantity plan { productName amount { formatted } } }
    subscriptions(first: 10) { totalCount edges { node { id status latestInvoice { id } } } }
    invoices(first: 10) {
      totalCount
      edges { node { id status number total { amount currency } amountPaid { amount }
                     subscription { id } lines { description amount { amount } quantity proration } } }
    }
    paymentMethods { stripePaymentMethodId brand last4 isDefault }
    transactions(first: 10) {
      totalCount
      edges { node { status amount { amount } paymentMethod { last4 } invoice { id } receiptUrl } }
    }
  }
}
"""
# viewer 1 + activeSubscription 3 + subscriptions 1+10*3 + invoices 1+10*16
# + paymentMethods 1 + transactions 1+10*5
DASHBOARD_COST = 248
# 13 fields deep, through a fragment.
DEEP = """
query {
  viewer { subscriptions { edges { node { ...Chain } } } }
}
fragment Chain on Subscription {
  latestInvoice { subscription { latestInvoice { subscription { latestInvoice {
    subscription { plan { amount { amount } } } } } } } }
}
"""
# 100 invoices, each with lines and its subscription's latest invoice's lines, twice over.
WIDE = """
query ($n: Int = 100) {
  viewer {
    invoices(first: $n) { edges { node { ...Heavy } } }
    transactions(first: 100) { edges { node { invoice { ...Heavy } } } }
  }
}
fragment Heavy on Invoice {
  lines { amount { amount } }
  subscription { latestInvoice { lines { amount { amount } } } }
}
"""
# viewer 1 + invoices 1+100*26 + transactions 1+100*27
WIDE_COST = 5303
INTROSPECTION = "query { __schema { queryType { name } } }"
TYPO = "query { billingConfig { publishableKy } }"
STATUS_TYPO = (
    "query ($s: [SubscriptionStatus!]) { viewer { subscriptions(status: $s) { totalCount } } }",
    {"s": ["ACTIV"]},
)


def aliased(count: int) -> str:
    return "query { " + " ".join(f"a{n}: billingConfig {{ sandbox }}" for n in range(count)) + " }"


@pytest.fixture
async def client_with(db: Database) -> AsyncIterator[Callable[..., Any]]:
    """Clients on apps with their own settings; all closed at the end."""
    clients: list[httpx.AsyncClient] = []

    def make(settings: Settings) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=create_app(settings, database=db))
        clients.append(httpx.AsyncClient(transport=transport, base_url="http://gateway.test"))
        return clients[-1]

    yield make
    for client in clients:
        await client.aclose()


def production_settings(settings: Settings) -> Settings:
    return Settings.model_validate(
        {
            "billing_env": "production",
            "database_url": "postgresql://u:p@localhost/db",
            "jwt_secret": "x" * 40,
            "stripe_api_key": "sk_test_123",
            "stripe_publishable_key": "pk_test_123",
            "stripe_webhook_secrets": "whsec_real_one",
            "stripe_api_base": settings.stripe_api_base,
        }
    )


def limited(settings: Settings) -> Settings:
    """A budget of two dashboards that refills one point a second."""
    update = {
        "graphql_cost_budget": 600,
        "graphql_max_cost": 600,
        "graphql_cost_refill_per_second": 1.0,
    }
    return settings.model_copy(update=update)


def only_error(result: dict[str, Any]) -> dict[str, Any]:
    (error,) = result["errors"]
    assert result.get("data") is None
    return error


async def test_a_deep_query_is_refused_before_it_runs(client):
    # Without a token: the refusal comes before the viewer would say UNAUTHENTICATED.
    error = only_error(await graphql(client, DEEP))
    assert error["extensions"] == {"code": "QUERY_TOO_COMPLEX", "depth": 13, "limit": 12}


async def test_a_wide_query_is_refused_with_its_cost_and_the_limit(client):
    result = await graphql(client, WIDE)

    error = only_error(result)
    assert error["extensions"] == {"code": "QUERY_TOO_COMPLEX", "cost": WIDE_COST, "limit": 5000}
    assert result["extensions"]["cost"]["requested"] == WIDE_COST


async def test_the_cost_counts_first_from_variables(client):
    result = await graphql(client, WIDE, {"n": 5})

    assert error_codes(result) == ["UNAUTHENTICATED"]  # it ran
    assert result["extensions"]["cost"]["requested"] == WIDE_COST - 95 * 26


async def test_too_many_aliases_are_refused(client):
    assert "errors" not in await graphql(client, aliased(30))

    error = only_error(await graphql(client, aliased(31)))
    assert error["extensions"] == {"code": "QUERY_TOO_COMPLEX", "aliases": 31, "limit": 30}


async def test_a_document_with_too_many_tokens_is_refused_unparsed(client):
    query = "query { billingConfig { " + "sandbox " * 2000 + "} }"

    error = only_error(await graphql(client, query))
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert error["extensions"]["limit"] == 2000 and error["extensions"]["tokens"] > 2000


async def test_the_dashboard_runs_and_reports_its_cost(client, token_for):
    result = await graphql(client, DASHBOARD, token=token_for("alice"))

    assert "errors" not in result and result["data"]["viewer"]["paymentMethods"] == []
    cost = result["extensions"]["cost"]
    assert cost["requested"] == DASHBOARD_COST and cost["limit"] == 5000
    assert cost["budget"] == {
        "available": 20000 - DASHBOARD_COST,
        "capacity": 20000,
        "refillPerSecond": 1000.0,
    }


async def test_a_caller_over_budget_is_rate_limited_and_others_are_not(
    client_with, settings: Settings, token_for
):
    # Given a budget of two dashboards that refills one point a second
    client = client_with(limited(settings))
    alice = {"Authorization": f"Bearer {token_for('alice')}"}
    for _ in range(2):
        assert "errors" not in await graphql(client, DASHBOARD, token=token_for("alice"))

    # When alice asks a third time
    response = await client.post("/graphql", json={"query": DASHBOARD}, headers=alice)

    # Then she is told to wait until her budget holds the query again, and bob is not
    error = only_error(response.json())
    assert error["extensions"]["code"] == "RATE_LIMITED"
    retry_after = error["extensions"]["retryAfter"]
    missing = 3 * DASHBOARD_COST - 600  # seconds at one point a second, less what refilled
    assert missing - 5 <= retry_after <= missing
    assert response.headers["retry-after"] == str(retry_after)
    assert "errors" not in await graphql(client, DASHBOARD, token=token_for("bob"))


async def test_anonymous_callers_spend_the_budget_of_their_address(
    client_with, settings: Settings, token_for
):
    client = client_with(limited(settings))
    # Refused by the viewer, but charged: the cost was reserved before execution.
    for _ in range(2):
        assert error_codes(await graphql(client, DASHBOARD)) == ["UNAUTHENTICATED"]

    assert error_codes(await graphql(client, DASHBOARD)) == ["RATE_LIMITED"]
    assert "errors" not in await graphql(client, DASHBOARD, token=token_for("alice"))


async def older_budget(db: Database, caller: str, seconds: float) -> None:
    """As if the caller's budget had last been touched `seconds` earlier."""
    async with db.driver_connection() as connection:
        await connection.execute(
            "UPDATE cost_budgets SET updated_at = updated_at - make_interval(secs => $2)"
            " WHERE caller = $1",
            caller,
            seconds,
        )


async def test_a_budget_refills_with_time_up_to_its_capacity(db):
    def spend(cost: int, caller: str = "alice") -> Awaitable[Charge]:
        return cost_budgets.spend(db, Spend(caller, cost, capacity=100, refill_per_second=10.0))

    assert (await spend(80)).allowed
    refused = await spend(50)
    assert not refused.allowed and refused.retry_after == 3
    await older_budget(db, "alice", 3.0)
    assert (await spend(50)).allowed
    await older_budget(db, "alice", 1000.0)
    assert (await spend(100)).allowed
    assert not (await spend(1)).allowed
    assert (await spend(100, caller="bob")).allowed


async def test_racing_spends_take_a_budget_exactly_once(db):
    # 40 spends of 10 at once, on as many connections as the pool has: 100 holds 10 of them.
    spend = Spend("alice", 10, capacity=100, refill_per_second=1e-9)

    charges = await asyncio.gather(*(cost_budgets.spend(db, spend) for _ in range(40)))

    assert sum(charge.allowed for charge in charges) == 10
    assert min(charge.available for charge in charges) == pytest.approx(0, abs=1e-3)


def test_a_budget_smaller_than_the_largest_query_is_refused_by_name():
    with pytest.raises(ConfigurationError, match="GRAPHQL_COST_BUDGET"):
        Settings(graphql_cost_budget=100, graphql_max_cost=200)


async def test_production_refuses_introspection_and_suggests_no_field_names(
    client_with, settings: Settings
):
    client = client_with(production_settings(settings))

    refused = await graphql(client, INTROSPECTION)
    assert "data" not in refused  # a validation error: refused before execution
    assert all("introspection" in error["message"] for error in refused["errors"])
    typo = only_error(await graphql(client, TYPO))
    assert "publishableKy" in typo["message"] and "Did you mean" not in typo["message"]
    value = only_error(await graphql(client, *STATUS_TYPO))
    assert "ACTIV" in value["message"] and "Did you mean" not in value["message"]


async def test_development_keeps_introspection_and_suggestions(client):
    introspected = await graphql(client, INTROSPECTION)
    assert introspected["data"]["__schema"]["queryType"]["name"] == "Query"

    typo = only_error(await graphql(client, TYPO))
    assert "Did you mean 'publishableKey'?" in typo["message"]
    value = only_error(await graphql(client, *STATUS_TYPO))
    assert "Did you mean the enum value 'ACTIVE'?" in value["message"]


async def test_a_failing_limit_check_refuses_as_an_internal_error(client, monkeypatch, caplog):
    def broken(*args: Any) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(OperationMeasure, "of_operation", broken)

    error = only_error(await graphql(client, aliased(1)))
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert "secret detail" not in error["message"]
    assert error["extensions"]["requestId"] in caplog.text
