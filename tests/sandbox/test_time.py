"""Flows over time, through the official SDK: test clocks and the sandbox-wide clock, trials,
renewals, dunning and cancellation at a period's end."""

from datetime import UTC, datetime

import httpx
import pytest
import stripe

from tests.sandbox.test_billing import DECLINING_CARD, browser, catalog, months_later
from tests.sandbox.test_fidelity import key_differences, stripe_objects

DAY = 86400
HOUR = 3600
# Month ends make the calendar matter: a Jan 31 anchor renews Feb 28, then Mar 31.
JAN_31 = int(datetime(2026, 1, 31, tzinfo=UTC).timestamp())


# Helpers --------------------------------------------------------------------------------------


async def clock_at(client: stripe.StripeClient, frozen_time: int = JAN_31):
    return await client.v1.test_helpers.test_clocks.create_async(
        {"frozen_time": frozen_time, "name": "test"}
    )


async def advance(client: stripe.StripeClient, clock, to: int):
    """Advance the clock and wait, as a Stripe integration would, until it is ready."""
    clocks = client.v1.test_helpers.test_clocks
    await clocks.advance_async(clock.id, {"frozen_time": to})
    ready = await clocks.retrieve_async(clock.id)
    assert ready.status == "ready" and ready.frozen_time == to
    return ready


async def customer_on(client: stripe.StripeClient, clock, card: str | None = "pm_card_visa"):
    """A customer on the clock, with `card` as the default payment method (None: no card)."""
    customer = await client.v1.customers.create_async(
        {"email": "clock@example.com", "test_clock": clock.id}
    )
    if card:
        method = await client.v1.payment_methods.attach_async(card, {"customer": customer.id})
        await client.v1.customers.update_async(
            customer.id, {"invoice_settings": {"default_payment_method": method.id}}
        )
    return customer


async def subscribe_on(client: stripe.StripeClient, customer, price, **params):
    return await client.v1.subscriptions.create_async(
        {"customer": customer.id, "items": [{"price": price.id}], **params}
    )


async def events_of(client: stripe.StripeClient, event_type: str) -> list:
    """Events of one type, oldest first."""
    events = await client.v1.events.list_async({"type": event_type, "limit": 100})
    return list(reversed(events.data))


async def invoices_of(client: stripe.StripeClient, subscription_id: str) -> list:
    """The subscription's invoices, oldest first."""
    found = await client.v1.invoices.list_async({"subscription": subscription_id, "limit": 100})
    return list(reversed(found.data))


async def sandbox_post(sandbox, path: str, data: dict) -> httpx.Response:
    async with httpx.AsyncClient(base_url=sandbox.url) as client:
        return await client.post(path, data=data)


# Test clocks ---------------------------------------------------------------------------------


async def test_test_clock_lifecycle(stripe_client):
    clocks = stripe_client.v1.test_helpers.test_clocks
    clock = await clock_at(stripe_client)
    assert clock.status == "ready" and clock.frozen_time == JAN_31
    assert clock.deletes_after == clock.created + 30 * DAY
    assert [c.id for c in (await clocks.list_async()).data] == [clock.id]
    customer = await customer_on(stripe_client, clock)
    # Objects of a customer on a clock are dated by the clock.
    assert customer.test_clock == clock.id and customer.created == JAN_31

    started = await clocks.advance_async(clock.id, {"frozen_time": JAN_31 + DAY})
    # Stripe answers when the advance starts; the sandbox is ready by the time it answers.
    assert started.status == "advancing"
    assert started.status_details.advancing.target_frozen_time == JAN_31 + DAY
    assert (await clocks.retrieve_async(clock.id)).status == "ready"
    with pytest.raises(stripe.InvalidRequestError) as backwards:
        await clocks.advance_async(clock.id, {"frozen_time": JAN_31})
    assert backwards.value.param == "frozen_time"
    types = [e.type for e in await events_of(stripe_client, "test_helpers.test_clock.*")]
    assert types == [
        "test_helpers.test_clock.created",
        "test_helpers.test_clock.advancing",
        "test_helpers.test_clock.ready",
    ]
    ready = (await events_of(stripe_client, "test_helpers.test_clock.ready"))[0]
    assert ready.created == JAN_31 + DAY and ready.data.object.frozen_time == JAN_31 + DAY

    with pytest.raises(stripe.InvalidRequestError) as unknown:
        await stripe_client.v1.customers.create_async({"test_clock": "clock_nope"})
    assert unknown.value.http_status == 404 and unknown.value.param == "test_clock"


