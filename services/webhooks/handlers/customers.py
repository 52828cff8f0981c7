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
    account = await mirror.mirrored(session, Account, "stripe_customer_id", customer["id"])
    if account is None:
        return
    if event["type"] == "customer.deleted":
        await _deleted(session, event)
        return
    if ambiguous(account, event):
        observed_at = sync.fresh_time(event)
        fresh = (await stripe.retrieve_customer(customer["id"])).to_dict()
        if fresh.get("deleted"):
            await _deleted(session, event)
        else:
            await mirror.upsert_customer(session, fresh, observed_at=observed_at)
        return
    await mirror.upsert_customer(
        session, customer, observed_at=event_time(event), event_id=event["id"]
    )


async def _deleted(session: AsyncSession, event: StripeDict) -> None:
    await mirror.mark_customer_deleted(
        session, obj(event)["id"], observed_at=event_time(event), event_id=event["id"]
    )


@dispatch.handles("customer.tax_id.created", "customer.tax_id.updated", "customer.tax_id.deleted")
async def tax_id_changed(session: AsyncSession, stripe: StripeApi, event: StripeDict) -> None:
    """A customer's tax id (its verification moves on its own); a deleted one stays deleted."""
    tax_id = obj(event)
    await lock(session, tax_id["id"])
    account_id = await mirror.account_id_for_customer(session, mirror.stripe_id(tax_id["customer"]))
    if account_id is None:
        return
    await mirror.upsert_tax_id(
        session,
        tax_id,
        account_id,
        observed_at=event_time(event),
        event_id=event["id"],
        deleted=event["type"] == "customer.tax_id.deleted",
    )
