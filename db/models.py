"""The PostgreSQL mirror of Stripe, the webhook inbox, the credits ledger and the audit trail.

Ownership links (account, plan, credit account, invoice of a line) are foreign keys.
Links between mirrored Stripe objects (an invoice's subscription, a payment's invoice)
are kept as Stripe ids, because Stripe delivers its events in any order and the mirror
must converge whichever object arrives first.
"""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Double,
    Enum,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    event,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import BYTEA, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from db import sealed
from db.sealed import SealedJSON, SealedText

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: DateTime(timezone=True), int: BigInteger, str: Text}


def _enum_column(enum: type[StrEnum], name: str) -> Enum:
    """A text column limited to the enum's values by a CHECK constraint."""
    return Enum(
        enum,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class PriceKind(StrEnum):
    RECURRING = "recurring"
    ONE_TIME = "one_time"


class BillingInterval(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


class SubscriptionStatus(StrEnum):
    INCOMPLETE = "incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired"
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    CANCELED = "canceled"
    UNPAID = "unpaid"
    PAUSED = "paused"


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    UNCOLLECTIBLE = "uncollectible"
    VOID = "void"


class PaymentStatus(StrEnum):
    REQUIRES_PAYMENT_METHOD = "requires_payment_method"
    REQUIRES_CONFIRMATION = "requires_confirmation"
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"
    REQUIRES_CAPTURE = "requires_capture"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"


class CreditEntryKind(StrEnum):
    GRANT = "grant"
    SPEND = "spend"
    ADJUSTMENT = "adjustment"
    REVERSAL = "reversal"


class WebhookEventStatus(StrEnum):
    PENDING = "pending"
    PROCESSED = "processed"
    FAILED = "failed"
    SKIPPED = "skipped"


class NotificationKind(StrEnum):
    RECEIPT = "receipt"
    PAYMENT_FAILED = "payment_failed"
    PAYMENT_ACTION_REQUIRED = "payment_action_required"
    TRIAL_ENDING = "trial_ending"
    SUBSCRIPTION_CANCELED = "subscription_canceled"
    REFUND_ISSUED = "refund_issued"


class DeliveryStatus(StrEnum):
    """Of a mail or a delivery to a product endpoint."""

    PENDING = "pending"  # not sent yet, or to be tried again at next_attempt_at
    SENT = "sent"
    FAILED = "failed"  # parked after its last attempt, until retried
    SKIPPED = "skipped"  # never to be sent: turned off, no address, endpoint gone


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


class StripeMirror(Timestamps):
    """Columns every mirrored Stripe object has: which event last changed it."""

    # Stripe's own `created` of the object.
    stripe_created_at: Mapped[datetime]
    # The `created` time and id of the last Stripe event applied; older events never win.
    last_event_at: Mapped[datetime | None]
    last_event_id: Mapped[str | None]


CURRENCY_CHECK = "currency ~ '^[a-z]{3}$'"


class Account(Timestamps, Base):
    """One user of the product (JWT `sub`) and, once created, their Stripe customer."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[str] = mapped_column(unique=True)
    # Personal data is sealed (db/sealed.py); the email is found by its blind index.
    email: Mapped[str | None] = mapped_column(SealedText)
    email_index: Mapped[bytes | None] = mapped_column(BYTEA, index=True)
    name: Mapped[str | None] = mapped_column(SealedText)
    stripe_customer_id: Mapped[str | None] = mapped_column(unique=True)
    default_payment_method_stripe_id: Mapped[str | None]
    # The Stripe customer's billing address: {line1, line2, city, state, postal_code, country}.
    address: Mapped[dict[str, Any] | None] = mapped_column(SealedJSON)
    # Set by the first purchase; Stripe bills a customer in one currency.
    currency: Mapped[str | None] = mapped_column(String(3))
    stripe_deleted_at: Mapped[datetime | None]
    last_event_at: Mapped[datetime | None]
    last_event_id: Mapped[str | None]
    # Which mails the customer wants (payment-action mails cannot be turned off).
    notify_receipts: Mapped[bool] = mapped_column(server_default=text("true"))
    notify_payment_problems: Mapped[bool] = mapped_column(server_default=text("true"))
    notify_trial_reminders: Mapped[bool] = mapped_column(server_default=text("true"))
    # The access last announced to the product's endpoints (access.updated), "STATUS until".
    announced_access: Mapped[str | None]
    # Set by eraseCustomer: the personal data is gone, the financial records kept.
    erased_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("user_id <> ''", name="user_id_not_empty"),
        Index(None, "created_at", "id"),
    )


@event.listens_for(Account, "before_insert")
@event.listens_for(Account, "before_update")
def _index_email(_mapper: Any, _connection: Any, account: Account) -> None:
    """The blind index follows the email whatever flushes it (statements that set the email
    without the ORM's unit of work set the index themselves)."""
    account.email_index = sealed.keyring().email_index(account.email)


class Plan(StripeMirror, Base):
    """A Stripe price for sale; recurring ones are the plans, one-time ones top-ups."""

    __tablename__ = "plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_price_id: Mapped[str] = mapped_column(unique=True)
    stripe_product_id: Mapped[str] = mapped_column(index=True)
    product_name: Mapped[str]
    description: Mapped[str | None]
    kind: Mapped[PriceKind] = mapped_column(_enum_column(PriceKind, "kind"))
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    interval: Mapped[BillingInterval | None] = mapped_column(
        _enum_column(BillingInterval, "interval")
    )
    interval_count: Mapped[int | None]
    trial_days: Mapped[int | None]
    credits: Mapped[int | None]
    active: Mapped[bool]
    # The unit amount in every other currency the price sells in (its `currency_options`).
    other_amounts: Mapped[dict[str, int]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))

    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        CheckConstraint(CURRENCY_CHECK, name="currency_code"),
        CheckConstraint(
            "(kind = 'recurring') = (interval IS NOT NULL AND interval_count IS NOT NULL)",
            name="interval_iff_recurring",
        ),
        CheckConstraint("interval_count IS NULL OR interval_count > 0", name="interval_count"),
        CheckConstraint("trial_days IS NULL OR trial_days >= 0", name="trial_days"),
        CheckConstraint("credits IS NULL OR credits >= 0", name="credits_not_negative"),
    )


class Subscription(StripeMirror, Base):
    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_subscription_id: Mapped[str] = mapped_column(unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="RESTRICT"))
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="RESTRICT"), index=True)
    status: Mapped[SubscriptionStatus] = mapped_column(_enum_column(SubscriptionStatus, "status"))
    quantity: Mapped[int] = mapped_column(server_default=text("1"))
    current_period_start: Mapped[datetime]
    current_period_end: Mapped[datetime]
    cancel_at_period_end: Mapped[bool] = mapped_column(server_default=text("false"))
    cancel_at: Mapped[datetime | None]
    canceled_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    trial_start: Mapped[datetime | None]
    trial_end: Mapped[datetime | None]
    latest_invoice_stripe_id: Mapped[str | None]
    default_payment_method_stripe_id: Mapped[str | None]
    currency: Mapped[str | None] = mapped_column(String(3))
    # The discount it has now, as services/discounts.py describes one.
    discount: Mapped[dict[str, Any] | None] = mapped_column(JSONB)

    __table_args__ = (
        CheckConstraint("quantity >= 0", name="quantity_not_negative"),
        CheckConstraint("current_period_end >= current_period_start", name="period_order"),
        Index(None, "account_id", "stripe_created_at", "id"),
        Index(None, "status"),
    )


