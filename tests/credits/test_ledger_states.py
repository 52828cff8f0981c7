"""A hypothesis state machine of grants, spends, refunds, disputes and replays, run through
the ledger service against the real database: balance = sum(entries) after every step, and
no spend ever takes the balance below zero."""

import asyncio
import itertools
import uuid

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from db.database import Database
from db.models import CreditEntryKind
from services import credits
from services.audit import Actor
from services.credits import Posting
from services.errors import DomainError, ErrorCode
from tests import factories
from tests.credits.support import wallet

SOURCES = [f"pi_{n}" for n in range(4)]
SPEND_KEYS = [f"spend-{n}" for n in range(5)]


class LedgerMachine(RuleBasedStateMachine):
    """The model: the balance we expect, the grants made and what is still unreversed."""

    def __init__(self, database: Database, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.database, self.loop = database, loop
        self.balance = 0
        self.granted: dict[str, int] = {}
        self.unreversed: dict[str, int] = {}
        self.spent: dict[str, int] = {}
        self.postings: list[Posting] = []
        self.refund_ids = itertools.count()

    def run(self, coroutine):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coroutine)

    @initialize()
    def open_account(self) -> None:
        account = factories.account(user_id=f"machine-{uuid.uuid4().hex[:10]}")
        self.account_id = self.run(factories.add(self.database, account)).id

    async def _post(self, posting: Posting) -> credits.Posted:
        async with self.database.session() as session, session.begin():
            return await credits.post(session, account_id=self.account_id, posting=posting)

    def _record(self, posting: Posting) -> None:
        created = self.run(self._post(posting)).created
        assert created, "a new key makes a new entry"
        self.postings.append(posting)
        self.balance += posting.amount

    @rule(source=st.sampled_from(SOURCES), amount=st.integers(1, 500))
    def grant(self, source: str, amount: int) -> None:
        posting = Posting(CreditEntryKind.GRANT, amount, "grant", f"grant:{source}", "machine")
        if source in self.granted:
            assert not self.run(self._post(posting)).created
            return
        self._record(posting)
        self.granted[source] = self.unreversed[source] = amount

    @rule(key=st.sampled_from(SPEND_KEYS), amount=st.integers(1, 300))
    def spend(self, key: str, amount: int) -> None:
        outcome = self.run(self._spend(key, amount))
        if key in self.spent:
            expected = ErrorCode.IDEMPOTENCY_KEY_REUSED if self.spent[key] != amount else "replayed"
            assert outcome == expected
        elif amount <= self.balance:
            assert outcome == "spent"
            self.spent[key] = amount
            self.balance -= amount
        else:
            assert outcome is ErrorCode.INSUFFICIENT_CREDITS

    async def _spend(self, key: str, amount: int) -> object:
        before = len((await wallet(self.database, self.account_id)).entries)
        try:
            outcome = await credits.spend(
                database=self.database,
                account_id=self.account_id,
                actor=Actor("user:machine"),
                amount=amount,
                reason="spend",
                idempotency_key=key,
            )
        except DomainError as error:
            return error.code
        after = len((await wallet(self.database, self.account_id)).entries)
        assert outcome.balance >= 0
        return "spent" if after == before + 1 else "replayed"

    @precondition(lambda self: any(self.unreversed.values()))
    @rule(data=st.data(), share=st.sampled_from([1, 2, 4]))
    def refund(self, data: st.DataObject, share: int) -> None:
        """A refund of 1/share of a granted payment reverses its part of what is left."""
        source = data.draw(st.sampled_from([s for s, left in self.unreversed.items() if left]))
        amount = max(1, self.granted[source] // share)
        amount = min(amount, self.unreversed[source])
        key = f"refund:re_{next(self.refund_ids)}"
        self._record(Posting(CreditEntryKind.REVERSAL, -amount, "refund", key, "machine"))
        self.unreversed[source] -= amount

    @precondition(lambda self: any(self.unreversed.values()))
    @rule(data=st.data())
    def dispute(self, data: st.DataObject) -> None:
        source = data.draw(st.sampled_from([s for s, left in self.unreversed.items() if left]))
        posting = Posting(
            CreditEntryKind.REVERSAL,
            -self.unreversed[source],
            "dispute",
            f"dispute:{source}",
            "machine",
        )
        self._record(posting)
        self.unreversed[source] = 0

    @precondition(lambda self: self.postings)
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        """Any entry posted again (a duplicate or replayed webhook) changes nothing."""
        posting = data.draw(st.sampled_from(self.postings))
        assert not self.run(self._post(posting)).created

    @invariant()
    def balance_is_the_sum_of_the_entries(self) -> None:
        if not hasattr(self, "account_id"):
            return
        state = self.run(wallet(self.database, self.account_id))
        assert state.balance == state.ledger_sum == self.balance
        assert all(
            entry.balance_after >= 0
            for entry in state.entries
            if entry.kind is CreditEntryKind.SPEND
        )


@pytest.fixture
def machine_database(database: Database, db: Database):  # type: ignore[no-untyped-def]
    """The run's database on an event loop of the machine's own (its rules are synchronous)."""
    loop = asyncio.new_event_loop()
    own = Database(database.url, pool_size=2)
    yield own, loop
    loop.run_until_complete(own.dispose())
    loop.close()


def test_the_ledger_state_machine(machine_database) -> None:  # type: ignore[no-untyped-def]
    database, loop = machine_database
    run_state_machine_as_test(
        lambda: LedgerMachine(database, loop),
        settings=settings(
            max_examples=25,
            stateful_step_count=15,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
