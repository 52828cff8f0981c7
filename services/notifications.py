"""The mail outbox: mails to customers, written in the transaction of their cause and keyed
by it, then sent by the outbox worker (services/outbox_worker.py) over SMTP.

Sending is at least once, never as a second row. A mail is claimed by a lease: one short
statement leaves it pending but due again only after the lease (longer than a send may take,
services/mailer.py), and counts the attempt. The SMTP conversation runs with no transaction
open; its outcome is written after it, for that claim only (its attempt count). A worker
killed between the server's acceptance and that write leaves the mail pending: it is sent
again when the lease ends, with the same Message-ID, so the copy is recognisably the same mail.
"""

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db import sealed
from db.database import Database, driver_of
from db.models import Account, DeliveryStatus, Invoice, Notification, NotificationKind
from gateway.settings import Settings
from services import invoice_pdf, mailer
from services.errors import DomainError, ErrorCode, NotFound
from services.mailer import RenderedMail
from services.observability import NOTIFICATION_SEND_DURATION, NOTIFICATIONS_SENT
from services.pagination import Listing, Page, paginate

log = logging.getLogger("billing_gateway.notifications")

TEMPLATES = Path(__file__).parent / "templates" / "mail"
# The account column that lets the customer turn a kind off; None: always sent (the customer
# must act, or is told what their subscription became).
PREFERENCE_OF: dict[NotificationKind, str | None] = {
    NotificationKind.RECEIPT: "notify_receipts",
    NotificationKind.REFUND_ISSUED: "notify_receipts",
    NotificationKind.PAYMENT_FAILED: "notify_payment_problems",
    NotificationKind.TRIAL_ENDING: "notify_trial_reminders",
    NotificationKind.PAYMENT_ACTION_REQUIRED: None,
    NotificationKind.SUBSCRIPTION_CANCELED: None,
}
TURNED_OFF = "turned off by the customer"
NO_ADDRESS = "no email address"
REAL_ADDRESS = "the sandbox sends no mail to real addresses"
# Domains that never reach anyone (RFC 2606, RFC 6761), with their subdomains.
RESERVED_DOMAINS = (
    "example.com",
    "example.org",
    "example.net",
    "example",
    "test",
    "invalid",
    "localhost",
)
LEASE_SECONDS = mailer.SEND_TIMEOUT_SECONDS + 30.0  # the send, plus rendering and the PDF
MAX_ERROR_CHARS = 500
# Backoff doubles up to the ceiling; past this many doublings it is the ceiling anyway.
MAX_DOUBLINGS = 32


@dataclass(frozen=True)
class Preferences:
    receipts: bool
    payment_problems: bool
    trial_reminders: bool


# ---- writing mails ----

# One statement: the recipient, the name and whether the customer wants the kind are the
# account's as the cause's transaction sees them (email and name copied sealed as they are).
NOTIFY = """
INSERT INTO notifications
    (account_id, kind, cause, recipient, recipient_name, subject, context, invoice_stripe_id,
     status, last_error)
SELECT account.id, $2, $3, coalesce(account.email, ''), account.name, $4, $5::jsonb, $6,
    CASE WHEN wanted AND coalesce(account.email, '') <> '' THEN 'pending' ELSE 'skipped' END,
    CASE WHEN NOT wanted THEN $7 WHEN coalesce(account.email, '') = '' THEN $8 END
FROM accounts AS account,
    LATERAL (SELECT CASE $9::text
        WHEN 'notify_receipts' THEN account.notify_receipts
        WHEN 'notify_payment_problems' THEN account.notify_payment_problems
        WHEN 'notify_trial_reminders' THEN account.notify_trial_reminders
        ELSE true END AS wanted) AS preference
WHERE account.id = $1
ON CONFLICT (cause) DO NOTHING
"""


async def notify(
    session: AsyncSession,
    *,
    account_id: int,
    kind: NotificationKind,
    cause: str,
    context: dict[str, Any],
    invoice_stripe_id: str | None = None,
) -> None:
    """Owe the account a mail, in the caller's transaction, once per `cause`: a replayed
    cause writes nothing. A kind the customer turned off, or a customer without an address,
    is kept as SKIPPED with the reason. The subject is rendered now, from `context` alone."""
    driver = await driver_of(session)
    await driver.execute(
        NOTIFY,
        account_id,
        kind.value,
        cause,
        _subject(kind, context),
        json.dumps(context),
        invoice_stripe_id,
        TURNED_OFF,
        NO_ADDRESS,
        PREFERENCE_OF[kind],
    )


# ---- rendering ----


@cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _subject(kind: NotificationKind, context: dict[str, Any]) -> str:
    text = _templates().get_template(f"{kind.value}.subject.j2").render(context)
    return " ".join(text.split())  # one line: a header cannot hold a line break


