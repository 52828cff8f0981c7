"""Tax through the official SDK: customers' tax ids and addresses, tax rates (exclusive and
inclusive, on subscriptions and their items), and automatic tax from the sandbox's table
(sandbox/resources/tax.py), row by row."""

import pytest
import stripe

from tests.sandbox.test_billing import browser, event_types, subscribe
from tests.sandbox.test_time import HOUR, JAN_31, advance, clock_at, invoices_of, sandbox_post

VALID_ABN = "51 824 753 556"
# The same digits with the last one changed fail the ATO's checksum.
INVALID_ABN = "51 824 753 557"


# Helpers --------------------------------------------------------------------------------------


async def refused(awaitable) -> stripe.InvalidRequestError:
    with pytest.raises(stripe.InvalidRequestError) as error:
        await awaitable
    return error.value


async def located_customer(
    client: stripe.StripeClient,
    country: str | None,
    postal_code: str | None = None,
    tax_ids: tuple[tuple[str, str], ...] = (),
    **params,
):
    """A customer with a card, an address in `country` (None: no address), and tax ids."""
    address = {"country": country, "line1": "1 Main St"} if country else None
    if address and postal_code:
        address["postal_code"] = postal_code
    customer = await client.v1.customers.create_async(
        {
            "email": "taxed@example.com",
            **({"address": address} if address else {}),
            "tax_id_data": [{"type": type, "value": value} for type, value in tax_ids],
            **params,
        }
    )
    method = await client.v1.payment_methods.attach_async("pm_card_visa", {"customer": customer.id})
    await client.v1.customers.update_async(
        customer.id, {"invoice_settings": {"default_payment_method": method.id}}
    )
    return customer


async def priced(client: stripe.StripeClient, amount: int = 2900, **params):
    product = await client.v1.products.create_async({"name": "Pro"})
    return await client.v1.prices.create_async(
        {
            "product": product.id,
            "currency": "usd",
            "unit_amount": amount,
            "recurring": {"interval": "month"},
            **params,
        }
    )


async def first_invoice(client: stripe.StripeClient, subscription):
    return await client.v1.invoices.retrieve_async(subscription.latest_invoice)


def taxes(invoice) -> list[tuple]:
    """(amount, behavior, reason, taxable amount) of each of the invoice's total_taxes."""
    return [
        (tax.amount, tax.tax_behavior, tax.taxability_reason, tax.taxable_amount)
        for tax in invoice.total_taxes
    ]


# Tax ids ---------------------------------------------------------------------------------------


async def test_an_abn_is_checked_with_the_ato_checksum(stripe_client):
    tax_ids = stripe_client.v1.customers.tax_ids
    customer = await stripe_client.v1.customers.create_async({"email": "au@example.com"})
    abn = await tax_ids.create_async(customer.id, {"type": "au_abn", "value": VALID_ABN})
    assert (abn.type, abn.value, abn.country) == ("au_abn", "51824753556", "AU")
    assert abn.verification.status == "verified" and abn.customer == customer.id
    assert abn.owner.type == "customer" and abn.id.startswith("txi_")
    invalid = await refused(
        tax_ids.create_async(customer.id, {"type": "au_abn", "value": INVALID_ABN})
    )
    assert (invalid.code, invalid.param) == ("tax_id_invalid", "value")
    assert invalid.user_message == "Invalid value for au_abn."
    listed = await tax_ids.list_async(customer.id)
    assert [tax_id.id for tax_id in listed.data] == [abn.id]
    assert "customer.tax_id.created" in await event_types(stripe_client)


async def test_vat_numbers_are_pending_until_the_registry_answers(stripe_client, sandbox):
    tax_ids = stripe_client.v1.customers.tax_ids
    customer = await stripe_client.v1.customers.create_async({"email": "eu@example.com"})
    german = await tax_ids.create_async(customer.id, {"type": "eu_vat", "value": "de 123456789"})
    greek = await tax_ids.create_async(customer.id, {"type": "eu_vat", "value": "EL123456789"})
    british = await tax_ids.create_async(customer.id, {"type": "gb_vat", "value": "GB123456789"})
    kiwi = await tax_ids.create_async(customer.id, {"type": "nz_gst", "value": "123-456-789"})
    assert [(t.value, t.country) for t in (german, greek, british, kiwi)] == [
        ("DE123456789", "DE"),
        ("EL123456789", "GR"),
        ("GB123456789", "GB"),
        ("123-456-789", "NZ"),
    ]
    statuses = [t.verification.status for t in (german, greek, british, kiwi)]
    assert statuses == ["pending", "pending", "pending", "unavailable"]
    await sandbox_post(sandbox, "/_sandbox/clock/advance", {"seconds": "61"})
    answered = await tax_ids.retrieve_async(customer.id, german.id)
    assert answered.verification.status == "verified"
    updates = await stripe_client.v1.events.list_async({"type": "customer.tax_id.updated"})
    assert len(updates.data) == 3
    assert updates.data[0].data.previous_attributes["verification"]["status"] == "pending"


