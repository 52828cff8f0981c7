"""What happens to subscriptions as time passes, and invoice previews of what will be billed.

When a clock reaches them (sandbox/clocks.py): trial_will_end three days before a trial
ends; at its end, paid periods start and are invoiced, or, without a payment method, the
subscription is canceled or paused as trial_settings say; invoice.upcoming some days before
each renewal; at a period's end, cancellation (cancel_at_period_end) or a renewal invoice,
a draft that invoices.py finalizes and charges an hour later.

`POST /v1/invoices/create_preview` rehearses, through the same code as the real request, a
new subscription (`customer` and `subscription_details.items`, no `subscription`), a change
to one, or its next renewal, and answers the invoice that would be billed (with the
`discounts`, `automatic_tax` and `currency` given), then undoes it all, announcing nothing.
"""

import copy
import functools
from collections.abc import Iterator
from typing import Any

from sandbox.errors import StripeError, invalid_request
from sandbox.expand import expanded
from sandbox.registry import Call, Due, StripeObject, handles, timer
from sandbox.resources.common import one_of, refuse_unsupported
from sandbox.resources.subscriptions import (
    PRORATION_BEHAVIORS,
    TRIAL_NOTICE,
    add_interval,
    announce,
    announce_trial_will_end,
    apply_change,
    create_subscription,
    draft_invoice,
    finish,
    has_payment_method,
    items_of,
    start_paid_periods,
    timeline,
)
from sandbox.store import DAY, Store

# Subscriptions whose periods end and renew (a paused one bills nothing until resumed).
RENEWING = ("trialing", "active", "past_due", "unpaid")
PREVIEWED_CHANGES = frozenset(
    {"items", "proration_behavior", "proration_date", "default_tax_rates"}
)
# What a preview of a new subscription may say about it, besides its items.
PREVIEWED_STARTS = frozenset({"items", "default_tax_rates", "trial_end"})
# What a preview may say of the invoice itself, for a new subscription or a change.
PREVIEWED_TERMS = ("discounts", "automatic_tax", "currency")


def period_end(subscription: StripeObject) -> int:
    """When the subscription's current period ends (its earliest item's, for mixed cadences)."""
    return min(item["current_period_end"] for item in items_of(subscription))


# What falls due ------------------------------------------------------------------------------


@timer
def _due(store: Store) -> Iterator[Due]:
    """Trial notices and ends, upcoming invoices and period ends of live subscriptions."""
    for subscription_id in store.ids_by_type["subscription"]:
        subscription = store.objects[subscription_id]
        if subscription["status"] in RENEWING:
            yield from _due_for(store, subscription)


def _due_for(store: Store, subscription: StripeObject) -> Iterator[Due]:
    customer, end = subscription["customer"], period_end(subscription)
    announced = timeline(store, subscription)
    trialing = subscription["status"] == "trialing"
    if trialing and announced.get("trial_will_end") != subscription["trial_end"]:
        at = max(subscription["trial_end"] - TRIAL_NOTICE, subscription["trial_start"])
        yield Due(at, customer, functools.partial(announce_trial_will_end, store, subscription))
    upcoming_at = _upcoming_at(store, subscription, end)
    if upcoming_at is not None and announced.get("upcoming") != end:
        yield Due(upcoming_at, customer, functools.partial(_announce_upcoming, store, subscription))
    yield Due(end, customer, functools.partial(period_ended, store, subscription))


def _upcoming_at(store: Store, subscription: StripeObject, end: int) -> int | None:
    """When invoice.upcoming is due for the renewal at `end`: not for a subscription that will
    not renew, nor before its current period began."""
    days = store.billing.upcoming_days
    if not days or subscription["cancel_at_period_end"] or subscription["status"] == "unpaid":
        return None
    at = end - days * DAY
    started = min(item["current_period_start"] for item in items_of(subscription))
    return at if at >= started else None


# At a period's end -----------------------------------------------------------------------------


def period_ended(store: Store, subscription: StripeObject) -> StripeObject | None:
    """The subscription's current period ends now; answers the invoice this makes, if any."""
    if subscription["cancel_at_period_end"]:
        finish(store, subscription, "cancellation_requested")
        return None
    if subscription["status"] == "trialing":
        return _trial_ended(store, subscription)
    return _renew(store, subscription)


