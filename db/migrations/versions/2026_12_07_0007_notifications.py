"""notifications: the mail outbox, mail preferences, the product's webhook endpoints, events
and deliveries

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = "'pending', 'sent', 'failed', 'skipped'"
KINDS = (
    "'receipt', 'payment_failed', 'payment_action_required', 'trial_ending', "
    "'subscription_canceled', 'refund_issued'"
)


def _now(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def _attempts() -> list[sa.Column]:
    return [
        sa.Column("status", sa.String(length=32), server_default="pending", nullable=False),
        sa.Column("attempts", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        _now("next_attempt_at"),
        sa.Column("last_error", sa.Text(), nullable=True),
    ]


def upgrade() -> None:
    for name in ("notify_receipts", "notify_payment_problems", "notify_trial_reminders"):
        op.add_column(
            "accounts",
            sa.Column(name, sa.Boolean(), server_default=sa.text("true"), nullable=False),
        )
    op.add_column("accounts", sa.Column("announced_access", sa.Text(), nullable=True))

    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.Column("recipient", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("context", JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("invoice_stripe_id", sa.Text(), nullable=True),
        *_attempts(),
        _now("created_at"),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(f"kind IN ({KINDS})", name=op.f("ck_notifications_kind")),
        sa.CheckConstraint(f"status IN ({STATUSES})", name=op.f("ck_notifications_status")),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_notifications_attempts_not_negative")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_notifications_account_id_accounts"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("cause", name=op.f("uq_notifications_cause")),
    )
    op.create_index(
        "ix_notifications_pending_due",
        "notifications",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        op.f("ix_notifications_account_id_created_at_id"),
        "notifications",
        ["account_id", "created_at", "id"],
    )
    op.create_index(op.f("ix_notifications_created_at_id"), "notifications", ["created_at", "id"])

    op.create_table(
        "product_webhook_endpoints",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("event_types", JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        _now("created_at"),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_product_webhook_endpoints")),
    )

    op.create_table(
        "product_events",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=True),
        sa.Column("payload", JSONB(), nullable=False),
        _now("created_at"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_product_events_account_id_accounts"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_product_events")),
        sa.UniqueConstraint("message_id", name=op.f("uq_product_events_message_id")),
        sa.UniqueConstraint("cause", name=op.f("uq_product_events_cause")),
    )
    op.create_index(op.f("ix_product_events_created_at_id"), "product_events", ["created_at", "id"])

    op.create_table(
        "product_webhook_deliveries",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("endpoint_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=True),
        *_attempts(),
        sa.Column("response_status", sa.BigInteger(), nullable=True),
        _now("created_at"),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            f"status IN ({STATUSES})", name=op.f("ck_product_webhook_deliveries_status")
        ),
        sa.CheckConstraint(
            "attempts >= 0", name=op.f("ck_product_webhook_deliveries_attempts_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["product_events.id"],
            name=op.f("fk_product_webhook_deliveries_event_id_product_events"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["product_webhook_endpoints.id"],
            name=op.f("fk_product_webhook_deliveries_endpoint_id_product_webhook_endpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_product_webhook_deliveries")),
        sa.UniqueConstraint(
            "event_id",
            "endpoint_id",
            name=op.f("uq_product_webhook_deliveries_event_id_endpoint_id"),
        ),
    )
    op.create_index(
        "ix_product_webhook_deliveries_pending_due",
        "product_webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_product_webhook_deliveries_pending_in_order",
        "product_webhook_deliveries",
        ["endpoint_id", "account_id", "event_id"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        op.f("ix_product_webhook_deliveries_created_at_id"),
        "product_webhook_deliveries",
        ["created_at", "id"],
    )


def downgrade() -> None:
    op.drop_table("product_webhook_deliveries")
    op.drop_table("product_events")
    op.drop_table("product_webhook_endpoints")
    op.drop_table("notifications")
    for name in (
        "announced_access",
        "notify_trial_reminders",
        "notify_payment_problems",
        "notify_receipts",
    ):
        op.drop_column("accounts", name)
