"""Discounts, taxes and tax ids reach the mirror from Stripe's events alone: a purchase made
outside the gateway (the SDK on the sandbox) is described from the events' ids, in any order
and applied twice, with Stripe read once per discount or rate never seen before."""

import random
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select

from db.models import Discount, Invoice, Subscription, TaxId, TaxRate
from services.stripe.client import StripeApi
from tests.webhooks import lifecycles
from tests.webhooks.lifecycles import apply_all


@pytest.fixture
async def api(settings, billing) -> AsyncIterator[StripeApi]:
    async with StripeApi(settings, billing.sandbox.url) as api:
        yield api


async def a_discounted_taxed_purchase(db, billing) -> lifecycles.Customer:
    """An Australian business subscribing to Pro in AUD with WELCOME20 and automatic tax."""
    v1 = billing.stripe.v1
    customer = await lifecycles.new_customer(
        db,
        billing,
        "acme",
        address={"line1": "1 George St", "city": "Sydney", "postal_code": "2000", "country": "AU"},
    )
    await v1.customers.tax_ids.create_async(
        customer.stripe_id, {"type": "au_abn", "value": "51824753556"}
    )
    card = await v1.payment_methods.attach_async("pm_card_visa", {"customer": customer.stripe_id})
    (code,) = (await v1.promotion_codes.list_async({"code": "WELCOME20"})).data
    await v1.subscriptions.create_async(
        {
            "customer": customer.stripe_id,
            "items": [{"price": lifecycles.price(billing, "pro_monthly")}],
            "currency": "aud",
            "default_payment_method": card.id,
            "discounts": [{"promotion_code": code.id}],
            "automatic_tax": {"enabled": True},
        }
    )
    return customer


async def test_events_alone_describe_discounts_taxes_and_tax_ids(db, billing, api):
    customer = await a_discounted_taxed_purchase(db, billing)
    events = await lifecycles.events_of(billing, customer.stripe_id)
    shuffled = random.Random(7).sample(events, len(events))

    await apply_all(db, api, shuffled + shuffled)

    async with db.session() as session:
        (invoice,) = (await session.scalars(select(Invoice))).all()
        (subscription,) = (await session.scalars(select(Subscription))).all()
        (tax_id,) = (await session.scalars(select(TaxId))).all()
        described = await session.scalar(select(func.count()).select_from(Discount))
        rates = await session.scalar(select(func.count()).select_from(TaxRate))
    remote = await billing.stripe.v1.invoices.retrieve_async(invoice.stripe_invoice_id)
    assert invoice.currency == "aud" and subscription.currency == "aud"
    (discount,) = invoice.discounts
    assert (discount["promotion_code"], discount["percent_off"]) == ("WELCOME20", 20)
    assert discount["amount"] == remote.total_discount_amounts[0].amount
    assert invoice.total_discount == discount["amount"]
    (gst,) = invoice.taxes
    assert (gst["name"], gst["percentage"], gst["country"]) == ("GST", 10, "AU")
    assert gst["amount"] == invoice.tax == sum(tax.amount for tax in remote.total_taxes)
    assert invoice.total == remote.total
    assert invoice.customer_tax_ids == [{"type": "au_abn", "value": "51824753556"}]
    assert (tax_id.type, tax_id.value, tax_id.deleted_at) == ("au_abn", "51824753556", None)
    # Each discount and rate was read from Stripe once, then kept.
    assert described == 1 and rates == 1


async def test_a_deleted_tax_id_stays_deleted_whatever_the_order(db, billing, api):
    v1 = billing.stripe.v1
    customer = await lifecycles.new_customer(db, billing, "acme")
    created = await v1.customers.tax_ids.create_async(
        customer.stripe_id, {"type": "au_abn", "value": "51824753556"}
    )
    await v1.customers.tax_ids.delete_async(customer.stripe_id, created.id)
    events = [
        event
        for event in await lifecycles.events_of(billing, customer.stripe_id)
        if event["type"].startswith("customer.tax_id.")
    ]
    assert [event["type"] for event in events][-1] == "customer.tax_id.deleted"

    await apply_all(db, api, list(reversed(events)))

    async with db.session() as session:
        (row,) = (await session.scalars(select(TaxId))).all()
    assert row.deleted_at is not None