def _renew(store: Store, subscription: StripeObject) -> StripeObject:
    """The items whose period ends now start the next one, invoiced as a draft."""
    before = copy.deepcopy(subscription)
    end = period_end(subscription)
    due = [item for item in items_of(subscription) if item["current_period_end"] == end]
    closed = (min(item["current_period_start"] for item in due), end)
    for item in due:
        next_end = _next_end(subscription, item)
        item["current_period_start"], item["current_period_end"] = end, next_end
    announce(store, subscription, before)
    return _cycle_invoice(store, subscription, due, closed)


def _next_end(subscription: StripeObject, item: StripeObject) -> int:
    """The end of the item's next period: whole intervals from the billing cycle anchor, so a
    Jan 31 anchor renews on Feb 28, then Mar 31 (an item off the anchor's cycle steps on from
    its own period end)."""
    recurring = item["price"]["recurring"]
    interval, count = recurring["interval"], recurring["interval_count"]
    anchor, start = subscription["billing_cycle_anchor"], item["current_period_end"]
    intervals = 0
    while (end := add_interval(anchor, interval, intervals * count)) < start:
        intervals += 1
    if end != start:
        return add_interval(start, interval, count)
    return add_interval(anchor, interval, (intervals + 1) * count)


def _trial_ended(store: Store, subscription: StripeObject) -> StripeObject | None:
    """Paid periods start and are invoiced; without a payment method to charge, the
    subscription is canceled or paused instead if trial_settings say so."""
    before = copy.deepcopy(subscription)
    missing = subscription["trial_settings"]["end_behavior"]["missing_payment_method"]
    chargeable = subscription["collection_method"] == "send_invoice" or has_payment_method(
        store, subscription
    )
    if not chargeable and missing == "cancel":
        finish(store, subscription, None)
        return None
    if not chargeable and missing == "pause":
        subscription["status"] = "paused"
        store.emit("customer.subscription.paused", subscription)
        announce(store, subscription, before)
        return None
    trial = (subscription["trial_start"], subscription["trial_end"])
    items = start_paid_periods(subscription, subscription["trial_end"])
    announce(store, subscription, before)
    return _cycle_invoice(store, subscription, items, trial)


def _cycle_invoice(
    store: Store, subscription: StripeObject, items: list[StripeObject], closed: tuple[int, int]
) -> StripeObject:
    """A new period's invoice: a draft (its period the one just closed), finalized and charged
    `finalize_after` later; an unpaid subscription's stays a draft, as on Stripe."""
    invoice = draft_invoice(store, subscription, "subscription_cycle", items, closed)
    if subscription["status"] == "unpaid":
        invoice["auto_advance"] = False
        return invoice
    finalizes_at = store.now() + store.billing.finalize_after
    invoice["automatically_finalizes_at"] = finalizes_at
    if invoice["collection_method"] == "charge_automatically":
        invoice["next_payment_attempt"] = finalizes_at
    return invoice


# Ahead of time: invoice.upcoming and previews ---------------------------------------------------


def _announce_upcoming(store: Store, subscription: StripeObject) -> None:
    """invoice.upcoming: a preview of the renewal, once for each period end."""
    end = period_end(subscription)
    timeline(store, subscription)["upcoming"] = end
    preview = _rehearse(store, subscription, {})
    if preview is not None:
        store.emit("invoice.upcoming", preview)


def _rehearse(
    store: Store,
    subscription: StripeObject,
    change: dict[str, Any],
    expand: list[str] | None = None,
) -> StripeObject | None:
    """The invoice a change would bill at once, else the next renewal's (after the change),
    as a preview: nothing is kept and nothing announced. What it names (its discounts) is
    expanded before it is undone."""
    with store.rehearsal():
        proration = change.get("proration_behavior", "create_prorations")
        invoice = apply_change(store, subscription, change, proration) if change else None
        if invoice is None:
            with store.at(period_end(subscription)):
                invoice = period_ended(store, subscription)
        preview = expanded(store, invoice, expand or []) if invoice else None
    return _as_preview(preview, change.get("proration_date")) if preview else None


def _rehearse_start(store: Store, start: dict[str, Any], expand: list[str]) -> StripeObject:
    """The first invoice a new subscription would bill, as a preview: the subscription is
    really created (and undone), its invoice shown as the draft it was before finalization."""
    with store.rehearsal():
        subscription = create_subscription(
            store, start | {"payment_behavior": "default_incomplete"}
        )
        invoice = store.objects[subscription["latest_invoice"]]
        preview = expanded(store, invoice, expand)
    return _as_preview(_as_draft(preview), None)


