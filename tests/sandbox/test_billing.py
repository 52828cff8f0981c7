"""Catalog, subscriptions, invoices, Checkout and the customer portal, through the official SDK
(plus the `/_sandbox` browser actions a customer would take)."""

import calendar
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
import stripe

from tests.sandbox.conftest import WEBHOOK_SECRET

# A saved card that attaches fine but whose charges are declined (Stripe's 4000000000000341).
DECLINING_CARD = "pm_card_chargeCustomerFail"


# Helpers --------------------------------------------------------------------------------------


async def catalog(client: stripe.StripeClient, amount: int = 2900, **recurring):
    product = await client.v1.products.create_async({"name": "Pro"})
    price = await client.v1.prices.create_async(
        {
            "product": product.id,
            "currency": "usd",
            "unit_amount": amount,
            "recurring": {"interval": "month", **recurring},
            "metadata": {"credits": "1000"},
        }
    )
    return product, price


async def customer_with_card(client: stripe.StripeClient, card: str = "pm_card_visa"):
    customer = await client.v1.customers.create_async({"email": "sub@example.com"})
    method = await client.v1.payment_methods.attach_async(card, {"customer": customer.id})
    await client.v1.customers.update_async(
        customer.id, {"invoice_settings": {"default_payment_method": method.id}}
    )
    return customer, method


async def subscribe(client: stripe.StripeClient, customer, price, **params):
    return await client.v1.subscriptions.create_async(
        {"customer": customer.id, "items": [{"price": price.id}], **params}
    )


async def event_types(client: stripe.StripeClient) -> list[str]:
    events = await client.v1.events.list_async({"limit": 100})
    return [event.type for event in reversed(events.data)]


async def browser(sandbox, path: str, data: dict | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=sandbox.url) as client:
        return await client.post(path, data=data or {})


def months_later(timestamp: int, months: int) -> int:
    moment = datetime.fromtimestamp(timestamp, UTC)
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


# Catalog --------------------------------------------------------------------------------------


async def test_catalog_create_list_update(stripe_client):
    v1 = stripe_client.v1
    product = await v1.products.create_async(
        {
            "name": "Team",
            "metadata": {"tier": "2"},
            "default_price_data": {
                "currency": "usd",
                "unit_amount": 9900,
                "recurring": {"interval": "year"},
            },
        }
    )
    assert product.default_price.startswith("price_") and product.active
    yearly = await v1.prices.retrieve_async(product.default_price)
    assert yearly.recurring.interval == "year" and yearly.product == product.id
    monthly = await v1.prices.create_async(
        {
            "product_data": {"name": "Starter"},
            "currency": "USD",
            "unit_amount": 500,
            "recurring": {"interval": "month", "trial_period_days": 7},
            "lookup_key": "starter_monthly",
            "nickname": "Starter",
            "metadata": {"credits": "50"},
        }
    )
    assert monthly.currency == "usd" and monthly.type == "recurring"
    assert monthly.recurring.trial_period_days == 7
    assert monthly.unit_amount_decimal == Decimal(500)
    one_off = await v1.prices.create_async(
        {"product": product.id, "currency": "usd", "unit_amount": 1500}
    )
    assert one_off.type == "one_time" and one_off.recurring is None

    by_key = await v1.prices.list_async({"lookup_keys": ["starter_monthly"]})
    assert [p.id for p in by_key.data] == [monthly.id]
    of_product = await v1.prices.list_async({"product": product.id})
    assert [p.id for p in of_product.data] == [one_off.id, yearly.id]
    recurring = await v1.prices.list_async({"type": "recurring", "recurring": {"interval": "year"}})
    assert [p.id for p in recurring.data] == [yearly.id]

    archived = await v1.prices.update_async(
        monthly.id, {"active": False, "metadata": {"credits": "60"}}
    )
    assert archived.active is False and archived.metadata["credits"] == "60"
    assert [p.id for p in (await v1.prices.list_async({"active": True})).data] == [
        one_off.id,
        yearly.id,
    ]
    moved = await v1.prices.create_async(
        {
            "product": product.id,
            "currency": "usd",
            "unit_amount": 700,
            "recurring": {"interval": "month"},
            "lookup_key": "starter_monthly",
            "transfer_lookup_key": True,
        }
    )
    assert (await v1.prices.retrieve_async(monthly.id)).lookup_key is None
    assert moved.lookup_key == "starter_monthly"
    with pytest.raises(stripe.InvalidRequestError) as taken:
        await v1.prices.create_async(
            {
                "product": product.id,
                "currency": "usd",
                "unit_amount": 1,
                "lookup_key": "starter_monthly",
            }
        )
    assert "already uses that lookup key" in taken.value.user_message

    renamed = await v1.products.update_async(product.id, {"name": "Team+", "active": False})
    assert renamed.name == "Team+" and renamed.active is False
    active = await v1.products.list_async({"active": True})
    assert product.id not in [p.id for p in active.data]
    types = await event_types(stripe_client)
    assert types.count("price.created") == 4 and types.count("plan.created") == 3
    assert "product.updated" in types and "price.updated" in types
    updated = await v1.events.list_async({"type": "product.updated"})
    assert updated.data[0].data.previous_attributes["name"] == "Team"


