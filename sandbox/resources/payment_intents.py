"""PaymentIntents: create, confirm (the test card decides), 3-D Secure, update, cancel, list.

Every attempt makes a charge; every outcome is announced (payment_intent.succeeded /
payment_failed / requires_action), since billing reacts to those events.
"""

import contextlib
import copy
import re
from collections.abc import Iterator
from typing import Any

from sandbox.errors import StripeError, invalid_request
from sandbox.registry import Call, StripeObject, handles
from sandbox.resources.browser import browser_action
from sandbox.resources.charges import create_charge
from sandbox.resources.common import (
    apply_update,
    format_amount,
    in_range,
    metadata_update,
    one_of,
    refuse_unsupported,
)
from sandbox.resources.payment_methods import (
    Decline,
    authentication_action,
    authentication_succeeds,
    behaviour,
    charge_decline,
    check_usable,
    decline_error,
    existing_customer,
    link,
    method_types,
    require_pending_authentication,
    resolve,
)
from sandbox.store import Store, blank

PENDING = ("requires_payment_method", "requires_confirmation", "requires_action")
CANCELABLE = (
    "requires_payment_method",
    "requires_capture",
    "requires_confirmation",
    "requires_action",
    "processing",
)
FUTURE_USAGES = ("off_session", "on_session")
CANCELLATION_REASONS = ("abandoned", "duplicate", "fraudulent", "requested_by_customer")
# Stripe's minimum charge per currency, in the currency's smallest unit.
MINIMUM_AMOUNTS = {
    "usd": 50, "eur": 50, "gbp": 30, "cad": 50, "aud": 50, "chf": 50, "nzd": 50, "sgd": 50,
    "jpy": 50, "brl": 50, "inr": 50, "hkd": 400, "dkk": 250, "nok": 300, "sek": 300,
    "pln": 200, "czk": 1500, "huf": 17500, "mxn": 1000, "ron": 200, "bgn": 100, "aed": 200,
    "myr": 200, "thb": 1000,
}  # fmt: skip
MAXIMUM_AMOUNT = 99_999_999
CARD_OPTIONS = {
    "card": {
        "installments": None,
        "mandate_options": None,
        "network": None,
        "request_three_d_secure": "automatic",
    }
}
RETURN_URL_REQUIRED = (
    "A `return_url` must be specified because this Payment Intent is configured to "
    "automatically accept the payment methods enabled in the Dashboard, some of which may "
    "require a full page redirect to succeed. If you do not want to accept redirect-based "
    "payment methods, set `automatic_payment_methods[enabled]` to `true` and "
    "`automatic_payment_methods[allow_redirects]` to `never` when creating Setup Intents and "
    "Payment Intents."
)
AUTHENTICATION_FAILED = (
    "The provided PaymentMethod has failed authentication. You can provide payment_method_data "
    "or a new PaymentMethod to attempt to fulfill this PaymentIntent again."
)
MISSING_METHOD = (
    "You cannot confirm this PaymentIntent because it's missing a payment method. You can "
    "either update the PaymentIntent with a payment method and then confirm it again, or "
    "confirm it again directly with a payment method or ConfirmationToken."
)
CONFIRM_ONLY = ("off_session", "return_url", "error_on_requires_action", "use_stripe_sdk")
SUPPORTED_CREATE = frozenset(
    {"amount", "currency", "customer", "description", "metadata", "payment_method", "confirm"}
    | {"receipt_email", "setup_future_usage", "automatic_payment_methods", "capture_method"}
    | {"allowed_payment_method_types", "excluded_payment_method_types", "confirmation_method"}
    | {"statement_descriptor", "statement_descriptor_suffix", "transfer_group"}
    | set(CONFIRM_ONLY)
)
SUPPORTED_CONFIRM = frozenset(
    {"payment_method", "receipt_email", "setup_future_usage", "capture_method"} | set(CONFIRM_ONLY)
)
SUPPORTED_UPDATE = frozenset(
    {"amount", "currency", "customer", "description", "metadata", "payment_method"}
    | {"receipt_email", "setup_future_usage", "statement_descriptor_suffix", "transfer_group"}
)
# Fields that change what is paid: Stripe lets them change only before the payment.
PAYMENT_FIELDS = ("amount", "currency", "customer", "payment_method", "setup_future_usage")


