"""The credits wallet: an append-only ledger whose balance moves only with its entry.

Every change goes through `post`, inside the caller's transaction: lock the wallet row,
move the balance unless the entry's idempotency key is already in the ledger (a spend
with the guard `balance >= :n`), append the entry with the balance after it, and announce
it. The wallet lock makes writers of one wallet take turns, so a key is looked for only
after the writer before it committed: no key is ever applied twice, and balance =
sum(entries)."""

from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.database import Database
from db.models import Account, CreditAccount, CreditEntry, CreditEntryKind
from services import announcements, audit, idempotency, live
from services.audit import Actor
from services.errors import DomainError, ErrorCode, InvalidInput, NotFound
from services.live import UpdateKind
from services.pagination import Listing, Page, paginate

MAX_REASON_LENGTH = 500
# PaymentIntent metadata of a one-time payment: how many credits it buys. createPayment sets
# it from CREDITS_PER_CURRENCY_UNIT; the payment's webhook grants it.
CREDITS_METADATA = "credits"


@dataclass(frozen=True)
class Posting:
    """One ledger entry to append: signed amount, why, and the key that makes it happen once."""

    kind: CreditEntryKind
    amount: int
    reason: str
    idempotency_key: str
    actor: str
    source_ref: str | None = None


@dataclass(frozen=True)
class Posted:
    entry: CreditEntry
    # False when the key was already in the ledger: `entry` is the first one, nothing moved.
    created: bool


@dataclass(frozen=True)
class SpendOutcome:
    entry: CreditEntry
    balance: int


@dataclass(frozen=True)
class Mismatch:
    account_id: int
    user_id: str
    balance: int
    ledger_sum: int


async def lock_wallet(session: AsyncSession, account_id: int) -> int:
    """The account's wallet id, created on first use and locked until the transaction ends."""
    locked = (
        select(CreditAccount.id).where(CreditAccount.account_id == account_id).with_for_update()
    )
    wallet_id = await session.scalar(locked)
    if wallet_id is None:
        await session.execute(
            insert(CreditAccount)
            .values(account_id=account_id)
            .on_conflict_do_nothing(index_elements=[CreditAccount.account_id])
        )
        wallet_id = await session.scalar(locked)
    assert wallet_id is not None, "the wallet was just ensured"
    return wallet_id


async def find_entry(session: AsyncSession, wallet_id: int, key: str) -> CreditEntry | None:
    return await session.scalar(
        select(CreditEntry).where(
            CreditEntry.credit_account_id == wallet_id, CreditEntry.idempotency_key == key
        )
    )


async def has_entry(session: AsyncSession, *, account_id: int, key: str) -> bool:
    """Whether the account's wallet has the entry keyed `key`, without locking it."""
    entry = (
        select(CreditEntry.id)
        .join(CreditAccount, CreditAccount.id == CreditEntry.credit_account_id)
        .where(CreditAccount.account_id == account_id, CreditEntry.idempotency_key == key)
    )
    return bool(await session.scalar(select(entry.exists())))


async def post(session: AsyncSession, *, account_id: int, posting: Posting) -> Posted:
    """Append `posting` once per key, moving the balance with it, in the caller's transaction.

    A spend (negative SPEND) is refused with INSUFFICIENT_CREDITS unless the balance covers
    it; other entries may take the balance below zero (a reversal records debt)."""
    wallet_id = await lock_wallet(session, account_id)
    # The wallet is locked: this statement's snapshot has every entry committed before us.
    already = (
        select(CreditEntry.id)
        .where(
            CreditEntry.credit_account_id == wallet_id,
            CreditEntry.idempotency_key == posting.idempotency_key,
        )
        .exists()
    )
    moved = (
        update(CreditAccount)
        .where(CreditAccount.id == wallet_id, ~already)
        .values(balance=CreditAccount.balance + posting.amount, updated_at=func.now())
        .returning(CreditAccount.balance)
    )
    if posting.kind is CreditEntryKind.SPEND:
        moved = moved.where(CreditAccount.balance >= -posting.amount)
    balance = await session.scalar(moved)
    if balance is None:
        existing = await find_entry(session, wallet_id, posting.idempotency_key)
        if existing is not None:
            return Posted(existing, created=False)
        assert posting.kind is CreditEntryKind.SPEND, "only spends are guarded"
        raise DomainError(
            ErrorCode.INSUFFICIENT_CREDITS, "The credit balance does not cover this", ["amount"]
        )
    entry = await session.scalar(
        insert(CreditEntry)
        .values(
            credit_account_id=wallet_id,
            kind=posting.kind,
            amount=posting.amount,
            balance_after=balance,
            reason=posting.reason,
            source_ref=posting.source_ref,
            idempotency_key=posting.idempotency_key,
            actor=posting.actor,
        )
        .returning(CreditEntry)
    )
    assert entry is not None, "an insert returns its row"
    await live.publish(session, UpdateKind.CREDITS_UPDATED, account_id=account_id, row_id=entry.id)
    await announcements.credits_posted(session, account_id=account_id, entry=entry)
    return Posted(entry, created=True)


