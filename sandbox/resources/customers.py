"""Customers: create, retrieve (a deleted one answers as deleted), update, delete, list."""

import copy

from sandbox.errors import invalid_request
from sandbox.registry import Call, StripeObject, handles
from sandbox.resources.common import apply_update, metadata_update
from sandbox.store import Store, blank, changed_fields

UPDATABLE = ("email", "name", "phone", "description", "preferred_locales")


@handles("POST", "/v1/customers")
def create(call: Call) -> StripeObject:
    params = call.params
    if params.get("test_clock"):
        from sandbox.resources.test_clocks import get_clock

        get_clock(call.store, params["test_clock"])
    customer = blank(
        "customer",
        id=call.store.new_id("cus", 14),
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
        tax_exempt="none",
        test_clock=params.get("test_clock"),
    )
    call.store.add(customer)
    call.store.emit("customer.created", customer)
    if "payment_method" in params or "invoice_settings" in params:
        _attach_initial_payment_method(call, customer)
    return customer


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
    apply_update(customer, call.params, UPDATABLE)
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