async def test_advance_is_limited_to_two_intervals(stripe_client):
    clocks = stripe_client.v1.test_helpers.test_clocks
    clock = await clock_at(stripe_client)
    _, weekly = await catalog(stripe_client, amount=500, interval_count=1)
    customer = await customer_on(stripe_client, clock)
    await subscribe_on(stripe_client, customer, weekly)
    # Without a weekly subscription two years would do; with one, two months is too far.
    with pytest.raises(stripe.InvalidRequestError) as too_far:
        await clocks.advance_async(clock.id, {"frozen_time": months_later(JAN_31, 2) + DAY})
    assert "two intervals" in too_far.value.user_message
    await advance(stripe_client, clock, months_later(JAN_31, 2))


async def test_deleting_a_clock_deletes_its_customers_and_subscriptions(stripe_client):
    v1 = stripe_client.v1
    clock = await clock_at(stripe_client)
    _, price = await catalog(stripe_client)
    customer = await customer_on(stripe_client, clock)
    subscription = await subscribe_on(stripe_client, customer, price)
    assert subscription.test_clock == clock.id and subscription.start_date == JAN_31
    deleted = await v1.test_helpers.test_clocks.delete_async(clock.id)
    assert deleted.deleted is True
    assert (await v1.customers.retrieve_async(customer.id)).deleted is True
    ended = await v1.subscriptions.retrieve_async(subscription.id)
    assert ended.status == "canceled" and ended.ended_at == JAN_31
    with pytest.raises(stripe.InvalidRequestError) as gone:
        await v1.test_helpers.test_clocks.retrieve_async(clock.id)
    assert gone.value.http_status == 404
    order = [
        e.type
        for e in await events_of(stripe_client, "*")
        if e.type.endswith(("deleted", "subscription.deleted"))
    ]
    assert order == [
        "customer.subscription.deleted",
        "customer.deleted",
        "test_helpers.test_clock.deleted",
    ]


async def test_sandbox_wide_clock_renews_customers_without_a_test_clock(stripe_client, sandbox):
    v1 = stripe_client.v1
    _, price = await catalog(stripe_client)
    customer = await v1.customers.create_async({"email": "wall@example.com"})
    method = await v1.payment_methods.attach_async("pm_card_visa", {"customer": customer.id})
    subscription = await v1.subscriptions.create_async(
        {
            "customer": customer.id,
            "items": [{"price": price.id}],
            "default_payment_method": method.id,
        }
    )
    end = subscription["items"].data[0].current_period_end
    response = await sandbox_post(sandbox, "/_sandbox/clock/advance", {"to": str(end + 2 * HOUR)})
    assert response.status_code == 200 and response.json()["now"] >= end + 2 * HOUR
    _, renewal = await invoices_of(stripe_client, subscription.id)
    assert renewal.billing_reason == "subscription_cycle" and renewal.status == "paid"
    assert renewal.created == end and renewal.status_transitions.paid_at == end + HOUR
    back = await sandbox_post(sandbox, "/_sandbox/clock/advance", {"to": str(end)})
    assert back.status_code == 400
    later = await sandbox_post(sandbox, "/_sandbox/clock/advance", {"seconds": str(DAY)})
    assert later.json()["now"] >= end + 2 * HOUR + DAY


