"""`Query.viewer`: the signed-in caller's own billing."""

import strawberry

from db.models import Account
from schema.billing import Customer


@strawberry.type
class Viewer:
    user_id: str
    account: strawberry.Private[Account]

    @strawberry.field
    def customer(self) -> Customer | None:
        return Customer.from_model(self.account)
