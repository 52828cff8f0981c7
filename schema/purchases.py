"""What a purchase would bill, and the payloads of the commerce mutations that answer rows."""

from datetime import datetime

import strawberry

from schema.billing import Customer, InvoiceLine, Subscription
from schema.commerce import Discount, TaxAmount
from schema.common import Money, UserError
from services.previews import Preview


@strawberry.type
class InvoicePreview:
    lines: list[InvoiceLine]
    subtotal: Money
    discounts: list[Discount]
    total_discount: Money
    taxes: list[TaxAmount]
    total: Money
    amount_due: Money = strawberry.field(
        description="What would be charged now (after proration, credit balance and discounts)."
    )
    charged_at: datetime | None = strawberry.field(
        description="When the previewed amount would be charged; null for now."
    )

    @classmethod
    def of(cls, preview: Preview) -> "InvoicePreview":
        currency = preview.currency
        return cls(
            lines=[
                InvoiceLine(
                    description=line.description,
                    amount=Money.of(line.amount, currency),
                    quantity=line.quantity,
                    proration=line.proration,
                    period_start=line.period_start,
                    period_end=line.period_end,
                    tax=Money.of(line.tax, currency) if line.tax is not None else None,
                )
                for line in preview.lines
            ],
            subtotal=Money.of(preview.subtotal, currency),
            discounts=[Discount.of(described) for described in preview.discounts],
            total_discount=Money.of(preview.total_discount, currency),
            taxes=[TaxAmount.of(described, currency) for described in preview.taxes],
            total=Money.of(preview.total, currency),
            amount_due=Money.of(preview.amount_due, currency),
            charged_at=preview.charged_at,
        )


@strawberry.type
class UpdateBillingDetailsPayload:
    customer: Customer | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ApplyPromotionCodePayload:
    subscription: Subscription | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)
