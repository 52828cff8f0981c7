"""Prices: create (with `product` or `product_data`), retrieve, update, list; recurring prices
also announce themselves as plans, as Stripe does for compatibility with the Plans API.

A price may sell in other currencies too (`currency_options`, each with its `unit_amount` and
`tax_behavior`), which Stripe shows only when expanded (`expand[]=currency_options`, or
`data.currency_options` on a list); a subscription or Checkout Session bills the option of
its currency (`currency_for`, `amount_in`)."""

import copy
from decimal import Decimal, InvalidOperation
from typing import Any

from stripe.params._price_create_params import PriceCreateParamsCurrencyOptions

from sandbox.errors import invalid_request
from sandbox.params import coerce
from sandbox.registry import Call, StripeObject, handles, includable
from sandbox.resources.common import apply_update, metadata_update, one_of
from sandbox.store import Store, blank, changed_fields

INTERVALS = ("day", "week", "month", "year")
# The longest billing interval Stripe allows, in each unit.
MAX_INTERVAL_COUNT = {"day": 365, "week": 52, "month": 12, "year": 1}
UPDATABLE = ("active", "nickname")
# A price's other currencies live beside it: Stripe shows them only when expanded.
CURRENCY_OPTIONS = "sandbox.price_currency_options"


@handles("POST", "/v1/prices")
def create(call: Call) -> StripeObject:
    params = call.params
    if "product" in params and "product_data" in params:
        raise invalid_request(
            "You may only specify one of these parameters: product, product_data.", param="product"
        )
    if "product_data" in params:
        from sandbox.resources import products

        product = products.create_product(call.store, params["product_data"])
    elif "product" in params:
        product = call.store.get("product", params["product"], param="product")
    else:
        raise invalid_request(
            "You must specify either `product` or `product_data` when creating a price.",
            param="product",
        )
    return create_price(call.store, params, product["id"])


def create_price(store: Store, params: dict[str, Any], product_id: str) -> StripeObject:
    """A new price of `product_id` from create-price params (also used by products and checkout)."""
    unit_amount, decimal = _unit_amount(params)
    if params.get("lookup_key"):
        _claim_lookup_key(store, params["lookup_key"], params.get("transfer_lookup_key", False))
    price = blank(
        "price",
        id=store.new_id("price"),
        active=params.get("active", True),
        billing_scheme=_billing_scheme(params),
        created=store.now(),
        currency=_currency(params.get("currency")),
        custom_unit_amount=_custom_unit_amount(params.get("custom_unit_amount")),
        lookup_key=params.get("lookup_key"),
        metadata=metadata_update({}, params.get("metadata")),
        nickname=params.get("nickname"),
        product=product_id,
        recurring=_recurring(params.get("recurring")),
        tax_behavior=params.get("tax_behavior", "unspecified"),
        tiers_mode=None,
        transform_quantity=None,
        unit_amount=unit_amount,
        unit_amount_decimal=decimal,
    )
    price["type"] = "recurring" if price["recurring"] else "one_time"
    store.add(price)
    if params.get("currency_options"):
        _set_currency_options(store, price, params["currency_options"])
    store.emit("price.created", price)
    if price["recurring"]:
        store.emit("plan.created", as_plan(price))
    return price


def _currency(currency: str | None) -> str:
    if not currency or len(currency) != 3 or not currency.isalpha():
        raise invalid_request(f"Invalid currency: {currency}", param="currency")
    return currency.lower()


def _billing_scheme(params: dict[str, Any]) -> str:
    scheme = one_of(
        params.get("billing_scheme", "per_unit"), ("per_unit", "tiered"), "billing_scheme"
    )
    if scheme == "tiered" or "tiers" in params or "transform_quantity" in params:
        # Amounts of tiered or transformed prices are not computed here; refuse, don't guess.
        raise invalid_request(
            "The sandbox supports per_unit prices without tiers or transform_quantity only.",
            param="billing_scheme",
        )
    return scheme


def _unit_amount(params: dict[str, Any]) -> tuple[int | None, str | None]:
    if "unit_amount" in params and "unit_amount_decimal" in params:
        raise invalid_request(
            "You may only specify one of these parameters: unit_amount, unit_amount_decimal.",
            param="unit_amount",
        )
    if "unit_amount" in params:
        amount = params["unit_amount"]
        if amount < 0:
            raise invalid_request(
                "This value must be greater than or equal to 0.", param="unit_amount"
            )
        return amount, str(amount)
    if "unit_amount_decimal" in params:
        return _decimal_amount(params["unit_amount_decimal"])
    if params.get("custom_unit_amount", {}).get("enabled"):
        return None, None
    raise invalid_request(
        "You must specify either `unit_amount`, `unit_amount_decimal`, or `custom_unit_amount`.",
        param="unit_amount",
    )


