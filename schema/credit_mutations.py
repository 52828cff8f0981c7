"""Inputs and payloads of the credits mutations."""

import strawberry

from schema.common import UserError
from schema.credits import CreditEntry
from schema.scalars import BigInt


@strawberry.input
class SpendCreditsInput:
    amount: BigInt
    reason: str
    idempotency_key: str


@strawberry.type
class SpendCreditsPayload:
    entry: CreditEntry | None = None
    balance: BigInt | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class GrantCreditsInput:
    customer_id: strawberry.ID
    amount: BigInt
    reason: str
    idempotency_key: str


@strawberry.type
class GrantCreditsPayload:
    entry: CreditEntry | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)
