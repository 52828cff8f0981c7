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

# Every table a cached response is read from, and how a changed row names its account:
# (function, the expression of the account of a row `r` (NEW or OLD)). Plans are account 0,
# the catalog every customer reads. One plain function per shape: no per-row reflection.
OWNERS = {
    "note_change_of_account": "r.id",
    "note_change_by_account": "r.account_id",
    "note_change_of_catalog": "0",
    "note_change_by_invoice": "(SELECT account_id FROM invoices WHERE id = r.invoice_id)",
    "note_change_by_credit_account": (
        "(SELECT account_id FROM credit_accounts WHERE id = r.credit_account_id)"
    ),
}
READ_TABLES = {
    "accounts": "note_change_of_account",
    "plans": "note_change_of_catalog",
    "subscriptions": "note_change_by_account",
    "payment_methods": "note_change_by_account",
    "invoices": "note_change_by_account",
    "invoice_lines": "note_change_by_invoice",
    "payment_transactions": "note_change_by_account",
    "credit_accounts": "note_change_by_account",
    "credit_entries": "note_change_by_credit_account",
}

# One row per account and writing transaction, inserted in that transaction: the count of
# an account's rows moves exactly when a transaction that changed the account commits. A
# row that moves between accounts changes both.
NOTE_FUNCTION = """
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  r record;
  owner bigint;
  previous bigint;
BEGIN
  IF TG_OP <> 'DELETE' THEN
    r := NEW;
    owner := {owner};
    IF owner IS NOT NULL THEN
      INSERT INTO read_changes (account_id) VALUES (owner)
      ON CONFLICT (account_id, transaction_id) DO NOTHING;
    END IF;
  END IF;
  IF TG_OP <> 'INSERT' THEN
    r := OLD;
    previous := {owner};
    IF previous IS NOT NULL AND previous IS DISTINCT FROM owner THEN
      INSERT INTO read_changes (account_id) VALUES (previous)
      ON CONFLICT (account_id, transaction_id) DO NOTHING;
    END IF;
  END IF;
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
    for name, owner in OWNERS.items():
        op.execute(NOTE_FUNCTION.format(name=name, owner=owner))
    for table, function in READ_TABLES.items():
        op.execute(
            f"CREATE TRIGGER {table}_read_change AFTER INSERT OR UPDATE OR DELETE ON {table}"
            f" FOR EACH ROW EXECUTE FUNCTION {function}()"
        )


def downgrade() -> None:
    for table in READ_TABLES:
        op.execute(f"DROP TRIGGER {table}_read_change ON {table}")
    for name in OWNERS:
        op.execute(f"DROP FUNCTION {name}()")
    op.drop_index(op.f("ix_read_changes_account_id_transaction_id"), table_name="read_changes")
    op.drop_table("read_changes")
