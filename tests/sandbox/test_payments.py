"""Payments through the official SDK: test cards, 3-D Secure, payment methods, setup intents,
charges, refunds, and the events each step announces."""

import json

import httpx
import pytest
import stripe

from sandbox.store import fixture
from tests.sandbox.conftest import WEBHOOK_SECRET

CARD_ONLY = {"allowed_payment_method_types": ["card"]}


async def new_customer(client: stripe.StripeClient, email: str = "pay@example.com"):
    return await client.v1.customers.create_async({"email": email})


async def pay(client: stripe.StripeClient, method: str, amount: int = 5000, **extra):
    """A confirmed card PaymentIntent (card types only, so no return_url is needed)."""
    params = {"amount": amount, "currency": "usd", "payment_method": method, "confirm": True}
    return await client.v1.payment_intents.create_async(params | CARD_ONLY | extra)


async def event_types(client: stripe.StripeClient) -> list[str]:
    """Every recorded event type, oldest first."""
    events = await client.v1.events.list_async({"limit": 100})
    return [event.type for event in reversed(events.data)]


async def authenticate(sandbox, kind: str, intent_id: str, outcome: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=sandbox.url) as browser:
        return await browser.post(
            f"/_sandbox/{kind}/{intent_id}/authenticate", data={"outcome": outcome}
        )


@pytest.mark.parametrize(
    ("token", "brand", "last4"),
    [("pm_card_visa", "visa", "4242"), ("pm_card_mastercard", "mastercard", "4444")],
)
async def test_a_good_card_pays_and_leaves_a_succeeded_charge(stripe_client, token, brand, last4):
    customer = await new_customer(stripe_client)
    intent = await pay(
        stripe_client, token, customer=customer.id, description="Order 7", metadata={"o": "7"}
    )
    assert intent.status == "succeeded" and intent.amount_received == 5000
    assert intent.payment_method.startswith("pm_") and intent.payment_method != token
    assert intent.client_secret.startswith(f"{intent.id}_secret_")
    charge = await stripe_client.v1.charges.retrieve_async(intent.latest_charge)
    assert (charge.status, charge.paid, charge.captured) == ("succeeded", True, True)
    assert charge.amount_captured == 5000 and charge.customer == customer.id
    assert charge.payment_intent == intent.id and charge.metadata["o"] == "7"
    card = charge.payment_method_details.card
    assert (card.brand, card.last4, charge.payment_method_details.type) == (brand, last4, "card")
    assert charge.receipt_url.startswith("https://") and charge.outcome.type == "authorized"
    method = await stripe_client.v1.payment_methods.retrieve_async(intent.payment_method)
    assert method.customer is None  # paying does not save the card unless asked to
    assert await event_types(stripe_client) == [
        "customer.created",
        "payment_intent.created",
        "charge.succeeded",
        "payment_intent.succeeded",
    ]


@pytest.mark.parametrize(
    ("token", "decline_code", "message"),
    [
        ("pm_card_chargeDeclined", "generic_decline", "Your card was declined."),
        (
            "pm_card_chargeDeclinedInsufficientFunds",
            "insufficient_funds",
            "Your card has insufficient funds.",
        ),
    ],
)
async def test_a_declined_card_raises_a_card_error_and_the_intent_waits_for_another_card(
    stripe_client, token, decline_code, message
):
    with pytest.raises(stripe.CardError) as raised:
        await pay(stripe_client, token)
    error = raised.value
    assert error.http_status == 402 and error.code == "card_declined"
    assert error.error.decline_code == decline_code and error.user_message == message
    intent = await stripe_client.v1.payment_intents.retrieve_async(error.error.payment_intent.id)
    assert intent.status == "requires_payment_method" and intent.payment_method is None
    failure = intent.last_payment_error
    assert (failure.type, failure.code, failure.decline_code) == (
        "card_error",
        "card_declined",
        decline_code,
    )
    assert failure.charge == error.error.charge == intent.latest_charge
    assert failure.payment_method.card.last4 == error.error.payment_method.card.last4
    charge = await stripe_client.v1.charges.retrieve_async(intent.latest_charge)
    assert (charge.status, charge.paid, charge.failure_code) == ("failed", False, "card_declined")
    assert charge.failure_message == message and charge.outcome.reason == decline_code
    assert await event_types(stripe_client) == [
        "payment_intent.created",
        "charge.failed",
        "payment_intent.payment_failed",
    ]
    # The customer may try again with another card.
    retried = await stripe_client.v1.payment_intents.confirm_async(
        intent.id, {"payment_method": "pm_card_visa"}
    )
    assert retried.status == "succeeded" and retried.last_payment_error is None


