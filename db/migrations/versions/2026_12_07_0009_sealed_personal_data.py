"""sealed personal data: emails, names, addresses, tax ids, stored responses, mail recipients,
webhook payloads and signing secrets sealed with the data keys (db/sealed.py), and the
accounts' email blind index

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 14:00:00

Existing values are sealed here, with the keys of the process running the migration.
"""

import json
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from db import sealed

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The plain text columns that become sealed text (JSON ones are converted to text first).
SEALED_COLUMNS = {
    "accounts": ("email", "name", "address"),
    "invoices": ("customer_address", "customer_tax_ids"),
    "tax_ids": ("value",),
    "idempotency_keys": ("response",),
    "notifications": ("recipient",),
    "product_webhook_endpoints": ("secret",),
}
JSON_COLUMNS = (
    ("accounts", "address"),
    ("invoices", "customer_address"),
    ("invoices", "customer_tax_ids"),
    ("idempotency_keys", "response"),
)

STAY_ERASED = """
CREATE OR REPLACE FUNCTION account_stays_erased() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.erased_at IS NOT NULL THEN
        NEW.erased_at := OLD.erased_at;
        NEW.email := NULL;
        NEW.email_index := NULL;
        NEW.name := NULL;
        NEW.address := NULL;
    END IF;
    RETURN NEW;
END $$
"""
NOTHING_PERSONAL = """
CREATE OR REPLACE FUNCTION nothing_personal_of_erased() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM accounts WHERE id = NEW.account_id AND erased_at IS NOT NULL
    ) THEN
        RETURN NEW;
    END IF;
    IF TG_TABLE_NAME = 'tax_ids' THEN
        RETURN NULL;
    ELSIF TG_TABLE_NAME = 'invoices' THEN
        NEW.customer_address := NULL;
        NEW.customer_tax_ids := {empty_tax_ids};
    ELSIF TG_TABLE_NAME = 'payment_transactions' THEN
        NEW.receipt_url := NULL;
    END IF;
    RETURN NEW;
END $$
"""


def _transform(table: str, columns: Sequence[str], change: Callable[[Any], Any]) -> None:
    """Every row's non-empty `columns` through `change`."""
    bind = op.get_bind()
    listed = ", ".join(columns)
    rows = bind.execute(sa.text(f"SELECT id, {listed} FROM {table}")).mappings().all()
    assignments = ", ".join(f"{column} = :{column}" for column in columns)
    changed = [
        {"id": row["id"]}
        | {column: change(row[column]) if row[column] else row[column] for column in columns}
        for row in rows
    ]
    if changed:
        bind.execute(sa.text(f"UPDATE {table} SET {assignments} WHERE id = :id"), changed)


def _rewrite_payloads(table: str, where: str, change: Callable[[str], str]) -> None:
    """Each `where` row's JSONB payload (as text) through `change`."""
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(f"SELECT id, payload::text AS payload FROM {table} WHERE {where}")
    ).all()
    changed = [{"id": row.id, "payload": change(row.payload)} for row in rows]
    if changed:
        bind.execute(
            sa.text(f"UPDATE {table} SET payload = CAST(:payload AS jsonb) WHERE id = :id"),
            changed,
        )


def _sealed_product_event(text: str) -> str:
    payload = json.loads(text)
    data = payload.pop("data")
    return json.dumps(sealed.envelope(payload, json.dumps(data)))


def _opened(text: str) -> tuple[dict[str, Any], Any]:
    """An envelope's clear part and its opened body."""
    payload = json.loads(text)
    return payload, json.loads(sealed.keyring().open(payload.pop(sealed.SEALED)))


def _opened_event(text: str) -> str:
    return json.dumps(_opened(text)[1])


def _opened_product_event(text: str) -> str:
    clear, data = _opened(text)
    return json.dumps(clear | {"data": data})


def upgrade() -> None:
    keyring = sealed.keyring()
    op.add_column("accounts", sa.Column("email_index", postgresql.BYTEA(), nullable=True))
    op.create_index(op.f("ix_accounts_email_index"), "accounts", ["email_index"])
    op.add_column("notifications", sa.Column("recipient_name", sa.Text(), nullable=True))
    op.alter_column("invoices", "customer_tax_ids", server_default=None, nullable=True)
    op.execute("UPDATE invoices SET customer_tax_ids = NULL WHERE customer_tax_ids = '[]'::jsonb")
    for table, column in JSON_COLUMNS:
        op.alter_column(table, column, type_=sa.Text(), postgresql_using=f"{column}::text")
    op.execute(STAY_ERASED)
    op.execute(NOTHING_PERSONAL.format(empty_tax_ids="NULL"))

    op.execute(
        "UPDATE notifications SET recipient_name = nullif(context->>'customer_name', ''), "
        "context = context - 'customer_name'"
    )
    for table, columns in SEALED_COLUMNS.items():
        _transform(table, columns, keyring.seal)
    _transform("notifications", ("recipient_name",), keyring.seal)
    bind = op.get_bind()
    accounts = bind.execute(sa.text("SELECT id, email FROM accounts WHERE email IS NOT NULL")).all()
    if accounts:
        bind.execute(
            sa.text("UPDATE accounts SET email_index = :index WHERE id = :id"),
            [
                {"id": row.id, "index": keyring.email_index(keyring.open(row.email))}
                for row in accounts
            ],
        )
    from services.webhooks.inbox import event_envelope

    _rewrite_payloads(
        "stripe_events",
        "NOT payload ? 'retained'",
        lambda text: event_envelope(json.loads(text), text),
    )
    _rewrite_payloads("product_events", "payload->'data' <> '{}'", _sealed_product_event)


def downgrade() -> None:
    keyring = sealed.keyring()
    for table, columns in SEALED_COLUMNS.items():
        _transform(table, columns, keyring.open)
    _transform("notifications", ("recipient_name",), keyring.open)
    op.execute(
        "UPDATE notifications SET context = context || "
        "jsonb_build_object('customer_name', recipient_name)"
    )
    op.drop_column("notifications", "recipient_name")
    for table, column in JSON_COLUMNS:
        op.alter_column(
            table, column, type_=postgresql.JSONB(), postgresql_using=f"{column}::jsonb"
        )
    op.execute("UPDATE invoices SET customer_tax_ids = '[]'::jsonb WHERE customer_tax_ids IS NULL")
    op.alter_column(
        "invoices", "customer_tax_ids", server_default=sa.text("'[]'::jsonb"), nullable=False
    )
    op.execute(NOTHING_PERSONAL.format(empty_tax_ids="'[]'::jsonb"))
    op.execute(STAY_ERASED.replace("        NEW.email_index := NULL;\n", ""))
    op.drop_index(op.f("ix_accounts_email_index"), table_name="accounts")
    op.drop_column("accounts", "email_index")
    _rewrite_payloads("stripe_events", "payload ? 'sealed'", _opened_event)
    _rewrite_payloads("product_events", "payload ? 'sealed'", _opened_product_event)