class PaymentMethod(StripeMirror, Base):
    """A saved payment method: brand, last four digits and expiry only, never a card number."""

    __tablename__ = "payment_methods"

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_payment_method_id: Mapped[str] = mapped_column(unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="RESTRICT"))
    type: Mapped[str]
    brand: Mapped[str | None]
    last4: Mapped[str | None] = mapped_column(String(4))
    exp_month: Mapped[int | None]
    exp_year: Mapped[int | None]
    detached_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("last4 ~ '^[0-9]{4}$'", name="last4_digits"),
        CheckConstraint("exp_month BETWEEN 1 AND 12", name="exp_month_range"),
        Index(None, "account_id", "stripe_created_at", "id"),
    )


class Invoice(StripeMirror, Base):
    __tablename__ = "invoices"

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_invoice_id: Mapped[str] = mapped_column(unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="RESTRICT"))
    subscription_stripe_id: Mapped[str | None] = mapped_column(index=True)
    number: Mapped[str | None]
    status: Mapped[InvoiceStatus] = mapped_column(_enum_column(InvoiceStatus, "status"))
    billing_reason: Mapped[str | None]
    currency: Mapped[str] = mapped_column(String(3))
    subtotal: Mapped[int]
    total_discount: Mapped[int] = mapped_column(server_default=text("0"))
    tax: Mapped[int | None]
    total: Mapped[int]
    amount_due: Mapped[int]
    amount_paid: Mapped[int]
    amount_remaining: Mapped[int]
    period_start: Mapped[datetime | None]
    period_end: Mapped[datetime | None]
    due_date: Mapped[datetime | None]
    paid_at: Mapped[datetime | None]
    hosted_invoice_url: Mapped[str | None]
    stripe_pdf_url: Mapped[str | None]
    # services/discounts.py's descriptions, each with the `amount` it took off.
    discounts: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, server_default=text("'[]'::jsonb")
    )
    # One entry per tax rate: {amount, name, percentage, inclusive, country}.
    taxes: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    # The customer's tax ids as printed on the invoice, [{type, value}] (None: none).
    customer_tax_ids: Mapped[list[dict[str, Any]] | None] = mapped_column(SealedJSON)
    # The address the invoice was billed to, once finalized.
    customer_address: Mapped[dict[str, Any] | None] = mapped_column(SealedJSON)

    __table_args__ = (
        CheckConstraint(CURRENCY_CHECK, name="currency_code"),
        CheckConstraint(
            "amount_due >= 0 AND amount_paid >= 0 AND amount_remaining >= 0",
            name="amounts_not_negative",
        ),
        Index(None, "account_id", "stripe_created_at", "id"),
    )


