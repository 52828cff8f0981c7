"""privacy: erased accounts (kept erased by triggers, whatever writes later) and data exports

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Stripe's events about an erased customer keep coming (its subscriptions canceled, its
# invoices voided, a late customer.updated) and carry its details: whatever path writes them,
# an erased account gets none back.
STAY_ERASED = [
    """
CREATE FUNCTION account_stays_erased() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.erased_at IS NOT NULL THEN
        NEW.erased_at := OLD.erased_at;
        NEW.email := NULL;
        NEW.name := NULL;
        NEW.address := NULL;
    END IF;
    RETURN NEW;
END $$
""",
    (
        "CREATE TRIGGER account_stays_erased BEFORE UPDATE ON accounts "
        "FOR EACH ROW EXECUTE FUNCTION account_stays_erased()"
    ),
    """
CREATE FUNCTION nothing_personal_of_erased() RETURNS trigger LANGUAGE plpgsql AS $$
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
        NEW.customer_tax_ids := '[]'::jsonb;
    ELSIF TG_TABLE_NAME = 'payment_transactions' THEN
        NEW.receipt_url := NULL;
    END IF;
    RETURN NEW;
END $$
""",
    *(
        f"CREATE TRIGGER nothing_personal_of_erased BEFORE INSERT OR UPDATE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION nothing_personal_of_erased()"
        for table in ("invoices", "tax_ids", "payment_transactions")
    ),
]
UNDO_STAY_ERASED = [
    *(
        f"DROP TRIGGER nothing_personal_of_erased ON {table}"
        for table in ("invoices", "tax_ids", "payment_transactions")
    ),
    "DROP FUNCTION nothing_personal_of_erased()",
    "DROP TRIGGER account_stays_erased ON accounts",
    "DROP FUNCTION account_stays_erased()",
]


def upgrade() -> None:
    op.add_column("accounts", sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
    for statement in STAY_ERASED:
        op.execute(statement)
    op.create_table(
        "data_exports",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("downloaded_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_data_exports_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_exports")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_data_exports_token_hash")),
    )


def downgrade() -> None:
    for statement in UNDO_STAY_ERASED:
        op.execute(statement)
    op.drop_table("data_exports")
    op.drop_column("accounts", "erased_at")
