"""Discounts: coupons and promotion codes redeemed onto subscriptions (`discounts` on create
and update, and through Checkout), what they take off each invoice, and when they end.

A subscription's `discounts` lists its discount ids. Every invoice it bills carries the
discounts that apply when the invoice is made, and `discount_lines` takes them off its
discountable lines in order: a percentage of what each line has left, or an amount spread
over the lines in proportion. A `once` discount leaves the subscription when the next invoice
is made after one it took something off; a `repeating` one at its `end`; `forever` stays.

Redemption counts and endings follow the announcements: a discount counts as a redemption
when customer.discount.created is emitted and is gone once customer.discount.deleted is, so an
all-or-nothing operation that fails, or a rehearsal, which announce nothing, change neither.
"""

import copy
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sandbox.errors import invalid_request, no_such
from sandbox.registry import Due, StripeObject, reacts_to, timer
from sandbox.resources import coupons, promotion_codes
from sandbox.resources.common import format_amount
from sandbox.store import Store, blank

SOURCES = ("coupon", "discount", "promotion_code")
PRIOR_TRANSACTIONS = (
    "This promotion code cannot be redeemed because the associated customer has prior transactions."
)
MINIMUM_ON_UPDATE = (
    "This promotion code cannot be redeemed on a subscription update because it uses the "
    "`minimum_amount` restriction and the amount may change."
)


@dataclass(frozen=True)
class Purchase:
    """What a discount is redeemed on: who buys, in which currency, and the lines' undiscounted
    (amount, product); `updating` for a change to a subscription."""

    customer: str | None
    currency: str
    lines: list[tuple[int, str]]
    updating: bool = False


@dataclass(frozen=True)
class Redemption:
    """One entry of `discounts`: a coupon to redeem (through a promotion code, if given), or
    an existing discount to keep."""

    coupon: StripeObject
    promotion_code: StripeObject | None = None
    discount: str | None = None


# Subscriptions -------------------------------------------------------------------------------


def apply_on_create(store: Store, subscription: StripeObject, params: dict[str, Any]) -> None:
    """The new subscription's `discounts` (its items added, nothing billed yet)."""
    _set_discounts(store, subscription, params, updating=False)


def apply_on_update(store: Store, subscription: StripeObject, params: dict[str, Any]) -> None:
    """An update's `discounts` replace the subscription's: `{discount}` keeps one, `""` clears
    them all."""
    _set_discounts(store, subscription, params, updating=True)


def _set_discounts(
    store: Store, subscription: StripeObject, params: dict[str, Any], updating: bool
) -> None:
    _refuse_item_discounts(params)
    if "discounts" not in params:
        return
    purchase = _subscription_purchase(subscription, updating)
    wanted = [
        _redemption(store, entry, purchase, f"discounts[{index}]", subscription["discounts"])
        for index, entry in enumerate(params["discounts"] or [])
    ]
    _refuse_repeats(wanted)
    kept = {redemption.discount for redemption in wanted}
    for discount_id in list(subscription["discounts"]):
        if discount_id not in kept:
            remove(store, subscription, discount_id)
    subscription["discounts"] = [
        redemption.discount or _new_discount(store, subscription, redemption)["id"]
        for redemption in wanted
    ]


def _refuse_item_discounts(params: dict[str, Any]) -> None:
    for index, entry in enumerate(params.get("items") or []):
        if "discounts" in entry:
            raise invalid_request(
                "The sandbox does not support `discounts` on subscription items yet.",
                param=f"items[{index}][discounts]",
            )


def _subscription_purchase(subscription: StripeObject, updating: bool) -> Purchase:
    items = subscription["items"]["data"]
    lines = [
        ((item["price"]["unit_amount"] or 0) * item["quantity"], item["price"]["product"])
        for item in items
    ]
    return Purchase(subscription["customer"], items[0]["price"]["currency"], lines, updating)


def _refuse_repeats(wanted: list[Redemption]) -> None:
    seen: set[str] = set()
    for index, redemption in enumerate(wanted):
        coupon_id = redemption.coupon["id"]
        if coupon_id in seen:
            raise invalid_request(
                f"The coupon `{coupon_id}` can be applied to a subscription only once.",
                param=f"discounts[{index}]",
            )
        seen.add(coupon_id)


