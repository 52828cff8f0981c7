"""Subscriptions: create (first invoice finalized and paid through a PaymentIntent), retrieve,
update (items with prorations, cancel_at_period_end, payment method, metadata), cancel,
pause, resume, list.

Periods live on each subscription item (API 2025-03-31 and later) and are computed from
`store.now()` and the billing cycle anchor, so renewals and test clocks can be added later.
Operations that may fail on payment hold their events and undo their objects on failure,
so `error_if_incomplete` leaves nothing behind, as on Stripe."""

import calendar
import copy
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sandbox.errors import StripeError, invalid_request, missing_parameter
from sandbox.registry import Call, StripeObject, handles, reacts_to
from sandbox.resources import invoices
from sandbox.resources.common import in_range, metadata_update, one_of
from sandbox.store import Store, blank, changed_fields

PAYMENT_BEHAVIORS = (
    "allow_incomplete",
    "default_incomplete",
    "error_if_incomplete",
    "pending_if_incomplete",
)
PRORATION_BEHAVIORS = ("always_invoice", "create_prorations", "none")
COLLECTION_METHODS = ("charge_automatically", "send_invoice")
LIST_STATUSES = (
    "active",
    "all",
    "canceled",
    "ended",
    "incomplete",
    "incomplete_expired",
    "past_due",
    "paused",
    "trialing",
    "unpaid",
)
ENDED = ("canceled", "incomplete_expired")
SECONDS = {"day": 86400, "week": 7 * 86400}
# What these operations may create; on a failed all-or-nothing operation they are removed.
UNDONE_TYPES = ("subscription", "invoice", "invoiceitem", "invoice_payment")
# Parameters the sandbox does not model yet; refused rather than silently ignored.
NOT_MODELLED = (
    "add_invoice_items",
    "billing_cycle_anchor",
    "billing_cycle_anchor_config",
    "billing_schedules",
    "billing_thresholds",
    "cancel_at",
    "discounts",
    "trial_end",
    "trial_from_plan",
    "trial_period_days",
    "backdate_start_date",
    "pause_collection",
    "pending_invoice_item_interval",
    "transfer_data",
    "application_fee_percent",
    "on_behalf_of",
    "automatic_tax",
    "default_tax_rates",
    "schedule",
)


# Periods ------------------------------------------------------------------------------------


def add_interval(start: int, interval: str, count: int) -> int:
    """`start` moved on by count×interval: days and weeks in seconds, months and years by the
    calendar (Jan 31 + 1 month = Feb 28/29), in UTC as Stripe bills."""
    if interval in SECONDS:
        return start + count * SECONDS[interval]
    months = count * (12 if interval == "year" else 1)
    moment = datetime.fromtimestamp(start, UTC)
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


def period_from(anchor: int, price: StripeObject) -> tuple[int, int]:
    """The first billing period of a price starting at `anchor`."""
    recurring = price["recurring"]
    return anchor, add_interval(anchor, recurring["interval"], recurring["interval_count"])


def _cadence(price: StripeObject) -> tuple[str, int]:
    return price["recurring"]["interval"], price["recurring"]["interval_count"]


# Building blocks ------------------------------------------------------------------------------


def resolve_price(store: Store, entry: dict[str, Any], path: str) -> StripeObject:
    """The recurring, active price an item entry names (`price`, `plan` or `price_data`)."""
    if "price_data" in entry:
        from sandbox.resources import prices

        data = entry["price_data"]
        store.get("product", data["product"], param=f"{path}[price_data][product]")
        # Inline prices are single-use: Stripe creates them archived.
        return prices.create_price(store, {**data, "active": False}, data["product"])
    price_id = entry.get("price") or entry.get("plan")
    if not price_id:
        raise missing_parameter(f"{path}[price]")
    price = store.get("price", price_id, param=f"{path}[price]")
    if price["type"] != "recurring":
        raise invalid_request(
            "The price specified is set to `type=one_time` but this field only accepts prices "
            "with `type=recurring`.",
            param=f"{path}[price]",
        )
    if not price["active"]:
        raise invalid_request(
            "The price specified is inactive. This field only accepts active prices.",
            param=f"{path}[price]",
        )
    return price


def _quantity(entry: dict[str, Any], path: str, default: int = 1) -> int:
    quantity = entry.get("quantity", default)
    if quantity < 0:
        raise invalid_request(
            "This value must be greater than or equal to 0.", param=f"{path}[quantity]"
        )
    return quantity


