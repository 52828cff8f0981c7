"""Retention passes on real PostgreSQL: old rows made by setting their dates, never by waiting."""

import asyncio
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from db import sealed
from db.database import Database
from db.models import (
    CostBudget,
    DeliveryStatus,
    IdempotencyKey,
    Invoice,
    InvoiceStatus,
    Notification,
    NotificationKind,
    PaymentStatus,
    PaymentTransaction,
    ProductEvent,
    ProductWebhookDelivery,
    ProductWebhookEndpoint,
    StripeEvent,
    WebhookEventStatus,
)
from gateway.settings import Settings
from services import cost_budgets, notifications, product_webhooks, retention
from services.cost_budgets import Spend
from services.errors import DomainError, ErrorCode
from services.retention import RetentionReport
from services.webhooks import inbox
from tests import factories
from tests.test_cli import run as run_command

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=400)  # past the 365 days of payloads, within the 7 years
RECENT = NOW - timedelta(days=30)
ANCIENT = NOW - timedelta(days=8 * 366)  # past the 7 years of financial records
SETTINGS = Settings(billing_env="test")
NOTHING = RetentionReport()


def stripe_event(n: int, status: WebhookEventStatus, received_at: datetime) -> StripeEvent:
    payload = {
        "id": f"evt_{n}",
        "object": "event",
        "type": "charge.dispute.created",
        "created": int(received_at.timestamp()),
        "data": {
            "object": {
                "id": f"dp_{n}",
                "object": "dispute",
                "payment_intent": f"pi_{n}",
                "evidence": {"customer_email_address": "ada@example.com"},
            }
        },
    }
    return StripeEvent(
        stripe_event_id=f"evt_{n}",
        type="charge.dispute.created",
        stripe_created_at=received_at,
        object_id=f"dp_{n}",
        payload=json.loads(inbox.event_envelope(payload, json.dumps(payload))),
        status=status,
        received_at=received_at,
    )


async def events_by_id(db: Database) -> dict[str, dict[str, Any]]:
    async with db.session() as session:
        rows = await session.scalars(select(StripeEvent))
        return {row.stripe_event_id: row.payload for row in rows}


async def test_settled_event_payloads_past_the_limit_become_stubs(db):
    kept = [
        stripe_event(1, WebhookEventStatus.PROCESSED, RECENT),
        stripe_event(2, WebhookEventStatus.PENDING, OLD),
        stripe_event(3, WebhookEventStatus.FAILED, OLD),
    ]
    stripped = [
        stripe_event(4, WebhookEventStatus.PROCESSED, OLD),
        stripe_event(5, WebhookEventStatus.SKIPPED, OLD),
    ]
    before = {row.stripe_event_id: row.payload for row in kept}
    await factories.add_all(db, [*kept, *stripped])

    report = await retention.run(db, SETTINGS)

    assert report == dataclasses.replace(NOTHING, event_payloads_stripped=2)
    payloads = await events_by_id(db)
    assert {key: payloads[key] for key in before} == before
    assert payloads["evt_4"] == {
        "id": "evt_4",
        "type": "charge.dispute.created",
        "object": "event",
        "created": int(OLD.timestamp()),
        "retained": False,
        # Ids only: the dispute's payment is still found by credit_sources.
        "data": {"object": {"id": "dp_4", "object": "dispute", "payment_intent": "pi_4"}},
    }
    assert retention.is_stripped(payloads["evt_5"])
    assert not retention.is_stripped(payloads["evt_1"])


async def test_an_event_without_an_object_id_is_stripped_too(db):
    event = stripe_event(1, WebhookEventStatus.SKIPPED, OLD)
    event.payload = {"id": "evt_1", "type": "balance.available", "data": {"object": {}}}
    await factories.add(db, event)

    await retention.run(db, SETTINGS)

    payload = (await events_by_id(db))["evt_1"]
    assert payload["data"] == {"object": {}} and payload["retained"] is False


