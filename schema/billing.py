"""Billing types that mirror rows: each has `from_model`, and relations load through loaders."""

from datetime import datetime

import strawberry

from db import models
from schema.common import Money, Node
from schema.ids import to_global_id
from schema.scalars import BigInt

# The mirror's enums are the GraphQL enums: member names are the GraphQL values.
for _enum in (
    models.BillingInterval,
    models.SubscriptionStatus,
    models.InvoiceStatus,
    models.PaymentStatus,
    models.CreditEntryKind,
    models.WebhookEventStatus,
):
    strawberry.enum(_enum)


@strawberry.type
class BillingConfig:
    publishable_key: str
    sandbox: bool = strawberry.field(
        description="True when the gateway talks to the offline sandbox instead of Stripe."
    )


@strawberry.type
class Plan(Node):
    stripe_price_id: str
    product_name: str
    description: str | None
    amount: Money
    interval: models.BillingInterval
    interval_count: int
    trial_days: int | None
    credits: BigInt | None = strawberry.field(
        description="Credits granted for each paid billing cycle."
    )
    active: bool

    @classmethod
    def from_model(cls, row: models.Plan) -> "Plan":
        assert row.interval is not None and row.interval_count is not None, "plans recur"
        return cls(
            id=strawberry.ID(to_global_id("Plan", row.id)),
            stripe_price_id=row.stripe_price_id,
            product_name=row.product_name,
            description=row.description,
            amount=Money.of(row.amount, row.currency),
            interval=row.interval,
            interval_count=row.interval_count,
            trial_days=row.trial_days,
            credits=BigInt(row.credits) if row.credits is not None else None,
            active=row.active,
        )


@strawberry.type
class PaymentMethod(Node):
    stripe_payment_method_id: str
    type: str
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None
    is_default: bool
    created_at: datetime

    @classmethod
    def from_model(cls, row: models.PaymentMethod, *, is_default: bool) -> "PaymentMethod":
        return cls(
            id=strawberry.ID(to_global_id("PaymentMethod", row.id)),
            stripe_payment_method_id=row.stripe_payment_method_id,
            type=row.type,
            brand=row.brand,
            last4=row.last4,
            exp_month=row.exp_month,
            exp_year=row.exp_year,
            is_default=is_default,
            created_at=row.stripe_created_at,
        )


@strawberry.type(
    description="The billing account of one user of the product; created when the user is first seen."
)
class Customer(Node):
    stripe_customer_id: str | None = strawberry.field(
        description="Set once the first billing action has created the Stripe customer."
    )
    user_id: str
    email: str | None
    name: str | None
    created_at: datetime
    account_id: strawberry.Private[int]
    default_payment_method_stripe_id: strawberry.Private[str | None]

    @strawberry.field
    async def default_payment_method(self, info: strawberry.Info) -> PaymentMethod | None:
        if self.default_payment_method_stripe_id is None:
            return None
        row = await info.context.loaders.payment_method_by_stripe_id.load(
            self.default_payment_method_stripe_id
        )
        if row is None or row.account_id != self.account_id or row.detached_at is not None:
            return None
        return PaymentMethod.from_model(row, is_default=True)

    @classmethod
    def from_model(cls, row: models.Account) -> "Customer":
        return cls(
            id=strawberry.ID(to_global_id("Customer", row.id)),
            stripe_customer_id=row.stripe_customer_id,
            user_id=row.user_id,
            email=row.email,
            name=row.name,
            created_at=row.created_at,
            account_id=row.id,
            default_payment_method_stripe_id=row.default_payment_method_stripe_id,
        )
