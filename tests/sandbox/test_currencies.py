"""Prices in several currencies (`currency_options`), through the official SDK: shown only when
expanded, chosen by subscriptions and Checkout, and one currency per customer at a time."""

import stripe

from tests.sandbox.test_billing import browser, customer_with_card, event_types
from tests.sandbox.test_tax import located_customer, refused, taxes
from tests.sandbox.test_time import DAY, JAN_31, advance, clock_at, customer_on

AUD_OPTION = {"aud": {"unit_amount": 4500, "tax_behavior": "exclusive"}}


async def multi_currency_price(client: stripe.StripeClient, **params):
    """Pro at $29.00 or A$45.00 a month."""
    product = await client.v1.products.create_async({"name": "Pro"})
    return await client.v1.prices.create_async(
        {
            "product": product.id,
            "currency": "usd",
            "unit_amount": 2900,
            "tax_behavior": "exclusive",
            "recurring": {"interval": "month"},
            "currency_options": AUD_OPTION,
            **params,
        }
    )


async def test_currency_options_are_shown_when_expanded(stripe_client):
    prices = stripe_client.v1.prices
    price = await multi_currency_price(stripe_client)
    assert "currency_options" not in price
    assert "currency_options" not in await prices.retrieve_async(price.id)
    expanded = await prices.retrieve_async(price.id, {"expand": ["currency_options"]})
    assert expanded.currency_options.to_dict() == {
        "aud": {
            "custom_unit_amount": None,
            "tax_behavior": "exclusive",
            "unit_amount": 4500,
            "unit_amount_decimal": "4500",
        },
        "usd": {
            "custom_unit_amount": None,
            "tax_behavior": "exclusive",
            "unit_amount": 2900,
            "unit_amount_decimal": "2900",
        },
    }
    listed = await prices.list_async({"expand": ["data.currency_options"]})
    assert set(listed.data[0].currency_options.to_dict()) == {"aud", "usd"}


async def test_currency_options_can_be_added_changed_and_cleared(stripe_client):
    prices = stripe_client.v1.prices
    price = await multi_currency_price(stripe_client)
    await prices.update_async(
        price.id, {"currency_options": {"eur": {"unit_amount": 2700}, "aud": {"unit_amount": 4600}}}
    )
    expanded = await prices.retrieve_async(price.id, {"expand": ["currency_options"]})
    options = expanded.currency_options.to_dict()
    amounts = {currency: option["unit_amount"] for currency, option in options.items()}
    assert amounts == {"usd": 2900, "aud": 4600, "eur": 2700}
    updated = await stripe_client.v1.events.list_async({"type": "price.updated"})
    previous = updated.data[0].data.previous_attributes["currency_options"]
    assert previous["aud"]["unit_amount"] == 4500 and "eur" not in previous
    await prices.update_async(price.id, {"currency_options": ""})
    cleared = await prices.retrieve_async(price.id, {"expand": ["currency_options"]})
    assert set(cleared.currency_options.to_dict()) == {"usd"}
    own = await refused(
        prices.update_async(price.id, {"currency_options": {"usd": {"unit_amount": 1}}})
    )
    assert own.param == "currency_options[usd]"
    bad = await refused(
        prices.update_async(price.id, {"currency_options": {"aud": {"unit_amount": "lots"}}})
    )
    assert bad.param == "currency_options[aud][unit_amount]"


async def test_subscribing_in_aud(stripe_client):
    v1 = stripe_client.v1
    customer, _ = await customer_with_card(stripe_client)
    price = await multi_currency_price(stripe_client)
    subscription = await v1.subscriptions.create_async(
        {"customer": customer.id, "items": [{"price": price.id}], "currency": "aud"}
    )
    assert subscription.currency == "aud" and subscription.status == "active"
    invoice = await v1.invoices.retrieve_async(subscription.latest_invoice)
    assert (invoice.currency, invoice.total, invoice.amount_paid) == ("aud", 4500, 4500)
    assert "45.00" in invoice.lines.data[0].description
    assert invoice.lines.data[0].currency == "aud"
    assert (await v1.customers.retrieve_async(customer.id)).currency == "aud"
    assert "customer.updated" in await event_types(stripe_client)


