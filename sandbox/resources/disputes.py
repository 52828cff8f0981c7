"""Disputes: the customer's bank disputes a charge (`POST /_sandbox/charges/{id}/dispute`) and
later rules on it (`POST /_sandbox/disputes/{id}/close`, outcome=won|lost); retrieve, list,
update (evidence, submitted unless `submit=false`) and close (accept the loss).

As in Stripe test mode, evidence whose uncategorized_text is `winning_evidence` or
`losing_evidence` decides the dispute when submitted. Balance transactions are not modelled,
so `balance_transactions` stays empty while the funds events are still sent.
"""

import copy
from typing import Any

from sandbox.errors import invalid_request, no_such
from sandbox.registry import Call, StripeObject, handles
from sandbox.resources.browser import browser_action
from sandbox.resources.charges import get_charge
from sandbox.resources.common import in_range, metadata_update, one_of
from sandbox.store import DAY, Store, blank, changed_fields, fixture

REASONS = (
    "bank_cannot_process",
    "check_returned",
    "credit_not_processed",
    "customer_initiated",
    "debit_not_authorized",
    "duplicate",
    "fraudulent",
    "general",
    "incorrect_account_details",
    "insufficient_funds",
    "product_not_received",
    "product_unacceptable",
    "subscription_canceled",
    "unrecognized",
)
# Visa's reason codes for the disputes a test card can raise.
NETWORK_REASON_CODES = {
    "fraudulent": "10.4",
    "duplicate": "12.6.1",
    "subscription_canceled": "13.2",
    "product_not_received": "13.1",
    "product_unacceptable": "13.3",
    "credit_not_processed": "13.6",
}
# The cardholder's bank gives the merchant about this long to respond.
RESPONSE_WINDOW = 7 * DAY
OPEN = ("warning_needs_response", "needs_response", "under_review", "warning_under_review")
TEST_EVIDENCE = {"winning_evidence": "won", "losing_evidence": "lost"}


def _get(store: Store, dispute_id: str) -> StripeObject:
    dispute = store.find("dispute", dispute_id)
    if dispute is None:
        raise no_such("dispute", dispute_id, "dispute")
    return dispute


@browser_action("/_sandbox/charges/{id}/dispute")
def open_dispute(store: Store, args: dict[str, str], form: dict[str, Any]) -> StripeObject:
    """The cardholder disputes a succeeded charge (reason: `fraudulent` unless given)."""
    charge = get_charge(store, args["id"])
    if charge["status"] != "succeeded" or charge["disputed"]:
        raise invalid_request(f"Charge {charge['id']} cannot be disputed (again).", param="id")
    reason = one_of(form.get("reason", "fraudulent"), REASONS, "reason")
    dispute = _new_dispute(store, charge, reason)
    store.add(dispute)
    charge["disputed"] = True
    store.emit("charge.dispute.created", dispute)
    store.emit("charge.dispute.funds_withdrawn", dispute)
    return dispute


def _new_dispute(store: Store, charge: StripeObject, reason: str) -> StripeObject:
    now = store.now()
    card = charge["payment_method_details"]["card"]
    return blank(
        "dispute",
        id=store.new_id("dp"),
        amount=charge["amount"] - charge["amount_refunded"],
        balance_transactions=[],
        charge=charge["id"],
        created=now,
        currency=charge["currency"],
        enhanced_eligibility_types=[],
        evidence=dict.fromkeys(fixture("dispute")["evidence"]) | {"enhanced_evidence": {}},
        evidence_details={
            "due_by": now + RESPONSE_WINDOW,
            "enhanced_eligibility": {},
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        is_charge_refundable=False,
        metadata={},
        payment_intent=charge["payment_intent"],
        payment_method_details={
            "card": {
                "brand": card["brand"],
                "case_type": "chargeback",
                "network": card["network"],
                "network_reason_code": NETWORK_REASON_CODES.get(reason),
            },
            "type": "card",
        },
        reason=reason,
        status="needs_response",
    )


@browser_action("/_sandbox/disputes/{id}/close")
def close_by_bank(store: Store, args: dict[str, str], form: dict[str, Any]) -> StripeObject:
    """The bank rules on the dispute: outcome `won` (the funds come back) or `lost`."""
    dispute = _get(store, args["id"])
    outcome = one_of(form.get("outcome", ""), ("won", "lost"), "outcome")
    _close(store, dispute, outcome)
    return dispute


def _close(store: Store, dispute: StripeObject, outcome: str) -> None:
    if dispute["status"] not in OPEN:
        raise invalid_request(f"This dispute is already closed ({dispute['status']}).")
    dispute["status"] = outcome
    store.emit("charge.dispute.closed", dispute)
    if outcome == "won":
        store.emit("charge.dispute.funds_reinstated", dispute)


@handles("GET", "/v1/disputes/{dispute}")
def retrieve(call: Call) -> StripeObject:
    return _get(call.store, call.args["dispute"])


@handles("GET", "/v1/disputes")
def list_disputes(call: Call) -> StripeObject:
    params = call.params

    def keep(dispute: StripeObject) -> bool:
        return (
            params.get("charge") in (None, dispute["charge"])
            and params.get("payment_intent") in (None, dispute["payment_intent"])
            and in_range(dispute["created"], params.get("created"))
        )

    return call.store.list_objects("dispute", params, "/v1/disputes", keep)


@handles("POST", "/v1/disputes/{dispute}")
def update(call: Call) -> StripeObject:
    """Stage or submit evidence; in test mode, `winning_evidence` / `losing_evidence` decide."""
    store, params = call.store, call.params
    dispute = _get(store, call.args["dispute"])
    if dispute["status"] not in OPEN:
        raise invalid_request(f"This dispute is already closed ({dispute['status']}).")
    before = copy.deepcopy(dispute)
    if "metadata" in params:
        dispute["metadata"] = metadata_update(dispute["metadata"], params["metadata"])
    _stage_evidence(dispute, params.get("evidence") or {})
    if params.get("submit", True) and dispute["evidence_details"]["has_evidence"]:
        dispute["evidence_details"]["submission_count"] += 1
        dispute["status"] = "under_review"
    store.emit("charge.dispute.updated", dispute, changed_fields(before, dispute))
    outcome = TEST_EVIDENCE.get(dispute["evidence"]["uncategorized_text"] or "")
    if outcome and dispute["status"] == "under_review":
        _close(store, dispute, outcome)
    return dispute


def _stage_evidence(dispute: StripeObject, evidence: dict[str, Any]) -> None:
    for name, value in evidence.items():
        if name not in dispute["evidence"] or name == "enhanced_evidence":
            raise invalid_request(
                f"The sandbox does not support the evidence field `{name}`.",
                param=f"evidence[{name}]",
            )
        dispute["evidence"][name] = value or None
    has_evidence = any(
        value for name, value in dispute["evidence"].items() if name != "enhanced_evidence"
    )
    dispute["evidence_details"]["has_evidence"] = has_evidence


@handles("POST", "/v1/disputes/{dispute}/close")
def close(call: Call) -> StripeObject:
    """Accepting a dispute: the merchant gives up, and it is lost."""
    dispute = _get(call.store, call.args["dispute"])
    _close(call.store, dispute, "lost")
    return dispute
