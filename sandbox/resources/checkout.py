"""Checkout Sessions: create, retrieve, list, expire; and the customer completing the hosted
page (`POST /_sandbox/checkout/sessions/{id}/complete`), which creates the customer if needed,
saves the card and starts the subscription or takes the payment.

A subscription session takes a coupon or promotion code (`discounts`), or lets the customer
type a promotion code on the page (`allow_promotion_codes`); the subscription it starts
carries the discount (sandbox/resources/discounts.py). It is taxed by Stripe Tax
(`automatic_tax`, for a customer with an address: the sandbox's page collects none) or by
`subscription_data.default_tax_rates`, as its invoices will be (sandbox/resources/tax.py)."""

from typing import Any

from sandbox.errors import StripeError, invalid_request, missing_parameter
from sandbox.registry import Call, StripeObject, handles
from sandbox.resources import discounts, tax_rates
from sandbox.resources.browser import browser_action
from sandbox.resources.common import in_range, metadata_update, one_of, refuse_unsupported
from sandbox.store import Store, blank

MODES = ("payment", "setup", "subscription")
LIFETIME = 24 * 3600
# What the sandbox keeps of a session that Stripe's session object does not show.
DETAILS = "sandbox.checkout_details"
SUPPORTED = frozenset(
    {
        "mode",
        "line_items",
        "customer",
        "customer_email",
        "success_url",
        "cancel_url",
        "client_reference_id",
        "metadata",
        "subscription_data",
        "payment_intent_data",
        "expires_at",
        "locale",
        "ui_mode",
        "return_url",
        "currency",
        "payment_method_types",
        "allow_promotion_codes",
        "discounts",
        "billing_address_collection",
        "customer_creation",
        "payment_method_collection",
        "submit_type",
        "automatic_tax",
    }
)
SUPPORTED_SUBSCRIPTION_DATA = frozenset(
    {
        "metadata",
        "description",
        "trial_period_days",
        "trial_end",
        "trial_settings",
        "default_tax_rates",
    }
)
SUPPORTED_INTENT_DATA = frozenset(
    {
        "metadata",
        "description",
        "setup_future_usage",
        "receipt_email",
        "statement_descriptor",
        "statement_descriptor_suffix",
    }
)


@handles("POST", "/v1/checkout/sessions")
def create(call: Call) -> StripeObject:
    store, params = call.store, call.params
    refuse_unsupported(params, SUPPORTED, "Checkout Sessions")
    refuse_unsupported(
        params.get("subscription_data") or {},
        SUPPORTED_SUBSCRIPTION_DATA,
        "Checkout Sessions' subscription_data",
    )
    refuse_unsupported(
        params.get("payment_intent_data") or {},
        SUPPORTED_INTENT_DATA,
        "Checkout Sessions' payment_intent_data",
    )
    if "mode" not in params:
        raise missing_parameter("mode")
    mode = one_of(params["mode"], MODES, "mode")
    if "customer" in params and "customer_email" in params:
        raise invalid_request(
            "You may only specify one of these parameters: customer, customer_email.",
            param="customer",
        )
    customer = (
        store.get("customer", params["customer"], param="customer")
        if ("customer" in params)
        else None
    )
    lines = _line_items(store, params.get("line_items") or [], mode)
    params = params | {"currency": _session_currency(store, params, mode, customer, lines)}
    automatic = _automatic_tax(params, mode, customer)
    subscription_data = params.get("subscription_data") or {}
    tax_rates.applied(
        store, subscription_data.get("default_tax_rates"), "subscription_data[default_tax_rates]"
    )
    discounted = _discounts(store, params, mode, customer, lines)
    session = store.add(_new_session(store, params, mode, customer, lines, automatic))
    details = store.add(
        {
            "id": f"{session['id']}:details",
            "object": DETAILS,
            "lines": lines,
            "subscription_data": subscription_data,
            "payment_intent_data": params.get("payment_intent_data") or {},
            "discounts": params.get("discounts") or [],
        }
    )
    _show_totals(store, session, details, *discounted)
    return session


def _automatic_tax(params: dict[str, Any], mode: str, customer: StripeObject | None) -> bool:
    from sandbox.resources import tax

    if not (params.get("automatic_tax") or {}).get("enabled"):
        return False
    if mode != "subscription" or customer is None:
        raise invalid_request(
            "The sandbox supports `automatic_tax` on Checkout Sessions in `subscription` mode "
            "for a `customer` only: its page collects no address.",
            param="automatic_tax[enabled]",
        )
    if tax.location_of(customer) is None:
        raise invalid_request(
            "Automatic tax calculation in Checkout requires a valid address on the Customer. "
            "Add a valid address to the Customer or set either `customer_update[address]` or "
            "`customer_update[shipping]` to 'auto' to save the address entered in Checkout to "
            "the Customer.",
            param="automatic_tax[enabled]",
        )
    return True


