"""Credits from any sighting of a payment: what a mutation saw in Stripe's answer grants (or
reverses) at once, keyed as the webhooks' entries, so the webhooks that follow, or race it,
add nothing."""

import asyncio
from datetime import UTC, datetime

from sqlalchemy import select

from db.models import Account
from services import credit_sources
from services.webhooks import sync
from tests.billing import test_payment_mutations as payments
from tests.billing import test_subscription_mutations as subscriptions
from tests.credits.test_webhook_grants import api, ledger, subscribe  # noqa: F401 (fixture)
from tests.webhooks import lifecycles
from tests.webhooks.lifecycles import apply_all, apply_concurrently, events_of

PRO_CREDITS = 1000


async def test_a_subscription_paid_by_its_mutation_is_credited_before_any_webhook(
    db, billing, api, client, token_for
):
    created = await subscriptions.create(
        client, token_for("alice"), billing, paymentMethodId="pm_card_visa"
    )
    assert created["userErrors"] == [] and created["subscription"]["status"] == "ACTIVE"
    invoice = created["subscription"]["latestInvoice"]["stripeInvoiceId"]
    account_id, customer_id = await account_of(db, "alice")

    expected = [("grant", PRO_CREDITS, f"grant:{invoice}")]
    assert await ledger(db, account_id) == expected  # no webhook has been applied
    events = await events_of(billing, customer_id)
    await apply_all(db, api, events)
    await apply_all(db, api, events)
    assert await ledger(db, account_id) == expected


async def test_a_refund_by_mutation_is_reversed_before_any_webhook(
    db, billing, api, client, token_for
):
    token = token_for("alice")
    await payments.signed_in(client, token)
    paid = await payments.paid(client, token, amount=1250)
    refunded = await payments.refund(client, token_for("ops", admin=True), paid["id"])
    assert refunded["data"]["refundPayment"]["userErrors"] == []
    account_id, customer_id = await account_of(db, "alice")
    intent = paid["stripePaymentIntentId"]

    state = await ledger(db, account_id)
    assert [(kind, amount) for kind, amount, _ in state] == [("grant", 125), ("reversal", -125)]
    assert state[0][2] == f"grant:{intent}" and state[1][2].startswith("refund:re_")
    await apply_all(db, api, await events_of(billing, customer_id))
    assert await ledger(db, account_id) == state


async def test_sightings_racing_the_webhooks_grant_once(db, billing, api):
    customer = await lifecycles.new_customer(db, billing, "racer")
    created = await subscribe(api, billing, customer, plan="pro_monthly")
    invoice = created["latest_invoice"]["id"]
    async with db.session() as session, session.begin():  # the mirror sees it paid, ungranted
        await sync.mirror_invoice(
            session, api, invoice, customer.account_id, datetime.now(UTC)
        )
    paid_events = [
        event
        for event in await events_of(billing, customer.stripe_id)
        if event["type"] in ("invoice.paid", "invoice.payment_succeeded")
    ]

    async def sighting() -> None:
        async with db.session() as session:
            await credit_sources.credit_sighting(
                session, api, account_id=customer.account_id, invoice_id=invoice
            )

    await asyncio.gather(
        *(sighting() for _ in range(4)), apply_concurrently(db, api, paid_events)
    )

    assert await ledger(db, customer.account_id) == [("grant", PRO_CREDITS, f"grant:{invoice}")]


async def account_of(db, user_id: str) -> tuple[int, str]:
    """The account's row id and Stripe customer id."""
    async with db.session() as session:
        account = (await session.scalars(select(Account).where(Account.user_id == user_id))).one()
    assert account.stripe_customer_id is not None
    return account.id, account.stripe_customer_id
