"""Credits from Stripe's events over real sandbox lifecycles: paid invoices and one-time
payments grant once, refunds and disputes reverse, whatever the order and however often the
events come (applied one transaction each, as the worker does)."""

import json
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from db.models import Account
from services.stripe.client import StripeApi
from services.webhooks import inbox
from tests.conftest import graphql
from tests.credits.support import wallet
from tests.webhooks import lifecycles
from tests.webhooks.lifecycles import apply_all, apply_concurrently, events_of


@pytest.fixture
async def api(settings, billing) -> AsyncIterator[StripeApi]:
    async with StripeApi(settings, billing.sandbox.url) as api:
        yield api


async def ledger(db, account_id: int) -> list[tuple[str, int, str]]:
    """(kind, amount, key) of every entry, in the order they were made."""
    state = await wallet(db, account_id)
    assert state.balance == state.ledger_sum
    return [(e.kind.value, e.amount, e.idempotency_key) for e in state.entries]


async def subscribe(api, billing, customer, plan: str = "starter_monthly", quantity: int = 1):
    method = await lifecycles.attach(api, customer, "pm_card_visa")
    created = await api.create_subscription(
        customer_id=customer.stripe_id,
        price_id=lifecycles.price(billing, plan),
        quantity=quantity,
        payment_method_id=method,
        trial_days=None,
        idempotency_key=lifecycles.key(),
    )
    return created.to_dict()


async def refund(api, intent_id: str, amount: int | None) -> str:
    made = await api.refund(
        payment_intent_id=intent_id, amount=amount, reason=None, idempotency_key=lifecycles.key()
    )
    return made.id


async def dispute(billing, api, intent_id: str, outcome: str | None) -> str:
    charge = (await api.retrieve_payment(intent_id)).to_dict()["latest_charge"]["id"]
    async with httpx.AsyncClient(base_url=billing.sandbox.url) as http:
        opened = (await http.post(f"/_sandbox/charges/{charge}/dispute")).json()
        if outcome is not None:
            closed = await http.post(
                f"/_sandbox/disputes/{opened['id']}/close", data={"outcome": outcome}
            )
            closed.raise_for_status()
    return opened["id"]


async def test_a_paid_invoice_grants_credits_times_quantity_once_for_both_events(db, billing, api):
    customer = await lifecycles.new_customer(db, billing, "team")
    created = await subscribe(api, billing, customer, quantity=3)
    events = await events_of(billing, customer.stripe_id)
    types = [event["type"] for event in events]
    assert "invoice.paid" in types and "invoice.payment_succeeded" in types

    await apply_all(db, api, events)
    await apply_all(db, api, events)  # every event delivered again

    invoice = created["latest_invoice"]["id"]
    assert await ledger(db, customer.account_id) == [("grant", 300, f"grant:{invoice}")]
    [entry] = (await wallet(db, customer.account_id)).entries
    assert entry.source_ref == invoice and entry.actor.startswith("stripe:evt_")
    assert entry.reason.startswith("Starter × 3")


async def test_partial_refunds_reverse_in_proportion_and_add_up_to_the_grant(db, billing, api):
    customer = await lifecycles.new_customer(db, billing, "refunded")
    created = await subscribe(api, billing, customer)  # 9.00 for 100 credits
    intent = lifecycles.first_intent(created)
    refunds = [await refund(api, intent, 300) for _ in range(3)]

    await apply_all(db, api, await events_of(billing, customer.stripe_id))

    entries = await ledger(db, customer.account_id)
    assert entries[0] == ("grant", 100, f"grant:{created['latest_invoice']['id']}")
    assert entries[1:] == [
        # floor(100 × refunded so far / 900) minus what was reversed before.
        ("reversal", -33, f"refund:{refunds[0]}"),
        ("reversal", -33, f"refund:{refunds[1]}"),
        ("reversal", -34, f"refund:{refunds[2]}"),
    ]
    assert (await wallet(db, customer.account_id)).balance == 0