@pytest.mark.parametrize(
    ("type", "value"),
    [("eu_vat", "XX123456789"), ("eu_vat", "DE12345"), ("gb_vat", "GB12"), ("nz_gst", "12")],
)
async def test_malformed_tax_ids_are_refused(stripe_client, type, value):
    customer = await stripe_client.v1.customers.create_async({"email": "bad@example.com"})
    error = await refused(
        stripe_client.v1.customers.tax_ids.create_async(customer.id, {"type": type, "value": value})
    )
    assert error.code == "tax_id_invalid" and error.user_message == f"Invalid value for {type}."


async def test_tax_ids_are_retrieved_listed_and_deleted(stripe_client):
    v1 = stripe_client.v1
    customer = await v1.customers.create_async(
        {
            "email": "both@example.com",
            "tax_id_data": [
                {"type": "au_abn", "value": VALID_ABN},
                {"type": "eu_vat", "value": "FRAB123456789"},
            ],
        }
    )
    expanded = await v1.customers.retrieve_async(customer.id, {"expand": ["tax_ids"]})
    abn, vat = sorted(expanded.tax_ids.data, key=lambda tax_id: tax_id.type)
    assert (abn.type, vat.type, vat.country) == ("au_abn", "eu_vat", "FR")
    assert (await v1.customers.tax_ids.retrieve_async(customer.id, vat.id)).value == vat.value
    deleted = await v1.customers.tax_ids.delete_async(customer.id, vat.id)
    assert deleted.to_dict() == {"id": vat.id, "object": "tax_id", "deleted": True}
    gone = await refused(v1.customers.tax_ids.retrieve_async(customer.id, vat.id))
    assert gone.code == "resource_missing"
    assert [t.id for t in (await v1.customers.tax_ids.list_async(customer.id)).data] == [abn.id]
    other = await v1.customers.create_async({"email": "other@example.com"})
    assert (await refused(v1.customers.tax_ids.retrieve_async(other.id, abn.id))).http_status == 404
    assert "customer.tax_id.deleted" in await event_types(stripe_client)


async def test_a_bad_tax_id_data_entry_creates_no_customer(stripe_client):
    v1 = stripe_client.v1
    error = await refused(
        v1.customers.create_async(
            {
                "email": "nobody@example.com",
                "tax_id_data": [
                    {"type": "au_abn", "value": VALID_ABN},
                    {"type": "au_abn", "value": INVALID_ABN},
                ],
            }
        )
    )
    assert (error.code, error.param) == ("tax_id_invalid", "tax_id_data[1][value]")
    assert (await v1.customers.list_async()).data == []
    unknown = await refused(
        v1.customers.create_async({"tax_id_data": [{"type": "br_cpf", "value": "123"}]})
    )
    assert unknown.param == "tax_id_data[0][type]"


async def test_the_customer_address_and_tax_location(stripe_client):
    v1 = stripe_client.v1
    customer = await v1.customers.create_async(
        {"address": {"country": "AU", "city": "Sydney", "postal_code": "2000"}}
    )
    assert customer.address.to_dict() == {
        "city": "Sydney",
        "country": "AU",
        "line1": None,
        "line2": None,
        "postal_code": "2000",
        "state": None,
    }
    located = await v1.customers.retrieve_async(customer.id, {"expand": ["tax"]})
    assert located.tax.automatic_tax == "supported" and located.tax.location.country == "AU"
    cleared = await v1.customers.update_async(customer.id, {"address": ""})
    assert cleared.address is None
    nowhere = await v1.customers.retrieve_async(customer.id, {"expand": ["tax"]})
    assert nowhere.tax.automatic_tax == "unrecognized_location" and nowhere.tax.location is None
    error = await refused(
        v1.customers.update_async(
            customer.id,
            {"address": {"country": "US"}, "tax": {"validate_location": "immediately"}},
        )
    )
    assert error.code == "customer_tax_location_invalid"
    assert (await v1.customers.retrieve_async(customer.id)).address is None


# Tax rates -------------------------------------------------------------------------------------


