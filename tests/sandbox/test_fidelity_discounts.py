"""Coupons, promotion codes, discounts, and the subscriptions, invoices, sessions and events
that carry them have exactly the top-level keys of Stripe's fixtures for their types."""

import httpx
import stripe

from tests.sandbox.test_billing import catalog, months_later
from tests.sandbox.test_fidelity import fixture_problems, stripe_objects
from tests.sandbox.test_time import HOUR, JAN_31, advance, clock_at, customer_on


async def exercise(client: stripe.StripeClient, sandbox) -> list[dict]:
    """Redeem a coupon and a promotion code, bill and renew, and collect every response."""
    responses = []

    async def keep(awaitable):
        result = await awaitable
        responses.append(result.to_dict())
        return result

    v1 = client.v1
    clock = await clock_at(client)
    product, price = await catalog(client)
    customer = await customer_on(client, clock)
    once = await keep(v1.coupons.create_async({"percent_off": 20, "duration": "once"}))
    forever = await keep(
        v1.coupons.create_async(
            {
                "amount_off": 300,
                "currency": "usd",
                "duration": "forever",
                "applies_to": {"products": [product.id]},
            }
        )
    )
    await keep(v1.coupons.retrieve_async(forever.id, {"expand": ["applies_to"]}))
    code = await keep(
        v1.promotion_codes.create_async(
            {"promotion": {"type": "coupon", "coupon": once.id}, "code": "FIDELITY"}
        )
    )
    await keep(
        v1.promotion_codes.list_async({"code": "fidelity", "expand": ["data.promotion.coupon"]})
    )
    discount_paths = ["discounts.source.coupon", "discounts.promotion_code"]
    subscription = await keep(
        v1.subscriptions.create_async(
            {
                "customer": customer.id,
                "items": [{"price": price.id}],
                "discounts": [{"promotion_code": code.id}, {"coupon": forever.id}],
                "expand": [*discount_paths, "latest_invoice.discounts"],
            }
        )
    )
    first = subscription.latest_invoice.id
    await keep(v1.invoices.line_items.list_async(first))
    await advance(client, clock, months_later(JAN_31, 1) + 2 * HOUR)
    await keep(
        v1.invoices.retrieve_async(
            first, {"expand": ["discounts", "total_discount_amounts.discount"]}
        )
    )
    await keep(
        v1.invoices.list_async({"subscription": subscription.id, "expand": ["data.discounts"]})
    )
    await keep(v1.subscriptions.retrieve_async(subscription.id, {"expand": discount_paths}))
    session = await keep(
        v1.checkout.sessions.create_async(
            {
                "mode": "subscription",
                "line_items": [{"price": price.id, "quantity": 1}],
                "discounts": [{"coupon": forever.id}],
                "success_url": "https://example.com/ok",
            }
        )
    )
    async with httpx.AsyncClient(base_url=sandbox.url) as browser:
        completed = await browser.post(f"/_sandbox/checkout/sessions/{session.id}/complete")
        responses.append(completed.json())
    await keep(v1.promotion_codes.update_async(code.id, {"active": False}))
    await keep(v1.coupons.update_async(once.id, {"name": "Once"}))
    await keep(v1.coupons.delete_async(once.id))
    await keep(v1.events.list_async({"limit": 100}))
    return responses


async def test_discount_objects_have_exactly_their_fixtures_keys(stripe_client, sandbox):
    objects = stripe_objects(await exercise(stripe_client, sandbox))
    seen = {obj["object"] for obj in objects}
    assert {
        "coupon",
        "promotion_code",
        "discount",
        "subscription",
        "invoice",
        "line_item",
        "checkout.session",
        "event",
    } <= seen
    assert any(obj["object"] == "discount" and obj.get("deleted") for obj in objects)
    assert fixture_problems(objects) == {}
