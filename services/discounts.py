"""Discounts: promotion codes checked before Stripe is asked, and what the mirror shows of a
discount (its coupon's terms and the code it came from).

Stripe names a discount by id on invoices, subscriptions and events, and a discount can only
be read by expanding what carries it; its terms never change. So each discount is described
once, from an expanded read, and kept in the `discounts` table by id."""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.database import driver_of
from db.models import Discount, Plan
from services.errors import DomainError, ErrorCode
from services.stripe.client import DISCOUNT_EXPAND, StripeApi

StripeDict = dict[str, Any]
Description = dict[str, Any]

KNOWN_DISCOUNTS = (
    "SELECT stripe_discount_id, description FROM discounts WHERE stripe_discount_id = ANY($1)"
)


def describe(discount: StripeDict) -> Description:
    """A discount as the API shows it, from Stripe's discount with its coupon and promotion
    code expanded."""
    coupon = (discount.get("source") or {}).get("coupon") or {}
    code = discount.get("promotion_code")
    return {
        "id": discount["id"],
        "coupon_id": coupon["id"],
        "name": coupon.get("name"),
        "percent_off": coupon.get("percent_off"),
        "amount_off": coupon.get("amount_off"),
        "currency": coupon.get("currency"),
        "duration": coupon["duration"],
        "duration_in_months": coupon.get("duration_in_months"),
        "promotion_code": code.get("code") if isinstance(code, dict) else None,
        "ends_at": discount.get("end"),
    }


def _discount_id(value: Any) -> str:
    return value["id"] if isinstance(value, dict) else value


async def described(
    session: AsyncSession, stripe: StripeApi, owner: StripeDict
) -> dict[str, Description]:
    """The descriptions of the discounts an invoice or subscription names, by discount id;
    Stripe is read (the owner, expanded) only for discounts never described before."""
    ids = [_discount_id(value) for value in owner.get("discounts") or []]
    for entry in owner.get("total_discount_amounts") or []:
        ids.append(_discount_id(entry["discount"]))
    if not ids:
        return {}
    driver = await driver_of(session)
    known = dict(await driver.fetch(KNOWN_DISCOUNTS, ids))
    missing = set(ids) - known.keys()
    if missing:
        fresh = await _expanded(stripe, owner)
        for value in fresh.get("discounts") or []:
            if isinstance(value, dict) and value["id"] in missing:
                known[value["id"]] = describe(value)
        await _keep(session, [known[id] for id in missing if id in known])
    return known


async def _expanded(stripe: StripeApi, owner: StripeDict) -> StripeDict:
    if owner["object"] == "invoice":
        invoice = await stripe.retrieve_invoice(owner["id"], expand=DISCOUNT_EXPAND)
        return invoice.to_dict()
    subscription = await stripe.retrieve_subscription(owner["id"], expand=DISCOUNT_EXPAND)
    return subscription.to_dict()


async def _keep(session: AsyncSession, descriptions: list[Description]) -> None:
    if descriptions:
        rows = [{"stripe_discount_id": d["id"], "description": d} for d in descriptions]
        await session.execute(insert(Discount).values(rows).on_conflict_do_nothing())


def invoice_discounts(
    invoice: StripeDict, descriptions: dict[str, Description]
) -> list[Description]:
    """Each discount of an invoice with the amount it took off, in the invoice's order."""
    amounts: dict[str, int] = {}
    for entry in invoice.get("total_discount_amounts") or []:
        key = _discount_id(entry["discount"])
        amounts[key] = amounts.get(key, 0) + entry["amount"]
    return [
        descriptions[key] | {"amount": amount}
        for key, amount in amounts.items()
        if key in descriptions
    ]


def subscription_discount(
    subscription: StripeDict, descriptions: dict[str, Description]
) -> Description | None:
    """The subscription's discount (the gateway applies one at a time)."""
    for value in subscription.get("discounts") or []:
        description = descriptions.get(_discount_id(value))
        if description is not None:
            return description
    return None


# --- promotion codes -------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeCheck:
    """Whether a promotion code can be used now (for a plan and customer, when given)."""

    promotion_code_id: str | None
    discount: Description | None
    reason: str | None

    @property
    def valid(self) -> bool:
        return self.reason is None


def _refused(reason: str) -> CodeCheck:
    return CodeCheck(None, None, reason)


async def check_code(
    *,
    stripe: StripeApi,
    code: str,
    plan: Plan | None,
    customer_id: str | None,
    currency: str | None,
    first_purchase: bool,
) -> CodeCheck:
    """Stripe's rules for redeeming a code, checked against Stripe's promotion code and
    coupon, so a refusal comes with a reason and before anything is changed."""
    code = code.strip()
    if not code or len(code) > 200:
        return _refused("No such promotion code")
    promotion = await stripe.find_promotion_code(code)
    if promotion is None:
        return _refused("No such promotion code")
    coupon = (promotion.get("promotion") or {}).get("coupon") or {}
    reason = _code_refusal(promotion, plan, customer_id, first_purchase) or _coupon_refusal(
        coupon, plan, currency
    )
    if reason is not None:
        return _refused(reason)
    discount = describe(
        {"id": "", "source": {"coupon": coupon}, "promotion_code": promotion, "end": None}
    )
    return CodeCheck(promotion["id"], discount, None)


def _now() -> int:
    return int(datetime.now(UTC).timestamp())


def _code_refusal(
    promotion: StripeDict, plan: Plan | None, customer_id: str | None, first_purchase: bool
) -> str | None:
    restrictions = promotion.get("restrictions") or {}
    if not promotion.get("active"):
        return "This promotion code is no longer active"
    if promotion.get("expires_at") is not None and promotion["expires_at"] <= _now():
        return "This promotion code has expired"
    limit = promotion.get("max_redemptions")
    if limit is not None and promotion.get("times_redeemed", 0) >= limit:
        return "This promotion code has been used up"
    if promotion.get("customer") and promotion["customer"] != customer_id:
        return "This promotion code belongs to another customer"
    if restrictions.get("first_time_transaction") and not first_purchase:
        return "This promotion code is for a first purchase only"
    minimum = restrictions.get("minimum_amount")
    if minimum and plan is not None and plan.amount < minimum:
        return "The plan's price is below this promotion code's minimum amount"
    return None


def _coupon_refusal(coupon: StripeDict, plan: Plan | None, currency: str | None) -> str | None:
    if not coupon.get("valid", True):
        return "This promotion code's coupon is no longer valid"
    if coupon.get("redeem_by") is not None and coupon["redeem_by"] <= _now():
        return "This promotion code's coupon has expired"
    products = ((coupon.get("applies_to") or {}).get("products")) or []
    if plan is not None and products and plan.stripe_product_id not in products:
        return "This promotion code does not apply to that plan"
    if coupon.get("amount_off") and currency and coupon.get("currency") != currency:
        return "This promotion code does not apply in that currency"
    return None


def require_valid(check: CodeCheck) -> str:
    """The promotion code's Stripe id, or INVALID_PROMOTION_CODE with the reason."""
    if check.reason is not None or check.promotion_code_id is None:
        raise DomainError(
            ErrorCode.INVALID_PROMOTION_CODE, check.reason or "Invalid code", ["promotionCode"]
        )
    return check.promotion_code_id