async def test_three_d_secure_waits_for_the_customer_then_pays(stripe_client, sandbox):
    intent = await pay(stripe_client, "pm_card_authenticationRequired")
    assert intent.status == "requires_action" and intent.latest_charge is None
    assert intent.next_action.type == "use_stripe_sdk"
    assert intent.next_action.use_stripe_sdk["type"] == "three_d_secure_redirect"

    answer = await authenticate(sandbox, "payment_intents", intent.id, "succeed")
    assert answer.status_code == 200 and answer.json()["status"] == "succeeded"
    intent = await stripe_client.v1.payment_intents.retrieve_async(intent.id)
    assert intent.status == "succeeded" and intent.next_action is None
    charge = await stripe_client.v1.charges.retrieve_async(intent.latest_charge)
    assert charge.status == "succeeded"
    assert charge.payment_method_details.card.three_d_secure.result == "authenticated"
    assert await event_types(stripe_client) == [
        "payment_intent.created",
        "payment_intent.requires_action",
        "charge.succeeded",
        "payment_intent.succeeded",
    ]
    again = await authenticate(sandbox, "payment_intents", intent.id, "succeed")
    assert again.status_code == 400  # nothing is waiting for authentication any more


async def test_failed_three_d_secure_leaves_the_intent_without_a_card(stripe_client, sandbox):
    intent = await pay(stripe_client, "pm_card_authenticationRequired")
    answer = await authenticate(sandbox, "payment_intents", intent.id, "fail")
    assert answer.status_code == 200
    intent = await stripe_client.v1.payment_intents.retrieve_async(intent.id)
    assert intent.status == "requires_payment_method" and intent.latest_charge is None
    assert intent.last_payment_error.code == "payment_intent_authentication_failure"
    assert (await event_types(stripe_client))[-1] == "payment_intent.payment_failed"
    bad = await authenticate(sandbox, "payment_intents", intent.id, "maybe")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "outcome"


async def test_off_session_a_card_that_needs_authentication_is_declined(stripe_client, sandbox):
    customer = await new_customer(stripe_client)
    setup = await stripe_client.v1.setup_intents.create_async(
        {"customer": customer.id, "payment_method": "pm_card_authenticationRequired"}
        | {"confirm": True}
        | CARD_ONLY
    )
    await authenticate(sandbox, "setup_intents", setup.id, "succeed")
    with pytest.raises(stripe.CardError) as raised:
        await pay(stripe_client, setup.payment_method, customer=customer.id, off_session=True)
    assert raised.value.code == "authentication_required"
    assert raised.value.error.decline_code == "authentication_required"
    intent = raised.value.error.payment_intent
    assert intent.status == "requires_payment_method"
    assert intent.last_payment_error.code == "authentication_required"


async def test_automatic_payment_methods_need_a_return_url_to_confirm(stripe_client):
    params = {"amount": 2000, "currency": "usd", "payment_method": "pm_card_visa"}
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await stripe_client.v1.payment_intents.create_async(params | {"confirm": True})
    assert raised.value.param == "return_url"
    assert (await stripe_client.v1.payment_intents.list_async()).data == []  # nothing made
    redirected = await stripe_client.v1.payment_intents.create_async(
        params
        | {"payment_method": "pm_card_authenticationRequired", "confirm": True}
        | {"return_url": "https://shop.example/back"}
    )
    assert redirected.automatic_payment_methods.enabled is True
    assert redirected.next_action.type == "redirect_to_url"
    assert redirected.next_action.redirect_to_url.return_url == "https://shop.example/back"
    no_redirects = await stripe_client.v1.payment_intents.create_async(
        params
        | {"confirm": True}
        | {"automatic_payment_methods": {"enabled": True, "allow_redirects": "never"}}
    )
    assert no_redirects.status == "succeeded"