class InvoiceLine(Base):
    """A line of an invoice; the lines are replaced whole when the invoice changes."""

    __tablename__ = "invoice_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"))
    stripe_line_id: Mapped[str]
    position: Mapped[int]
    description: Mapped[str | None]
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    quantity: Mapped[int | None]
    proration: Mapped[bool] = mapped_column(server_default=text("false"))
    tax: Mapped[int | None]
    price_stripe_id: Mapped[str | None]
    period_start: Mapped[datetime | None]
    period_end: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint(CURRENCY_CHECK, name="currency_code"),
        Index(None, "invoice_id", "stripe_line_id", unique=True),
        Index(None, "invoice_id", "position"),
    )


class TaxId(StripeMirror, Base):
    """A customer's tax id (an ABN, a VAT number) as Stripe holds it."""

    __tablename__ = "tax_ids"

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_tax_id: Mapped[str] = mapped_column(unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="RESTRICT"))
    type: Mapped[str]
    value: Mapped[str] = mapped_column(SealedText)
    country: Mapped[str | None]
    verification: Mapped[str]
    deleted_at: Mapped[datetime | None]

    __table_args__ = (Index(None, "account_id", "stripe_created_at", "id"),)


class TaxRate(Base):
    """What the mirror shows of a Stripe tax rate an invoice names: its name and percentage
    (Stripe's invoices carry only the rate's id, and a rate's percentage never changes)."""

    __tablename__ = "tax_rates"

    stripe_tax_rate_id: Mapped[str] = mapped_column(primary_key=True)
    display_name: Mapped[str]
    percentage: Mapped[float] = mapped_column(Double)
    inclusive: Mapped[bool]
    country: Mapped[str | None]


