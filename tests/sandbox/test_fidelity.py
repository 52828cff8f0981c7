"""Every object the sandbox returns has exactly the top-level keys of Stripe's published
fixture for its type (sandbox/fixtures, copied from Stripe's fixtures3.json, MIT)."""

import httpx
import stripe

from sandbox.store import fixture

# Differences Stripe itself makes, which fixtures cannot show:
ALLOWED_EXTRA = {
    # The signing secret is returned once, when the endpoint is created.
    "webhook_endpoint": {"secret"},
    # Fields Stripe includes only when asked to with expand[].
    "invoice": {"confirmation_secret", "payments"},
    "coupon": {"applies_to"},
    "customer": {"tax", "tax_ids"},
    "price": {"currency_options"},
}
# A deleted object answers with only these keys, unless Stripe publishes a deleted_<type>.
DELETED_KEYS = {"id", "object", "deleted"}


def stripe_objects(value, found=None):
    """Every Stripe object (a dict with `object` and `id`) inside a response, nested ones too."""
    found = [] if found is None else found
    if isinstance(value, dict):
        if "object" in value and "id" in value and value["object"] != "list":
            found.append(value)
        for item in value.values():
            stripe_objects(item, found)
    elif isinstance(value, list):
        for item in value:
            stripe_objects(item, found)
    return found


def key_differences(obj: dict) -> tuple[set[str], set[str]]:
    if obj.get("deleted"):
        try:
            expected = set(fixture(f"deleted_{obj['object']}"))
        except KeyError:
            expected = DELETED_KEYS
        return expected - set(obj), set(obj) - expected
    expected = set(fixture(obj["object"]))
    missing = expected - set(obj)
    extra = set(obj) - expected - ALLOWED_EXTRA.get(obj["object"], set())
    return missing, extra


def fixture_problems(objects: list[dict]) -> dict[str, dict[str, list[str]]]:
    """The keys each object lacks or has beyond its fixture, by object; {} when none."""
    problems = {}
    for obj in objects:
        missing, extra = key_differences(obj)
        if missing or extra:
            problems[f"{obj['object']} {obj['id']}"] = {
                "missing": sorted(missing),
                "extra": sorted(extra),
            }
    return problems


async def exercise(client: stripe.StripeClient, sandbox) -> list[dict]:
    """Run the flows the gateway uses and collect every object in every response."""
    responses = []

    async def keep(awaitable):
        result = await awaitable
        responses.append(result.to_dict() if hasattr(result, "to_dict") else result)
        return result

    v1 = client.v1
    product = await keep(v1.products.create_async({"name": "Pro"}))
    price = await keep(
        v1.prices.create_async(
            {
                "product": product.id,
                "currency": "usd",
                "unit_amount": 2900,
                "recurring": {"interval": "month"},
                "metadata": {"credits": "1000"},
            }
        )
    )
    customer = await keep(v1.customers.create_async({"email": "fidelity@example.com"}))
    method = await keep(v1.payment_methods.attach_async("pm_card_visa", {"customer": customer.id}))
    await keep(
        v1.customers.update_async(
            customer.id, {"invoice_settings": {"default_payment_method": method.id}}
        )
    )
    subscription = await keep(
        v1.subscriptions.create_async(
            {
                "customer": customer.id,
                "items": [{"price": price.id}],
                "expand": ["latest_invoice.payments", "latest_invoice.confirmation_secret"],
            }
        )
    )
    invoice = await keep(
        v1.invoices.retrieve_async(
            subscription.latest_invoice.id,
            {"expand": ["payments.data.payment.payment_intent.latest_charge"]},
        )
    )
    await keep(v1.invoices.line_items.list_async(invoice.id))
    intent = await keep(
        v1.payment_intents.create_async(
            {
                "amount": 5000,
                "currency": "usd",
                "customer": customer.id,
                "payment_method": method.id,
                "confirm": True,
                "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            }
        )
    )
    await keep(v1.charges.retrieve_async(intent.latest_charge))
    await keep(v1.refunds.create_async({"payment_intent": intent.id, "amount": 1000}))
    await keep(
        v1.setup_intents.create_async(
            {"customer": customer.id, "payment_method": "pm_card_visa", "confirm": True}
        )
    )
    session = await keep(
        v1.checkout.sessions.create_async(
            {
                "mode": "subscription",
                "line_items": [{"price": price.id, "quantity": 1}],
                "success_url": "https://example.com/ok",
                "cancel_url": "https://example.com/no",
            }
        )
    )
    async with httpx.AsyncClient(base_url=sandbox.url) as browser:
        completed = await browser.post(f"/_sandbox/checkout/sessions/{session.id}/complete")
        responses.append(completed.json())
    await keep(
        v1.billing_portal.sessions.create_async(
            {"customer": customer.id, "return_url": "https://example.com"}
        )
    )
    await keep(
        v1.webhook_endpoints.create_async(
            {"url": "https://example.com/hook", "enabled_events": ["*"]}
        )
    )
    await keep(v1.subscriptions.cancel_async(subscription.id))
    await keep(v1.customers.delete_async(customer.id))
    responses.append((await v1.events.list_async({"limit": 100})).to_dict())
    return responses


async def test_every_object_has_exactly_its_fixtures_keys(stripe_client, sandbox):
    responses = await exercise(stripe_client, sandbox)
    objects = stripe_objects(responses)
    seen_types = {obj["object"] for obj in objects}
    assert {
        "customer",
        "payment_method",
        "product",
        "price",
        "subscription",
        "subscription_item",
        "invoice",
        "line_item",
        "invoice_payment",
        "payment_intent",
        "charge",
        "refund",
        "setup_intent",
        "checkout.session",
        "billing_portal.session",
        "webhook_endpoint",
        "event",
    } <= seen_types
    assert fixture_problems(objects) == {}
