"""Charges: one per attempt to pay a PaymentIntent, succeeded or failed; retrieve, update, list.

Charges are made by PaymentIntents (`create_charge`); refunds change them (refunds.py).
"""

import copy
import secrets
import uuid

from sandbox.registry import Call, StripeObject, handles
from sandbox.resources.common import apply_update, in_range, refuse_unsupported
from sandbox.resources.payment_methods import Decline
from sandbox.store import Store, blank, changed_fields

GENERIC_SELLER_MESSAGE = "The bank did not return any further details with this decline."


def create_charge(
    store: Store,
    intent: StripeObject,
    method: StripeObject,
    *,
    decline: Decline | None,
    authenticated: bool,
) -> StripeObject:
    """Record one payment attempt as Stripe does, and announce charge.succeeded / charge.failed."""
    succeeded = decline is None
    charge_id = store.new_id("ch")
    charge = blank(
        "charge",
        id=charge_id,
        amount=intent["amount"],
        amount_captured=intent["amount"] if succeeded else 0,
        amount_refunded=0,
        application=None,
        application_fee=None,
        application_fee_amount=None,
        # Balance transactions are not modelled; Stripe names one for every settled charge.
        balance_transaction=store.new_id("txn") if succeeded else None,
        billing_details=copy.deepcopy(method["billing_details"]),
        calculated_statement_descriptor="SANDBOX",
        captured=succeeded,
        created=store.now(),
        currency=intent["currency"],
        customer=intent["customer"],
        description=intent["description"],
        disputed=False,
        failure_balance_transaction=None,
        failure_code=decline.code if decline else None,
        failure_message=decline.message if decline else None,
        fraud_details={},
        metadata=dict(intent["metadata"]),
        on_behalf_of=None,
        outcome=_outcome(decline),
        paid=succeeded,
        payment_intent=intent["id"],
        payment_method=method["id"],
        payment_method_details=_method_details(method, intent["amount"], succeeded, authenticated),
        receipt_email=intent["receipt_email"],
        receipt_number=None,
        receipt_url=f"https://pay.stripe.com/receipts/payment/{secrets.token_urlsafe(48)}",
        refunded=False,
        refunds={
            "object": "list",
            "data": [],
            "has_more": False,
            "url": f"/v1/charges/{charge_id}/refunds",
        },
        review=None,
        shipping=None,
        source=None,
        source_transfer=None,
        statement_descriptor=None,
        statement_descriptor_suffix=intent["statement_descriptor_suffix"],
        status="succeeded" if succeeded else "failed",
        transfer_data=None,
        transfer_group=intent["transfer_group"],
    )
    store.add(charge)
    store.emit("charge.succeeded" if succeeded else "charge.failed", charge)
    return charge


def get_charge(store: Store, charge_id: str, param: str | None = "id") -> StripeObject:
    """A charge, or Stripe's 404 naming the param it came from."""
    return store.get("charge", charge_id, param=param)


def _outcome(decline: Decline | None) -> StripeObject:
    if decline is None:
        return _outcome_fields("approved_by_network", None, "Payment complete.", "authorized")
    seller_message = (
        GENERIC_SELLER_MESSAGE
        if decline.decline_code == "generic_decline"
        else f"The bank returned the decline code `{decline.decline_code}`."
    )
    return _outcome_fields(
        "declined_by_network", decline.decline_code, seller_message, "issuer_declined"
    )


def _outcome_fields(
    network_status: str, reason: str | None, seller_message: str, kind: str
) -> StripeObject:
    return {
        "advice_code": None,
        "network_advice_code": None,
        "network_decline_code": None,
        "network_status": network_status,
        "reason": reason,
        "seller_message": seller_message,
        "type": kind,
    }


def _method_details(
    method: StripeObject, amount: int, succeeded: bool, authenticated: bool
) -> StripeObject:
    card = method["card"]
    return {
        "card": {
            "amount_authorized": amount if succeeded else None,
            "authorization_code": f"{secrets.randbelow(10**6):06d}" if succeeded else None,
            "brand": card["brand"],
            "checks": copy.deepcopy(card["checks"]),
            "country": card["country"],
            "exp_month": card["exp_month"],
            "exp_year": card["exp_year"],
            "extended_authorization": {"status": "disabled"},
            "fingerprint": card["fingerprint"],
            "funding": card["funding"],
            "incremental_authorization": {"status": "unavailable"},
            "installments": None,
            "last4": card["last4"],
            "mandate": None,
            "multicapture": {"status": "unavailable"},
            "network": card["brand"],
            "network_token": {"used": False},
            "network_transaction_id": f"{secrets.randbelow(10**15):015d}" if succeeded else None,
            "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
            "regulated_status": card["regulated_status"],
            "three_d_secure": _three_d_secure() if authenticated else None,
            "transaction_link_id": None,
            "wallet": None,
        },
        "type": "card",
    }


def _three_d_secure() -> StripeObject:
    return {
        "authentication_flow": "challenge",
        "electronic_commerce_indicator": "05",
        "exemption_indicator": None,
        "result": "authenticated",
        "result_reason": None,
        "transaction_id": str(uuid.uuid4()),
        "version": "2.2.0",
    }


@handles("GET", "/v1/charges/{charge}")
def retrieve(call: Call) -> StripeObject:
    return get_charge(call.store, call.args["charge"])


@handles("POST", "/v1/charges/{charge}")
def update(call: Call) -> StripeObject:
    supported = frozenset({"description", "metadata", "receipt_email"})
    refuse_unsupported(call.params, supported, "POST /v1/charges/{charge}")
    charge = get_charge(call.store, call.args["charge"])
    before = copy.deepcopy(charge)
    apply_update(charge, call.params, ("description", "receipt_email"))
    changes = changed_fields(before, charge)
    if changes:
        call.store.emit("charge.updated", charge, changes)
    return charge


@handles("GET", "/v1/charges")
def list_charges(call: Call) -> StripeObject:
    params = call.params

    def keep(charge: StripeObject) -> bool:
        return (
            params.get("customer") in (None, charge["customer"])
            and params.get("payment_intent") in (None, charge["payment_intent"])
            and params.get("transfer_group") in (None, charge["transfer_group"])
            and in_range(charge["created"], params.get("created"))
        )

    return call.store.list_objects("charge", params, "/v1/charges", keep)
