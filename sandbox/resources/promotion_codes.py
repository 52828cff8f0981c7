"""Promotion codes: the customer-facing codes of coupons; create, retrieve, update (active,
metadata), list (by code, active, coupon, customer).

A code is case-insensitive and unique among active codes a customer could type: several
codes restricted to different customers may share it, a code open to everyone may not. What
redeeming one checks (expiry, limits, restrictions) is in sandbox/resources/discounts.py."""

import copy
import re
import secrets
import string
from typing import Any

from sandbox.errors import invalid_request, missing_parameter
from sandbox.registry import Call, StripeObject, handles
from sandbox.resources import coupons
from sandbox.resources.common import in_range, metadata_update, refuse_unsupported
from sandbox.store import Store, blank, changed_fields

SUPPORTED = frozenset(
    {
        "active",
        "code",
        "customer",
        "expires_at",
        "max_redemptions",
        "metadata",
        "promotion",
        "restrictions",
    }
)
SUPPORTED_RESTRICTIONS = frozenset(
    {"first_time_transaction", "minimum_amount", "minimum_amount_currency"}
)
VALID_CODE = re.compile(r"[A-Za-z0-9-]+")
CODE_ALPHABET = string.ascii_letters + string.digits


@handles("POST", "/v1/promotion_codes")
def create(call: Call) -> StripeObject:
    store, params = call.store, call.params
    refuse_unsupported(params, SUPPORTED, "promotion codes")
    restrictions = params.get("restrictions") or {}
    refuse_unsupported(restrictions, SUPPORTED_RESTRICTIONS, "promotion codes' restrictions")
    coupon = _coupon(store, params["promotion"])
    customer = params.get("customer")
    if customer is not None:
        store.get("customer", customer, param="customer")
    promotion_code = blank(
        "promotion_code",
        id=store.new_id("promo"),
        active=params.get("active", True),
        code=_code(params.get("code")),
        created=store.now(),
        customer=customer,
        customer_account=None,
        expires_at=_expires_at(store, params.get("expires_at"), coupon),
        max_redemptions=_max_redemptions(params.get("max_redemptions"), coupon),
        metadata=metadata_update({}, params.get("metadata")),
        promotion={"coupon": coupon["id"], "type": "coupon"},
        restrictions=_restrictions(restrictions),
        times_redeemed=0,
    )
    if promotion_code["active"]:
        _check_unique(store, promotion_code)
    store.add(promotion_code)
    store.emit("promotion_code.created", promotion_code)
    return promotion_code


def _coupon(store: Store, promotion: dict[str, Any]) -> StripeObject:
    if "coupon" not in promotion:
        raise missing_parameter("promotion[coupon]")
    return store.get("coupon", promotion["coupon"], param="promotion[coupon]")


def _code(code: str | None) -> str:
    if code is None:
        return "".join(secrets.choice(CODE_ALPHABET) for _ in range(10))
    if not VALID_CODE.fullmatch(code):
        raise invalid_request(
            "Promotion codes can only contain letters (a-z, A-Z), digits (0-9) and dashes (-).",
            param="code",
        )
    return code


def _expires_at(store: Store, expires_at: int | None, coupon: StripeObject) -> int | None:
    if expires_at is None:
        return None
    if expires_at <= store.now():
        raise invalid_request(
            "Invalid timestamp: must be an integer Unix timestamp in the future.",
            param="expires_at",
        )
    if coupon["redeem_by"] is not None and expires_at > coupon["redeem_by"]:
        raise invalid_request(
            "The promotion code's `expires_at` cannot be after its coupon's `redeem_by`.",
            param="expires_at",
        )
    return expires_at


def _max_redemptions(limit: int | None, coupon: StripeObject) -> int | None:
    if limit is None:
        return None
    if limit < 1:
        raise invalid_request(
            "This value must be greater than or equal to 1.", param="max_redemptions"
        )
    if coupon["max_redemptions"] is not None and limit > coupon["max_redemptions"]:
        raise invalid_request(
            "The promotion code's `max_redemptions` cannot be greater than its coupon's "
            "`max_redemptions`.",
            param="max_redemptions",
        )
    return limit


