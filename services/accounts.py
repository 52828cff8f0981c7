"""Billing accounts: one per user of the product, created the first time the user is seen."""

from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db import sealed
from db.database import Database
from db.models import Account
from db.rows import rows_where
from services.pagination import Listing, Page, paginate


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


async def find_account(database: Database, user_id: str) -> Any | None:
    """The user's account as a plain row of its table (read like the model), if seen."""
    found = await rows_where(database, Account.__table__, "user_id = $1", user_id)
    return found[0] if found else None


async def get_account(*, session: AsyncSession, account_id: int) -> Account | None:
    return await session.get(Account, account_id)


async def load_account(session: AsyncSession, account_id: int) -> Account:
    """The account as the database has it now, in a transaction of its own."""
    async with session.begin():
        account = await session.get(Account, account_id, populate_existing=True)
    assert account is not None, "the caller's account exists"
    return account


async def search_accounts(
    *, database: Database, search: str | None, first: int | None, after: str | None
) -> Page[Account]:
    """Accounts newest first whose email (exactly, in any case), user id or Stripe customer
    id is `search`. Emails are sealed: they are matched by their blind index."""
    listing = Listing(Account.__table__, "created_at")
    term = (search or "").strip()
    if term:
        listing = Listing(
            Account.__table__,
            "created_at",
            "email_index = ANY($1) OR user_id = $2 OR stripe_customer_id = $2",
            (list(sealed.keyring().email_indexes(term)), term),
        )
    return await paginate(database, listing, first=first, after=after)