def _new_discount(store: Store, subscription: StripeObject, redemption: Redemption) -> StripeObject:
    from sandbox.resources.subscriptions import add_interval

    coupon, start = redemption.coupon, store.now()
    repeating = coupon["duration"] == "repeating"
    promotion_code = redemption.promotion_code
    discount = blank(
        "discount",
        id=store.new_id("di"),
        checkout_session=None,
        customer=subscription["customer"],
        customer_account=None,
        end=add_interval(start, "month", coupon["duration_in_months"]) if repeating else None,
        invoice=None,
        invoice_item=None,
        promotion_code=promotion_code["id"] if promotion_code else None,
        source={"coupon": coupon["id"], "type": "coupon"},
        start=start,
        subscription=subscription["id"],
        subscription_item=None,
    )
    # Stripe's discounts carry no livemode flag (blank() adds one to every object).
    del discount["livemode"]
    store.add(discount)
    store.emit("customer.discount.created", discount)
    return discount


def remove(store: Store, subscription: StripeObject, discount_id: str) -> None:
    """The discount leaves the subscription (announced; see `_ended`)."""
    subscription["discounts"].remove(discount_id)
    store.emit("customer.discount.deleted", store.objects[discount_id])


@reacts_to("customer.discount.created")
def _redeemed(store: Store, discount: StripeObject) -> None:
    coupon = store.objects[discount["source"]["coupon"]]
    coupon["times_redeemed"] += 1
    coupons.refresh_validity(store, coupon)
    if discount["promotion_code"]:
        store.objects[discount["promotion_code"]]["times_redeemed"] += 1


@reacts_to("customer.discount.deleted")
def _ended(store: Store, discount: StripeObject) -> None:
    """A removed discount answers as Stripe's deleted_discount (invoices still name it)."""
    live = store.objects[discount["id"]]
    live.pop("end", None)
    live["deleted"] = True


# Checking a redemption -----------------------------------------------------------------------


def _redemption(
    store: Store, entry: dict[str, Any], purchase: Purchase, path: str, current: list[str]
) -> Redemption:
    """The entry checked as Stripe checks it; `current`: the discounts it may keep."""
    named = [key for key in SOURCES if entry.get(key)]
    if len(named) != 1:
        raise invalid_request(
            "You must specify exactly one of these parameters: coupon, discount, promotion_code.",
            param=path,
        )
    if named == ["discount"]:
        discount_id = entry["discount"]
        if discount_id not in current:
            raise no_such("discount", discount_id, f"{path}[discount]")
        coupon = store.objects[store.objects[discount_id]["source"]["coupon"]]
        return Redemption(coupon, discount=discount_id)
    if named == ["coupon"]:
        coupon = store.get("coupon", entry["coupon"], param=f"{path}[coupon]")
        _check_coupon(store, coupon, purchase, f"{path}[coupon]")
        return Redemption(coupon)
    param = f"{path}[promotion_code]"
    promotion_code = store.get(
        "promotion_code", entry["promotion_code"], param=param, kind="promotion code"
    )
    _check_promotion_code(store, promotion_code, purchase, param)
    coupon = promotion_codes.coupon_of(store, promotion_code)
    _check_coupon(store, coupon, purchase, param)
    return Redemption(coupon, promotion_code)


def _check_coupon(store: Store, coupon: StripeObject, purchase: Purchase, param: str) -> None:
    if not coupons.redeemable(store, coupon):
        raise invalid_request(f"Coupon expired: {coupon['id']}", param=param, code="coupon_expired")
    if coupon["amount_off"] is not None and coupon["currency"] != purchase.currency:
        raise invalid_request(
            f"The coupon `{coupon['id']}` takes an amount off in {coupon['currency']}; it "
            f"cannot be redeemed on a purchase in {purchase.currency}.",
            param=param,
        )
    products = coupons.products_of(store, coupon)
    if products is not None and not any(product in products for _, product in purchase.lines):
        raise invalid_request(
            "This coupon cannot be redeemed because it does not apply to anything in this order.",
            param=param,
        )