async def test_the_customers_currency_is_chosen_when_none_is_asked_for(stripe_client):
    v1 = stripe_client.v1
    customer, _ = await customer_with_card(stripe_client)
    price = await multi_currency_price(stripe_client)
    other = await multi_currency_price(stripe_client, unit_amount=900)
    await v1.subscriptions.create_async(
        {"customer": customer.id, "items": [{"price": price.id}], "currency": "aud"}
    )
    second = await v1.subscriptions.create_async(
        {"customer": customer.id, "items": [{"price": other.id}]}
    )
    assert second.currency == "aud"


async def test_a_second_currency_is_refused_and_changes_nothing(stripe_client):
    v1 = stripe_client.v1
    customer, _ = await customer_with_card(stripe_client)
    price = await multi_currency_price(stripe_client)
    first = await v1.subscriptions.create_async(
        {"customer": customer.id, "items": [{"price": price.id}], "currency": "aud"}
    )
    events_before = len((await v1.events.list_async({"limit": 100})).data)
    error = await refused(
        v1.subscriptions.create_async(
            {"customer": customer.id, "items": [{"price": price.id}], "currency": "usd"}
        )
    )
    assert error.user_message == (
        "You cannot combine currencies on a single customer. This customer has an active "
        "subscription, subscription schedule, discount, quote, or invoice item with currency aud."
    )
    assert error.http_status == 400 and error.code is None
    assert [s.id for s in (await v1.subscriptions.list_async({"customer": customer.id})).data] == [
        first.id
    ]
    assert (await v1.customers.retrieve_async(customer.id)).currency == "aud"
    assert len((await v1.invoices.list_async({"customer": customer.id})).data) == 1
    assert len((await v1.events.list_async({"limit": 100})).data) == events_before
    await v1.subscriptions.cancel_async(first.id)
    # With nothing live in AUD, the customer may move to USD.
    again = await v1.subscriptions.create_async(
        {"customer": customer.id, "items": [{"price": price.id}], "currency": "usd"}
    )
    assert again.currency == "usd"
    assert (await v1.customers.retrieve_async(customer.id)).currency == "usd"


async def test_a_currency_the_price_does_not_sell_in_is_refused(stripe_client):
    customer, _ = await customer_with_card(stripe_client)
    price = await multi_currency_price(stripe_client)
    error = await refused(
        stripe_client.v1.subscriptions.create_async(
            {"customer": customer.id, "items": [{"price": price.id}], "currency": "eur"}
        )
    )
    assert error.param == "currency" and "eur" in error.user_message


async def test_an_aud_upgrade_is_prorated_in_aud(stripe_client):
    v1 = stripe_client.v1
    clock = await clock_at(stripe_client)
    customer = await customer_on(stripe_client, clock)
    price = await multi_currency_price(stripe_client)
    bigger = await multi_currency_price(
        stripe_client, currency_options={"aud": {"unit_amount": 9000}}
    )
    subscription = await v1.subscriptions.create_async(
        {"customer": customer.id, "items": [{"price": price.id}], "currency": "aud"}
    )
    await advance(stripe_client, clock, JAN_31 + 14 * DAY)
    item = subscription["items"].data[0]
    updated = await v1.subscriptions.update_async(
        subscription.id,
        {"items": [{"id": item.id, "price": bigger.id}], "proration_behavior": "always_invoice"},
    )
    invoice = await v1.invoices.retrieve_async(updated.latest_invoice)
    # Half of February (14 of 28 days) left: -A$22.50 and +A$45.00.
    assert invoice.currency == "aud"
    assert [line.amount for line in invoice.lines.data] == [-2250, 4500]
    assert {line.currency for line in invoice.lines.data} == {"aud"}
    usd_only = await multi_currency_price(stripe_client, currency_options={})
    error = await refused(
        v1.subscriptions.update_async(
            subscription.id, {"items": [{"id": item.id, "price": usd_only.id}]}
        )
    )
    assert error.param == "currency"


