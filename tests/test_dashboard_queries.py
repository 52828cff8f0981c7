"""The dashboard query runs as many SQL statements for 50 items of each list as for 2 (no N+1)."""

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import event

from db.database import Database
from db.models import (
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    PaymentStatus,
    PaymentTransaction,
    Subscription,
    SubscriptionStatus,
)
from tests import factories
from tests.conftest import graphql
from tests.credits.support import grant

DASHBOARD = """
query ($first: Int) {
  viewer {
    activeSubscription { id status quantity plan { productName amount { formatted } } }
    subscriptions(first: $first) {
      totalCount edges { node { id status plan { productName } latestInvoice { id } } }
    }
    invoices(first: $first) {
      totalCount
      edges { node { id status number total { amount currency } amountPaid { amount }
                     subscription { id } lines { description amount { amount } quantity proration } } }
    }
    customer { defaultPaymentMethod { last4 } }
    paymentMethods { stripePaymentMethodId brand last4 isDefault }
    transactions(first: $first) {
      totalCount
      edges { node { status amount { amount } paymentMethod { last4 } invoice { id } receiptUrl } }
    }
    credits {
      balance
      entries(first: $first) { totalCount edges { node { kind amount balanceAfter reason } } }
    }
    access { status hasAccess until subscription { id status } }
  }
}
"""
LINES_PER_INVOICE = 3
# Two branches of the query that load through the same DataLoader share a batch only when
# their loads land in the same event-loop turn, which depends on I/O timing: the count
# varies by a statement or two from run to run. An N+1 adds one statement per item (dozens).
BATCH_TIMING_SLACK = 3


@contextmanager
def counted_statements(database: Database) -> Iterator[list[str]]:
    """Every SQL statement the app sends while the block runs: through the engine, and
    through the driver's own pool (`Database.driver_connection`)."""
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    driver_sinks = _driver_statement_sinks(database)
    driver_sinks[id(statements)] = statements
    try:
        yield statements
    finally:
        del driver_sinks[id(statements)]
        event.remove(engine, "before_cursor_execute", record)


# asyncpg asks for the types of a statement's values it has no codec for, once per
# connection (with JIT off around it): not the app's statements, and no sign of an N+1.
ASYNCPG_INTROSPECTION = (
    "SELECT current_setting('jit')",
    "WITH RECURSIVE typeinfo_tree",
    "SELECT set_config('jit'",
)


def _driver_statement_sinks(database: Database) -> dict[int, list[str]]:
    """The lists (by id) each statement on the database's driver pool is appended to (its
    connections are logged from the first call on)."""
    sinks: dict[int, list[str]] | None = getattr(database, "_statement_sinks", None)
    if sinks is not None:
        return sinks
    sinks = database._statement_sinks = {}  # type: ignore[attr-defined]
    driver_connection = database.driver_connection

    def record(query: asyncpg.connection.LoggedQuery) -> None:
        if " ".join(query.query.split()).startswith(ASYNCPG_INTROSPECTION):
            return
        for sink in sinks.values():
            sink.append(query.query)

    @asynccontextmanager
    async def logged_driver_connection() -> AsyncIterator[asyncpg.Connection]:
        async with driver_connection() as connection:
            connection.add_query_logger(record)
            try:
                yield connection
            finally:
                connection.remove_query_logger(record)

    database.driver_connection = logged_driver_connection  # type: ignore[method-assign]
    return sinks