# --- public functions other modules call -----------------------------------------------


def create_intent(
    store: Store,
    *,
    amount: int,
    currency: str,
    customer: str | None,
    payment_method: str | None = None,
    description: str | None = None,
    metadata: dict | None = None,
    setup_future_usage: str | None = None,
) -> StripeObject:
    """A card PaymentIntent (as an invoice makes one), announced but not confirmed."""
    currency = _currency(currency)
    _check_amount(amount, currency)
    intent = _build(
        store,
        amount=amount,
        currency=currency,
        customer=_customer_id(store, customer),
        description=description,
        metadata=dict(metadata or {}),
        setup_future_usage=_future_usage({"setup_future_usage": setup_future_usage}),
    )
    return _open(store, intent, payment_method)


def confirm_intent(
    store: Store,
    intent: StripeObject,
    *,
    payment_method: str | None = None,
    off_session: bool = False,
) -> StripeObject:
    """Pay with the intent's card; a decline raises Stripe's 402 after announcing it."""
    return _confirm(store, intent, payment_method, off_session=off_session)


def cancel_intent(store: Store, intent: StripeObject, *, reason: str | None = None) -> StripeObject:
    """Cancel an unpaid intent and announce payment_intent.canceled."""
    if intent["status"] not in CANCELABLE:
        raise _unexpected_state(
            intent,
            f"You cannot cancel this PaymentIntent because it has a status of "
            f"{intent['status']}. Only a PaymentIntent with one of the following statuses may "
            f"be canceled: {', '.join(CANCELABLE)}.",
        )
    intent.update(
        status="canceled", canceled_at=store.now(), cancellation_reason=reason, next_action=None
    )
    store.emit("payment_intent.canceled", intent)
    return intent


def get_intent(store: Store, intent_id: str, param: str | None = "intent") -> StripeObject:
    """A PaymentIntent, or Stripe's 404."""
    return store.get("payment_intent", intent_id, param=param, kind="payment_intent")


# --- API handlers ----------------------------------------------------------------------


@handles("POST", "/v1/payment_intents")
def create(call: Call) -> StripeObject:
    params = call.params
    refuse_unsupported(params, SUPPORTED_CREATE, "POST /v1/payment_intents")
    _check_supported_values(params)
    _check_confirm_only(params)
    currency = _currency(params["currency"])
    _check_amount(params["amount"], currency)
    types, automatic = method_types(params)
    if "statement_descriptor" in params and "card" in types:
        raise invalid_request(
            "The `statement_descriptor` parameter is not supported for the `card` payment "
            "method type. Use `statement_descriptor_suffix` instead.",
            param="statement_descriptor",
        )
    intent = _build(
        call.store,
        amount=params["amount"],
        currency=currency,
        customer=_customer_id(call.store, params.get("customer") or None),
        description=params.get("description"),
        metadata=metadata_update({}, params.get("metadata")),
        receipt_email=params.get("receipt_email"),
        setup_future_usage=_future_usage(params),
        automatic_payment_methods=automatic,
        payment_method_types=types,
        excluded_payment_method_types=params.get("excluded_payment_method_types"),
        capture_method=params.get("capture_method", "automatic_async"),
        statement_descriptor=params.get("statement_descriptor"),
        statement_descriptor_suffix=params.get("statement_descriptor_suffix"),
        transfer_group=params.get("transfer_group"),
    )
    if params.get("confirm"):
        # Refusals of the confirmation itself come before anything is created.
        _check_return_url(automatic, params.get("return_url"), bool(params.get("off_session")))
        if not params.get("payment_method"):
            raise invalid_request(MISSING_METHOD, param="payment_method")
    _open(call.store, intent, params.get("payment_method"))
    if params.get("confirm"):
        _confirm_from_params(call.store, intent, params)
    return intent


