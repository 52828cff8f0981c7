"""Coupons, promotion codes and the discounts they give subscriptions, their invoices and
Checkout, through the official SDK (plus the hosted page's `/_sandbox` action)."""

import time

import pytest
import stripe

from tests.sandbox.test_billing import (
    DECLINING_CARD,
    browser,
    catalog,
    customer_with_card,
    event_types,
    months_later,
    subscribe,
)
from tests.sandbox.test_time import (
    DAY,
    HOUR,
    JAN_31,
    advance,
    clock_at,
    customer_on,
    invoices_of,
)

# Helpers --------------------------------------------------------------------------------------


async def coupon(client: stripe.StripeClient, **params):
    return await client.v1.coupons.create_async({"duration": "once", **params})


async def promotion_code(client: stripe.StripeClient, coupon_id: str, **params):
    return await client.v1.promotion_codes.create_async(
        {"promotion": {"type": "coupon", "coupon": coupon_id}, **params}
    )


async def refused(awaitable) -> stripe.InvalidRequestError:
    with pytest.raises(stripe.InvalidRequestError) as error:
        await awaitable
    return error.value


async def discount_events(client: stripe.StripeClient) -> list[str]:
    return [kind for kind in await event_types(client) if kind.startswith("customer.discount.")]


def plain(values) -> list:
    """The SDK's objects as plain dicts, to compare with literals."""
    return [value.to_dict() for value in values]


async def times_redeemed(client: stripe.StripeClient, coupon_id: str, code_id: str | None = None):
    found = [(await client.v1.coupons.retrieve_async(coupon_id)).times_redeemed]
    if code_id is not None:
        found.append((await client.v1.promotion_codes.retrieve_async(code_id)).times_redeemed)
    return found


# Coupons and promotion codes ----------------------------------------------------------------


async def test_coupon_create_retrieve_update_delete_list(stripe_client):
    v1 = stripe_client.v1
    product, _ = await catalog(stripe_client)
    redeem_by = int(time.time()) + 30 * DAY
    created = await v1.coupons.create_async(
        {
            "id": "SPRING",
            "name": "Spring",
            "percent_off": 25.5,
            "duration": "repeating",
            "duration_in_months": 3,
            "max_redemptions": 10,
            "redeem_by": redeem_by,
            "applies_to": {"products": [product.id]},
            "metadata": {"campaign": "spring"},
        }
    )
    assert (created.id, created.percent_off, created.amount_off) == ("SPRING", 25.5, None)
    assert created.valid and created.times_redeemed == 0 and created.redeem_by == redeem_by
    assert created.duration == "repeating" and created.duration_in_months == 3
    fetched = await v1.coupons.retrieve_async("SPRING", {"expand": ["applies_to"]})
    assert fetched.applies_to.products == [product.id]
    generated = await coupon(stripe_client, amount_off=500, currency="USD")
    assert len(generated.id) == 8 and generated.currency == "usd"
    assert generated.duration == "once" and generated.duration_in_months is None

    renamed = await v1.coupons.update_async("SPRING", {"name": "Spring sale", "metadata": {}})
    assert renamed.name == "Spring sale" and renamed.metadata.to_dict() == {"campaign": "spring"}
    listed = await v1.coupons.list_async()
    assert [c.id for c in listed.data] == [generated.id, "SPRING"]
    deleted = await v1.coupons.delete_async(generated.id)
    assert deleted.deleted and deleted.id == generated.id
    gone = await refused(v1.coupons.retrieve_async(generated.id))
    assert gone.http_status == 404 and gone.user_message == f"No such coupon: '{generated.id}'"
    assert [kind for kind in await event_types(stripe_client) if kind.startswith("coupon.")] == [
        "coupon.created",
        "coupon.created",
        "coupon.updated",
        "coupon.deleted",
    ]


