"""SetupIntents: save a card for later (checked as Stripe checks it), 3-D Secure, cancel, list.

On success the card is attached to the intent's customer, if it has one.
"""

import copy
from typing import Any

from sandbox.errors import StripeError, invalid_request
from sandbox.registry import Call, StripeObject, handles
from sandbox.resources.browser import browser_action
from sandbox.resources.common import (
    apply_update,
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
    check_usable,
    decline_error,
    existing_customer,
    link,
    method_types,
    require_pending_authentication,
    resolve,
    save_decline,
)
from sandbox.store import Store, blank

PENDING = ("requires_payment_method", "requires_confirmation", "requires_action")
USAGES = ("off_session", "on_session")
CANCELLATION_REASONS = ("abandoned", "duplicate", "requested_by_customer")
CARD_OPTIONS = {
    "card": {"mandate_options": None, "network": None, "request_three_d_secure": "automatic"}
}
AUTHENTICATION_FAILED = (
    "The latest attempt to set up the payment method has failed because authentication failed."
)
MISSING_METHOD = (
    "You cannot confirm this SetupIntent because it's missing a payment method. You can either "
    "update the SetupIntent with a payment method and then confirm it again, or confirm it "
    "again directly with a payment method."
)
CONFIRM_ONLY = ("return_url", "use_stripe_sdk")
SUPPORTED_CREATE = frozenset(
    {"customer", "payment_method", "usage", "confirm", "metadata", "description"}
    | {"allowed_payment_method_types", "excluded_payment_method_types"}
    | {"automatic_payment_methods", "flow_directions"}
    | set(CONFIRM_ONLY)
)
SUPPORTED_UPDATE = frozenset({"customer", "description", "metadata", "payment_method"})


def get_setup_intent(store: Store, intent_id: str, param: str | None = "intent") -> StripeObject:
    """A SetupIntent, or Stripe's 404."""
    return store.get("setup_intent", intent_id, param=param, kind="setupintent")


@handles("POST", "/v1/setup_intents")
def create(call: Call) -> StripeObject:
    params = call.params
    refuse_unsupported(params, SUPPORTED_CREATE, "POST /v1/setup_intents")
    for name in CONFIRM_ONLY:
        if name in params and not params.get("confirm"):
            raise invalid_request(
                f"The parameter `{name}` can only be used when `confirm` is true.", param=name
            )
    types, automatic = method_types(params)
    customer = params.get("customer") or None
    intent_id = call.store.new_id("seti")
    intent = blank(
        "setup_intent",
        id=intent_id,
        automatic_payment_methods=automatic,
        client_secret=f"{intent_id}_{call.store.new_id('secret', 32)}",
        created=call.store.now(),
        customer=existing_customer(call.store, customer, "customer")["id"] if customer else None,
        description=params.get("description"),
        excluded_payment_method_types=params.get("excluded_payment_method_types"),
        flow_directions=params.get("flow_directions"),
        metadata=metadata_update({}, params.get("metadata")),
        payment_method_options=copy.deepcopy(CARD_OPTIONS),
        payment_method_types=types,
        status="requires_payment_method",
        usage=one_of(params.get("usage", "off_session"), USAGES, "usage"),
    )
    if params.get("payment_method"):
        _set_method(call.store, intent, params["payment_method"])
    elif params.get("confirm"):
        # Refused before anything is created: there is nothing to confirm.
        raise invalid_request(MISSING_METHOD, param="payment_method")
    call.store.add(intent)
    call.store.emit("setup_intent.created", intent)
    if params.get("confirm"):
        _confirm(call.store, intent, None, params.get("return_url"))
    return intent


@handles("GET", "/v1/setup_intents/{intent}")
def retrieve(call: Call) -> StripeObject:
    return get_setup_intent(call.store, call.args["intent"])


@handles("POST", "/v1/setup_intents/{intent}")
def update(call: Call) -> StripeObject:
    params = call.params
    refuse_unsupported(params, SUPPORTED_UPDATE, "POST /v1/setup_intents/{intent}")
    intent = get_setup_intent(call.store, call.args["intent"])
    for name in ("customer", "payment_method"):
        if name in params and intent["status"] not in PENDING:
            raise _unexpected_state(
                intent,
                f"You cannot update this SetupIntent's {name} because it has a status of "
                f"{intent['status']}.",
            )
    if "customer" in params:
        customer = params["customer"] or None
        intent["customer"] = (
            existing_customer(call.store, customer, "customer")["id"] if customer else None
        )
    if params.get("payment_method"):
        _set_method(call.store, intent, params["payment_method"])
    apply_update(intent, params, ("description",))
    return intent


