"""admin.metrics on a fixture whose figures are worked out by hand in the comments."""

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from db.database import Database
from db.models import (
    BillingInterval,
    PaymentStatus,
    PaymentTransaction,
    Subscription,
    SubscriptionStatus,
)
from tests import factories
from tests.conftest import error_codes, graphql

METRICS = """
{ admin { metrics {
  mrr { amount currency } arr { amount currency }
  activeSubscriptions trialingSubscriptions pastDueSubscriptions
  churnRate30d paymentSuccessRate30d revenue30d { amount currency formatted }
} } }
"""
NOW = datetime.now(UTC)
DAY = timedelta(days=1)


async def subscribe(
    db: Database,
    account_id: int,
    *,
    amount: int,
    interval: BillingInterval,
    status: SubscriptionStatus,
    quantity: int = 1,
    interval_count: int = 1,
    currency: str = "usd",
    created: datetime = NOW - 60 * DAY,
    ended: datetime | None = None,
) -> None:
    plan = await factories.add(
        db,
        factories.plan(
            amount=amount, currency=currency, interval=interval, interval_count=interval_count
        ),
    )
    n = plan.id
    await factories.add(
        db,
        Subscription(
            stripe_subscription_id=f"sub_metrics_{n}",
            account_id=account_id,
            plan_id=plan.id,
            status=status,
            quantity=quantity,
            current_period_start=NOW - DAY,
            current_period_end=NOW + DAY,
            ended_at=ended,
            canceled_at=ended,
            stripe_created_at=created,
        ),
    )


async def pay(
    db: Database,
    account_id: int,
    *,
    amount: int,
    status: PaymentStatus,
    created: datetime = NOW - 5 * DAY,
    refunded: int = 0,
    currency: str = "usd",
    failure_code: str | None = None,
) -> None:
    n = len(await _payments(db))
    await factories.add(
        db,
        PaymentTransaction(
            stripe_payment_intent_id=f"pi_metrics_{n}",
            account_id=account_id,
            status=status,
            amount=amount,
            amount_received=amount if status is PaymentStatus.SUCCEEDED else 0,
            amount_refunded=refunded,
            currency=currency,
            failure_code=failure_code,
            stripe_created_at=created,
        ),
    )


async def _payments(db: Database) -> list[Any]:
    async with db.read_session() as session:
        return list((await session.scalars(select(PaymentTransaction))).all())


