"""Invoice previews (`invoices.create_preview`) equal, to the cent, the invoice then really
billed: for a new subscription and for changes to one, with tax, discounts and in AUD. A
preview keeps nothing and announces nothing."""

import asyncio

import pytest
import stripe

from tests.sandbox.test_currencies import multi_currency_price
from tests.sandbox.test_discounts import coupon, promotion_code
from tests.sandbox.test_proration import MAR_1, MAR_11, MAR_21
from tests.sandbox.test_tax import located_customer, priced, refused
from tests.sandbox.test_time import DAY, HOUR, JAN_31, advance, clock_at, customer_on, invoices_of

FEB_14 = JAN_31 + 14 * DAY
FEB_28 = JAN_31 + 28 * DAY


def figures(invoice) -> dict:
    """What an invoice bills: its amounts, and each line's amount, discounts and taxes."""
    return {
        "currency": invoice.currency,
        "billing_reason": invoice.billing_reason,
        "amounts": (invoice.subtotal, invoice.total, invoice.amount_due),
        "excluding_tax": (invoice.subtotal_excluding_tax, invoice.total_excluding_tax),
        "lines": [
            (
                line.amount,
                line.description,
                [discount.amount for discount in line.discount_amounts],
                [
                    (tax.amount, tax.taxability_reason, tax.tax_rate_details.tax_rate)
                    for tax in line.taxes
                ],
            )
            for line in invoice.lines.data
        ],
        "discounts": [discount.amount for discount in invoice.total_discount_amounts],
        "taxes": [
            (tax.amount, tax.tax_behavior, tax.taxable_amount, tax.tax_rate_details.tax_rate)
            for tax in invoice.total_taxes
        ],
        "automatic_tax": invoice.automatic_tax.to_dict(),
    }


async def event_count(client: stripe.StripeClient) -> int:
    return len((await client.v1.events.list_async({"limit": 100})).data)


async def preview_then_subscribe(client: stripe.StripeClient, customer, params: dict):
    """The preview of a new subscription, and the first invoice of the one then created."""
    v1 = client.v1
    before = await event_count(client)
    preview = await v1.invoices.create_preview_async(
        {
            "customer": customer.id,
            "subscription_details": {
                key: params[key] for key in ("items", "trial_end") if key in params
            },
            **{
                key: params[key]
                for key in ("currency", "automatic_tax", "discounts")
                if key in params
            },
        }
    )
    assert await event_count(client) == before
    assert (await v1.subscriptions.list_async({"customer": customer.id})).data == []
    subscription = await v1.subscriptions.create_async({"customer": customer.id, **params})
    return preview, await v1.invoices.retrieve_async(subscription.latest_invoice)


async def test_a_new_subscription(stripe_client):
    v1 = stripe_client.v1
    customer = await located_customer(stripe_client, None)
    price = await priced(stripe_client)
    params = {"items": [{"price": price.id, "quantity": 2}]}
    preview, invoice = await preview_then_subscribe(stripe_client, customer, params)
    assert figures(preview) == figures(invoice)
    assert preview.total == 5800 and preview.billing_reason == "subscription_create"
    assert preview.id.startswith("upcoming_in_") and preview.status == "draft"
    assert preview.number is None and preview.amount_paid == 0
    missing = await refused(v1.invoices.retrieve_async(preview.id))
    assert missing.http_status == 404


async def test_a_new_subscription_in_aud_with_gst(stripe_client):
    customer = await located_customer(stripe_client, "AU")
    price = await multi_currency_price(stripe_client)
    params = {
        "items": [{"price": price.id}],
        "currency": "aud",
        "automatic_tax": {"enabled": True},
    }
    preview, invoice = await preview_then_subscribe(stripe_client, customer, params)
    assert figures(preview) == figures(invoice)
    assert (preview.currency, preview.total) == ("aud", 4950)
    rate = await stripe_client.v1.tax_rates.retrieve_async(
        preview.total_taxes[0].tax_rate_details.tax_rate
    )
    assert (rate.display_name, rate.percentage) == ("GST", 10)


async def test_a_new_subscription_with_a_promotion_code_and_vat(stripe_client):
    customer = await located_customer(stripe_client, "DE", "10115")
    welcome = await coupon(stripe_client, percent_off=20)
    code = await promotion_code(stripe_client, welcome.id, code="WELCOME")
    params = {
        "items": [{"price": (await priced(stripe_client)).id}],
        "automatic_tax": {"enabled": True},
        "discounts": [{"promotion_code": code.id}],
    }
    preview, invoice = await preview_then_subscribe(stripe_client, customer, params)
    assert figures(preview) == figures(invoice)
    # $29.00 - 20% = $23.20, and 19% VAT on that: $4.41.
    assert preview.total == 2320 + 441
    assert (await stripe_client.v1.promotion_codes.retrieve_async(code.id)).times_redeemed == 1


