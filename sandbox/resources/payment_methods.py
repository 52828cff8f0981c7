"""Payment methods: Stripe's test cards, attach/detach to customers, update, list.

As in Stripe test mode, a test token (`pm_card_visa`, ...) used where a payment method is
expected becomes a new PaymentMethod each time. A card behaves by its last four digits.
Raw card numbers are refused and never stored.
"""

import copy
import hashlib
import time
from dataclasses import dataclass
from typing import Any

from sandbox.errors import StripeError, invalid_request, no_such
from sandbox.registry import Call, StripeObject, handles
from sandbox.resources.common import metadata_update, one_of, refuse_unsupported
from sandbox.store import Store, blank


@dataclass(frozen=True)
class CardBehaviour:
    brand: str
    last4: str
    country: str = "US"
    funding: str = "credit"
    # Stripe's decline code when this card is charged (None: the charge succeeds).
    decline_code: str | None = None
    # Stripe validates a card when it is saved; these cards fail that check too.
    declines_when_saved: bool = False
    # 3-D Secure on every payment and setup, even after the card was set up.
    requires_authentication: bool = False


TEST_CARDS = {
    card.last4: card
    for card in (
        CardBehaviour("visa", "4242"),
        CardBehaviour("mastercard", "4444"),
        CardBehaviour("visa", "0002", decline_code="generic_decline", declines_when_saved=True),
        CardBehaviour("visa", "9995", decline_code="insufficient_funds", declines_when_saved=True),
        CardBehaviour("visa", "0341", decline_code="generic_decline"),
        CardBehaviour("visa", "3184", country="DE", requires_authentication=True),
    )
}
# Test PaymentMethod ids and card tokens (`card[token]`), by the last4 of their card.
TEST_METHODS = {
    "pm_card_visa": "4242",
    "pm_card_mastercard": "4444",
    "pm_card_chargeDeclined": "0002",
    "pm_card_chargeDeclinedInsufficientFunds": "9995",
    "pm_card_chargeCustomerFail": "0341",
    "pm_card_authenticationRequired": "3184",
}
TEST_TOKENS = {
    "tok_visa": "4242",
    "tok_mastercard": "4444",
    "tok_chargeDeclined": "0002",
    "tok_chargeDeclinedInsufficientFunds": "9995",
    "tok_chargeCustomerFail": "0341",
}

DECLINE_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "authentication_required": "Your card was declined. This transaction requires authentication.",
}
RAW_CARD_MESSAGE = (
    "Sending credit card numbers directly to the Stripe API is generally unsafe. We suggest "
    "you use test tokens that map to the test card you are using, see "
    "https://stripe.com/docs/testing. To enable testing raw card data APIs, see "
    "https://support.stripe.com/questions/enabling-access-to-raw-card-data-apis."
)
SUPPORTED_CREATE = frozenset({"type", "card", "billing_details", "metadata", "allow_redisplay"})
SUPPORTED_UPDATE = frozenset({"billing_details", "metadata", "allow_redisplay", "card"})
ALLOW_REDISPLAY = ("always", "limited", "unspecified")


@dataclass(frozen=True)
class Decline:
    """A card payment refused: what Stripe puts in the error, the charge and its outcome."""

    code: str
    decline_code: str

    @property
    def message(self) -> str:
        return DECLINE_MESSAGES[self.decline_code]


def behaviour(method: StripeObject) -> CardBehaviour:
    """How this payment method's card behaves (by its last4); an unknown card simply pays."""
    card = method["card"]
    return TEST_CARDS.get(card["last4"]) or CardBehaviour(card["brand"], card["last4"])


def charge_decline(method: StripeObject, *, off_session: bool) -> Decline | None:
    """Whether charging this card now is declined, as Stripe's test card would be."""
    card = behaviour(method)
    if card.requires_authentication and off_session:
        return Decline("authentication_required", "authentication_required")
    if card.decline_code:
        return Decline("card_declined", card.decline_code)
    return None


def save_decline(method: StripeObject) -> Decline | None:
    """Whether Stripe's check when saving this card (attach, SetupIntent) declines it."""
    card = behaviour(method)
    if not card.declines_when_saved:
        return None
    return Decline("card_declined", card.decline_code or "generic_decline")


def decline_error(decline: Decline, **extra: Any) -> StripeError:
    """Stripe's 402 card_error body for a decline; `extra` adds the objects Stripe includes."""
    return StripeError(
        402,
        "card_error",
        decline.message,
        code=decline.code,
        decline_code=decline.decline_code,
        **{key: copy.deepcopy(value) for key, value in extra.items()},
    )


