"""A customer's repeated query is served from the response cache until a commit changes
what it was read from: any commit, by any writer, and only such commits."""

import asyncio
from typing import Any

from graphql import parse
from graphql.utilities import get_operation_ast
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from db.database import Database
from db.migrate import upgrade
from db.sealed import seal
from gateway.app import create_app
from gateway.settings import Settings
from schema.cache import is_cacheable
from services import response_cache
from tests import factories
from tests.conftest import create_scratch_database, drop_database, error_codes, graphql
from tests.test_dashboard_queries import counted_statements
from tests.test_observability import JsonCapture, samples
from tests.test_readiness import client_for

DASHBOARD = """
query Dashboard {
  viewer {
    customer { email }
    subscriptions(first: 5) { edges { node { status plan { productName } } } }
    invoices(first: 5) { totalCount edges { node { number lines { description } } } }
  }
}
"""
# viewer 1 + customer 1 + subscriptions 1+5*3 + invoices 1+5*3 (edges, node, plan or lines)
COST = 34


async def a_customer(db: Database, user_id: str) -> int:
    plan = await factories.add(db, factories.plan(product_name="Pro"))
    account = await factories.customer_with_billing(
        db, user_id=user_id, plans=[plan], subscriptions=1, invoices=2, lines=1, cards=1
    )
    return account.id


async def dashboard(client, token: str, db: Database) -> tuple[dict[str, Any], int]:
    with counted_statements(db) as statements:
        result = await graphql(client, DASHBOARD, token=token)
    assert "errors" not in result, result["errors"]
    return result["data"]["viewer"], len(statements)


async def commit(db: Database, statement: str, **values: Any) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(text(statement), values)


async def test_a_repeated_query_is_answered_without_reading_the_data_again(
    client, db: Database, token_for
):
    await a_customer(db, "alice")
    token = token_for("alice")

    first, first_statements = await dashboard(client, token, db)
    again, again_statements = await dashboard(client, token, db)

    assert again == first
    assert first_statements > 3
    assert again_statements == 1  # the version of alice's data, nothing else


async def test_each_kind_of_commit_to_what_was_read_is_seen_at_once(
    client, db: Database, token_for
):
    account_id = await a_customer(db, "alice")
    token = token_for("alice")
    await dashboard(client, token, db)

    # An invoice's own row
    await commit(
        db,
        "UPDATE invoices SET number = 'INV-NEW' WHERE account_id = :a AND number LIKE '%0000'",
        a=account_id,
    )
    viewer, _ = await dashboard(client, token, db)
    assert viewer["invoices"]["edges"][0]["node"]["number"] == "INV-NEW"

    # A line (its account is its invoice's)
    await commit(db, "UPDATE invoice_lines SET description = 'Renamed'")
    viewer, _ = await dashboard(client, token, db)
    assert viewer["invoices"]["edges"][0]["node"]["lines"] == [{"description": "Renamed"}]

    # The catalog, which no account owns
    await commit(db, "UPDATE plans SET product_name = 'Pro 2'")
    viewer, _ = await dashboard(client, token, db)
    assert viewer["subscriptions"]["edges"][0]["node"]["plan"]["productName"] == "Pro 2"

    # The account itself, and a deletion
    await commit(
        db, "UPDATE accounts SET email = :e WHERE id = :a", e=seal("new@example.com"), a=account_id
    )
    await commit(
        db, "DELETE FROM invoices WHERE account_id = :a AND number = 'INV-NEW'", a=account_id
    )
    viewer, _ = await dashboard(client, token, db)
    assert viewer["customer"]["email"] == "new@example.com"
    assert viewer["invoices"]["totalCount"] == 1


async def test_others_changes_and_rolled_back_ones_keep_the_cached_answer(
    client, db: Database, token_for
):
    await a_customer(db, "alice")
    bob = await a_customer(db, "bob")
    token = token_for("alice")
    cached, _ = await dashboard(client, token, db)

    await commit(db, "UPDATE invoices SET number = 'BOB-1' WHERE account_id = :a", a=bob)
    async with db.engine.connect() as conn:
        await conn.execute(text("UPDATE invoice_lines SET description = 'never'"))
        await conn.rollback()

    viewer, statements = await dashboard(client, token, db)
    assert viewer == cached and statements == 1


async def test_customers_never_share_answers(client, db: Database, token_for):
    await a_customer(db, "alice")
    await a_customer(db, "bob")
    alice, _ = await dashboard(client, token_for("alice"), db)
    bob, _ = await dashboard(client, token_for("bob"), db)
    assert alice["customer"]["email"] == "alice@example.com"
    assert bob["customer"]["email"] == "bob@example.com"


async def test_reads_racing_commits_never_answer_older_than_the_last_commit(
    client, db: Database, token_for
):
    account_id = await a_customer(db, "alice")
    token = token_for("alice")

    async def rename(n: int) -> None:
        async with db.engine.begin() as conn:
            await _rename(conn, account_id, f"INV-{n}")

    for n in range(12):
        # Reads and a commit at the same time: whatever the reads saw...
        await asyncio.gather(*(dashboard(client, token, db) for _ in range(3)), rename(n))
        # ...once the commit is done, every answer has it
        viewer, _ = await dashboard(client, token, db)
        numbers = [edge["node"]["number"] for edge in viewer["invoices"]["edges"]]
        assert numbers[0] == f"INV-{n}", (n, numbers)


