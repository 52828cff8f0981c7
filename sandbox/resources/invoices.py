"""Invoices: built by subscriptions (draft -> finalized -> paid), paid through a PaymentIntent
linked by an `invoice_payment`; retrieve, list, lines, pay, finalize, void, mark_uncollectible.

The invoice follows its PaymentIntent through events: when the intent succeeds, fails or needs
3-D Secure (at once, or later in the browser), the hooks below update the invoice. As time
passes (sandbox/clocks.py), a renewal's draft is finalized and charged off-session, and a
failed renewal payment is retried on the schedule of `store.billing`."""

import copy
import functools
from collections.abc import Iterator
from typing import Any

from sandbox.errors import StripeError, invalid_request
from sandbox.registry import Call, Due, StripeObject, handles, includable, reacts_to, timer
from sandbox.resources import discounts, tax
from sandbox.resources.common import format_amount, metadata_update, one_of, refuse_unsupported
from sandbox.store import DAY, Store, blank, changed_fields

# What Stripe writes on the PaymentIntent of a subscription's invoice.
INTENT_DESCRIPTIONS = {
    "subscription_create": "Subscription creation",
    "subscription_update": "Subscription update",
    "subscription_cycle": "Subscription cycle",
}
# PaymentIntent states in which the customer still has to act (confirm, or authenticate).
AWAITING_CUSTOMER = ("requires_payment_method", "requires_confirmation", "requires_action")
NO_PAYMENT_METHOD = (
    "This customer has no attached payment source or default payment method. Please consider "
    "adding a default payment method. For more information, visit "
    "https://stripe.com/docs/billing/subscriptions/payment-methods-setting#payment-method-priority."
)
# Invoices Billing retries when their automatic payment fails (a first invoice is not retried:
# its subscription stays incomplete until the customer pays).
RETRIED_REASONS = ("subscription_cycle", "subscription_update")


def money(amount: int, currency: str) -> str:
    """`$29.00`, `-$9.67`: an amount as Stripe writes it in line descriptions."""
    return ("-" if amount < 0 else "") + format_amount(abs(amount), currency)


