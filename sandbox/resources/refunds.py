"""Refunds: give back all or part of a succeeded card charge; retrieve, update, list.

Card refunds succeed at once in test mode; the charge keeps the running total.
"""

import copy
from typing import Any

from sandbox.errors import invalid_request, no_such
from sandbox.registry import Call, StripeObject, handles
from sandbox.resources.charges import get_charge
from sandbox.resources.common import (
    format_amount,
    in_range,
    metadata_update,
    one_of,
    refuse_unsupported,
)
from sandbox.resources.payment_intents import get_intent
from sandbox.store import Store, blank, changed_fields

REASONS = ("duplicate", "fraudulent", "requested_by_customer")
SUPPORTED_CREATE = frozenset({"amount", "charge", "payment_intent", "reason", "metadata"})
# How many refunds a charge embeds in its `refunds` list, as Stripe's default page.
EMBEDDED_REFUNDS = 10


@handles("POST", "/v1/refunds")
def create(call: Call) -> StripeObject:
    params = call.params
    refuse_unsupported(params, SUPPORTED_CREATE, "POST /v1/refunds")
    charge = _refundable_charge(call.store, params)
    remaining = charge["amount_captured"] - charge["amount_refunded"]
    amount = params.get("amount", remaining)
    _check_amount(charge, amount, remaining)
    reason = params.get("reason")
    refund = blank(
        "refund",
        id=call.store.new_id("re"),
        amount=amount,
        # Balance transactions are not modelled; Stripe names one for every card refund.
        balance_transaction=call.store.new_id("txn"),
        charge=charge["id"],
        created=call.store.now(),
        currency=charge["currency"],
        customer=charge["customer"],
        customer_account=None,
        destination_details={"card": {"type": "refund"}, "type": "card"},
        metadata=metadata_update({}, params.get("metadata")),
        payment_intent=charge["payment_intent"],
        payment_method=charge["payment_method"],
        reason=one_of(reason, REASONS, "reason") if reason is not None else None,
        receipt_number=None,
        source_transfer_reversal=None,
        status="succeeded",
        transfer_reversal=None,
    )
    refund.pop("livemode")  # Stripe's refunds have no livemode field (nor does the fixture)
    call.store.add(refund)
    before = copy.deepcopy(charge)
    charge["amount_refunded"] += amount
    charge["refunded"] = charge["amount_refunded"] == charge["amount_captured"]
    _embed_refunds(call.store, charge)
    call.store.emit("refund.created", refund)
    call.store.emit("charge.refunded", charge, changed_fields(before, charge))
    return refund


@handles("GET", "/v1/refunds/{refund}")
def retrieve(call: Call) -> StripeObject:
    return _get(call.store, call.args["refund"])


@handles("POST", "/v1/refunds/{refund}")
def update(call: Call) -> StripeObject:
    refund = _get(call.store, call.args["refund"])
    before = copy.deepcopy(refund)
    if "metadata" in call.params:
        refund["metadata"] = metadata_update(refund["metadata"], call.params["metadata"])
    changes = changed_fields(before, refund)
    if changes:
        _embed_refunds(call.store, get_charge(call.store, refund["charge"]))
        call.store.emit("refund.updated", refund, changes)
    return refund


@handles("GET", "/v1/refunds")
def list_refunds(call: Call) -> StripeObject:
    params = call.params

    def keep(refund: StripeObject) -> bool:
        return (
            params.get("charge") in (None, refund["charge"])
            and params.get("payment_intent") in (None, refund["payment_intent"])
            and in_range(refund["created"], params.get("created"))
        )

    return call.store.list_objects("refund", params, "/v1/refunds", keep)


def _refundable_charge(store: Store, params: dict[str, Any]) -> StripeObject:
    """The charge to refund, named directly or through its PaymentIntent."""
    charge_id, intent_id = params.get("charge"), params.get("payment_intent")
    if not charge_id and not intent_id:
        raise invalid_request(
            "One of the following params should be provided for this request: payment_intent "
            "or charge.",
            code="parameter_missing",
        )
    if intent_id:
        intent = get_intent(store, intent_id, "payment_intent")
        if intent["status"] != "succeeded" or not intent["latest_charge"]:
            raise invalid_request(
                f"This PaymentIntent ({intent_id}) does not have a successful charge to refund.",
                param="payment_intent",
            )
        if charge_id and charge_id != intent["latest_charge"]:
            raise invalid_request(
                f"The charge {charge_id} does not belong to the PaymentIntent {intent_id}.",
                param="charge",
            )
        charge_id = intent["latest_charge"]
    charge = get_charge(store, str(charge_id), "charge")
    if charge["status"] != "succeeded":
        raise invalid_request(
            f"Charge {charge['id']} has not succeeded, so it cannot be refunded.", param="charge"
        )
    if charge["disputed"]:
        # The disputed amount is already on its way back to the cardholder through the bank.
        raise invalid_request(
            f"Charge {charge['id']} has been charged back; cannot issue a refund.",
            code="charge_disputed",
        )
    return charge


def _check_amount(charge: StripeObject, amount: int, remaining: int) -> None:
    if charge["refunded"]:
        raise invalid_request(
            f"Charge {charge['id']} has already been refunded.",
            code="charge_already_refunded",
        )
    if amount < 1:
        raise invalid_request("Invalid positive integer", param="amount")
    if amount > remaining:
        currency = charge["currency"]
        raise invalid_request(
            f"Refund amount ({format_amount(amount, currency)}) is greater than unrefunded "
            f"amount on charge ({format_amount(remaining, currency)})",
            param="amount",
            code="amount_too_large",
        )


def _embed_refunds(store: Store, charge: StripeObject) -> None:
    """Refresh the charge's `refunds` list (newest first), as Stripe renders it."""
    refunds = [
        copy.deepcopy(store.objects[refund_id])
        for refund_id in reversed(store.ids_by_type["refund"])
        if store.objects[refund_id]["charge"] == charge["id"]
    ]
    charge["refunds"] = charge["refunds"] | {
        "data": refunds[:EMBEDDED_REFUNDS],
        "has_more": len(refunds) > EMBEDDED_REFUNDS,
    }


def _get(store: Store, refund_id: str) -> StripeObject:
    refund = store.find("refund", refund_id)
    if refund is None:
        raise no_such("refund", refund_id, "id")
    return refund
