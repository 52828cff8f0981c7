"""cost budgets: each caller's budget of GraphQL query cost, shared by every replica

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # UNLOGGED: spends write no WAL; a database crash empties it, refilling every budget.
    op.create_table(
        "cost_budgets",
        sa.Column("caller", sa.Text(), nullable=False),
        sa.Column("available", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("caller", name=op.f("pk_cost_budgets")),
        prefixes=["UNLOGGED"],
    )


def downgrade() -> None:
    op.drop_table("cost_budgets")