def _restrictions(restrictions: dict[str, Any]) -> StripeObject:
    minimum = restrictions.get("minimum_amount")
    currency = restrictions.get("minimum_amount_currency")
    if minimum is not None and currency is None:
        raise missing_parameter("restrictions[minimum_amount_currency]")
    if currency is not None and minimum is None:
        raise missing_parameter("restrictions[minimum_amount]")
    return {
        "first_time_transaction": restrictions.get("first_time_transaction", False),
        "minimum_amount": minimum,
        "minimum_amount_currency": currency.lower() if currency else None,
    }


def _check_unique(store: Store, promotion_code: StripeObject) -> None:
    """No two active codes a customer could type alike (codes of different customers may)."""
    for other in _active_with_code(store, promotion_code["code"]):
        customers = (other["customer"], promotion_code["customer"])
        if other["id"] != promotion_code["id"] and (None in customers or len(set(customers)) == 1):
            raise invalid_request(
                f"An active promotion code with `code: {promotion_code['code']}` already exists.",
                param="code",
                code="resource_already_exists",
            )


def _active_with_code(store: Store, code: str) -> list[StripeObject]:
    wanted = code.casefold()
    return [
        promotion_code
        for promotion_code_id in store.ids_by_type["promotion_code"]
        if (promotion_code := store.objects[promotion_code_id])["active"]
        and promotion_code["code"].casefold() == wanted
    ]


def find_by_code(store: Store, code: str, customer_id: str | None) -> StripeObject | None:
    """The active promotion code a customer types as `code` (any case): theirs, else the one
    open to everyone."""
    found = _active_with_code(store, code)
    for promotion_code in found:
        if customer_id is not None and promotion_code["customer"] == customer_id:
            return promotion_code
    return next((p for p in found if p["customer"] is None), None)


def coupon_of(store: Store, promotion_code: StripeObject) -> StripeObject:
    return store.objects[promotion_code["promotion"]["coupon"]]


@handles("GET", "/v1/promotion_codes/{promotion_code}")
def retrieve(call: Call) -> StripeObject:
    return call.store.get("promotion_code", call.args["promotion_code"], kind="promotion code")


@handles("POST", "/v1/promotion_codes/{promotion_code}")
def update(call: Call) -> StripeObject:
    store, params = call.store, call.params
    promotion_code = store.get("promotion_code", call.args["promotion_code"], kind="promotion code")
    refuse_unsupported(params, frozenset({"active", "metadata"}), "promotion code updates")
    before = copy.deepcopy(promotion_code)
    if params.get("active") and not promotion_code["active"]:
        _check_reactivation(store, promotion_code)
    if "active" in params:
        promotion_code["active"] = params["active"]
    if "metadata" in params:
        promotion_code["metadata"] = metadata_update(promotion_code["metadata"], params["metadata"])
    changes = changed_fields(before, promotion_code)
    if changes:
        store.emit("promotion_code.updated", promotion_code, changes)
    return promotion_code


def _check_reactivation(store: Store, promotion_code: StripeObject) -> None:
    limit = promotion_code["max_redemptions"]
    expires_at = promotion_code["expires_at"]
    if (
        not coupons.redeemable(store, coupon_of(store, promotion_code))
        or (expires_at is not None and store.now() >= expires_at)
        or (limit is not None and promotion_code["times_redeemed"] >= limit)
    ):
        raise invalid_request(
            "A promotion code can only be reactivated when the coupon is still valid and the "
            "promotion code is otherwise redeemable.",
            param="active",
        )
    _check_unique(store, promotion_code)


@handles("GET", "/v1/promotion_codes")
def list_promotion_codes(call: Call) -> StripeObject:
    params = call.params

    def keep(promotion_code: StripeObject) -> bool:
        checks = [
            "code" not in params or promotion_code["code"].casefold() == params["code"].casefold(),
            "active" not in params or promotion_code["active"] == params["active"],
            "coupon" not in params or promotion_code["promotion"]["coupon"] == params["coupon"],
            "customer" not in params or promotion_code["customer"] == params["customer"],
            in_range(promotion_code["created"], params.get("created")),
        ]
        return all(checks)

    return call.store.list_objects("promotion_code", params, "/v1/promotion_codes", keep)
