"""Customers: create (with `tax_id_data`), retrieve (a deleted one answers as deleted),
update, delete, list; their address and tax exemption, which tax is computed from
(sandbox/resources/tax.py), and the one currency they are billed in.

A customer is billed in one currency at a time: the first subscription sets `currency`, and a
subscription in another is refused while one in the current currency is still live, as Stripe
refuses to combine currencies on a customer; once none is, a new one may change it."""

import copy
from typing import Any

from sandbox.errors import invalid_request
from sandbox.registry import Call, StripeObject, handles
from sandbox.resources import tax, tax_ids
from sandbox.resources.common import apply_update, metadata_update, one_of
from sandbox.store import Store, blank, changed_fields

UPDATABLE = ("email", "name", "phone", "description", "preferred_locales", "address")
ADDRESS_KEYS = ("city", "country", "line1", "line2", "postal_code", "state")
TAX_EXEMPTIONS = ("none", "exempt", "reverse")
# Subscriptions that hold a customer to their currency.
LIVE = ("trialing", "active", "past_due", "unpaid", "paused", "incomplete")


@handles("POST", "/v1/customers")
def create(call: Call) -> StripeObject:
    params = call.params
    if params.get("test_clock"):
        from sandbox.resources.test_clocks import get_clock

        get_clock(call.store, params["test_clock"])
    new_tax_ids = tax_ids.checked_data(params.get("tax_id_data") or [])
    customer = blank(
        "customer",
        id=call.store.new_id("cus", 14),
        address=_address(params.get("address")),
        created=call.store.now(),
        balance=params.get("balance", 0),
        currency=None,
        default_source=None,
        delinquent=False,
        description=params.get("description"),
        discount=None,
        email=params.get("email"),
        invoice_prefix=call.store.new_id("INV", 6).split("_")[1].upper()[:8],
        invoice_settings={
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        metadata=metadata_update({}, params.get("metadata")),
        name=params.get("name"),
        next_invoice_sequence=1,
        phone=params.get("phone"),
        preferred_locales=params.get("preferred_locales", []),
        shipping=None,
        tax_exempt=one_of(params.get("tax_exempt") or "none", TAX_EXEMPTIONS, "tax_exempt"),
        test_clock=params.get("test_clock"),
    )
    _validate_location(call.store, customer, params.get("tax") or {})
    call.store.add(customer)
    call.store.emit("customer.created", customer)
    for type, value, country in new_tax_ids:
        tax_ids.new_tax_id(call.store, customer, type, value, country)
    if "payment_method" in params or "invoice_settings" in params:
        _attach_initial_payment_method(call, customer)
    return customer


def _address(address: dict[str, str] | str | None) -> StripeObject | None:
    """Stripe's address: every part present, "" for one not given; "" clears it."""
    if not address:
        return None
    unknown = set(address) - set(ADDRESS_KEYS)
    if unknown:
        raise invalid_request(f"Received unknown parameter: address[{min(unknown)}]")
    return {key: address.get(key) or None for key in ADDRESS_KEYS}


def _validate_location(store: Store, customer: StripeObject, settings: dict[str, Any]) -> None:
    """`tax[validate_location]`: `immediately` checks now that Stripe Tax can place the
    customer; `auto` does when the customer has a subscription with automatic tax."""
    when = settings.get("validate_location", "deferred")
    if when == "immediately" or (when == "auto" and _taxed_automatically(store, customer)):
        tax.require_location(store, customer)


def _taxed_automatically(store: Store, customer: StripeObject) -> bool:
    return any(
        subscription["automatic_tax"]["enabled"]
        for subscription in live_subscriptions(store, customer["id"])
    )


def live_subscriptions(store: Store, customer_id: str) -> list[StripeObject]:
    return [
        subscription
        for subscription_id in store.ids_by_type["subscription"]
        if (subscription := store.objects[subscription_id])["customer"] == customer_id
        and subscription["status"] in LIVE
    ]


def check_currency(store: Store, customer: StripeObject, currency: str) -> None:
    """Stripe's refusal to bill a customer in two currencies at once."""
    held = {subscription["currency"] for subscription in live_subscriptions(store, customer["id"])}
    other = sorted(held - {currency, None})
    if other:
        raise invalid_request(
            "You cannot combine currencies on a single customer. This customer has an active "
            "subscription, subscription schedule, discount, quote, or invoice item with "
            f"currency {other[0]}."
        )


def bill_in(store: Store, customer: StripeObject, currency: str) -> None:
    """The customer is billed in `currency` from now on (checked first)."""
    check_currency(store, customer, currency)
    if customer["currency"] != currency:
        before = copy.deepcopy(customer)
        customer["currency"] = currency
        store.emit("customer.updated", customer, changed_fields(before, customer))


def _attach_initial_payment_method(call: Call, customer: StripeObject) -> None:
    from sandbox.resources import payment_methods

    method_id = call.params.get("payment_method")
    default = (call.params.get("invoice_settings") or {}).get("default_payment_method")
    if method_id:
        method = payment_methods.attach_to(call.store, method_id, customer["id"], "payment_method")
        if default == method_id:
            default = method["id"]
    if default:
        set_default_payment_method(call.store, customer, default)


def set_default_payment_method(store: Store, customer: StripeObject, method_id: str | None) -> None:
    from sandbox.resources import payment_methods

    before = copy.deepcopy(customer)
    if method_id:
        method = payment_methods.owned(store, method_id, customer["id"])
        method_id = method["id"]
    customer["invoice_settings"]["default_payment_method"] = method_id
    store.emit("customer.updated", customer, changed_fields(before, customer))


@handles("GET", "/v1/customers/{customer}")
def retrieve(call: Call) -> StripeObject:
    customer = call.store.find("customer", call.args["customer"])
    if customer is None:
        return call.store.get("customer", call.args["customer"])
    if customer.get("deleted"):
        return {"id": customer["id"], "object": "customer", "deleted": True}
    return customer


@handles("POST", "/v1/customers/{customer}")
def update(call: Call) -> StripeObject:
    customer = call.store.get("customer", call.args["customer"])
    before = copy.deepcopy(customer)
    params = call.params
    if "address" in params:
        params = params | {"address": _address(params["address"])}
    if "address" in params or "tax" in params:
        # Checked before anything changes: a refused address leaves the customer as it was.
        changed = customer | {key: params[key] for key in ("address",) if key in params}
        _validate_location(call.store, changed, params.get("tax") or {"validate_location": "auto"})
    if "tax_exempt" in params:
        customer["tax_exempt"] = one_of(
            params["tax_exempt"] or "none", TAX_EXEMPTIONS, "tax_exempt"
        )
    apply_update(customer, params, UPDATABLE)
    settings = call.params.get("invoice_settings") or {}
    if "default_payment_method" in settings:
        from sandbox.resources import payment_methods

        method_id = settings["default_payment_method"] or None
        if method_id:
            method_id = payment_methods.owned(call.store, method_id, customer["id"])["id"]
        customer["invoice_settings"]["default_payment_method"] = method_id
    changes = changed_fields(before, customer)
    if changes:
        call.store.emit("customer.updated", customer, changes)
    return customer


@handles("DELETE", "/v1/customers/{customer}")
def delete(call: Call) -> StripeObject:
    customer = call.store.get("customer", call.args["customer"])
    remove(call.store, customer)
    return {"id": customer["id"], "object": "customer", "deleted": True}


def remove(store: Store, customer: StripeObject) -> None:
    """Delete a customer; as on Stripe, its subscriptions are canceled at once."""
    from sandbox.resources import subscriptions

    subscriptions.end_all_of(store, customer["id"])
    # The event carries the customer as it was; the deleted flag is the store's own mark.
    store.emit("customer.deleted", customer)
    customer["deleted"] = True


@handles("GET", "/v1/customers")
def list_customers(call: Call) -> StripeObject:
    email = call.params.get("email")
    if email is not None and len(email) > 512:
        raise invalid_request("email is too long", param="email")
    return call.store.list_objects(
        "customer",
        call.params,
        "/v1/customers",
        lambda customer: email is None or customer["email"] == email,
    )
