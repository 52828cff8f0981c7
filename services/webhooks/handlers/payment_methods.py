"""payment_method.*: a saved card's details, and whether it is still attached."""

from sqlalchemy.ext.asyncio import AsyncSession

from db.models import PaymentMethod
from services import mirror
from services.stripe.client import StripeApi
from services.webhooks import dispatch, sync
from services.webhooks.handlers.base import StripeDict, ambiguous, event_time, lock, obj


@dispatch.handles(
    "payment_method.attached", "payment_method.detached", "payment_method.updated", coalesce=True
)
async def payment_method_changed(
    session: AsyncSession, stripe: StripeApi, event: StripeDict
) -> None:
    """Mirror the method for the account it is (or, when detached, was) attached to."""
    method = obj(event)
    await lock(session, method["id"])
    row = await mirror.mirrored(session, PaymentMethod, "stripe_payment_method_id", method["id"])
    account_id = await _account_id(session, event, row)
    if account_id is None:
        return
    if ambiguous(row, event):
        await sync.mirror_payment_method(
            session, stripe, method["id"], account_id, sync.fresh_time(event)
        )
        return
    await mirror.upsert_payment_method(
        session, method, account_id, observed_at=event_time(event), event_id=event["id"]
    )


async def _account_id(
    session: AsyncSession, event: StripeDict, row: mirror.Mirrored | None
) -> int | None:
    """Our account of the method's customer (a detached method names it only in
    previous_attributes); None when that customer is not ours."""
    method = obj(event)
    previous = event["data"].get("previous_attributes") or {}
    customer_id = mirror.stripe_id(method.get("customer")) or mirror.stripe_id(
        previous.get("customer")
    )
    if customer_id is None:
        return row.account_id if row is not None else None
    return await mirror.account_id_for_customer(session, customer_id)
