"""Prorations on a test clock against hand-computed figures, and invoice previews
(`invoices.create_preview`) that match what the change then bills.

Every example starts on a clock at 1 March 2026, so the first period is 1 March to 1 April:
31 days. A change on 11 March leaves 21/31 of it, on 21 March 11/31; each proration line is
that share of the item's full amount, rounded to the cent."""

from datetime import UTC, datetime

import pytest
import stripe

from tests.sandbox.test_time import (
    HOUR,
    advance,
    clock_at,
    customer_on,
    events_of,
    invoices_of,
)

DAY = 86400
MAR_1 = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
MAR_11 = MAR_1 + 10 * DAY
MAR_21 = MAR_1 + 20 * DAY
APR_1 = int(datetime(2026, 4, 1, tzinfo=UTC).timestamp())


async def prices(client: stripe.StripeClient, *amounts: int, name: str = "Pro"):
    product = await client.v1.products.create_async({"name": name})
    return [
        await client.v1.prices.create_async(
            {
                "product": product.id,
                "currency": "usd",
                "unit_amount": amount,
                "recurring": {"interval": "month"},
            }
        )
        for amount in amounts
    ]


async def started(client: stripe.StripeClient, price, quantity: int = 1):
    """A clock at 1 March, a customer with a card on it, and a paid subscription to `price`."""
    clock = await clock_at(client, MAR_1)
    customer = await customer_on(client, clock)
    subscription = await client.v1.subscriptions.create_async(
        {"customer": customer.id, "items": [{"price": price.id, "quantity": quantity}]}
    )
    return clock, customer, subscription


def amounts(invoice) -> list[int]:
    return [line.amount for line in invoice.lines.data]


async def test_upgrade_mid_month_with_create_prorations(stripe_client):
    v1 = stripe_client.v1
    pro, bigger = await prices(stripe_client, 3000, 5000)
    clock, customer, subscription = await started(stripe_client, pro)
    item = subscription["items"].data[0]
    await advance(stripe_client, clock, MAR_11)
    change = {"items": [{"id": item.id, "price": bigger.id}], "proration_date": MAR_11}
    events_before = len(await events_of(stripe_client, "*"))

    preview = await v1.invoices.create_preview_async(
        {"subscription": subscription.id, "subscription_details": change}
    )
    # -$30.00 × 21/31 = -2032.26 and $50.00 × 21/31 = 3387.10, then April at $50.00.
    assert amounts(preview) == [-2032, 3387, 5000] and preview.total == 6355
    assert preview.id.startswith("upcoming_in_") and preview.status == "draft"
    assert preview.billing_reason == "subscription_cycle"
    assert preview.parent.subscription_details.subscription_proration_date == MAR_11
    assert [line.description for line in preview.lines.data[:2]] == [
        "Unused time on Pro after 11 Mar 2026",
        "Remaining time on Pro after 11 Mar 2026",
    ]
    proration_lines = [
        line for line in preview.lines.data if line.parent.subscription_item_details.proration
    ]
    assert [line.period.start for line in proration_lines] == [MAR_11, MAR_11]
    # A preview changes nothing and announces nothing.
    assert (await v1.subscriptions.retrieve_async(subscription.id))["items"].data[
        0
    ].price.id == pro.id
    assert (await v1.invoice_items.list_async({"customer": customer.id})).data == []
    assert len(await events_of(stripe_client, "*")) == events_before
    with pytest.raises(stripe.InvalidRequestError):
        await v1.invoices.retrieve_async(preview.id)

    # The change itself, prorated at the clock's time.
    await v1.subscriptions.update_async(
        subscription.id, {"items": [{"id": item.id, "price": bigger.id}]}
    )
    pending = await v1.invoice_items.list_async({"customer": customer.id, "pending": True})
    assert sorted(i.amount for i in pending.data) == [-2032, 3387]
    await advance(stripe_client, clock, APR_1 + 2 * HOUR)
    _, renewal = await invoices_of(stripe_client, subscription.id)
    assert amounts(renewal) == amounts(preview) and renewal.amount_paid == 6355
    assert renewal.status == "paid"