async def _rename(conn: AsyncConnection, account_id: int, number: str) -> None:
    await conn.execute(
        text(
            "UPDATE invoices SET number = :number WHERE id ="
            " (SELECT id FROM invoices WHERE account_id = :a ORDER BY stripe_created_at DESC LIMIT 1)"
        ),
        {"number": number, "a": account_id},
    )


def cacheable(document: str) -> bool:
    parsed = parse(document)
    operation = get_operation_ast(parsed)
    assert operation is not None
    return is_cacheable(parsed, operation)


def test_only_a_customers_own_reads_are_cacheable():
    assert cacheable("{ viewer { userId } plans { id } }")
    assert not cacheable("{ viewer { userId } admin { metrics { arr { amount } } } }")
    assert not cacheable('{ node(id: "x") { id } }')
    assert not cacheable("mutation { cancelSubscription(input: {}) { userErrors { code } } }")
    # Access runs out by the clock, with no commit to announce it
    assert not cacheable("{ viewer { ...A } } fragment A on Viewer { access { status } }")


async def versions(db: Database, *user_ids: str) -> list[int]:
    found = [
        await response_cache.account_version(database=db, user_id=user_id) for user_id in user_ids
    ]
    assert all(found), found
    return [version for _, version in found]  # type: ignore[misc]


async def test_a_row_moving_between_accounts_and_credit_entries_move_the_versions(db: Database):
    alice = await a_customer(db, "alice")
    bob = await a_customer(db, "bob")
    before = await versions(db, "alice", "bob")

    # An invoice that moves from alice to bob changes what both read
    await commit(
        db,
        "UPDATE invoices SET account_id = :b WHERE id = (SELECT min(id) FROM invoices WHERE account_id = :a)",
        a=alice,
        b=bob,
    )
    moved = await versions(db, "alice", "bob")
    assert moved[0] > before[0] and moved[1] > before[1]

    # A ledger entry is alice's through her credit account
    await commit(db, "INSERT INTO credit_accounts (account_id) VALUES (:a)", a=alice)
    opened = await versions(db, "alice", "bob")
    await commit(
        db,
        "INSERT INTO credit_entries (credit_account_id, kind, amount, balance_after, reason,"
        " idempotency_key, actor) SELECT id, 'grant', 10, 10, 'test', 'k1', 'test'"
        " FROM credit_accounts WHERE account_id = :a",
        a=alice,
    )
    granted = await versions(db, "alice", "bob")
    assert granted[0] == opened[0] + 1 and granted[1] == opened[1]


async def test_folding_read_changes_away_keeps_every_version(client, db: Database, token_for):
    alice = await a_customer(db, "alice")
    await a_customer(db, "bob")
    token = token_for("alice")
    first, _ = await dashboard(client, token, db)
    before = await versions(db, "alice", "bob")

    async with db.session() as session:
        await response_cache.fold_read_changes(session=session)

    async with db.engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM read_changes")) == 0
    assert await versions(db, "alice", "bob") == before
    _, statements = await dashboard(client, token, db)
    assert statements == 1  # still the cached answer: only the version was read
    await commit(db, "UPDATE accounts SET email = :e WHERE id = :a", e=seal("new@x.test"), a=alice)
    changed = await versions(db, "alice", "bob")
    assert changed[0] == before[0] + 1 and changed[1] == before[1]
    again, _ = await dashboard(client, token, db)
    assert again["customer"]["email"] == "new@x.test" != first["customer"]["email"]


async def test_a_cached_answer_is_the_executed_one_with_its_cost_and_charges_the_budget(
    settings: Settings, db: Database, token_for
):
    # Given a budget of three dashboards that refills one point a second
    await a_customer(db, "alice")
    limited = settings.model_copy(
        update={"graphql_cost_budget": 3 * COST, "graphql_cost_refill_per_second": 1.0}
    )
    headers = {"Authorization": f"Bearer {token_for('alice')}"}
    async with client_for(create_app(limited, database=db)) as client:
        # When alice asks for her dashboard three times, then once more
        answers = []
        for _ in range(3):
            with counted_statements(db) as statements:
                response = await client.post("/graphql", json={"query": DASHBOARD}, headers=headers)
            answers.append((response.json(), len(statements)))
        refused = await client.post("/graphql", json={"query": DASHBOARD}, headers=headers)

    # Then the second and third were served from the cache, with the same data and cost,
    # each taking its cost from the budget
    (executed, _), *cached = answers
    assert [statements for _, statements in cached] == [1, 1]
    assert all(answer["data"] == executed["data"] for answer, _ in cached)
    budgets = [answer["extensions"]["cost"].pop("budget") for answer, _ in answers]
    assert all(answer["extensions"] == {"cost": {"requested": COST, "limit": 5000}}
               for answer, _ in answers)  # fmt: skip
    assert [budget["available"] for budget in budgets] == [2 * COST, COST, 0]
    # and the fourth is refused as any request over budget is
    assert error_codes(refused.json()) == ["RATE_LIMITED"]
    assert int(refused.headers["retry-after"]) >= COST - 5


