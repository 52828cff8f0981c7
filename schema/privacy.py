"""Export of the caller's own data, and erasure of a customer (admins)."""

from datetime import datetime

import strawberry

from schema.billing import Customer
from schema.common import UserError


@strawberry.type
class DataExport:
    url: str = strawberry.field(
        description="A gateway URL that serves the archive (JSON) to its owner until expiresAt."
    )
    expires_at: datetime


@strawberry.type
class ExportMyDataPayload:
    export: DataExport | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class EraseCustomerInput:
    customer_id: strawberry.ID
    idempotency_key: str


@strawberry.type
class EraseCustomerPayload:
    customer: Customer | None = strawberry.field(
        default=None,
        description="The customer, its personal data gone; its financial records kept as "
        "retention requires.",
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list)