async def test_tax_rates_are_created_updated_and_listed(stripe_client):
    rates = stripe_client.v1.tax_rates
    gst = await rates.create_async(
        {
            "display_name": "GST",
            "percentage": 10,
            "inclusive": False,
            "country": "AU",
            "jurisdiction": "AU",
            "tax_type": "gst",
            "metadata": {"kind": "manual"},
        }
    )
    vat = await rates.create_async({"display_name": "VAT", "percentage": 20, "inclusive": True})
    assert gst.id.startswith("txr_") and (gst.percentage, gst.inclusive) == (10, False)
    assert (gst.active, gst.country, gst.tax_type, gst.metadata.to_dict()) == (
        True,
        "AU",
        "gst",
        {"kind": "manual"},
    )
    renamed = await rates.update_async(gst.id, {"display_name": "Goods and Services Tax"})
    assert (await rates.retrieve_async(gst.id)).display_name == renamed.display_name
    assert [rate.id for rate in (await rates.list_async({"inclusive": True})).data] == [vat.id]
    await rates.update_async(vat.id, {"active": False})
    assert [rate.id for rate in (await rates.list_async({"active": True})).data] == [gst.id]
    too_much = await refused(
        rates.create_async({"display_name": "X", "percentage": 101, "inclusive": False})
    )
    assert too_much.param == "percentage"
    assert {"tax_rate.created", "tax_rate.updated"} <= set(await event_types(stripe_client))


async def test_default_tax_rates_add_exclusive_tax(stripe_client):
    v1 = stripe_client.v1
    gst = await v1.tax_rates.create_async(
        {"display_name": "GST", "percentage": 10, "inclusive": False, "country": "AU"}
    )
    customer = await located_customer(stripe_client, None)
    subscription = await subscribe(
        stripe_client, customer, await priced(stripe_client), default_tax_rates=[gst.id]
    )
    assert [rate.id for rate in subscription.default_tax_rates] == [gst.id]
    assert subscription.default_tax_rates[0].display_name == "GST"
    invoice = await first_invoice(stripe_client, subscription)
    assert [rate.id for rate in invoice.default_tax_rates] == [gst.id]
    assert taxes(invoice) == [(290, "exclusive", "not_available", 2900)]
    assert invoice.total_taxes[0].tax_rate_details.tax_rate == gst.id
    assert invoice.lines.data[0].taxes[0].to_dict() == {
        "amount": 290,
        "tax_behavior": "exclusive",
        "tax_rate_details": {"tax_rate": gst.id},
        "taxability_reason": "not_available",
        "taxable_amount": 2900,
        "type": "tax_rate_details",
    }
    assert (invoice.subtotal, invoice.total, invoice.amount_paid) == (2900, 3190, 3190)
    assert (invoice.subtotal_excluding_tax, invoice.total_excluding_tax) == (2900, 2900)


async def test_item_tax_rates_are_inclusive_and_override_the_defaults(stripe_client):
    v1 = stripe_client.v1
    inclusive = await v1.tax_rates.create_async(
        {"display_name": "VAT", "percentage": 20, "inclusive": True}
    )
    exclusive = await v1.tax_rates.create_async(
        {"display_name": "Levy", "percentage": 5, "inclusive": False}
    )
    customer = await located_customer(stripe_client, None)
    subscription = await v1.subscriptions.create_async(
        {
            "customer": customer.id,
            "items": [
                {"price": (await priced(stripe_client, 3000)).id, "tax_rates": [inclusive.id]}
            ],
            "default_tax_rates": [exclusive.id],
        }
    )
    assert [rate.id for rate in subscription["items"].data[0].tax_rates] == [inclusive.id]
    invoice = await first_invoice(stripe_client, subscription)
    # 3000 holds 3000 × 20/120 = 500 of VAT; nothing is added.
    assert taxes(invoice) == [(500, "inclusive", "not_available", 2500)]
    assert (invoice.total, invoice.subtotal_excluding_tax, invoice.total_excluding_tax) == (
        3000,
        2500,
        2500,
    )


async def test_archived_rates_and_rates_beside_automatic_tax_are_refused(stripe_client):
    v1 = stripe_client.v1
    rate = await v1.tax_rates.create_async(
        {"display_name": "Old", "percentage": 8, "inclusive": False}
    )
    await v1.tax_rates.update_async(rate.id, {"active": False})
    customer = await located_customer(stripe_client, "AU")
    price = await priced(stripe_client)
    archived = await refused(subscribe(stripe_client, customer, price, default_tax_rates=[rate.id]))
    assert archived.param == "default_tax_rates[0]"
    live = await v1.tax_rates.create_async(
        {"display_name": "New", "percentage": 8, "inclusive": False}
    )
    both = await refused(
        subscribe(
            stripe_client,
            customer,
            price,
            automatic_tax={"enabled": True},
            default_tax_rates=[live.id],
        )
    )
    assert both.param == "automatic_tax[enabled]"
    assert (await v1.subscriptions.list_async({"customer": customer.id})).data == []


# Automatic tax ----------------------------------------------------------------------------------