@handles("POST", "/v1/setup_intents/{intent}/confirm")
def confirm(call: Call) -> StripeObject:
    supported = frozenset({"payment_method"} | set(CONFIRM_ONLY))
    refuse_unsupported(call.params, supported, "POST /v1/setup_intents/{intent}/confirm")
    intent = get_setup_intent(call.store, call.args["intent"])
    return _confirm(
        call.store, intent, call.params.get("payment_method"), call.params.get("return_url")
    )


@handles("POST", "/v1/setup_intents/{intent}/cancel")
def cancel(call: Call) -> StripeObject:
    intent = get_setup_intent(call.store, call.args["intent"])
    reason = call.params.get("cancellation_reason")
    if reason is not None:
        one_of(reason, CANCELLATION_REASONS, "cancellation_reason")
    if intent["status"] not in PENDING:
        raise _unexpected_state(
            intent,
            f"You cannot cancel this SetupIntent because it has a status of {intent['status']}. "
            f"Only a SetupIntent with one of the following statuses may be canceled: "
            f"{', '.join(PENDING)}.",
        )
    intent.update(status="canceled", cancellation_reason=reason, next_action=None)
    call.store.emit("setup_intent.canceled", intent)
    return intent


@handles("GET", "/v1/setup_intents")
def list_setup_intents(call: Call) -> StripeObject:
    params = call.params

    def keep(intent: StripeObject) -> bool:
        return (
            params.get("customer") in (None, intent["customer"])
            and params.get("payment_method") in (None, intent["payment_method"])
            and in_range(intent["created"], params.get("created"))
        )

    return call.store.list_objects("setup_intent", params, "/v1/setup_intents", keep)


@browser_action("/_sandbox/setup_intents/{id}/authenticate")
def authenticate(store: Store, args: dict[str, str], params: dict[str, Any]) -> StripeObject:
    """The customer completes (outcome=succeed) or fails (outcome=fail) 3-D Secure."""
    intent = get_setup_intent(store, args["id"], "id")
    succeeds = authentication_succeeds(params)
    require_pending_authentication(intent, "SetupIntent")
    method = store.objects[intent["payment_method"]]
    if succeeds:
        return _succeed(store, intent, method)
    error = StripeError(
        400,
        "invalid_request_error",
        AUTHENTICATION_FAILED,
        code="setup_intent_authentication_failure",
        payment_method=copy.deepcopy(method),
    )
    _set_failed(store, intent, error)
    return intent


def _confirm(
    store: Store, intent: StripeObject, method_id: str | None, return_url: str | None
) -> StripeObject:
    if intent["status"] not in PENDING:
        raise _unexpected_state(intent, _not_confirmable(intent["status"]))
    if method_id:
        _set_method(store, intent, method_id)
    if intent["payment_method"] is None:
        raise _unexpected_state(intent, MISSING_METHOD)
    method = store.objects[intent["payment_method"]]
    check_usable(store, method, intent["customer"], "SetupIntent")
    if behaviour(method).requires_authentication:
        intent.update(
            status="requires_action",
            next_action=authentication_action(store, intent["id"], return_url),
        )
        store.emit("setup_intent.requires_action", intent)
        return intent
    if decline := save_decline(method):
        _decline(store, intent, method, decline)
    return _succeed(store, intent, method)


def _succeed(store: Store, intent: StripeObject, method: StripeObject) -> StripeObject:
    intent.update(status="succeeded", next_action=None, last_setup_error=None)
    if intent["customer"] and method["customer"] is None:
        link(store, method, intent["customer"])
    store.emit("setup_intent.succeeded", intent)
    return intent


def _decline(store: Store, intent: StripeObject, method: StripeObject, decline: Decline) -> None:
    _set_failed(store, intent, decline_error(decline, payment_method=method))
    raise decline_error(decline, payment_method=method, setup_intent=intent)


def _set_failed(store: Store, intent: StripeObject, error: StripeError) -> None:
    intent.update(
        status="requires_payment_method",
        last_setup_error=error.body,
        payment_method=None,
        next_action=None,
    )
    store.emit("setup_intent.setup_failed", intent)


def _set_method(store: Store, intent: StripeObject, method_id: str) -> None:
    method = resolve(store, method_id, "payment_method")
    check_usable(store, method, intent["customer"], "SetupIntent")
    intent.update(payment_method=method["id"], status="requires_confirmation", next_action=None)


def _not_confirmable(status: str) -> str:
    if status == "succeeded":
        return "You cannot confirm this SetupIntent because it has already succeeded."
    return (
        f"You cannot confirm this SetupIntent because it has a status of {status}. Only a "
        "SetupIntent with one of the following statuses may be confirmed: "
        "requires_payment_method, requires_confirmation, requires_action."
    )


def _unexpected_state(intent: StripeObject, message: str) -> StripeError:
    return StripeError(
        400,
        "invalid_request_error",
        message,
        code="setup_intent_unexpected_state",
        setup_intent=copy.deepcopy(intent),
    )