def _new_item(
    store: Store,
    subscription: StripeObject,
    price: StripeObject,
    quantity: int,
    period: tuple[int, int],
    metadata: Any = None,
) -> StripeObject:
    item = blank(
        "subscription_item",
        id=store.new_id("si", 14),
        billing_thresholds=None,
        created=store.now(),
        current_period_end=period[1],
        current_period_start=period[0],
        discounts=[],
        metadata=metadata_update({}, metadata),
        quantity=quantity,
        subscription=subscription["id"],
        tax_rates=[],
    )
    # Stripe's subscription items carry no livemode flag (blank() adds one to every object).
    del item["livemode"]
    _set_price(item, price)
    subscription["items"]["data"].append(item)
    return item


def _set_price(item: StripeObject, price: StripeObject) -> None:
    from sandbox.resources import prices

    item["price"] = copy.deepcopy(price)
    item["plan"] = prices.as_plan(price)


def _items(subscription: StripeObject) -> list[StripeObject]:
    return subscription["items"]["data"]


def _customer(store: Store, subscription: StripeObject) -> StripeObject:
    return store.objects[subscription["customer"]]


def line_description(store: Store, price: StripeObject, quantity: int) -> str:
    """`1 × Pro (at $29.00 / month)`, as Stripe describes a subscription line."""
    product = store.objects[price["product"]]
    interval, count = _cadence(price)
    every = interval if count == 1 else f"every {count} {interval}s"
    amount = invoices.money(price["unit_amount"] or 0, price["currency"])
    return f"{quantity} × {product['name']} (at {amount} / {every})"


def _bill_items(store: Store, invoice: StripeObject, items: list[StripeObject]) -> None:
    for item in items:
        price = item["price"]
        invoices.add_line(
            store,
            invoice,
            amount=(price["unit_amount"] or 0) * item["quantity"],
            price=price,
            quantity=item["quantity"],
            description=line_description(store, price, item["quantity"]),
            period=(item["current_period_start"], item["current_period_end"]),
            subscription_item=item,
        )


# Payment outcomes ----------------------------------------------------------------------------


def invoice_paid(store: Store, invoice: StripeObject, intent: StripeObject | None = None) -> None:
    """Called when an invoice of this subscription is paid: incomplete or past_due -> active."""
    subscription = store.find("subscription", invoices.subscription_of(invoice) or "")
    if subscription is None or subscription["status"] in ENDED:
        return
    before = copy.deepcopy(subscription)
    settings = subscription["payment_settings"]
    if (
        intent
        and intent.get("payment_method")
        and (settings["save_default_payment_method"] == "on_subscription")
    ):
        subscription["default_payment_method"] = intent["payment_method"]
    resumed = subscription["status"] == "paused" and subscription["latest_invoice"] == invoice["id"]
    if subscription["status"] in ("incomplete", "past_due", "unpaid") or resumed:
        subscription["status"] = "active"
    if resumed:
        store.emit("customer.subscription.resumed", subscription)
    _announce(store, subscription, before)


def invoice_payment_failed(store: Store, invoice: StripeObject) -> None:
    """A failed (or unauthenticated) payment leaves a first invoice incomplete; later ones
    make an active subscription past_due."""
    subscription = store.find("subscription", invoices.subscription_of(invoice) or "")
    if subscription is None or subscription["status"] != "active":
        return
    before = copy.deepcopy(subscription)
    subscription["status"] = "past_due"
    _announce(store, subscription, before)


def _announce(store: Store, subscription: StripeObject, before: StripeObject) -> None:
    changes = changed_fields(before, subscription)
    if changes:
        store.emit("customer.subscription.updated", subscription, changes)


def _collect(store: Store, invoice: StripeObject, behavior: str, off_session: bool) -> None:
    """Attempt payment as `payment_behavior` says; 402 only for error_if_incomplete."""
    if invoice["status"] != "open" or invoice["collection_method"] != "charge_automatically":
        return
    if behavior == "default_incomplete":
        return
    try:
        intent = invoices.collect(store, invoice, off_session=off_session)
    except StripeError as error:
        if behavior == "error_if_incomplete" or error.status != 402:
            raise
        return
    if intent["status"] == "requires_action" and behavior == "error_if_incomplete":
        raise invoices.requires_action_error(intent)