TABLE_ROWS = [
    # country, postal code, tax ids, percentage, taxability reason, tax on $29.00
    ("AU", "2000", (), 10, "standard_rated", 290),
    ("NZ", "6011", (), 15, "standard_rated", 435),
    ("GB", "SW1A 1AA", (), 20, "standard_rated", 580),
    ("DE", "10115", (), 19, "standard_rated", 551),
    ("FI", "00100", (), 25.5, "standard_rated", 740),
    ("FR", "75001", (("eu_vat", "FRAB123456789"),), 0, "reverse_charge", 0),
    ("US", "94103", (), 0, "not_collecting", 0),
    ("JP", None, (), 0, "not_collecting", 0),
]


@pytest.mark.parametrize(
    ("country", "postal", "tax_ids", "percentage", "reason", "tax"), TABLE_ROWS
)
async def test_automatic_tax_follows_the_table(
    stripe_client, country, postal, tax_ids, percentage, reason, tax
):
    v1 = stripe_client.v1
    customer = await located_customer(stripe_client, country, postal, tax_ids)
    subscription = await subscribe(
        stripe_client, customer, await priced(stripe_client), automatic_tax={"enabled": True}
    )
    assert (
        subscription.automatic_tax.enabled and subscription.automatic_tax.liability.type == "self"
    )
    invoice = await first_invoice(stripe_client, subscription)
    assert invoice.automatic_tax.to_dict() == {
        "disabled_reason": None,
        "enabled": True,
        "liability": {"account": None, "type": "self"},
        "provider": "stripe",
        "status": "complete",
    }
    taxable = 0 if reason == "not_collecting" else 2900
    assert taxes(invoice) == [(tax, "exclusive", reason, taxable)]
    assert (invoice.total, invoice.amount_paid) == (2900 + tax, 2900 + tax)
    rate = await v1.tax_rates.retrieve_async(invoice.total_taxes[0].tax_rate_details.tax_rate)
    assert (rate.percentage, rate.country, rate.jurisdiction, rate.inclusive) == (
        percentage,
        country,
        country,
        False,
    )
    assert rate.display_name == {"AU": "GST", "NZ": "GST", "US": "Tax", "JP": "Tax"}.get(
        country, "VAT"
    )
    assert invoice.customer_address.country == country
    assert [(t.type, t.value) for t in invoice.customer_tax_ids] == list(tax_ids)


async def test_inclusive_prices_hold_their_tax(stripe_client):
    customer = await located_customer(stripe_client, "AU", "2000")
    price = await priced(stripe_client, tax_behavior="inclusive")
    subscription = await subscribe(stripe_client, customer, price, automatic_tax={"enabled": True})
    invoice = await first_invoice(stripe_client, subscription)
    # 2900 × 10/110 = 263.64 of GST inside the price.
    assert taxes(invoice) == [(264, "inclusive", "standard_rated", 2636)]
    assert (invoice.total, invoice.subtotal_excluding_tax, invoice.total_excluding_tax) == (
        2900,
        2636,
        2636,
    )
    rate_id = invoice.total_taxes[0].tax_rate_details.tax_rate
    assert (await stripe_client.v1.tax_rates.retrieve_async(rate_id)).inclusive is True


async def test_one_rate_per_country_percentage_and_behavior(stripe_client):
    first = await located_customer(stripe_client, "NZ")
    second = await located_customer(stripe_client, "NZ")
    price = await priced(stripe_client)
    rate_ids = set()
    for customer in (first, second):
        subscription = await subscribe(
            stripe_client, customer, price, automatic_tax={"enabled": True}
        )
        invoice = await first_invoice(stripe_client, subscription)
        rate_ids.add(invoice.total_taxes[0].tax_rate_details.tax_rate)
    assert len(rate_ids) == 1


async def test_tax_is_computed_after_discounts(stripe_client):
    v1 = stripe_client.v1
    coupon = await v1.coupons.create_async({"percent_off": 20, "duration": "once"})
    customer = await located_customer(stripe_client, "AU")
    subscription = await subscribe(
        stripe_client,
        customer,
        await priced(stripe_client),
        automatic_tax={"enabled": True},
        discounts=[{"coupon": coupon.id}],
    )
    invoice = await first_invoice(stripe_client, subscription)
    # $29.00 - 20% = $23.20, and 10% GST on that.
    assert taxes(invoice) == [(232, "exclusive", "standard_rated", 2320)]
    assert invoice.total == 2552


async def test_exempt_and_reverse_charged_customers(stripe_client):
    price = await priced(stripe_client)
    exempt = await located_customer(stripe_client, "GB", tax_exempt="exempt")
    reverse = await located_customer(stripe_client, "AU", tax_exempt="reverse")
    found = []
    for customer in (exempt, reverse):
        subscription = await subscribe(
            stripe_client, customer, price, automatic_tax={"enabled": True}
        )
        invoice = await first_invoice(stripe_client, subscription)
        found.append((taxes(invoice), invoice.customer_tax_exempt))
    assert found == [
        ([(0, "exclusive", "customer_exempt", 0)], "exempt"),
        ([(0, "exclusive", "reverse_charge", 2900)], "reverse"),
    ]


