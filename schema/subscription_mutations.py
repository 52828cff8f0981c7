"""Inputs and payloads of the subscription mutations and the hosted pages that sell plans."""

import strawberry

from schema.billing import Subscription
from schema.common import UserError


@strawberry.input
class CancelSubscriptionInput:
    subscription_id: strawberry.ID
    at_period_end: bool | None = strawberry.field(
        default=None, description="Default true: keep access until the period ends."
    )


@strawberry.type
class CancelSubscriptionPayload:
    subscription: Subscription | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class CreateSubscriptionInput:
    plan_id: strawberry.ID
    payment_method_id: str | None = strawberry.field(
        default=None,
        description="A Stripe PaymentMethod id from Stripe.js (pm_...); the default one when absent.",
    )
    quantity: int | None = None
    idempotency_key: str | None = None
    promotion_code: str | None = None
    currency: str | None = strawberry.field(
        default=None,
        description="ISO 4217; one of the plan's amounts. Default: the customer's currency, "
        "else the plan's.",
    )


@strawberry.type
class CreateSubscriptionPayload:
    subscription: Subscription | None = None
    client_secret: str | None = strawberry.field(
        default=None,
        description="Set when the first payment needs the customer (3-D Secure): confirm it "
        "with Stripe.js.",
    )
    requires_action: bool = False
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class ChangeSubscriptionPlanInput:
    subscription_id: strawberry.ID
    plan_id: strawberry.ID
    quantity: int | None = None
    prorate: bool | None = None
    idempotency_key: str | None = None
    promotion_code: str | None = None


@strawberry.type
class ChangeSubscriptionPlanPayload:
    subscription: Subscription | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class ResumeSubscriptionInput:
    subscription_id: strawberry.ID


@strawberry.type
class ResumeSubscriptionPayload:
    subscription: Subscription | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class CreateCheckoutSessionInput:
    plan_id: strawberry.ID
    success_url: str
    cancel_url: str
    promotion_code: str | None = None
    allow_promotion_codes: bool | None = None
    currency: str | None = None


@strawberry.type
class CreateCheckoutSessionPayload:
    session_id: str | None = None
    url: str | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class CreatePortalSessionInput:
    return_url: str


@strawberry.type
class CreatePortalSessionPayload:
    url: str | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)