def _discounts(
    store: Store,
    params: dict[str, Any],
    mode: str,
    customer: StripeObject | None,
    lines: list[list[Any]],
) -> tuple[list[StripeObject], list[int]]:
    """The session's `discounts`, checked: what the session shows, and the amount taken off
    each line."""
    entries = params.get("discounts") or []
    if not entries:
        return [], [0] * len(lines)
    if params.get("allow_promotion_codes"):
        raise invalid_request(
            "You may only specify one of these parameters: allow_promotion_codes, discounts.",
            param="allow_promotion_codes",
        )
    if mode != "subscription":
        raise invalid_request(
            "The sandbox supports `discounts` on Checkout Sessions in `subscription` mode only.",
            param="discounts",
        )
    if len(entries) > 1:
        raise invalid_request(
            "A Checkout Session takes only one discount: pass one coupon or promotion code.",
            param="discounts",
        )
    return discounts.for_checkout(
        store, entries, _purchase(store, customer, lines, params["currency"])
    )


def _session_currency(
    store: Store,
    params: dict[str, Any],
    mode: str,
    customer: StripeObject | None,
    lines: list[list[Any]],
) -> str | None:
    """The currency the session sells in: `currency` if every price sells in it, else the
    customer's, else the prices' own (sandbox/resources/prices.py); one customer, one currency."""
    from sandbox.resources import customers, prices

    if not lines:
        return params.get("currency")
    chosen = [store.objects[price_id] for price_id, _ in lines]
    currency = prices.currency_for(store, customer, chosen, params.get("currency"))
    if customer is not None and mode == "subscription":
        customers.check_currency(store, customer, currency)
    return currency


def _purchase(
    store: Store, customer: StripeObject | None, lines: list[list[Any]], currency: str
) -> discounts.Purchase:
    from sandbox.resources.prices import amount_in

    chosen = [(store.objects[price_id], quantity) for price_id, quantity in lines]
    return discounts.Purchase(
        customer["id"] if customer else None,
        currency,
        [
            (amount_in(store, price, currency) * quantity, price["product"])
            for price, quantity in chosen
        ],
    )


def _show_totals(
    store: Store,
    session: StripeObject,
    details: StripeObject,
    shown: list[StripeObject],
    taken: list[int],
) -> None:
    """The session's discounts, and its totals after them and tax."""
    from sandbox.resources import prices, tax

    session["discounts"] = shown
    if session["total_details"] is None:
        return
    chosen = [store.objects[price_id] for price_id, _ in details["lines"]]
    nets = [
        prices.amount_in(store, price, session["currency"]) * quantity - off
        for (price, (_, quantity)), off in zip(zip(chosen, details["lines"]), taken, strict=True)
    ]
    customer = store.objects[session["customer"]] if session["customer"] else None
    rates = tax_rates.applied(
        store,
        details["subscription_data"].get("default_tax_rates"),
        "subscription_data[default_tax_rates]",
    )
    taxed, added = tax.purchase_taxes(
        store,
        customer,
        session["currency"],
        list(zip(nets, chosen, strict=True)),
        session["automatic_tax"]["enabled"],
        rates,
    )
    session["total_details"].update(amount_discount=sum(taken), amount_tax=taxed)
    session["amount_total"] = session["amount_subtotal"] - sum(taken) + added


def _line_items(store: Store, entries: list[dict[str, Any]], mode: str) -> list[list[Any]]:
    """[[price id, quantity], ...], checked as Checkout checks them for the mode."""
    if mode == "setup":
        if entries:
            raise invalid_request("line_items cannot be used in `setup` mode.", param="line_items")
        return []
    if not entries:
        raise missing_parameter("line_items")
    lines = []
    for index, entry in enumerate(entries):
        price = _line_price(store, entry, f"line_items[{index}]")
        if "quantity" not in entry:
            raise invalid_request(
                f"Quantity is required. Add `quantity` to `line_items[{index}]`",
                param=f"line_items[{index}][quantity]",
            )
        lines.append([price["id"], entry["quantity"]])
    _check_mode(store, [store.objects[price_id] for price_id, _ in lines], mode)
    return lines