async def test_an_intent_moves_through_its_states_and_refuses_wrong_moves(stripe_client):
    intent = await stripe_client.v1.payment_intents.create_async(
        {"amount": 1500, "currency": "USD"} | CARD_ONLY
    )
    assert intent.status == "requires_payment_method" and intent.currency == "usd"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await stripe_client.v1.payment_intents.confirm_async(intent.id)
    assert raised.value.code == "payment_intent_unexpected_state"
    with pytest.raises(stripe.InvalidRequestError) as raised:  # all of an update, or none
        await stripe_client.v1.payment_intents.update_async(
            intent.id, {"amount": 9999, "customer": "cus_missing"}
        )
    assert raised.value.http_status == 404 and raised.value.param == "customer"
    assert (await stripe_client.v1.payment_intents.retrieve_async(intent.id)).amount == 1500
    intent = await stripe_client.v1.payment_intents.update_async(
        intent.id, {"payment_method": "pm_card_visa", "amount": 2500, "metadata": {"k": "v"}}
    )
    assert (intent.status, intent.amount) == ("requires_confirmation", 2500)
    intent = await stripe_client.v1.payment_intents.confirm_async(intent.id)
    assert intent.status == "succeeded" and intent.amount_received == 2500
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await stripe_client.v1.payment_intents.update_async(intent.id, {"amount": 100})
    assert raised.value.code == "payment_intent_unexpected_state"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await stripe_client.v1.payment_intents.cancel_async(intent.id)
    assert raised.value.code == "payment_intent_unexpected_state"
    described = await stripe_client.v1.payment_intents.update_async(
        intent.id, {"description": "paid"}
    )
    assert described.description == "paid"

    other = await stripe_client.v1.payment_intents.create_async(
        {"amount": 900, "currency": "usd"} | CARD_ONLY
    )
    canceled = await stripe_client.v1.payment_intents.cancel_async(
        other.id, {"cancellation_reason": "abandoned"}
    )
    assert canceled.status == "canceled" and canceled.cancellation_reason == "abandoned"
    assert canceled.canceled_at is not None
    assert (await event_types(stripe_client))[-1] == "payment_intent.canceled"


async def test_amounts_and_currencies_are_checked_as_stripe_checks_them(stripe_client):
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await stripe_client.v1.payment_intents.create_async({"amount": 49, "currency": "usd"})
    assert raised.value.code == "amount_too_small" and raised.value.param == "amount"
    assert raised.value.user_message == "Amount must be at least $0.50 usd"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await stripe_client.v1.payment_intents.create_async({"amount": 500, "currency": "us"})
    assert raised.value.param == "currency"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await stripe_client.v1.payment_intents.create_async({"currency": "usd"})  # type: ignore[typeddict-item]
    assert raised.value.code == "parameter_missing" and raised.value.param == "amount"


async def test_a_retried_create_with_the_same_idempotency_key_makes_one_intent(
    stripe_client, sandbox
):
    params = {"amount": 3000, "currency": "usd", "payment_method": "pm_card_visa"}
    params |= {"confirm": True} | CARD_ONLY
    first = await stripe_client.v1.payment_intents.create_async(params, {"idempotency_key": "o-1"})
    again = await stripe_client.v1.payment_intents.create_async(params, {"idempotency_key": "o-1"})
    assert again.id == first.id and again.latest_charge == first.latest_charge
    assert len(sandbox.store.ids_by_type["payment_intent"]) == 1
    assert len(sandbox.store.ids_by_type["charge"]) == 1
    with pytest.raises(stripe.IdempotencyError):
        await stripe_client.v1.payment_intents.create_async(
            params | {"amount": 3001}, {"idempotency_key": "o-1"}
        )


