"""Commerce types: discounts, addresses, tax ids, tax amounts, previews and their mutations."""

from datetime import UTC, datetime
from enum import Enum
from typing import Any

import strawberry

from db import models
from schema.common import Money, Node, UserError
from schema.ids import to_global_id


@strawberry.enum
class DiscountDuration(Enum):
    ONCE = "once"
    REPEATING = "repeating"
    FOREVER = "forever"


@strawberry.type
class Discount:
    coupon_id: str = strawberry.field(description="The Stripe coupon id.")
    name: str | None
    percent_off: float | None = strawberry.field(
        description="0..100 when the coupon takes a percentage off."
    )
    amount_off: Money | None
    duration: DiscountDuration
    duration_in_months: int | None
    promotion_code: str | None = strawberry.field(
        description="The customer-facing code it was applied with, when it came from one."
    )
    ends_at: datetime | None

    @classmethod
    def of(cls, described: dict[str, Any]) -> "Discount":
        """From a description by services/discounts.py."""
        amount_off, currency = described.get("amount_off"), described.get("currency")
        ends_at = described.get("ends_at")
        return cls(
            coupon_id=described["coupon_id"],
            name=described.get("name"),
            percent_off=described.get("percent_off"),
            amount_off=Money.of(amount_off, currency) if amount_off and currency else None,
            duration=DiscountDuration(described["duration"]),
            duration_in_months=described.get("duration_in_months"),
            promotion_code=described.get("promotion_code"),
            ends_at=datetime.fromtimestamp(ends_at, UTC) if ends_at else None,
        )


@strawberry.type
class Address:
    line1: str | None
    line2: str | None
    city: str | None
    state: str | None
    postal_code: str | None
    country: str | None = strawberry.field(description="ISO 3166-1 alpha-2.")

    @classmethod
    def of(cls, address: dict[str, Any]) -> "Address":
        """From a Stripe address; Stripe keeps "" for a part that is not set."""
        return cls(
            line1=address.get("line1") or None,
            line2=address.get("line2") or None,
            city=address.get("city") or None,
            state=address.get("state") or None,
            postal_code=address.get("postal_code") or None,
            country=address.get("country") or None,
        )


@strawberry.input
class AddressInput:
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str


@strawberry.enum
class TaxIdVerification(Enum):
    PENDING = "pending"
    VERIFIED = "verified"
    UNVERIFIED = "unverified"
    UNAVAILABLE = "unavailable"


@strawberry.type
class TaxId(Node):
    type: str = strawberry.field(description="Stripe's tax id type, e.g. au_abn, eu_vat, gb_vat.")
    value: str
    country: str | None
    verification: TaxIdVerification

    @classmethod
    def from_model(cls, row: models.TaxId) -> "TaxId":
        return cls(
            id=strawberry.ID(to_global_id("TaxId", row.id)),
            type=row.type,
            value=row.value,
            country=row.country,
            verification=TaxIdVerification(row.verification),
        )


@strawberry.type
class TaxAmount:
    amount: Money
    name: str = strawberry.field(description="Display name of the rate, e.g. GST or VAT.")
    percentage: float | None
    inclusive: bool
    country: str | None

    @classmethod
    def of(cls, described: dict[str, Any], currency: str) -> "TaxAmount":
        """From a description by services/taxes.py."""
        return cls(
            amount=Money.of(described["amount"], currency),
            name=described["name"],
            percentage=described.get("percentage"),
            inclusive=described["inclusive"],
            country=described.get("country"),
        )


@strawberry.type
class PromotionCodeCheck:
    valid: bool
    discount: Discount | None
    reason: str | None = strawberry.field(
        description="Why the code cannot be used, when it cannot."
    )


@strawberry.input
class UpdateBillingDetailsInput:
    name: str | None = None
    email: str | None = None
    address: AddressInput | None = None


@strawberry.input
class AddTaxIdInput:
    type: str
    value: str


@strawberry.type
class AddTaxIdPayload:
    tax_id: TaxId | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class RemoveTaxIdInput:
    tax_id_id: strawberry.ID


@strawberry.type
class RemoveTaxIdPayload:
    removed_tax_id_id: strawberry.ID | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class ApplyPromotionCodeInput:
    subscription_id: strawberry.ID
    code: str