async def test_price_checks(stripe_client):
    v1 = stripe_client.v1
    product = await v1.products.create_async({"name": "Checks"})
    with pytest.raises(stripe.InvalidRequestError) as no_product:
        await v1.prices.create_async({"currency": "usd", "unit_amount": 100})
    assert no_product.value.param == "product"
    with pytest.raises(stripe.InvalidRequestError) as bad_interval:
        await v1.prices.create_async(
            {
                "product": product.id,
                "currency": "usd",
                "unit_amount": 100,
                "recurring": {"interval": "fortnight"},
            }
        )
    assert bad_interval.value.param == "recurring[interval]"
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        await v1.prices.create_async(
            {"product": product.id, "currency": "usd", "unit_amount": 100, "colour": "red"}
        )  # type: ignore[typeddict-unknown-key]
    assert unknown.value.code == "parameter_unknown"
    await v1.prices.create_async({"product": product.id, "currency": "usd", "unit_amount": 100})
    with pytest.raises(stripe.InvalidRequestError):
        await v1.products.delete_async(product.id)
    empty = await v1.products.create_async({"name": "Empty"})
    assert (await v1.products.delete_async(empty.id)).deleted is True
    with pytest.raises(stripe.InvalidRequestError) as gone:
        await v1.products.retrieve_async(empty.id)
    assert gone.value.http_status == 404


# Subscriptions: creation and first payment ----------------------------------------------------


async def test_subscription_happy_path(stripe_client):
    v1 = stripe_client.v1
    _, price = await catalog(stripe_client)
    customer, method = await customer_with_card(stripe_client)
    subscription = await subscribe(
        stripe_client,
        customer,
        price,
        metadata={"user_id": "u1"},
        expand=["latest_invoice.payments"],
    )
    assert subscription.status == "active" and subscription.metadata["user_id"] == "u1"
    item = subscription["items"].data[0]
    assert item.price.id == price.id and item.quantity == 1 and item.plan.amount == 2900
    assert item.current_period_start == subscription.start_date == subscription.billing_cycle_anchor
    assert item.current_period_end == months_later(item.current_period_start, 1)
    assert "current_period_end" not in subscription

    invoice = subscription.latest_invoice
    assert invoice.status == "paid" and invoice.amount_paid == invoice.total == 2900
    assert invoice.billing_reason == "subscription_create"
    assert invoice.number == f"{customer.invoice_prefix}-0001"
    assert invoice.hosted_invoice_url.startswith("https://") and invoice.invoice_pdf
    assert invoice.status_transitions.paid_at is not None
    assert invoice.parent.type == "subscription_details"
    assert invoice.parent.subscription_details.subscription == subscription.id
    assert invoice.parent.subscription_details.metadata["user_id"] == "u1"
    (line,) = invoice.lines.data
    assert line.amount == 2900 and line.description == "1 × Pro (at $29.00 / month)"
    assert line.period.end == item.current_period_end
    assert line.parent.subscription_item_details.subscription_item == item.id
    (payment,) = invoice.payments.data
    assert payment.status == "paid" and payment.amount_paid == 2900
    intent = await v1.payment_intents.retrieve_async(payment.payment.payment_intent)
    assert intent.status == "succeeded" and intent.amount == 2900
    assert intent.customer == customer.id and intent.payment_method == method.id
    assert "payments" not in (await v1.invoices.retrieve_async(invoice.id)).to_dict()

    types = await event_types(stripe_client)
    billing = [t for t in types if t.startswith(("invoice", "customer.subscription"))]
    assert billing == [
        "customer.subscription.created",
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_succeeded",
        "invoice_payment.paid",
    ]
    assert types.index("payment_intent.succeeded") < types.index("invoice.paid")
    created = (await v1.events.list_async({"type": "customer.subscription.created"})).data[0]
    assert created.data.object.status == "active"


async def test_subscription_params_are_checked(stripe_client):
    v1 = stripe_client.v1
    _, price = await catalog(stripe_client)
    customer, _ = await customer_with_card(stripe_client)
    with pytest.raises(stripe.InvalidRequestError) as missing:
        await v1.subscriptions.create_async({"items": [{"price": price.id}]})
    assert missing.value.user_message == "Missing required param: customer."
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        await v1.subscriptions.create_async(
            {"customer": customer.id, "items": [{"price": price.id, "qty": 2}]}  # type: ignore[typeddict-unknown-key]
        )
    assert unknown.value.code == "parameter_unknown" and unknown.value.param == "items[0][qty]"
    with pytest.raises(stripe.InvalidRequestError) as behaviour:
        await subscribe(stripe_client, customer, price, payment_behavior="sometimes")
    assert behaviour.value.param == "payment_behavior"
    with pytest.raises(stripe.InvalidRequestError) as no_price:
        await v1.subscriptions.create_async(
            {"customer": customer.id, "items": [{"price": "price_x"}]}
        )
    assert no_price.value.http_status == 404 and no_price.value.param == "items[0][price]"
    with pytest.raises(stripe.InvalidRequestError) as anchor:
        await subscribe(stripe_client, customer, price, billing_cycle_anchor=1_900_000_000)
    assert "billing_cycle_anchor" in anchor.value.user_message
    assert (await v1.subscriptions.list_async()).data == []


async def test_no_payment_method_is_refused(stripe_client):
    _, price = await catalog(stripe_client)
    customer = await stripe_client.v1.customers.create_async({"email": "bare@example.com"})
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await subscribe(stripe_client, customer, price)
    assert refused.value.user_message.startswith(
        "This customer has no attached payment source or default payment method."
    )
    assert (await stripe_client.v1.invoices.list_async()).data == []


async def test_free_subscription_needs_no_card(stripe_client):
    _, price = await catalog(stripe_client, amount=0)
    customer = await stripe_client.v1.customers.create_async({"email": "free@example.com"})
    subscription = await subscribe(stripe_client, customer, price, expand=["latest_invoice"])
    assert subscription.status == "active"
    assert subscription.latest_invoice.status == "paid"
    assert subscription.latest_invoice.amount_due == 0


