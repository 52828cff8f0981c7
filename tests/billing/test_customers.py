"""The Stripe customer behind an account: made once, and made anew after Stripe deleted it."""

from sqlalchemy import select

from db.models import Account
from services.stripe.client import StripeApi
from services.webhooks.dispatch import apply_event
from tests.conftest import graphql

SETUP_INTENT = "mutation { createSetupIntent { clientSecret userErrors { code } } }"


async def stripe_customer_of(db, user_id: str) -> str | None:
    async with db.session() as session:
        account = (await session.scalars(select(Account).where(Account.user_id == user_id))).one()
    return account.stripe_customer_id


async def test_a_customer_deleted_in_stripe_is_replaced_on_the_next_billing_action(
    client, db, billing, settings, token_for
):
    token = token_for("alice")
    await graphql(client, SETUP_INTENT, token=token)
    first = await stripe_customer_of(db, "alice")
    await billing.stripe.v1.customers.delete_async(first)
    (deleted,) = (await billing.stripe.v1.events.list_async({"type": "customer.deleted"})).data
    async with (
        StripeApi(settings, settings.stripe_api_base) as api,
        db.session() as session,
        session.begin(),
    ):
        applied = await apply_event(
            session=session,
            stripe=api,
            event=deleted.to_dict(),
        )
    assert applied

    again = await graphql(client, SETUP_INTENT, token=token)

    assert again["data"]["createSetupIntent"]["userErrors"] == []
    second = await stripe_customer_of(db, "alice")
    assert second is not None and second != first
    assert "deleted" not in (await billing.stripe.v1.customers.retrieve_async(second)).to_dict()
