"""The credits ledger's types: one immutable entry, and a wallet's connection of them."""

from datetime import datetime

import strawberry

from db import models
from schema.common import Node
from schema.ids import to_global_id
from schema.scalars import BigInt


@strawberry.type
class CreditEntry(Node):
    kind: models.CreditEntryKind
    amount: BigInt = strawberry.field(
        description="Signed: positive adds credits, negative removes them."
    )
    balance_after: BigInt
    reason: str
    source_ref: str | None = strawberry.field(
        description="The Stripe object or caller key this entry came from."
    )
    created_at: datetime

    @classmethod
    def from_model(cls, row: models.CreditEntry) -> "CreditEntry":
        return cls(
            id=strawberry.ID(to_global_id("CreditEntry", row.id)),
            kind=row.kind,
            amount=BigInt(row.amount),
            balance_after=BigInt(row.balance_after),
            reason=row.reason,
            source_ref=row.source_ref,
            created_at=row.created_at,
        )