async def test_declined_card_leaves_an_incomplete_subscription(stripe_client):
    v1 = stripe_client.v1
    _, price = await catalog(stripe_client)
    customer, _ = await customer_with_card(stripe_client, DECLINING_CARD)
    subscription = await subscribe(
        stripe_client,
        customer,
        price,
        expand=["latest_invoice.payments", "latest_invoice.confirmation_secret"],
    )
    assert subscription.status == "incomplete"
    invoice = subscription.latest_invoice
    assert invoice.status == "open" and invoice.attempt_count == 1 and invoice.attempted
    assert invoice.amount_remaining == 2900
    intent = await v1.payment_intents.retrieve_async(
        invoice.payments.data[0].payment.payment_intent
    )
    assert intent.status == "requires_payment_method"
    assert intent.last_payment_error.code == "card_declined"
    # The customer can still pay it on-session with the invoice's client secret.
    assert invoice.confirmation_secret.client_secret == intent.client_secret
    types = await event_types(stripe_client)
    assert "invoice.payment_failed" in types and "invoice.paid" not in types
    created = (await v1.events.list_async({"type": "customer.subscription.created"})).data[0]
    assert created.data.object.status == "incomplete"


async def test_error_if_incomplete_leaves_nothing_behind(stripe_client):
    v1 = stripe_client.v1
    _, price = await catalog(stripe_client)
    customer, _ = await customer_with_card(stripe_client, DECLINING_CARD)
    with pytest.raises(stripe.CardError) as declined:
        await subscribe(stripe_client, customer, price, payment_behavior="error_if_incomplete")
    assert declined.value.http_status == 402 and declined.value.code == "card_declined"
    assert (await v1.subscriptions.list_async({"status": "all"})).data == []
    assert (await v1.invoices.list_async()).data == []
    types = await event_types(stripe_client)
    assert not [t for t in types if t.startswith(("invoice", "customer.subscription"))]
    # The declined attempt itself did happen; its PaymentIntent is canceled.
    intents = await v1.payment_intents.list_async({"customer": customer.id})
    assert [i.status for i in intents.data] == ["canceled"]
    again = await v1.customers.retrieve_async(customer.id)
    assert again.next_invoice_sequence == 1


async def test_insufficient_funds_then_a_good_card(stripe_client):
    v1 = stripe_client.v1
    _, price = await catalog(stripe_client)
    customer = await v1.customers.create_async({"email": "poor@example.com"})
    subscription = await subscribe(
        stripe_client,
        customer,
        price,
        payment_behavior="default_incomplete",
        payment_settings={"save_default_payment_method": "on_subscription"},
        expand=["latest_invoice.payments"],
    )
    intent_id = subscription.latest_invoice.payments.data[0].payment.payment_intent
    with pytest.raises(stripe.CardError) as poor:
        await v1.payment_intents.confirm_async(
            intent_id, {"payment_method": "pm_card_chargeDeclinedInsufficientFunds"}
        )
    assert (
        poor.value.code == "card_declined" and poor.value.error.decline_code == "insufficient_funds"
    )
    invoice = await v1.invoices.retrieve_async(subscription.latest_invoice.id)
    assert invoice.status == "open" and invoice.attempt_count == 1
    assert (await v1.subscriptions.retrieve_async(subscription.id)).status == "incomplete"

    await v1.payment_intents.confirm_async(intent_id, {"payment_method": "pm_card_visa"})
    paid = await v1.subscriptions.retrieve_async(subscription.id, {"expand": ["latest_invoice"]})
    assert paid.status == "active" and paid.latest_invoice.status == "paid"
    # save_default_payment_method=on_subscription keeps the card that paid.
    intent = await v1.payment_intents.retrieve_async(intent_id)
    assert paid.default_payment_method == intent.payment_method
    assert (await v1.payment_methods.retrieve_async(intent.payment_method)).customer == customer.id


async def test_three_d_secure_then_authenticated(stripe_client, sandbox):
    v1 = stripe_client.v1
    _, price = await catalog(stripe_client)
    customer, _ = await customer_with_card(stripe_client, "pm_card_authenticationRequired")
    subscription = await subscribe(
        stripe_client,
        customer,
        price,
        expand=["latest_invoice.payments", "latest_invoice.confirmation_secret"],
    )
    assert subscription.status == "incomplete"
    invoice = subscription.latest_invoice
    intent_id = invoice.payments.data[0].payment.payment_intent
    intent = await v1.payment_intents.retrieve_async(intent_id)
    assert intent.status == "requires_action"
    assert invoice.confirmation_secret.client_secret == intent.client_secret
    assert "invoice.payment_action_required" in await event_types(stripe_client)

    response = await browser(
        sandbox, f"/_sandbox/payment_intents/{intent_id}/authenticate", {"outcome": "succeed"}
    )
    assert response.status_code == 200
    subscription = await v1.subscriptions.retrieve_async(
        subscription.id, {"expand": ["latest_invoice.confirmation_secret"]}
    )
    assert subscription.status == "active" and subscription.latest_invoice.status == "paid"
    assert subscription.latest_invoice.confirmation_secret is None
    updated = (await v1.events.list_async({"type": "customer.subscription.updated"})).data[0]
    assert updated.data.object.status == "active"
    assert updated.data.previous_attributes["status"] == "incomplete"


async def test_three_d_secure_failed(stripe_client, sandbox):
    v1 = stripe_client.v1
    _, price = await catalog(stripe_client)
    customer, _ = await customer_with_card(stripe_client, "pm_card_authenticationRequired")
    subscription = await subscribe(
        stripe_client, customer, price, expand=["latest_invoice.payments"]
    )
    intent_id = subscription.latest_invoice.payments.data[0].payment.payment_intent
    await browser(
        sandbox, f"/_sandbox/payment_intents/{intent_id}/authenticate", {"outcome": "fail"}
    )
    invoice = await v1.invoices.retrieve_async(subscription.latest_invoice.id)
    # Failing the challenge ends the same attempt that asked for it.
    assert invoice.status == "open" and invoice.attempt_count == 1
    assert (await v1.subscriptions.retrieve_async(subscription.id)).status == "incomplete"
    assert "invoice.payment_failed" in await event_types(stripe_client)