async def test_coupon_params_are_checked(stripe_client):
    v1 = stripe_client.v1
    await coupon(stripe_client, id="TAKEN", percent_off=10)
    taken = await refused(coupon(stripe_client, id="TAKEN", percent_off=10))
    assert taken.code == "resource_already_exists" and taken.param == "id"
    both = await refused(coupon(stripe_client, percent_off=10, amount_off=100, currency="usd"))
    assert both.param == "amount_off"
    assert (await refused(coupon(stripe_client))).param == "percent_off"
    no_currency = await refused(coupon(stripe_client, amount_off=100))
    assert no_currency.user_message == "Missing required param: currency."
    too_much = await refused(coupon(stripe_client, percent_off=120))
    assert too_much.param == "percent_off"
    months = await refused(coupon(stripe_client, percent_off=10, duration="repeating"))
    assert months.param == "duration_in_months"
    past = await refused(coupon(stripe_client, percent_off=10, redeem_by=int(time.time()) - 60))
    assert past.param == "redeem_by"
    options = await refused(
        coupon(
            stripe_client,
            amount_off=100,
            currency="usd",
            currency_options={"eur": {"amount_off": 90}},
        )
    )
    assert options.param == "currency_options" and "sandbox" in options.user_message
    assert [c.id for c in (await v1.coupons.list_async()).data] == ["TAKEN"]


async def test_promotion_codes(stripe_client):
    v1 = stripe_client.v1
    twenty = await coupon(stripe_client, percent_off=20, max_redemptions=5)
    alice = await v1.customers.create_async({"email": "alice@example.com"})
    bob = await v1.customers.create_async({"email": "bob@example.com"})
    generated = await promotion_code(stripe_client, twenty.id)
    assert generated.id.startswith("promo_") and len(generated.code) == 10
    assert generated.active and generated.promotion.coupon == twenty.id
    assert generated.promotion.type == "coupon" and generated.times_redeemed == 0
    assert generated.restrictions.first_time_transaction is False
    for_alice = await promotion_code(
        stripe_client,
        twenty.id,
        code="FRIEND",
        customer=alice.id,
        max_redemptions=2,
        restrictions={
            "first_time_transaction": True,
            "minimum_amount": 1000,
            "minimum_amount_currency": "USD",
        },
    )
    assert for_alice.restrictions.minimum_amount_currency == "usd"
    # Codes restricted to different customers may share a code; one open to all may not.
    for_bob = await promotion_code(stripe_client, twenty.id, code="friend", customer=bob.id)
    clash = await refused(promotion_code(stripe_client, twenty.id, code="Friend"))
    assert clash.code == "resource_already_exists" and clash.param == "code"
    over = await refused(promotion_code(stripe_client, twenty.id, max_redemptions=6))
    assert over.param == "max_redemptions"
    missing = await refused(v1.promotion_codes.create_async({"promotion": {"type": "coupon"}}))
    assert missing.user_message == "Missing required param: promotion[coupon]."

    by_code = await v1.promotion_codes.list_async({"code": "FRIEND"})
    assert [p.id for p in by_code.data] == [for_bob.id, for_alice.id]
    mine = await v1.promotion_codes.list_async({"customer": alice.id})
    assert [p.id for p in mine.data] == [for_alice.id]
    expanded = await v1.promotion_codes.list_async(
        {"coupon": twenty.id, "expand": ["data.promotion.coupon"]}
    )
    assert {p.promotion.coupon.id for p in expanded.data} == {twenty.id}

    paused = await v1.promotion_codes.update_async(
        for_bob.id, {"active": False, "metadata": {"why": "paused"}}
    )
    assert not paused.active and paused.metadata["why"] == "paused"
    assert [p.id for p in (await v1.promotion_codes.list_async({"active": False})).data] == [
        for_bob.id
    ]
    assert (await v1.promotion_codes.update_async(for_bob.id, {"active": True})).active
    updated = (await v1.events.list_async({"type": "promotion_code.updated"})).data
    assert updated[-1].data.previous_attributes["active"] is True
    gone = await refused(v1.promotion_codes.retrieve_async("promo_nope"))
    assert gone.user_message == "No such promotion code: 'promo_nope'"


