"""What the mirror announces: each applied change of a customer's object, in its own
transaction, and nothing for a snapshot older than the row."""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import make_url

from db.database import Database
from services import mirror
from services.live import CHANNEL
from services.stripe.client import StripeApi
from tests import factories
from tests.live.support import customer

NOW = datetime.now(UTC).replace(microsecond=0)


def intent(status: str = "processing") -> dict[str, Any]:
    return {
        "id": "pi_published",
        "status": status,
        "amount": 1250,
        "currency": "usd",
        "created": int(NOW.timestamp()),
        "metadata": {},
    }


def subscription(status: str, plan_price: str = "price_x") -> dict[str, Any]:
    start = int(NOW.timestamp())
    return {
        "id": "sub_published",
        "status": status,
        "created": start,
        "items": {
            "data": [
                {
                    "price": plan_price,
                    "quantity": 1,
                    "current_period_start": start,
                    "current_period_end": start + 30 * 86400,
                }
            ]
        },
    }


@pytest.fixture
async def notices(db: Database) -> AsyncIterator[list[dict[str, Any]]]:
    """Every billing update announced (delivered on commit) while the test runs."""
    url = make_url(db.url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(url)
    heard: list[dict[str, Any]] = []
    await connection.add_listener(CHANNEL, lambda *args: heard.append(json.loads(args[-1])))
    yield heard
    await connection.close()


async def settle(connection_notices: list[dict[str, Any]], count: int) -> None:
    async with asyncio.timeout(10):
        while len(connection_notices) < count:
            await asyncio.sleep(0.01)


async def test_an_applied_payment_is_announced_and_an_older_one_is_not(db, notices):
    alice = await customer(db, "alice")
    async with db.session() as session, session.begin():
        row_id = await mirror.upsert_transaction(
            session, intent("succeeded"), alice.id, observed_at=NOW
        )
    async with db.session() as session, session.begin():
        await mirror.upsert_transaction(
            session, intent("processing"), alice.id, observed_at=NOW - timedelta(seconds=5)
        )
    # Another payment after the stale snapshot: anything that announced would come first.
    async with db.session() as session, session.begin():
        marker_id = await mirror.upsert_transaction(
            session, intent() | {"id": "pi_marker"}, alice.id, observed_at=NOW
        )
    await settle(notices, 2)

    assert [notice["row"] for notice in notices] == [row_id, marker_id]
    assert notices[0] == {"kind": "PAYMENT_UPDATED", "account": alice.id, "row": row_id}


async def test_a_rolled_back_change_is_never_announced(db, notices):
    alice = await customer(db, "alice")
    with pytest.raises(RuntimeError):
        async with db.session() as session, session.begin():
            await mirror.upsert_transaction(session, intent(), alice.id, observed_at=NOW)
            raise RuntimeError("the handler failed after the upsert")
    async with db.session() as session, session.begin():
        row_id = await mirror.upsert_transaction(session, intent(), alice.id, observed_at=NOW)
    await settle(notices, 1)

    assert notices == [{"kind": "PAYMENT_UPDATED", "account": alice.id, "row": row_id}]


async def test_access_is_announced_when_a_subscription_status_moves(db, notices, settings):
    alice = await customer(db, "alice")
    plan = await factories.add(db, factories.plan(stripe_price_id="price_x"))

    async def apply(status: str, seconds: int) -> int:
        # A subscription with no discounts: Stripe is never asked (StripeApi points nowhere).
        async with db.session() as session, session.begin(), StripeApi(settings, None) as stripe:
            return await mirror.upsert_subscription(
                session,
                stripe,
                subscription(status),
                alice.id,
                plan.id,
                observed_at=NOW + timedelta(seconds=seconds),
            )

    row_id = await apply("incomplete", 0)
    await apply("incomplete", 1)  # same status: the subscription changed, access did not
    await apply("active", 2)
    await settle(notices, 5)

    kinds = [notice["kind"] for notice in notices]
    assert kinds == [
        "SUBSCRIPTION_UPDATED",
        "ACCESS_UPDATED",
        "SUBSCRIPTION_UPDATED",
        "SUBSCRIPTION_UPDATED",
        "ACCESS_UPDATED",
    ]
    assert {(notice["account"], notice["row"]) for notice in notices} == {(alice.id, row_id)}