async def test_automatic_tax_needs_a_location(stripe_client):
    v1 = stripe_client.v1
    price = await priced(stripe_client)
    for country, postal in ((None, None), ("US", None)):
        customer = await located_customer(stripe_client, country, postal)
        error = await refused(
            subscribe(stripe_client, customer, price, automatic_tax={"enabled": True})
        )
        assert error.code == "customer_tax_location_invalid"
        assert error.user_message.startswith("The customer's location isn't recognized.")
        assert (await v1.subscriptions.list_async({"customer": customer.id})).data == []
    subscription = await subscribe(stripe_client, customer, price)
    enabling = await refused(
        v1.subscriptions.update_async(subscription.id, {"automatic_tax": {"enabled": True}})
    )
    assert enabling.code == "customer_tax_location_invalid"


async def test_a_renewal_without_a_location_is_finalized_untaxed(stripe_client):
    v1 = stripe_client.v1
    clock = await clock_at(stripe_client)
    customer = await v1.customers.create_async(
        {"address": {"country": "AU"}, "test_clock": clock.id}
    )
    method = await v1.payment_methods.attach_async("pm_card_visa", {"customer": customer.id})
    await v1.customers.update_async(
        customer.id, {"invoice_settings": {"default_payment_method": method.id}}
    )
    subscription = await subscribe(
        stripe_client, customer, await priced(stripe_client), automatic_tax={"enabled": True}
    )
    # By default (`auto`) Stripe refuses to lose the location of a customer taxed automatically.
    kept = await refused(v1.customers.update_async(customer.id, {"address": ""}))
    assert kept.code == "customer_tax_location_invalid"
    await v1.customers.update_async(
        customer.id, {"address": "", "tax": {"validate_location": "deferred"}}
    )
    feb_28 = JAN_31 + 28 * 86400
    await advance(stripe_client, clock, feb_28 + 2 * HOUR)
    first, renewal = await invoices_of(stripe_client, subscription.id)
    assert taxes(first) == [(290, "exclusive", "standard_rated", 2900)]
    assert renewal.status == "paid" and renewal.total_taxes == [] and renewal.total == 2900
    assert renewal.automatic_tax.enabled is False
    assert renewal.automatic_tax.disabled_reason == "finalization_requires_location_inputs"
    after = await v1.subscriptions.retrieve_async(subscription.id)
    assert after.automatic_tax.to_dict() == {
        "disabled_reason": "requires_location_inputs",
        "enabled": False,
        "liability": None,
    }


async def test_an_invoice_is_taxed_as_the_customer_is_when_finalized(stripe_client):
    v1 = stripe_client.v1
    clock = await clock_at(stripe_client)
    customer = await v1.customers.create_async(
        {"address": {"country": "NZ"}, "test_clock": clock.id}
    )
    method = await v1.payment_methods.attach_async("pm_card_visa", {"customer": customer.id})
    await v1.customers.update_async(
        customer.id, {"invoice_settings": {"default_payment_method": method.id}}
    )
    subscription = await subscribe(
        stripe_client, customer, await priced(stripe_client), automatic_tax={"enabled": True}
    )
    await advance(stripe_client, clock, JAN_31 + 28 * 86400)
    _, draft = await invoices_of(stripe_client, subscription.id)
    assert draft.status == "draft" and draft.customer_address.country == "NZ"
    await v1.customers.update_async(customer.id, {"address": {"country": "AU"}})
    await v1.customers.tax_ids.create_async(customer.id, {"type": "au_abn", "value": VALID_ABN})
    await advance(stripe_client, clock, JAN_31 + 28 * 86400 + 2 * HOUR)
    finalized = await v1.invoices.retrieve_async(draft.id)
    assert finalized.customer_address.country == "AU"
    assert [(t.type, t.value) for t in finalized.customer_tax_ids] == [("au_abn", "51824753556")]
    assert taxes(finalized) == [(290, "exclusive", "standard_rated", 2900)]
    await v1.customers.update_async(customer.id, {"address": {"country": "NZ"}})
    assert (await v1.invoices.retrieve_async(draft.id)).customer_address.country == "AU"


# What the tests above leave open --------------------------------------------------------------


def line_taxes(line) -> list[tuple]:
    """(amount, behavior, reason, taxable amount) of each of a line's taxes."""
    return [
        (tax.amount, tax.tax_behavior, tax.taxability_reason, tax.taxable_amount)
        for tax in line.taxes
    ]


async def tax_id_events(client: stripe.StripeClient) -> list[str]:
    return [kind for kind in await event_types(client) if kind.startswith("customer.tax_id.")]


