"""Whether the caller may use the product now (services/access.py decides)."""

from datetime import datetime

import strawberry

from schema.billing import Subscription
from services.access import Access, AccessStatus

strawberry.enum(AccessStatus)


@strawberry.type
class BillingAccess:
    status: AccessStatus
    has_access: bool
    until: datetime | None = strawberry.field(
        description="When access ends unless something changes (period end, trial end, grace end)."
    )
    subscription: Subscription | None

    @classmethod
    def of(cls, access: Access) -> "BillingAccess":
        row = access.subscription
        return cls(
            status=access.status,
            has_access=access.has_access,
            until=access.until,
            subscription=Subscription.from_model(row) if row is not None else None,
        )