# Each kind of coupon across renewals ------------------------------------------------------------


async def test_a_once_coupon_discounts_the_first_invoice_only(stripe_client):
    v1 = stripe_client.v1
    clock = await clock_at(stripe_client)
    _, price = await catalog(stripe_client)
    customer = await customer_on(stripe_client, clock)
    twenty = await coupon(stripe_client, percent_off=20, name="20% off")
    code = await promotion_code(stripe_client, twenty.id, code="WELCOME20")
    subscription = await subscribe(
        stripe_client,
        customer,
        price,
        discounts=[{"promotion_code": code.id}],
        expand=["discounts", "latest_invoice"],
    )
    (discount,) = subscription.discounts
    assert discount.source.coupon == twenty.id and discount.promotion_code == code.id
    assert discount.subscription == subscription.id and discount.customer == customer.id
    assert discount.start == JAN_31 and discount.end is None
    first = subscription.latest_invoice
    assert first.discounts == [discount.id] and first.subtotal == 2900
    assert plain(first.total_discount_amounts) == [{"amount": 580, "discount": discount.id}]
    assert first.total == first.amount_paid == 2320 and first.status == "paid"
    (line,) = first.lines.data
    assert plain(line.discount_amounts) == [{"amount": 580, "discount": discount.id}]
    # An invoice-wide discount shows on the line's amounts, not in its own `discounts`.
    assert line.discounts == [] and line.amount == 2900
    assert await times_redeemed(stripe_client, twenty.id, code.id) == [1, 1]

    await advance(stripe_client, clock, months_later(JAN_31, 1) + 2 * HOUR)
    _, renewal = await invoices_of(stripe_client, subscription.id)
    assert renewal.discounts == [] and plain(renewal.total_discount_amounts) == []
    assert renewal.amount_paid == 2900
    assert (await v1.subscriptions.retrieve_async(subscription.id)).discounts == []
    assert await discount_events(stripe_client) == [
        "customer.discount.created",
        "customer.discount.deleted",
    ]
    kept = await v1.invoices.retrieve_async(first.id, {"expand": ["discounts"]})
    assert kept.discounts[0].deleted and kept.discounts[0].id == discount.id
    assert await times_redeemed(stripe_client, twenty.id, code.id) == [1, 1]


async def test_a_repeating_coupon_ends_after_its_months(stripe_client):
    clock = await clock_at(stripe_client)
    _, price = await catalog(stripe_client)
    customer = await customer_on(stripe_client, clock)
    five = await coupon(
        stripe_client,
        amount_off=500,
        currency="usd",
        duration="repeating",
        duration_in_months=2,
    )
    subscription = await subscribe(
        stripe_client, customer, price, discounts=[{"coupon": five.id}], expand=["discounts"]
    )
    (discount,) = subscription.discounts
    assert discount.end == months_later(JAN_31, 2) and discount.promotion_code is None
    for month in (1, 2, 3):
        await advance(stripe_client, clock, months_later(JAN_31, month) + 2 * HOUR)
    invoices = await invoices_of(stripe_client, subscription.id)
    assert [invoice.amount_paid for invoice in invoices] == [2400, 2400, 2900, 2900]
    assert [invoice.discounts for invoice in invoices] == [[discount.id]] * 2 + [[]] * 2
    ended = (await stripe_client.v1.events.list_async({"type": "customer.discount.deleted"})).data
    assert ended[0].created == months_later(JAN_31, 2)
    assert ended[0].data.object.id == discount.id


