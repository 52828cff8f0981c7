"""read changes: what the GraphQL response cache compares

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 06:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every table a cached response is read from; a change to a row notes its account.
READ_TABLES = (
    "accounts",
    "plans",
    "subscriptions",
    "payment_methods",
    "invoices",
    "invoice_lines",
    "payment_transactions",
    "credit_accounts",
    "credit_entries",
)

OWNER_FUNCTION = """
CREATE FUNCTION read_change_owner(source_table text, changed jsonb) RETURNS bigint
LANGUAGE sql STABLE AS $$
  SELECT CASE source_table
    WHEN 'accounts' THEN (changed ->> 'id')::bigint
    WHEN 'plans' THEN 0  -- the catalog, which every customer reads
    WHEN 'invoice_lines' THEN
      (SELECT account_id FROM invoices WHERE id = (changed ->> 'invoice_id')::bigint)
    WHEN 'credit_entries' THEN
      (SELECT account_id FROM credit_accounts WHERE id = (changed ->> 'credit_account_id')::bigint)
    ELSE (changed ->> 'account_id')::bigint
  END
$$
"""

# One row per account and writing transaction, inserted in that transaction: the count of
# an account's rows moves exactly when a transaction that changed the account commits.
NOTE_FUNCTION = """
CREATE FUNCTION note_read_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO read_changes (account_id)
  SELECT DISTINCT owner FROM (VALUES
    (CASE WHEN TG_OP <> 'DELETE' THEN read_change_owner(TG_TABLE_NAME, to_jsonb(NEW)) END),
    (CASE WHEN TG_OP <> 'INSERT' THEN read_change_owner(TG_TABLE_NAME, to_jsonb(OLD)) END)
  ) AS changed (owner)
  WHERE owner IS NOT NULL
  ON CONFLICT (account_id, transaction_id) DO NOTHING;
  RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "read_changes",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "transaction_id",
            sa.BigInteger(),
            server_default=sa.text("txid_current()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_read_changes")),
    )
    op.create_index(
        op.f("ix_read_changes_account_id_transaction_id"),
        "read_changes",
        ["account_id", "transaction_id"],
        unique=True,
    )
    op.execute(OWNER_FUNCTION)
    op.execute(NOTE_FUNCTION)
    for table in READ_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_read_change AFTER INSERT OR UPDATE OR DELETE ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION note_read_change()"
        )


def downgrade() -> None:
    for table in READ_TABLES:
        op.execute(f"DROP TRIGGER {table}_read_change ON {table}")
    op.execute("DROP FUNCTION note_read_change()")
    op.execute("DROP FUNCTION read_change_owner(text, jsonb)")
    op.drop_index(op.f("ix_read_changes_account_id_transaction_id"), table_name="read_changes")
    op.drop_table("read_changes")