async def test_a_new_subscription_with_a_trial_and_tax_rates(stripe_client):
    rate = await stripe_client.v1.tax_rates.create_async(
        {"display_name": "VAT", "percentage": 20, "inclusive": True}
    )
    customer = await located_customer(stripe_client, None)
    price = await priced(stripe_client)
    params = {
        "items": [{"price": price.id, "tax_rates": [rate.id]}],
        "trial_end": (await stripe_client.v1.prices.retrieve_async(price.id)).created + 7 * DAY,
    }
    preview, invoice = await preview_then_subscribe(stripe_client, customer, params)
    assert figures(preview) == figures(invoice)
    assert preview.total == 0 and preview.lines.data[0].description == "Trial period for Pro"


async def test_a_preview_refuses_what_the_subscription_would_refuse(stripe_client):
    v1 = stripe_client.v1
    customer = await located_customer(stripe_client, None)
    price = await multi_currency_price(stripe_client)
    subscription = await v1.subscriptions.create_async(
        {"customer": customer.id, "items": [{"price": price.id}], "currency": "aud"}
    )
    combining = await refused(
        v1.invoices.create_preview_async(
            {
                "customer": customer.id,
                "currency": "usd",
                "subscription_details": {"items": [{"price": price.id}]},
            }
        )
    )
    assert combining.user_message.startswith("You cannot combine currencies")
    changing = await refused(
        v1.invoices.create_preview_async({"subscription": subscription.id, "currency": "usd"})
    )
    assert changing.param == "currency"
    # Without a location, a preview says so instead of refusing.
    untaxed = await v1.invoices.create_preview_async(
        {
            "customer": customer.id,
            "currency": "aud",
            "automatic_tax": {"enabled": True},
            "subscription_details": {
                "items": [{"price": (await multi_currency_price(stripe_client)).id}]
            },
        }
    )
    assert untaxed.automatic_tax.status == "requires_location_inputs"
    assert untaxed.total_taxes == []


async def started_on_clock(client: stripe.StripeClient, price, **params):
    clock = await clock_at(client)
    customer = await customer_on(client, clock)
    await client.v1.customers.update_async(
        customer.id, {"address": {"country": "NZ"}, "tax": {"validate_location": "deferred"}}
    )
    subscription = await client.v1.subscriptions.create_async(
        {"customer": customer.id, "items": [{"price": price.id}], **params}
    )
    await advance(client, clock, FEB_14)
    return clock, customer, subscription


async def preview_then_update(client: stripe.StripeClient, subscription, change: dict):
    """The preview of a change billed at once, and the invoice the change then bills."""
    v1 = client.v1
    before = await event_count(client)
    details = {
        key: change[key]
        for key in ("items", "proration_behavior", "proration_date")
        if key in change
    }
    terms = {key: change[key] for key in ("automatic_tax", "discounts") if key in change}
    preview = await v1.invoices.create_preview_async(
        {"subscription": subscription.id, "subscription_details": details, **terms}
    )
    assert await event_count(client) == before
    updated = await v1.subscriptions.update_async(subscription.id, change)
    return preview, await v1.invoices.retrieve_async(updated.latest_invoice)


async def test_an_upgrade_in_aud_with_new_zealand_gst(stripe_client):
    price = await multi_currency_price(stripe_client)
    bigger = await multi_currency_price(
        stripe_client, currency_options={"aud": {"unit_amount": 9000, "tax_behavior": "exclusive"}}
    )
    _, _, subscription = await started_on_clock(
        stripe_client, price, currency="aud", automatic_tax={"enabled": True}
    )
    item = subscription["items"].data[0]
    change = {
        "items": [{"id": item.id, "price": bigger.id}],
        "proration_behavior": "always_invoice",
        "proration_date": FEB_14,
    }
    preview, invoice = await preview_then_update(stripe_client, subscription, change)
    assert figures(preview) == figures(invoice)
    # -A$22.50 + A$45.00, and New Zealand's 15% GST on each: -A$3.38 (rounded half away from
    # zero) and A$6.75.
    assert [line.amount for line in preview.lines.data] == [-2250, 4500]
    assert preview.total == 2250 - 338 + 675