async def test_unknown_and_unsupported_params_are_refused(stripe_client):
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await stripe_client.v1.payment_intents.create_async(
            {"amount": 500, "currency": "usd", "amout": 5}  # type: ignore[typeddict-unknown-key]
        )
    assert raised.value.code == "parameter_unknown" and raised.value.param == "amout"
    customer = await new_customer(stripe_client)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await stripe_client.v1.payment_methods.attach_async(
            "pm_card_visa",
            {"customer": customer.id, "customr": "x"},  # type: ignore[typeddict-unknown-key]
        )
    assert raised.value.param == "customr"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await stripe_client.v1.refunds.create_async({"charge": "ch_x", "amont": 1})  # type: ignore[typeddict-unknown-key]
    assert raised.value.code == "parameter_unknown"
    # Real Stripe params the sandbox cannot imitate are refused, never silently ignored.
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await stripe_client.v1.payment_intents.create_async(
            {"amount": 500, "currency": "usd", "capture_method": "manual"}
        )
    assert raised.value.param == "capture_method" and "sandbox" in raised.value.user_message
    assert len((await stripe_client.v1.payment_intents.list_async()).data) == 0


async def test_payment_intents_list_by_customer_and_page(stripe_client):
    customer = await new_customer(stripe_client)
    ids = [
        (await pay(stripe_client, "pm_card_visa", amount=1000 + n, customer=customer.id)).id
        for n in range(5)
    ]
    await pay(stripe_client, "pm_card_visa")  # someone else's
    first = await stripe_client.v1.payment_intents.list_async({"customer": customer.id, "limit": 2})
    assert [i.id for i in first.data] == [ids[4], ids[3]] and first.has_more
    rest = await stripe_client.v1.payment_intents.list_async(
        {"customer": customer.id, "starting_after": first.data[-1].id}
    )
    assert [i.id for i in rest.data] == [ids[2], ids[1], ids[0]] and not rest.has_more
    charges = await stripe_client.v1.charges.list_async({"customer": customer.id})
    assert len(charges.data) == 5
    by_intent = await stripe_client.v1.charges.list_async({"payment_intent": ids[0]})
    assert [c.payment_intent for c in by_intent.data] == [ids[0]]


async def test_payment_methods_attach_update_list_and_detach(stripe_client):
    customer = await new_customer(stripe_client)
    visa = await stripe_client.v1.payment_methods.attach_async(
        "pm_card_visa", {"customer": customer.id}
    )
    assert visa.id.startswith("pm_") and visa.customer == customer.id
    assert (visa.card.brand, visa.card.last4) == ("visa", "4242")
    master = await stripe_client.v1.payment_methods.attach_async(
        "pm_card_mastercard", {"customer": customer.id}
    )
    await stripe_client.v1.customers.update_async(
        customer.id, {"invoice_settings": {"default_payment_method": visa.id}}
    )
    listed = await stripe_client.v1.payment_methods.list_async(
        {"customer": customer.id, "type": "card"}
    )
    assert [m.id for m in listed.data] == [master.id, visa.id]
    nested = await stripe_client.v1.customers.payment_methods.list_async(customer.id, {"limit": 1})
    assert [m.id for m in nested.data] == [master.id] and nested.has_more

    updated = await stripe_client.v1.payment_methods.update_async(
        visa.id,
        {
            "metadata": {"label": "work"},
            "billing_details": {"name": "Ada", "address": {"city": "Oslo"}},
        },
    )
    assert updated.metadata["label"] == "work" and updated.billing_details.name == "Ada"
    assert updated.billing_details.address.city == "Oslo"
    assert updated.billing_details.address.line1 is None

    detached = await stripe_client.v1.payment_methods.detach_async(visa.id)
    assert detached.customer is None
    refreshed = await stripe_client.v1.customers.retrieve_async(customer.id)
    assert refreshed.invoice_settings.default_payment_method is None
    assert await event_types(stripe_client) == [
        "customer.created",
        "payment_method.attached",
        "payment_method.attached",
        "customer.updated",
        "payment_method.updated",
        "payment_method.detached",
        "customer.updated",
    ]
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await stripe_client.v1.payment_methods.detach_async(visa.id)
    assert raised.value.http_status == 400
    with pytest.raises(stripe.InvalidRequestError) as raised:  # detached cards are spent
        await stripe_client.v1.payment_methods.attach_async(visa.id, {"customer": customer.id})
    assert "may not be used again" in raised.value.user_message