async def test_default_incomplete_gives_the_confirmation_secret(stripe_client):
    v1 = stripe_client.v1
    _, price = await catalog(stripe_client)
    customer = await v1.customers.create_async({"email": "new@example.com"})
    subscription = await subscribe(
        stripe_client,
        customer,
        price,
        payment_behavior="default_incomplete",
        expand=["latest_invoice.confirmation_secret", "latest_invoice.payments"],
    )
    assert subscription.status == "incomplete"
    invoice = subscription.latest_invoice
    assert invoice.status == "open" and invoice.attempt_count == 0
    secret = invoice.confirmation_secret
    assert secret.type == "payment_intent"
    intent = await v1.payment_intents.retrieve_async(
        invoice.payments.data[0].payment.payment_intent
    )
    assert secret.client_secret == intent.client_secret
    assert intent.status == "requires_payment_method" and intent.amount == 2900
    assert intent.description == "Subscription creation"


# Subscriptions: cancel, plan changes, prorations -----------------------------------------------


async def test_cancel_now(stripe_client):
    v1 = stripe_client.v1
    _, price = await catalog(stripe_client)
    customer, _ = await customer_with_card(stripe_client)
    subscription = await subscribe(stripe_client, customer, price)
    canceled = await v1.subscriptions.cancel_async(
        subscription.id,
        {"invoice_now": False, "prorate": False, "cancellation_details": {"comment": "too pricey"}},
    )
    assert canceled.status == "canceled" and canceled.canceled_at and canceled.ended_at
    assert canceled.cancellation_details.reason == "cancellation_requested"
    assert canceled.cancellation_details.comment == "too pricey"
    deleted = (await v1.events.list_async({"type": "customer.subscription.deleted"})).data[0]
    assert deleted.data.object.id == subscription.id
    assert (await v1.subscriptions.list_async()).data == []
    ended = await v1.subscriptions.list_async({"status": "ended"})
    assert [s.id for s in ended.data] == [subscription.id]
    with pytest.raises(stripe.InvalidRequestError):
        await v1.subscriptions.update_async(subscription.id, {"cancel_at_period_end": True})
    kept = await v1.subscriptions.update_async(subscription.id, {"metadata": {"note": "x"}})
    assert kept.metadata["note"] == "x"


async def test_cancel_at_period_end_and_back(stripe_client):
    v1 = stripe_client.v1
    _, price = await catalog(stripe_client)
    customer, _ = await customer_with_card(stripe_client)
    subscription = await subscribe(stripe_client, customer, price)
    end = subscription["items"].data[0].current_period_end
    scheduled = await v1.subscriptions.update_async(subscription.id, {"cancel_at_period_end": True})
    assert scheduled.status == "active" and scheduled.cancel_at_period_end
    assert scheduled.cancel_at == end
    assert scheduled.cancellation_details.reason == "cancellation_requested"
    back = await v1.subscriptions.update_async(subscription.id, {"cancel_at_period_end": False})
    assert back.cancel_at_period_end is False and back.cancel_at is None
    updates = (await v1.events.list_async({"type": "customer.subscription.updated"})).data
    assert [u.data.previous_attributes["cancel_at_period_end"] for u in updates] == [True, False]
    assert updates[1].data.previous_attributes["cancel_at"] is None


async def test_plan_change_without_proration(stripe_client):
    v1 = stripe_client.v1
    product, price = await catalog(stripe_client)
    bigger = await v1.prices.create_async(
        {
            "product": product.id,
            "currency": "usd",
            "unit_amount": 4900,
            "recurring": {"interval": "month"},
        }
    )
    customer, _ = await customer_with_card(stripe_client)
    subscription = await subscribe(stripe_client, customer, price)
    item = subscription["items"].data[0]
    changed = await v1.subscriptions.update_async(
        subscription.id,
        {
            "items": [{"id": item.id, "price": bigger.id, "quantity": 2}],
            "proration_behavior": "none",
        },
    )
    (new_item,) = changed["items"].data
    assert new_item.id == item.id and new_item.price.id == bigger.id and new_item.quantity == 2
    assert new_item.current_period_end == item.current_period_end
    assert changed.latest_invoice == subscription.latest_invoice
    assert (await v1.invoice_items.list_async({"customer": customer.id})).data == []
    update = (await v1.events.list_async({"type": "customer.subscription.updated"})).data[0]
    assert update.data.previous_attributes["items"]["data"][0]["price"]["id"] == price.id