def authentication_action(store: Store, intent_id: str, return_url: str | None) -> StripeObject:
    """The `next_action` Stripe gives for a 3-D Secure challenge (a redirect with return_url)."""
    source = store.new_id("src")
    url = f"https://hooks.stripe.com/3d_secure_2/hosted?intent={intent_id}&source={source}"
    if return_url:
        return {
            "type": "redirect_to_url",
            "redirect_to_url": {"return_url": return_url, "url": url},
        }
    return {
        "type": "use_stripe_sdk",
        "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": url, "source": source},
    }


def authentication_succeeds(params: dict[str, Any]) -> bool:
    """The customer's answer to a simulated 3-D Secure challenge: succeed (default) or fail."""
    return one_of(params.get("outcome", "succeed"), ("succeed", "fail"), "outcome") == "succeed"


def require_pending_authentication(obj: StripeObject, kind: str) -> None:
    """Only an intent waiting for 3-D Secure (`requires_action`) can be authenticated."""
    if obj["status"] != "requires_action":
        raise invalid_request(
            f"This {kind} has a status of {obj['status']}; only a {kind} whose status is "
            "requires_action is waiting for authentication."
        )


def method_types(params: dict[str, Any]) -> tuple[list[str], StripeObject | None]:
    """An intent's `payment_method_types` and `automatic_payment_methods` from its params."""
    allowed = params.get("allowed_payment_method_types")
    automatic = params.get("automatic_payment_methods")
    if allowed and automatic and automatic.get("enabled"):
        raise invalid_request(
            "You may only specify one of these parameters: allowed_payment_method_types, "
            "automatic_payment_methods.",
            param="automatic_payment_methods",
        )
    if allowed:
        return list(allowed), None
    if automatic is not None and not automatic["enabled"]:
        return ["card"], None
    # Since 2023-08-16 Stripe turns automatic payment methods on when no types are given.
    settings: StripeObject = {"enabled": True}
    if automatic and "allow_redirects" in automatic:
        settings["allow_redirects"] = one_of(
            automatic["allow_redirects"],
            ("always", "never"),
            "automatic_payment_methods[allow_redirects]",
        )
    return ["card"], settings


# --- public helpers other modules call -------------------------------------------------


def resolve(store: Store, method_id: str, param: str) -> StripeObject:
    """An existing payment method, or a new one for a test token; Stripe's 404 otherwise."""
    if method_id in TEST_METHODS:
        return _materialise(store, TEST_METHODS[method_id])
    method = store.find("payment_method", method_id)
    if method is None:
        raise no_such("PaymentMethod", method_id, param)
    return method


def attach_to(store: Store, method_id: str, customer_id: str, param: str) -> StripeObject:
    """Save a payment method to a customer as `POST .../attach` does (idempotent)."""
    customer = existing_customer(store, customer_id, "customer")
    method = resolve(store, method_id, param)
    if method["customer"] == customer["id"]:
        return method
    check_attachable(store, method, param)
    if decline := save_decline(method):
        raise decline_error(decline)
    return link(store, method, customer["id"])


def owned(store: Store, method_id: str, customer_id: str) -> StripeObject:
    """The payment method if it is attached to this customer, else Stripe's 400."""
    method = store.find("payment_method", method_id)
    if method is None and method_id not in TEST_METHODS:
        raise no_such("PaymentMethod", method_id, None)
    if method is None or method["customer"] != customer_id:
        raise invalid_request(
            f"The customer does not have a payment method with the ID {method_id}. "
            "The payment method must be attached to the customer."
        )
    return method


def link(store: Store, method: StripeObject, customer_id: str) -> StripeObject:
    """Attach an already-checked payment method to a customer and announce it."""
    method["customer"] = customer_id
    store.emit("payment_method.attached", method)
    return method


def check_attachable(store: Store, method: StripeObject, param: str | None) -> None:
    """Stripe's refusals to save a card: owned by someone else, or already spent."""
    if method["customer"] is not None:
        raise invalid_request(
            "The payment method you provided has already been attached to a customer.",
            param=param,
        )
    if spent(store, method):
        raise invalid_request(
            "This PaymentMethod was previously used without being attached to a Customer or "
            "was detached from a Customer, and may not be used again.",
            param=param,
        )


def check_usable(store: Store, method: StripeObject, customer_id: str | None, kind: str) -> None:
    """Stripe's refusals to pay or set up with a card: another customer's, or spent."""
    owner = method["customer"]
    if owner is not None and owner != customer_id:
        raise invalid_request(
            f"The payment method supplied ({method['id']}) belongs to the Customer {owner}. "
            f"Please include the Customer in the `customer` parameter on the {kind}.",
            param="payment_method",
        )
    if spent(store, method):
        raise invalid_request(
            "The provided PaymentMethod was previously used with a PaymentIntent without "
            "Customer attachment, shared with a connected account without Customer attachment, "
            "or was detached from a Customer. It may not be used again. To use a PaymentMethod "
            "multiple times, you must attach it to a Customer first.",
            param="payment_method",
        )


