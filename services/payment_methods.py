"""Saved payment methods of an account, mirrored from Stripe."""

from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Account, PaymentMethod


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