async def add_product_event(
    db: Database, endpoints: list[ProductWebhookEndpoint], n: int, created_at: datetime, *statuses
) -> None:
    """An event with a delivery in each of `statuses`, to the endpoints in turn."""
    event = ProductEvent(
        message_id=f"msg_{n:032x}",
        cause=f"invoice.paid:in_{n}",
        type="invoice.paid",
        payload=sealed.envelope(
            {"id": f"msg_{n:032x}", "type": "invoice.paid"}, json.dumps({"email": "ada@x"})
        ),
        created_at=created_at,
    )
    await factories.add(db, event)
    await factories.add_all(
        db,
        [
            ProductWebhookDelivery(event_id=event.id, endpoint_id=endpoint.id, status=status)
            for endpoint, status in zip(endpoints, statuses, strict=False)
        ],
    )


async def test_old_mails_and_product_events_lose_their_personal_data_once_settled(db):
    account = await factories.add(db, factories.account())
    endpoints = await factories.add_all(
        db,
        [
            ProductWebhookEndpoint(url=f"https://backend.example/{n}", secret="whsec_x")
            for n in (1, 2)
        ],
    )
    await add_product_event(db, endpoints, 1, OLD, DeliveryStatus.SENT)
    await add_product_event(db, endpoints, 2, OLD, DeliveryStatus.SENT, DeliveryStatus.FAILED)
    await add_product_event(db, endpoints, 3, OLD)  # no endpoint wanted it
    await add_product_event(db, endpoints, 4, OLD, DeliveryStatus.SENT, DeliveryStatus.PENDING)
    await add_product_event(db, endpoints, 5, RECENT, DeliveryStatus.SENT)
    mails = [
        Notification(
            account_id=account.id,
            kind=NotificationKind.RECEIPT,
            cause=f"receipt:in_{n}",
            recipient="ada@example.com",
            recipient_name="Ada",
            subject="Your receipt",
            context={"invoice_number": "INV-1"},
            status=status,
            created_at=created_at,
        )
        for n, (status, created_at) in enumerate(
            [
                (DeliveryStatus.SENT, OLD),
                (DeliveryStatus.SKIPPED, OLD),
                (DeliveryStatus.PENDING, OLD),
                (DeliveryStatus.SENT, RECENT),
            ]
        )
    ]
    await factories.add_all(db, mails)

    report = await retention.run(db, SETTINGS)

    assert report == dataclasses.replace(
        NOTHING, product_payloads_stripped=3, notifications_stripped=2
    )
    async with db.session() as session:
        data = {
            row.cause: json.loads(product_webhooks.body_of(row.payload))["data"]
            if sealed.SEALED in row.payload
            else row.payload["data"]
            for row in await session.scalars(select(ProductEvent))
        }
        kept = {
            row.cause: (row.recipient, row.recipient_name, row.context)
            for row in await session.scalars(select(Notification))
        }
    assert data == {
        "invoice.paid:in_1": {},
        "invoice.paid:in_2": {},
        "invoice.paid:in_3": {},
        "invoice.paid:in_4": {"email": "ada@x"},  # still to be delivered
        "invoice.paid:in_5": {"email": "ada@x"},
    }
    personal = ("ada@example.com", "Ada", {"invoice_number": "INV-1"})
    assert kept == {
        "receipt:in_0": ("", None, {}),
        "receipt:in_1": ("", None, {}),
        "receipt:in_2": personal,  # still to be sent
        "receipt:in_3": personal,
    }
    # What was stripped is never sent again: a retry would send it empty.
    async with db.session() as session:
        failed = await session.scalar(
            select(ProductWebhookDelivery).where(
                ProductWebhookDelivery.status == DeliveryStatus.FAILED
            )
        )
        skipped = await session.scalar(
            select(Notification).where(Notification.cause == "receipt:in_1")
        )
    async with db.session() as session:
        with pytest.raises(DomainError) as delivery:
            await product_webhooks.retry_delivery(session, delivery_id=failed.id)
    async with db.session() as session, session.begin():
        with pytest.raises(DomainError) as mail:
            await notifications.retry_notification(session, notification_id=skipped.id)
    assert delivery.value.code is mail.value.code is ErrorCode.INVALID_STATE