def _line_price(store: Store, entry: dict[str, Any], path: str) -> StripeObject:
    from sandbox.resources import prices, products

    if "price" in entry:
        price = store.get("price", entry["price"], param=f"{path}[price]")
        if not price["active"]:
            raise invalid_request(
                f"The price `{price['id']}` is not available to be purchased because it is not "
                "active.",
                param=f"{path}[price]",
            )
        return price
    if "price_data" not in entry:
        raise missing_parameter(f"{path}[price]")
    data = dict(entry["price_data"])
    if "product_data" in data:
        product = products.create_product(store, data.pop("product_data"))
    elif "product" in data:
        product = store.get("product", data["product"], param=f"{path}[price_data][product]")
    else:
        raise missing_parameter(f"{path}[price_data][product]")
    data.pop("product", None)
    return prices.create_price(store, {**data, "active": False}, product["id"])


def _check_mode(store: Store, chosen: list[StripeObject], mode: str) -> None:
    recurring = [price for price in chosen if price["type"] == "recurring"]
    if mode == "payment" and recurring:
        raise invalid_request(
            "You specified `payment` mode but passed a recurring price. Either switch to "
            "`subscription` mode or use only one-time prices.",
            param="line_items",
        )
    if mode == "subscription" and not recurring:
        raise invalid_request(
            "You must provide at least one recurring price in `subscription` mode when using "
            "prices.",
            param="line_items",
        )
    if mode == "subscription" and len(chosen) != len(recurring):
        # One-time prices would go on the first invoice as invoice items, not modelled yet.
        raise invalid_request(
            "The sandbox supports recurring prices only in `subscription` mode.",
            param="line_items",
        )
    if len({price["currency"] for price in chosen}) > 1:
        raise invalid_request("All line items must have the same currency.", param="line_items")


