"""Helpers for the credits tests: wallets read straight from the ledger's tables."""

from dataclasses import dataclass

from sqlalchemy import func, select

from db.database import Database
from db.models import Account, CreditAccount, CreditEntry, CreditEntryKind
from services import credits
from services.credits import Posting
from tests import factories


@dataclass
class Wallet:
    balance: int
    ledger_sum: int
    entries: list[CreditEntry]


async def new_account(db: Database, user_id: str | None = None) -> Account:
    overrides = {"user_id": user_id} if user_id else {}
    return await factories.add(db, factories.account(**overrides))


async def wallet(db: Database, account_id: int) -> Wallet:
    async with db.session() as session:
        balance = await credits.balance_of(session=session, account_id=account_id)
        entries = (
            await session.scalars(
                select(CreditEntry)
                .join(CreditAccount, CreditAccount.id == CreditEntry.credit_account_id)
                .where(CreditAccount.account_id == account_id)
                .order_by(CreditEntry.id)
            )
        ).all()
        total = await session.scalar(
            select(func.coalesce(func.sum(CreditEntry.amount), 0))
            .join(CreditAccount, CreditAccount.id == CreditEntry.credit_account_id)
            .where(CreditAccount.account_id == account_id)
        )
    return Wallet(balance, int(total or 0), list(entries))


async def grant(db: Database, account_id: int, amount: int, source: str) -> bool:
    """A grant keyed like the webhooks' (`grant:<source>`); True when it was new."""
    posting = Posting(
        kind=CreditEntryKind.GRANT,
        amount=amount,
        reason=f"test grant {source}",
        idempotency_key=f"grant:{source}",
        actor="test",
        source_ref=source,
    )
    async with db.session() as session, session.begin():
        posted = await credits.post(session, account_id=account_id, posting=posting)
    return posted.created