async def test_cost_budgets_untouched_for_a_full_refill_are_deleted(db):
    refill = SETTINGS.graphql_cost_budget / SETTINGS.graphql_cost_refill_per_second
    for caller, idle in (("ip:203.0.113.9", refill + 1), ("user:alice", refill - 1)):
        await cost_budgets.spend(db, Spend(caller, 10, capacity=100, refill_per_second=1.0))
        async with db.session() as session, session.begin():
            budget = await session.get(CostBudget, caller)
            budget.updated_at = NOW - timedelta(seconds=idle)

    report = await retention.run(db, SETTINGS, now=NOW)

    assert report == dataclasses.replace(NOTHING, cost_budgets_deleted=1)
    async with db.session() as session:
        assert list(await session.scalars(select(CostBudget.caller))) == ["user:alice"]


async def test_idempotency_keys_past_stripes_window_are_deleted(db):
    account = await factories.add(db, factories.account())
    ages = {"old-done": 25, "old-unfinished": 30, "recent-done": 23, "recent-unfinished": 1}
    await factories.add_all(
        db,
        [
            IdempotencyKey(
                account_id=account.id,
                key=key,
                operation="createSubscription",
                request_hash="h",
                response={"ok": True} if key.endswith("done") else None,
                created_at=NOW - timedelta(hours=hours),
                completed_at=NOW - timedelta(hours=hours) if key.endswith("done") else None,
            )
            for key, hours in ages.items()
        ],
    )

    report = await retention.run(db, SETTINGS)

    assert report == dataclasses.replace(NOTHING, idempotency_keys_deleted=2)
    async with db.session() as session:
        left = set(await session.scalars(select(IdempotencyKey.key)))
    assert left == {"recent-done", "recent-unfinished"}


def invoice(account_id: int, name: str, created_at: datetime, **overrides: Any) -> Invoice:
    values: dict[str, Any] = {
        "stripe_invoice_id": f"in_{name}",
        "account_id": account_id,
        "status": InvoiceStatus.PAID,
        "currency": "eur",
        "subtotal": 1000,
        "tax": 100,
        "total": 1100,
        "amount_due": 1100,
        "amount_paid": 1100,
        "amount_remaining": 0,
        "period_start": created_at - timedelta(days=30),
        "period_end": created_at,
        "paid_at": created_at,
        "stripe_created_at": created_at,
        "customer_address": {"line1": "1 Analytical St", "country": "AU"},
        "customer_tax_ids": [{"type": "au_abn", "value": "12345678901"}],
    }
    return Invoice(**(values | overrides))


def payment(account_id: int, name: str, created_at: datetime) -> PaymentTransaction:
    return PaymentTransaction(
        stripe_payment_intent_id=f"pi_{name}",
        account_id=account_id,
        status=PaymentStatus.SUCCEEDED,
        amount=1100,
        amount_received=1100,
        amount_refunded=100,
        currency="eur",
        description="Ada's seat",
        invoice_stripe_id=f"in_{name}",
        receipt_url=f"https://pay.stripe.com/receipts/{name}",
        stripe_created_at=created_at,
    )


async def add_financial_rows(db: Database) -> None:
    account = await factories.add(db, factories.account())
    await factories.add_all(
        db,
        [
            invoice(account.id, "ancient", ANCIENT),
            invoice(account.id, "old", OLD),
            # Created long ago, but its period ended within the years kept.
            invoice(account.id, "long-period", ANCIENT, period_end=OLD),
            payment(account.id, "ancient", ANCIENT),
            payment(account.id, "old", OLD),
        ],
    )