async def test_aud_with_australian_gst(stripe_client):
    customer = await located_customer(stripe_client, "AU")
    price = await multi_currency_price(stripe_client)
    subscription = await stripe_client.v1.subscriptions.create_async(
        {
            "customer": customer.id,
            "items": [{"price": price.id}],
            "currency": "aud",
            "automatic_tax": {"enabled": True},
        }
    )
    invoice = await stripe_client.v1.invoices.retrieve_async(subscription.latest_invoice)
    assert taxes(invoice) == [(450, "exclusive", "standard_rated", 4500)]
    assert (invoice.currency, invoice.total) == ("aud", 4950)


async def test_checkout_sells_in_the_currency_asked_for(stripe_client, sandbox):
    v1 = stripe_client.v1
    price = await multi_currency_price(stripe_client)
    session = await v1.checkout.sessions.create_async(
        {
            "mode": "subscription",
            "line_items": [{"price": price.id, "quantity": 1}],
            "currency": "aud",
            "success_url": "https://example.com/ok",
        }
    )
    assert (session.currency, session.amount_total) == ("aud", 4500)
    completed = await browser(sandbox, f"/_sandbox/checkout/sessions/{session.id}/complete")
    assert completed.status_code == 200
    subscription = await v1.subscriptions.retrieve_async(completed.json()["subscription"])
    assert subscription.currency == "aud"
    invoice = await v1.invoices.retrieve_async(subscription.latest_invoice)
    assert (invoice.currency, invoice.amount_paid) == ("aud", 4500)
    customer = subscription.customer
    error = await refused(
        v1.checkout.sessions.create_async(
            {
                "mode": "subscription",
                "customer": customer,
                "line_items": [{"price": price.id, "quantity": 1}],
                "currency": "usd",
                "success_url": "https://example.com/ok",
            }
        )
    )
    assert error.user_message.startswith("You cannot combine currencies on a single customer.")


async def test_the_demo_catalog_sells_in_aud_and_an_old_one_gains_it(stripe_client):
    from sandbox.demo import seed_catalog

    v1 = stripe_client.v1
    product = await v1.products.create_async({"name": "Starter"})
    for interval, amount in (("month", 900), ("year", 9000)):
        await v1.prices.create_async(
            {
                "product": product.id,
                "currency": "usd",
                "unit_amount": amount,
                "recurring": {"interval": interval},
                "lookup_key": f"starter_{interval}ly",
            }
        )
    await seed_catalog(stripe_client)
    await seed_catalog(stripe_client)
    prices = await v1.prices.list_async({"limit": 100, "expand": ["data.currency_options"]})
    sold = {
        price.lookup_key: (
            price.tax_behavior,
            price.currency_options.to_dict()["aud"]["unit_amount"],
        )
        for price in prices.data
    }
    assert sold == {
        "starter_monthly": ("exclusive", 1400),
        "starter_yearly": ("exclusive", 14000),
        "pro_monthly": ("exclusive", 4500),
        "pro_yearly": ("exclusive", 45000),
    }


# The seeded catalog in AUD ----------------------------------------------------------------------


async def seeded(client: stripe.StripeClient) -> dict:
    """The demo catalog (sandbox/demo.py), by lookup key."""
    from sandbox.demo import seed_catalog

    await seed_catalog(client)
    prices = await client.v1.prices.list_async({"limit": 100})
    return {price.lookup_key: price for price in prices.data}


async def currency_changes(client: stripe.StripeClient) -> list:
    """The customer.updated events that changed a customer's currency."""
    updated = (await client.v1.events.list_async({"type": "customer.updated"})).data
    return [
        event
        for event in updated
        if "currency" in (event.data.to_dict().get("previous_attributes") or {})
    ]