async def test_metrics_on_a_hand_checked_fixture(client, db: Database, token_for):
    account = (await factories.add(db, factories.account())).id
    S, M, Y, W, D = (  # noqa: N806
        SubscriptionStatus,
        BillingInterval.MONTH,
        BillingInterval.YEAR,
        BillingInterval.WEEK,
        BillingInterval.DAY,
    )
    # MRR in USD, each normalised to a month:
    #   $10.00 a month x 2 seats              = 2000
    await subscribe(db, account, amount=1000, interval=M, status=S.ACTIVE, quantity=2)
    #   $120.00 a year                        = 12000 / 12 = 1000
    await subscribe(db, account, amount=12000, interval=Y, status=S.ACTIVE)
    #   $7.00 a week, past due (still billed) = 700 x 52 / 12 = 3033 1/3
    await subscribe(db, account, amount=700, interval=W, status=S.PAST_DUE)
    #   $1.00 a day                           = 100 x 365 / 12 = 3041 2/3
    await subscribe(db, account, amount=100, interval=D, status=S.ACTIVE)
    #   $30.00 every 3 months                 = 3000 / 3 = 1000
    await subscribe(db, account, amount=3000, interval=M, status=S.ACTIVE, interval_count=3)
    #   total 2000 + 1000 + 3033 1/3 + 3041 2/3 + 1000 = 10075; ARR 12 x 10075 = 120900
    # MRR in EUR: €24.00 a year = 200; ARR 2400
    await subscribe(db, account, amount=2400, interval=Y, status=S.ACTIVE, currency="eur")
    # Not in MRR: a trial (started 5 days ago), one that ended 10 days ago (churned), one
    # that ended 40 days ago (gone before the window), and one that never started.
    await subscribe(db, account, amount=5000, interval=M, status=S.TRIALING, created=NOW - 5 * DAY)
    await subscribe(db, account, amount=5000, interval=M, status=S.CANCELED, ended=NOW - 10 * DAY)
    await subscribe(db, account, amount=5000, interval=M, status=S.CANCELED, ended=NOW - 40 * DAY)
    await subscribe(db, account, amount=5000, interval=M, status=S.INCOMPLETE_EXPIRED)
    # Churn: live 30 days ago = the 6 billed above + the one that ended 10 days ago = 7
    # (the trial started since, the others ended before or never started); ended since: 1.
    # Payments in the last 30 days: 3 succeeded, 1 declined, 1 still processing (no
    # outcome yet: not an attempt); one succeeded 40 days ago is outside the window.
    await pay(db, account, amount=5000, status=PaymentStatus.SUCCEEDED, refunded=1000)
    await pay(db, account, amount=2000, status=PaymentStatus.SUCCEEDED)
    await pay(db, account, amount=3000, status=PaymentStatus.SUCCEEDED, currency="eur")
    await pay(
        db,
        account,
        amount=2000,
        status=PaymentStatus.REQUIRES_PAYMENT_METHOD,
        failure_code="card_declined",
    )
    await pay(db, account, amount=2000, status=PaymentStatus.PROCESSING)
    await pay(db, account, amount=9900, status=PaymentStatus.SUCCEEDED, created=NOW - 40 * DAY)

    result = await graphql(client, METRICS, token=token_for("ops", admin=True))

    assert "errors" not in result, result["errors"]
    metrics = result["data"]["admin"]["metrics"]
    assert metrics["mrr"] == [
        {"amount": "200", "currency": "EUR"},
        {"amount": "10075", "currency": "USD"},
    ]
    assert metrics["arr"] == [
        {"amount": "2400", "currency": "EUR"},
        {"amount": "120900", "currency": "USD"},
    ]
    # Active: monthly x2, yearly, daily, quarterly, EUR yearly = 5; trialing 1; past due 1.
    assert metrics["activeSubscriptions"] == 5
    assert metrics["trialingSubscriptions"] == 1
    assert metrics["pastDueSubscriptions"] == 1
    assert metrics["churnRate30d"] == 1 / 7
    # 3 succeeded of 4 attempts
    assert metrics["paymentSuccessRate30d"] == 0.75
    # USD: 5000 - 1000 refunded + 2000 = 6000; EUR: 3000
    assert metrics["revenue30d"] == [
        {"amount": "3000", "currency": "EUR", "formatted": "€30.00"},
        {"amount": "6000", "currency": "USD", "formatted": "$60.00"},
    ]


async def test_metrics_of_an_empty_book(client, db: Database, token_for):
    result = await graphql(client, METRICS, token=token_for("ops", admin=True))
    metrics = result["data"]["admin"]["metrics"]
    assert metrics["mrr"] == metrics["arr"] == metrics["revenue30d"] == []
    assert metrics["churnRate30d"] == 0.0
    assert metrics["paymentSuccessRate30d"] == 1.0


async def test_metrics_are_refused_to_a_customer(client, db: Database, token_for):
    result = await graphql(client, METRICS, token=token_for("customer"))
    assert error_codes(result) == ["FORBIDDEN"]
    assert result["data"] is None


async def test_mrr_counts_a_subscription_in_the_currency_it_is_billed_in(
    client, db: Database, token_for
):
    account = (await factories.add(db, factories.account())).id
    plan = await factories.add(db, factories.plan(amount=2900, other_amounts={"aud": 4500}))
    for n, currency in enumerate((None, "usd", "aud")):
        await factories.add(
            db,
            Subscription(
                stripe_subscription_id=f"sub_currency_{n}",
                account_id=account,
                plan_id=plan.id,
                status=SubscriptionStatus.ACTIVE,
                currency=currency,
                current_period_start=NOW - DAY,
                current_period_end=NOW + DAY,
                stripe_created_at=NOW - DAY,
            ),
        )

    result = await graphql(client, METRICS, token=token_for("ops", admin=True))

    mrr = result["data"]["admin"]["metrics"]["mrr"]
    # Two in USD (the plan's own, and one mirrored before currencies were kept), one in AUD.
    assert mrr == [{"amount": "4500", "currency": "AUD"}, {"amount": "5800", "currency": "USD"}]