class Discount(Base):
    """What the mirror shows of a Stripe discount (services/discounts.py): events and invoices
    name a discount by id, and Stripe has no way to read one but expanding what carries it."""

    __tablename__ = "discounts"

    stripe_discount_id: Mapped[str] = mapped_column(primary_key=True)
    description: Mapped[dict[str, Any]] = mapped_column(JSONB)


class PaymentTransaction(StripeMirror, Base):
    """A Stripe PaymentIntent with the totals of its charge and refunds."""

    __tablename__ = "payment_transactions"

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_payment_intent_id: Mapped[str] = mapped_column(unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="RESTRICT"))
    status: Mapped[PaymentStatus] = mapped_column(_enum_column(PaymentStatus, "status"))
    amount: Mapped[int]
    amount_received: Mapped[int] = mapped_column(server_default=text("0"))
    amount_refunded: Mapped[int] = mapped_column(server_default=text("0"))
    currency: Mapped[str] = mapped_column(String(3))
    description: Mapped[str | None]
    failure_code: Mapped[str | None]
    failure_message: Mapped[str | None]
    payment_method_stripe_id: Mapped[str | None]
    invoice_stripe_id: Mapped[str | None] = mapped_column(index=True)
    latest_charge_stripe_id: Mapped[str | None] = mapped_column(index=True)
    receipt_url: Mapped[str | None]
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, server_default=text("'{}'::jsonb")
    )

    __table_args__ = (
        CheckConstraint(CURRENCY_CHECK, name="currency_code"),
        CheckConstraint("amount >= 0 AND amount_received >= 0", name="amounts_not_negative"),
        CheckConstraint(
            "amount_refunded >= 0 AND amount_refunded <= amount", name="refund_within_amount"
        ),
        Index(None, "account_id", "stripe_created_at", "id"),
    )


class CreditAccount(Timestamps, Base):
    """An account's credits wallet; its balance moves only with a ledger entry."""

    __tablename__ = "credit_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="RESTRICT"), unique=True
    )
    # May go below zero only through a reversal (recorded debt); spends are guarded.
    balance: Mapped[int] = mapped_column(server_default=text("0"))


class CreditEntry(Base):
    """One immutable ledger line; a trigger refuses UPDATE and DELETE."""

    __tablename__ = "credit_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    credit_account_id: Mapped[int] = mapped_column(
        ForeignKey("credit_accounts.id", ondelete="RESTRICT")
    )
    kind: Mapped[CreditEntryKind] = mapped_column(_enum_column(CreditEntryKind, "kind"))
    amount: Mapped[int]
    balance_after: Mapped[int]
    reason: Mapped[str]
    source_ref: Mapped[str | None]
    # Every entry has one: a Stripe source id for grants and reversals, the caller's for spends.
    idempotency_key: Mapped[str]
    actor: Mapped[str]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        CheckConstraint(
            "(kind IN ('grant') AND amount > 0) OR (kind IN ('spend', 'reversal') AND amount < 0)"
            " OR kind = 'adjustment'",
            name="sign_matches_kind",
        ),
        Index(None, "credit_account_id", "idempotency_key", unique=True),
        Index(None, "credit_account_id", "created_at", "id"),
    )


