"""customer.*: the account's email, name, default payment method, and deletion."""

from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Account
from services import mirror
from services.stripe.client import StripeApi
from services.webhooks import dispatch, sync
from services.webhooks.handlers.base import StripeDict, ambiguous, event_time, lock, obj


@dispatch.handles("customer.created", "customer.updated", "customer.deleted", coalesce=True)
async def customer_changed(session: AsyncSession, stripe: StripeApi, event: StripeDict) -> None:
    """Copy the customer onto its account; a customer we do not know is another system's."""
    customer = obj(event)
    await lock(session, customer["id"])
    account = await mirror.account_for_customer(session, customer["id"])
    if account is None:
        return
    if event["type"] == "customer.deleted":
        _deleted(account, event)
        return
    if ambiguous(account, event):
        observed_at = sync.fresh_time(event)
        fresh = (await stripe.retrieve_customer(customer["id"])).to_dict()
        if fresh.get("deleted"):
            _deleted(account, event)
        else:
            await mirror.upsert_customer(session, fresh, observed_at=observed_at)
        return
    await mirror.upsert_customer(
        session, customer, observed_at=event_time(event), event_id=event["id"]
    )


def _deleted(account: Account, event: StripeDict) -> None:
    """Mark the account's customer deleted, keeping its id.

    Stripe cancels the customer's subscriptions and voids its invoices around the deletion,
    and those events must still find the account; Stripe never reuses a customer id."""
    account.stripe_deleted_at = account.stripe_deleted_at or event_time(event)
    account.default_payment_method_stripe_id = None
    if account.last_event_at is None or account.last_event_at <= event_time(event):
        account.last_event_at, account.last_event_id = event_time(event), event["id"]
