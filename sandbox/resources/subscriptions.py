"""Subscriptions: create (first invoice finalized and paid through a PaymentIntent, or a free
trial billed at $0), retrieve, update (items with prorations, trial end, cancel_at_period_end,
payment method, metadata), cancel, pause, resume, list.

Periods live on each subscription item (API 2025-03-31 and later) and are computed from
`store.now()` and the billing cycle anchor; what happens when they end (renewals, trial
ends, dunning) is in billing_cycle.py. Operations that may fail on payment hold their events
and undo their objects on failure, so `error_if_incomplete` leaves nothing behind, as on
Stripe."""

import calendar
import copy
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sandbox.errors import StripeError, invalid_request, missing_parameter
from sandbox.registry import Call, StripeObject, handles, reacts_to
from sandbox.resources import customers, discounts, invoices, prices, tax, tax_rates
from sandbox.resources.common import in_range, metadata_update, one_of
from sandbox.store import DAY, Store, blank, changed_fields

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
SECONDS = {"day": DAY, "week": 7 * DAY}
MISSING_METHOD_BEHAVIORS = ("cancel", "create_invoice", "pause")
MAX_TRIAL = 730 * DAY
# customer.subscription.trial_will_end comes this long before a trial ends.
TRIAL_NOTICE = 3 * DAY
# What the sandbox has announced ahead of time for a subscription (not part of its object).
TIMELINE = "sandbox.subscription_timeline"
# What these operations may create; on a failed all-or-nothing operation they are removed.
UNDONE_TYPES = ("subscription", "invoice", "invoiceitem", "invoice_payment", "discount")
# Parameters the sandbox does not model yet; refused rather than silently ignored.
NOT_MODELLED = (
    "add_invoice_items",
    "billing_cycle_anchor",
    "billing_cycle_anchor_config",
    "billing_schedules",
    "billing_thresholds",
    "cancel_at",
    "backdate_start_date",
    "pause_collection",
    "pending_invoice_item_interval",
    "transfer_data",
    "application_fee_percent",
    "on_behalf_of",
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


def items_of(subscription: StripeObject) -> list[StripeObject]:
    return subscription["items"]["data"]


def _customer(store: Store, subscription: StripeObject) -> StripeObject:
    return store.objects[subscription["customer"]]


def item_amount(store: Store, subscription: StripeObject, item: StripeObject) -> int:
    """A period of the item, in the subscription's currency."""
    return prices.amount_in(store, item["price"], subscription["currency"]) * item["quantity"]


def line_description(store: Store, price: StripeObject, quantity: int, currency: str) -> str:
    """`1 × Pro (at $29.00 / month)`, as Stripe describes a subscription line."""
    product = store.objects[price["product"]]
    interval, count = _cadence(price)
    every = interval if count == 1 else f"every {count} {interval}s"
    amount = invoices.money(prices.amount_in(store, price, currency), currency)
    return f"{quantity} × {product['name']} (at {amount} / {every})"


def _named(store: Store, price: StripeObject, quantity: int) -> str:
    """`Pro`, or `2 × Pro`: a price's product as Stripe names it in trial and proration lines."""
    product = store.objects[price["product"]]["name"]
    return product if quantity == 1 else f"{quantity} × {product}"


def _bill_items(store: Store, invoice: StripeObject, items: list[StripeObject]) -> None:
    """A line for each item's current period; a trialing subscription's periods cost $0."""
    for item in items:
        price, quantity = item["price"], item["quantity"]
        subscription = store.objects[item["subscription"]]
        trial = subscription["status"] == "trialing"
        invoices.add_line(
            store,
            invoice,
            amount=0 if trial else item_amount(store, subscription, item),
            price=price,
            quantity=quantity,
            description=f"Trial period for {_named(store, price, quantity)}"
            if trial
            else line_description(store, price, quantity, subscription["currency"]),
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
    announce(store, subscription, before)


def invoice_payment_failed(store: Store, invoice: StripeObject) -> None:
    """A failed (or unauthenticated) payment leaves a first invoice incomplete; later ones
    make an active subscription past_due, and once the last retry has failed it ends as
    Billing's settings say: canceled, or unpaid (it stays, but is no longer charged)."""
    subscription = store.find("subscription", invoices.subscription_of(invoice) or "")
    if subscription is None or subscription["status"] not in ("active", "past_due"):
        return
    before = copy.deepcopy(subscription)
    subscription["status"] = "past_due"
    gave_up = invoices.retries_exhausted(store, invoice)
    if gave_up and store.billing.after_retries == "unpaid":
        subscription["status"] = "unpaid"
    announce(store, subscription, before)
    if gave_up and store.billing.after_retries == "canceled":
        finish(store, subscription, "payment_failed")


def announce(store: Store, subscription: StripeObject, before: StripeObject) -> None:
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
    return create_subscription(call.store, call.params)


def create_subscription(store: Store, params: dict[str, Any]) -> StripeObject:
    """A new subscription from create params (also what an invoice preview rehearses)."""
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
    chosen = [price for price, _, _ in lines]
    currency = prices.currency_for(store, customer, chosen, params.get("currency"))
    amounts = [prices.amount_in(store, price, currency) * qty for price, qty, _ in lines]
    customers.check_currency(store, customer, currency)
    if (params.get("automatic_tax") or {}).get("enabled"):
        tax.require_location(store, customer)
    params = params | {"currency": currency}
    default_method = _owned_method(store, params.get("default_payment_method"), customer)
    collection = one_of(
        params.get("collection_method", "charge_automatically"),
        COLLECTION_METHODS,
        "collection_method",
    )
    if collection == "send_invoice" and "days_until_due" not in params:
        raise missing_parameter("days_until_due")
    trial_end = trial_end_of(store, params, [price for price, _, _ in lines])
    # A trial needs no payment method now; what happens without one is trial_settings' say.
    if collection == "charge_automatically" and behavior != "default_incomplete" and not trial_end:
        _payment_method_needed(store, customer, sum(amounts), default_method)
    return start_subscription(
        store,
        customer,
        lines,
        params,
        behavior=behavior,
        collection=collection,
        default_method=default_method,
        trial_end=trial_end,
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
    trial_end: int | None = None,
) -> StripeObject:
    """Create the subscription (trialing until `trial_end`, if given), bill its first period
    and emit its events (also for Checkout)."""
    with _all_or_nothing(store, customer) as held:
        subscription = _new_subscription(store, customer, params, collection, default_method)
        if trial_end:
            _start_trial(subscription, trial_end)
        for index, (price, quantity, metadata) in enumerate(lines):
            item = _new_item(
                store, subscription, price, quantity, _first_period(subscription, price), metadata
            )
            item["tax_rates"] = _item_tax_rates(store, params, index)
        tax.check_compatible(subscription)
        discounts.apply_on_create(store, subscription, params)
        _bill_first_period(store, subscription, behavior, params.get("off_session", False))
    store.emit("customer.subscription.created", subscription)
    store.release(_without_updates_of(held, subscription["id"]))
    if trial_end and trial_end - TRIAL_NOTICE <= store.now():
        announce_trial_will_end(store, subscription)
    return subscription


def _item_tax_rates(store: Store, params: dict[str, Any], index: int) -> list[StripeObject]:
    entries = params.get("items") or []
    rate_ids = entries[index].get("tax_rates") if index < len(entries) else None
    return tax_rates.applied(store, rate_ids, f"items[{index}][tax_rates]")


def _start_trial(subscription: StripeObject, trial_end: int) -> None:
    subscription.update(
        status="trialing",
        trial_start=subscription["start_date"],
        trial_end=trial_end,
        billing_cycle_anchor=trial_end,
    )


def _first_period(subscription: StripeObject, price: StripeObject) -> tuple[int, int]:
    if subscription["status"] == "trialing":
        return subscription["trial_start"], subscription["trial_end"]
    return period_from(subscription["billing_cycle_anchor"], price)


# Trials ---------------------------------------------------------------------------------------


def trial_end_of(store: Store, params: dict[str, Any], prices: list[StripeObject]) -> int | None:
    """When a new subscription's trial ends: `trial_end`, `trial_period_days`, or (with
    `trial_from_plan`) the prices' recurring.trial_period_days; None for no trial."""
    if "trial_end" in params and "trial_period_days" in params:
        raise invalid_request(
            "You may only specify one of these parameters: trial_end, trial_period_days.",
            param="trial_end",
        )
    if params.get("trial_from_plan") and ("trial_end" in params or "trial_period_days" in params):
        raise invalid_request(
            "trial_from_plan cannot be combined with trial_end or trial_period_days.",
            param="trial_from_plan",
        )
    if "trial_end" in params:
        return (
            None if params["trial_end"] == "now" else _checked_trial_end(store, params["trial_end"])
        )
    days = params.get("trial_period_days")
    if days is None and params.get("trial_from_plan"):
        days = max((price["recurring"]["trial_period_days"] or 0 for price in prices), default=0)
    if days is not None and not 0 <= days * DAY <= MAX_TRIAL:
        raise invalid_request(
            "The trial period must be between 0 and 730 days.", param="trial_period_days"
        )
    return store.now() + days * DAY if days else None


def _checked_trial_end(store: Store, trial_end: int) -> int:
    now = store.now()
    if trial_end <= now:
        raise invalid_request(
            "Invalid timestamp: must be an integer Unix timestamp in the future.",
            param="trial_end",
        )
    if trial_end - now > MAX_TRIAL:
        raise invalid_request(
            "trial_end can be no more than 730 days (2 years) in the future.", param="trial_end"
        )
    return trial_end


def _trial_settings(settings: dict[str, Any]) -> StripeObject:
    behavior = settings["end_behavior"]
    if behavior.get("billing_cycle_anchor", "now") != "now":
        raise invalid_request(
            "The sandbox resets the billing cycle anchor when a trial ends "
            "(trial_settings[end_behavior][billing_cycle_anchor]=now) only.",
            param="trial_settings[end_behavior][billing_cycle_anchor]",
        )
    missing = one_of(
        behavior.get("missing_payment_method", "create_invoice"),
        MISSING_METHOD_BEHAVIORS,
        "trial_settings[end_behavior][missing_payment_method]",
    )
    return {"end_behavior": {"missing_payment_method": missing}}


def timeline(store: Store, subscription: StripeObject) -> StripeObject:
    """What has been announced ahead of time for this subscription: the trial end its
    trial_will_end was for, and the period end its invoice.upcoming was for."""
    record_id = f"{subscription['id']}:timeline"
    if record_id not in store.objects:
        store.add({"id": record_id, "object": TIMELINE, "trial_will_end": None, "upcoming": None})
    return store.objects[record_id]


def announce_trial_will_end(store: Store, subscription: StripeObject) -> None:
    """customer.subscription.trial_will_end, once for each trial end."""
    timeline(store, subscription)["trial_will_end"] = subscription["trial_end"]
    store.emit("customer.subscription.trial_will_end", subscription)


def start_paid_periods(subscription: StripeObject, start: int) -> list[StripeObject]:
    """End the trial at `start`: the subscription is active and every item starts a paid
    period there, the new billing cycle anchor."""
    subscription.update(status="active", trial_end=start)
    for item in items_of(subscription):
        _restart_period(subscription, item, start)
    return items_of(subscription)


def _update_trial(store: Store, subscription: StripeObject, params: dict[str, Any]) -> bool:
    """trial_end on update: `now` ends a trial at once (True: its paid periods start now); a
    timestamp moves the end of the current trial."""
    if "trial_from_plan" in params:
        raise invalid_request(
            "The sandbox supports trial_from_plan when creating a subscription only.",
            param="trial_from_plan",
        )
    trial_end = params.get("trial_end")
    trialing = subscription["status"] == "trialing"
    if trial_end is None or (trial_end == "now" and not trialing):
        return False
    if not trialing:
        raise invalid_request(
            "The sandbox does not support starting a trial on a subscription that is not trialing.",
            param="trial_end",
        )
    if trial_end == "now":
        # Stripe announces a trial ended at once too.
        announce_trial_will_end(store, subscription)
        start_paid_periods(subscription, store.now())
        return True
    end = _checked_trial_end(store, trial_end)
    subscription.update(trial_end=end, billing_cycle_anchor=end)
    for item in items_of(subscription):
        item["current_period_end"] = end
    return False


def has_payment_method(store: Store, subscription: StripeObject) -> bool:
    """Whether Billing has a payment method to charge this subscription's invoices with."""
    return invoices.default_method_of(store, subscription["customer"], subscription) is not None


def finish(store: Store, subscription: StripeObject, reason: str | None) -> None:
    """The subscription ends now: canceled, announced with customer.subscription.deleted.
    `canceled_at` keeps the time a cancellation was requested, if one was."""
    now = store.now()
    subscription.update(status="canceled", ended_at=now)
    subscription["canceled_at"] = subscription["canceled_at"] or now
    subscription["cancellation_details"]["reason"] = reason
    store.emit("customer.subscription.deleted", subscription)


def end_all_of(store: Store, customer_id: str) -> None:
    """Cancel a customer's subscriptions at once (the customer is being deleted)."""
    for subscription_id in store.ids_by_type["subscription"]:
        subscription = store.objects[subscription_id]
        if subscription["customer"] == customer_id and subscription["status"] not in ENDED:
            _end(store, subscription, {})


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
        automatic_tax=tax.automatic_tax_of(
            bool((params.get("automatic_tax") or {}).get("enabled"))
        ),
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
        currency=params.get("currency"),
        customer=customer["id"],
        customer_account=None,
        days_until_due=params.get("days_until_due") if collection == "send_invoice" else None,
        default_payment_method=default_method,
        default_source=None,
        default_tax_rates=tax_rates.applied(
            store, params.get("default_tax_rates"), "default_tax_rates"
        ),
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
        trial_settings=_trial_settings(params.get("trial_settings") or {"end_behavior": {}}),
        trial_start=None,
    )
    subscription["items"]["url"] = f"/v1/subscription_items?subscription={subscription['id']}"
    store.add(subscription)
    if params.get("cancel_at_period_end"):
        _set_cancel_at_period_end(store, subscription, True)
    return subscription


def _bill_first_period(
    store: Store, subscription: StripeObject, behavior: str, off_session: bool
) -> None:
    items = items_of(subscription)
    subscription["currency"] = subscription["currency"] or items[0]["price"]["currency"]
    customers.bill_in(store, _customer(store, subscription), subscription["currency"])
    if subscription["cancel_at_period_end"]:
        _set_cancel_at_period_end(store, subscription, True)
    invoice = _invoice_now(store, subscription, "subscription_create", items)
    if invoice["status"] == "open" and subscription["collection_method"] == "send_invoice":
        # Invoices sent for payment do not hold a subscription back.
        subscription["status"] = "active"
    _collect(store, invoice, behavior, off_session)


def _invoice_now(
    store: Store, subscription: StripeObject, reason: str, items: list[StripeObject]
) -> StripeObject:
    """Invoice these items' current periods and pending prorations now, and finalize."""
    return invoices.finalize(store, draft_invoice(store, subscription, reason, items))


def draft_invoice(
    store: Store,
    subscription: StripeObject,
    reason: str,
    items: list[StripeObject],
    period: tuple[int, int] | None = None,
) -> StripeObject:
    """A draft invoice of the subscription's pending prorations and these items' current
    periods (`period`: the usage period it closes); emits invoice.created."""
    invoice = invoices.new_invoice(
        store,
        _customer(store, subscription),
        currency=subscription["currency"],
        billing_reason=reason,
        subscription=subscription,
        period=period,
    )
    invoices.add_pending_items(store, invoice)
    _bill_items(store, invoice, items)
    subscription["latest_invoice"] = invoice["id"]
    store.emit("invoice.created", invoice)
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
        items = items_of(subscription)
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
    announce(store, subscription, before)


def _apply_update(
    store: Store,
    subscription: StripeObject,
    params: dict[str, Any],
    behavior: str,
    proration: str,
) -> None:
    invoice = apply_change(store, subscription, params, proration)
    if invoice is not None:
        invoices.finalize(store, invoice)
        _after_update_invoice(store, subscription, invoice, behavior, params)


def apply_change(
    store: Store, subscription: StripeObject, params: dict[str, Any], proration: str
) -> StripeObject | None:
    """Apply an update's changes; answers the draft invoice of what they bill at once (new
    periods, an ended trial, or prorations with always_invoice), if anything."""
    before = copy.deepcopy(subscription)
    trialing = subscription["status"] == "trialing"
    # Nothing was paid for a trial, so nothing of it is prorated.
    proration = "none" if trialing else proration
    when = _proration_date(store, subscription, params.get("proration_date"))
    _apply_fields(store, subscription, params)
    reset = _change_items(store, subscription, params.get("items") or [], proration, when)
    tax.check_compatible(subscription)
    discounts.apply_on_update(store, subscription, params)
    if trialing:
        _keep_in_trial(subscription, reset)
        reset = []
    if _update_trial(store, subscription, params):
        reset = items_of(subscription)
    announce(store, subscription, before)
    pending = invoices.pending_items(store, subscription["id"])
    if reset or (proration == "always_invoice" and pending):
        return draft_invoice(store, subscription, "subscription_update", reset)
    return None


def _keep_in_trial(subscription: StripeObject, items: list[StripeObject]) -> None:
    """Items whose period would restart stay in the trial instead."""
    for item in items:
        item["current_period_start"] = subscription["trial_start"]
        item["current_period_end"] = subscription["trial_end"]
    subscription["billing_cycle_anchor"] = subscription["trial_end"]


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
        announce(store, subscription, before)
    _collect(store, invoice, behavior, params.get("off_session", False))


def _proration_date(store: Store, subscription: StripeObject, when: int | None) -> int:
    now = store.now()
    if when is None:
        return now
    starts = [item["current_period_start"] for item in items_of(subscription)]
    ends = [item["current_period_end"] for item in items_of(subscription)]
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
    if "trial_settings" in params:
        subscription["trial_settings"] = _trial_settings(params["trial_settings"])
    if "automatic_tax" in params:
        enabled = bool(params["automatic_tax"].get("enabled"))
        if enabled:
            tax.require_location(store, _customer(store, subscription))
        subscription["automatic_tax"] = tax.automatic_tax_of(enabled)
    if "default_tax_rates" in params:
        subscription["default_tax_rates"] = tax_rates.applied(
            store, params["default_tax_rates"], "default_tax_rates"
        )
    if "cancel_at_period_end" in params:
        _set_cancel_at_period_end(store, subscription, params["cancel_at_period_end"])


def _set_cancel_at_period_end(store: Store, subscription: StripeObject, cancel: bool) -> None:
    """Stripe shows a scheduled cancellation as cancel_at = the end of the current period, and
    canceled_at = when it was asked for."""
    subscription["cancel_at_period_end"] = cancel
    ends = [item["current_period_end"] for item in items_of(subscription)]
    subscription["cancel_at"] = max(ends) if cancel and ends else None
    subscription["canceled_at"] = store.now() if cancel else None
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
    if not items_of(subscription):
        raise invalid_request(
            "A subscription must have at least one item; cancel it instead.", param="items"
        )
    for item in items_of(subscription):
        prices.amount_in(store, item["price"], subscription["currency"])
    if subscription["cancel_at_period_end"]:
        _set_cancel_at_period_end(store, subscription, True)
    return reset


def _find_item(subscription: StripeObject, item_id: str, path: str) -> StripeObject:
    for item in items_of(subscription):
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
    if "tax_rates" in entry:
        item["tax_rates"] = tax_rates.applied(store, entry["tax_rates"], f"{path}[tax_rates]")
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
    if any(item["price"]["id"] == price["id"] for item in items_of(subscription)):
        raise invalid_request(
            "Cannot add multiple subscription items with the same price.", param=f"{path}[price]"
        )
    peer = next(
        (i for i in items_of(subscription) if _cadence(i["price"]) == _cadence(price)), None
    )
    if peer is None:
        # A new cadence starts its own period now and is billed at once.
        period = period_from(store.now(), price)
    else:
        period = (peer["current_period_start"], peer["current_period_end"])
    item = _new_item(
        store, subscription, price, _quantity(entry, path), period, entry.get("metadata")
    )
    item["tax_rates"] = tax_rates.applied(store, entry.get("tax_rates"), f"{path}[tax_rates]")
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
    items_of(subscription).remove(item)


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
    amount = prorated(item_amount(store, subscription, item), item, when)
    if amount:
        _proration_item(store, subscription, item, -amount, "Unused time on", when)


def _charge_remaining(
    store: Store, subscription: StripeObject, item: StripeObject, when: int
) -> None:
    amount = prorated(item_amount(store, subscription, item), item, when)
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
    price, quantity = item["price"], item["quantity"]
    moment = datetime.fromtimestamp(when, UTC)
    day = f"{moment.day} {moment:%b %Y}"
    invoices.new_invoice_item(
        store,
        customer=subscription["customer"],
        subscription=subscription,
        item=item,
        price=price,
        quantity=quantity,
        amount=amount,
        description=f"{what} {_named(store, price, quantity)} after {day}",
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
        for item in items_of(subscription):
            _credit_unused(store, subscription, item, now)
    if params.get("invoice_now"):
        _invoice_pending(store, subscription)
    details = params.get("cancellation_details") or {}
    subscription.update(canceled_at=now, cancel_at=None)
    subscription["cancellation_details"].update(
        comment=details.get("comment") or None, feedback=details.get("feedback") or None
    )
    finish(store, subscription, "cancellation_requested")


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
        for item in items_of(subscription):
            since = store.now() if unused_from == "now" else item["current_period_start"]
            _credit_unused(store, subscription, item, since)
    if invoice:
        _invoice_pending(store, subscription)
    subscription["status"] = "paused"
    store.emit("customer.subscription.paused", subscription)
    announce(store, subscription, before)


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
    for item in items_of(subscription):
        if anchor == "now":
            _restart_period(subscription, item, now)
            restarted.append(item)
        elif proration != "none":
            _charge_remaining(store, subscription, item, now)
    announce(store, subscription, before)
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
        announce(store, subscription, before)


# Keeping embedded copies current --------------------------------------------------------------


@reacts_to("price.updated")
def _price_updated(store: Store, price: StripeObject) -> None:
    """Subscription items embed their price; show its current nickname, metadata, active."""
    live = store.objects.get(price["id"])
    if live is None:
        return
    for subscription_id in store.ids_by_type["subscription"]:
        for item in items_of(store.objects[subscription_id]):
            if item["price"]["id"] == live["id"]:
                _set_price(item, live)