def spent(store: Store, method: StripeObject) -> bool:
    """An unattached card already paid with (not set up for later) or detached: single-use."""
    if method["customer"] is not None:
        return False
    for charge_id in store.ids_by_type["charge"]:
        charge = store.objects[charge_id]
        if charge["payment_method"] == method["id"] and charge["status"] == "succeeded":
            intent = store.find("payment_intent", charge["payment_intent"] or "")
            if not (intent and intent["setup_future_usage"]):
                return True
    return any(
        event["type"] == "payment_method.detached" and event["data"]["object"]["id"] == method["id"]
        for event_id in store.ids_by_type["event"]
        if (event := store.objects[event_id])
    )


# --- API handlers ----------------------------------------------------------------------


@handles("POST", "/v1/payment_methods")
def create(call: Call) -> StripeObject:
    params = call.params
    refuse_unsupported(params, SUPPORTED_CREATE, "POST /v1/payment_methods")
    if "type" not in params:
        raise invalid_request(
            "Missing required param: type.", param="type", code="parameter_missing"
        )
    if params["type"] != "card":
        raise invalid_request(
            f"The sandbox does not support payment methods of type {params['type']}.", param="type"
        )
    last4 = _card_token_last4(params.get("card"))
    redisplay = one_of(
        params.get("allow_redisplay", "unspecified"), ALLOW_REDISPLAY, "allow_redisplay"
    )
    billing_details = _billing_details(params.get("billing_details"))
    method = _materialise(call.store, last4)
    method.update(
        billing_details=billing_details,
        metadata=metadata_update({}, params.get("metadata")),
        allow_redisplay=redisplay,
    )
    return method


@handles("GET", "/v1/payment_methods/{payment_method}")
def retrieve(call: Call) -> StripeObject:
    return resolve(call.store, call.args["payment_method"], "payment_method")


@handles("POST", "/v1/payment_methods/{payment_method}")
def update(call: Call) -> StripeObject:
    params = call.params
    refuse_unsupported(params, SUPPORTED_UPDATE, "POST /v1/payment_methods/{payment_method}")
    method = _existing(call.store, call.args["payment_method"])
    if method["customer"] is None:
        raise invalid_request(
            "You must save this PaymentMethod to a customer before you can update it."
        )
    before = copy.deepcopy(method)
    if "billing_details" in params:
        method["billing_details"] = _billing_details(
            params["billing_details"], before["billing_details"]
        )
    if "metadata" in params:
        method["metadata"] = metadata_update(method["metadata"], params["metadata"])
    if "allow_redisplay" in params:
        method["allow_redisplay"] = one_of(
            params["allow_redisplay"], ALLOW_REDISPLAY, "allow_redisplay"
        )
    _update_expiry(method, params.get("card") or {})
    changes = {key: before[key] for key in method if before[key] != method[key]}
    if changes:
        call.store.emit("payment_method.updated", method, changes)
    return method


@handles("POST", "/v1/payment_methods/{payment_method}/attach")
def attach(call: Call) -> StripeObject:
    if "customer" not in call.params:
        raise invalid_request(
            "Missing required param: customer.", param="customer", code="parameter_missing"
        )
    return attach_to(
        call.store, call.args["payment_method"], call.params["customer"], "payment_method"
    )


@handles("POST", "/v1/payment_methods/{payment_method}/detach")
def detach(call: Call) -> StripeObject:
    from sandbox.resources.customers import set_default_payment_method

    method = _existing(call.store, call.args["payment_method"])
    customer_id = method["customer"]
    if customer_id is None:
        raise invalid_request(
            "The payment method you provided is not attached to a customer so detachment is "
            "impossible."
        )
    method["customer"] = None
    call.store.emit("payment_method.detached", method, {"customer": customer_id})
    customer = call.store.find("customer", customer_id)
    if customer and customer["invoice_settings"]["default_payment_method"] == method["id"]:
        set_default_payment_method(call.store, customer, None)
    return method


@handles("GET", "/v1/payment_methods")
def list_methods(call: Call) -> StripeObject:
    customer_id = call.params.get("customer")
    if customer_id:
        existing_customer(call.store, customer_id, "customer")
    return _list(call, customer_id or None, "/v1/payment_methods")


@handles("GET", "/v1/customers/{customer}/payment_methods")
def list_customer_methods(call: Call) -> StripeObject:
    customer = existing_customer(call.store, call.args["customer"], "customer")
    return _list(call, customer["id"], f"/v1/customers/{customer['id']}/payment_methods")