async def test_a_forever_coupon_spread_over_lines_and_limited_to_products(stripe_client):
    v1 = stripe_client.v1
    clock = await clock_at(stripe_client)
    pro, pro_price = await catalog(stripe_client)
    _, seats = await catalog(stripe_client, amount=900)
    customer = await customer_on(stripe_client, clock)
    ten = await coupon(stripe_client, amount_off=1000, currency="usd", duration="forever")
    pro_only = await coupon(
        stripe_client, percent_off=10, duration="forever", applies_to={"products": [pro.id]}
    )
    subscription = await v1.subscriptions.create_async(
        {
            "customer": customer.id,
            "items": [{"price": pro_price.id}, {"price": seats.id}],
            "discounts": [{"coupon": ten.id}, {"coupon": pro_only.id}],
        }
    )
    amount_off, percent = subscription.discounts
    for month in (1, 2):
        await advance(stripe_client, clock, months_later(JAN_31, month) + 2 * HOUR)
    for invoice in await invoices_of(stripe_client, subscription.id):
        pro_line, seat_line = invoice.lines.data
        # $10 in proportion (763 + 237), then 10% of what the Pro line has left.
        assert plain(pro_line.discount_amounts) == [
            {"amount": 763, "discount": amount_off},
            {"amount": 214, "discount": percent},
        ]
        assert plain(seat_line.discount_amounts) == [{"amount": 237, "discount": amount_off}]
        assert plain(invoice.total_discount_amounts) == [
            {"amount": 1000, "discount": amount_off},
            {"amount": 214, "discount": percent},
        ]
        assert invoice.total == 3800 - 1214 == invoice.amount_paid
    assert (await v1.subscriptions.retrieve_async(subscription.id)).discounts == [
        amount_off,
        percent,
    ]


# Changing a subscription's discounts ----------------------------------------------------------


async def test_update_adds_keeps_and_clears_discounts(stripe_client):
    v1 = stripe_client.v1
    _, price = await catalog(stripe_client)
    customer, _ = await customer_with_card(stripe_client)
    subscription = await subscribe(stripe_client, customer, price)
    assert subscription.discounts == []
    ten = await coupon(stripe_client, percent_off=10, duration="forever")
    five = await coupon(stripe_client, amount_off=500, currency="usd", duration="forever")
    added = await v1.subscriptions.update_async(
        subscription.id, {"discounts": [{"coupon": ten.id}]}
    )
    (first,) = added.discounts
    both = await v1.subscriptions.update_async(
        subscription.id, {"discounts": [{"discount": first}, {"coupon": five.id}]}
    )
    assert both.discounts[0] == first and len(both.discounts) == 2
    preview = await v1.invoices.create_preview_async({"subscription": subscription.id})
    assert preview.total == 2900 - 290 - 500 and preview.discounts == both.discounts
    repeat = await refused(
        v1.subscriptions.update_async(subscription.id, {"discounts": [{"coupon": ten.id}] * 2})
    )
    assert repeat.param == "discounts[1]"
    stranger = await refused(
        v1.subscriptions.update_async(subscription.id, {"discounts": [{"discount": "di_nope"}]})
    )
    assert stranger.code == "resource_missing" and stranger.param == "discounts[0][discount]"
    cleared = await v1.subscriptions.update_async(subscription.id, {"discounts": ""})
    assert cleared.discounts == []
    assert await discount_events(stripe_client) == [
        "customer.discount.created",
        "customer.discount.created",
        "customer.discount.deleted",
        "customer.discount.deleted",
    ]
    updated = (await v1.events.list_async({"type": "customer.subscription.updated"})).data[0]
    assert updated.data.previous_attributes["discounts"] == both.discounts
    assert await times_redeemed(stripe_client, ten.id) == [1]
    items = await refused(
        v1.subscriptions.update_async(
            subscription.id,
            {"items": [{"id": cleared["items"].data[0].id, "discounts": [{"coupon": ten.id}]}]},
        )
    )
    assert items.param == "items[0][discounts]"


# Refusals ---------------------------------------------------------------------------------------