async def test_a_downgrade_with_a_coupon_and_tax_enabled_on_the_way(stripe_client):
    price = await priced(stripe_client, 5000)
    smaller = await priced(stripe_client, 2000)
    _, _, subscription = await started_on_clock(stripe_client, price)
    item = subscription["items"].data[0]
    off = await coupon(stripe_client, percent_off=10)
    change = {
        "items": [{"id": item.id, "price": smaller.id}],
        "proration_behavior": "always_invoice",
        "proration_date": FEB_14,
        "automatic_tax": {"enabled": True},
        "discounts": [{"coupon": off.id}],
    }
    preview, invoice = await preview_then_update(stripe_client, subscription, change)
    assert figures(preview) == figures(invoice)
    assert preview.total < 0 and preview.total_taxes[0].amount < 0


async def test_a_quantity_change_billed_at_the_renewal(stripe_client):
    v1 = stripe_client.v1
    price = await priced(stripe_client, 3000)
    clock, _, subscription = await started_on_clock(
        stripe_client, price, automatic_tax={"enabled": True}
    )
    item = subscription["items"].data[0]
    change = {"items": [{"id": item.id, "quantity": 3}], "proration_date": FEB_14}
    preview = await v1.invoices.create_preview_async(
        {"subscription": subscription.id, "subscription_details": change}
    )
    await v1.subscriptions.update_async(subscription.id, change)
    await advance(stripe_client, clock, FEB_28 + 2 * HOUR)
    renewal = (await invoices_of(stripe_client, subscription.id))[-1]
    assert renewal.billing_reason == "subscription_cycle" and renewal.status == "paid"
    assert figures(preview) == figures(renewal)
    # Two more for half of February (+$30.00), then March for three ($90.00), with 15% GST.
    assert [line.amount for line in preview.lines.data] == [-1500, 4500, 9000]
    assert preview.total == 12000 + 1800


# The seeded catalog, WELCOME20, and changes billed at once on a fixed proration date -----------
#
# On a clock at 1 March 2026 (a 31-day period), changes are made on 21 March but prorated as of
# 11 March (`proration_date`, the same on the preview and the update): 21/31 of the period is
# left, where the clock's own time would leave 11/31.


async def demo_catalog(client: stripe.StripeClient):
    """The demo's prices by lookup key, and its WELCOME20 promotion code."""
    from sandbox.demo import seed_catalog, seed_promotions

    await seed_catalog(client)
    await seed_promotions(client)
    prices = await client.v1.prices.list_async({"limit": 100})
    (code,) = (await client.v1.promotion_codes.list_async({"code": "WELCOME20"})).data
    return {price.lookup_key: price for price in prices.data}, code


def preview_params(customer, params: dict, expand: tuple[str, ...] = ()) -> dict:
    """create_preview's params for the subscription `params` would create."""
    details = {"items": params["items"]}
    terms = {
        key: params[key] for key in ("currency", "automatic_tax", "discounts") if key in params
    }
    return {
        "customer": customer.id,
        "subscription_details": details,
        **terms,
        **({"expand": list(expand)} if expand else {}),
    }


async def test_a_new_subscription_with_welcome20_expanded(stripe_client):
    v1 = stripe_client.v1
    catalog, code = await demo_catalog(stripe_client)
    clock = await clock_at(stripe_client, MAR_1)
    customer = await customer_on(stripe_client, clock)
    params = {
        "items": [{"price": catalog["pro_monthly"].id}],
        "discounts": [{"promotion_code": code.id}],
    }
    preview = await v1.invoices.create_preview_async(
        preview_params(customer, params, ("discounts.source.coupon", "discounts.promotion_code"))
    )
    (discount,) = preview.discounts
    assert discount.object == "discount"
    assert discount.source.coupon.object == "coupon" and discount.source.coupon.percent_off == 20
    assert discount.source.coupon.id == code.promotion.coupon
    assert discount.promotion_code.object == "promotion_code"
    assert (discount.promotion_code.id, discount.promotion_code.code) == (code.id, "WELCOME20")
    assert [entry.amount for entry in preview.total_discount_amounts] == [580]
    assert (await v1.promotion_codes.retrieve_async(code.id)).times_redeemed == 0
    assert (await v1.coupons.retrieve_async(code.promotion.coupon)).times_redeemed == 0

    subscription = await v1.subscriptions.create_async({"customer": customer.id, **params})
    invoice = await v1.invoices.retrieve_async(subscription.latest_invoice)
    assert figures(preview) == figures(invoice)
    assert (invoice.subtotal, invoice.total, invoice.amount_paid) == (2900, 2320, 2320)
    assert (await v1.promotion_codes.retrieve_async(code.id)).times_redeemed == 1