class StripeEvent(Base):
    """The webhook inbox and event log: every verified event, stored before it is acknowledged."""

    __tablename__ = "stripe_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_event_id: Mapped[str] = mapped_column(unique=True)
    type: Mapped[str] = mapped_column(index=True)
    api_version: Mapped[str | None]
    livemode: Mapped[bool] = mapped_column(server_default=text("false"))
    stripe_created_at: Mapped[datetime]
    object_id: Mapped[str | None] = mapped_column(index=True)
    # services/webhooks/inbox.py's envelope: what SQL needs (id, type, created, the object's
    # ids) in the clear, the event as received sealed in `sealed`.
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[WebhookEventStatus] = mapped_column(
        _enum_column(WebhookEventStatus, "status"), server_default=WebhookEventStatus.PENDING.value
    )
    attempts: Mapped[int] = mapped_column(server_default=text("0"))
    last_error: Mapped[str | None]
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=func.now())
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())
    processed_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        Index(
            "ix_stripe_events_pending_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        # The claim's order: the oldest pending event is found without sorting the backlog.
        Index(
            "ix_stripe_events_pending_in_order",
            "stripe_created_at",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(None, "received_at", "id"),
    )


class IdempotencyKey(Base):
    """A caller's idempotency key with the hash of its request and the first response."""

    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    key: Mapped[str]
    operation: Mapped[str]
    request_hash: Mapped[str]
    # Null while the first request is still running.
    response: Mapped[dict[str, Any] | None] = mapped_column(SealedJSON)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    completed_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("char_length(key) BETWEEN 1 AND 255", name="key_length"),
        Index(None, "account_id", "key", unique=True),
        Index(None, "created_at"),
    )


class AuditLogEntry(Base):
    """Who did what to money; rows are never changed (a trigger refuses it)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    actor: Mapped[str]
    action: Mapped[str]
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="RESTRICT"), index=True
    )
    stripe_ref: Mapped[str | None]
    amount: Mapped[int | None]
    currency: Mapped[str | None] = mapped_column(String(3))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    request_id: Mapped[str | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (
        CheckConstraint("(amount IS NULL) = (currency IS NULL)", name="amount_has_currency"),
        Index(None, "created_at", "id"),
    )


class ReadChange(Base):
    """A transaction changed what an account's (or, as account 0, the catalog's) responses
    are read from: one row per account and writing transaction, inserted by triggers on
    every table such a response reads, so the count of an account's rows moves exactly when
    such a transaction commits (services/response_cache.py compares it)."""

    __tablename__ = "read_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    # No foreign key: 0 stands for the catalog, and a deleted account's changes still count.
    account_id: Mapped[int]
    transaction_id: Mapped[int] = mapped_column(server_default=text("txid_current()"))

    __table_args__ = (Index(None, "account_id", "transaction_id", unique=True),)


class ReadChangeTotal(Base):
    """How many of an account's `read_changes` rows were folded away: its version is this
    plus the rows left (services/response_cache.py)."""

    __tablename__ = "read_change_totals"

    account_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    changes: Mapped[int]


class CostBudget(Base):
    """A caller's budget of GraphQL query cost, shared by every replica
    (services/cost_budgets.py): what it held when last touched and whether that spend was
    granted. UNLOGGED: lost in a database crash, which only refills every budget."""

    __tablename__ = "cost_budgets"
    __table_args__ = {"prefixes": ["UNLOGGED"]}

    caller: Mapped[str] = mapped_column(primary_key=True)
    available: Mapped[float] = mapped_column(Double)
    updated_at: Mapped[datetime]
    granted: Mapped[bool]


# The one mark so far: Stripe's event list.
EVENTS_MARK = "stripe_events"


class ReconciliationMark(Base):
    """How far Stripe's event list has been read into the inbox (services/webhooks/reconcile.py):
    every event created before `listed_through` was listed, so the next pass lists from there,
    less a safety margin."""

    __tablename__ = "reconciliation_marks"

    name: Mapped[str] = mapped_column(primary_key=True)
    listed_through: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Notification(Base):
    """The mail outbox: one row per mail, written in the transaction of the change that causes
    it and keyed by that cause, so a replayed event never mails twice."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="RESTRICT"))
    kind: Mapped[NotificationKind] = mapped_column(_enum_column(NotificationKind, "kind"))
    # "<kind>:<what caused it>", e.g. "receipt:in_123".
    cause: Mapped[str] = mapped_column(unique=True)
    # The account's email and name when the mail was written ('' and None: none).
    recipient: Mapped[str] = mapped_column(SealedText, server_default=text("''"))
    recipient_name: Mapped[str | None] = mapped_column(SealedText)
    subject: Mapped[str]
    # The template's values, rendered when the mail is sent (nothing personal: the recipient's
    # name is recipient_name).
    context: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    # The invoice whose PDF is attached (receipts).
    invoice_stripe_id: Mapped[str | None]
    status: Mapped[DeliveryStatus] = mapped_column(
        _enum_column(DeliveryStatus, "status"), server_default=DeliveryStatus.PENDING.value
    )
    attempts: Mapped[int] = mapped_column(server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=func.now())
    last_error: Mapped[str | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    sent_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        Index(
            "ix_notifications_pending_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(None, "account_id", "created_at", "id"),
        Index(None, "created_at", "id"),
    )


class ProductWebhookEndpoint(Base):
    """A URL of the product's backend that receives the gateway's events (Standard Webhooks)."""

    __tablename__ = "product_webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str]
    # The event types it receives; empty for all.
    event_types: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    # whsec_<base64>: the signing secret, sealed.
    secret: Mapped[str] = mapped_column(SealedText)
    enabled: Mapped[bool] = mapped_column(server_default=text("true"))
    # Why it was disabled (a 410 Gone from the endpoint), None while enabled.
    disabled_reason: Mapped[str | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    deleted_at: Mapped[datetime | None]


class ProductEvent(Base):
    """An event of the gateway's own, for the product's endpoints; written in the transaction
    of its cause and keyed by it. Its body never changes, so every retry sends the same."""

    __tablename__ = "product_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The webhook-id header and the body's id: msg_<32 hex digits>.
    message_id: Mapped[str] = mapped_column(unique=True)
    # "<type>:<what caused it>", e.g. "invoice.paid:in_123".
    cause: Mapped[str] = mapped_column(unique=True)
    type: Mapped[str]
    # The customer it is about (deliveries of one customer go out in order); None: none.
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="RESTRICT"))
    # The body {id, type, timestamp, data} with `data` sealed: {id, type, timestamp, sealed}
    # (retention replaces `sealed` with `data: {}`).
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (Index(None, "created_at", "id"),)