def money(row: Invoice | PaymentTransaction) -> dict[str, Any]:
    names = [
        "status", "currency", "subtotal", "tax", "total", "amount_paid", "amount",
        "amount_received", "amount_refunded", "stripe_created_at", "paid_at", "period_end",
        "invoice_stripe_id",
    ]  # fmt: skip
    return {name: getattr(row, name) for name in names if hasattr(row, name)}


def personal(row: Invoice | PaymentTransaction) -> tuple[Any, ...]:
    if isinstance(row, Invoice):
        return row.customer_address, row.customer_tax_ids
    return row.description, row.receipt_url


async def financial_rows(db: Database) -> dict[str, Invoice | PaymentTransaction]:
    async with db.session() as session:
        invoices = await session.scalars(select(Invoice))
        payments = await session.scalars(select(PaymentTransaction))
        return {
            **{row.stripe_invoice_id: row for row in invoices},
            **{row.stripe_payment_intent_id: row for row in payments},
        }


async def test_financial_rows_past_the_years_kept_are_anonymised_with_their_amounts(db):
    await add_financial_rows(db)
    before = await financial_rows(db)

    report = await retention.run(db, SETTINGS)

    assert report == dataclasses.replace(NOTHING, invoices_anonymised=1, payments_anonymised=1)
    after = await financial_rows(db)
    assert {key: money(row) for key, row in after.items()} == {
        key: money(row) for key, row in before.items()
    }
    assert personal(after["in_ancient"]) == (None, None)
    async with db.session() as session:  # SQL NULL, not JSON null (both load as None)
        assert await session.scalar(
            select(Invoice.customer_address.is_(None)).where(
                Invoice.stripe_invoice_id == "in_ancient"
            )
        )
    assert personal(after["pi_ancient"]) == (None, None)
    for key in ("in_old", "in_long-period", "pi_old"):
        assert personal(after[key]) == personal(before[key])


async def add_everything(db: Database) -> RetentionReport:
    """One row due for each action (two events); the report a pass makes of them."""
    await factories.add_all(
        db,
        [
            stripe_event(1, WebhookEventStatus.PROCESSED, OLD),
            stripe_event(2, WebhookEventStatus.SKIPPED, OLD),
            stripe_event(3, WebhookEventStatus.PROCESSED, RECENT),
        ],
    )
    await add_financial_rows(db)
    account = await factories.add(db, factories.account())
    await factories.add(
        db,
        IdempotencyKey(
            account_id=account.id,
            key="k",
            operation="buyCredits",
            request_hash="h",
            created_at=NOW - timedelta(days=2),
        ),
    )
    return dataclasses.replace(
        NOTHING,
        event_payloads_stripped=2,
        idempotency_keys_deleted=1,
        invoices_anonymised=1,
        payments_anonymised=1,
    )


async def test_a_dry_run_changes_nothing_and_counts_what_the_pass_then_does(db):
    expected = await add_everything(db)
    events, financial = await events_by_id(db), await financial_rows(db)

    dry = await retention.run(db, SETTINGS, dry_run=True, now=NOW)

    assert dry == dataclasses.replace(expected, dry_run=True)
    assert await events_by_id(db) == events
    assert {key: personal(row) for key, row in (await financial_rows(db)).items()} == {
        key: personal(row) for key, row in financial.items()
    }
    assert await retention.run(db, SETTINGS, now=NOW) == expected


async def test_a_second_pass_changes_nothing(db):
    expected = await add_everything(db)
    await retention.run(db, SETTINGS)
    events = await events_by_id(db)

    assert await retention.run(db, SETTINGS) == NOTHING
    assert await retention.run(db, SETTINGS, dry_run=True) == dataclasses.replace(
        NOTHING, dry_run=True
    )
    assert await events_by_id(db) == events
    assert expected != NOTHING


