"""Saved payment methods of an account, mirrored from Stripe."""

import uuid
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Account, PaymentMethod
from services import customers
from services.stripe.client import StripeApi


class OwnedPaymentMethod(NamedTuple):
    row: PaymentMethod
    owner: Account


async def get_with_owner(
    *, session: AsyncSession, payment_method_id: int
) -> OwnedPaymentMethod | None:
    query = (
        select(PaymentMethod, Account)
        .join(Account, Account.id == PaymentMethod.account_id)
        .where(PaymentMethod.id == payment_method_id, PaymentMethod.detached_at.is_(None))
    )
    found = (await session.execute(query)).one_or_none()
    return OwnedPaymentMethod(*found) if found is not None else None


async def list_for_account(*, session: AsyncSession, account_id: int) -> list[PaymentMethod]:
    """The account's attached payment methods, newest first."""
    query = (
        select(PaymentMethod)
        .where(PaymentMethod.account_id == account_id, PaymentMethod.detached_at.is_(None))
        .order_by(PaymentMethod.stripe_created_at.desc(), PaymentMethod.id.desc())
    )
    return list((await session.scalars(query)).all())


async def create_setup_intent(*, session: AsyncSession, stripe: StripeApi, account_id: int) -> str:
    """A SetupIntent's client secret, for Stripe.js to collect and save a card."""
    customer_id = await customers.ensure_stripe_customer(
        session=session, stripe=stripe, account_id=account_id
    )
    intent = await stripe.create_setup_intent(
        customer_id=customer_id, idempotency_key=f"setup-intent:{account_id}:{uuid.uuid4().hex}"
    )
    assert intent.client_secret is not None
    return intent.client_secret