@contextmanager
def _all_or_nothing(store: Store, *keep: StripeObject) -> Iterator[list[Any]]:
    """Hold events; on a Stripe error undo new objects and the changes to `keep`, drop the
    events, cancel the new PaymentIntents, and re-raise. The caller releases the events."""
    marks = {kind: len(store.ids_by_type[kind]) for kind in UNDONE_TYPES}
    snapshots = [(obj, copy.deepcopy(obj)) for obj in keep]
    with store.holding_events() as held:
        try:
            yield held
        except StripeError:
            _undo(store, marks, snapshots)
            raise


def _undo(
    store: Store, marks: dict[str, int], snapshots: list[tuple[StripeObject, StripeObject]]
) -> None:
    from sandbox.resources import payment_intents

    for kind, mark in marks.items():
        ids = store.ids_by_type[kind]
        for object_id in ids[mark:]:
            obj = store.objects.pop(object_id)
            intent_id = (
                obj.get("payment", {}).get("payment_intent") if kind == "invoice_payment" else None
            )
            intent = store.objects.get(intent_id or "")
            if intent is not None and intent["status"] not in ("succeeded", "canceled"):
                payment_intents.cancel_intent(store, intent)
        del ids[mark:]
    for obj, snapshot in snapshots:
        obj.clear()
        obj.update(snapshot)


def _payment_method_needed(
    store: Store, customer: StripeObject, amount: int, default_method: str | None
) -> None:
    """Stripe refuses up front to charge a customer with nothing to charge."""
    if amount + (customer["balance"] or 0) <= 0:
        return
    if default_method or customer["invoice_settings"]["default_payment_method"]:
        return
    raise invalid_request(invoices.NO_PAYMENT_METHOD, code="resource_missing")


def _refuse_not_modelled(params: dict[str, Any]) -> None:
    for name in NOT_MODELLED:
        if name in params:
            raise invalid_request(
                f"The sandbox does not support `{name}` on subscriptions yet.", param=name
            )


# Create ---------------------------------------------------------------------------------------


@handles("POST", "/v1/subscriptions")
def create(call: Call) -> StripeObject:
    store, params = call.store, call.params
    if "customer" not in params:
        raise missing_parameter("customer")
    customer = store.get("customer", params["customer"], param="customer")
    behavior = one_of(
        params.get("payment_behavior", "allow_incomplete"), PAYMENT_BEHAVIORS, "payment_behavior"
    )
    if behavior == "pending_if_incomplete":
        raise invalid_request(
            "payment_behavior=pending_if_incomplete applies to subscription updates only.",
            param="payment_behavior",
        )
    _refuse_not_modelled(params)
    lines = _initial_items(store, params)
    default_method = _owned_method(store, params.get("default_payment_method"), customer)
    collection = one_of(
        params.get("collection_method", "charge_automatically"),
        COLLECTION_METHODS,
        "collection_method",
    )
    if collection == "send_invoice" and "days_until_due" not in params:
        raise missing_parameter("days_until_due")
    if collection == "charge_automatically" and behavior != "default_incomplete":
        total = sum((price["unit_amount"] or 0) * quantity for price, quantity, _ in lines)
        _payment_method_needed(store, customer, total, default_method)
    return start_subscription(
        store,
        customer,
        lines,
        params,
        behavior=behavior,
        collection=collection,
        default_method=default_method,
    )


def start_subscription(
    store: Store,
    customer: StripeObject,
    lines: list[tuple[StripeObject, int, Any]],
    params: dict[str, Any],
    *,
    behavior: str = "allow_incomplete",
    collection: str = "charge_automatically",
    default_method: str | None = None,
) -> StripeObject:
    """Create the subscription, bill its first period and emit its events (also for Checkout)."""
    with _all_or_nothing(store, customer) as held:
        subscription = _new_subscription(store, customer, params, collection, default_method)
        for price, quantity, metadata in lines:
            _new_item(
                store,
                subscription,
                price,
                quantity,
                period_from(subscription["billing_cycle_anchor"], price),
                metadata,
            )
        _bill_first_period(store, subscription, behavior, params.get("off_session", False))
    store.emit("customer.subscription.created", subscription)
    store.release(_without_updates_of(held, subscription["id"]))
    return subscription


def _without_updates_of(held: list[Any], subscription_id: str) -> list[Any]:
    """Status changes while a subscription is created belong to its created event."""
    return [
        (event_type, obj, previous)
        for event_type, obj, previous in held
        if not (event_type == "customer.subscription.updated" and obj["id"] == subscription_id)
    ]


