"""Rows read by key through the driver's pool (db/rows.py) are the engine's rows."""

from datetime import UTC, datetime

from sqlalchemy import select

from db.database import Database
from db.models import PaymentStatus, PaymentTransaction, Subscription
from db.rows import rows_where_in
from tests import factories


async def engine_rows(db: Database, table, column, keys) -> list[tuple]:
    async with db.read_session() as session:
        query = select(*table.columns).where(column.in_(keys)).order_by(table.c.id)
        return [tuple(row) for row in (await session.execute(query)).all()]


async def test_rows_by_key_read_as_the_engines_with_enums_and_json_decoded(db: Database):
    # Given two payments (an enum status and JSONB metadata) and a customer's subscriptions
    plan = await factories.add(db, factories.plan())
    account = await factories.customer_with_billing(
        db, user_id="alice", plans=[plan], subscriptions=2, invoices=1, lines=1, cards=1
    )
    payments = [
        PaymentTransaction(
            stripe_payment_intent_id=f"pi_rows_{n}",
            account_id=account.id,
            status=PaymentStatus.SUCCEEDED if n else PaymentStatus.REQUIRES_ACTION,
            amount=100 * n,
            currency="usd",
            metadata_={"credits": str(n), "nested": {"n": n}},
            stripe_created_at=datetime.now(UTC),
        )
        for n in range(2)
    ]
    await factories.add_all(db, payments)
    table = PaymentTransaction.__table__
    keys = [payment.stripe_payment_intent_id for payment in payments] + ["pi_missing"]

    # When they are read by key through the driver's pool
    rows = await rows_where_in(db, table, "stripe_payment_intent_id", keys, order_by="id")
    subscriptions = await rows_where_in(db, Subscription.__table__, "account_id", [account.id])

    # Then they are the engine's rows, attribute for attribute
    column = PaymentTransaction.stripe_payment_intent_id
    assert [tuple(row) for row in rows] == await engine_rows(db, table, column, keys)
    assert rows[0].status is PaymentStatus.REQUIRES_ACTION
    assert rows[1].metadata == {"credits": "1", "nested": {"n": 1}}
    by_id = sorted(subscriptions, key=lambda row: row.id)
    expected = await engine_rows(db, Subscription.__table__, Subscription.account_id, [account.id])
    assert len(by_id) == 2 and [tuple(row) for row in by_id] == expected