def _check_promotion_code(
    store: Store, promotion_code: StripeObject, purchase: Purchase, param: str
) -> None:
    limit, expires_at = promotion_code["max_redemptions"], promotion_code["expires_at"]
    if not promotion_code["active"]:
        raise invalid_request("This promotion code is not active.", param=param)
    if expires_at is not None and store.now() >= expires_at:
        raise invalid_request("This promotion code has expired.", param=param)
    if limit is not None and promotion_code["times_redeemed"] >= limit:
        raise invalid_request(
            "This promotion code cannot be redeemed because it has been used the maximum "
            "number of times.",
            param=param,
        )
    if promotion_code["customer"] not in (None, purchase.customer):
        raise invalid_request(
            "This promotion code cannot be redeemed because it is restricted to another customer.",
            param=param,
        )
    restrictions = promotion_code["restrictions"]
    if restrictions["first_time_transaction"] and _has_transacted(store, purchase.customer):
        raise invalid_request(PRIOR_TRANSACTIONS, param=param)
    _check_minimum(restrictions, purchase, param)


def _has_transacted(store: Store, customer_id: str | None) -> bool:
    """Whether the customer has a paid invoice or a successful charge."""
    if customer_id is None:
        return False
    paid = any(
        invoice["customer"] == customer_id and invoice["status"] == "paid"
        for invoice in _all(store, "invoice")
    )
    return paid or any(
        charge["customer"] == customer_id and charge["status"] == "succeeded"
        for charge in _all(store, "charge")
    )


def _all(store: Store, object_type: str) -> Iterator[StripeObject]:
    return (store.objects[object_id] for object_id in store.ids_by_type[object_type])


def _check_minimum(restrictions: StripeObject, purchase: Purchase, param: str) -> None:
    minimum, currency = restrictions["minimum_amount"], restrictions["minimum_amount_currency"]
    if minimum is None:
        return
    if purchase.updating:
        raise invalid_request(MINIMUM_ON_UPDATE, param=param)
    amount = sum(amount for amount, _ in purchase.lines)
    if currency != purchase.currency or amount < minimum:
        raise invalid_request(
            "This promotion code cannot be redeemed because the purchase is less than its "
            f"minimum amount of {format_amount(minimum, currency)}.",
            param=param,
        )


# Checkout -------------------------------------------------------------------------------------


def for_checkout(
    store: Store, entries: list[dict[str, Any]], purchase: Purchase
) -> tuple[list[StripeObject], list[int]]:
    """A Checkout Session's `discounts` checked: what the session shows of them, and the amount
    they take off each of its lines."""
    wanted = [
        _redemption(store, entry, purchase, f"discounts[{index}]", [])
        for index, entry in enumerate(entries)
    ]
    shown = [
        {
            "coupon": redemption.coupon["id"],
            "promotion_code": redemption.promotion_code["id"]
            if redemption.promotion_code
            else None,
        }
        for redemption in wanted
    ]
    lines = [(amount, product, True) for amount, product in purchase.lines]
    taken = _amounts(store, lines, [redemption.coupon for redemption in wanted], purchase.currency)
    return shown, [sum(amount or 0 for amount in line) for line in taken]


def typed_code(store: Store, code: str, customer_id: str | None) -> dict[str, str]:
    """The `discounts` entry for a promotion code a customer typed on a hosted page."""
    promotion_code = promotion_codes.find_by_code(store, code.strip(), customer_id)
    if promotion_code is None:
        raise invalid_request("This code is invalid.", param="promotion_code")
    return {"promotion_code": promotion_code["id"]}


# Invoices -------------------------------------------------------------------------------------


def for_new_invoice(store: Store, subscription: StripeObject | None) -> list[str]:
    """The discounts an invoice the subscription bills now carries. Those that are over leave
    the subscription first: a repeating one at its end, a once one already used."""
    if subscription is None:
        return []
    over = [d for d in subscription["discounts"] if _over(store, store.objects[d])]
    if over:
        from sandbox.resources.subscriptions import announce

        before = copy.deepcopy(subscription)
        for discount_id in over:
            remove(store, subscription, discount_id)
        announce(store, subscription, before)
    return list(subscription["discounts"])


def _over(store: Store, discount: StripeObject) -> bool:
    if discount["end"] is not None:
        return store.now() >= discount["end"]
    coupon = store.objects[discount["source"]["coupon"]]
    return coupon["duration"] == "once" and _used(store, discount["id"])