def new_invoice(
    store: Store,
    customer: StripeObject,
    *,
    currency: str,
    billing_reason: str,
    subscription: StripeObject | None = None,
    period: tuple[int, int] | None = None,
) -> StripeObject:
    """A draft invoice for the customer (of a subscription, if given), announced by the caller
    (invoice.created) once it has its lines."""
    now = store.now()
    start, end = period or (now, now)
    invoice = blank(
        "invoice",
        id=store.new_id("in"),
        account_country="US",
        account_name="Billing Gateway Sandbox",
        account_tax_ids=None,
        amount_due=0,
        amount_overpaid=0,
        amount_paid=0,
        amount_remaining=0,
        amount_shipping=0,
        attempt_count=0,
        attempted=False,
        auto_advance=True,
        automatic_tax=tax.invoice_automatic_tax(
            bool(((subscription or {}).get("automatic_tax") or {}).get("enabled"))
        ),
        billing_reason=billing_reason,
        collection_method=(subscription or {}).get("collection_method", "charge_automatically"),
        created=now,
        currency=currency,
        custom_fields=None,
        customer=customer["id"],
        customer_address=None,
        customer_email=customer["email"],
        customer_name=customer["name"],
        customer_phone=customer["phone"],
        customer_shipping=None,
        customer_tax_exempt=customer["tax_exempt"],
        customer_tax_ids=[],
        default_tax_rates=copy.deepcopy((subscription or {}).get("default_tax_rates") or []),
        discounts=discounts.for_new_invoice(store, subscription),
        due_date=None,
        issuer={"type": "self"},
        lines={"object": "list", "data": [], "has_more": False, "url": ""},
        metadata={},
        parent=_parent(subscription),
        payment_settings={
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        period_end=end,
        period_start=start,
        post_payment_credit_notes_amount=0,
        pre_payment_credit_notes_amount=0,
        rendering={
            "amount_tax_display": None,
            "pdf": {"page_size": "auto"},
            "template": None,
            "template_version": None,
        },
        starting_balance=0,
        status="draft",
        status_transitions={
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        subtotal=0,
        subtotal_excluding_tax=0,
        test_clock=customer["test_clock"],
        total=0,
        total_discount_amounts=[],
        total_excluding_tax=0,
        total_pretax_credit_amounts=[],
        total_taxes=[],
    )
    invoice["lines"]["url"] = f"/v1/invoices/{invoice['id']}/lines"
    store.add(invoice)
    return invoice


def _parent(subscription: StripeObject | None) -> StripeObject | None:
    if subscription is None:
        return None
    return {
        "type": "subscription_details",
        "quote_details": None,
        "subscription_details": {
            "metadata": copy.deepcopy(subscription["metadata"]),
            "subscription": subscription["id"],
            "subscription_proration_date": None,
        },
    }


def subscription_of(invoice: StripeObject) -> str | None:
    """The id of the subscription that billed this invoice, if one did."""
    details = (invoice["parent"] or {}).get("subscription_details") or {}
    return details.get("subscription")


def add_line(
    store: Store,
    invoice: StripeObject,
    *,
    amount: int,
    price: StripeObject,
    quantity: int,
    description: str,
    period: tuple[int, int],
    subscription_item: StripeObject | None = None,
    invoice_item: StripeObject | None = None,
) -> StripeObject:
    """Add one line, billed for a subscription item or a pending invoice item."""
    subscription_id = subscription_of(invoice)
    line = blank(
        "line_item",
        id=store.new_id("il"),
        amount=amount,
        currency=invoice["currency"],
        description=description,
        discount_amounts=[],
        discountable=not (invoice_item or {}).get("proration", False),
        discounts=[],
        invoice=invoice["id"],
        metadata={},
        parent=_line_parent(subscription_id, subscription_item, invoice_item),
        period={"start": period[0], "end": period[1]},
        pretax_credit_amounts=[],
        pricing={
            "type": "price_details",
            "price_details": {"price": price["id"], "product": price["product"]},
            "unit_amount_decimal": price["unit_amount_decimal"],
        },
        quantity=quantity,
        quantity_decimal=str(quantity),
        subscription=subscription_id,
        subtotal=amount,
        taxes=[],
    )
    invoice["lines"]["data"].append(line)
    total(store, invoice)
    return line


def _line_parent(
    subscription_id: str | None, item: StripeObject | None, invoice_item: StripeObject | None
) -> StripeObject:
    if item is None and invoice_item is not None:
        item_id = (
            (invoice_item["parent"] or {}).get("subscription_details", {}).get("subscription_item")
        )
        item = {"id": item_id} if item_id else None
    if item is None:
        assert invoice_item is not None, "a line bills a subscription item or an invoice item"
        details = {
            "invoice_item": invoice_item["id"],
            "proration": invoice_item["proration"],
            "proration_details": {"credited_items": None},
            "subscription": subscription_id,
        }
        return {
            "type": "invoice_item_details",
            "invoice_item_details": details,
            "subscription_item_details": None,
        }
    details = {
        "invoice_item": invoice_item["id"] if invoice_item else None,
        "proration": bool(invoice_item and invoice_item["proration"]),
        "proration_details": {"credited_items": None},
        "subscription": subscription_id,
        "subscription_item": item["id"],
    }
    return {
        "type": "subscription_item_details",
        "invoice_item_details": None,
        "subscription_item_details": details,
    }


def total(store: Store, invoice: StripeObject) -> None:
    """Stripe's order: the lines' subtotal, then discounts (sandbox/resources/discounts.py), then
    tax on what is left (sandbox/resources/tax.py); inclusive tax is already in the amounts."""
    subtotal = sum(line["amount"] for line in invoice["lines"]["data"])
    discounts.discount_lines(store, invoice)
    tax.tax_lines(store, invoice)
    discounted = subtotal - sum(entry["amount"] for entry in invoice["total_discount_amounts"])
    taxes = {"exclusive": 0, "inclusive": 0}
    for entry in invoice["total_taxes"]:
        taxes[entry["tax_behavior"]] += entry["amount"]
    total = discounted + taxes["exclusive"]
    invoice.update(
        subtotal=subtotal,
        subtotal_excluding_tax=subtotal - taxes["inclusive"],
        total=total,
        total_excluding_tax=total - taxes["exclusive"] - taxes["inclusive"],
    )
    if invoice["status"] == "draft":
        invoice["amount_due"] = invoice["amount_remaining"] = max(total, 0)


def new_invoice_item(
    store: Store,
    *,
    customer: str,
    subscription: StripeObject,
    item: StripeObject,
    price: StripeObject,
    quantity: int,
    amount: int,
    description: str,
    period: tuple[int, int],
) -> StripeObject:
    """A pending proration for a subscription item, billed on the subscription's next invoice."""
    invoice_item = blank(
        "invoiceitem",
        id=store.new_id("ii"),
        amount=amount,
        currency=subscription["currency"],
        customer=customer,
        date=store.now(),
        description=description,
        discountable=False,
        discounts=[],
        invoice=None,
        metadata={},
        net_amount=amount,
        parent={
            "type": "subscription_details",
            "subscription_details": {
                "subscription": subscription["id"],
                "subscription_item": item["id"],
            },
        },
        period={"start": period[0], "end": period[1]},
        pricing={
            "type": "price_details",
            "price_details": {"price": price["id"], "product": price["product"]},
            "unit_amount_decimal": price["unit_amount_decimal"],
        },
        proration=True,
        quantity=quantity,
        quantity_decimal=str(quantity),
        tax_rates=copy.deepcopy(item["tax_rates"]),
        test_clock=store.objects[customer]["test_clock"],
    )
    store.add(invoice_item)
    store.emit("invoiceitem.created", invoice_item)
    return invoice_item


def pending_items(store: Store, subscription_id: str) -> list[StripeObject]:
    """The subscription's invoice items not yet on an invoice, oldest first."""
    found = []
    for item_id in store.ids_by_type["invoiceitem"]:
        item = store.objects[item_id]
        details = (item["parent"] or {}).get("subscription_details") or {}
        if (
            not item.get("deleted")
            and item["invoice"] is None
            and (details.get("subscription") == subscription_id)
        ):
            found.append(item)
    return found


def add_pending_items(store: Store, invoice: StripeObject) -> None:
    """Move the subscription's pending invoice items onto this draft invoice."""
    for invoice_item in pending_items(store, subscription_of(invoice) or ""):
        invoice_item["invoice"] = invoice["id"]
        price = store.get("price", invoice_item["pricing"]["price_details"]["price"])
        period = invoice_item["period"]
        add_line(
            store,
            invoice,
            amount=invoice_item["amount"],
            price=price,
            quantity=invoice_item["quantity"],
            description=invoice_item["description"],
            period=(period["start"], period["end"]),
            invoice_item=invoice_item,
        )


def finalize(store: Store, invoice: StripeObject) -> StripeObject:
    """Draft -> open: number, customer balance applied, PaymentIntent created; $0 is paid."""
    if invoice["status"] != "draft":
        raise invalid_request(
            "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
            code="invoice_not_editable",
        )
    customer = store.objects[invoice["customer"]]
    now = store.now()
    # Tax is settled as the customer is now; the invoice keeps what it shows of them after.
    tax.settle(store, invoice)
    total(store, invoice)
    _apply_customer_balance(store, invoice, customer)
    token = store.new_id("test", 40).split("_", 1)[1]
    invoice.update(
        status="open",
        automatically_finalizes_at=None,
        number=f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}",
        effective_at=now,
        hosted_invoice_url=f"https://invoice.stripe.com/i/acct_sandbox/test_{token}?s=ap",
        invoice_pdf=f"https://pay.stripe.com/invoice/acct_sandbox/test_{token}/pdf?s=ap",
        customer_email=customer["email"],
        customer_name=customer["name"],
        customer_phone=customer["phone"],
    )
    customer["next_invoice_sequence"] += 1
    invoice["status_transitions"]["finalized_at"] = now
    if invoice["collection_method"] == "send_invoice":
        days = _days_until_due(store, invoice)
        invoice["due_date"] = now + days * 86400
    store.emit("invoice.finalized", invoice)
    if invoice["amount_due"] == 0:
        mark_paid(store, invoice)
    else:
        _create_intent(store, invoice)
    return invoice


def _days_until_due(store: Store, invoice: StripeObject) -> int:
    subscription = store.find("subscription", subscription_of(invoice) or "")
    return (subscription or {}).get("days_until_due") or 30


def _apply_customer_balance(store: Store, invoice: StripeObject, customer: StripeObject) -> None:
    """The customer's balance applies first (credit is negative); what the invoice cannot use,
    a negative total, or an amount below Stripe's minimum charge is carried to the balance."""
    from sandbox.resources.payment_intents import MINIMUM_AMOUNTS

    balance = customer["balance"] or 0
    net = invoice["total"] + balance
    due = max(net, 0)
    if due < MINIMUM_AMOUNTS.get(invoice["currency"], 50):
        # Stripe marks such an invoice paid and adds the amount to what the customer owes.
        due = 0
    invoice.update(
        starting_balance=balance, ending_balance=net - due, amount_due=due, amount_remaining=due
    )
    if net - due != balance:
        before = copy.deepcopy(customer)
        customer["balance"] = net - due
        store.emit("customer.updated", customer, changed_fields(before, customer))


def _create_intent(store: Store, invoice: StripeObject) -> StripeObject:
    from sandbox.resources import payment_intents

    intent = payment_intents.create_intent(
        store,
        amount=invoice["amount_due"],
        currency=invoice["currency"],
        customer=invoice["customer"],
        description=INTENT_DESCRIPTIONS.get(invoice["billing_reason"]),
        setup_future_usage=_setup_future_usage(store, invoice),
    )
    payment = blank(
        "invoice_payment",
        id=store.new_id("inpay"),
        amount_paid=None,
        amount_requested=invoice["amount_due"],
        created=store.now(),
        currency=invoice["currency"],
        invoice=invoice["id"],
        is_default=True,
        payment={"type": "payment_intent", "payment_intent": intent["id"]},
        status="open",
        status_transitions={"canceled_at": None, "paid_at": None},
    )
    store.add(payment)
    return intent


def _setup_future_usage(store: Store, invoice: StripeObject) -> str | None:
    # A card the customer confirms may be saved on the subscription; Stripe then asks for it
    # to be set up for later off-session charges.
    subscription = store.find("subscription", subscription_of(invoice) or "")
    settings = (subscription or {}).get("payment_settings") or {}
    return (
        "off_session" if settings.get("save_default_payment_method") == "on_subscription" else None
    )


def payments_of(store: Store, invoice_id: str) -> list[StripeObject]:
    """The invoice's invoice_payments, newest first."""
    return [
        store.objects[payment_id]
        for payment_id in reversed(store.ids_by_type["invoice_payment"])
        if store.objects[payment_id]["invoice"] == invoice_id
    ]


def open_intent(store: Store, invoice: StripeObject) -> StripeObject | None:
    """The PaymentIntent of the invoice's open default payment, if there is one."""
    for payment in payments_of(store, invoice["id"]):
        if payment["is_default"] and payment["status"] == "open":
            return store.objects[payment["payment"]["payment_intent"]]
    return None


def payment_method_for(store: Store, invoice: StripeObject) -> str | None:
    """The payment method Billing charges this invoice with, if there is one."""
    subscription = store.find("subscription", subscription_of(invoice) or "")
    return default_method_of(store, invoice["customer"], subscription)


def default_method_of(
    store: Store, customer_id: str, subscription: StripeObject | None
) -> str | None:
    """The subscription's default payment method, else the customer's invoice default."""
    if subscription is not None and subscription["default_payment_method"]:
        return subscription["default_payment_method"]
    return store.objects[customer_id]["invoice_settings"]["default_payment_method"]


def collect(
    store: Store,
    invoice: StripeObject,
    *,
    payment_method: str | None = None,
    off_session: bool = False,
) -> StripeObject:
    """Confirm the invoice's PaymentIntent; the hooks below follow the outcome. Raises Stripe's
    402 on a decline (after the invoice has recorded the failure)."""
    from sandbox.resources import payment_intents

    intent = open_intent(store, invoice)
    assert intent is not None, "an open invoice with an amount due has a PaymentIntent"
    method = payment_method or payment_method_for(store, invoice)
    if method is None:
        raise invalid_request(NO_PAYMENT_METHOD, code="resource_missing")
    return payment_intents.confirm_intent(
        store, intent, payment_method=method, off_session=off_session
    )


def _invoice_paid_by(
    store: Store, intent: StripeObject
) -> tuple[StripeObject, StripeObject] | None:
    for payment_id in store.ids_by_type["invoice_payment"]:
        payment = store.objects[payment_id]
        if payment["payment"].get("payment_intent") == intent["id"]:
            return store.objects[payment["invoice"]], payment
    return None


@reacts_to("payment_intent.succeeded")
def _intent_succeeded(store: Store, intent: StripeObject) -> None:
    found = _invoice_paid_by(store, intent)
    if found is not None and found[0]["status"] == "open":
        invoice, payment = found
        _attempted(store, invoice, intent)
        mark_paid(store, invoice, payment, intent)


@reacts_to("payment_intent.payment_failed")
def _intent_failed(store: Store, intent: StripeObject) -> None:
    found = _invoice_paid_by(store, intent)
    if found is not None and found[0]["status"] == "open":
        _payment_failed(store, found[0], intent)


def _payment_failed(store: Store, invoice: StripeObject, intent: StripeObject | None) -> None:
    """Record a failed attempt (without an intent: nothing could be charged), schedule the
    next one, and announce it."""
    if intent is None:
        invoice.update(attempted=True, attempt_count=invoice["attempt_count"] + 1)
    else:
        _attempted(store, invoice, intent)
    if _retried(invoice):
        invoice["next_payment_attempt"] = _next_retry(store, invoice["attempt_count"])
    store.emit("invoice.payment_failed", invoice)
    _tell_subscription(store, invoice, "invoice_payment_failed")


def _retried(invoice: StripeObject) -> bool:
    """Whether Billing retries this invoice when its automatic payment fails."""
    return (
        invoice["billing_reason"] in RETRIED_REASONS
        and invoice["collection_method"] == "charge_automatically"
        and invoice["auto_advance"]
    )


def _next_retry(store: Store, attempts: int) -> int | None:
    """After `attempts` failed attempts: the time of the next retry, None after the last."""
    schedule = store.billing.retry_days
    return store.now() + schedule[attempts - 1] * DAY if attempts <= len(schedule) else None


def retries_exhausted(store: Store, invoice: StripeObject) -> bool:
    """Whether Billing has made its last retry of this invoice, in vain."""
    return _retried(invoice) and invoice["attempt_count"] > len(store.billing.retry_days)


def _attempt_payment(store: Store, invoice: StripeObject) -> None:
    """Billing's automatic, off-session attempt to collect an open invoice."""
    invoice["next_payment_attempt"] = None
    try:
        collect(store, invoice, off_session=True)
    except StripeError as error:
        # A decline (402) was recorded by the hooks; anything else left nothing to charge.
        if error.status != 402:
            _payment_failed(store, invoice, None)


@timer
def _due(store: Store) -> Iterator[Due]:
    """Drafts to finalize and charge; failed payments to retry."""
    for invoice_id in store.ids_by_type["invoice"]:
        invoice = store.objects[invoice_id]
        if not invoice["auto_advance"]:
            continue
        if invoice["status"] == "draft" and invoice["automatically_finalizes_at"] is not None:
            run = functools.partial(_finalize_and_charge, store, invoice)
            yield Due(invoice["automatically_finalizes_at"], invoice["customer"], run)
        elif invoice["status"] == "open" and invoice["next_payment_attempt"] is not None:
            run = functools.partial(_attempt_payment, store, invoice)
            yield Due(invoice["next_payment_attempt"], invoice["customer"], run)


def _finalize_and_charge(store: Store, invoice: StripeObject) -> None:
    finalize(store, invoice)
    if invoice["status"] == "open" and invoice["collection_method"] == "charge_automatically":
        _attempt_payment(store, invoice)


@reacts_to("payment_intent.requires_action")
def _intent_requires_action(store: Store, intent: StripeObject) -> None:
    found = _invoice_paid_by(store, intent)
    if found is not None and found[0]["status"] == "open":
        _attempted(store, found[0], intent)
        store.emit("invoice.payment_action_required", found[0])
        _tell_subscription(store, found[0], "invoice_payment_failed")


def _attempted(store: Store, invoice: StripeObject, intent: StripeObject) -> None:
    """Count a payment attempt; the end of a 3-D Secure challenge is the same attempt."""
    invoice["attempted"] = True
    if not _finishes_authentication(store, intent):
        invoice["attempt_count"] += 1


def _finishes_authentication(store: Store, intent: StripeObject) -> bool:
    # The event now being reacted to is the newest; look at the one before it for this intent.
    seen_current = False
    for event_id in reversed(store.ids_by_type["event"]):
        event = store.objects[event_id]
        if not event["type"].startswith("payment_intent.") or (
            event["data"]["object"]["id"] != intent["id"]
        ):
            continue
        if seen_current:
            return event["type"] == "payment_intent.requires_action"
        seen_current = True
    return False


def mark_paid(
    store: Store,
    invoice: StripeObject,
    payment: StripeObject | None = None,
    intent: StripeObject | None = None,
) -> None:
    """Open -> paid; emits invoice.paid, invoice.payment_succeeded (and invoice_payment.paid)."""
    now = store.now()
    invoice.update(
        status="paid",
        amount_paid=invoice["amount_due"],
        amount_remaining=0,
        attempted=True,
        auto_advance=False,
        next_payment_attempt=None,
    )
    invoice["status_transitions"]["paid_at"] = now
    if payment is not None:
        payment.update(status="paid", amount_paid=payment["amount_requested"])
        payment["status_transitions"]["paid_at"] = now
    store.emit("invoice.paid", invoice)
    store.emit("invoice.payment_succeeded", invoice)
    if payment is not None:
        store.emit("invoice_payment.paid", payment)
    _tell_subscription(store, invoice, "invoice_paid", intent)


def _tell_subscription(store: Store, invoice: StripeObject, what: str, *args: Any) -> None:
    if subscription_of(invoice) is None:
        return
    from sandbox.resources import subscriptions

    getattr(subscriptions, what)(store, invoice, *args)


def void(store: Store, invoice: StripeObject) -> StripeObject:
    """Open or uncollectible -> void; its PaymentIntent is canceled."""
    from sandbox.resources import payment_intents

    if invoice["status"] not in ("open", "uncollectible"):
        raise invalid_request(
            f"You can only void an open or uncollectible invoice; this one is {invoice['status']}."
        )
    now = store.now()
    for payment in payments_of(store, invoice["id"]):
        if payment["status"] == "open":
            intent = store.objects[payment["payment"]["payment_intent"]]
            payment_intents.cancel_intent(store, intent, reason="void_invoice")
            payment["status"] = "canceled"
            payment["status_transitions"]["canceled_at"] = now
    invoice.update(status="void", amount_remaining=0, auto_advance=False, next_payment_attempt=None)
    invoice["status_transitions"]["voided_at"] = now
    store.emit("invoice.voided", invoice)
    return invoice


@includable("invoice", "confirmation_secret")
def confirmation_secret(store: Store, invoice: StripeObject) -> StripeObject | None:
    """The client_secret of the PaymentIntent the customer still has to confirm, if any."""
    if invoice["status"] != "open":
        return None
    intent = open_intent(store, invoice)
    if intent is None or intent["status"] not in AWAITING_CUSTOMER:
        return None
    return {"client_secret": intent["client_secret"], "type": "payment_intent"}


@includable("invoice", "payments")
def payments(store: Store, invoice: StripeObject) -> StripeObject:
    data = [copy.deepcopy(payment) for payment in payments_of(store, invoice["id"])]
    return {
        "object": "list",
        "data": data,
        "has_more": False,
        "url": f"/v1/invoice_payments?invoice={invoice['id']}",
    }


@handles("GET", "/v1/invoices/{invoice}")
def retrieve(call: Call) -> StripeObject:
    return call.store.get("invoice", call.args["invoice"])


@handles("GET", "/v1/invoices")
def list_invoices(call: Call) -> StripeObject:
    params = call.params
    if "status" in params:
        one_of(params["status"], ("draft", "open", "paid", "uncollectible", "void"), "status")

    def keep(invoice: StripeObject) -> bool:
        checks = [
            "customer" not in params or invoice["customer"] == params["customer"],
            "subscription" not in params or subscription_of(invoice) == params["subscription"],
            "status" not in params or invoice["status"] == params["status"],
            "collection_method" not in params
            or invoice["collection_method"] == params["collection_method"],
        ]
        return all(checks)

    return call.store.list_objects("invoice", params, "/v1/invoices", keep)


@handles("GET", "/v1/invoices/{invoice}/lines")
def list_lines(call: Call) -> StripeObject:
    invoice = call.store.get("invoice", call.args["invoice"], param="invoice")
    return page(invoice["lines"]["data"], call.params, invoice["lines"]["url"])


def page(items: list[StripeObject], params: dict[str, Any], url: str) -> StripeObject:
    """A Stripe list over items in their own order, paged like the store's lists."""
    limit = params.get("limit", 10)
    if not 1 <= limit <= 100:
        raise invalid_request(
            "This value must be greater than or equal to 1 and less than or equal to 100.",
            param="limit",
        )
    ids = [item["id"] for item in items]
    start, end = 0, len(items)
    for cursor_param in ("starting_after", "ending_before"):
        cursor = params.get(cursor_param)
        if cursor and cursor not in ids:
            raise invalid_request(
                f"No such object: '{cursor}'",
                param=cursor_param,
                code="resource_missing",
                status=404,
            )
    if params.get("starting_after"):
        start = ids.index(params["starting_after"]) + 1
    if params.get("ending_before"):
        end = ids.index(params["ending_before"])
        start = max(start, end - limit)
    chosen = items[start:end][:limit]
    has_more = start > 0 if params.get("ending_before") else start + len(chosen) < end
    return {"object": "list", "data": chosen, "has_more": has_more, "url": url}


@handles("POST", "/v1/invoices/{invoice}")
def update(call: Call) -> StripeObject:
    invoice = call.store.get("invoice", call.args["invoice"])
    refuse_unsupported(
        call.params, frozenset({"metadata", "description", "footer", "auto_advance"}), "invoices"
    )
    before = copy.deepcopy(invoice)
    if "metadata" in call.params:
        invoice["metadata"] = metadata_update(invoice["metadata"], call.params["metadata"])
    for name in ("description", "footer", "auto_advance"):
        if name in call.params:
            invoice[name] = call.params[name] if call.params[name] != "" else None
    changes = changed_fields(before, invoice)
    if changes:
        call.store.emit("invoice.updated", invoice, changes)
    return invoice


@handles("POST", "/v1/invoices/{invoice}/finalize")
def finalize_invoice(call: Call) -> StripeObject:
    invoice = call.store.get("invoice", call.args["invoice"])
    if "auto_advance" in call.params:
        invoice["auto_advance"] = call.params["auto_advance"]
    return finalize(call.store, invoice)


@handles("POST", "/v1/invoices/{invoice}/pay")
def pay(call: Call) -> StripeObject:
    store, params = call.store, call.params
    invoice = store.get("invoice", call.args["invoice"])
    _check_payable(invoice)
    if invoice["status"] == "draft":
        finalize(store, invoice)
        if invoice["status"] == "paid":
            return invoice
    if params.get("paid_out_of_band"):
        _paid_out_of_band(store, invoice)
        return invoice
    method = params.get("payment_method")
    if method:
        from sandbox.resources import payment_methods

        method = payment_methods.owned(store, method, invoice["customer"])["id"]
    intent = collect(
        store, invoice, payment_method=method, off_session=params.get("off_session", True)
    )
    if intent["status"] == "requires_action":
        raise requires_action_error(intent)
    return invoice


def _check_payable(invoice: StripeObject) -> None:
    if invoice["status"] == "paid":
        raise invalid_request("Invoice is already paid")
    if invoice["status"] == "void":
        raise invalid_request("Voided invoices cannot be paid.")


def _paid_out_of_band(store: Store, invoice: StripeObject) -> None:
    from sandbox.resources import payment_intents

    for payment in payments_of(store, invoice["id"]):
        if payment["status"] == "open":
            intent = store.objects[payment["payment"]["payment_intent"]]
            payment_intents.cancel_intent(store, intent, reason="void_invoice")
            payment["status"] = "canceled"
            payment["status_transitions"]["canceled_at"] = store.now()
    mark_paid(store, invoice)


def requires_action_error(intent: StripeObject) -> StripeError:
    return StripeError(
        402,
        "card_error",
        "This payment requires additional user action before it can be completed successfully. "
        "Payment can be completed using the PaymentIntent associated with the invoice. For more "
        "details see: https://stripe.com/docs/billing/subscriptions/overview#requires-action",
        code="invoice_payment_intent_requires_action",
        payment_intent={"id": intent["id"], "status": intent["status"]},
    )


@handles("POST", "/v1/invoices/{invoice}/void")
def void_invoice(call: Call) -> StripeObject:
    return void(call.store, call.store.get("invoice", call.args["invoice"]))


@handles("POST", "/v1/invoices/{invoice}/mark_uncollectible")
def mark_uncollectible(call: Call) -> StripeObject:
    invoice = call.store.get("invoice", call.args["invoice"])
    if invoice["status"] != "open":
        raise invalid_request(
            f"You can only mark an open invoice as uncollectible; this one is {invoice['status']}."
        )
    invoice.update(status="uncollectible", next_payment_attempt=None)
    invoice["status_transitions"]["marked_uncollectible_at"] = call.store.now()
    call.store.emit("invoice.marked_uncollectible", invoice)
    return invoice


@handles("GET", "/v1/invoiceitems/{invoiceitem}")
def retrieve_item(call: Call) -> StripeObject:
    return call.store.get("invoiceitem", call.args["invoiceitem"])


@handles("GET", "/v1/invoiceitems")
def list_items(call: Call) -> StripeObject:
    params = call.params

    def keep(item: StripeObject) -> bool:
        checks = [
            "customer" not in params or item["customer"] == params["customer"],
            "invoice" not in params or item["invoice"] == params["invoice"],
            "pending" not in params or (item["invoice"] is None) == params["pending"],
        ]
        return all(checks)

    return call.store.list_objects("invoiceitem", params, "/v1/invoiceitems", keep)