class ProductWebhookDelivery(Base):
    """One event to one endpoint: tried with backoff until delivered, gone (410) or too old."""

    __tablename__ = "product_webhook_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("product_events.id", ondelete="CASCADE"))
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("product_webhook_endpoints.id", ondelete="CASCADE")
    )
    # The event's customer, copied so each customer's deliveries are ordered without a join.
    account_id: Mapped[int | None]
    status: Mapped[DeliveryStatus] = mapped_column(
        _enum_column(DeliveryStatus, "status"), server_default=DeliveryStatus.PENDING.value
    )
    attempts: Mapped[int] = mapped_column(server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=func.now())
    response_status: Mapped[int | None]
    last_error: Mapped[str | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    delivered_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        UniqueConstraint("event_id", "endpoint_id"),
        Index(
            "ix_product_webhook_deliveries_pending_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        # "Is an earlier delivery of this customer to this endpoint still pending?"
        Index(
            "ix_product_webhook_deliveries_pending_in_order",
            "endpoint_id",
            "account_id",
            "event_id",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(None, "created_at", "id"),
    )


class DataExport(Base):
    """A customer's exportMyData: the archive is built when its owner fetches it, by a URL
    holding a random token of which only the hash is kept."""

    __tablename__ = "data_exports"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    # sha256 of the URL's token, hex.
    token_hash: Mapped[str] = mapped_column(unique=True)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    downloaded_at: Mapped[datetime | None]
