"""Invoices of an account, from the mirror."""

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Invoice, InvoiceStatus
from services.pagination import Page, paginate


async def list_for_account(
    *,
    session: AsyncSession,
    account_id: int,
    statuses: Sequence[InvoiceStatus] | None,
    first: int | None,
    after: str | None,
) -> Page[Invoice]:
    query = select(Invoice).where(Invoice.account_id == account_id)
    if statuses:
        query = query.where(Invoice.status.in_(statuses))
    return await paginate(
        session=session,
        query=query,
        sort_column=Invoice.stripe_created_at,
        id_column=Invoice.id,
        first=first,
        after=after,
    )


async def get_owned(*, session: AsyncSession, account_id: int, invoice_id: int) -> Invoice | None:
    row = await session.get(Invoice, invoice_id)
    return row if row is not None and row.account_id == account_id else None