def _initial_items(store: Store, params: dict[str, Any]) -> list[tuple[StripeObject, int, Any]]:
    entries = params.get("items") or []
    if not entries:
        raise missing_parameter("items")
    lines = []
    for index, entry in enumerate(entries):
        path = f"items[{index}]"
        lines.append(
            (resolve_price(store, entry, path), _quantity(entry, path), entry.get("metadata"))
        )
    if len({price["currency"] for price, _, _ in lines}) > 1:
        raise invalid_request(
            "All prices on a subscription must have the same `currency`.", param="items"
        )
    seen = [price["id"] for price, _, _ in lines]
    if len(set(seen)) != len(seen):
        raise invalid_request(
            "Cannot add multiple subscription items with the same price.", param="items"
        )
    return lines


def _owned_method(store: Store, method_id: str | None, customer: StripeObject) -> str | None:
    if not method_id:
        return None
    from sandbox.resources import payment_methods

    return payment_methods.owned(store, method_id, customer["id"])["id"]


def _new_subscription(
    store: Store,
    customer: StripeObject,
    params: dict[str, Any],
    collection: str,
    default_method: str | None,
) -> StripeObject:
    now = store.now()
    settings = params.get("payment_settings") or {}
    subscription = blank(
        "subscription",
        id=store.new_id("sub"),
        application=None,
        application_fee_percent=None,
        automatic_tax={"disabled_reason": None, "enabled": False, "liability": None},
        billing_cycle_anchor=now,
        billing_cycle_anchor_config=None,
        billing_mode={
            "type": "flexible",
            "flexible": {"proration_discounts": "included"},
            "updated_at": now,
        },
        billing_schedules=[],
        billing_thresholds=None,
        cancel_at=None,
        cancel_at_period_end=False,
        canceled_at=None,
        cancellation_details={"comment": None, "feedback": None, "reason": None},
        collection_method=collection,
        created=now,
        currency=None,
        customer=customer["id"],
        customer_account=None,
        days_until_due=params.get("days_until_due") if collection == "send_invoice" else None,
        default_payment_method=default_method,
        default_source=None,
        default_tax_rates=[],
        description=params.get("description"),
        discounts=[],
        ended_at=None,
        invoice_settings={"account_tax_ids": None, "issuer": {"type": "self"}},
        items={"object": "list", "data": [], "has_more": False, "url": ""},
        latest_invoice=None,
        managed_payments={"enabled": False},
        metadata=metadata_update({}, params.get("metadata")),
        next_pending_invoice_item_invoice=None,
        on_behalf_of=None,
        pause_collection=None,
        payment_settings={
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": one_of(
                settings.get("save_default_payment_method", "off"),
                ("off", "on_subscription"),
                "payment_settings[save_default_payment_method]",
            ),
        },
        pending_invoice_item_interval=None,
        pending_setup_intent=None,
        pending_update=None,
        schedule=None,
        start_date=now,
        status="incomplete",
        test_clock=customer.get("test_clock"),
        transfer_data=None,
        trial_end=None,
        trial_settings={"end_behavior": {"missing_payment_method": "create_invoice"}},
        trial_start=None,
    )
    subscription["items"]["url"] = f"/v1/subscription_items?subscription={subscription['id']}"
    store.add(subscription)
    if params.get("cancel_at_period_end"):
        _set_cancel_at_period_end(subscription, True)
    return subscription


def _bill_first_period(
    store: Store, subscription: StripeObject, behavior: str, off_session: bool
) -> None:
    items = _items(subscription)
    subscription["currency"] = items[0]["price"]["currency"]
    if subscription["cancel_at_period_end"]:
        _set_cancel_at_period_end(subscription, True)
    invoice = _invoice_now(store, subscription, "subscription_create", items)
    if invoice["status"] == "open" and subscription["collection_method"] == "send_invoice":
        # Invoices sent for payment do not hold a subscription back.
        subscription["status"] = "active"
    _collect(store, invoice, behavior, off_session)


def _invoice_now(
    store: Store, subscription: StripeObject, reason: str, items: list[StripeObject]
) -> StripeObject:
    """Invoice these items' current periods and pending prorations now, and finalize."""
    invoice = invoices.new_invoice(
        store,
        _customer(store, subscription),
        currency=subscription["currency"],
        billing_reason=reason,
        subscription=subscription,
    )
    invoices.add_pending_items(store, invoice)
    _bill_items(store, invoice, items)
    subscription["latest_invoice"] = invoice["id"]
    invoices.finalize(store, invoice)
    return invoice


# Retrieve and list ----------------------------------------------------------------------------


@handles("GET", "/v1/subscriptions/{subscription_exposed_id}")
def retrieve(call: Call) -> StripeObject:
    return call.store.get("subscription", call.args["subscription_exposed_id"])