# Renewals --------------------------------------------------------------------------------------


async def test_a_year_of_monthly_renewals(stripe_client):
    v1 = stripe_client.v1
    clock = await clock_at(stripe_client)
    _, price = await catalog(stripe_client)
    customer = await customer_on(stripe_client, clock)
    subscription = await subscribe_on(stripe_client, customer, price)
    for month in range(1, 13):
        await advance(stripe_client, clock, months_later(JAN_31, month) + 2 * HOUR)

    first, *cycles = await invoices_of(stripe_client, subscription.id)
    assert first.billing_reason == "subscription_create" and len(cycles) == 12
    for month, invoice in enumerate(cycles, start=1):
        start, end = months_later(JAN_31, month), months_later(JAN_31, month + 1)
        assert invoice.billing_reason == "subscription_cycle" and invoice.status == "paid"
        assert invoice.amount_paid == invoice.total == 2900 and invoice.attempt_count == 1
        # The invoice closes the period just ended; its line bills the one beginning.
        assert (invoice.period_start, invoice.period_end) == (
            months_later(JAN_31, month - 1),
            start,
        )
        (line,) = invoice.lines.data
        assert (line.period.start, line.period.end) == (start, end)
        assert invoice.created == start and invoice.status_transitions.paid_at == start + HOUR
        assert invoice.number == f"{customer.invoice_prefix}-{month + 1:04d}"
    assert datetime.fromtimestamp(cycles[0].lines.data[0].period.end, UTC).day == 31
    assert datetime.fromtimestamp(cycles[0].lines.data[0].period.start, UTC).day == 28

    intents = await v1.payment_intents.list_async({"customer": customer.id, "limit": 100})
    assert len(intents.data) == 13 and {i.status for i in intents.data} == {"succeeded"}
    cycle_intent = await v1.payment_intents.retrieve_async(intents.data[0].id)
    assert cycle_intent.description == "Subscription cycle" and cycle_intent.amount == 2900
    upcoming = await events_of(stripe_client, "invoice.upcoming")
    assert [e.created for e in upcoming] == [
        months_later(JAN_31, month) - 3 * DAY for month in range(1, 13)
    ]
    assert all(e.data.object.id.startswith("upcoming_in_") for e in upcoming)
    assert {e.data.object.amount_due for e in upcoming} == {2900}
    now = await v1.subscriptions.retrieve_async(subscription.id)
    assert now.status == "active" and now.latest_invoice == cycles[-1].id
    item = now["items"].data[0]
    assert (item.current_period_start, item.current_period_end) == (
        months_later(JAN_31, 12),
        months_later(JAN_31, 13),
    )


async def test_renewal_invoice_is_a_draft_for_an_hour(stripe_client, sandbox):
    v1 = stripe_client.v1
    clock = await clock_at(stripe_client)
    _, price = await catalog(stripe_client)
    customer = await customer_on(stripe_client, clock)
    subscription = await subscribe_on(stripe_client, customer, price)
    end = subscription["items"].data[0].current_period_end
    await advance(stripe_client, clock, end + 30 * 60)
    _, draft = await invoices_of(stripe_client, subscription.id)
    assert draft.status == "draft" and draft.automatically_finalizes_at == end + HOUR
    assert draft.next_payment_attempt == end + HOUR and draft.test_clock == clock.id
    # The sandbox's Billing settings say how long (Stripe: about an hour).
    settings = await sandbox_post(sandbox, "/_sandbox/billing_settings", {"finalize_after": "0"})
    assert settings.json()["finalize_after"] == 0
    await advance(stripe_client, clock, end + HOUR)
    paid = await v1.invoices.retrieve_async(draft.id)
    assert paid.status == "paid" and paid.next_payment_attempt is None