async def test_subscribing_in_aud_sets_the_customers_currency_once(stripe_client):
    v1 = stripe_client.v1
    catalog = await seeded(stripe_client)
    customer, _ = await customer_with_card(stripe_client)
    assert customer.currency is None
    subscription = await v1.subscriptions.create_async(
        {
            "customer": customer.id,
            "items": [{"price": catalog["pro_monthly"].id}],
            "currency": "aud",
            "expand": ["latest_invoice"],
        }
    )
    assert subscription.currency == "aud" and subscription.status == "active"
    invoice = subscription.latest_invoice
    assert (invoice.currency, invoice.subtotal, invoice.amount_paid) == ("aud", 4500, 4500)
    (event,) = await currency_changes(stripe_client)
    assert event.data.previous_attributes["currency"] is None
    assert event.data.object.currency == "aud" and event.data.object.id == customer.id
    # A second subscription in AUD (the customer's currency, chosen without asking) changes
    # nothing more.
    starter = await v1.subscriptions.create_async(
        {"customer": customer.id, "items": [{"price": catalog["starter_monthly"].id}]}
    )
    assert starter.currency == "aud"
    assert (await v1.invoices.retrieve_async(starter.latest_invoice)).amount_paid == 1400
    assert len(await currency_changes(stripe_client)) == 1


async def test_a_refused_currency_creates_nothing(stripe_client):
    v1 = stripe_client.v1
    catalog = await seeded(stripe_client)
    customer, _ = await customer_with_card(stripe_client)
    events_before = len((await v1.events.list_async({"limit": 100})).data)
    error = await refused(
        v1.subscriptions.create_async(
            {
                "customer": customer.id,
                "items": [{"price": catalog["pro_monthly"].id}],
                "currency": "eur",
            }
        )
    )
    assert (error.http_status, error.param) == (400, "currency")
    assert "`eur`" in error.user_message and "aud, usd" in error.user_message
    assert (await v1.subscriptions.list_async({"status": "all"})).data == []
    assert (await v1.invoices.list_async()).data == []
    assert (await v1.customers.retrieve_async(customer.id)).currency is None
    assert len((await v1.events.list_async({"limit": 100})).data) == events_before

    await v1.subscriptions.create_async(
        {
            "customer": customer.id,
            "items": [{"price": catalog["pro_monthly"].id}],
            "currency": "aud",
        }
    )
    usd = await refused(
        v1.subscriptions.create_async(
            {
                "customer": customer.id,
                "items": [{"price": catalog["starter_monthly"].id}],
                "currency": "usd",
            }
        )
    )
    assert usd.user_message.startswith("You cannot combine currencies on a single customer.")
    assert usd.user_message.endswith("with currency aud.")
    assert len((await v1.subscriptions.list_async({"status": "all"})).data) == 1
    assert len((await v1.invoices.list_async()).data) == 1


async def test_a_plan_change_in_aud_is_prorated_and_renewed_in_aud(stripe_client):
    v1 = stripe_client.v1
    catalog = await seeded(stripe_client)
    clock = await clock_at(stripe_client)
    customer = await customer_on(stripe_client, clock)
    subscription = await v1.subscriptions.create_async(
        {
            "customer": customer.id,
            "items": [{"price": catalog["starter_monthly"].id}],
            "currency": "aud",
        }
    )
    item = subscription["items"].data[0]
    await advance(stripe_client, clock, JAN_31 + 14 * DAY)
    # Prorations wait for the renewal: half of February (14 of 28 days) at A$14.00 credited,
    # at A$45.00 charged.
    await v1.subscriptions.update_async(
        subscription.id, {"items": [{"id": item.id, "price": catalog["pro_monthly"].id}]}
    )
    pending = await v1.invoice_items.list_async({"customer": customer.id, "pending": True})
    assert sorted((i.amount, i.currency) for i in pending.data) == [(-700, "aud"), (2250, "aud")]
    await advance(stripe_client, clock, JAN_31 + 28 * DAY + 2 * 3600)
    renewal = (await v1.invoices.list_async({"subscription": subscription.id})).data[0]
    assert renewal.billing_reason == "subscription_cycle" and renewal.currency == "aud"
    assert sorted(line.amount for line in renewal.lines.data) == [-700, 2250, 4500]
    assert (renewal.total, renewal.amount_paid, renewal.status) == (6050, 6050, "paid")
