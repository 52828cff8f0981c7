"""The ledger under load and replay, against the real database: spends race for real."""

import asyncio
import json

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from db.models import AuditLogEntry, CreditEntryKind
from services import credits, live, payments
from services.audit import Actor
from services.errors import DomainError, ErrorCode
from tests.credits.support import grant, new_account, wallet

USER = Actor("user:test", "req-1")
ADMIN = Actor("admin:root", "req-2")


async def spend(db, account_id: int, amount: int, key: str, reason: str = "an export"):
    return await credits.spend(
        database=db,
        account_id=account_id,
        actor=USER,
        amount=amount,
        reason=reason,
        idempotency_key=key,
    )


async def test_fifty_concurrent_spends_of_ten_on_a_hundred_exactly_ten_succeed(db):
    account = await new_account(db)
    await grant(db, account.id, 100, "in_start")

    results = await asyncio.gather(
        *(spend(db, account.id, 10, f"spend-{n}") for n in range(50)), return_exceptions=True
    )

    succeeded = [r for r in results if isinstance(r, credits.SpendOutcome)]
    refused = [r for r in results if isinstance(r, DomainError)]
    assert len(succeeded) == 10 and len(refused) == 40
    assert {error.code for error in refused} == {ErrorCode.INSUFFICIENT_CREDITS}
    assert sorted(outcome.balance for outcome in succeeded) == list(range(0, 100, 10))
    state = await wallet(db, account.id)
    assert state.balance == 0 == state.ledger_sum
    assert [e.kind for e in state.entries].count(CreditEntryKind.SPEND) == 10


async def test_one_spend_key_sent_concurrently_spends_once(db):
    account = await new_account(db)
    await grant(db, account.id, 100, "in_start")

    outcomes = await asyncio.gather(*(spend(db, account.id, 30, "same-key") for _ in range(20)))

    assert {outcome.entry.id for outcome in outcomes} == {outcomes[0].entry.id}
    assert {outcome.balance for outcome in outcomes} == {70}
    state = await wallet(db, account.id)
    assert state.balance == 70 == state.ledger_sum and len(state.entries) == 2


async def test_a_replayed_spend_answers_the_first_outcome_and_other_input_is_refused(db):
    account = await new_account(db)
    await grant(db, account.id, 50, "in_start")
    first = await spend(db, account.id, 20, "k1")
    await spend(db, account.id, 5, "k2")

    replay = await spend(db, account.id, 20, "k1")
    with pytest.raises(DomainError) as reused:
        await spend(db, account.id, 21, "k1")

    assert replay.entry.id == first.entry.id and replay.balance == first.balance == 30
    assert reused.value.code is ErrorCode.IDEMPOTENCY_KEY_REUSED
    assert (await wallet(db, account.id)).balance == 25


async def test_a_refused_spend_changes_nothing(db):
    account = await new_account(db)
    await grant(db, account.id, 5, "in_start")

    with pytest.raises(DomainError) as refused:
        await spend(db, account.id, 6, "too-much")
    for bad_amount in (0, -3):
        with pytest.raises(DomainError) as invalid:
            await spend(db, account.id, bad_amount, "bad")
        assert invalid.value.code is ErrorCode.INVALID_INPUT and invalid.value.field == ["amount"]

    assert refused.value.code is ErrorCode.INSUFFICIENT_CREDITS
    state = await wallet(db, account.id)
    assert state.balance == 5 and len(state.entries) == 1


async def test_debt_from_a_reversal_refuses_spends_until_the_balance_is_positive_again(db):
    account = await new_account(db)
    await grant(db, account.id, 10, "pi_1")
    await spend(db, account.id, 10, "all")
    async with db.session() as session, session.begin():
        await credits.post(
            session,
            account_id=account.id,
            posting=credits.Posting(
                kind=CreditEntryKind.REVERSAL,
                amount=-10,
                reason="refund",
                idempotency_key="refund:re_1",
                actor="test",
            ),
        )

    with pytest.raises(DomainError) as in_debt:
        await spend(db, account.id, 1, "while-in-debt")
    await grant(db, account.id, 11, "pi_2")
    after_top_up = await spend(db, account.id, 1, "after-top-up")

    assert in_debt.value.code is ErrorCode.INSUFFICIENT_CREDITS
    assert after_top_up.balance == 0
    state = await wallet(db, account.id)
    assert state.balance == 0 == state.ledger_sum
    assert min(entry.balance_after for entry in state.entries) == -10


async def test_an_admin_grant_is_audited_once_per_key(db):
    account = await new_account(db)

    first = await credits.admin_grant(
        database=db,
        account_id=account.id,
        actor=ADMIN,
        amount=40,
        reason="goodwill",
        idempotency_key="g1",
    )
    again = await credits.admin_grant(
        database=db,
        account_id=account.id,
        actor=ADMIN,
        amount=40,
        reason="goodwill",
        idempotency_key="g1",
    )
    with pytest.raises(DomainError) as missing:
        await credits.admin_grant(
            database=db,
            account_id=account.id + 999,
            actor=ADMIN,
            amount=1,
            reason="x",
            idempotency_key="g2",
        )

    assert again.id == first.id and first.kind is CreditEntryKind.ADJUSTMENT
    assert missing.value.code is ErrorCode.NOT_FOUND
    assert (await wallet(db, account.id)).balance == 40
    async with db.session() as session:
        audits = (await session.scalars(select(AuditLogEntry))).all()
    assert [(a.action, a.actor, a.account_id) for a in audits] == [
        ("credits.grant", "admin:root", account.id)
    ]


async def test_entries_cannot_be_changed_or_deleted(db):
    account = await new_account(db)
    await grant(db, account.id, 10, "in_1")

    for statement in ("UPDATE credit_entries SET amount = 99", "DELETE FROM credit_entries"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with db.session() as session, session.begin():
                await session.execute(text(statement))

    assert (await wallet(db, account.id)).ledger_sum == 10


async def test_each_entry_is_announced_when_it_commits_and_a_refused_spend_is_not(db):
    account = await new_account(db)
    heard: asyncio.Queue[dict] = asyncio.Queue()
    async with db.engine.connect() as listener:
        driver = (await listener.get_raw_connection()).driver_connection
        assert driver is not None

        def on_notify(*args: object) -> None:
            heard.put_nowait(json.loads(str(args[-1])))

        await driver.add_listener(live.CHANNEL, on_notify)
        try:
            await grant(db, account.id, 10, "in_1")
            with pytest.raises(DomainError):
                await spend(db, account.id, 11, "refused")
            spent = await spend(db, account.id, 4, "accepted")
            first = await asyncio.wait_for(heard.get(), timeout=10)
            second = await asyncio.wait_for(heard.get(), timeout=10)
        finally:
            await driver.remove_listener(live.CHANNEL, on_notify)

    entries = (await wallet(db, account.id)).entries
    assert [first, second] == [
        {"kind": "CREDITS_UPDATED", "account": account.id, "row": entries[0].id},
        {"kind": "CREDITS_UPDATED", "account": account.id, "row": spent.entry.id},
    ]


@pytest.mark.parametrize(
    ("amount", "currency", "rate", "expected"),
    [(1250, "usd", 10, 125), (1299, "eur", 10, 129), (1000, "jpy", 10, 10000), (500, "usd", 0, 0)],
)
def test_a_one_time_payment_buys_the_rate_per_currency_unit_rounded_down(
    amount, currency, rate, expected
):
    assert payments.credits_bought(amount, currency, rate) == expected