async def test_cancel_at_period_end_takes_effect_at_the_period_end(stripe_client):
    v1 = stripe_client.v1
    clock = await clock_at(stripe_client)
    _, price = await catalog(stripe_client)
    customer = await customer_on(stripe_client, clock)
    subscription = await subscribe_on(stripe_client, customer, price)
    end = subscription["items"].data[0].current_period_end
    await advance(stripe_client, clock, JAN_31 + 10 * DAY)
    scheduled = await v1.subscriptions.update_async(subscription.id, {"cancel_at_period_end": True})
    assert scheduled.canceled_at == JAN_31 + 10 * DAY and scheduled.cancel_at == end
    await advance(stripe_client, clock, end + DAY)
    ended = await v1.subscriptions.retrieve_async(subscription.id)
    assert ended.status == "canceled" and ended.ended_at == end
    assert ended.canceled_at == JAN_31 + 10 * DAY and ended.cancel_at_period_end
    (deleted,) = await events_of(stripe_client, "customer.subscription.deleted")
    assert deleted.created == end
    assert len(await invoices_of(stripe_client, subscription.id)) == 1
    assert await events_of(stripe_client, "invoice.upcoming") == []


# Trials -----------------------------------------------------------------------------------------


async def test_trial_that_converts(stripe_client):
    v1 = stripe_client.v1
    clock = await clock_at(stripe_client)
    _, price = await catalog(stripe_client)
    customer = await customer_on(stripe_client, clock)
    subscription = await subscribe_on(
        stripe_client, customer, price, trial_period_days=14, expand=["latest_invoice"]
    )
    trial_end = JAN_31 + 14 * DAY
    assert subscription.status == "trialing"
    assert (subscription.trial_start, subscription.trial_end) == (JAN_31, trial_end)
    item = subscription["items"].data[0]
    assert (item.current_period_start, item.current_period_end) == (JAN_31, trial_end)
    free = subscription.latest_invoice
    assert (
        free.status == "paid" and free.total == 0 and free.billing_reason == "subscription_create"
    )
    (line,) = free.lines.data
    assert line.amount == 0 and line.description == "Trial period for Pro"
    assert (line.period.start, line.period.end) == (JAN_31, trial_end)
    assert (await v1.payment_intents.list_async({"customer": customer.id})).data == []

    await advance(stripe_client, clock, trial_end - 3 * DAY + 60)
    (notice,) = await events_of(stripe_client, "customer.subscription.trial_will_end")
    assert notice.created == trial_end - 3 * DAY and notice.data.object.trial_end == trial_end
    await advance(stripe_client, clock, trial_end + 2 * HOUR)
    active = await v1.subscriptions.retrieve_async(subscription.id, {"expand": ["latest_invoice"]})
    assert active.status == "active" and active.billing_cycle_anchor == trial_end
    invoice = active.latest_invoice
    assert invoice.billing_reason == "subscription_cycle" and invoice.status == "paid"
    assert invoice.amount_paid == 2900 and invoice.lines.data[0].period.start == trial_end
    assert invoice.lines.data[0].period.end == months_later(trial_end, 1)
    assert len(await events_of(stripe_client, "customer.subscription.trial_will_end")) == 1
    updated = (await events_of(stripe_client, "customer.subscription.updated"))[0]
    assert updated.data.object.status == "active"
    assert updated.data.previous_attributes.status == "trialing"


