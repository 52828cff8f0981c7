"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 04:04:23.529044
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The ledger and the audit trail are history: rows are added, never changed or removed.
APPEND_ONLY_TABLES = ("credit_entries", "audit_log")
REFUSE_CHANGE_FUNCTION = """
CREATE FUNCTION refuse_change_to_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$
"""


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("stripe_customer_id", sa.Text(), nullable=True),
        sa.Column("default_payment_method_stripe_id", sa.Text(), nullable=True),
        sa.Column("stripe_deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_event_id", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("user_id <> ''", name=op.f("ck_accounts_user_id_not_empty")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("stripe_customer_id", name=op.f("uq_accounts_stripe_customer_id")),
        sa.UniqueConstraint("user_id", name=op.f("uq_accounts_user_id")),
    )
    op.create_index(
        op.f("ix_accounts_created_at_id"), "accounts", ["created_at", "id"], unique=False
    )
    op.create_table(
        "plans",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("stripe_price_id", sa.Text(), nullable=False),
        sa.Column("stripe_product_id", sa.Text(), nullable=False),
        sa.Column("product_name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "kind",
            sa.Enum(
                "recurring",
                "one_time",
                name="kind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column(
            "interval",
            sa.Enum(
                "day",
                "week",
                "month",
                "year",
                name="interval",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column("interval_count", sa.BigInteger(), nullable=True),
        sa.Column("trial_days", sa.BigInteger(), nullable=True),
        sa.Column("credits", sa.BigInteger(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("stripe_created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_event_id", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(kind = 'recurring') = (interval IS NOT NULL AND interval_count IS NOT NULL)",
            name=op.f("ck_plans_interval_iff_recurring"),
        ),
        sa.CheckConstraint("currency ~ '^[a-z]{3}$'", name=op.f("ck_plans_currency_code")),
        sa.CheckConstraint("amount >= 0", name=op.f("ck_plans_amount_not_negative")),
        sa.CheckConstraint(
            "credits IS NULL OR credits >= 0", name=op.f("ck_plans_credits_not_negative")
        ),
        sa.CheckConstraint(
            "interval_count IS NULL OR interval_count > 0", name=op.f("ck_plans_interval_count")
        ),
        sa.CheckConstraint(
            "trial_days IS NULL OR trial_days >= 0", name=op.f("ck_plans_trial_days")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plans")),
        sa.UniqueConstraint("stripe_price_id", name=op.f("uq_plans_stripe_price_id")),
    )
    op.create_index(
        op.f("ix_plans_stripe_product_id"), "plans", ["stripe_product_id"], unique=False
    )
    op.create_table(
        "stripe_events",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("stripe_event_id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("api_version", sa.Text(), nullable=True),
        sa.Column("livemode", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("stripe_created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("object_id", sa.Text(), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "processed",
                "failed",
                "skipped",
                name="status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            server_default="pending",
            nullable=False,
        ),
        sa.Column("attempts", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_stripe_events_attempts_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stripe_events")),
        sa.UniqueConstraint("stripe_event_id", name=op.f("uq_stripe_events_stripe_event_id")),
    )
    op.create_index(
        op.f("ix_stripe_events_object_id"), "stripe_events", ["object_id"], unique=False
    )
    op.create_index(
        "ix_stripe_events_pending_due",
        "stripe_events",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        op.f("ix_stripe_events_received_at_id"),
        "stripe_events",
        ["received_at", "id"],
        unique=False,
    )
    op.create_index(op.f("ix_stripe_events_type"), "stripe_events", ["type"], unique=False)
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=True),
        sa.Column("stripe_ref", sa.Text(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(amount IS NULL) = (currency IS NULL)", name=op.f("ck_audit_log_amount_has_currency")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_audit_log_account_id_accounts"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_account_id"), "audit_log", ["account_id"], unique=False)
    op.create_index(
        op.f("ix_audit_log_created_at_id"), "audit_log", ["created_at", "id"], unique=False
    )
    op.create_table(
        "credit_accounts",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("balance", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_credit_accounts_account_id_accounts"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_accounts")),
        sa.UniqueConstraint("account_id", name=op.f("uq_credit_accounts_account_id")),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("operation", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.Text(), nullable=False),
        sa.Column("response", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "char_length(key) BETWEEN 1 AND 255", name=op.f("ck_idempotency_keys_key_length")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_idempotency_keys_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(
        op.f("ix_idempotency_keys_account_id_key"),
        "idempotency_keys",
        ["account_id", "key"],
        unique=True,
    )
    op.create_index(
        op.f("ix_idempotency_keys_created_at"), "idempotency_keys", ["created_at"], unique=False
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("stripe_invoice_id", sa.Text(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("subscription_stripe_id", sa.Text(), nullable=True),
        sa.Column("number", sa.Text(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "draft",
                "open",
                "paid",
                "uncollectible",
                "void",
                name="status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("billing_reason", sa.Text(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("subtotal", sa.BigInteger(), nullable=False),
        sa.Column("tax", sa.BigInteger(), nullable=True),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("amount_due", sa.BigInteger(), nullable=False),
        sa.Column("amount_paid", sa.BigInteger(), nullable=False),
        sa.Column("amount_remaining", sa.BigInteger(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("due_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("hosted_invoice_url", sa.Text(), nullable=True),
        sa.Column("stripe_pdf_url", sa.Text(), nullable=True),
        sa.Column("stripe_created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_event_id", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("currency ~ '^[a-z]{3}$'", name=op.f("ck_invoices_currency_code")),
        sa.CheckConstraint(
            "amount_due >= 0 AND amount_paid >= 0 AND amount_remaining >= 0",
            name=op.f("ck_invoices_amounts_not_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_invoices_account_id_accounts"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sa.UniqueConstraint("stripe_invoice_id", name=op.f("uq_invoices_stripe_invoice_id")),
    )
    op.create_index(
        op.f("ix_invoices_account_id_stripe_created_at_id"),
        "invoices",
        ["account_id", "stripe_created_at", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_invoices_subscription_stripe_id"),
        "invoices",
        ["subscription_stripe_id"],
        unique=False,
    )
    op.create_table(
        "payment_methods",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("stripe_payment_method_id", sa.Text(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("brand", sa.Text(), nullable=True),
        sa.Column("last4", sa.String(length=4), nullable=True),
        sa.Column("exp_month", sa.BigInteger(), nullable=True),
        sa.Column("exp_year", sa.BigInteger(), nullable=True),
        sa.Column("detached_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stripe_created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_event_id", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("last4 ~ '^[0-9]{4}$'", name=op.f("ck_payment_methods_last4_digits")),
        sa.CheckConstraint(
            "exp_month BETWEEN 1 AND 12", name=op.f("ck_payment_methods_exp_month_range")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_payment_methods_account_id_accounts"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_methods")),
        sa.UniqueConstraint(
            "stripe_payment_method_id", name=op.f("uq_payment_methods_stripe_payment_method_id")
        ),
    )
    op.create_index(
        op.f("ix_payment_methods_account_id_stripe_created_at_id"),
        "payment_methods",
        ["account_id", "stripe_created_at", "id"],
        unique=False,
    )
    op.create_table(
        "payment_transactions",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("stripe_payment_intent_id", sa.Text(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "requires_payment_method",
                "requires_confirmation",
                "requires_action",
                "processing",
                "requires_capture",
                "succeeded",
                "canceled",
                name="status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("amount_received", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("amount_refunded", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("failure_code", sa.Text(), nullable=True),
        sa.Column("failure_message", sa.Text(), nullable=True),
        sa.Column("payment_method_stripe_id", sa.Text(), nullable=True),
        sa.Column("invoice_stripe_id", sa.Text(), nullable=True),
        sa.Column("latest_charge_stripe_id", sa.Text(), nullable=True),
        sa.Column("receipt_url", sa.Text(), nullable=True),
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("stripe_created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_event_id", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "currency ~ '^[a-z]{3}$'", name=op.f("ck_payment_transactions_currency_code")
        ),
        sa.CheckConstraint(
            "amount >= 0 AND amount_received >= 0",
            name=op.f("ck_payment_transactions_amounts_not_negative"),
        ),
        sa.CheckConstraint(
            "amount_refunded >= 0 AND amount_refunded <= amount",
            name=op.f("ck_payment_transactions_refund_within_amount"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_payment_transactions_account_id_accounts"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_transactions")),
        sa.UniqueConstraint(
            "stripe_payment_intent_id",
            name=op.f("uq_payment_transactions_stripe_payment_intent_id"),
        ),
    )
    op.create_index(
        op.f("ix_payment_transactions_account_id_stripe_created_at_id"),
        "payment_transactions",
        ["account_id", "stripe_created_at", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_payment_transactions_invoice_stripe_id"),
        "payment_transactions",
        ["invoice_stripe_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_payment_transactions_latest_charge_stripe_id"),
        "payment_transactions",
        ["latest_charge_stripe_id"],
        unique=False,
    )
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("stripe_subscription_id", sa.Text(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("plan_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "incomplete",
                "incomplete_expired",
                "trialing",
                "active",
                "past_due",
                "canceled",
                "unpaid",
                "paused",
                name="status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("quantity", sa.BigInteger(), server_default=sa.text("1"), nullable=False),
        sa.Column("current_period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("current_period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "cancel_at_period_end", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column("cancel_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("canceled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("trial_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("trial_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("latest_invoice_stripe_id", sa.Text(), nullable=True),
        sa.Column("default_payment_method_stripe_id", sa.Text(), nullable=True),
        sa.Column("stripe_created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_event_id", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "current_period_end >= current_period_start", name=op.f("ck_subscriptions_period_order")
        ),
        sa.CheckConstraint("quantity >= 0", name=op.f("ck_subscriptions_quantity_not_negative")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_subscriptions_account_id_accounts"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["plans.id"],
            name=op.f("fk_subscriptions_plan_id_plans"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
        sa.UniqueConstraint(
            "stripe_subscription_id", name=op.f("uq_subscriptions_stripe_subscription_id")
        ),
    )
    op.create_index(
        op.f("ix_subscriptions_account_id_stripe_created_at_id"),
        "subscriptions",
        ["account_id", "stripe_created_at", "id"],
        unique=False,
    )
    op.create_index(op.f("ix_subscriptions_plan_id"), "subscriptions", ["plan_id"], unique=False)
    op.create_index(op.f("ix_subscriptions_status"), "subscriptions", ["status"], unique=False)
    op.create_table(
        "credit_entries",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("credit_account_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "grant",
                "spend",
                "adjustment",
                "reversal",
                name="kind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source_ref", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(kind = 'grant' AND amount > 0) OR (kind IN ('spend', 'reversal') AND amount < 0) OR kind = 'adjustment'",
            name=op.f("ck_credit_entries_sign_matches_kind"),
        ),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_credit_entries_amount_not_zero")),
        sa.ForeignKeyConstraint(
            ["credit_account_id"],
            ["credit_accounts.id"],
            name=op.f("fk_credit_entries_credit_account_id_credit_accounts"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_entries")),
    )
    op.create_index(
        op.f("ix_credit_entries_credit_account_id_created_at_id"),
        "credit_entries",
        ["credit_account_id", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_credit_entries_credit_account_id_idempotency_key"),
        "credit_entries",
        ["credit_account_id", "idempotency_key"],
        unique=True,
    )
    op.create_table(
        "invoice_lines",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("invoice_id", sa.BigInteger(), nullable=False),
        sa.Column("stripe_line_id", sa.Text(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=True),
        sa.Column("proration", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("price_stripe_id", sa.Text(), nullable=True),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("currency ~ '^[a-z]{3}$'", name=op.f("ck_invoice_lines_currency_code")),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_invoice_lines_invoice_id_invoices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_lines")),
    )
    op.create_index(
        op.f("ix_invoice_lines_invoice_id_position"),
        "invoice_lines",
        ["invoice_id", "position"],
        unique=False,
    )
    op.create_index(
        op.f("ix_invoice_lines_invoice_id_stripe_line_id"),
        "invoice_lines",
        ["invoice_id", "stripe_line_id"],
        unique=True,
    )
    op.execute(REFUSE_CHANGE_FUNCTION)
    for table in APPEND_ONLY_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION refuse_change_to_history()"
        )


def downgrade() -> None:
    for table in APPEND_ONLY_TABLES:
        op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
    op.execute("DROP FUNCTION refuse_change_to_history()")
    op.drop_index(op.f("ix_invoice_lines_invoice_id_stripe_line_id"), table_name="invoice_lines")
    op.drop_index(op.f("ix_invoice_lines_invoice_id_position"), table_name="invoice_lines")
    op.drop_table("invoice_lines")
    op.drop_index(
        op.f("ix_credit_entries_credit_account_id_idempotency_key"), table_name="credit_entries"
    )
    op.drop_index(
        op.f("ix_credit_entries_credit_account_id_created_at_id"), table_name="credit_entries"
    )
    op.drop_table("credit_entries")
    op.drop_index(op.f("ix_subscriptions_status"), table_name="subscriptions")
    op.drop_index(op.f("ix_subscriptions_plan_id"), table_name="subscriptions")
    op.drop_index(
        op.f("ix_subscriptions_account_id_stripe_created_at_id"), table_name="subscriptions"
    )
    op.drop_table("subscriptions")
    op.drop_index(
        op.f("ix_payment_transactions_latest_charge_stripe_id"), table_name="payment_transactions"
    )
    op.drop_index(
        op.f("ix_payment_transactions_invoice_stripe_id"), table_name="payment_transactions"
    )
    op.drop_index(
        op.f("ix_payment_transactions_account_id_stripe_created_at_id"),
        table_name="payment_transactions",
    )
    op.drop_table("payment_transactions")
    op.drop_index(
        op.f("ix_payment_methods_account_id_stripe_created_at_id"), table_name="payment_methods"
    )
    op.drop_table("payment_methods")
    op.drop_index(op.f("ix_invoices_subscription_stripe_id"), table_name="invoices")
    op.drop_index(op.f("ix_invoices_account_id_stripe_created_at_id"), table_name="invoices")
    op.drop_table("invoices")
    op.drop_index(op.f("ix_idempotency_keys_created_at"), table_name="idempotency_keys")
    op.drop_index(op.f("ix_idempotency_keys_account_id_key"), table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_table("credit_accounts")
    op.drop_index(op.f("ix_audit_log_created_at_id"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_account_id"), table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index(op.f("ix_stripe_events_type"), table_name="stripe_events")
    op.drop_index(op.f("ix_stripe_events_received_at_id"), table_name="stripe_events")
    op.drop_index(
        "ix_stripe_events_pending_due",
        table_name="stripe_events",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_index(op.f("ix_stripe_events_object_id"), table_name="stripe_events")
    op.drop_table("stripe_events")
    op.drop_index(op.f("ix_plans_stripe_product_id"), table_name="plans")
    op.drop_table("plans")
    op.drop_index(op.f("ix_accounts_created_at_id"), table_name="accounts")
    op.drop_table("accounts")