# --- what callers ask for ------------------------------------------------------------------


async def spend(
    *,
    database: Database,
    account_id: int,
    actor: Actor,
    amount: int,
    reason: str,
    idempotency_key: str,
) -> SpendOutcome:
    """Take `amount` credits once per key; a replay answers the first spend (and its balance).

    A refused spend stores nothing, so the same key may succeed after a top-up."""
    _check_amount(amount)
    _check_reason(reason)
    key = idempotency.check_key(idempotency_key)
    posting = Posting(
        kind=CreditEntryKind.SPEND,
        amount=-amount,
        reason=reason,
        idempotency_key=f"spend:{key}",
        actor=actor.name,
        source_ref=key,
    )
    async with database.session() as session, session.begin():
        posted = await post(session, account_id=account_id, posting=posting)
    _refuse_other_request(posted, posting)
    return SpendOutcome(posted.entry, posted.entry.balance_after)


async def admin_grant(
    *,
    database: Database,
    account_id: int,
    actor: Actor,
    amount: int,
    reason: str,
    idempotency_key: str,
) -> CreditEntry:
    """An admin adds credits to an account (an ADJUSTMENT), audited; once per key."""
    _check_amount(amount)
    _check_reason(reason)
    key = idempotency.check_key(idempotency_key)
    posting = Posting(
        kind=CreditEntryKind.ADJUSTMENT,
        amount=amount,
        reason=reason,
        idempotency_key=f"admin:{key}",
        actor=actor.name,
        source_ref=key,
    )
    async with database.session() as session, session.begin():
        if await session.get(Account, account_id) is None:
            raise NotFound("No such customer", ["customerId"])
        posted = await post(session, account_id=account_id, posting=posting)
        if posted.created:
            audit.record(
                session,
                actor=actor.name,
                action="credits.grant",
                account_id=account_id,
                details={"credits": amount, "reason": reason, "entry": posted.entry.id},
                request_id=actor.request_id,
            )
    _refuse_other_request(posted, posting)
    return posted.entry


def _check_amount(amount: int) -> None:
    if amount <= 0:
        raise InvalidInput("The amount of credits must be positive", ["amount"])


def _check_reason(reason: str) -> None:
    if not reason.strip() or len(reason) > MAX_REASON_LENGTH:
        raise InvalidInput(f"A reason is 1 to {MAX_REASON_LENGTH} characters", ["reason"])


def _refuse_other_request(posted: Posted, posting: Posting) -> None:
    """A key already in the ledger answers only the request that put it there."""
    entry = posted.entry
    if (entry.kind, entry.amount, entry.reason) != (posting.kind, posting.amount, posting.reason):
        raise DomainError(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            "This idempotency key was used with different input",
            ["idempotencyKey"],
        )


# --- reads -----------------------------------------------------------------------------------


async def balance_of(*, session: AsyncSession, account_id: int) -> int:
    """The account's balance; 0 for an account that never had credits."""
    balance = await session.scalar(
        select(CreditAccount.balance).where(CreditAccount.account_id == account_id)
    )
    return balance or 0


async def list_entries(
    *, database: Database, account_id: int, first: int | None, after: str | None
) -> Page[CreditEntry]:
    """The account's ledger, newest first."""
    listing = Listing(
        CreditEntry.__table__,
        "created_at",
        "credit_account_id = (SELECT id FROM credit_accounts WHERE account_id = $1)",
        (account_id,),
    )
    return await paginate(database, listing, first=first, after=after)


async def get_entry(*, session: AsyncSession, entry_id: int) -> tuple[CreditEntry, int] | None:
    """An entry and the account that owns it."""
    row = (
        await session.execute(
            select(CreditEntry, CreditAccount.account_id)
            .join(CreditAccount, CreditAccount.id == CreditEntry.credit_account_id)
            .where(CreditEntry.id == entry_id)
        )
    ).first()
    return (row[0], row[1]) if row is not None else None


async def find_mismatches(*, session: AsyncSession) -> list[Mismatch]:
    """Every wallet whose balance differs from the sum of its entries."""
    ledger_sum = func.coalesce(func.sum(CreditEntry.amount), 0)
    rows = await session.execute(
        select(CreditAccount.account_id, Account.user_id, CreditAccount.balance, ledger_sum)
        .join(Account, Account.id == CreditAccount.account_id)
        .outerjoin(CreditEntry, CreditEntry.credit_account_id == CreditAccount.id)
        .group_by(CreditAccount.id, Account.user_id)
        .having(CreditAccount.balance != ledger_sum)
        .order_by(CreditAccount.account_id)
    )
    return [Mismatch(row[0], row[1], row[2], int(row[3])) for row in rows]
