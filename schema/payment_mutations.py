"""Inputs and payloads of the payment method and payment mutations."""

import strawberry

from schema.common import UserError


@strawberry.type
class CreateSetupIntentPayload:
    client_secret: str | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)