async def test_payment_method_refusals(stripe_client):
    ada, bob = await new_customer(stripe_client), await new_customer(stripe_client, "b@x.io")
    method = await stripe_client.v1.payment_methods.attach_async(
        "pm_card_visa", {"customer": ada.id}
    )
    again = await stripe_client.v1.payment_methods.attach_async(method.id, {"customer": ada.id})
    assert again.customer == ada.id  # attaching twice to the same customer is harmless
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await stripe_client.v1.payment_methods.attach_async(method.id, {"customer": bob.id})
    assert raised.value.http_status == 400
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await stripe_client.v1.payment_methods.retrieve_async("pm_missing")
    assert raised.value.http_status == 404 and raised.value.code == "resource_missing"
    assert raised.value.param == "payment_method"
    loose = await stripe_client.v1.payment_methods.retrieve_async("pm_card_mastercard")
    assert loose.id.startswith("pm_") and loose.card.brand == "mastercard"
    with pytest.raises(stripe.InvalidRequestError):  # only a saved card can be updated
        await stripe_client.v1.payment_methods.update_async(loose.id, {"metadata": {"a": "b"}})
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await stripe_client.v1.customers.update_async(
            bob.id, {"invoice_settings": {"default_payment_method": method.id}}
        )
    assert "does not have a payment method" in raised.value.user_message
    with pytest.raises(stripe.InvalidRequestError) as raised:  # Ada's card, Bob's payment
        await pay(stripe_client, method.id, customer=bob.id)
    assert raised.value.param == "payment_method"


async def test_cards_that_decline_are_refused_when_saved_but_charge_customer_fail_is_not(
    stripe_client,
):
    customer = await new_customer(stripe_client)
    with pytest.raises(stripe.CardError) as raised:
        await stripe_client.v1.payment_methods.attach_async(
            "pm_card_chargeDeclined", {"customer": customer.id}
        )
    assert raised.value.code == "card_declined"
    saved = await stripe_client.v1.payment_methods.attach_async(
        "pm_card_chargeCustomerFail", {"customer": customer.id}
    )
    with pytest.raises(stripe.CardError) as raised:
        await pay(stripe_client, saved.id, customer=customer.id, off_session=True)
    assert raised.value.error.decline_code == "generic_decline"


async def test_a_card_paid_with_without_a_customer_cannot_be_saved_later(stripe_client):
    intent = await pay(stripe_client, "pm_card_visa")
    customer = await new_customer(stripe_client)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await stripe_client.v1.payment_methods.attach_async(
            intent.payment_method, {"customer": customer.id}
        )
    assert "may not be used again" in raised.value.user_message
    kept = await pay(
        stripe_client, "pm_card_visa", customer=customer.id, setup_future_usage="off_session"
    )
    method = await stripe_client.v1.payment_methods.retrieve_async(kept.payment_method)
    assert method.customer == customer.id  # paying "for future usage" saved it


async def test_a_raw_card_number_is_refused_and_never_stored(stripe_client, sandbox):
    with pytest.raises(stripe.CardError) as raised:
        await stripe_client.v1.payment_methods.create_async(
            {
                "type": "card",
                "card": {"number": "4242424242424242", "exp_month": 1, "exp_year": 2040},
            }
        )
    assert raised.value.http_status == 402 and "unsafe" in raised.value.user_message
    assert "4242424242424242" not in json.dumps(sandbox.store.objects)
    assert sandbox.store.ids_by_type["payment_method"] == []
    made = await stripe_client.v1.payment_methods.create_async(
        {"type": "card", "card": {"token": "tok_mastercard"}, "billing_details": {"email": "a@b.c"}}
    )
    assert made.card.last4 == "4444" and made.billing_details.email == "a@b.c"


