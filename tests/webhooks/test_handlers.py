"""The webhook handlers over real sandbox lifecycles: the events Stripe emitted, applied in
order (one transaction each, as the worker does), leave the mirror equal to Stripe."""

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from db.models import (
    Account,
    Invoice,
    PaymentTransaction,
    Plan,
    Subscription,
    SubscriptionStatus,
)
from services.stripe.client import StripeApi
from services.webhooks import dispatch
from tests.webhooks import lifecycles
from tests.webhooks.lifecycles import apply, apply_all, mirror_state, stripe_state

LIVES = {
    "happy": lifecycles.happy_life,
    "three_d_secure": lifecycles.three_d_secure_life,
    "recovery": lifecycles.recovery_life,
    "renewal": lifecycles.renewal_life,
}


@pytest.fixture
async def api(settings, billing) -> AsyncIterator[StripeApi]:
    async with StripeApi(settings, billing.sandbox.url) as api:
        yield api


@pytest.mark.parametrize("life", sorted(LIVES))
async def test_events_in_order_mirror_stripe(db, billing, api, life):
    recorded = await lifecycles.record(db, api, billing, LIVES[life])
    assert recorded.events, "the lifecycle emitted events"

    await apply_all(db, api, recorded.events)

    mirrored = await mirror_state(db, recorded.customer.account_id)
    assert mirrored == await stripe_state(billing, recorded.customer.stripe_id)
    assert mirrored["subscriptions"] and mirrored["invoices"] and mirrored["payments"]


async def test_every_lifecycle_event_type_has_a_handler_or_is_meant_to_be_skipped(db, billing, api):
    recorded = await lifecycles.record(db, api, billing, lifecycles.happy_life)
    unhandled = {e["type"] for e in recorded.events} - dispatch.HANDLERS.keys()
    # Stripe's bookkeeping events whose state also arrives through a handled event.
    assert unhandled <= {
        "payment_intent.created",
        "invoice.updated",
        "invoice_payment.paid",
        "invoiceitem.created",
        "charge.updated",
        "refund.created",
        "refund.updated",
        "setup_intent.created",
    }, unhandled


async def test_the_refund_reaches_the_transaction(db, billing, api):
    recorded = await lifecycles.record(db, api, billing, lifecycles.happy_life)
    await apply_all(db, api, recorded.events)

    async with db.session() as session:
        refunded = await session.scalar(
            select(PaymentTransaction).where(PaymentTransaction.amount_refunded > 0)
        )
        subscription = await session.scalar(select(Subscription))
    assert refunded is not None and refunded.amount_refunded == 300
    assert subscription is not None and subscription.status is SubscriptionStatus.CANCELED


async def test_an_older_event_never_overwrites_newer_state(db, billing, api):
    recorded = await lifecycles.record(db, api, billing, lifecycles.happy_life)
    await apply_all(db, api, recorded.events)
    before = await mirror_state(db, recorded.customer.account_id)

    # Redeliver the whole history, oldest first: every snapshot is older than the mirror.
    await apply_all(db, api, recorded.events)

    assert await mirror_state(db, recorded.customer.account_id) == before


async def test_same_second_events_are_settled_by_reading_stripe(db, billing, api):
    recorded = await lifecycles.record(db, api, billing, lifecycles.three_d_secure_life)
    invoice_events = [e for e in recorded.events if e["type"].startswith("invoice.")]
    last, first = invoice_events[-1], invoice_events[0]
    # The newest invoice event first, then an older one of the same second: the older
    # snapshot cannot be trusted, so the handler reads the invoice from Stripe instead.
    await apply(db, api, last)
    stale = first | {"created": last["created"]}
    await apply(db, api, stale)

    async with db.session() as session:
        row = await session.scalar(select(Invoice))
    remote = await billing.stripe.v1.invoices.retrieve_async(last["data"]["object"]["id"])
    assert row is not None and row.status.value == remote.status == "paid"
    assert row.last_event_id is None  # stamped as a read, not as either event


async def test_events_of_an_unknown_customer_change_nothing(db, billing, api):
    recorded = await lifecycles.record(db, api, billing, lifecycles.happy_life)
    async with db.session() as session, session.begin():
        account = await session.get(Account, recorded.customer.account_id)
        assert account is not None
        account.stripe_customer_id = None  # another integration's customer now

    await apply_all(db, api, recorded.events)

    async with db.session() as session:
        assert (await session.scalar(select(Subscription))) is None
        assert (await session.scalar(select(Invoice))) is None