@pytest.mark.parametrize(
    ("type", "value"),
    [
        ("au_abn", INVALID_ABN),
        ("au_abn", "5182475355"),  # ten digits
        ("eu_vat", "DE12345678"),  # a German VAT number has nine digits
        ("eu_vat", "123456789"),  # no member state's prefix
        ("gb_vat", "GB1234567890"),  # ten digits: neither 9 nor 12
        ("gb_vat", "123456789"),  # no GB prefix
    ],
)
async def test_a_refused_tax_id_creates_and_announces_nothing(stripe_client, type, value):
    v1 = stripe_client.v1
    customer = await v1.customers.create_async({"email": "refused@example.com"})
    error = await refused(
        v1.customers.tax_ids.create_async(customer.id, {"type": type, "value": value})
    )
    assert (error.http_status, error.code, error.param) == (400, "tax_id_invalid", "value")
    assert (await v1.customers.tax_ids.list_async(customer.id)).data == []
    expanded = await v1.customers.retrieve_async(customer.id, {"expand": ["tax_ids"]})
    assert expanded.tax_ids.data == []
    assert await tax_id_events(stripe_client) == []


async def test_tax_id_events_and_a_strangers_reach(stripe_client):
    v1 = stripe_client.v1
    owner = await v1.customers.create_async({"email": "owner@example.com"})
    stranger = await v1.customers.create_async({"email": "stranger@example.com"})
    abn = await v1.customers.tax_ids.create_async(owner.id, {"type": "au_abn", "value": VALID_ABN})
    vat = await v1.customers.tax_ids.create_async(
        owner.id, {"type": "gb_vat", "value": "GB 123 4567 89"}
    )
    assert vat.value == "GB123456789"
    listed = await v1.customers.tax_ids.list_async(owner.id)
    assert [tax_id.id for tax_id in listed.data] == [vat.id, abn.id]
    assert [t.id for t in (await v1.customers.tax_ids.list_async(owner.id, {"limit": 1})).data] == [
        vat.id
    ]
    # Another customer's tax id answers as one that does not exist, and is left alone.
    missing = await refused(v1.customers.tax_ids.retrieve_async(owner.id, "txi_nope"))
    for attempt in (
        v1.customers.tax_ids.retrieve_async(stranger.id, abn.id),
        v1.customers.tax_ids.delete_async(stranger.id, abn.id),
    ):
        error = await refused(attempt)
        assert (error.http_status, error.code) == (404, "resource_missing")
        assert (error.http_status, error.code) == (missing.http_status, missing.code)
    assert (await v1.customers.tax_ids.list_async(stranger.id)).data == []
    assert (await v1.customers.tax_ids.retrieve_async(owner.id, abn.id)).value == "51824753556"

    await v1.customers.tax_ids.delete_async(owner.id, abn.id)
    again = await refused(v1.customers.tax_ids.delete_async(owner.id, abn.id))
    assert again.http_status == 404
    assert await tax_id_events(stripe_client) == [
        "customer.tax_id.created",
        "customer.tax_id.created",
        "customer.tax_id.deleted",
    ]
    created = (await stripe_client.v1.events.list_async({"type": "customer.tax_id.created"})).data
    assert [event.data.object.id for event in created] == [vat.id, abn.id]
    (deleted,) = (await v1.events.list_async({"type": "customer.tax_id.deleted"})).data
    assert deleted.data.object.id == abn.id and deleted.data.object.value == "51824753556"


async def test_a_tax_rates_update_is_announced_and_its_percentage_is_fixed(stripe_client):
    rates = stripe_client.v1.tax_rates
    gst = await rates.create_async(
        {"display_name": "GST", "percentage": 10, "inclusive": False, "metadata": {"a": "1"}}
    )
    fetched = await rates.retrieve_async(gst.id)
    assert fetched.to_dict() == gst.to_dict()
    updated = await rates.update_async(
        gst.id, {"active": False, "jurisdiction": "AU", "metadata": {"b": "2"}}
    )
    assert (updated.active, updated.jurisdiction, updated.percentage) == (False, "AU", 10)
    assert updated.metadata.to_dict() == {"a": "1", "b": "2"}
    (event,) = (await stripe_client.v1.events.list_async({"type": "tax_rate.updated"})).data
    assert event.data.previous_attributes.to_dict() == {
        "active": True,
        "jurisdiction": None,
        "metadata": {"a": "1"},
    }
    fixed = await refused(rates.update_async(gst.id, {"percentage": 12}))  # type: ignore[typeddict-unknown-key]
    assert fixed.param == "percentage"
    assert (await rates.retrieve_async(gst.id)).percentage == 10
    missing = await refused(rates.retrieve_async("txr_nope"))
    assert (missing.http_status, missing.code) == (404, "resource_missing")
    assert [rate.id for rate in (await rates.list_async({"active": False})).data] == [gst.id]
    assert (await rates.list_async({"active": True})).data == []