@pytest.mark.parametrize(
    ("country", "params", "expected"),
    [
        # (subtotal, discounts, taxes, total)
        (None, {}, (2900, [], [], 2900)),
        ("AU", {"automatic_tax": {"enabled": True}}, (2900, [], [290], 3190)),
        (None, {"currency": "aud"}, (4500, [], [], 4500)),
        (
            "AU",
            {"currency": "aud", "automatic_tax": {"enabled": True}, "welcome": True},
            (4500, [900], [360], 3960),
        ),
    ],
)
async def test_each_new_subscription_preview_is_what_is_billed(
    stripe_client, country, params, expected
):
    v1 = stripe_client.v1
    catalog, code = await demo_catalog(stripe_client)
    clock = await clock_at(stripe_client, MAR_1)
    customer = await customer_on(stripe_client, clock)
    if country:
        await v1.customers.update_async(customer.id, {"address": {"country": country}})
    params = dict(params)
    if params.pop("welcome", False):
        params["discounts"] = [{"promotion_code": code.id}]
    params["items"] = [{"price": catalog["pro_monthly"].id}]
    preview = await v1.invoices.create_preview_async(preview_params(customer, params))
    assert (await v1.subscriptions.list_async({"status": "all"})).data == []
    assert (await v1.customers.retrieve_async(customer.id)).currency is None
    subscription = await v1.subscriptions.create_async({"customer": customer.id, **params})
    invoice = await v1.invoices.retrieve_async(subscription.latest_invoice)
    assert figures(preview) == figures(invoice)
    subtotal, discounts, tax, total = expected
    assert preview.subtotal == subtotal
    assert [entry.amount for entry in preview.total_discount_amounts] == discounts
    assert [entry.amount for entry in preview.total_taxes] == tax
    assert preview.total == preview.amount_due == total == invoice.amount_paid


async def started_on_march_1(client: stripe.StripeClient, country: str | None, price, **params):
    """A customer (in `country`) with a card on a clock at 1 March, a subscription to `price`,
    and the clock moved on to 21 March."""
    clock = await clock_at(client, MAR_1)
    customer = await customer_on(client, clock)
    if country:
        await client.v1.customers.update_async(customer.id, {"address": {"country": country}})
    subscription = await client.v1.subscriptions.create_async(
        {"customer": customer.id, "items": [{"price": price.id}], **params}
    )
    await advance(client, clock, MAR_21)
    return customer, subscription


async def previewed_and_billed(client: stripe.StripeClient, subscription, items: list):
    """The preview of a change billed at once, prorated as of 11 March, and the invoice the
    same change then bills."""
    v1 = client.v1
    change = {"items": items, "proration_behavior": "always_invoice", "proration_date": MAR_11}
    preview = await v1.invoices.create_preview_async(
        {"subscription": subscription.id, "subscription_details": change}
    )
    assert preview.parent.subscription_details.subscription_proration_date == MAR_11
    assert preview.billing_reason == "subscription_update"
    unchanged = await v1.subscriptions.retrieve_async(subscription.id)
    assert unchanged["items"].data[0].to_dict() == subscription["items"].data[0].to_dict()
    updated = await v1.subscriptions.update_async(
        subscription.id, {**change, "expand": ["latest_invoice"]}
    )
    assert updated.latest_invoice.id != subscription.latest_invoice
    return preview, updated.latest_invoice


async def test_an_upgrade_with_gst_prorated_on_the_proration_date(stripe_client):
    catalog, _ = await demo_catalog(stripe_client)
    _, subscription = await started_on_march_1(
        stripe_client, "AU", catalog["starter_monthly"], automatic_tax={"enabled": True}
    )
    item = subscription["items"].data[0]
    preview, invoice = await previewed_and_billed(
        stripe_client, subscription, [{"id": item.id, "price": catalog["pro_monthly"].id}]
    )
    assert figures(preview) == figures(invoice)
    # -$9.00 × 21/31 = -609.68 and $29.00 × 21/31 = 1964.52; GST -61 and 196.5, half up 197.
    assert [line.amount for line in invoice.lines.data] == [-610, 1965]
    assert [[tax.amount for tax in line.taxes] for line in invoice.lines.data] == [[-61], [197]]
    assert [tax.amount for tax in invoice.total_taxes] == [136]
    assert (invoice.subtotal, invoice.total, invoice.amount_due) == (1355, 1491, 1491)
    assert invoice.amount_paid == 1491 and invoice.status == "paid"


