"""A real SMTP server (aiosmtpd, in its own thread on loopback) and helpers for the outbox."""

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr
from sqlalchemy import text

from db.database import Database
from db.models import Account, NotificationKind
from gateway.settings import Settings
from services import notifications
from tests import factories
from tests.smtp_server import Credentials, Inbox, SmtpServer, serve

PRODUCT = "Acme Cloud"
MAIL_FROM = "billing@acme.example"
# Guards a wait for the server's thread, never a measure of speed.
PATIENCE_SECONDS = 30.0


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """An SMTP server accepting every message, without authentication."""
    with serve(Inbox()) as server:
        yield server


@pytest.fixture
def credentials() -> Credentials:
    return Credentials(login="mailer@acme.example", password="p@ss:w0rd/%")


@pytest.fixture
def smtp_with_auth(credentials: Credentials) -> Iterator[SmtpServer]:
    """An SMTP server that refuses mail until AUTH succeeds (over plain TCP: loopback)."""
    with serve(
        Inbox(), authenticator=credentials, auth_required=True, auth_require_tls=False
    ) as server:
        yield server


def mail_settings(settings: Settings, smtp_url: str | None, **overrides: Any) -> Settings:
    """The tests' settings sending to `smtp_url` as Acme Cloud."""
    values = {
        "smtp_url": SecretStr(smtp_url) if smtp_url else None,
        "product_name": PRODUCT,
        "mail_from": MAIL_FROM,
    }
    return settings.model_copy(update=values | overrides)


async def make_account(db: Database, **overrides: Any) -> Account:
    return await factories.add(db, factories.account(**({"name": "Ada Lovelace"} | overrides)))


RECEIPT_CONTEXT = {
    "invoice_number": "INV-0001",
    "amount": "$29.00",
    "paid_at": "7 December 2026",
    "invoice_url": "https://invoice.example/in_1",
    "plan_name": "Pro",
}
PAYMENT_FAILED_CONTEXT = {
    "invoice_number": "INV-0002",
    "amount": "$29.00",
    "pay_url": "https://invoice.example/pay?a=1&b=2",
    "decline_message": "Your card was declined.",
}


async def notify(
    db: Database,
    account_id: int,
    kind: NotificationKind = NotificationKind.PAYMENT_FAILED,
    cause: str = "payment_failed:evt_1",
    context: dict[str, Any] | None = None,
    invoice_stripe_id: str | None = None,
) -> None:
    """One notify in a transaction of its own, committed."""
    async with db.session() as session, session.begin():
        await notifications.notify(
            session,
            account_id=account_id,
            kind=kind,
            cause=cause,
            context=PAYMENT_FAILED_CONTEXT if context is None else context,
            invoice_stripe_id=invoice_stripe_id,
        )


async def outbox(db: Database) -> list[Any]:
    """Every mail, oldest first, with `due_in`: seconds until its next attempt (or the end
    of its lease), by the database's clock."""
    async with db.session() as session:
        result = await session.execute(
            text(
                "SELECT *, extract(epoch FROM next_attempt_at - now())::float AS due_in "
                "FROM notifications ORDER BY id"
            )
        )
        return list(result.all())


async def make_due(db: Database) -> None:
    """Time passes: every pending mail's next attempt (or lease's end) comes."""
    async with db.session() as session, session.begin():
        await session.execute(
            text("UPDATE notifications SET next_attempt_at = now() WHERE status = 'pending'")
        )


def sent_count(kind: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "billing_notifications_sent_total", {"kind": kind, "outcome": outcome}
    )
    return value or 0.0


async def wait_for(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, PATIENCE_SECONDS), "the server never got it"