def _new_session(
    store: Store,
    params: dict[str, Any],
    mode: str,
    customer: StripeObject | None,
    lines: list[list[Any]],
    automatic: bool,
) -> StripeObject:
    from sandbox.resources.prices import amount_in

    now = store.now()
    chosen = [(store.objects[price_id], quantity) for price_id, quantity in lines]
    total = sum(amount_in(store, price, params["currency"]) * qty for price, qty in chosen)
    session_id = store.new_id("cs_test", 58)
    return blank(
        "checkout.session",
        id=session_id,
        adaptive_pricing={"enabled": False},
        after_expiration=None,
        allow_promotion_codes=params.get("allow_promotion_codes"),
        amount_subtotal=total if lines else None,
        amount_total=total if lines else None,
        automatic_tax={
            "enabled": automatic,
            "liability": {"account": None, "type": "self"} if automatic else None,
            "provider": "stripe" if automatic else None,
            "status": "complete" if automatic else None,
        },
        billing_address_collection=params.get("billing_address_collection"),
        cancel_url=params.get("cancel_url"),
        client_reference_id=params.get("client_reference_id"),
        client_secret=None,
        collected_information=None,
        consent=None,
        consent_collection=None,
        created=now,
        currency=params["currency"],
        currency_conversion=None,
        custom_fields=[],
        custom_text={
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
        },
        customer=customer["id"] if customer else None,
        customer_account=None,
        customer_creation=_customer_creation(params, mode, customer),
        customer_details=_customer_details(customer) if customer else None,
        customer_email=params.get("customer_email"),
        discounts=[],
        expires_at=params.get("expires_at", now + LIFETIME),
        integration_identifier=None,
        invoice=None,
        invoice_creation=_invoice_creation(mode),
        locale=params.get("locale"),
        managed_payments={"enabled": False},
        metadata=metadata_update({}, params.get("metadata")),
        mode=mode,
        origin_context=None,
        payment_intent=None,
        payment_link=None,
        payment_method_collection=params.get("payment_method_collection", "always")
        if mode != "payment"
        else None,
        payment_method_configuration_details=None,
        payment_method_options={},
        payment_method_types=params.get("payment_method_types", ["card"]),
        payment_status="no_payment_required" if mode == "setup" else "unpaid",
        permissions=None,
        phone_number_collection={"enabled": False},
        recovered_from=None,
        saved_payment_method_options=None,
        setup_intent=None,
        shipping_address_collection=None,
        shipping_cost=None,
        shipping_options=[],
        status="open",
        submit_type=params.get("submit_type"),
        subscription=None,
        success_url=params.get("success_url"),
        total_details={"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0}
        if lines
        else None,
        ui_mode=params.get("ui_mode", "hosted_page"),
        url=f"https://checkout.stripe.com/c/pay/{session_id}",
        wallet_options=None,
    )


def _customer_creation(params: dict[str, Any], mode: str, customer: StripeObject | None) -> Any:
    if customer is not None:
        return None
    if mode == "payment":
        return one_of(
            params.get("customer_creation", "if_required"),
            ("always", "if_required"),
            "customer_creation",
        )
    # Subscriptions and saved cards always need a customer.
    return "always"


def _invoice_creation(mode: str) -> StripeObject | None:
    if mode != "payment":
        return None
    return {
        "enabled": False,
        "invoice_data": {
            "account_tax_ids": None,
            "custom_fields": None,
            "description": None,
            "footer": None,
            "issuer": None,
            "metadata": {},
            "rendering_options": None,
        },
    }


def _customer_details(customer: StripeObject) -> StripeObject:
    return {
        "address": None,
        "business_name": None,
        "email": customer["email"],
        "individual_name": None,
        "name": customer["name"],
        "phone": customer["phone"],
        "tax_exempt": customer["tax_exempt"],
        "tax_ids": [],
    }


@handles("GET", "/v1/checkout/sessions/{session}")
def retrieve(call: Call) -> StripeObject:
    return call.store.get("checkout.session", call.args["session"], param="session")


@handles("GET", "/v1/checkout/sessions")
def list_sessions(call: Call) -> StripeObject:
    params = call.params
    email = (params.get("customer_details") or {}).get("email")

    def keep(session: StripeObject) -> bool:
        checks = [
            "customer" not in params or session["customer"] == params["customer"],
            "status" not in params or session["status"] == params["status"],
            "subscription" not in params or session["subscription"] == params["subscription"],
            "payment_intent" not in params or session["payment_intent"] == params["payment_intent"],
            "payment_link" not in params or session["payment_link"] == params["payment_link"],
            email is None or (session["customer_details"] or {}).get("email") == email,
            in_range(session["created"], params.get("created")),
        ]
        return all(checks)

    return call.store.list_objects("checkout.session", params, "/v1/checkout/sessions", keep)


@handles("POST", "/v1/checkout/sessions/{session}/expire")
def expire(call: Call) -> StripeObject:
    session = call.store.get("checkout.session", call.args["session"], param="session")
    if session["status"] != "open":
        raise invalid_request(
            f'Only Checkout Sessions with a status in ["open"] can be expired. This session '
            f'has a status of "{session["status"]}".'
        )
    session.update(status="expired", url=None)
    call.store.emit("checkout.session.expired", session)
    return session


# The customer on the hosted page ----------------------------------------------------------------


@browser_action("/_sandbox/checkout/sessions/{id}/complete")
def complete(store: Store, args: dict[str, str], form: dict[str, Any]) -> StripeObject:
    """The customer pays (or saves a card) on the hosted page with a test card (default
    pm_card_visa), having typed a promotion code (`promotion_code`) if the session allows it.
    A declined card or a refused code is answered with Stripe's error and the session stays
    open."""
    session = store.get("checkout.session", args["id"], param="id")
    if session["status"] != "open" or session["expires_at"] <= store.now():
        raise invalid_request(
            f"This Checkout Session is {session['status']}; it cannot be completed."
        )
    details, typed = _with_typed_code(
        store, session, store.objects[f"{session['id']}:details"], form
    )
    customer = _session_customer(store, session, form)
    card = form.get("payment_method", "pm_card_visa")
    if session["mode"] == "payment":
        _take_payment(store, session, details, customer, card)
    else:
        assert customer is not None, "subscription and setup sessions always have a customer"
        start = _start_subscription if session["mode"] == "subscription" else _set_up
        start(store, session, details, customer, card)
    if typed is not None:
        _show_totals(store, session, details, *typed)
    session.update(status="complete", url=None)
    if customer is not None:
        session["customer"] = customer["id"]
        session["customer_details"] = _customer_details(customer)
    else:
        # A guest: Stripe records the details typed on the page, without a Customer.
        email = session["customer_email"] or form.get("email") or "customer@example.com"
        session["customer_details"] = _customer_details(
            {"email": email, "name": form.get("name"), "phone": None, "tax_exempt": "none"}
        )
    store.emit("checkout.session.completed", session)
    return session


def _with_typed_code(
    store: Store, session: StripeObject, details: StripeObject, form: dict[str, Any]
) -> tuple[StripeObject, tuple[list[StripeObject], int] | None]:
    """The details to complete the session with, the promotion code the customer typed among
    them, and what the session shows of it (None without one). It is checked before anything
    is created; the stored details keep no code the customer may still change."""
    code = form.get("promotion_code")
    if not code:
        return details, None
    if not session["allow_promotion_codes"] or session["mode"] != "subscription":
        raise invalid_request(
            "This Checkout Session does not accept promotion codes.", param="promotion_code"
        )
    entry = discounts.typed_code(store, code, session["customer"])
    customer = store.objects[session["customer"]] if session["customer"] else None
    purchase = _purchase(store, customer, details["lines"], session["currency"])
    typed = discounts.for_checkout(store, [entry], purchase)
    return {**details, "discounts": [entry]}, typed


def _session_customer(
    store: Store, session: StripeObject, form: dict[str, Any]
) -> StripeObject | None:
    from sandbox.registry import Call as ApiCall
    from sandbox.resources import customers

    if session["customer"]:
        return store.get("customer", session["customer"])
    if session["customer_creation"] == "if_required":
        return None
    email = session["customer_email"] or form.get("email") or "customer@example.com"
    params = {"email": email} | ({"name": form["name"]} if form.get("name") else {})
    assert store.current_request is not None
    return customers.create(ApiCall(store, params, {}, store.current_request, "/v1/customers"))


def _start_subscription(
    store: Store,
    session: StripeObject,
    details: StripeObject,
    customer: StripeObject,
    card: str,
) -> None:
    from sandbox.resources import payment_methods, subscriptions

    # Checkout saves the card to the customer and makes it the subscription's default.
    method = payment_methods.attach_to(store, card, customer["id"], "payment_method")
    data = details["subscription_data"]
    lines = [(store.objects[price_id], quantity, None) for price_id, quantity in details["lines"]]
    trial = {key: data[key] for key in ("trial_period_days", "trial_end") if key in data}
    params = {
        "metadata": data.get("metadata"),
        "description": data.get("description"),
        "trial_settings": data.get("trial_settings"),
        "discounts": details.get("discounts", []),
        "currency": session["currency"],
        "automatic_tax": {"enabled": session["automatic_tax"]["enabled"]},
        "default_tax_rates": data.get("default_tax_rates"),
    }
    # On the hosted page a failed payment is shown to the customer and nothing is created.
    subscription = subscriptions.start_subscription(
        store,
        customer,
        lines,
        params,
        behavior="error_if_incomplete",
        default_method=method["id"],
        trial_end=subscriptions.trial_end_of(store, trial, [price for price, _, _ in lines]),
    )
    session["subscription"] = subscription["id"]
    session["invoice"] = subscription["latest_invoice"]
    paid = store.objects[subscription["latest_invoice"]]["amount_paid"] > 0
    session["payment_status"] = "paid" if paid else "no_payment_required"


def _take_payment(
    store: Store,
    session: StripeObject,
    details: StripeObject,
    customer: StripeObject | None,
    card: str,
) -> None:
    from sandbox.resources import payment_intents, payment_methods

    # A one-off payment does not save the card (unless setup_future_usage asks to).
    method = payment_methods.resolve(store, card, "payment_method")
    data = details["payment_intent_data"]
    intent = payment_intents.create_intent(
        store,
        amount=session["amount_total"],
        currency=session["currency"],
        customer=customer["id"] if customer else None,
        payment_method=method["id"],
        description=data.get("description"),
        metadata=data.get("metadata"),
        setup_future_usage=data.get("setup_future_usage"),
    )
    session["payment_intent"] = intent["id"]
    intent = payment_intents.confirm_intent(store, intent)
    if intent["status"] != "succeeded":
        raise _not_authenticated(intent)
    session["payment_status"] = "paid"


def _not_authenticated(intent: StripeObject) -> StripeError:
    # The hosted page would run 3-D Secure itself; the sandbox's page cannot, so it says so.
    return invalid_request(
        f"The sandbox's Checkout page cannot run 3-D Secure; {intent['id']} requires_action. "
        "Use a card without authentication."
    )


def _set_up(
    store: Store,
    session: StripeObject,
    details: StripeObject,
    customer: StripeObject,
    card: str,
) -> None:
    from sandbox.registry import Call as ApiCall
    from sandbox.resources import setup_intents

    # The card is saved through a SetupIntent, which attaches it to the customer.
    params = {
        "customer": customer["id"],
        "payment_method": card,
        "confirm": True,
        "usage": "off_session",
        "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
    }
    assert store.current_request is not None
    intent = setup_intents.create(
        ApiCall(store, params, {}, store.current_request, "/v1/setup_intents")
    )
    session["setup_intent"] = intent["id"]
    if intent["status"] != "succeeded":
        raise _not_authenticated(intent)