async def test_each_refusal_says_why_and_changes_nothing(stripe_client):
    v1 = stripe_client.v1
    _, price = await catalog(stripe_client)
    other, _ = await catalog(stripe_client)
    customer, _ = await customer_with_card(stripe_client)
    someone = await v1.customers.create_async({"email": "someone@example.com"})
    once = await coupon(stripe_client, percent_off=10, max_redemptions=1)
    await subscribe(stripe_client, customer, price, discounts=[{"coupon": once.id}])
    valid = await coupon(stripe_client, percent_off=10)
    euros = await coupon(stripe_client, amount_off=100, currency="eur")
    elsewhere = await coupon(stripe_client, percent_off=10, applies_to={"products": [other.id]})
    inactive = await promotion_code(stripe_client, valid.id, active=False)
    used_up = await promotion_code(stripe_client, valid.id, max_redemptions=1)
    theirs = await promotion_code(stripe_client, valid.id, customer=someone.id)
    first_time = await promotion_code(
        stripe_client, valid.id, restrictions={"first_time_transaction": True}
    )
    big = await promotion_code(
        stripe_client,
        valid.id,
        restrictions={"minimum_amount": 5000, "minimum_amount_currency": "usd"},
    )
    other_customer, _ = await customer_with_card(stripe_client)
    await subscribe(
        stripe_client, other_customer, price, discounts=[{"promotion_code": used_up.id}]
    )
    before = await times_redeemed(stripe_client, valid.id, used_up.id)
    subscriptions_before = len((await v1.subscriptions.list_async({"status": "all"})).data)

    cases = [
        ({"coupon": "nope"}, "No such coupon: 'nope'", "resource_missing"),
        ({"promotion_code": "promo_nope"}, "No such promotion code: 'promo_nope'", None),
        ({"coupon": once.id}, f"Coupon expired: {once.id}", "coupon_expired"),
        ({"coupon": euros.id}, "cannot be redeemed on a purchase in usd", None),
        ({"coupon": elsewhere.id}, "does not apply to anything in this order", None),
        ({"promotion_code": inactive.id}, "This promotion code is not active.", None),
        ({"promotion_code": used_up.id}, "used the maximum number of times", None),
        ({"promotion_code": theirs.id}, "restricted to another customer", None),
        ({"promotion_code": first_time.id}, "has prior transactions", None),
        ({"promotion_code": big.id}, "minimum amount of $50.00", None),
    ]
    for entry, message, code in cases:
        error = await refused(subscribe(stripe_client, customer, price, discounts=[entry]))
        assert message in error.user_message, entry
        assert error.param == f"discounts[0][{next(iter(entry))}]"
        assert code is None or error.code == code
    after = len((await v1.subscriptions.list_async({"status": "all"})).data)
    assert after == subscriptions_before
    assert await times_redeemed(stripe_client, valid.id, used_up.id) == before

    subscription = (await v1.subscriptions.list_async({"customer": customer.id})).data[0]
    on_update = await refused(
        v1.subscriptions.update_async(subscription.id, {"discounts": [{"promotion_code": big.id}]})
    )
    assert on_update.user_message.startswith(
        "This promotion code cannot be redeemed on a subscription update"
    )
    assert (
        await v1.subscriptions.retrieve_async(subscription.id)
    ).discounts == subscription.discounts


async def test_expiry_is_judged_on_the_subscriptions_clock(stripe_client):
    soon = int(time.time()) + DAY
    clock = await clock_at(stripe_client, int(time.time()) + 10 * DAY)
    _, price = await catalog(stripe_client)
    customer = await customer_on(stripe_client, clock)
    short = await coupon(stripe_client, percent_off=10, redeem_by=soon)
    expired = await refused(
        subscribe(stripe_client, customer, price, discounts=[{"coupon": short.id}])
    )
    assert expired.code == "coupon_expired"
    lasting = await coupon(stripe_client, percent_off=10)
    code = await promotion_code(stripe_client, lasting.id, expires_at=soon)
    lapsed = await refused(
        subscribe(stripe_client, customer, price, discounts=[{"promotion_code": code.id}])
    )
    assert lapsed.user_message == "This promotion code has expired."
    assert (await stripe_client.v1.subscriptions.list_async({"status": "all"})).data == []