async def test_a_downgrade_in_aud_prorated_on_the_proration_date(stripe_client):
    v1 = stripe_client.v1
    catalog, _ = await demo_catalog(stripe_client)
    customer, subscription = await started_on_march_1(
        stripe_client, None, catalog["pro_monthly"], currency="aud"
    )
    item = subscription["items"].data[0]
    preview, invoice = await previewed_and_billed(
        stripe_client, subscription, [{"id": item.id, "price": catalog["starter_monthly"].id}]
    )
    assert figures(preview) == figures(invoice)
    # -A$45.00 × 21/31 = -3048.39 and A$14.00 × 21/31 = 948.39.
    assert [line.amount for line in invoice.lines.data] == [-3048, 948]
    assert (invoice.currency, invoice.total, invoice.amount_due) == ("aud", -2100, 0)
    assert (await v1.customers.retrieve_async(customer.id)).balance == -2100


async def test_a_quantity_change_with_a_tax_rate_prorated_on_the_proration_date(stripe_client):
    catalog, _ = await demo_catalog(stripe_client)
    gst = await stripe_client.v1.tax_rates.create_async(
        {"display_name": "GST", "percentage": 10, "inclusive": False}
    )
    _, subscription = await started_on_march_1(
        stripe_client, None, catalog["pro_monthly"], default_tax_rates=[gst.id]
    )
    item = subscription["items"].data[0]
    two = await stripe_client.v1.subscriptions.update_async(
        subscription.id,
        {"items": [{"id": item.id, "quantity": 2}], "proration_behavior": "none"},
    )
    preview, invoice = await previewed_and_billed(
        stripe_client, two, [{"id": item.id, "quantity": 5}]
    )
    assert figures(preview) == figures(invoice)
    # -2 × $29.00 × 21/31 = -3929.03 and 5 × $29.00 × 21/31 = 9822.58; 10% on each.
    assert [line.amount for line in invoice.lines.data] == [-3929, 9823]
    assert [[tax.amount for tax in line.taxes] for line in invoice.lines.data] == [[-393], [982]]
    assert (invoice.subtotal, invoice.total, invoice.amount_paid) == (5894, 6483, 6483)


async def test_previews_change_nothing_and_send_nothing(stripe_client, webhook_sink):
    v1 = stripe_client.v1
    catalog, code = await demo_catalog(stripe_client)
    customer = await located_customer(stripe_client, "AU")
    _, existing = await started_on_march_1(stripe_client, None, catalog["starter_monthly"])
    item = existing["items"].data[0]
    await v1.webhook_endpoints.create_async({"url": webhook_sink.url, "enabled_events": ["*"]})
    events_before = await event_count(stripe_client)
    invoices_before = [invoice.id for invoice in (await v1.invoices.list_async()).data]
    new = {"items": [{"price": catalog["pro_monthly"].id}]}
    for terms in (
        {},
        {"discounts": [{"promotion_code": code.id}]},
        {"automatic_tax": {"enabled": True}},
        {"currency": "aud"},
    ):
        await v1.invoices.create_preview_async(preview_params(customer, {**new, **terms}))
    await v1.invoices.create_preview_async(
        {
            "subscription": existing.id,
            "subscription_details": {
                "items": [{"id": item.id, "price": catalog["pro_monthly"].id}],
                "proration_behavior": "always_invoice",
                "proration_date": MAR_11,
            },
            "discounts": [{"promotion_code": code.id}],
        }
    )
    assert [s.id for s in (await v1.subscriptions.list_async({"status": "all"})).data] == [
        existing.id
    ]
    assert [invoice.id for invoice in (await v1.invoices.list_async()).data] == invoices_before
    assert (await v1.customers.retrieve_async(customer.id)).currency is None
    assert (await v1.promotion_codes.retrieve_async(code.id)).times_redeemed == 0
    assert (await v1.subscriptions.retrieve_async(existing.id)).discounts == []
    assert await event_count(stripe_client) == events_before
    # Deliveries keep their order: had the previews announced anything, it would come first.
    await v1.customers.update_async(customer.id, {"metadata": {"marker": "1"}})
    (first,) = await webhook_sink.wait_for(1)
    assert first["type"] == "customer.updated"
    assert first["data"]["object"]["metadata"] == {"marker": "1"}
    await asyncio.sleep(0.2)
    assert len(webhook_sink.received) == 1
