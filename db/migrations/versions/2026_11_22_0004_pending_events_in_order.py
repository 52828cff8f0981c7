"""pending events in order: workers claim the oldest pending event from an index

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 09:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_stripe_events_pending_in_order",
        "stripe_events",
        ["stripe_created_at", "id"],
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("ix_stripe_events_pending_in_order", table_name="stripe_events")
