"""Disputes: opened and ruled on by the cardholder's bank (`/_sandbox`), read and answered
through the official SDK."""

import pytest
import stripe

from tests.sandbox.test_fidelity import key_differences
from tests.sandbox.test_time import events_of, sandbox_post


async def paid_charge(client: stripe.StripeClient):
    intent = await client.v1.payment_intents.create_async(
        {
            "amount": 4500,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
        }
    )
    return await client.v1.charges.retrieve_async(str(intent.latest_charge))


async def test_dispute_opened_and_lost(stripe_client, sandbox):
    v1 = stripe_client.v1
    charge = await paid_charge(stripe_client)
    opened = await sandbox_post(sandbox, f"/_sandbox/charges/{charge.id}/dispute", {})
    assert opened.status_code == 200, opened.text
    body = opened.json()
    assert key_differences(body) == (set(), set())
    dispute = await v1.disputes.retrieve_async(body["id"])
    assert dispute.status == "needs_response" and dispute.reason == "fraudulent"
    assert dispute.amount == 4500 and dispute.charge == charge.id
    assert dispute.payment_intent == charge.payment_intent
    assert dispute.evidence_details.due_by > dispute.created
    assert dispute.payment_method_details.card.network_reason_code == "10.4"
    assert (await v1.charges.retrieve_async(charge.id)).disputed is True
    assert [d.id for d in (await v1.disputes.list_async({"charge": charge.id})).data] == [
        dispute.id
    ]
    with pytest.raises(stripe.InvalidRequestError) as refund:
        await v1.refunds.create_async({"charge": charge.id})
    assert refund.value.code == "charge_disputed"
    again = await sandbox_post(sandbox, f"/_sandbox/charges/{charge.id}/dispute", {})
    assert again.status_code == 400

    closed = await sandbox_post(
        sandbox, f"/_sandbox/disputes/{dispute.id}/close", {"outcome": "lost"}
    )
    assert closed.status_code == 200 and closed.json()["status"] == "lost"
    assert (await v1.disputes.retrieve_async(dispute.id)).status == "lost"
    types = [e.type for e in await events_of(stripe_client, "charge.dispute.*")]
    assert types == [
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.closed",
    ]
    twice = await sandbox_post(
        sandbox, f"/_sandbox/disputes/{dispute.id}/close", {"outcome": "won"}
    )
    assert twice.status_code == 400
    bad = await sandbox_post(sandbox, "/_sandbox/charges/ch_nope/dispute", {})
    assert bad.status_code == 404


async def test_dispute_won_with_evidence_and_one_accepted(stripe_client, sandbox):
    v1 = stripe_client.v1
    first, second = await paid_charge(stripe_client), await paid_charge(stripe_client)
    opened = await sandbox_post(
        sandbox, f"/_sandbox/charges/{first.id}/dispute", {"reason": "product_not_received"}
    )
    dispute_id = opened.json()["id"]
    staged = await v1.disputes.update_async(
        dispute_id,
        {"evidence": {"product_description": "Pro plan, monthly"}, "submit": False},
    )
    assert staged.status == "needs_response" and staged.evidence_details.has_evidence
    # Stripe's test mode: this evidence wins the dispute when submitted.
    won = await v1.disputes.update_async(
        dispute_id, {"evidence": {"uncategorized_text": "winning_evidence"}}
    )
    assert won.status == "won" and won.evidence_details.submission_count == 1
    assert "charge.dispute.funds_reinstated" in [
        e.type for e in await events_of(stripe_client, "charge.dispute.*")
    ]

    other = await sandbox_post(sandbox, f"/_sandbox/charges/{second.id}/dispute", {})
    accepted = await v1.disputes.close_async(other.json()["id"])
    assert accepted.status == "lost"
    wrong = await sandbox_post(
        sandbox,
        f"/_sandbox/charges/{(await paid_charge(stripe_client)).id}/dispute",
        {"reason": "moody"},
    )
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "reason"
