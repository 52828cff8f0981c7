"""The database itself refuses rows that would corrupt the mirror or the ledger."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from db.database import Database
from db.models import CreditAccount, CreditEntry, CreditEntryKind, Subscription, SubscriptionStatus
from tests import factories

NOW = datetime.now(UTC)


def subscription(account_id: int, plan_id: int, **overrides) -> Subscription:
    values = {
        "stripe_subscription_id": "sub_test_1",
        "account_id": account_id,
        "plan_id": plan_id,
        "status": SubscriptionStatus.ACTIVE,
        "current_period_start": NOW,
        "current_period_end": NOW,
        "stripe_created_at": NOW,
    }
    return Subscription(**(values | overrides))


async def test_a_duplicate_stripe_id_is_refused(db: Database):
    await factories.add(db, factories.plan(stripe_price_id="price_dup"))
    with pytest.raises(IntegrityError, match="uq_plans_stripe_price_id"):
        await factories.add(db, factories.plan(stripe_price_id="price_dup"))


async def test_a_duplicate_user_is_refused(db: Database):
    await factories.add(db, factories.account(user_id="same"))
    with pytest.raises(IntegrityError, match="uq_accounts_user_id"):
        await factories.add(db, factories.account(user_id="same"))


async def test_an_orphan_subscription_is_refused(db: Database):
    plan = await factories.add(db, factories.plan())
    with pytest.raises(IntegrityError, match="fk_subscriptions_account_id_accounts"):
        await factories.add(db, subscription(account_id=999_999, plan_id=plan.id))


async def test_an_orphan_payment_method_is_refused(db: Database):
    with pytest.raises(IntegrityError, match="fk_payment_methods_account_id_accounts"):
        await factories.add(db, factories.payment_method(account_id=424_242))


async def test_a_status_outside_the_enum_is_refused(db: Database):
    account = await factories.add(db, factories.account())
    plan = await factories.add(db, factories.plan())
    await factories.add(db, subscription(account.id, plan.id))
    async with db.engine.connect() as conn:
        with pytest.raises(IntegrityError, match="ck_subscriptions_status"):
            await conn.execute(text("UPDATE subscriptions SET status = 'bogus'"))


async def test_a_card_number_cannot_hide_in_last4(db: Database):
    account = await factories.add(db, factories.account())
    with pytest.raises(DBAPIError, match="character varying\\(4\\)"):
        await factories.add(db, factories.payment_method(account.id, last4="4242424242424242"))
    with pytest.raises(IntegrityError, match="ck_payment_methods_last4_digits"):
        await factories.add(db, factories.payment_method(account.id, last4="42a2"))


async def test_a_recurring_plan_needs_an_interval(db: Database):
    with pytest.raises(IntegrityError, match="ck_plans_interval_iff_recurring"):
        await factories.add(db, factories.plan(interval=None, interval_count=None))


async def ledger_entry(db: Database, **overrides) -> CreditEntry:
    account = await factories.add(db, factories.account())
    credit_account = await factories.add(db, CreditAccount(account_id=account.id))
    values = {
        "credit_account_id": credit_account.id,
        "kind": CreditEntryKind.GRANT,
        "amount": 100,
        "balance_after": 100,
        "reason": "test grant",
        "idempotency_key": "grant:in_1",
        "actor": "test",
    }
    return await factories.add(db, CreditEntry(**(values | overrides)))


async def test_ledger_entries_cannot_be_changed_or_deleted(db: Database):
    await ledger_entry(db)
    async with db.engine.connect() as conn:
        with pytest.raises(DBAPIError, match="append-only"):
            await conn.execute(text("UPDATE credit_entries SET amount = 1000000"))
    async with db.engine.connect() as conn:
        with pytest.raises(DBAPIError, match="append-only"):
            await conn.execute(text("DELETE FROM credit_entries"))
    async with db.engine.connect() as conn:
        assert await conn.scalar(text("SELECT amount FROM credit_entries")) == 100


async def test_a_ledger_entry_key_is_used_once_per_wallet(db: Database):
    entry = await ledger_entry(db)
    duplicate = CreditEntry(
        credit_account_id=entry.credit_account_id,
        kind=CreditEntryKind.GRANT,
        amount=100,
        balance_after=200,
        reason="replayed grant",
        idempotency_key=entry.idempotency_key,
        actor="test",
    )
    with pytest.raises(IntegrityError, match="ix_credit_entries_credit_account_id_idempotency_key"):
        await factories.add(db, duplicate)


async def test_a_spend_must_be_negative(db: Database):
    with pytest.raises(IntegrityError, match="ck_credit_entries_sign_matches_kind"):
        await ledger_entry(db, kind=CreditEntryKind.SPEND, amount=5)