def _as_draft(invoice: StripeObject) -> StripeObject:
    """What finalizing (and paying a $0 invoice) added, taken off again."""
    invoice.update(
        status="draft",
        number=None,
        effective_at=None,
        hosted_invoice_url=None,
        invoice_pdf=None,
        due_date=None,
        ending_balance=None,
        amount_paid=0,
        amount_remaining=invoice["amount_due"],
        attempted=False,
        attempt_count=0,
        auto_advance=True,
    )
    invoice["status_transitions"] = dict.fromkeys(invoice["status_transitions"])
    return invoice


def _as_preview(invoice: StripeObject, proration_date: int | None) -> StripeObject:
    """Stripe names a preview `upcoming_in_…`; it cannot be retrieved."""
    preview_id = f"upcoming_{invoice['id']}"
    invoice.update(id=preview_id, automatically_finalizes_at=None, next_payment_attempt=None)
    invoice["lines"]["url"] = f"/v1/invoices/{preview_id}/lines"
    for line in invoice["lines"]["data"]:
        line["invoice"] = preview_id
    invoice["parent"]["subscription_details"]["subscription_proration_date"] = proration_date
    return invoice


@handles("POST", "/v1/invoices/create_preview")
def create_preview(call: Call) -> StripeObject:
    store, params = call.store, call.params
    refuse_unsupported(
        params,
        frozenset({"customer", "subscription", "subscription_details", *PREVIEWED_TERMS}),
        "invoice previews",
    )
    details = params.get("subscription_details") or {}
    terms = {name: params[name] for name in PREVIEWED_TERMS if name in params}
    expand = params.get("expand", [])
    if "subscription" not in params and "items" in details:
        refuse_unsupported(details, PREVIEWED_STARTS, "previews of new subscriptions")
        if "customer" not in params:
            raise invalid_request("Missing required param: customer.", param="customer")
        return _rehearse_start(store, details | terms | {"customer": params["customer"]}, expand)
    change = details | terms
    refuse_unsupported(details, PREVIEWED_CHANGES, "invoice previews' subscription_details")
    subscription = _previewed(store, params)
    _same_currency(subscription, change.pop("currency", None))
    if "proration_behavior" in change:
        one_of(
            change["proration_behavior"],
            PRORATION_BEHAVIORS,
            "subscription_details[proration_behavior]",
        )
    preview = _rehearse(store, subscription, change, expand)
    if preview is None:
        raise _nothing_upcoming(subscription["id"])
    return preview


def _same_currency(subscription: StripeObject, currency: str | None) -> None:
    """A subscription keeps the currency it started in."""
    if currency is not None and currency.lower() != subscription["currency"]:
        raise invalid_request(
            f"The subscription is billed in {subscription['currency']}; its currency cannot be "
            f"changed to {currency.lower()}.",
            param="currency",
        )


def _previewed(store: Store, params: dict[str, Any]) -> StripeObject:
    """The subscription named, else the customer's that renews first."""
    if "subscription" in params:
        subscription = store.get("subscription", params["subscription"], param="subscription")
        if params.get("customer") not in (None, subscription["customer"]):
            raise invalid_request(
                "The subscription does not belong to that customer.", param="subscription"
            )
    elif "customer" in params:
        customer = store.get("customer", params["customer"], param="customer")
        subscription = _first_to_renew(store, customer["id"])
    else:
        raise invalid_request(
            "The sandbox previews the invoices of existing subscriptions: pass `subscription` "
            "or `customer`.",
            param="subscription",
        )
    if subscription["status"] not in RENEWING:
        raise _nothing_upcoming(subscription["id"])
    return subscription


def _first_to_renew(store: Store, customer_id: str) -> StripeObject:
    """The customer's live subscription whose period ends first."""
    renewing = [
        subscription
        for subscription_id in store.ids_by_type["subscription"]
        if (subscription := store.objects[subscription_id])["customer"] == customer_id
        and subscription["status"] in RENEWING
    ]
    if not renewing:
        raise invalid_request(
            f"No upcoming invoices for customer: {customer_id}", code="invoice_upcoming_none"
        )
    return min(renewing, key=period_end)


def _nothing_upcoming(subscription_id: str) -> StripeError:
    return invalid_request(
        f"No upcoming invoices for subscription: {subscription_id}", code="invoice_upcoming_none"
    )