async def test_inclusive_and_exclusive_default_tax_rates(stripe_client):
    v1 = stripe_client.v1
    inside = await v1.tax_rates.create_async(
        {"display_name": "VAT", "percentage": 20, "inclusive": True}
    )
    added = await v1.tax_rates.create_async(
        {"display_name": "Levy", "percentage": 10, "inclusive": False}
    )
    customer = await located_customer(stripe_client, None)
    inclusive = await subscribe(
        stripe_client, customer, await priced(stripe_client), default_tax_rates=[inside.id]
    )
    invoice = await first_invoice(stripe_client, inclusive)
    # 2900 × 20/120 = 483.33: 483 of the 2900 is VAT; nothing is added.
    assert line_taxes(invoice.lines.data[0]) == [(483, "inclusive", "not_available", 2417)]
    assert (invoice.subtotal, invoice.subtotal_excluding_tax) == (2900, 2417)
    assert (invoice.total, invoice.total_excluding_tax, invoice.amount_paid) == (2900, 2417, 2900)

    both = await subscribe(
        stripe_client,
        customer,
        await priced(stripe_client),
        default_tax_rates=[inside.id, added.id],
    )
    invoice = await first_invoice(stripe_client, both)
    # 483 inside, and 10% of the 2417 left without it, 241.7, added.
    assert line_taxes(invoice.lines.data[0]) == [
        (483, "inclusive", "not_available", 2417),
        (242, "exclusive", "not_available", 2417),
    ]
    assert [tax.tax_rate_details.tax_rate for tax in invoice.total_taxes] == [inside.id, added.id]
    assert (invoice.subtotal, invoice.total, invoice.total_excluding_tax) == (2900, 3142, 2417)
    assert invoice.amount_paid == 3142


async def test_default_tax_rates_set_and_cleared_on_update(stripe_client):
    v1 = stripe_client.v1
    gst = await v1.tax_rates.create_async(
        {"display_name": "GST", "percentage": 10, "inclusive": False}
    )
    customer = await located_customer(stripe_client, None)
    subscription = await subscribe(stripe_client, customer, await priced(stripe_client))
    assert (await first_invoice(stripe_client, subscription)).total == 2900
    updated = await v1.subscriptions.update_async(subscription.id, {"default_tax_rates": [gst.id]})
    assert [rate.id for rate in updated.default_tax_rates] == [gst.id]
    renewal = await v1.invoices.create_preview_async({"subscription": subscription.id})
    assert taxes(renewal) == [(290, "exclusive", "not_available", 2900)]
    assert renewal.total == 3190
    cleared = await v1.subscriptions.update_async(subscription.id, {"default_tax_rates": ""})
    assert cleared.default_tax_rates == []
    renewal = await v1.invoices.create_preview_async({"subscription": subscription.id})
    assert (renewal.total, renewal.total_taxes) == (2900, [])
    unknown = await refused(
        v1.subscriptions.update_async(subscription.id, {"default_tax_rates": ["txr_nope"]})
    )
    assert (unknown.http_status, unknown.param) == (404, "default_tax_rates[0]")


async def test_finnish_vat_is_rounded_half_up(stripe_client):
    customer = await located_customer(stripe_client, "FI", "00100")
    subscription = await subscribe(
        stripe_client, customer, await priced(stripe_client, 1100), automatic_tax={"enabled": True}
    )
    invoice = await first_invoice(stripe_client, subscription)
    # 25.5% of 1100 is 280.5: half up gives 281 (half to even would give 280).
    assert line_taxes(invoice.lines.data[0]) == [(281, "exclusive", "standard_rated", 1100)]
    assert (invoice.total, invoice.amount_paid) == (1381, 1381)


async def test_a_refused_automatic_tax_leaves_nothing_behind(stripe_client):
    v1 = stripe_client.v1
    customer = await located_customer(stripe_client, None)
    error = await refused(
        subscribe(
            stripe_client, customer, await priced(stripe_client), automatic_tax={"enabled": True}
        )
    )
    assert error.code == "customer_tax_location_invalid" and error.http_status == 400
    assert (await v1.subscriptions.list_async({"status": "all"})).data == []
    assert (await v1.invoices.list_async()).data == []
    assert (await v1.payment_intents.list_async()).data == []
    assert (await v1.customers.retrieve_async(customer.id)).currency is None
    kinds = await event_types(stripe_client)
    assert not [kind for kind in kinds if kind.startswith(("invoice", "customer.subscription"))]