async def test_create_prorations_to_the_second(stripe_client):
    v1 = stripe_client.v1
    product, price = await catalog(stripe_client)
    bigger = await v1.prices.create_async(
        {
            "product": product.id,
            "currency": "usd",
            "unit_amount": 4900,
            "recurring": {"interval": "month"},
        }
    )
    customer, _ = await customer_with_card(stripe_client)
    subscription = await subscribe(stripe_client, customer, price)
    item = subscription["items"].data[0]
    start, end = item.current_period_start, item.current_period_end
    halfway = start + (end - start) // 2  # a month is whole days, so exactly half is left
    await v1.subscriptions.update_async(
        subscription.id,
        {
            "items": [{"id": item.id, "price": bigger.id, "quantity": 2}],
            "proration_behavior": "create_prorations",
            "proration_date": halfway,
        },
    )
    pending = await v1.invoice_items.list_async({"customer": customer.id, "pending": True})
    by_amount = sorted(pending.data, key=lambda i: i.amount)
    # Half of 1 × $29.00 back, half of 2 × $49.00 due.
    assert [i.amount for i in by_amount] == [-1450, 4900]
    assert all(i.proration for i in by_amount)
    assert by_amount[0].description.startswith("Unused time on Pro after ")
    assert by_amount[1].description.startswith("Remaining time on 2 × Pro after ")
    assert by_amount[0].period.start == halfway and by_amount[0].period.end == end
    assert (await v1.subscriptions.retrieve_async(subscription.id)).latest_invoice == (
        subscription.latest_invoice
    )

    # always_invoice bills those pending items together with the new ones, at once.
    third = start + (end - start) * 3 // 4
    updated = await v1.subscriptions.update_async(
        subscription.id,
        {
            "items": [{"id": item.id, "quantity": 1}],
            "proration_behavior": "always_invoice",
            "proration_date": third,
            "expand": ["latest_invoice"],
        },
    )
    invoice = updated.latest_invoice
    left = (end - third) / (end - start)
    credit, debit = round(-2 * 4900 * left), round(4900 * left)
    assert sorted(line.amount for line in invoice.lines.data) == sorted(
        [-1450, 4900, credit, debit]
    )
    assert invoice.billing_reason == "subscription_update" and invoice.status == "paid"
    assert invoice.amount_paid == -1450 + 4900 + credit + debit
    assert (await v1.invoice_items.list_async({"pending": True})).data == []


async def test_downgrade_credit_is_kept_for_the_next_invoice(stripe_client):
    v1 = stripe_client.v1
    product, price = await catalog(stripe_client, amount=4900)
    smaller = await v1.prices.create_async(
        {
            "product": product.id,
            "currency": "usd",
            "unit_amount": 900,
            "recurring": {"interval": "month"},
        }
    )
    customer, _ = await customer_with_card(stripe_client)
    subscription = await subscribe(stripe_client, customer, price)
    item = subscription["items"].data[0]
    halfway = item.current_period_start + (item.current_period_end - item.current_period_start) // 2
    updated = await v1.subscriptions.update_async(
        subscription.id,
        {
            "items": [{"id": item.id, "price": smaller.id}],
            "proration_behavior": "always_invoice",
            "proration_date": halfway,
            "expand": ["latest_invoice"],
        },
    )
    invoice = updated.latest_invoice
    assert invoice.total == -2450 + 450 and invoice.amount_due == 0 and invoice.status == "paid"
    assert invoice.ending_balance == -2000
    assert (await v1.customers.retrieve_async(customer.id)).balance == -2000


async def test_interval_change_bills_at_once(stripe_client):
    v1 = stripe_client.v1
    product, price = await catalog(stripe_client)
    yearly = await v1.prices.create_async(
        {
            "product": product.id,
            "currency": "usd",
            "unit_amount": 29000,
            "recurring": {"interval": "year"},
        }
    )
    customer, _ = await customer_with_card(stripe_client)
    subscription = await subscribe(stripe_client, customer, price)
    item = subscription["items"].data[0]
    updated = await v1.subscriptions.update_async(
        subscription.id,
        {
            "items": [{"id": item.id, "price": yearly.id}],
            "proration_behavior": "none",
            "expand": ["latest_invoice"],
        },
    )
    new_item = updated["items"].data[0]
    assert new_item.current_period_end == months_later(new_item.current_period_start, 12)
    assert updated.latest_invoice.id != subscription.latest_invoice
    assert updated.latest_invoice.amount_paid == 29000


async def test_update_with_a_declined_card(stripe_client):
    v1 = stripe_client.v1
    product, price = await catalog(stripe_client)
    bigger = await v1.prices.create_async(
        {
            "product": product.id,
            "currency": "usd",
            "unit_amount": 4900,
            "recurring": {"interval": "month"},
        }
    )
    customer, _ = await customer_with_card(stripe_client)
    subscription = await subscribe(stripe_client, customer, price)
    item_id = subscription["items"].data[0].id
    declining = await v1.payment_methods.attach_async(DECLINING_CARD, {"customer": customer.id})
    change = {
        "items": [{"id": item_id, "price": bigger.id}],
        "proration_behavior": "always_invoice",
        "default_payment_method": declining.id,
    }
    with pytest.raises(stripe.CardError):
        await v1.subscriptions.update_async(
            subscription.id, {**change, "payment_behavior": "error_if_incomplete"}
        )
    unchanged = await v1.subscriptions.retrieve_async(subscription.id)
    assert unchanged["items"].data[0].price.id == price.id
    assert unchanged.default_payment_method is None
    assert len((await v1.invoices.list_async()).data) == 1
    assert (await v1.invoice_items.list_async()).data == []

    past_due = await v1.subscriptions.update_async(subscription.id, change)
    assert past_due.status == "past_due" and past_due["items"].data[0].price.id == bigger.id


# Invoices -------------------------------------------------------------------------------------


async def test_invoice_pay_after_a_decline(stripe_client):
    v1 = stripe_client.v1
    _, price = await catalog(stripe_client)
    customer, _ = await customer_with_card(stripe_client, DECLINING_CARD)
    subscription = await subscribe(stripe_client, customer, price)
    with pytest.raises(stripe.CardError):
        await v1.invoices.pay_async(subscription.latest_invoice)
    good = await v1.payment_methods.attach_async("pm_card_visa", {"customer": customer.id})
    paid = await v1.invoices.pay_async(subscription.latest_invoice, {"payment_method": good.id})
    assert paid.status == "paid" and paid.attempt_count == 3 and paid.amount_paid == 2900
    assert (await v1.subscriptions.retrieve_async(subscription.id)).status == "active"
    with pytest.raises(stripe.InvalidRequestError) as again:
        await v1.invoices.pay_async(paid.id)
    assert again.value.user_message == "Invoice is already paid"
    with pytest.raises(stripe.InvalidRequestError):
        await v1.invoices.pay_async(paid.id, {"payment_method": "pm_card_visa"})