@handles("GET", "/v1/customers/{customer}/payment_methods/{payment_method}")
def retrieve_customer_method(call: Call) -> StripeObject:
    customer = existing_customer(call.store, call.args["customer"], "customer")
    method = call.store.find("payment_method", call.args["payment_method"])
    if method is None or method["customer"] != customer["id"]:
        raise no_such("PaymentMethod", call.args["payment_method"], "payment_method")
    return method


# --- building cards --------------------------------------------------------------------


def _materialise(store: Store, last4: str) -> StripeObject:
    method = blank(
        "payment_method",
        id=store.new_id("pm"),
        allow_redisplay="unspecified",
        billing_details=_billing_details(None),
        card=_card(store, TEST_CARDS[last4]),
        created=store.now(),
        customer=None,
        customer_account=None,
        metadata={},
        type="card",
    )
    return store.add(method)


def _card(store: Store, card: CardBehaviour) -> StripeObject:
    expires = time.gmtime(store.now())
    return {
        "brand": card.brand,
        "checks": {
            "address_line1_check": None,
            "address_postal_code_check": None,
            "cvc_check": "unchecked",
        },
        "country": card.country,
        "display_brand": card.brand,
        "exp_month": expires.tm_mon,
        "exp_year": expires.tm_year + 1,
        "fingerprint": fingerprint(card.last4),
        "funding": card.funding,
        "generated_from": None,
        "last4": card.last4,
        "networks": {"available": [card.brand], "preferred": None},
        "regulated_status": "unregulated",
        "three_d_secure_usage": {"supported": True},
        "wallet": None,
    }


def fingerprint(last4: str) -> str:
    """Stripe fingerprints a card number per account: the same card gives the same value."""
    digest = hashlib.sha256(f"sandbox-card-{last4}".encode()).hexdigest()
    return "".join(ch for ch in digest if ch.isalnum())[:16]


def _card_token_last4(card: Any) -> str:
    if not card:
        raise invalid_request(
            "Missing required param: card.", param="card", code="parameter_missing"
        )
    if "number" in card or "cvc" in card:
        # Stripe refuses raw card data from accounts without PCI clearance; never keep it.
        raise StripeError(402, "invalid_request_error", RAW_CARD_MESSAGE)
    token = card.get("token")
    if token is None:
        raise invalid_request(
            "Missing required param: card[token].", param="card[token]", code="parameter_missing"
        )
    if token not in TEST_TOKENS:
        raise no_such("token", token, "card[token]")
    return TEST_TOKENS[token]


def _billing_details(given: Any, current: StripeObject | None = None) -> StripeObject:
    details: StripeObject = (
        copy.deepcopy(current)
        if current
        else {
            "address": dict.fromkeys(("city", "country", "line1", "line2", "postal_code", "state")),
            "email": None,
            "name": None,
            "phone": None,
            "tax_id": None,
        }
    )
    for key, value in (given or {}).items():
        if key == "address":
            details["address"] = _address(details["address"], value)
        else:
            details[key] = None if value == "" else value
    return details


def _address(current: StripeObject, given: Any) -> StripeObject:
    if given == "":
        return dict.fromkeys(current)
    return current | {key: (None if value == "" else value) for key, value in given.items()}


def _update_expiry(method: StripeObject, card: dict[str, Any]) -> None:
    refuse_unsupported(card, frozenset({"exp_month", "exp_year"}), "card updates")
    if "exp_month" in card:
        if not 1 <= card["exp_month"] <= 12:
            raise invalid_request(
                "Your card's expiration month is invalid.",
                param="card[exp_month]",
                code="invalid_expiry_month",
            )
        method["card"] = method["card"] | {"exp_month": card["exp_month"]}
    if "exp_year" in card:
        method["card"] = method["card"] | {"exp_year": card["exp_year"]}


def _existing(store: Store, method_id: str) -> StripeObject:
    method = store.find("payment_method", method_id)
    if method is None:
        raise no_such("PaymentMethod", method_id, "payment_method")
    return method


def existing_customer(store: Store, customer_id: str, param: str) -> StripeObject:
    """A live customer, or Stripe's 404 naming the param it came from."""
    customer = store.find("customer", customer_id)
    if customer is None or customer.get("deleted"):
        raise no_such("customer", customer_id, param)
    return customer


def _list(call: Call, customer_id: str | None, url: str) -> StripeObject:
    wanted_type = call.params.get("type")
    redisplay = call.params.get("allow_redisplay")

    def keep(method: StripeObject) -> bool:
        return (
            method["customer"] == customer_id
            and wanted_type in (None, method["type"])
            and redisplay in (None, method["allow_redisplay"])
        )

    return call.store.list_objects("payment_method", call.params, url, keep)