@handles("GET", "/v1/payment_intents/{intent}")
def retrieve(call: Call) -> StripeObject:
    return get_intent(call.store, call.args["intent"])


@handles("POST", "/v1/payment_intents/{intent}")
def update(call: Call) -> StripeObject:
    params = call.params
    refuse_unsupported(params, SUPPORTED_UPDATE, "POST /v1/payment_intents/{intent}")
    intent = get_intent(call.store, call.args["intent"])
    for name in PAYMENT_FIELDS:
        if name in params and intent["status"] not in PENDING:
            raise _unexpected_state(
                intent,
                f"This PaymentIntent's {name} could not be updated because it has a status of "
                f"{intent['status']}. You may only update the {name} of a PaymentIntent with "
                f"one of the following statuses: {', '.join(PENDING)}.",
            )
    with _all_or_nothing(intent):
        _apply_update(call.store, intent, params)
    return intent


@handles("POST", "/v1/payment_intents/{intent}/confirm")
def confirm(call: Call) -> StripeObject:
    refuse_unsupported(call.params, SUPPORTED_CONFIRM, "POST /v1/payment_intents/{intent}/confirm")
    _check_supported_values(call.params)
    intent = get_intent(call.store, call.args["intent"])
    with _all_or_nothing(intent):
        if "receipt_email" in call.params:
            intent["receipt_email"] = call.params["receipt_email"] or None
        if "setup_future_usage" in call.params:
            intent["setup_future_usage"] = _future_usage(call.params)
        return _confirm_from_params(call.store, intent, call.params)


@handles("POST", "/v1/payment_intents/{intent}/cancel")
def cancel(call: Call) -> StripeObject:
    intent = get_intent(call.store, call.args["intent"])
    reason = call.params.get("cancellation_reason")
    if reason is not None:
        one_of(reason, CANCELLATION_REASONS, "cancellation_reason")
    return cancel_intent(call.store, intent, reason=reason)


@handles("GET", "/v1/payment_intents")
def list_intents(call: Call) -> StripeObject:
    params = call.params

    def keep(intent: StripeObject) -> bool:
        return params.get("customer") in (None, intent["customer"]) and in_range(
            intent["created"], params.get("created")
        )

    return call.store.list_objects("payment_intent", params, "/v1/payment_intents", keep)


@browser_action("/_sandbox/payment_intents/{id}/authenticate")
def authenticate(store: Store, args: dict[str, str], params: dict[str, Any]) -> StripeObject:
    """The customer completes (outcome=succeed) or fails (outcome=fail) 3-D Secure."""
    intent = get_intent(store, args["id"], "id")
    succeeds = authentication_succeeds(params)
    require_pending_authentication(intent, "PaymentIntent")
    method = store.objects[intent["payment_method"]]
    if succeeds:
        _attempt(store, intent, method, charge_decline(method, off_session=False), True)
    else:
        _fail_authentication(store, intent, method)
    return intent


def _apply_update(store: Store, intent: StripeObject, params: dict[str, Any]) -> None:
    currency = _currency(params["currency"] if "currency" in params else intent["currency"])
    amount = params["amount"] if "amount" in params else intent["amount"]
    _check_amount(amount, currency)
    intent.update(amount=amount, currency=currency)
    if "customer" in params:
        intent["customer"] = _customer_id(store, params["customer"] or None)
    if "setup_future_usage" in params:
        intent["setup_future_usage"] = _future_usage(params)
    if params.get("payment_method"):
        _set_method(store, intent, params["payment_method"])
    elif params.get("payment_method") == "":
        intent.update(payment_method=None, status="requires_payment_method", next_action=None)
    fields = ("description", "receipt_email", "statement_descriptor_suffix", "transfer_group")
    apply_update(intent, params, fields)


@contextlib.contextmanager
def _all_or_nothing(intent: StripeObject) -> Iterator[None]:
    """A refused request leaves the intent as it was (Stripe applies all of it or none)."""
    before = copy.deepcopy(intent)
    try:
        yield
    except StripeError as error:
        # A decline (402) is an outcome the intent records, not a refusal of the request.
        if error.status != 402:
            intent.clear()
            intent.update(before)
        raise