def _decimal_amount(raw: Any) -> tuple[int | None, str]:
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise invalid_request(f"Invalid decimal: {raw}", param="unit_amount_decimal") from None
    if value < 0:
        raise invalid_request(
            "This value must be greater than or equal to 0.", param="unit_amount_decimal"
        )
    # Stripe leaves unit_amount null when the decimal amount is not a whole number of cents.
    whole = int(value) if value == value.to_integral_value() else None
    return whole, format(value.normalize(), "f")


def _custom_unit_amount(custom: dict[str, Any] | None) -> StripeObject | None:
    if not custom or not custom.get("enabled"):
        return None
    return {key: custom.get(key) for key in ("maximum", "minimum", "preset")}


def _recurring(recurring: dict[str, Any] | None) -> StripeObject | None:
    if recurring is None:
        return None
    interval = one_of(recurring["interval"], INTERVALS, "recurring[interval]")
    count = recurring.get("interval_count", 1)
    if not 1 <= count <= MAX_INTERVAL_COUNT[interval]:
        raise invalid_request(
            "The maximum billing interval is one year (1 year, 12 months, 52 weeks or 365 days).",
            param="recurring[interval_count]",
        )
    usage = one_of(
        recurring.get("usage_type", "licensed"), ("licensed", "metered"), "recurring[usage_type]"
    )
    if usage == "metered":
        # Metered usage needs meters and usage records, which the sandbox does not keep.
        raise invalid_request(
            "The sandbox supports licensed recurring prices only.", param="recurring[usage_type]"
        )
    return {
        "interval": interval,
        "interval_count": count,
        "meter": None,
        "trial_period_days": recurring.get("trial_period_days"),
        "usage_type": usage,
    }


def _claim_lookup_key(store: Store, key: str, transfer: bool, keep: str | None = None) -> None:
    """A lookup key names one price; `transfer_lookup_key` moves it from the price that has it."""
    for price_id in store.ids_by_type["price"]:
        price = store.objects[price_id]
        if price["lookup_key"] != key or price_id == keep:
            continue
        if not transfer:
            raise invalid_request(
                f"A price (`{price_id}`) already uses that lookup key.", param="lookup_key"
            )
        before = copy.deepcopy(price)
        price["lookup_key"] = None
        store.emit("price.updated", price, changed_fields(before, price))


def as_plan(price: StripeObject) -> StripeObject:
    """The Plans API's view of a recurring price (same id), as embedded in subscription items."""
    recurring = price["recurring"] or {}
    return blank(
        "plan",
        id=price["id"],
        active=price["active"],
        amount=price["unit_amount"],
        amount_decimal=price["unit_amount_decimal"],
        billing_scheme=price["billing_scheme"],
        created=price["created"],
        currency=price["currency"],
        interval=recurring.get("interval"),
        interval_count=recurring.get("interval_count"),
        metadata=copy.deepcopy(price["metadata"]),
        meter=None,
        nickname=price["nickname"],
        product=price["product"],
        tiers_mode=None,
        transform_usage=None,
        trial_period_days=recurring.get("trial_period_days"),
        usage_type=recurring.get("usage_type", "licensed"),
    )


@handles("GET", "/v1/prices/{price}")
def retrieve(call: Call) -> StripeObject:
    return call.store.get("price", call.args["price"])


@handles("POST", "/v1/prices/{price}")
def update(call: Call) -> StripeObject:
    price = call.store.get("price", call.args["price"])
    params = call.params
    before = copy.deepcopy(price)
    if "lookup_key" in params:
        key = params["lookup_key"] or None
        if key:
            _claim_lookup_key(
                call.store, key, params.get("transfer_lookup_key", False), keep=price["id"]
            )
        price["lookup_key"] = key
    if "tax_behavior" in params:
        _set_tax_behavior(price, params["tax_behavior"])
    options_before = currency_options(call.store, price)
    if "currency_options" in params:
        _set_currency_options(call.store, price, params["currency_options"])
    apply_update(price, params, UPDATABLE)
    changes = changed_fields(before, price)
    if currency_options(call.store, price) != options_before:
        changes["currency_options"] = options_before
    if changes:
        call.store.emit("price.updated", price, changes)
        if price["recurring"]:
            call.store.emit("plan.updated", as_plan(price), changes)
    return price