def render(notification: Notification, settings: Settings) -> RenderedMail:
    """The mail as sent: its stored subject and the bodies from its stored context."""
    context = notification.context | {
        "product_name": settings.product_name,
        "customer_name": notification.recipient_name,
    }
    kind = NotificationKind(notification.kind).value
    return RenderedMail(
        subject=notification.subject,
        text=_templates().get_template(f"{kind}.txt.j2").render(context),
        html=_templates().get_template(f"{kind}.html.j2").render(context),
    )


def message_id(notification: Notification, settings: Settings) -> str:
    """The same on every attempt of a mail, and never another mail's."""
    digest = hashlib.sha256(notification.cause.encode()).hexdigest()[:16]
    domain = settings.mail_from.rpartition("@")[2] or "billing-gateway"
    return f"<notification-{notification.id}.{digest}@{domain}>"


def is_test_address(address: str) -> bool:
    """An address at a domain reserved for tests and examples, which reaches nobody."""
    domain = address.rpartition("@")[2].rstrip(".").lower()
    return any(domain == name or domain.endswith(f".{name}") for name in RESERVED_DOMAINS)


# ---- sending ----

CLAIM = """
UPDATE notifications
SET attempts = attempts + 1, next_attempt_at = now() + $1::interval
WHERE id = (
    SELECT id FROM notifications
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING id, account_id, kind, cause, recipient, recipient_name, subject, context,
    invoice_stripe_id, attempts
"""
# Each outcome is written only for the claim it belongs to (attempts), so a worker that
# outlived its lease does not overwrite the attempt that took over.
RECORD_SENT = """
UPDATE notifications SET status = 'sent', sent_at = now(), last_error = NULL
WHERE id = $1 AND attempts = $2 AND status = 'pending'
"""
RECORD_SKIPPED = """
UPDATE notifications SET status = 'skipped', last_error = $3
WHERE id = $1 AND attempts = $2 AND status = 'pending'
"""
RECORD_FAILURE = """
UPDATE notifications
SET last_error = $3, next_attempt_at = now() + $4::interval,
    status = CASE WHEN attempts >= $5 THEN 'failed' ELSE 'pending' END
WHERE id = $1 AND attempts = $2 AND status = 'pending'
RETURNING status
"""


async def send_next(database: Database, settings: Settings) -> int:
    """Claim one due mail and send it: 1 when one was claimed, else 0. Without SMTP_URL
    nothing is claimed: mails wait in the outbox."""
    if settings.smtp_url is None:
        return 0
    claimed = await _claim(database)
    if claimed is None:
        return 0
    refusal = _refusal(claimed, settings)
    if refusal is not None:
        async with database.driver_connection() as connection:
            await connection.execute(RECORD_SKIPPED, claimed.id, claimed.attempts, refusal)
        return 1
    error = await _attempt(database, settings, claimed)
    outcome = await _record(database, settings, claimed, error)
    NOTIFICATIONS_SENT.labels(kind=claimed.kind.value, outcome=outcome).inc()
    return 1


async def _claim(database: Database) -> Notification | None:
    async with database.driver_connection() as connection:
        row = await connection.fetchrow(CLAIM, timedelta(seconds=LEASE_SECONDS))
    if row is None:
        return None
    # A detached row: what render and the attempt read of it.
    values = dict(row) | {
        "kind": NotificationKind(row["kind"]),
        "context": json.loads(row["context"]),
        "recipient": sealed.unseal(row["recipient"]),
        "recipient_name": sealed.unseal(row["recipient_name"]),
    }
    return Notification(**values)


def _refusal(claimed: Notification, settings: Settings) -> str | None:
    """Why the mail is never to be sent (None: send it)."""
    if not claimed.recipient:
        return NO_ADDRESS  # retried while the account still has none
    if settings.uses_sandbox and not is_test_address(claimed.recipient):
        return REAL_ADDRESS
    return None


async def _attempt(database: Database, settings: Settings, claimed: Notification) -> str | None:
    """Render and send once; why it failed, or None when the server accepted it."""
    started = time.perf_counter()
    try:
        message = mailer.build_message(
            settings=settings,
            recipient=claimed.recipient,
            rendered=render(claimed, settings),
            message_id=message_id(claimed, settings),
            attachment=await _attachment(database, settings, claimed),
        )
        await mailer.send(settings, message)
    # Anything, a template's mistake too, counts as a failed attempt: the mail is parked
    # after its last one instead of being claimed again forever.
    except Exception as error:  # noqa: BLE001 (the reason is stored, and logged by _record)
        return _error_text(error, settings)
    finally:
        NOTIFICATION_SEND_DURATION.labels(kind=claimed.kind.value).observe(
            time.perf_counter() - started
        )
    return None


