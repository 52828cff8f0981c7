"""Migrations run from empty to head and back, and agree with the models."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select, text

from db import sealed
from db.database import Database
from db.migrate import current_revision, downgrade, head_revision, upgrade
from db.models import Account, Base, Notification, StripeEvent, TaxId
from services.webhooks import inbox
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
    "cost_budgets",
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


PLAIN_ROWS = [
    (
        "INSERT INTO accounts (id, user_id, email, name, address) VALUES (1, 'ada', "
        "'Ada@Example.com', 'Ada Lovelace', '{\"line1\": \"1 Main St\"}')"
    ),
    (
        "INSERT INTO tax_ids (stripe_tax_id, account_id, type, value, verification, "
        "stripe_created_at) VALUES ('txi_1', 1, 'au_abn', '51824753556', 'verified', now())"
    ),
    (
        "INSERT INTO notifications (account_id, kind, cause, recipient, subject, context) VALUES "
        "(1, 'receipt', 'receipt:in_1', 'ada@example.com', 'Receipt', "
        '\'{"customer_name": "Ada Lovelace", "invoice_number": "INV-1"}\')'
    ),
    (
        "INSERT INTO stripe_events (stripe_event_id, type, stripe_created_at, object_id, payload) "
        "VALUES ('evt_1', 'customer.updated', now(), 'cus_1', '{\"id\": \"evt_1\", \"type\": "
        '"customer.updated", "created": 1, "data": {"object": {"id": "cus_1", '
        '"object": "customer", "email": "ada@example.com"}}}\')'
    ),
]


async def test_upgrading_seals_the_personal_data_already_stored_and_downgrading_opens_it():
    url = await create_scratch_database("billing_migrations")
    database = Database(url, pool_size=1)
    try:
        await upgrade(database.engine, "0008")
        async with database.engine.begin() as conn:
            for statement in PLAIN_ROWS:
                await conn.execute(text(statement))

        await upgrade(database.engine)

        async with database.engine.connect() as conn:
            raw = await conn.execute(text("SELECT email, name, address FROM accounts"))
        assert not any("Ada" in value or "Main" in value for value in raw.one())
        async with database.session() as session:
            account = await session.scalar(select(Account))
            mail = await session.scalar(select(Notification))
            event = await session.scalar(select(StripeEvent))
            value = await session.scalar(select(TaxId.value))
            found = await session.scalar(
                select(Account.user_id).where(
                    Account.email_index.in_(sealed.keyring().email_indexes("ada@example.com"))
                )
            )
        assert (account.email, account.name, account.address) == (
            "Ada@Example.com", "Ada Lovelace", {"line1": "1 Main St"}
        )  # fmt: skip
        assert found == "ada" and value == "51824753556"
        assert (mail.recipient, mail.recipient_name) == ("ada@example.com", "Ada Lovelace")
        assert mail.context == {"invoice_number": "INV-1"}
        assert "ada@" not in str(event.payload)
        assert inbox.event_of(event.payload)["data"]["object"]["email"] == "ada@example.com"

        await downgrade(database.engine, "0008")

        async with database.engine.connect() as conn:
            plain = await conn.execute(text("SELECT email, name, address->>'line1' FROM accounts"))
            context = await conn.scalar(text("SELECT context->>'customer_name' FROM notifications"))
            payload = await conn.scalar(
                text("SELECT payload->'data'->'object'->>'email' FROM stripe_events")
            )
        assert tuple(plain.one()) == ("Ada@Example.com", "Ada Lovelace", "1 Main St")
        assert context == "Ada Lovelace" and payload == "ada@example.com"
    finally:
        await database.dispose()
        await drop_database(url)