async def test_downgrade_with_always_invoice(stripe_client):
    v1 = stripe_client.v1
    pro, smaller = await prices(stripe_client, 5000, 2000)
    clock, customer, subscription = await started(stripe_client, pro)
    item = subscription["items"].data[0]
    await advance(stripe_client, clock, MAR_11)
    change = {
        "items": [{"id": item.id, "price": smaller.id}],
        "proration_behavior": "always_invoice",
    }

    # always_invoice: the preview is the invoice the change makes at once.
    preview = await v1.invoices.create_preview_async(
        {"subscription": subscription.id, "subscription_details": change}
    )
    # -$50.00 × 21/31 = -3387.10 and $20.00 × 21/31 = 1354.84.
    assert amounts(preview) == [-3387, 1355] and preview.total == -2032
    assert preview.billing_reason == "subscription_update"

    updated = await v1.subscriptions.update_async(
        subscription.id, {**change, "expand": ["latest_invoice"]}
    )
    invoice = updated.latest_invoice
    assert amounts(invoice) == amounts(preview) and invoice.total == -2032
    assert invoice.status == "paid" and invoice.amount_due == 0
    assert (await v1.customers.retrieve_async(customer.id)).balance == -2032
    # April at $20.00, paid from the $20.32 credit: 32 cents of it are left.
    await advance(stripe_client, clock, APR_1 + 2 * HOUR)
    *_, renewal = await invoices_of(stripe_client, subscription.id)
    assert renewal.total == 2000 and renewal.amount_due == 0 and renewal.status == "paid"
    assert (await v1.customers.retrieve_async(customer.id)).balance == -32


@pytest.mark.parametrize("behavior", ["create_prorations", "always_invoice"])
async def test_quantity_change(stripe_client, behavior):
    v1 = stripe_client.v1
    (seat,) = await prices(stripe_client, 1000, name="Seat")
    clock, _, subscription = await started(stripe_client, seat, quantity=2)
    item = subscription["items"].data[0]
    await advance(stripe_client, clock, MAR_21)
    change = {"items": [{"id": item.id, "quantity": 5}], "proration_behavior": behavior}
    preview = await v1.invoices.create_preview_async(
        {"subscription": subscription.id, "subscription_details": change}
    )
    updated = await v1.subscriptions.update_async(
        subscription.id, {**change, "expand": ["latest_invoice"]}
    )
    await advance(stripe_client, clock, APR_1 + 2 * HOUR)
    _, *billed, renewal = await invoices_of(stripe_client, subscription.id)
    # -2 × $10.00 × 11/31 = -709.68 and 5 × $10.00 × 11/31 = 1774.19.
    assert [line.description for line in preview.lines.data[:2]] == [
        "Unused time on 2 × Seat after 21 Mar 2026",
        "Remaining time on 5 × Seat after 21 Mar 2026",
    ]
    if behavior == "always_invoice":
        assert amounts(preview) == [-710, 1774] and preview.total == 1064
        (now,) = billed
        assert now.id == updated.latest_invoice.id and amounts(now) == [-710, 1774]
        assert now.amount_paid == 1064 and renewal.total == 5000
    else:
        assert amounts(preview) == [-710, 1774, 5000] and preview.total == 6064
        assert billed == [] and amounts(renewal) == amounts(preview)
        assert renewal.amount_paid == 6064


async def test_preview_of_the_next_renewal_and_its_refusals(stripe_client):
    v1 = stripe_client.v1
    (pro,) = await prices(stripe_client, 3000)
    _, customer, subscription = await started(stripe_client, pro)
    by_customer = await v1.invoices.create_preview_async({"customer": customer.id})
    assert amounts(by_customer) == [3000] and by_customer.period_end == APR_1
    assert by_customer.lines.data[0].period.end == int(datetime(2026, 5, 1, tzinfo=UTC).timestamp())
    with pytest.raises(stripe.InvalidRequestError) as outside:
        await v1.invoices.create_preview_async(
            {"subscription": subscription.id, "subscription_details": {"proration_date": 1}}
        )
    assert outside.value.param == "proration_date"
    with pytest.raises(stripe.InvalidRequestError) as unsupported:
        await v1.invoices.create_preview_async({"customer": customer.id, "currency": "eur"})
    assert unsupported.value.param == "currency"
    await v1.subscriptions.cancel_async(subscription.id)
    with pytest.raises(stripe.InvalidRequestError) as none:
        await v1.invoices.create_preview_async({"customer": customer.id})
    assert none.value.code == "invoice_upcoming_none"