async def _attachment(
    database: Database, settings: Settings, claimed: Notification
) -> tuple[str, bytes] | None:
    """A receipt's invoice as a PDF, named by its number."""
    if claimed.kind is not NotificationKind.RECEIPT or claimed.invoice_stripe_id is None:
        return None
    async with database.read_session() as session:
        invoice_id = await session.scalar(
            select(Invoice.id).where(Invoice.stripe_invoice_id == claimed.invoice_stripe_id)
        )
        document = None
        if invoice_id is not None:
            document = await invoice_pdf.find_document(
                session=session, invoice_id=invoice_id, owner_id=claimed.account_id
            )
    if document is None:
        return None
    pdf = invoice_pdf.render(
        document, seller=settings.invoice_seller, seller_tax_id=settings.invoice_seller_tax_id
    )
    name = document.invoice.number or document.invoice.stripe_invoice_id
    return f"{_safe_filename(name)}.pdf", pdf


def _safe_filename(name: str) -> str:
    return "".join(char if char.isalnum() or char in "-_." else "-" for char in name)


def _error_text(error: Exception, settings: Settings) -> str:
    """The failure as stored and logged: never the SMTP password, however it was echoed."""
    text = f"{type(error).__name__}: {error}"
    password = mailer.smtp_server(settings).password
    for secret in (password, quote(password or "", safe="")):
        if secret:
            text = text.replace(secret, "***")
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


async def _record(
    database: Database, settings: Settings, claimed: Notification, error: str | None
) -> str:
    """Store the attempt's outcome; its name for the metrics."""
    key = (claimed.id, claimed.attempts)
    async with database.driver_connection() as connection:
        if error is None:
            await connection.execute(RECORD_SENT, *key)
            return "sent"
        status = await connection.fetchval(
            RECORD_FAILURE,
            *key,
            error,
            backoff(settings, claimed.attempts),
            settings.notification_max_attempts,
        )
    if status == DeliveryStatus.FAILED:
        log.warning("mail %s given up after %s attempts: %s", claimed.id, claimed.attempts, error)
        return "failed"
    log.info("mail %s not sent, to be tried again: %s", claimed.id, error)
    return "retry"


def backoff(settings: Settings, attempts: int) -> timedelta:
    """How long after its `attempts`-th failed attempt a mail is tried again."""
    doublings = min(max(attempts - 1, 0), MAX_DOUBLINGS)
    seconds = settings.notification_retry_base_seconds * 2**doublings
    return timedelta(seconds=min(seconds, settings.notification_retry_max_seconds))


# ---- reading and managing ----


async def list_notifications(
    database: Database,
    *,
    account_id: int | None,
    statuses: Sequence[DeliveryStatus] | None = None,
    kinds: Sequence[NotificationKind] | None = None,
    first: int | None = None,
    after: str | None = None,
) -> Page[Notification]:
    """Mails newest first: one account's, or everyone's (None, for admins)."""
    listing = Listing.matching(
        Notification.__table__, "created_at", account_id=account_id, status=statuses, kind=kinds
    )
    return await paginate(database, listing, first=first, after=after)


async def retry_notification(session: AsyncSession, *, notification_id: int) -> Notification:
    """Send a parked (failed or skipped) mail again, now, with its attempts counted afresh,
    to the account's current address; in the caller's transaction."""
    mail = await session.get(
        Notification, notification_id, with_for_update=True, populate_existing=True
    )
    if mail is None:
        raise NotFound("No such notification", ["notificationId"])
    if mail.status not in (DeliveryStatus.FAILED, DeliveryStatus.SKIPPED):
        # A pending one may be in a worker's hands right now: due again, it would be sent twice.
        raise DomainError(
            ErrorCode.INVALID_STATE,
            f"The mail is {mail.status.value}: only a failed or skipped one is retried",
            ["notificationId"],
        )
    if not mail.context:
        raise DomainError(
            ErrorCode.INVALID_STATE,
            "The mail's contents were removed (retention or erasure): it cannot be sent",
            ["notificationId"],
        )
    email = await session.scalar(select(Account.email).where(Account.id == mail.account_id))
    mail.recipient = email or mail.recipient
    mail.status, mail.attempts, mail.last_error = DeliveryStatus.PENDING, 0, None
    mail.next_attempt_at = func.now()
    await session.flush()
    await session.refresh(mail)
    return mail


async def preferences_of(session: AsyncSession, *, account_id: int) -> Preferences:
    row = (
        await session.execute(
            select(
                Account.notify_receipts,
                Account.notify_payment_problems,
                Account.notify_trial_reminders,
            ).where(Account.id == account_id)
        )
    ).one_or_none()
    if row is None:
        raise NotFound("No such account")
    return Preferences(*row)


async def update_preferences(
    session: AsyncSession,
    *,
    account_id: int,
    receipts: bool | None,
    payment_problems: bool | None,
    trial_reminders: bool | None,
) -> Preferences:
    """Change what is given (None: unchanged), in the caller's transaction; mails already
    written keep their status."""
    values = {
        column: wanted
        for column, wanted in (
            ("notify_receipts", receipts),
            ("notify_payment_problems", payment_problems),
            ("notify_trial_reminders", trial_reminders),
        )
        if wanted is not None
    }
    if values:
        await session.execute(update(Account).where(Account.id == account_id).values(**values))
    return await preferences_of(session, account_id=account_id)
