"""read change totals: read_changes folded away, so the table stays small

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 07:35:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "read_change_totals",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("changes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_read_change_totals")),
    )


def downgrade() -> None:
    op.drop_table("read_change_totals")
