"""Payment transactions (PaymentIntents) of an account, from the mirror."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import PaymentTransaction
from services import mirror
from services.pagination import Page, paginate
from services.stripe.client import StripeApi


async def list_for_account(
    *, session: AsyncSession, account_id: int, first: int | None, after: str | None
) -> Page[PaymentTransaction]:
    query = select(PaymentTransaction).where(PaymentTransaction.account_id == account_id)
    return await paginate(
        session=session,
        query=query,
        sort_column=PaymentTransaction.stripe_created_at,
        id_column=PaymentTransaction.id,
        first=first,
        after=after,
    )


async def get_owned(
    *, session: AsyncSession, account_id: int, transaction_id: int
) -> PaymentTransaction | None:
    row = await session.get(PaymentTransaction, transaction_id)
    return row if row is not None and row.account_id == account_id else None


async def write_through_invoice_payments(
    *, session: AsyncSession, stripe: StripeApi, invoice: dict[str, Any], account_id: int
) -> None:
    """Mirror the PaymentIntents that pay an invoice (its `payments` must be expanded)."""
    for intent_id in mirror.invoice_payment_intents(invoice):
        intent = await stripe.retrieve_payment(intent_id)
        await write_through(
            session=session,
            intent=intent.to_dict(),
            account_id=account_id,
            invoice_id=invoice["id"],
        )


async def write_through(
    *, session: AsyncSession, intent: dict[str, Any], account_id: int, invoice_id: str | None = None
) -> int | None:
    async with session.begin():
        return await mirror.upsert_transaction(
            session, intent, account_id, observed_at=datetime.now(UTC), invoice_id=invoice_id
        )