def _options_record(store: Store, price: StripeObject) -> StripeObject:
    record_id = f"{price['id']}:currency_options"
    if record_id not in store.objects:
        store.add({"id": record_id, "object": CURRENCY_OPTIONS, "options": {}})
    return store.objects[record_id]


def _set_currency_options(store: Store, price: StripeObject, options: dict[str, Any] | str) -> None:
    """Add or change the price's other currencies ("" removes them all)."""
    record = _options_record(store, price)
    if options == "":
        record["options"] = {}
        return
    for raw, option in options.items():
        currency = _currency(raw)
        if currency == price["currency"]:
            raise invalid_request(
                "currency_options cannot include the price's own currency.",
                param=f"currency_options[{raw}]",
            )
        path = f"currency_options[{raw}]"
        # Keyed by currency, the options reach the handler untyped: type each one here.
        option = coerce(option, PriceCreateParamsCurrencyOptions, path)
        if "tiers" in option or "custom_unit_amount" in option:
            raise invalid_request(
                "The sandbox supports `unit_amount` and `tax_behavior` in currency_options only.",
                param=path,
            )
        amount, decimal = _unit_amount(option)
        record["options"][currency] = {
            "custom_unit_amount": None,
            "tax_behavior": option.get("tax_behavior", price["tax_behavior"]),
            "unit_amount": amount,
            "unit_amount_decimal": decimal,
        }


@includable("price", "currency_options")
def currency_options(store: Store, price: StripeObject) -> StripeObject:
    """Every currency the price sells in, its own included."""
    own = {
        "custom_unit_amount": None,
        "tax_behavior": price["tax_behavior"],
        "unit_amount": price["unit_amount"],
        "unit_amount_decimal": price["unit_amount_decimal"],
    }
    return {price["currency"]: own} | _options_record(store, price)["options"]


def amount_in(store: Store, price: StripeObject, currency: str) -> int:
    """The price's unit amount in `currency`; a 400 when it does not sell in it."""
    return _option(store, price, currency)["unit_amount"] or 0


def tax_behavior_in(store: Store, price: StripeObject, currency: str) -> str:
    return _option(store, price, currency)["tax_behavior"]


def _option(store: Store, price: StripeObject, currency: str) -> StripeObject:
    options = currency_options(store, price)
    if currency not in options:
        raise invalid_request(
            f"The price specified supports currencies of `{', '.join(sorted(options))}` which "
            f"doesn't include the expected currency of `{currency}`.",
            param="currency",
        )
    return options[currency]


def currency_for(
    store: Store, customer: StripeObject | None, chosen: list[StripeObject], wanted: str | None
) -> str:
    """The currency to bill these prices in: the one asked for, else the customer's when every
    price sells in it, else the first price's own; each price must sell in it."""
    if wanted:
        currency = wanted.lower()
    elif (
        customer
        and customer["currency"]
        and all(customer["currency"] in currency_options(store, price) for price in chosen)
    ):
        currency = customer["currency"]
    else:
        currency = chosen[0]["currency"]
    for price in chosen:
        _option(store, price, currency)
    return currency


def _set_tax_behavior(price: StripeObject, value: str) -> None:
    value = one_of(value, ("exclusive", "inclusive", "unspecified"), "tax_behavior")
    if price["tax_behavior"] != "unspecified" and value != price["tax_behavior"]:
        raise invalid_request(
            "tax_behavior cannot be changed once it is set to inclusive or exclusive.",
            param="tax_behavior",
        )
    price["tax_behavior"] = value


@handles("GET", "/v1/prices")
def list_prices(call: Call) -> StripeObject:
    params = call.params
    recurring = params.get("recurring") or {}

    def keep(price: StripeObject) -> bool:
        checks = [
            "active" not in params or price["active"] == params["active"],
            "product" not in params or price["product"] == params["product"],
            "type" not in params or price["type"] == params["type"],
            "currency" not in params or price["currency"] == params["currency"].lower(),
            "lookup_keys" not in params or price["lookup_key"] in params["lookup_keys"],
            _recurring_matches(price, recurring),
        ]
        return all(checks)

    return call.store.list_objects("price", params, "/v1/prices", keep)


def _recurring_matches(price: StripeObject, wanted: dict[str, Any]) -> bool:
    if not wanted:
        return True
    recurring = price["recurring"]
    if recurring is None:
        return False
    return all(recurring.get(key) == value for key, value in wanted.items())
