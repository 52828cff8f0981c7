"""Billing accounts: one per user of the product, created the first time the user is seen."""

from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db import sealed
from db.models import Account
from services.pagination import Page, paginate


async def ensure_account(
    *, session: AsyncSession, user_id: str, email: str | None = None, name: str | None = None
) -> Account:
    """The caller's account, inserted on first sight; concurrent first requests make one row."""
    async with session.begin():
        inserted = await session.scalar(
            insert(Account)
            .values(
                user_id=user_id,
                email=email,
                email_index=sealed.keyring().email_index(email),
                name=name,
            )
            .on_conflict_do_nothing(index_elements=[Account.user_id])
            .returning(Account)
        )
        if inserted is not None:
            return inserted
        return (await session.scalars(select(Account).where(Account.user_id == user_id))).one()


async def find_account(*, session: AsyncSession, user_id: str) -> Account | None:
    return await session.scalar(select(Account).where(Account.user_id == user_id))


async def get_account(*, session: AsyncSession, account_id: int) -> Account | None:
    return await session.get(Account, account_id)


async def load_account(session: AsyncSession, account_id: int) -> Account:
    """The account as the database has it now, in a transaction of its own."""
    async with session.begin():
        account = await session.get(Account, account_id, populate_existing=True)
    assert account is not None, "the caller's account exists"
    return account


async def search_accounts(
    *, session: AsyncSession, search: str | None, first: int | None, after: str | None
) -> Page[Account]:
    """Accounts newest first whose email (exactly, in any case), user id or Stripe customer
    id is `search`. Emails are sealed: they are matched by their blind index."""
    query = select(Account)
    term = (search or "").strip()
    if term:
        query = query.where(
            or_(
                Account.email_index.in_(sealed.keyring().email_indexes(term)),
                Account.user_id == term,
                Account.stripe_customer_id == term,
            )
        )
    return await paginate(
        session=session,
        query=query,
        sort_column=Account.created_at,
        id_column=Account.id,
        first=first,
        after=after,
    )