# --- the payment -----------------------------------------------------------------------


def _confirm_from_params(
    store: Store, intent: StripeObject, params: dict[str, Any]
) -> StripeObject:
    return _confirm(
        store,
        intent,
        params.get("payment_method"),
        off_session=bool(params.get("off_session", False)),
        return_url=params.get("return_url"),
        error_on_requires_action=params.get("error_on_requires_action", False),
    )


def _confirm(
    store: Store,
    intent: StripeObject,
    method_id: str | None,
    *,
    off_session: bool,
    return_url: str | None = None,
    error_on_requires_action: bool = False,
) -> StripeObject:
    _check_confirmable(intent)
    _check_return_url(intent["automatic_payment_methods"], return_url, off_session)
    if method_id:
        _set_method(store, intent, method_id)
    if intent["payment_method"] is None:
        raise _unexpected_state(intent, MISSING_METHOD)
    method = store.objects[intent["payment_method"]]
    check_usable(store, method, intent["customer"], "PaymentIntent")
    # A card that always asks for 3-D Secure cannot be challenged without the customer.
    cannot_challenge = off_session or error_on_requires_action
    if behaviour(method).requires_authentication and not cannot_challenge:
        intent.update(
            status="requires_action",
            next_action=authentication_action(store, intent["id"], return_url),
        )
        store.emit("payment_intent.requires_action", intent)
        return intent
    return _attempt(
        store, intent, method, charge_decline(method, off_session=cannot_challenge), False
    )


def _attempt(
    store: Store,
    intent: StripeObject,
    method: StripeObject,
    decline: Decline | None,
    authenticated: bool,
) -> StripeObject:
    charge = create_charge(store, intent, method, decline=decline, authenticated=authenticated)
    intent.update(latest_charge=charge["id"], next_action=None)
    if decline is not None:
        error = decline_error(decline, charge=charge["id"], payment_method=method)
        intent.update(
            status="requires_payment_method", last_payment_error=error.body, payment_method=None
        )
        store.emit("payment_intent.payment_failed", intent)
        raise decline_error(
            decline, charge=charge["id"], payment_intent=intent, payment_method=method
        )
    intent.update(status="succeeded", amount_received=intent["amount"], last_payment_error=None)
    # Paying "for future usage" saves the card to the customer, as a SetupIntent would.
    if intent["setup_future_usage"] and intent["customer"] and method["customer"] is None:
        link(store, method, intent["customer"])
    store.emit("payment_intent.succeeded", intent)
    return intent


def _fail_authentication(store: Store, intent: StripeObject, method: StripeObject) -> None:
    error = StripeError(
        400,
        "invalid_request_error",
        AUTHENTICATION_FAILED,
        code="payment_intent_authentication_failure",
        payment_method=copy.deepcopy(method),
    )
    intent.update(
        status="requires_payment_method",
        last_payment_error=error.body,
        payment_method=None,
        next_action=None,
    )
    store.emit("payment_intent.payment_failed", intent)


def _check_confirmable(intent: StripeObject) -> None:
    status = intent["status"]
    if status == "succeeded":
        raise _unexpected_state(
            intent,
            "You cannot confirm this PaymentIntent because it has already succeeded after "
            "being previously confirmed.",
        )
    if status not in PENDING:
        raise _unexpected_state(
            intent,
            f"You cannot confirm this PaymentIntent because it has a status of {status}. Only "
            "a PaymentIntent with one of the following statuses may be confirmed: "
            "requires_confirmation, requires_payment_method, requires_action.",
        )


def _unexpected_state(intent: StripeObject, message: str) -> StripeError:
    return StripeError(
        400,
        "invalid_request_error",
        message,
        code="payment_intent_unexpected_state",
        payment_intent=copy.deepcopy(intent),
    )


# --- building and checking -------------------------------------------------------------