async def test_void_and_mark_uncollectible(stripe_client):
    v1 = stripe_client.v1
    _, price = await catalog(stripe_client)
    customer = await v1.customers.create_async({"email": "void@example.com"})
    first = await subscribe(
        stripe_client,
        customer,
        price,
        payment_behavior="default_incomplete",
        expand=["latest_invoice.payments"],
    )
    intent_id = first.latest_invoice.payments.data[0].payment.payment_intent
    voided = await v1.invoices.void_invoice_async(first.latest_invoice.id, {"expand": ["payments"]})
    assert voided.status == "void" and voided.status_transitions.voided_at
    assert voided.payments.data[0].status == "canceled"
    assert (await v1.payment_intents.retrieve_async(intent_id)).status == "canceled"
    with pytest.raises(stripe.InvalidRequestError) as void_pay:
        await v1.invoices.pay_async(voided.id)
    assert void_pay.value.user_message == "Voided invoices cannot be paid."
    with pytest.raises(stripe.InvalidRequestError):
        await v1.invoices.void_invoice_async(voided.id)

    second = await subscribe(stripe_client, customer, price, payment_behavior="default_incomplete")
    bad = await v1.invoices.mark_uncollectible_async(second.latest_invoice)
    assert bad.status == "uncollectible" and bad.status_transitions.marked_uncollectible_at
    types = await event_types(stripe_client)
    assert "invoice.voided" in types and "invoice.marked_uncollectible" in types
    with pytest.raises(stripe.InvalidRequestError) as refinalize:
        await v1.invoices.finalize_invoice_async(bad.id)
    assert "re-finalize" in refinalize.value.user_message


async def test_lists_filter_and_page(stripe_client):
    v1 = stripe_client.v1
    product, price = await catalog(stripe_client)
    other = await v1.prices.create_async(
        {
            "product": product.id,
            "currency": "usd",
            "unit_amount": 100,
            "recurring": {"interval": "week"},
        }
    )
    ada, _ = await customer_with_card(stripe_client)
    bob, _ = await customer_with_card(stripe_client, DECLINING_CARD)
    first = await subscribe(stripe_client, ada, price)
    second = await subscribe(stripe_client, ada, other)
    third = await subscribe(stripe_client, bob, price)

    of_ada = await v1.subscriptions.list_async({"customer": ada.id})
    assert [s.id for s in of_ada.data] == [second.id, first.id]
    with_price = await v1.subscriptions.list_async({"price": price.id})
    assert [s.id for s in with_price.data] == [third.id, first.id]
    incomplete = await v1.subscriptions.list_async({"status": "incomplete"})
    assert [s.id for s in incomplete.data] == [third.id]
    page = await v1.subscriptions.list_async({"limit": 2})
    assert page.has_more and [s.id for s in page.data] == [third.id, second.id]
    rest = await v1.subscriptions.list_async({"limit": 2, "starting_after": second.id})
    assert [s.id for s in rest.data] == [first.id] and not rest.has_more
    weekly = (await v1.subscriptions.retrieve_async(second.id))["items"].data[0]
    assert weekly.current_period_end - weekly.current_period_start == 7 * 86400

    open_invoices = await v1.invoices.list_async({"status": "open"})
    assert [i.id for i in open_invoices.data] == [third.latest_invoice]
    of_first = await v1.invoices.list_async({"subscription": first.id})
    assert [i.id for i in of_first.data] == [first.latest_invoice]
    of_bob = await v1.invoices.list_async({"customer": bob.id})
    assert [i.id for i in of_bob.data] == [third.latest_invoice]
    lines = await v1.invoices.line_items.list_async(first.latest_invoice, {"limit": 1})
    assert len(lines.data) == 1 and not lines.has_more and lines.data[0].amount == 2900
    with pytest.raises(stripe.InvalidRequestError):
        await v1.invoices.list_async({"status": "late"})


async def test_subscription_with_several_items(stripe_client):
    v1 = stripe_client.v1
    product, price = await catalog(stripe_client)
    seats = await v1.prices.create_async(
        {
            "product": product.id,
            "currency": "usd",
            "unit_amount": 1000,
            "recurring": {"interval": "month"},
        }
    )
    customer, _ = await customer_with_card(stripe_client)
    subscription = await v1.subscriptions.create_async(
        {
            "customer": customer.id,
            "expand": ["latest_invoice"],
            "items": [{"price": price.id}, {"price": seats.id, "quantity": 3}],
        }
    )
    assert subscription.latest_invoice.amount_paid == 2900 + 3000
    assert [line.description for line in subscription.latest_invoice.lines.data] == [
        "1 × Pro (at $29.00 / month)",
        "3 × Pro (at $10.00 / month)",
    ]
    seat_item = subscription["items"].data[1]
    trimmed = await v1.subscriptions.update_async(
        subscription.id,
        {
            "items": [{"id": seat_item.id, "deleted": True}],
            "proration_behavior": "none",
        },
    )
    assert [i.price.id for i in trimmed["items"].data] == [price.id]


async def test_pause_and_resume(stripe_client):
    v1 = stripe_client.v1
    _, price = await catalog(stripe_client)
    customer, _ = await customer_with_card(stripe_client)
    subscription = await subscribe(stripe_client, customer, price)
    with pytest.raises(stripe.InvalidRequestError):
        await v1.subscriptions.resume_async(subscription.id)
    paused = await v1.subscriptions.pause_async(
        subscription.id, {"bill_for": {"unused_time_from": {"type": "none"}}}
    )
    assert paused.status == "paused"
    resumed = await v1.subscriptions.resume_async(subscription.id, {"expand": ["latest_invoice"]})
    assert resumed.status == "active" and resumed.latest_invoice.status == "paid"
    assert resumed.latest_invoice.id != subscription.latest_invoice
    types = await event_types(stripe_client)
    assert "customer.subscription.paused" in types and "customer.subscription.resumed" in types