async def test_many_rows_change_a_batch_at_a_time(db, monkeypatch):
    monkeypatch.setattr(retention, "BATCH_SIZE", 3)
    await factories.add_all(
        db, [stripe_event(n, WebhookEventStatus.PROCESSED, OLD) for n in range(7)]
    )

    report = await retention.run(db, SETTINGS)

    assert report is not None and report.event_payloads_stripped == 7
    assert all(retention.is_stripped(payload) for payload in (await events_by_id(db)).values())


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_pass_moves_the_metrics_and_a_dry_run_does_not(db):
    expected = await add_everything(db)
    rows_before = {
        action: sample("billing_retention_rows_total", action=action)
        for action in expected.counts()
    }
    ok_before = sample("billing_retention_runs_total", outcome="ok")

    await retention.run(db, SETTINGS, dry_run=True)
    assert sample("billing_retention_runs_total", outcome="ok") == ok_before
    await retention.run(db, SETTINGS)

    moved = {
        action: sample("billing_retention_rows_total", action=action) - before
        for action, before in rows_before.items()
    }
    assert moved == expected.counts()
    assert sample("billing_retention_runs_total", outcome="ok") == ok_before + 1
    last_run = sample("billing_retention_last_run_timestamp_seconds")
    assert abs(last_run - datetime.now(UTC).timestamp()) < 60


async def test_a_pass_while_another_process_holds_the_lock_does_nothing(db):
    expected = await add_everything(db)
    busy_before = sample("billing_retention_runs_total", outcome="busy")
    async with db.driver_connection() as other:
        await other.execute("SELECT pg_advisory_lock($1)", retention.RETENTION_LOCK)
        try:
            skipped = await retention.run(db, SETTINGS)
        finally:
            await other.execute("SELECT pg_advisory_unlock($1)", retention.RETENTION_LOCK)

    assert skipped is None
    assert sample("billing_retention_runs_total", outcome="busy") == busy_before + 1
    assert not any(retention.is_stripped(p) for p in (await events_by_id(db)).values())
    assert await retention.run(db, SETTINGS) == expected


async def test_concurrent_passes_do_the_work_once(db):
    expected = await add_everything(db)

    reports = await asyncio.gather(*(retention.run(db, SETTINGS) for _ in range(3)))

    done = [report for report in reports if report is not None]
    totals = {
        action: sum(getattr(report, action) for report in done) for action in expected.counts()
    }
    assert totals == expected.counts()


async def test_scheduled_passes_survive_a_failure(db, monkeypatch):
    calls: list[str] = []

    async def flaky(database: Database, settings: Settings) -> None:
        calls.append("run")
        if len(calls) == 1:
            raise ConnectionError("database went away")
        if len(calls) == 3:
            raise asyncio.CancelledError  # stop the loop: the test is over

    monkeypatch.setattr(retention, "run", flaky)
    monkeypatch.setattr(retention, "RETRY_AFTER", timedelta(0))
    schedule = SETTINGS.model_copy(update={"retention_interval_hours": 1e-9})

    try:
        await retention.keep_running(db, schedule)
    except asyncio.CancelledError:
        pass

    assert calls == ["run", "run", "run"]
    await retention.keep_running(db, SETTINGS.model_copy(update={"retention_interval_hours": 0}))


async def test_the_command_prints_what_a_pass_would_do(db):
    expected = await add_everything(db)
    env = {"DATABASE_URL": db.url.render_as_string(hide_password=False)}

    dry = await asyncio.to_thread(run_command, "retention", "--dry-run", env=env)
    done = await asyncio.to_thread(run_command, "retention", env=env)

    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        "would strip 2 webhook event payloads",
        "would strip 0 product event payloads",
        "would strip 0 notifications",
        "would delete 1 idempotency keys",
        "would anonymise 1 invoices",
        "would anonymise 1 payments",
        "would delete 0 refilled query cost budgets",
    ]
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "stripped 2 webhook event payloads"
    assert done.stdout.splitlines()[-1] == "deleted 0 refilled query cost budgets"
    assert await retention.run(db, SETTINGS) == NOTHING
    assert expected.event_payloads_stripped == 2