async def test_a_setup_intent_saves_the_card_to_its_customer(stripe_client):
    customer = await new_customer(stripe_client)
    setup = await stripe_client.v1.setup_intents.create_async(
        {"customer": customer.id, "payment_method": "pm_card_visa", "confirm": True}
        | {"metadata": {"flow": "onboarding"}, "usage": "off_session"}
        | CARD_ONLY
    )
    assert setup.status == "succeeded" and setup.client_secret.startswith(f"{setup.id}_secret_")
    method = await stripe_client.v1.payment_methods.retrieve_async(setup.payment_method)
    assert method.customer == customer.id
    assert await event_types(stripe_client) == [
        "customer.created",
        "setup_intent.created",
        "payment_method.attached",
        "setup_intent.succeeded",
    ]
    listed = await stripe_client.v1.setup_intents.list_async({"customer": customer.id})
    assert [s.id for s in listed.data] == [setup.id]
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await stripe_client.v1.setup_intents.cancel_async(setup.id)
    assert raised.value.code == "setup_intent_unexpected_state"


async def test_a_setup_intent_with_three_d_secure(stripe_client, sandbox):
    customer = await new_customer(stripe_client)
    setup = await stripe_client.v1.setup_intents.create_async({"customer": customer.id} | CARD_ONLY)
    assert setup.status == "requires_payment_method"
    setup = await stripe_client.v1.setup_intents.confirm_async(
        setup.id, {"payment_method": "pm_card_authenticationRequired"}
    )
    assert setup.status == "requires_action" and setup.next_action.type == "use_stripe_sdk"
    failed = await authenticate(sandbox, "setup_intents", setup.id, "fail")
    assert failed.json()["last_setup_error"]["code"] == "setup_intent_authentication_failure"
    setup = await stripe_client.v1.setup_intents.confirm_async(
        setup.id, {"payment_method": "pm_card_authenticationRequired"}
    )
    answer = await authenticate(sandbox, "setup_intents", setup.id, "succeed")
    assert answer.json()["status"] == "succeeded"
    methods = await stripe_client.v1.customers.payment_methods.list_async(customer.id)
    assert [m.card.last4 for m in methods.data] == ["3184"]
    assert await event_types(stripe_client) == [
        "customer.created",
        "setup_intent.created",
        "setup_intent.requires_action",
        "setup_intent.setup_failed",
        "setup_intent.requires_action",
        "payment_method.attached",
        "setup_intent.succeeded",
    ]


async def test_a_setup_intent_with_a_declining_card_fails(stripe_client):
    customer = await new_customer(stripe_client)
    with pytest.raises(stripe.CardError) as raised:
        await stripe_client.v1.setup_intents.create_async(
            {"customer": customer.id, "payment_method": "pm_card_chargeDeclinedInsufficientFunds"}
            | {"confirm": True}
            | CARD_ONLY
        )
    assert raised.value.error.decline_code == "insufficient_funds"
    setup = raised.value.error.setup_intent
    assert setup.status == "requires_payment_method"
    assert setup.last_setup_error.decline_code == "insufficient_funds"
    assert (await stripe_client.v1.customers.payment_methods.list_async(customer.id)).data == []
    canceled = await stripe_client.v1.setup_intents.cancel_async(
        setup.id, {"cancellation_reason": "abandoned"}
    )
    assert canceled.status == "canceled"
    assert (await event_types(stripe_client))[-2:] == [
        "setup_intent.setup_failed",
        "setup_intent.canceled",
    ]


async def test_refunds_partial_then_full_and_no_more(stripe_client):
    intent = await pay(stripe_client, "pm_card_visa", amount=5000)
    partial = await stripe_client.v1.refunds.create_async(
        {"payment_intent": intent.id, "amount": 1500, "reason": "requested_by_customer"}
    )
    assert (partial.amount, partial.status, partial.charge) == (
        1500,
        "succeeded",
        intent.latest_charge,
    )
    charge = await stripe_client.v1.charges.retrieve_async(intent.latest_charge)
    assert charge.amount_refunded == 1500 and charge.refunded is False

    with pytest.raises(stripe.InvalidRequestError) as raised:
        await stripe_client.v1.refunds.create_async({"charge": charge.id, "amount": 4000})
    assert raised.value.code == "amount_too_large"
    assert raised.value.user_message == (
        "Refund amount ($40.00) is greater than unrefunded amount on charge ($35.00)"
    )
    rest = await stripe_client.v1.refunds.create_async({"charge": charge.id})
    assert rest.amount == 3500
    charge = await stripe_client.v1.charges.retrieve_async(charge.id)
    assert charge.amount_refunded == 5000 and charge.refunded is True
    assert [r.id for r in charge.refunds.data] == [rest.id, partial.id]
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await stripe_client.v1.refunds.create_async({"payment_intent": intent.id})
    assert raised.value.code == "charge_already_refunded"

    updated = await stripe_client.v1.refunds.update_async(rest.id, {"metadata": {"ticket": "9"}})
    assert updated.metadata["ticket"] == "9"
    listed = await stripe_client.v1.refunds.list_async({"payment_intent": intent.id, "limit": 1})
    assert [r.id for r in listed.data] == [rest.id] and listed.has_more
    refunded_events = await stripe_client.v1.events.list_async({"type": "charge.refunded"})
    assert [e.data.previous_attributes["amount_refunded"] for e in refunded_events.data] == [
        1500,
        0,
    ]
    assert (await event_types(stripe_client))[-5:] == [
        "refund.created",
        "charge.refunded",
        "refund.created",
        "charge.refunded",
        "refund.updated",
    ]