async def test_a_failed_payment_redeems_nothing(stripe_client):
    v1 = stripe_client.v1
    _, price = await catalog(stripe_client)
    customer, _ = await customer_with_card(stripe_client, DECLINING_CARD)
    ten = await coupon(stripe_client, percent_off=10)
    code = await promotion_code(stripe_client, ten.id)
    with pytest.raises(stripe.CardError):
        await subscribe(
            stripe_client,
            customer,
            price,
            discounts=[{"promotion_code": code.id}],
            payment_behavior="error_if_incomplete",
        )
    assert await times_redeemed(stripe_client, ten.id, code.id) == [0, 0]
    assert await discount_events(stripe_client) == []
    assert (await v1.subscriptions.list_async({"status": "all"})).data == []


# Checkout ----------------------------------------------------------------------------------------


async def test_checkout_with_a_typed_promotion_code(stripe_client, sandbox):
    v1 = stripe_client.v1
    _, price = await catalog(stripe_client)
    twenty = await coupon(stripe_client, percent_off=20)
    code = await promotion_code(stripe_client, twenty.id, code="WELCOME20")
    session = await v1.checkout.sessions.create_async(
        {
            "mode": "subscription",
            "line_items": [{"price": price.id, "quantity": 1}],
            "allow_promotion_codes": True,
            "success_url": "https://example.com/ok",
        }
    )
    path = f"/_sandbox/checkout/sessions/{session.id}/complete"
    wrong = await browser(sandbox, path, {"promotion_code": "NOPE"})
    assert wrong.status_code == 400 and wrong.json()["error"]["message"] == "This code is invalid."
    done = await browser(sandbox, path, {"promotion_code": "welcome20"})
    assert done.status_code == 200, done.text
    completed = await v1.checkout.sessions.retrieve_async(session.id, {"expand": ["subscription"]})
    assert completed.discounts[0].promotion_code == code.id
    assert completed.discounts[0].coupon == twenty.id
    assert completed.total_details.amount_discount == 580 and completed.amount_total == 2320
    subscription = completed.subscription
    assert len(subscription.discounts) == 1
    invoice = await v1.invoices.retrieve_async(subscription.latest_invoice)
    assert invoice.amount_paid == 2320
    assert await times_redeemed(stripe_client, twenty.id, code.id) == [1, 1]

    closed = await v1.checkout.sessions.create_async(
        {
            "mode": "subscription",
            "line_items": [{"price": price.id, "quantity": 1}],
            "success_url": "https://example.com/ok",
        }
    )
    response = await browser(
        sandbox,
        f"/_sandbox/checkout/sessions/{closed.id}/complete",
        {"promotion_code": "WELCOME20"},
    )
    assert response.status_code == 400
    assert (await v1.checkout.sessions.retrieve_async(closed.id)).status == "open"


async def test_checkout_with_a_coupon_given_up_front(stripe_client, sandbox):
    v1 = stripe_client.v1
    _, price = await catalog(stripe_client)
    five = await coupon(stripe_client, amount_off=500, currency="usd", duration="forever")
    params = {
        "mode": "subscription",
        "line_items": [{"price": price.id, "quantity": 2}],
        "success_url": "https://example.com/ok",
        "discounts": [{"coupon": five.id}],
    }
    both = await refused(
        v1.checkout.sessions.create_async({**params, "allow_promotion_codes": True})
    )
    assert both.user_message == (
        "You may only specify one of these parameters: allow_promotion_codes, discounts."
    )
    session = await v1.checkout.sessions.create_async(params)
    assert session.discounts[0].coupon == five.id and session.discounts[0].promotion_code is None
    assert session.total_details.amount_discount == 500 and session.amount_total == 5300
    response = await browser(sandbox, f"/_sandbox/checkout/sessions/{session.id}/complete")
    assert response.status_code == 200, response.text
    done = await v1.checkout.sessions.retrieve_async(
        session.id, {"expand": ["subscription.latest_invoice"]}
    )
    assert done.subscription.latest_invoice.amount_paid == 5300
    assert len(done.subscription.discounts) == 1
