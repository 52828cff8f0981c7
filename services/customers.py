"""The Stripe customer behind an account: created on the first billing action, exactly once."""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Account
from services.stripe.client import StripeApi


async def ensure_stripe_customer(
    *, session: AsyncSession, stripe: StripeApi, account_id: int
) -> str:
    """The account's Stripe customer id, creating the customer when there is none yet.

    The row lock makes racing first actions wait for one another, and the idempotency key
    makes a retry after a crash (Stripe created, our commit lost) find the same customer.
    """
    async with session.begin():
        account = await session.scalar(
            select(Account).where(Account.id == account_id).with_for_update()
        )
        assert account is not None, "the caller's account exists"
        if account.stripe_customer_id is None or account.stripe_deleted_at is not None:
            # After a deletion in Stripe a new customer is needed: a new key says so.
            generation = (
                int(account.stripe_deleted_at.timestamp()) if account.stripe_deleted_at else 0
            )
            customer = await stripe.create_customer(
                user_id=account.user_id,
                email=account.email,
                name=account.name,
                idempotency_key=f"customer-create:{account.id}:{generation}",
            )
            account.stripe_customer_id = customer.id
            account.stripe_deleted_at = None
        return account.stripe_customer_id