async def test_only_a_succeeded_payment_can_be_refunded(stripe_client):
    with pytest.raises(stripe.CardError) as raised:
        await pay(stripe_client, "pm_card_chargeDeclined")
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await stripe_client.v1.refunds.create_async(
            {"payment_intent": raised.value.error.payment_intent.id}
        )
    assert refused.value.param == "payment_intent"
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await stripe_client.v1.refunds.create_async({"charge": raised.value.error.charge})
    assert refused.value.param == "charge"
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await stripe_client.v1.refunds.create_async({"charge": "ch_missing"})
    assert refused.value.http_status == 404 and refused.value.code == "resource_missing"


async def test_payment_events_are_delivered_signed(stripe_client, webhook_sink):
    await stripe_client.v1.webhook_endpoints.create_async(
        {"url": webhook_sink.url, "enabled_events": ["payment_intent.succeeded", "charge.refunded"]}
    )
    intent = await pay(stripe_client, "pm_card_visa", amount=1200)
    await stripe_client.v1.refunds.create_async({"payment_intent": intent.id})
    await webhook_sink.wait_for(2)
    events = [
        stripe.Webhook.construct_event(body, headers["stripe-signature"], WEBHOOK_SECRET)
        for headers, body in webhook_sink.received
    ]
    assert sorted(e.type for e in events) == ["charge.refunded", "payment_intent.succeeded"]
    succeeded = next(e for e in events if e.type == "payment_intent.succeeded")
    assert succeeded.data.object.id == intent.id and succeeded.data.object.status == "succeeded"


def stripe_objects(value) -> list[dict]:
    """Every Stripe object (a dict with `object` and `id`) in a response, nested ones too."""
    if isinstance(value, list):
        return [found for item in value for found in stripe_objects(item)]
    if not isinstance(value, dict):
        return []
    own = [value] if "id" in value and value.get("object") not in (None, "list") else []
    return own + [found for item in value.values() for found in stripe_objects(item)]


async def test_declines_and_three_d_secure_keep_the_fixture_shapes(stripe_client, sandbox):
    responses: list = []
    customer = await new_customer(stripe_client)
    for token in ("pm_card_chargeDeclined", "pm_card_authenticationRequired"):
        try:
            intent = await pay(stripe_client, token, customer=customer.id, expand=["customer"])
            answer = await authenticate(sandbox, "payment_intents", intent.id, "fail")
            responses += [intent.to_dict(), answer.json()]
        except stripe.CardError as error:
            responses.append(error.json_body)
    setup = await stripe_client.v1.setup_intents.create_async(
        {"customer": customer.id, "payment_method": "pm_card_authenticationRequired"}
        | {"confirm": True}
    )
    failed = await authenticate(sandbox, "setup_intents", setup.id, "fail")
    responses += [setup.to_dict(), failed.json()]
    responses.append((await stripe_client.v1.events.list_async({"limit": 100})).to_dict())
    objects = stripe_objects(responses)
    assert {"payment_intent", "payment_method", "setup_intent", "charge", "customer"} <= {
        obj["object"] for obj in objects
    }
    wrong = {obj["id"] for obj in objects if set(obj) != set(fixture(obj["object"]))}
    assert wrong == set()