# Checkout and the customer portal --------------------------------------------------------------


async def test_checkout_subscription_completed(stripe_client, sandbox, webhook_sink):
    v1 = stripe_client.v1
    await v1.webhook_endpoints.create_async(
        {"url": webhook_sink.url, "enabled_events": ["checkout.session.completed"]}
    )
    _, price = await catalog(stripe_client)
    session = await v1.checkout.sessions.create_async(
        {
            "mode": "subscription",
            "line_items": [{"price": price.id, "quantity": 2}],
            "customer_email": "buyer@example.com",
            "client_reference_id": "user-7",
            "success_url": "https://example.com/ok",
            "cancel_url": "https://example.com/no",
            "metadata": {"plan": "pro"},
            "subscription_data": {"metadata": {"user_id": "7"}},
        }
    )
    assert session.status == "open" and session.payment_status == "unpaid"
    assert session.url.endswith(session.id) and session.amount_total == 5800
    response = await browser(sandbox, f"/_sandbox/checkout/sessions/{session.id}/complete")
    assert response.status_code == 200, response.text

    done = await v1.checkout.sessions.retrieve_async(session.id, {"expand": ["subscription"]})
    assert done.status == "complete" and done.payment_status == "paid"
    assert done.customer_details.email == "buyer@example.com"
    subscription = done.subscription
    assert subscription.status == "active" and subscription.customer == done.customer
    assert subscription.metadata["user_id"] == "7" and subscription["items"].data[0].quantity == 2
    assert subscription.default_payment_method is not None
    await webhook_sink.wait_for(1)
    headers, body = webhook_sink.received[0]
    event = stripe.Webhook.construct_event(body, headers["stripe-signature"], WEBHOOK_SECRET)
    assert event.type == "checkout.session.completed"
    assert event.data.object.client_reference_id == "user-7"
    assert event.data.object.subscription == subscription.id
    again = await browser(sandbox, f"/_sandbox/checkout/sessions/{session.id}/complete")
    assert again.status_code == 400


async def test_checkout_declined_card_keeps_the_session_open(stripe_client, sandbox):
    _, price = await catalog(stripe_client)
    session = await stripe_client.v1.checkout.sessions.create_async(
        {
            "mode": "subscription",
            "line_items": [{"price": price.id, "quantity": 1}],
            "success_url": "https://example.com/ok",
        }
    )
    response = await browser(
        sandbox,
        f"/_sandbox/checkout/sessions/{session.id}/complete",
        {"payment_method": DECLINING_CARD},
    )
    assert response.status_code == 402 and response.json()["error"]["code"] == "card_declined"
    assert (await stripe_client.v1.checkout.sessions.retrieve_async(session.id)).status == "open"
    assert (await stripe_client.v1.subscriptions.list_async({"status": "all"})).data == []


async def test_checkout_payment_mode(stripe_client, sandbox):
    v1 = stripe_client.v1
    product = await v1.products.create_async({"name": "Credits"})
    pack = await v1.prices.create_async(
        {"product": product.id, "currency": "usd", "unit_amount": 1500}
    )
    customer = await v1.customers.create_async({"email": "pay@example.com"})
    session = await v1.checkout.sessions.create_async(
        {
            "mode": "payment",
            "customer": customer.id,
            "line_items": [{"price": pack.id, "quantity": 3}],
            "payment_intent_data": {"metadata": {"credits": "300"}, "description": "Credit pack"},
            "success_url": "https://example.com/ok",
        }
    )
    assert session.payment_intent is None
    response = await browser(sandbox, f"/_sandbox/checkout/sessions/{session.id}/complete")
    assert response.status_code == 200, response.text
    done = await v1.checkout.sessions.retrieve_async(session.id, {"expand": ["payment_intent"]})
    assert done.payment_status == "paid" and done.customer == customer.id
    intent = done.payment_intent
    assert intent.status == "succeeded" and intent.amount == 4500
    assert intent.metadata["credits"] == "300" and intent.description == "Credit pack"
    with pytest.raises(stripe.InvalidRequestError) as recurring:
        _, monthly = await catalog(stripe_client)
        await v1.checkout.sessions.create_async(
            {
                "mode": "payment",
                "line_items": [{"price": monthly.id, "quantity": 1}],
            }
        )
    assert "recurring price" in recurring.value.user_message


async def test_checkout_list_and_expire(stripe_client):
    v1 = stripe_client.v1
    _, price = await catalog(stripe_client)
    customer = await v1.customers.create_async({"email": "x@example.com"})
    first = await v1.checkout.sessions.create_async(
        {
            "mode": "subscription",
            "customer": customer.id,
            "line_items": [{"price": price.id, "quantity": 1}],
        }
    )
    second = await v1.checkout.sessions.create_async(
        {
            "mode": "subscription",
            "line_items": [{"price": price.id, "quantity": 1}],
        }
    )
    mine = await v1.checkout.sessions.list_async({"customer": customer.id})
    assert [s.id for s in mine.data] == [first.id]
    expired = await v1.checkout.sessions.expire_async(second.id)
    assert expired.status == "expired"
    assert [s.id for s in (await v1.checkout.sessions.list_async({"status": "open"})).data] == [
        first.id
    ]
    with pytest.raises(stripe.InvalidRequestError):
        await v1.checkout.sessions.expire_async(second.id)
    assert "checkout.session.expired" in await event_types(stripe_client)
    with pytest.raises(stripe.InvalidRequestError) as no_quantity:
        await v1.checkout.sessions.create_async(
            {"mode": "subscription", "line_items": [{"price": price.id}]}
        )
    assert no_quantity.value.param == "line_items[0][quantity]"