async def test_an_automatic_rate_is_retrievable_after_a_preview_undone(stripe_client):
    v1 = stripe_client.v1
    customer = await located_customer(stripe_client, "GB")
    price = await priced(stripe_client)
    preview = await v1.invoices.create_preview_async(
        {
            "customer": customer.id,
            "subscription_details": {"items": [{"price": price.id}]},
            "automatic_tax": {"enabled": True},
        }
    )
    rate_id = preview.lines.data[0].taxes[0].tax_rate_details.tax_rate
    assert (await v1.subscriptions.list_async({"status": "all"})).data == []
    used = await v1.tax_rates.retrieve_async(rate_id)
    assert (used.id, used.percentage, used.inclusive) == (rate_id, 20, False)
    assert (used.display_name, used.country, used.tax_type) == ("VAT", "GB", "vat")
    subscription = await subscribe(stripe_client, customer, price, automatic_tax={"enabled": True})
    invoice = await first_invoice(stripe_client, subscription)
    assert invoice.total_taxes[0].tax_rate_details.tax_rate == rate_id
    assert (await v1.tax_rates.retrieve_async(rate_id)).to_dict() == used.to_dict()


# Checkout ---------------------------------------------------------------------------------------


async def checkout(client: stripe.StripeClient, customer, price, **params):
    return await client.v1.checkout.sessions.create_async(
        {
            "mode": "subscription",
            "customer": customer.id,
            "line_items": [{"price": price.id, "quantity": 1}],
            "success_url": "https://example.com/ok",
            **params,
        }
    )


async def completed_invoice(client: stripe.StripeClient, sandbox, session):
    response = await browser(sandbox, f"/_sandbox/checkout/sessions/{session.id}/complete")
    assert response.status_code == 200, response.text
    done = await client.v1.checkout.sessions.retrieve_async(
        session.id, {"expand": ["subscription.latest_invoice"]}
    )
    return done.subscription, done.subscription.latest_invoice


async def test_checkout_with_automatic_tax_bills_what_it_showed(stripe_client, sandbox):
    customer = await located_customer(stripe_client, "AU")
    twenty = await stripe_client.v1.coupons.create_async({"percent_off": 20, "duration": "once"})
    session = await checkout(
        stripe_client,
        customer,
        await priced(stripe_client),
        automatic_tax={"enabled": True},
        discounts=[{"coupon": twenty.id}],
    )
    assert session.automatic_tax.enabled and session.automatic_tax.status == "complete"
    # 29.00 less 20% is 23.20, and GST 10% on that is 2.32.
    assert session.total_details.amount_discount == 580
    assert session.total_details.amount_tax == 232
    assert (session.amount_subtotal, session.amount_total) == (2900, 2552)
    subscription, invoice = await completed_invoice(stripe_client, sandbox, session)
    assert subscription.automatic_tax.enabled
    assert taxes(invoice) == [(232, "exclusive", "standard_rated", 2320)]
    assert invoice.amount_paid == session.amount_total


async def test_checkout_with_an_inclusive_price_keeps_its_total(stripe_client, sandbox):
    customer = await located_customer(stripe_client, "NZ")
    price = await priced(stripe_client, amount=2300, tax_behavior="inclusive")
    session = await checkout(stripe_client, customer, price, automatic_tax={"enabled": True})
    # 23.00 holds 15% GST of 20.00.
    assert session.total_details.amount_tax == 300 and session.amount_total == 2300
    _, invoice = await completed_invoice(stripe_client, sandbox, session)
    assert taxes(invoice) == [(300, "inclusive", "standard_rated", 2000)]
    assert invoice.amount_paid == 2300


async def test_checkout_with_default_tax_rates(stripe_client, sandbox):
    gst = await stripe_client.v1.tax_rates.create_async(
        {"display_name": "GST", "percentage": 10, "inclusive": False, "country": "AU"}
    )
    customer = await located_customer(stripe_client, None)
    session = await checkout(
        stripe_client,
        customer,
        await priced(stripe_client),
        subscription_data={"default_tax_rates": [gst.id]},
    )
    assert not session.automatic_tax.enabled
    assert session.total_details.amount_tax == 290 and session.amount_total == 3190
    subscription, invoice = await completed_invoice(stripe_client, sandbox, session)
    assert [rate.id for rate in subscription.default_tax_rates] == [gst.id]
    assert taxes(invoice) == [(290, "exclusive", "not_available", 2900)]


async def test_checkout_refuses_automatic_tax_it_cannot_place(stripe_client):
    price = await priced(stripe_client)
    unplaced = await located_customer(stripe_client, None)
    error = await refused(checkout(stripe_client, unplaced, price, automatic_tax={"enabled": True}))
    assert error.user_message.startswith("Automatic tax calculation in Checkout requires")
    archived = await stripe_client.v1.tax_rates.create_async(
        {"display_name": "GST", "percentage": 10, "inclusive": False}
    )
    await stripe_client.v1.tax_rates.update_async(archived.id, {"active": False})
    located = await located_customer(stripe_client, "AU")
    error = await refused(
        checkout(
            stripe_client, located, price, subscription_data={"default_tax_rates": [archived.id]}
        )
    )
    assert error.param == "subscription_data[default_tax_rates][0]"
    assert (await stripe_client.v1.checkout.sessions.list_async()).data == []