async def test_an_answer_read_again_after_a_change_is_charged_once(
    settings: Settings, db: Database, token_for
):
    # Given alice's dashboard held at a version a commit has since moved
    account_id = await a_customer(db, "alice")
    limited = settings.model_copy(
        update={"graphql_cost_budget": 3 * COST, "graphql_cost_refill_per_second": 0.001}
    )
    headers = {"Authorization": f"Bearer {token_for('alice')}"}
    async with client_for(create_app(limited, database=db)) as client:
        first = (await client.post("/graphql", json={"query": DASHBOARD}, headers=headers)).json()
        await commit(
            db, "UPDATE invoices SET number = 'INV-NEW' WHERE account_id = :a", a=account_id
        )

        # When she asks again: the held answer's cost is spent with the version, which
        # then misses, so the pipeline reads her data afresh
        again = (await client.post("/graphql", json={"query": DASHBOARD}, headers=headers)).json()
        cached = (await client.post("/graphql", json={"query": DASHBOARD}, headers=headers)).json()

    # Then the fresh answer took its cost once, and the next (a hit) once more
    numbers = {edge["node"]["number"] for edge in again["data"]["viewer"]["invoices"]["edges"]}
    assert numbers == {"INV-NEW"} and again["data"] != first["data"]
    assert cached["data"] == again["data"]
    available = [
        answer["extensions"]["cost"]["budget"]["available"] for answer in (first, again, cached)
    ]
    assert available == [2 * COST, COST, 0]


async def test_a_cached_answer_is_counted_logged_and_carries_the_request_id(
    client, db: Database, token_for
):
    await a_customer(db, "alice")
    headers = {"Authorization": f"Bearer {token_for('alice')}", "X-Request-Id": "cached-0123456"}
    await client.post("/graphql", json={"query": DASHBOARD}, headers=headers)
    before = await operations_served(client, "Dashboard")

    with JsonCapture("billing_gateway.http") as logs, counted_statements(db) as statements:
        response = await client.post("/graphql", json={"query": DASHBOARD}, headers=headers)

    assert len(statements) == 1 and "errors" not in response.json()
    assert response.headers["x-request-id"] == "cached-0123456"
    assert response.headers["content-type"] == "application/json"
    (line,) = logs.lines()
    assert line["request_id"] == "cached-0123456"
    assert line["message"].startswith("POST /graphql 200")
    assert await operations_served(client, "Dashboard") == before + 1


async def operations_served(client, name: str) -> float:
    found = samples((await client.get("/metrics")).text)
    return found[("billing_graphql_operations_total", (("operation", name), ("type", "query")))]


async def test_a_cached_answer_needs_the_same_valid_token(client, db: Database, token_for):
    await a_customer(db, "alice")
    await dashboard(client, token_for("alice"), db)

    expired = await graphql(client, DASHBOARD, token=token_for("alice", ttl_seconds=-60))
    anonymous = await graphql(client, DASHBOARD)

    assert error_codes(expired) == ["UNAUTHENTICATED"] and "expired" in str(expired["errors"])
    assert error_codes(anonymous) == ["UNAUTHENTICATED"]


async def test_a_commit_through_another_engine_is_seen_by_the_next_request(
    client, db: Database, token_for
):
    # Given alice's cached dashboard, and another process's connection to the database
    account_id = await a_customer(db, "alice")
    token = token_for("alice")
    await dashboard(client, token, db)
    other_process = Database(db.url, pool_size=1)
    try:
        # When that process commits a change to her account
        async with other_process.engine.begin() as conn:
            await conn.execute(
                text("UPDATE accounts SET email = :e WHERE id = :a"),
                {"e": seal("other@example.com"), "a": account_id},
            )
    finally:
        await other_process.dispose()

    # Then her next request reads the data again and answers the change
    viewer, statements = await dashboard(client, token, db)
    assert viewer["customer"]["email"] == "other@example.com" and statements > 1


async def test_a_version_that_cannot_be_read_leaves_the_answer_to_the_pipeline(
    settings: Settings, token_for
):
    # Given a gateway whose database has gone
    url = await create_scratch_database("billing_cache_gone")
    database = Database(url, pool_size=2)
    try:
        await upgrade(database.engine)
        async with client_for(create_app(settings, database=database)) as client:
            await drop_database(url)
            headers = {"Authorization": f"Bearer {token_for('alice')}"}
            # When a signed-in caller asks for a cacheable query
            response = await client.post("/graphql", json={"query": DASHBOARD}, headers=headers)
    finally:
        await database.dispose()
        await drop_database(url)

    # Then the pipeline answers it as any failure: masked, naming the request id
    assert response.status_code == 200
    error = response.json()["errors"][0]
    assert error["extensions"] == {
        "code": "INTERNAL_SERVER_ERROR",
        "requestId": response.headers["x-request-id"],
    }