async def test_portal_session(stripe_client):
    v1 = stripe_client.v1
    customer = await v1.customers.create_async({"email": "portal@example.com"})
    session = await v1.billing_portal.sessions.create_async(
        {"customer": customer.id, "return_url": "https://example.com/account"}
    )
    assert session.url.startswith("https://billing.stripe.com/p/session/test_")
    assert session.customer == customer.id and session.return_url == "https://example.com/account"
    with pytest.raises(stripe.InvalidRequestError) as missing:
        await v1.billing_portal.sessions.create_async({"return_url": "https://example.com"})
    assert missing.value.user_message == "Missing required param: customer."
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        await v1.billing_portal.sessions.create_async({"customer": "cus_nope"})
    assert unknown.value.http_status == 404


async def test_cancel_with_prorated_credit_invoiced_now(stripe_client):
    v1 = stripe_client.v1
    _, price = await catalog(stripe_client)
    customer, _ = await customer_with_card(stripe_client)
    subscription = await subscribe(stripe_client, customer, price)
    await v1.subscriptions.cancel_async(subscription.id, {"prorate": True, "invoice_now": True})
    final = (await v1.invoices.list_async({"subscription": subscription.id, "limit": 1})).data[0]
    assert final.id != subscription.latest_invoice
    # Almost none of the period was used: nearly all of $29.00 comes back as credit.
    assert -2900 <= final.total <= -2899 and final.amount_due == 0 and final.status == "paid"
    assert (await v1.customers.retrieve_async(customer.id)).balance == final.total
    (line,) = final.lines.data
    assert line.parent.subscription_item_details.proration is True
    assert line.description.startswith("Unused time on Pro after ")


async def test_resume_on_payment_success_waits_for_the_payment(stripe_client):
    v1 = stripe_client.v1
    _, price = await catalog(stripe_client)
    customer, _ = await customer_with_card(stripe_client)
    subscription = await subscribe(stripe_client, customer, price)
    await v1.subscriptions.pause_async(subscription.id)
    # Paused at once: the unused time, nearly all of it, waits as a credit.
    (credit,) = (await v1.invoice_items.list_async({"pending": True})).data
    assert -2900 <= credit.amount <= -2899 and credit.proration
    await v1.subscriptions.resume_async(subscription.id)
    await v1.subscriptions.pause_async(
        subscription.id, {"bill_for": {"unused_time_from": {"type": "none"}}}
    )
    declining = await v1.payment_methods.attach_async(DECLINING_CARD, {"customer": customer.id})
    await v1.subscriptions.update_async(subscription.id, {"default_payment_method": declining.id})
    waiting = await v1.subscriptions.resume_async(
        subscription.id,
        {"payment_behavior": "resume_on_payment_success", "expand": ["latest_invoice"]},
    )
    assert waiting.status == "paused" and waiting.latest_invoice.status == "open"
    assert waiting.latest_invoice.total == 2900
    good = await v1.payment_methods.attach_async("pm_card_visa", {"customer": customer.id})
    await v1.invoices.pay_async(waiting.latest_invoice.id, {"payment_method": good.id})
    assert (await v1.subscriptions.retrieve_async(subscription.id)).status == "active"
    assert "customer.subscription.resumed" in await event_types(stripe_client)


async def test_checkout_setup_mode_saves_the_card(stripe_client, sandbox):
    v1 = stripe_client.v1
    customer = await v1.customers.create_async({"email": "setup@example.com"})
    session = await v1.checkout.sessions.create_async(
        {"mode": "setup", "customer": customer.id, "success_url": "https://example.com/ok"}
    )
    assert session.payment_status == "no_payment_required"
    response = await browser(sandbox, f"/_sandbox/checkout/sessions/{session.id}/complete")
    assert response.status_code == 200, response.text
    done = await v1.checkout.sessions.retrieve_async(session.id, {"expand": ["setup_intent"]})
    assert done.status == "complete" and done.setup_intent.status == "succeeded"
    method = await v1.payment_methods.retrieve_async(done.setup_intent.payment_method)
    assert method.customer == customer.id


async def test_send_invoice_subscription_is_active_at_once(stripe_client):
    v1 = stripe_client.v1
    _, price = await catalog(stripe_client)
    customer = await v1.customers.create_async({"email": "ap@example.com"})
    with pytest.raises(stripe.InvalidRequestError) as missing:
        await subscribe(stripe_client, customer, price, collection_method="send_invoice")
    assert missing.value.param == "days_until_due"
    subscription = await subscribe(
        stripe_client,
        customer,
        price,
        collection_method="send_invoice",
        days_until_due=14,
        expand=["latest_invoice.payments"],
    )
    assert subscription.status == "active" and subscription.days_until_due == 14
    invoice = subscription.latest_invoice
    assert invoice.status == "open" and invoice.attempt_count == 0
    assert invoice.due_date == invoice.status_transitions.finalized_at + 14 * 86400
    intent_id = invoice.payments.data[0].payment.payment_intent
    assert (await v1.payment_intents.retrieve_async(intent_id)).status == "requires_payment_method"


async def test_amount_below_the_minimum_charge_goes_to_the_balance(stripe_client):
    _, price = await catalog(stripe_client, amount=30)
    customer, _ = await customer_with_card(stripe_client)
    subscription = await subscribe(stripe_client, customer, price, expand=["latest_invoice"])
    invoice = subscription.latest_invoice
    assert subscription.status == "active" and invoice.status == "paid"
    assert invoice.amount_due == 0 and invoice.ending_balance == 30
    assert (await stripe_client.v1.customers.retrieve_async(customer.id)).balance == 30
    assert (await stripe_client.v1.payment_intents.list_async()).data == []