@handles("GET", "/v1/subscriptions")
def list_subscriptions(call: Call) -> StripeObject:
    params = call.params
    status = one_of(params.get("status", "default"), (*LIST_STATUSES, "default"), "status")
    price = params.get("price") or params.get("plan")

    def keep(subscription: StripeObject) -> bool:
        items = _items(subscription)
        checks = [
            _status_matches(subscription["status"], status),
            "customer" not in params or subscription["customer"] == params["customer"],
            price is None or any(item["price"]["id"] == price for item in items),
            "collection_method" not in params
            or subscription["collection_method"] == params["collection_method"],
            in_range(subscription["created"], params.get("created")),
            _any_item_in_range(items, "current_period_start", params),
            _any_item_in_range(items, "current_period_end", params),
        ]
        return all(checks)

    return call.store.list_objects("subscription", params, "/v1/subscriptions", keep)


def _status_matches(status: str, wanted: str) -> bool:
    """No status lists all but canceled ones; `ended` means canceled or incomplete_expired."""
    if wanted == "default":
        return status != "canceled"
    if wanted == "all":
        return True
    if wanted == "ended":
        return status in ENDED
    return status == wanted


def _any_item_in_range(items: list[StripeObject], field: str, params: dict[str, Any]) -> bool:
    if field not in params:
        return True
    return any(in_range(item[field], params[field]) for item in items)


# Update ---------------------------------------------------------------------------------------


@handles("POST", "/v1/subscriptions/{subscription_exposed_id}")
def update(call: Call) -> StripeObject:
    store, params = call.store, call.params
    subscription = store.get("subscription", call.args["subscription_exposed_id"])
    if subscription["status"] in ENDED:
        _update_ended(store, subscription, params)
        return subscription
    behavior = one_of(
        params.get("payment_behavior", "allow_incomplete"), PAYMENT_BEHAVIORS, "payment_behavior"
    )
    if behavior == "pending_if_incomplete":
        raise invalid_request(
            "The sandbox does not support pending updates (payment_behavior="
            "pending_if_incomplete) yet.",
            param="payment_behavior",
        )
    _refuse_not_modelled(params)
    proration = one_of(
        params.get("proration_behavior", "create_prorations"),
        PRORATION_BEHAVIORS,
        "proration_behavior",
    )
    customer = _customer(store, subscription)
    with _all_or_nothing(store, subscription, customer) as held:
        _apply_update(store, subscription, params, behavior, proration)
    store.release(held)
    return subscription


def _update_ended(store: Store, subscription: StripeObject, params: dict[str, Any]) -> None:
    allowed = {"metadata", "cancellation_details", "expand"}
    if set(params) - allowed:
        raise invalid_request(
            "A canceled subscription can only update its cancellation_details and metadata.",
            param=min(set(params) - allowed),
        )
    before = copy.deepcopy(subscription)
    _apply_fields(store, subscription, params)
    _announce(store, subscription, before)


def _apply_update(
    store: Store,
    subscription: StripeObject,
    params: dict[str, Any],
    behavior: str,
    proration: str,
) -> None:
    before = copy.deepcopy(subscription)
    when = _proration_date(store, subscription, params.get("proration_date"))
    _apply_fields(store, subscription, params)
    reset = _change_items(store, subscription, params.get("items") or [], proration, when)
    _announce(store, subscription, before)
    pending = invoices.pending_items(store, subscription["id"])
    if reset or (proration == "always_invoice" and pending):
        invoice = _invoice_now(store, subscription, "subscription_update", reset)
        _after_update_invoice(store, subscription, invoice, behavior, params)


def _after_update_invoice(
    store: Store,
    subscription: StripeObject,
    invoice: StripeObject,
    behavior: str,
    params: dict[str, Any],
) -> None:
    if invoice["status"] == "open" and behavior == "default_incomplete":
        # The customer confirms the invoice's PaymentIntent; until then it is past due.
        before = copy.deepcopy(subscription)
        subscription["status"] = "past_due"
        _announce(store, subscription, before)
    _collect(store, invoice, behavior, params.get("off_session", False))


def _proration_date(store: Store, subscription: StripeObject, when: int | None) -> int:
    now = store.now()
    if when is None:
        return now
    starts = [item["current_period_start"] for item in _items(subscription)]
    ends = [item["current_period_end"] for item in _items(subscription)]
    if not min(starts) <= when <= max(ends):
        raise invalid_request(
            "proration_date must be within the current billing period of the subscription.",
            param="proration_date",
        )
    return when


