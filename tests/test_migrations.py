"""Migrations run from empty to head and back, and agree with the models."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from db.database import Database
from db.migrate import current_revision, downgrade, head_revision, upgrade
from db.models import Base
from tests.conftest import create_scratch_database, drop_database

TABLES = {
    "accounts",
    "plans",
    "subscriptions",
    "payment_methods",
    "invoices",
    "invoice_lines",
    "payment_transactions",
    "credit_accounts",
    "credit_entries",
    "stripe_events",
    "idempotency_keys",
    "audit_log",
    "read_changes",
    "read_change_totals",
    "reconciliation_marks",
    "tax_ids",
    "tax_rates",
    "discounts",
    "notifications",
    "product_webhook_endpoints",
    "product_events",
    "product_webhook_deliveries",
    "data_exports",
}


async def public_tables(database: Database) -> set[str]:
    async with database.engine.connect() as conn:
        rows = await conn.scalars(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        )
        return set(rows) - {"alembic_version"}


async def test_upgrade_to_head_then_down_to_base_then_up_again():
    url = await create_scratch_database("billing_migrations")
    database = Database(url, pool_size=1)
    try:
        await upgrade(database.engine)
        assert await public_tables(database) == TABLES
        async with database.engine.connect() as conn:
            assert await current_revision(conn) == head_revision()

        await downgrade(database.engine, "base")
        assert await public_tables(database) == set()
        async with database.engine.connect() as conn:
            assert await current_revision(conn) is None
            functions = await conn.scalar(
                text("SELECT count(*) FROM pg_proc WHERE proname = 'refuse_change_to_history'")
            )
            assert functions == 0

        await upgrade(database.engine)
        assert await public_tables(database) == TABLES
    finally:
        await database.dispose()
        await drop_database(url)


async def test_models_and_migrations_describe_the_same_schema(database: Database):
    async with database.engine.connect() as conn:
        differences = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
        )
    assert differences == []