@pytest.mark.parametrize("missing", ["cancel", "pause", "create_invoice"])
async def test_trial_that_ends_without_a_card(stripe_client, missing):
    v1 = stripe_client.v1
    clock = await clock_at(stripe_client)
    _, price = await catalog(stripe_client)
    customer = await customer_on(stripe_client, clock, card=None)
    subscription = await subscribe_on(
        stripe_client,
        customer,
        price,
        trial_period_days=7,
        trial_settings={"end_behavior": {"missing_payment_method": missing}},
    )
    assert subscription.status == "trialing"
    assert subscription.trial_settings.end_behavior.missing_payment_method == missing
    trial_end = subscription.trial_end
    await advance(stripe_client, clock, trial_end + 2 * HOUR)
    after = await v1.subscriptions.retrieve_async(subscription.id)
    invoices = await invoices_of(stripe_client, subscription.id)
    if missing == "cancel":
        assert after.status == "canceled" and after.ended_at == trial_end
        assert len(await events_of(stripe_client, "customer.subscription.deleted")) == 1
        assert len(invoices) == 1
    elif missing == "pause":
        assert after.status == "paused" and len(invoices) == 1
        assert len(await events_of(stripe_client, "customer.subscription.paused")) == 1
    else:
        # An invoice nobody can pay: the attempt fails and Billing will retry.
        assert after.status == "past_due"
        unpaid = invoices[-1]
        assert unpaid.status == "open" and unpaid.attempt_count == 1
        assert unpaid.next_payment_attempt == trial_end + HOUR + 3 * DAY
        (failed,) = await events_of(stripe_client, "invoice.payment_failed")
        assert failed.data.object.next_payment_attempt == trial_end + HOUR + 3 * DAY


async def test_trial_parameters(stripe_client):
    v1 = stripe_client.v1
    clock = await clock_at(stripe_client)
    product, price = await catalog(stripe_client)
    planned = await v1.prices.create_async(
        {
            "product": product.id,
            "currency": "usd",
            "unit_amount": 900,
            "recurring": {"interval": "month", "trial_period_days": 10},
        }
    )
    customer = await customer_on(stripe_client, clock)
    from_plan = await subscribe_on(stripe_client, customer, planned, trial_from_plan=True)
    assert from_plan.trial_end == JAN_31 + 10 * DAY
    # Without trial_from_plan, a price's trial days do not apply.
    plain = await subscribe_on(stripe_client, customer, planned)
    assert plain.status == "active" and plain.trial_end is None
    until = await subscribe_on(stripe_client, customer, price, trial_end=JAN_31 + 5 * DAY)
    assert until.status == "trialing" and until.trial_end == JAN_31 + 5 * DAY
    now = await subscribe_on(stripe_client, customer, price, trial_end="now")
    assert now.status == "active" and now.trial_end is None

    refusals = [
        ({"trial_end": JAN_31 - 1}, "trial_end"),
        ({"trial_end": JAN_31 + DAY, "trial_period_days": 3}, "trial_end"),
        ({"trial_from_plan": True, "trial_period_days": 3}, "trial_from_plan"),
        ({"trial_period_days": 731}, "trial_period_days"),
        (
            {"trial_settings": {"end_behavior": {"missing_payment_method": "shrug"}}},
            "trial_settings[end_behavior][missing_payment_method]",
        ),
    ]
    for params, param in refusals:
        with pytest.raises(stripe.InvalidRequestError) as refused:
            await subscribe_on(stripe_client, customer, price, **params)
        assert refused.value.param == param


async def test_ending_and_moving_a_trial(stripe_client):
    v1 = stripe_client.v1
    clock = await clock_at(stripe_client)
    _, price = await catalog(stripe_client)
    customer = await customer_on(stripe_client, clock)
    short = await subscribe_on(stripe_client, customer, price, trial_period_days=2)
    # A trial shorter than the notice period is announced at once.
    assert len(await events_of(stripe_client, "customer.subscription.trial_will_end")) == 1
    moved = await v1.subscriptions.update_async(short.id, {"trial_end": JAN_31 + 20 * DAY})
    assert moved.trial_end == moved.billing_cycle_anchor == JAN_31 + 20 * DAY
    assert moved["items"].data[0].current_period_end == JAN_31 + 20 * DAY
    await advance(stripe_client, clock, JAN_31 + 5 * DAY)
    ended = await v1.subscriptions.update_async(
        short.id, {"trial_end": "now", "expand": ["latest_invoice"]}
    )
    assert ended.status == "active" and ended.trial_end == JAN_31 + 5 * DAY
    assert ended.latest_invoice.billing_reason == "subscription_update"
    assert ended.latest_invoice.status == "paid" and ended.latest_invoice.amount_paid == 2900
    item = ended["items"].data[0]
    assert item.current_period_end == months_later(JAN_31 + 5 * DAY, 1)
    # Announced at creation, and for the trial ended now (the moved end was not yet near).
    assert len(await events_of(stripe_client, "customer.subscription.trial_will_end")) == 2
    with pytest.raises(stripe.InvalidRequestError):
        await v1.subscriptions.update_async(short.id, {"trial_end": JAN_31 + 40 * DAY})