def _apply_fields(store: Store, subscription: StripeObject, params: dict[str, Any]) -> None:
    if "metadata" in params:
        subscription["metadata"] = metadata_update(subscription["metadata"], params["metadata"])
    if "description" in params:
        subscription["description"] = params["description"] or None
    if "default_payment_method" in params:
        subscription["default_payment_method"] = _owned_method(
            store, params["default_payment_method"], _customer(store, subscription)
        )
    if "collection_method" in params:
        subscription["collection_method"] = one_of(
            params["collection_method"], COLLECTION_METHODS, "collection_method"
        )
    if "days_until_due" in params:
        subscription["days_until_due"] = params["days_until_due"]
    settings = params.get("payment_settings") or {}
    if "save_default_payment_method" in settings:
        subscription["payment_settings"]["save_default_payment_method"] = one_of(
            settings["save_default_payment_method"],
            ("off", "on_subscription"),
            "payment_settings[save_default_payment_method]",
        )
    if "cancellation_details" in params:
        details = params["cancellation_details"]
        for key in ("comment", "feedback"):
            if key in details:
                subscription["cancellation_details"][key] = details[key] or None
    if "cancel_at_period_end" in params:
        _set_cancel_at_period_end(subscription, params["cancel_at_period_end"])


def _set_cancel_at_period_end(subscription: StripeObject, cancel: bool) -> None:
    """Stripe shows a scheduled cancellation as cancel_at = the end of the current period."""
    subscription["cancel_at_period_end"] = cancel
    ends = [item["current_period_end"] for item in _items(subscription)]
    subscription["cancel_at"] = max(ends) if cancel and ends else None
    subscription["cancellation_details"]["reason"] = "cancellation_requested" if cancel else None


# Item changes and prorations ------------------------------------------------------------------


def _change_items(
    store: Store,
    subscription: StripeObject,
    entries: list[dict[str, Any]],
    proration: str,
    when: int,
) -> list[StripeObject]:
    """Apply item changes; returns the items whose billing period restarts now (and so are
    invoiced now): new cadences that no existing item shares."""
    reset: list[StripeObject] = []
    for index, entry in enumerate(entries):
        path = f"items[{index}]"
        if "id" in entry:
            item = _find_item(subscription, entry["id"], path)
            if entry.get("deleted"):
                _remove_item(store, subscription, item, proration, when)
            else:
                reset += _modify_item(store, subscription, item, entry, path, proration, when)
        else:
            reset += _add_item(store, subscription, entry, path, proration, when)
    if not _items(subscription):
        raise invalid_request(
            "A subscription must have at least one item; cancel it instead.", param="items"
        )
    prices = {item["price"]["currency"] for item in _items(subscription)}
    if len(prices) > 1:
        raise invalid_request(
            "All prices on a subscription must have the same `currency`.", param="items"
        )
    if subscription["cancel_at_period_end"]:
        _set_cancel_at_period_end(subscription, True)
    return reset


def _find_item(subscription: StripeObject, item_id: str, path: str) -> StripeObject:
    for item in _items(subscription):
        if item["id"] == item_id:
            return item
    raise invalid_request(
        f"No such subscription item: '{item_id}'", param=f"{path}[id]", code="resource_missing"
    )


def _modify_item(
    store: Store,
    subscription: StripeObject,
    item: StripeObject,
    entry: dict[str, Any],
    path: str,
    proration: str,
    when: int,
) -> list[StripeObject]:
    changes_price = any(key in entry for key in ("price", "plan", "price_data"))
    price = resolve_price(store, entry, path) if changes_price else item["price"]
    quantity = _quantity(entry, path, default=item["quantity"])
    if "metadata" in entry:
        item["metadata"] = metadata_update(item["metadata"], entry["metadata"])
    if price["id"] == item["price"]["id"] and quantity == item["quantity"]:
        return []
    if proration != "none":
        _credit_unused(store, subscription, item, when)
    restart = _cadence(price) != _cadence(item["price"])
    _set_price(item, price)
    item["quantity"] = quantity
    if restart:
        _restart_period(subscription, item, store.now())
        return [item]
    if proration != "none":
        _charge_remaining(store, subscription, item, when)
    return []