def _build(store: Store, **fields: Any) -> StripeObject:
    intent_id = store.new_id("pi")
    intent = blank(
        "payment_intent",
        id=intent_id,
        amount_capturable=0,
        amount_details={"tip": {}},
        amount_received=0,
        capture_method="automatic_async",
        client_secret=f"{intent_id}_{store.new_id('secret', 25)}",
        confirmation_method="automatic",
        created=store.now(),
        metadata={},
        payment_method_options=copy.deepcopy(CARD_OPTIONS),
        payment_method_types=["card"],
        status="requires_payment_method",
    )
    intent.update(fields)
    return intent


def _open(store: Store, intent: StripeObject, method_id: str | None) -> StripeObject:
    """Take the intent's payment method (if any), store the intent and announce it."""
    if method_id:
        _set_method(store, intent, method_id)
    store.add(intent)
    store.emit("payment_intent.created", intent)
    return intent


def _set_method(store: Store, intent: StripeObject, method_id: str) -> None:
    method = resolve(store, method_id, "payment_method")
    if method["type"] not in intent["payment_method_types"]:
        allowed = ", ".join(intent["payment_method_types"])
        raise invalid_request(
            f"The PaymentMethod provided ({method['type']}) is not allowed for this "
            "PaymentIntent. Please attach a PaymentMethod of one of the following types: "
            f"{allowed}. Alternatively, update the allowed payment_method_types for this "
            f'PaymentIntent to include "{method["type"]}".',
            param="payment_method",
        )
    check_usable(store, method, intent["customer"], "PaymentIntent")
    intent.update(payment_method=method["id"], status="requires_confirmation", next_action=None)


def _check_supported_values(params: dict[str, Any]) -> None:
    capture = params.get("capture_method")
    if capture is not None:
        one_of(capture, ("automatic", "automatic_async", "manual"), "capture_method")
        if capture == "manual":
            raise invalid_request(
                "The sandbox does not support manual capture (capture_method=manual).",
                param="capture_method",
            )
    confirmation = params.get("confirmation_method")
    if (
        confirmation is not None
        and one_of(confirmation, ("automatic", "manual"), "confirmation_method") == "manual"
    ):
        raise invalid_request(
            "The sandbox does not support confirmation_method=manual.",
            param="confirmation_method",
        )


def _check_return_url(
    automatic: StripeObject | None, return_url: str | None, off_session: bool
) -> None:
    # Redirect-based methods send the customer away; Stripe needs to know where they return.
    settings = automatic or {}
    allows_redirects = settings.get("enabled") and settings.get("allow_redirects") != "never"
    if allows_redirects and not return_url and not off_session:
        raise invalid_request(RETURN_URL_REQUIRED, param="return_url")


def _check_confirm_only(params: dict[str, Any]) -> None:
    for name in CONFIRM_ONLY:
        if name in params and not params.get("confirm"):
            raise invalid_request(
                f"The parameter `{name}` can only be used when `confirm` is true.", param=name
            )


def _future_usage(params: dict[str, Any]) -> str | None:
    value = params.get("setup_future_usage") or None
    return value and one_of(value, FUTURE_USAGES, "setup_future_usage")


def _currency(value: str) -> str:
    currency = value.lower()
    if not re.fullmatch(r"[a-z]{3}", currency):
        raise invalid_request(f"Invalid currency: {value}.", param="currency")
    return currency


def _check_amount(amount: int, currency: str) -> None:
    if amount < 0:
        raise invalid_request(
            "Invalid positive integer", param="amount", code="parameter_invalid_integer"
        )
    if amount < 1:
        raise invalid_request("This value must be greater than or equal to 1.", param="amount")
    minimum = MINIMUM_AMOUNTS.get(currency, 1)
    if amount < minimum:
        raise invalid_request(
            f"Amount must be at least {format_amount(minimum, currency)} {currency}",
            param="amount",
            code="amount_too_small",
        )
    if amount > MAXIMUM_AMOUNT:
        raise invalid_request(
            f"Amount must be no more than {format_amount(MAXIMUM_AMOUNT, currency)} {currency}",
            param="amount",
            code="amount_too_large",
        )


def _customer_id(store: Store, customer_id: str | None) -> str | None:
    return existing_customer(store, customer_id, "customer")["id"] if customer_id else None