async def test_checkout_with_a_trial(stripe_client, sandbox):
    v1 = stripe_client.v1
    _, price = await catalog(stripe_client)
    session = await v1.checkout.sessions.create_async(
        {
            "mode": "subscription",
            "line_items": [{"price": price.id, "quantity": 1}],
            "subscription_data": {"trial_period_days": 7},
            "success_url": "https://example.com/ok",
        }
    )
    response = await browser(sandbox, f"/_sandbox/checkout/sessions/{session.id}/complete")
    assert response.status_code == 200, response.text
    done = await v1.checkout.sessions.retrieve_async(session.id, {"expand": ["subscription"]})
    assert done.payment_status == "no_payment_required"
    trialing = done.subscription
    assert trialing.status == "trialing" and trialing.trial_end == trialing.start_date + 7 * DAY
    # The card entered on the page is kept for the end of the trial.
    assert trialing.default_payment_method is not None


# Dunning ----------------------------------------------------------------------------------------


async def declining_after_the_first_payment(client: stripe.StripeClient, clock, price):
    """A subscription paid at creation whose card then declines every renewal."""
    customer = await customer_on(client, clock)
    subscription = await subscribe_on(client, customer, price)
    declining = await client.v1.payment_methods.attach_async(
        DECLINING_CARD, {"customer": customer.id}
    )
    await client.v1.customers.update_async(
        customer.id, {"invoice_settings": {"default_payment_method": declining.id}}
    )
    return customer, subscription


async def test_dunning_to_cancellation(stripe_client):
    v1 = stripe_client.v1
    clock = await clock_at(stripe_client)
    _, price = await catalog(stripe_client)
    _, subscription = await declining_after_the_first_payment(stripe_client, clock, price)
    first_attempt = subscription["items"].data[0].current_period_end + HOUR
    await advance(stripe_client, clock, first_attempt)
    past_due = await v1.subscriptions.retrieve_async(subscription.id)
    assert past_due.status == "past_due"
    # Retries 3, 5 and 7 days after the attempt before: on day 3, 8 and 15.
    for day in (3, 8, 15):
        await advance(stripe_client, clock, first_attempt + day * DAY)
    ended = await v1.subscriptions.retrieve_async(subscription.id)
    assert ended.status == "canceled" and ended.ended_at == first_attempt + 15 * DAY
    assert ended.cancellation_details.reason == "payment_failed"
    _, renewal = await invoices_of(stripe_client, subscription.id)
    assert renewal.status == "open" and renewal.attempt_count == 4
    assert renewal.next_payment_attempt is None
    failures = await events_of(stripe_client, "invoice.payment_failed")
    assert [e.created for e in failures] == [first_attempt + day * DAY for day in (0, 3, 8, 15)]
    assert [e.data.object.next_payment_attempt for e in failures] == [
        first_attempt + 3 * DAY,
        first_attempt + 8 * DAY,
        first_attempt + 15 * DAY,
        None,
    ]
    types = [e.type for e in await events_of(stripe_client, "customer.subscription.*")]
    assert types[-2:] == ["customer.subscription.updated", "customer.subscription.deleted"]
    assert (await v1.customers.retrieve_async(ended.customer)).test_clock == clock.id