@pytest.mark.parametrize("outcome", ["won", "lost", None])
async def test_a_dispute_reverses_what_refunds_left_and_a_won_one_gives_it_back(
    db, billing, api, outcome
):
    customer = await lifecycles.new_customer(db, billing, f"disputed-{outcome}")
    created = await subscribe(api, billing, customer)
    intent = lifecycles.first_intent(created)
    refunded = await refund(api, intent, 300)
    disputed = await dispute(billing, api, intent, outcome)

    await apply_all(db, api, await events_of(billing, customer.stripe_id))

    expected = [
        ("grant", 100, f"grant:{created['latest_invoice']['id']}"),
        ("reversal", -33, f"refund:{refunded}"),
        ("reversal", -67, f"dispute:{disputed}"),
    ]
    if outcome == "won":
        expected.append(("grant", 67, f"dispute-won:{disputed}"))
    assert await ledger(db, customer.account_id) == expected
    # A won dispute gives back what it took; the refund stays reversed.
    assert (await wallet(db, customer.account_id)).balance == (67 if outcome == "won" else 0)


async def eventful_life(db, billing, api) -> tuple[Any, list[dict[str, Any]]]:
    """A subscription paid, partly refunded, disputed and won; and its events in order."""
    customer = await lifecycles.new_customer(db, billing, f"chaos-{lifecycles.key()[-6:]}")
    created = await subscribe(api, billing, customer, plan="pro_monthly")
    intent = lifecycles.first_intent(created)
    await refund(api, intent, 1000)
    await dispute(billing, api, intent, "won")
    return customer, await events_of(billing, customer.stripe_id)


def deliveries(events: list[dict[str, Any]], how: str) -> list[dict[str, Any]]:
    if how == "reversed":
        return list(reversed(events))
    if how == "duplicated":
        return [event for event in events for _ in range(2)]
    shuffled = events + events[::3]
    random.Random(int(how.removeprefix("shuffled-"))).shuffle(shuffled)
    return shuffled


@pytest.mark.parametrize("how", ["reversed", "duplicated", "shuffled-1", "shuffled-2"])
async def test_grants_stay_exact_under_duplicated_and_reordered_delivery(db, billing, api, how):
    customer, events = await eventful_life(db, billing, api)

    await apply_all(db, api, deliveries(events, how))

    entries = sorted(await ledger(db, customer.account_id))
    # 29.00 for 1000 credits: a 10.00 refund reverses 344, the dispute the other 656.
    assert [(kind, amount, key.partition(":")[0]) for kind, amount, key in entries] == [
        ("grant", 656, "dispute-won"),
        ("grant", 1000, "grant"),
        ("reversal", -656, "dispute"),
        ("reversal", -344, "refund"),
    ]
    assert (await wallet(db, customer.account_id)).balance == 656


async def test_grants_stay_exact_when_workers_apply_events_concurrently(db, billing, api):
    customer, events = await eventful_life(db, billing, api)

    await apply_concurrently(db, api, deliveries(events, "shuffled-3"), workers=4)

    state = await wallet(db, customer.account_id)
    assert state.balance == state.ledger_sum == 656 and len(state.entries) == 4


async def test_each_renewal_grants_again(db, billing, api):
    recorded = await lifecycles.record(db, api, billing, lifecycles.renewal_life)

    await apply_all(db, api, recorded.events)

    entries = await ledger(db, recorded.customer.account_id)
    assert [(kind, amount) for kind, amount, _ in entries] == [("grant", 100), ("grant", 100)]
    assert len({key for _, _, key in entries}) == 2


async def test_an_invoice_of_a_price_not_mirrored_yet_still_grants(db, billing, api):
    product = await billing.stripe.v1.products.create_async({"name": "Team"})
    team = await billing.stripe.v1.prices.create_async(
        {
            "product": product.id,
            "currency": "usd",
            "unit_amount": 9900,
            "recurring": {"interval": "month"},
            "metadata": {"credits": "5000"},
        }
    )
    customer = await lifecycles.new_customer(db, billing, "team-buyer")
    method = await lifecycles.attach(api, customer, "pm_card_visa")
    await api.create_subscription(
        customer_id=customer.stripe_id,
        price_id=team.id,
        quantity=2,
        payment_method_id=method,
        trial_days=None,
        idempotency_key=lifecycles.key(),
    )
    paid = [e for e in await events_of(billing, customer.stripe_id) if e["type"] == "invoice.paid"]

    await apply_all(db, api, paid)

    assert [(k, a) for k, a, _ in await ledger(db, customer.account_id)] == [("grant", 10000)]