def _add_item(
    store: Store,
    subscription: StripeObject,
    entry: dict[str, Any],
    path: str,
    proration: str,
    when: int,
) -> list[StripeObject]:
    price = resolve_price(store, entry, path)
    if any(item["price"]["id"] == price["id"] for item in _items(subscription)):
        raise invalid_request(
            "Cannot add multiple subscription items with the same price.", param=f"{path}[price]"
        )
    peer = next((i for i in _items(subscription) if _cadence(i["price"]) == _cadence(price)), None)
    if peer is None:
        # A new cadence starts its own period now and is billed at once.
        period = period_from(store.now(), price)
    else:
        period = (peer["current_period_start"], peer["current_period_end"])
    item = _new_item(
        store, subscription, price, _quantity(entry, path), period, entry.get("metadata")
    )
    if peer is None:
        return [item]
    if proration != "none":
        _charge_remaining(store, subscription, item, when)
    return []


def _remove_item(
    store: Store, subscription: StripeObject, item: StripeObject, proration: str, when: int
) -> None:
    if proration != "none":
        _credit_unused(store, subscription, item, when)
    _items(subscription).remove(item)


def _restart_period(subscription: StripeObject, item: StripeObject, now: int) -> None:
    start, end = period_from(now, item["price"])
    item["current_period_start"], item["current_period_end"] = start, end
    subscription["billing_cycle_anchor"] = now


def prorated(amount: int, item: StripeObject, when: int) -> int:
    """amount × the share of the item's current period left after `when`, to the second,
    rounded half up to the smallest currency unit."""
    start, end = item["current_period_start"], item["current_period_end"]
    left = Decimal(max(end - max(when, start), 0)) / Decimal(end - start)
    return int((Decimal(amount) * left).to_integral_value(rounding=ROUND_HALF_UP))


def _credit_unused(store: Store, subscription: StripeObject, item: StripeObject, when: int) -> None:
    full = (item["price"]["unit_amount"] or 0) * item["quantity"]
    amount = prorated(full, item, when)
    if amount:
        _proration_item(store, subscription, item, -amount, "Unused time on", when)


def _charge_remaining(
    store: Store, subscription: StripeObject, item: StripeObject, when: int
) -> None:
    full = (item["price"]["unit_amount"] or 0) * item["quantity"]
    amount = prorated(full, item, when)
    if amount:
        _proration_item(store, subscription, item, amount, "Remaining time on", when)


def _proration_item(
    store: Store,
    subscription: StripeObject,
    item: StripeObject,
    amount: int,
    what: str,
    when: int,
) -> None:
    price = item["price"]
    product = store.objects[price["product"]]["name"]
    quantity = item["quantity"]
    named = product if quantity == 1 else f"{quantity} × {product}"
    day = datetime.fromtimestamp(when, UTC)
    invoices.new_invoice_item(
        store,
        customer=subscription["customer"],
        subscription=subscription,
        item=item,
        price=price,
        quantity=quantity,
        amount=amount,
        description=f"{what} {named} after {day.day} {day.strftime('%b %Y')}",
        period=(max(when, item["current_period_start"]), item["current_period_end"]),
    )


# Cancel, pause, resume ------------------------------------------------------------------------


@handles("DELETE", "/v1/subscriptions/{subscription_exposed_id}")
def cancel(call: Call) -> StripeObject:
    store, params = call.store, call.params
    subscription = store.get("subscription", call.args["subscription_exposed_id"])
    if subscription["status"] in ENDED:
        raise invalid_request(
            f"This subscription is already {subscription['status']}; it cannot be canceled again."
        )
    with _all_or_nothing(store, subscription, _customer(store, subscription)) as held:
        _end(store, subscription, params)
    store.release(held)
    return subscription


def _end(store: Store, subscription: StripeObject, params: dict[str, Any]) -> None:
    now = store.now()
    if params.get("prorate"):
        for item in _items(subscription):
            _credit_unused(store, subscription, item, now)
    if params.get("invoice_now"):
        _invoice_pending(store, subscription)
    details = params.get("cancellation_details") or {}
    subscription.update(status="canceled", canceled_at=now, ended_at=now, cancel_at=None)
    subscription["cancellation_details"].update(
        reason="cancellation_requested",
        comment=details.get("comment") or None,
        feedback=details.get("feedback") or None,
    )
    store.emit("customer.subscription.deleted", subscription)


def _invoice_pending(store: Store, subscription: StripeObject) -> None:
    """Bill the subscription's pending prorations now and try to collect, if there are any."""
    if invoices.pending_items(store, subscription["id"]):
        invoice = _invoice_now(store, subscription, "subscription_update", [])
        _collect(store, invoice, "allow_incomplete", True)


