"""commerce: addresses, tax ids, currencies, discounts and taxes of subscriptions and invoices

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EMPTY_LIST = sa.text("'[]'::jsonb")


def _json_list(name: str) -> sa.Column:
    return sa.Column(name, JSONB(), server_default=EMPTY_LIST, nullable=False)


def upgrade() -> None:
    op.add_column("accounts", sa.Column("address", JSONB(), nullable=True))
    op.add_column("accounts", sa.Column("currency", sa.String(length=3), nullable=True))
    op.add_column(
        "plans",
        sa.Column("other_amounts", JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
    )
    op.add_column("subscriptions", sa.Column("currency", sa.String(length=3), nullable=True))
    op.add_column("subscriptions", sa.Column("discount", JSONB(), nullable=True))
    op.add_column(
        "invoices",
        sa.Column("total_discount", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    for name in ("discounts", "taxes", "customer_tax_ids"):
        op.add_column("invoices", _json_list(name))
    op.add_column("invoices", sa.Column("customer_address", JSONB(), nullable=True))
    op.add_column("invoice_lines", sa.Column("tax", sa.BigInteger(), nullable=True))
    op.create_table(
        "tax_ids",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("stripe_tax_id", sa.Text(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("country", sa.Text(), nullable=True),
        sa.Column("verification", sa.Text(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stripe_created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_event_id", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_tax_ids_account_id_accounts"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tax_ids")),
        sa.UniqueConstraint("stripe_tax_id", name=op.f("uq_tax_ids_stripe_tax_id")),
    )
    op.create_index(
        op.f("ix_tax_ids_account_id_stripe_created_at_id"),
        "tax_ids",
        ["account_id", "stripe_created_at", "id"],
    )
    # A customer's cached responses show their tax ids (services/response_cache.py).
    op.execute(
        "CREATE TRIGGER tax_ids_read_change AFTER INSERT OR UPDATE OR DELETE ON tax_ids"
        " FOR EACH ROW EXECUTE FUNCTION note_change_by_account()"
    )
    op.create_table(
        "tax_rates",
        sa.Column("stripe_tax_rate_id", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("percentage", sa.Double(), nullable=False),
        sa.Column("inclusive", sa.Boolean(), nullable=False),
        sa.Column("country", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("stripe_tax_rate_id", name=op.f("pk_tax_rates")),
    )
    op.create_table(
        "discounts",
        sa.Column("stripe_discount_id", sa.Text(), nullable=False),
        sa.Column("description", JSONB(), nullable=False),
        sa.PrimaryKeyConstraint("stripe_discount_id", name=op.f("pk_discounts")),
    )


def downgrade() -> None:
    op.drop_table("discounts")
    op.drop_table("tax_rates")
    op.execute("DROP TRIGGER tax_ids_read_change ON tax_ids")
    op.drop_index(op.f("ix_tax_ids_account_id_stripe_created_at_id"), table_name="tax_ids")
    op.drop_table("tax_ids")
    op.drop_column("invoice_lines", "tax")
    for name in ("customer_address", "customer_tax_ids", "taxes", "discounts", "total_discount"):
        op.drop_column("invoices", name)
    op.drop_column("subscriptions", "discount")
    op.drop_column("subscriptions", "currency")
    op.drop_column("plans", "other_amounts")
    op.drop_column("accounts", "currency")
    op.drop_column("accounts", "address")