async def test_a_failed_first_payment_grants_nothing(db, billing, api):
    customer = await lifecycles.new_customer(db, billing, "declined")
    bad = await lifecycles.attach(api, customer, "pm_card_chargeCustomerFail")
    await lifecycles.subscribe(api, billing, customer, bad, "pro_monthly")

    await apply_all(db, api, await events_of(billing, customer.stripe_id))

    assert await ledger(db, customer.account_id) == []


CREATE_PAYMENT = """
mutation($input: CreatePaymentInput!) {
  createPayment(input: $input) { transaction { stripePaymentIntentId } userErrors { code } }
}
"""


async def test_a_one_time_payment_grants_its_rate_and_a_full_refund_reverses_it(
    db, billing, api, client, token_for
):
    result = await graphql(
        client,
        CREATE_PAYMENT,
        {
            "input": {
                "amount": "1250",
                "currency": "USD",
                "paymentMethodId": "pm_card_visa",
                "idempotencyKey": "top-up-1",
            }
        },
        token=token_for("buyer"),
    )
    intent = result["data"]["createPayment"]["transaction"]["stripePaymentIntentId"]
    remote = await api.retrieve_payment(intent)
    customer_id = str(remote.customer)
    # The mutation's write-through grants at once; its webhooks then find the grant made.
    account_id = await account_of(db, customer_id)
    assert await ledger(db, account_id) == [("grant", 125, f"grant:{intent}")]

    await apply_all(db, api, await events_of(billing, customer_id))
    refunded = await refund(api, intent, None)
    await apply_all(db, api, await events_of(billing, customer_id))

    assert await ledger(db, account_id) == [
        ("grant", 125, f"grant:{intent}"),
        ("reversal", -125, f"refund:{refunded}"),
    ]


def of_type(events: list[dict[str, Any]], *types: str) -> list[dict[str, Any]]:
    return [event for event in events if event["type"] in types]


async def test_a_refund_seen_only_through_refund_updated_is_still_reversed(db, billing, api):
    customer = await lifecycles.new_customer(db, billing, "refund-updated")
    created = await subscribe(api, billing, customer)
    refunded = await refund(api, lifecycles.first_intent(created), 900)
    await billing.stripe.v1.refunds.update_async(refunded, {"metadata": {"note": "x"}})
    events = await events_of(billing, customer.stripe_id)

    await apply_all(db, api, [e for e in events if e["type"] != "charge.refunded"])

    assert [(k, a) for k, a, _ in await ledger(db, customer.account_id)] == [
        ("grant", 100),
        ("reversal", -100),
    ]


async def test_a_dispute_of_a_payment_not_mirrored_yet_is_settled_when_the_grant_comes(
    db, billing, api, client, token_for
):
    result = await graphql(
        client,
        CREATE_PAYMENT,
        {"input": {"amount": "500", "currency": "USD", "idempotencyKey": "top-up-2"}},
        token=token_for("disputer"),
    )
    assert result["data"]["createPayment"]["userErrors"] == []
    intent = result["data"]["createPayment"]["transaction"]["stripePaymentIntentId"]
    await billing.stripe.v1.payment_intents.confirm_async(
        intent, {"payment_method": "pm_card_visa"}
    )
    disputed = await dispute(billing, api, intent, None)
    customer_id = str((await api.retrieve_payment(intent)).customer)
    events = await events_of(billing, customer_id)
    await lifecycles.clear_mirror(db)  # as if no event of the payment had come yet

    # As the worker sees it: the dispute's event is in the inbox when it is applied.
    listed = await billing.stripe.v1.events.list_async({"type": "charge.dispute.created"})
    opened = [event.to_dict() for event in listed.data if event.data.object.id == disputed]
    assert len(opened) == 1
    for event in opened:
        await inbox.store_event(database=db, event=event, payload=json.dumps(event))
    await apply_all(db, api, opened)
    before_grant = await wallet(db, await account_of(db, customer_id))
    await apply_all(db, api, of_type(events, "payment_intent.succeeded"))

    assert before_grant.entries == []
    assert await ledger(db, await account_of(db, customer_id)) == [
        ("grant", 50, f"grant:{intent}"),
        ("reversal", -50, f"dispute:{disputed}"),
    ]


async def account_of(db, customer_id: str) -> int:
    async with db.session() as session:
        account_id = await session.scalar(
            select(Account.id).where(Account.stripe_customer_id == customer_id)
        )
    assert account_id is not None
    return account_id
