"""The first two mutations, end to end: GraphQL -> service -> Stripe (sandbox) -> mirror."""

from sqlalchemy import select

from db.models import Account, Subscription, SubscriptionStatus
from schema.ids import to_global_id
from services import subscriptions
from services.stripe.client import StripeApi
from tests.conftest import Billing, error_codes, graphql

SETUP_INTENT = "mutation { createSetupIntent { clientSecret userErrors { code field message } } }"
CANCEL = """
mutation ($input: CancelSubscriptionInput!) {
  cancelSubscription(input: $input) {
    subscription { id status cancelAtPeriodEnd canceledAt plan { productName } }
    userErrors { code field }
  }
}
"""


async def subscribe(billing: Billing, db, settings, user_id: str) -> Subscription:
    """A live subscription made directly in Stripe and mirrored, as a webhook would."""
    async with db.session() as session:
        account = (await session.scalars(select(Account).where(Account.user_id == user_id))).one()
    customer = await billing.stripe.v1.customers.create_async(
        {
            "payment_method": "pm_card_visa",
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
        }
    )
    async with db.session() as session, session.begin():
        (await session.get(Account, account.id)).stripe_customer_id = customer.id
    method = customer.invoice_settings.default_payment_method
    created = await billing.stripe.v1.subscriptions.create_async(
        {
            "customer": customer.id,
            "items": [{"price": billing.plans["pro_monthly"].stripe_price_id}],
            "default_payment_method": method,
            "expand": ["latest_invoice.payments"],
        }
    )
    async with StripeApi(settings, settings.stripe_api_base) as api, db.session() as session:
        return await subscriptions.write_through(
            session=session, stripe=api, subscription=created, account_id=account.id
        )


async def test_create_setup_intent_creates_the_customer_once(client, db, billing, token_for):
    token = token_for("alice", email="alice@example.com")
    first = await graphql(client, SETUP_INTENT, token=token)
    second = await graphql(client, SETUP_INTENT, token=token)

    secrets = [r["data"]["createSetupIntent"]["clientSecret"] for r in (first, second)]
    assert all(secret and secret.startswith("seti_") for secret in secrets)
    async with db.session() as session:
        account = (await session.scalars(select(Account).where(Account.user_id == "alice"))).one()
    customers = (await billing.stripe.v1.customers.list_async()).data
    assert [c.id for c in customers] == [account.stripe_customer_id]
    assert customers[0].email == "alice@example.com"


async def test_cancel_at_period_end_then_now(client, db, billing, settings, token_for):
    token = token_for("alice")
    await graphql(client, "{ viewer { userId } }", token=token)
    row = await subscribe(billing, db, settings, "alice")
    subscription_id = to_global_id("Subscription", row.id)

    later = await graphql(
        client, CANCEL, {"input": {"subscriptionId": subscription_id}}, token=token
    )
    payload = later["data"]["cancelSubscription"]
    assert payload["userErrors"] == []
    assert (
        payload["subscription"]["status"] == "ACTIVE"
        and payload["subscription"]["cancelAtPeriodEnd"]
    )

    now = await graphql(
        client,
        CANCEL,
        {"input": {"subscriptionId": subscription_id, "atPeriodEnd": False}},
        token=token,
    )
    assert now["data"]["cancelSubscription"]["subscription"]["status"] == "CANCELED"
    async with db.session() as session:
        assert (await session.get(Subscription, row.id)).status is SubscriptionStatus.CANCELED


async def test_another_customers_subscription_is_not_found_and_unchanged(
    client, db, billing, settings, token_for
):
    await graphql(client, "{ viewer { userId } }", token=token_for("alice"))
    row = await subscribe(billing, db, settings, "alice")
    result = await graphql(
        client,
        CANCEL,
        {"input": {"subscriptionId": to_global_id("Subscription", row.id)}},
        token=token_for("mallory"),
    )
    assert result["data"]["cancelSubscription"] == {
        "subscription": None,
        "userErrors": [{"code": "NOT_FOUND", "field": ["subscriptionId"]}],
    }
    remote = await billing.stripe.v1.subscriptions.retrieve_async(row.stripe_subscription_id)
    assert remote.cancel_at_period_end is False and remote.status == "active"


async def test_mutations_need_a_token(client, billing):
    assert error_codes(await graphql(client, SETUP_INTENT)) == ["UNAUTHENTICATED"]
