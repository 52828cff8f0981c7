"""Coupons: create (percent or amount off, once, repeating or forever, with redemption limits
and the products they apply to), retrieve, update (name, metadata), delete, list.

A coupon's `valid` says whether it can still be redeemed: not past `redeem_by` on the sandbox
clock, and not redeemed `max_redemptions` times. Redeeming it (sandbox/resources/discounts.py)
counts in `times_redeemed`. Deleting a coupon keeps the discounts already made from it."""

import copy
import secrets
import string
from typing import Any

from sandbox.errors import invalid_request, missing_parameter
from sandbox.registry import Call, StripeObject, handles, includable
from sandbox.resources.common import in_range, metadata_update, one_of, refuse_unsupported
from sandbox.store import DAY, Store, blank, changed_fields

DURATIONS = ("forever", "once", "repeating")
SUPPORTED = frozenset(
    {
        "amount_off",
        "applies_to",
        "currency",
        "duration",
        "duration_in_months",
        "id",
        "max_redemptions",
        "metadata",
        "name",
        "percent_off",
        "redeem_by",
    }
)
# Stripe's limit on how far ahead a coupon's last redemption may be.
MAX_REDEEM_BY = 5 * 365 * DAY
# Where the sandbox keeps a coupon's `applies_to`, which Stripe shows only when expanded.
APPLIES_TO = "sandbox.coupon_applies_to"
ID_ALPHABET = string.ascii_uppercase + string.digits


@handles("POST", "/v1/coupons")
def create(call: Call) -> StripeObject:
    store, params = call.store, call.params
    refuse_unsupported(params, SUPPORTED, "coupons")
    coupon_id = params.get("id") or "".join(secrets.choice(ID_ALPHABET) for _ in range(8))
    if coupon_id in store.objects:
        raise invalid_request("Coupon already exists.", param="id", code="resource_already_exists")
    duration = one_of(params.get("duration", "once"), DURATIONS, "duration")
    coupon = blank(
        "coupon",
        id=coupon_id,
        created=store.now(),
        duration=duration,
        duration_in_months=_duration_in_months(params, duration),
        max_redemptions=_positive(params, "max_redemptions"),
        metadata=metadata_update({}, params.get("metadata")),
        name=params.get("name"),
        redeem_by=_redeem_by(store, params.get("redeem_by")),
        times_redeemed=0,
        valid=True,
        **_amount(params),
    )
    products = _products(store, params.get("applies_to"))
    store.add(coupon)
    store.add({"id": f"{coupon_id}:applies_to", "object": APPLIES_TO, "products": products})
    store.emit("coupon.created", coupon)
    return coupon


def _amount(params: dict[str, Any]) -> dict[str, Any]:
    """percent_off, or amount_off in a currency: exactly one of them."""
    if "percent_off" in params and "amount_off" in params:
        raise invalid_request(
            "You may only specify one of these parameters: amount_off, percent_off.",
            param="amount_off",
        )
    if "percent_off" in params:
        percent = params["percent_off"]
        if not 0 < percent <= 100:
            raise invalid_request(
                "This value must be greater than 0 and less than or equal to 100.",
                param="percent_off",
            )
        return {"percent_off": percent, "amount_off": None, "currency": None}
    if "amount_off" not in params:
        raise invalid_request(
            "You must pass either `percent_off` or `amount_off`.", param="percent_off"
        )
    if "currency" not in params:
        raise missing_parameter("currency")
    amount = _positive(params, "amount_off")
    return {"percent_off": None, "amount_off": amount, "currency": params["currency"].lower()}


def _positive(params: dict[str, Any], name: str) -> int | None:
    value = params.get(name)
    if value is not None and value < 1:
        raise invalid_request("This value must be greater than or equal to 1.", param=name)
    return value


def _duration_in_months(params: dict[str, Any], duration: str) -> int | None:
    if duration != "repeating":
        if "duration_in_months" in params:
            raise invalid_request(
                "duration_in_months can only be set when duration is `repeating`.",
                param="duration_in_months",
            )
        return None
    if "duration_in_months" not in params:
        raise missing_parameter("duration_in_months")
    return _positive(params, "duration_in_months")


def _redeem_by(store: Store, redeem_by: int | None) -> int | None:
    if redeem_by is None:
        return None
    now = store.now()
    if redeem_by <= now:
        raise invalid_request(
            "Invalid timestamp: must be an integer Unix timestamp in the future.",
            param="redeem_by",
        )
    if redeem_by - now > MAX_REDEEM_BY:
        raise invalid_request(
            "redeem_by can be no more than 5 years in the future.", param="redeem_by"
        )
    return redeem_by


def _products(store: Store, applies_to: dict[str, Any] | None) -> list[str] | None:
    if applies_to is None:
        return None
    products = applies_to.get("products") or []
    for index, product_id in enumerate(products):
        store.get("product", product_id, param=f"applies_to[products][{index}]")
    return list(products)


@includable("coupon", "applies_to")
def applies_to(store: Store, coupon: StripeObject) -> StripeObject | None:
    products = products_of(store, coupon)
    return None if products is None else {"products": list(products)}


def products_of(store: Store, coupon: StripeObject) -> list[str] | None:
    """The products the coupon is limited to; None when it applies to every product."""
    record = store.objects.get(f"{coupon['id']}:applies_to")
    return record["products"] if record else None


def redeemable(store: Store, coupon: StripeObject) -> bool:
    """Whether the coupon can be redeemed now: Stripe's `valid`."""
    if coupon.get("deleted"):
        return False
    expired = coupon["redeem_by"] is not None and store.now() > coupon["redeem_by"]
    limit = coupon["max_redemptions"]
    return not expired and (limit is None or coupon["times_redeemed"] < limit)


def refresh_validity(store: Store, coupon: StripeObject) -> StripeObject:
    """Bring `valid` up to date: time passes and redemptions are counted elsewhere."""
    coupon["valid"] = redeemable(store, coupon)
    return coupon


@handles("GET", "/v1/coupons/{coupon}")
def retrieve(call: Call) -> StripeObject:
    return refresh_validity(call.store, call.store.get("coupon", call.args["coupon"]))


@handles("POST", "/v1/coupons/{coupon}")
def update(call: Call) -> StripeObject:
    store, params = call.store, call.params
    coupon = store.get("coupon", call.args["coupon"])
    refuse_unsupported(params, frozenset({"name", "metadata"}), "coupon updates")
    before = copy.deepcopy(coupon)
    if "name" in params:
        coupon["name"] = params["name"] or None
    if "metadata" in params:
        coupon["metadata"] = metadata_update(coupon["metadata"], params["metadata"])
    refresh_validity(store, coupon)
    changes = changed_fields(before, coupon)
    if changes:
        store.emit("coupon.updated", coupon, changes)
    return coupon


@handles("DELETE", "/v1/coupons/{coupon}")
def delete(call: Call) -> StripeObject:
    store = call.store
    coupon = store.get("coupon", call.args["coupon"])
    # The event carries the coupon as it was; its discounts keep reading it afterwards.
    store.emit("coupon.deleted", coupon)
    coupon.update(deleted=True, valid=False)
    return {"id": coupon["id"], "object": "coupon", "deleted": True}


@handles("GET", "/v1/coupons")
def list_coupons(call: Call) -> StripeObject:
    store, params = call.store, call.params

    def keep(coupon: StripeObject) -> bool:
        refresh_validity(store, coupon)
        return in_range(coupon["created"], params.get("created"))

    return store.list_objects("coupon", params, "/v1/coupons", keep)
