"""Tax ids, tax rates, taxed invoices and their lines, multi-currency prices and previews have
exactly the top-level keys of Stripe's fixtures for their types."""

import stripe

from tests.sandbox.test_fidelity import fixture_problems, stripe_objects
from tests.sandbox.test_tax import VALID_ABN, located_customer


async def exercise(client: stripe.StripeClient) -> list[dict]:
    """Tax a subscription both ways, in two currencies, preview it, and collect every answer."""
    responses = []

    async def keep(awaitable):
        result = await awaitable
        responses.append(result.to_dict())
        return result

    v1 = client.v1
    product = await keep(v1.products.create_async({"name": "Pro"}))
    price = await keep(
        v1.prices.create_async(
            {
                "product": product.id,
                "currency": "usd",
                "unit_amount": 2900,
                "tax_behavior": "exclusive",
                "recurring": {"interval": "month"},
                "currency_options": {"aud": {"unit_amount": 4500}},
                "expand": ["currency_options"],
            }
        )
    )
    await keep(v1.prices.list_async({"expand": ["data.currency_options"]}))
    rate = await keep(
        v1.tax_rates.create_async({"display_name": "VAT", "percentage": 20, "inclusive": True})
    )
    await keep(v1.tax_rates.update_async(rate.id, {"description": "UK VAT"}))
    customer = await located_customer(client, "AU", tax_ids=(("au_abn", VALID_ABN),))
    await keep(v1.customers.retrieve_async(customer.id, {"expand": ["tax", "tax_ids"]}))
    vat = await keep(
        v1.customers.tax_ids.create_async(customer.id, {"type": "eu_vat", "value": "DE123456789"})
    )
    await keep(v1.customers.tax_ids.list_async(customer.id))
    await keep(v1.customers.tax_ids.delete_async(customer.id, vat.id))
    items = [{"price": price.id}]
    terms = {"currency": "aud", "automatic_tax": {"enabled": True}}
    preview = await keep(
        v1.invoices.create_preview_async(
            {"customer": customer.id, "subscription_details": {"items": items}, **terms}
        )
    )
    await keep(v1.tax_rates.retrieve_async(preview.total_taxes[0].tax_rate_details.tax_rate))
    automatic = await keep(
        v1.subscriptions.create_async(
            {
                "customer": customer.id,
                "items": items,
                **terms,
                "expand": ["latest_invoice", "items.data.price.currency_options"],
            }
        )
    )
    await keep(v1.invoices.line_items.list_async(automatic.latest_invoice.id))
    other = await located_customer(client, None)
    manual = await keep(
        v1.subscriptions.create_async(
            {
                "customer": other.id,
                "items": [{"price": price.id, "tax_rates": [rate.id]}],
                "default_tax_rates": [rate.id],
                "expand": ["latest_invoice"],
            }
        )
    )
    await keep(v1.invoices.retrieve_async(manual.latest_invoice.id))
    responses.append((await v1.events.list_async({"limit": 100})).to_dict())
    return responses


async def test_tax_objects_have_exactly_their_fixtures_keys(stripe_client):
    objects = stripe_objects(await exercise(stripe_client))
    seen_types = {obj["object"] for obj in objects}
    assert {
        "tax_id",
        "tax_rate",
        "customer",
        "price",
        "subscription",
        "subscription_item",
        "invoice",
        "line_item",
        "event",
    } <= seen_types
    assert any(obj["object"] == "tax_id" and obj.get("deleted") for obj in objects)
    assert fixture_problems(objects) == {}


async def exercise_changes(client: stripe.StripeClient) -> list[dict]:
    """Preview and make taxed, discounted changes on a clock; collect every answer."""
    from tests.sandbox.test_previews import demo_catalog, started_on_march_1
    from tests.sandbox.test_proration import MAR_11

    responses = []

    async def keep(awaitable):
        result = await awaitable
        responses.append(result.to_dict())
        return result

    v1 = client.v1
    catalog, code = await demo_catalog(client)
    customer, subscription = await started_on_march_1(
        client, "AU", catalog["starter_monthly"], automatic_tax={"enabled": True}
    )
    discount_paths = ["discounts.source.coupon", "discounts.promotion_code"]
    await keep(
        v1.invoices.create_preview_async(
            {
                "customer": customer.id,
                "subscription_details": {"items": [{"price": catalog["pro_yearly"].id}]},
                "discounts": [{"promotion_code": code.id}],
                "automatic_tax": {"enabled": True},
                "expand": discount_paths,
            }
        )
    )
    change = {
        "items": [{"id": subscription["items"].data[0].id, "price": catalog["pro_monthly"].id}],
        "proration_behavior": "always_invoice",
        "proration_date": MAR_11,
    }
    await keep(
        v1.invoices.create_preview_async(
            {"subscription": subscription.id, "subscription_details": change}
        )
    )
    await keep(v1.invoices.create_preview_async({"subscription": subscription.id}))
    updated = await keep(
        v1.subscriptions.update_async(
            subscription.id,
            {**change, "expand": ["latest_invoice", "items.data.price.currency_options"]},
        )
    )
    await keep(v1.invoices.line_items.list_async(updated.latest_invoice.id))
    await keep(v1.tax_rates.list_async({"limit": 100}))
    await keep(
        v1.tax_rates.retrieve_async(updated.latest_invoice.total_taxes[0].tax_rate_details.tax_rate)
    )
    await keep(v1.customers.tax_ids.list_async(customer.id))
    responses.append((await v1.events.list_async({"limit": 100})).to_dict())
    return responses


async def test_taxed_changes_and_their_previews_have_exactly_their_fixtures_keys(stripe_client):
    objects = stripe_objects(await exercise_changes(stripe_client))
    seen = {obj["object"] for obj in objects}
    assert {
        "coupon",
        "discount",
        "promotion_code",
        "invoice",
        "line_item",
        "price",
        "subscription",
        "tax_rate",
        "event",
    } <= seen
    previews = [o for o in objects if o["object"] == "invoice" and o["id"].startswith("upcoming_")]
    assert len(previews) >= 3 and any(p["total_taxes"] for p in previews)
    assert any("currency_options" in o for o in objects if o["object"] == "price")
    assert fixture_problems(objects) == {}
