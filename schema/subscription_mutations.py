"""Inputs and payloads of the subscription mutations."""

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