async def seed_billing(database: Database, user_id: str, items: int) -> None:
    """`items` plans, subscriptions, invoices (with lines), cards and payments for one user."""
    account = await factories.add(database, factories.account(user_id=user_id))
    cards = [
        await factories.add(database, factories.payment_method(account.id)) for _ in range(items)
    ]
    account.default_payment_method_stripe_id = cards[0].stripe_payment_method_id
    await factories.add(database, account)
    now = datetime.now(UTC)
    for n in range(items):
        plan = await factories.add(database, factories.plan())
        key = f"{user_id}_{n}"
        invoice = Invoice(
            stripe_invoice_id=f"in_{key}",
            account_id=account.id,
            subscription_stripe_id=f"sub_{key}",
            status=InvoiceStatus.PAID,
            currency="usd",
            subtotal=1000,
            total=1000,
            amount_due=1000,
            amount_paid=1000,
            amount_remaining=0,
            stripe_created_at=now - timedelta(minutes=n),
        )
        await factories.add(database, invoice)
        rows: list[Any] = [
            InvoiceLine(
                invoice_id=invoice.id,
                stripe_line_id=f"il_{key}_{position}",
                position=position,
                amount=1000,
                currency="usd",
            )
            for position in range(LINES_PER_INVOICE)
        ]
        rows.append(
            Subscription(
                stripe_subscription_id=f"sub_{key}",
                account_id=account.id,
                plan_id=plan.id,
                status=SubscriptionStatus.ACTIVE if n == 0 else SubscriptionStatus.CANCELED,
                current_period_start=now,
                current_period_end=now + timedelta(days=30),
                latest_invoice_stripe_id=invoice.stripe_invoice_id,
                stripe_created_at=now - timedelta(minutes=n),
            )
        )
        rows.append(
            PaymentTransaction(
                stripe_payment_intent_id=f"pi_{key}",
                account_id=account.id,
                status=PaymentStatus.SUCCEEDED,
                amount=1000,
                currency="usd",
                payment_method_stripe_id=cards[n].stripe_payment_method_id,
                invoice_stripe_id=invoice.stripe_invoice_id,
                stripe_created_at=now - timedelta(minutes=n),
            )
        )
        for row in rows:
            await factories.add(database, row)
        await grant(database, account.id, 100, f"in_{key}")


async def dashboard_statements(client, db: Database, token: str) -> tuple[dict[str, Any], int]:
    with counted_statements(db) as statements:
        result = await graphql(client, DASHBOARD, {"first": 50}, token=token)
    assert "errors" not in result, result["errors"]
    return result["data"]["viewer"], len(statements)


async def test_the_dashboard_runs_the_same_statements_for_2_and_for_50_items(
    client, db: Database, token_for
):
    # Given two callers, one with 2 of everything and one with 50
    await seed_billing(db, "few", 2)
    await seed_billing(db, "many", 50)

    # When each asks for the dashboard
    few, few_count = await dashboard_statements(client, db, token_for("few"))
    many, many_count = await dashboard_statements(client, db, token_for("many"))

    # Then every list came back whole, in the same number of statements
    for viewer, items in ((few, 2), (many, 50)):
        assert len(viewer["subscriptions"]["edges"]) == items
        assert len(viewer["invoices"]["edges"]) == items
        assert len(viewer["paymentMethods"]) == items
        assert len(viewer["transactions"]["edges"]) == items
        invoices = [edge["node"] for edge in viewer["invoices"]["edges"]]
        assert all(len(invoice["lines"]) == LINES_PER_INVOICE for invoice in invoices)
        assert all(invoice["subscription"] for invoice in invoices)
        payments = [edge["node"] for edge in viewer["transactions"]["edges"]]
        assert all(p["invoice"] and p["paymentMethod"]["last4"] for p in payments)
        assert viewer["activeSubscription"]["status"] == "ACTIVE"
        active = viewer["activeSubscription"]
        assert viewer["access"]["subscription"] == {"id": active["id"], "status": active["status"]}
        assert viewer["access"]["hasAccess"] and viewer["access"]["status"] == "ACTIVE"
        assert viewer["credits"]["balance"] == str(100 * items)
        assert viewer["credits"]["entries"]["totalCount"] == items
        assert viewer["customer"]["defaultPaymentMethod"]["last4"] == "4242"
    assert abs(many_count - few_count) <= BATCH_TIMING_SLACK, (few_count, many_count)