async def test_customer_deleted_marks_the_account_and_keeps_the_link(db, billing, api):
    recorded = await lifecycles.record(db, api, billing, lifecycles.three_d_secure_life)
    await billing.stripe.v1.customers.delete_async(recorded.customer.stripe_id)
    events = await lifecycles.events_of(billing, recorded.customer.stripe_id)

    await apply_all(db, api, events)

    async with db.session() as session:
        account = await session.get(Account, recorded.customer.account_id)
        subscription = await session.scalar(select(Subscription))
    assert account is not None and account.stripe_deleted_at is not None
    assert account.stripe_customer_id == recorded.customer.stripe_id
    assert account.default_payment_method_stripe_id is None
    # The cancellation Stripe makes with the deletion still found the account.
    remote = await billing.stripe.v1.subscriptions.retrieve_async(
        subscription.stripe_subscription_id if subscription else ""
    )
    assert subscription is not None and subscription.status.value == remote.status


async def test_a_subscription_to_a_price_not_yet_mirrored_brings_its_plan(db, billing, api):
    product = await billing.stripe.v1.products.create_async({"name": "Team"})
    team = await billing.stripe.v1.prices.create_async(
        {
            "product": product.id,
            "currency": "usd",
            "unit_amount": 9900,
            "recurring": {"interval": "month"},
            "lookup_key": "team_monthly",
        }
    )
    customer = await lifecycles.new_customer(db, billing, "team-buyer")
    method = await lifecycles.attach(api, customer, "pm_card_visa")
    created = await api.create_subscription(
        customer_id=customer.stripe_id,
        price_id=team.id,
        quantity=1,
        payment_method_id=method,
        trial_days=None,
        idempotency_key=lifecycles.key(),
    )
    subscription_events = [
        e
        for e in await lifecycles.events_of(billing, customer.stripe_id)
        if e["type"] == "customer.subscription.created"
    ]

    await apply_all(db, api, subscription_events)

    async with db.session() as session:
        row = await session.scalar(select(Subscription))
        plan = await session.get(Plan, row.plan_id) if row else None
    assert row is not None and row.stripe_subscription_id == created.id
    assert plan is not None and plan.stripe_price_id == team.id and plan.product_name == "Team"


async def only(billing, customer_id: str, event_type: str) -> list[dict]:
    events = await lifecycles.events_of(billing, customer_id)
    found = [event for event in events if event["type"] == event_type]
    assert found, f"Stripe sent {event_type}"
    return found


async def test_checkout_completed_mirrors_what_the_session_bought(db, billing, api):
    customer = await lifecycles.new_customer(db, billing, "checkout-buyer")
    checkout = await api.create_checkout_session(
        customer_id=customer.stripe_id,
        price_id=lifecycles.price(billing, "pro_monthly"),
        success_url="https://shop.example.com/ok",
        cancel_url="https://shop.example.com/no",
        trial_days=None,
        idempotency_key=lifecycles.key(),
    )
    await lifecycles.browser(billing, f"/_sandbox/checkout/sessions/{checkout.id}/complete")

    await apply_all(db, api, await only(billing, customer.stripe_id, "checkout.session.completed"))

    mirrored = await mirror_state(db, customer.account_id)
    remote = await stripe_state(billing, customer.stripe_id)
    assert mirrored["subscriptions"] == remote["subscriptions"] != {}
    assert mirrored["invoices"] == remote["invoices"]
    assert mirrored["payments"] == remote["payments"]


async def test_setup_intent_succeeded_mirrors_the_saved_card(db, billing, api):
    customer = await lifecycles.new_customer(db, billing, "card-saver")
    intent = await api.create_setup_intent(
        customer_id=customer.stripe_id, idempotency_key=lifecycles.key()
    )
    await billing.stripe.v1.setup_intents.confirm_async(
        intent.id, {"payment_method": "pm_card_visa"}
    )

    await apply_all(db, api, await only(billing, customer.stripe_id, "setup_intent.succeeded"))

    mirrored = await mirror_state(db, customer.account_id)
    assert (
        mirrored["payment_methods"]
        == (await stripe_state(billing, customer.stripe_id))["payment_methods"]
    )
    assert len(mirrored["payment_methods"]) == 1