async def test_dunning_recovered_by_paying_with_a_good_card(stripe_client):
    v1 = stripe_client.v1
    clock = await clock_at(stripe_client)
    _, price = await catalog(stripe_client)
    customer, subscription = await declining_after_the_first_payment(stripe_client, clock, price)
    first_attempt = subscription["items"].data[0].current_period_end + HOUR
    await advance(stripe_client, clock, first_attempt + 4 * DAY)
    _, renewal = await invoices_of(stripe_client, subscription.id)
    assert renewal.attempt_count == 2 and renewal.next_payment_attempt == first_attempt + 8 * DAY
    good = await v1.payment_methods.attach_async("pm_card_visa", {"customer": customer.id})
    paid = await v1.invoices.pay_async(renewal.id, {"payment_method": good.id})
    assert paid.status == "paid" and paid.next_payment_attempt is None
    assert paid.status_transitions.paid_at == first_attempt + 4 * DAY
    assert (await v1.subscriptions.retrieve_async(subscription.id)).status == "active"
    await advance(stripe_client, clock, first_attempt + 20 * DAY)
    assert len(await events_of(stripe_client, "invoice.payment_failed")) == 2
    assert (await v1.subscriptions.retrieve_async(subscription.id)).status == "active"


async def test_dunning_to_unpaid_with_other_settings(stripe_client, sandbox):
    v1 = stripe_client.v1
    settings = await sandbox_post(
        sandbox,
        "/_sandbox/billing_settings",
        {"retry_days": "1,2", "after_retries": "unpaid", "upcoming_days": "7"},
    )
    assert settings.json()["retry_days"] == [1, 2]
    clock = await clock_at(stripe_client)
    _, price = await catalog(stripe_client)
    customer, subscription = await declining_after_the_first_payment(stripe_client, clock, price)
    end = subscription["items"].data[0].current_period_end
    await advance(stripe_client, clock, end + HOUR + 3 * DAY)
    unpaid = await v1.subscriptions.retrieve_async(subscription.id)
    assert unpaid.status == "unpaid"
    (upcoming,) = await events_of(stripe_client, "invoice.upcoming")
    assert upcoming.created == end - 7 * DAY
    # An unpaid subscription's next invoice is created but left a draft, never charged.
    next_end = months_later(JAN_31, 2)
    await advance(stripe_client, clock, next_end + 2 * HOUR)
    _, renewal, draft = await invoices_of(stripe_client, subscription.id)
    assert draft.status == "draft" and draft.auto_advance is False
    assert renewal.status == "open" and renewal.attempt_count == 3
    good = await v1.payment_methods.attach_async("pm_card_visa", {"customer": customer.id})
    await v1.invoices.pay_async(renewal.id, {"payment_method": good.id})
    assert (await v1.subscriptions.retrieve_async(subscription.id)).status == "active"
    bad = await sandbox_post(sandbox, "/_sandbox/billing_settings", {"after_retries": "never"})
    assert bad.status_code == 400


async def test_time_objects_have_exactly_their_fixtures_keys(stripe_client, sandbox):
    clock = await clock_at(stripe_client)
    _, price = await catalog(stripe_client)
    customer = await customer_on(stripe_client, clock)
    subscription = await subscribe_on(stripe_client, customer, price, trial_period_days=7)
    await advance(stripe_client, clock, subscription.trial_end + 2 * HOUR)
    v1 = stripe_client.v1
    responses = [
        (await v1.test_helpers.test_clocks.retrieve_async(clock.id)).to_dict(),
        (await v1.invoices.create_preview_async({"subscription": subscription.id})).to_dict(),
        (await v1.events.list_async({"limit": 100})).to_dict(),
        (await v1.test_helpers.test_clocks.delete_async(clock.id)).to_dict(),
    ]
    objects = stripe_objects(responses)
    assert {"test_helpers.test_clock", "invoice", "subscription", "event"} <= {
        obj["object"] for obj in objects
    }
    assert [obj["id"] for obj in objects if key_differences(obj) != (set(), set())] == []