@handles("POST", "/v1/subscriptions/{subscription}/pause")
def pause(call: Call) -> StripeObject:
    store, params = call.store, call.params
    subscription = store.get("subscription", call.args["subscription"])
    if subscription["status"] not in ("active", "past_due"):
        raise invalid_request(
            f"Only active subscriptions can be paused; this one is {subscription['status']}."
        )
    unused_from = ((params.get("bill_for") or {}).get("unused_time_from") or {}).get("type", "now")
    unused_from = one_of(
        unused_from,
        ("item_current_period_start", "none", "now"),
        "bill_for[unused_time_from][type]",
    )
    invoicing = one_of(
        params.get("invoicing_behavior", "pending_invoice_item"),
        ("invoice", "pending_invoice_item"),
        "invoicing_behavior",
    )
    with _all_or_nothing(store, subscription, _customer(store, subscription)) as held:
        _pause(store, subscription, unused_from, invoicing == "invoice")
    store.release(held)
    return subscription


def _pause(store: Store, subscription: StripeObject, unused_from: str, invoice: bool) -> None:
    """Credit the unused time (pending, or invoiced at once), then stop billing."""
    before = copy.deepcopy(subscription)
    if unused_from != "none":
        for item in _items(subscription):
            since = store.now() if unused_from == "now" else item["current_period_start"]
            _credit_unused(store, subscription, item, since)
    if invoice:
        _invoice_pending(store, subscription)
    subscription["status"] = "paused"
    store.emit("customer.subscription.paused", subscription)
    _announce(store, subscription, before)


@handles("POST", "/v1/subscriptions/{subscription}/resume")
def resume(call: Call) -> StripeObject:
    store, params = call.store, call.params
    subscription = store.get("subscription", call.args["subscription"])
    if subscription["status"] != "paused":
        raise invalid_request(
            f"Only paused subscriptions can be resumed; this one is {subscription['status']}."
        )
    if subscription["collection_method"] != "charge_automatically":
        raise invalid_request(
            "Resume is only available for subscriptions that use charge_automatically collection."
        )
    behavior = one_of(
        params.get("payment_behavior", "resume_on_payment_attempt"),
        ("resume_on_payment_attempt", "resume_on_payment_success"),
        "payment_behavior",
    )
    anchor = one_of(
        (params.get("billing_cycle_anchor") or {}).get("type", "now"),
        ("now", "unchanged"),
        "billing_cycle_anchor[type]",
    )
    proration = one_of(
        params.get("proration_behavior", "create_prorations"),
        PRORATION_BEHAVIORS,
        "proration_behavior",
    )
    with _all_or_nothing(store, subscription, _customer(store, subscription)) as held:
        _resume(store, subscription, behavior, anchor, proration)
    store.release(held)
    return subscription


def _resume(
    store: Store, subscription: StripeObject, behavior: str, anchor: str, proration: str
) -> None:
    """New periods (anchor now) or a charge for the rest of this one; then the resumption
    invoice, whose payment (or attempt, per `behavior`) makes the subscription active again."""
    before = copy.deepcopy(subscription)
    now = store.now()
    restarted: list[StripeObject] = []
    for item in _items(subscription):
        if anchor == "now":
            _restart_period(subscription, item, now)
            restarted.append(item)
        elif proration != "none":
            _charge_remaining(store, subscription, item, now)
    _announce(store, subscription, before)
    invoice = None
    if restarted or (
        proration == "always_invoice" and invoices.pending_items(store, subscription["id"])
    ):
        invoice = _invoice_now(store, subscription, "subscription_update", restarted)
        # A paid invoice resumes the subscription through invoice_paid().
        _collect(store, invoice, "allow_incomplete", True)
    paid = invoice is None or invoice["status"] == "paid"
    if subscription["status"] == "paused" and (paid or behavior == "resume_on_payment_attempt"):
        before = copy.deepcopy(subscription)
        subscription["status"] = "active" if paid else "past_due"
        store.emit("customer.subscription.resumed", subscription)
        _announce(store, subscription, before)


# Keeping embedded copies current --------------------------------------------------------------


@reacts_to("price.updated")
def _price_updated(store: Store, price: StripeObject) -> None:
    """Subscription items embed their price; show its current nickname, metadata, active."""
    live = store.objects.get(price["id"])
    if live is None:
        return
    for subscription_id in store.ids_by_type["subscription"]:
        for item in _items(store.objects[subscription_id]):
            if item["price"]["id"] == live["id"]:
                _set_price(item, live)