def _used(store: Store, discount_id: str) -> bool:
    """Whether an invoice has taken something off with this discount."""
    return any(
        entry["discount"] == discount_id and entry["amount"] > 0
        for invoice in _all(store, "invoice")
        for entry in invoice["total_discount_amounts"]
    )


def discount_lines(store: Store, invoice: StripeObject) -> None:
    """Set each discountable line's `discount_amounts` and the invoice's
    `total_discount_amounts` from the invoice's `discounts` (the discounts of the invoice as a
    whole, so the lines' own `discounts` stay empty)."""
    discounts = [store.objects[discount_id] for discount_id in invoice["discounts"]]
    lines = invoice["lines"]["data"]
    taken = _amounts(
        store,
        [(line["amount"], _product(line), line["discountable"]) for line in lines],
        [store.objects[discount["source"]["coupon"]] for discount in discounts],
        invoice["currency"],
    )
    for line, amounts in zip(lines, taken, strict=True):
        line["discount_amounts"] = [
            {"amount": amount, "discount": discount["id"]}
            for discount, amount in zip(discounts, amounts, strict=True)
            if amount is not None
        ]
    invoice["total_discount_amounts"] = [
        {"amount": sum(amounts[index] or 0 for amounts in taken), "discount": discount["id"]}
        for index, discount in enumerate(discounts)
    ]


def _product(line: StripeObject) -> str:
    return line["pricing"]["price_details"]["product"]


def _amounts(
    store: Store,
    lines: list[tuple[int, str, bool]],
    chosen: list[StripeObject],
    currency: str,
) -> list[list[int | None]]:
    """What each coupon takes off each (amount, product, discountable) line, in turn, from what
    the coupons before it left; None where it does not apply."""
    left = [amount for amount, _, _ in lines]
    taken: list[list[int | None]] = [[None] * len(chosen) for _ in lines]
    for index, coupon in enumerate(chosen):
        applies = [
            line
            for line, (_, product, discountable) in enumerate(lines)
            if discountable and _applies(store, coupon, product, currency)
        ]
        for line, amount in zip(applies, _off(coupon, [left[i] for i in applies]), strict=True):
            taken[line][index] = amount
            left[line] -= amount
    return taken


def _applies(store: Store, coupon: StripeObject, product: str, currency: str) -> bool:
    products = coupons.products_of(store, coupon)
    in_currency = coupon["amount_off"] is None or coupon["currency"] == currency
    return in_currency and (products is None or product in products)


def _off(coupon: StripeObject, amounts: list[int]) -> list[int]:
    """What the coupon takes off lines with these amounts left: a percentage of each, rounded
    half up per line, or its amount spread over them in proportion, never more than a line."""
    if coupon["percent_off"] is not None:
        percent = Decimal(str(coupon["percent_off"])) / 100
        return [_rounded(Decimal(amount) * percent) for amount in amounts]
    return _spread(min(coupon["amount_off"], sum(amounts)), amounts)


def _spread(total: int, amounts: list[int]) -> list[int]:
    """`total` split in proportion to `amounts`, in whole units: the units rounding leaves go
    to the largest remainders, earlier lines first."""
    whole = sum(amounts)
    if whole == 0:
        return [0] * len(amounts)
    shares = [divmod(total * amount, whole) for amount in amounts]
    result = [share for share, _ in shares]
    by_remainder = sorted(range(len(amounts)), key=lambda i: -shares[i][1])
    for line in by_remainder[: total - sum(result)]:
        result[line] += 1
    return result


def _rounded(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_HALF_UP))


# Ends -----------------------------------------------------------------------------------------


@timer
def _due(store: Store) -> Iterator[Due]:
    """Repeating discounts reaching their end on live subscriptions."""
    for discount in _all(store, "discount"):
        subscription = store.objects.get(discount["subscription"] or "")
        if (
            discount.get("end") is not None
            and subscription is not None
            and discount["id"] in subscription["discounts"]
            and subscription["status"] not in ("canceled", "incomplete_expired")
        ):
            run = functools.partial(_expire, store, subscription, discount["id"])
            yield Due(discount["end"], discount["customer"], run)


def _expire(store: Store, subscription: StripeObject, discount_id: str) -> None:
    from sandbox.resources.subscriptions import announce

    before = copy.deepcopy(subscription)
    remove(store, subscription, discount_id)
    announce(store, subscription, before)
