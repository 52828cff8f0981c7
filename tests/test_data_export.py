"""exportMyData's archive over HTTP: every section filled through the real flows, no card
number anywhere, only the owner may fetch it (401 without a token; 404 for anyone else,
admins included, and for unknown or expired tokens), every download audited, the first one
marked."""

import json
import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, update

from db.models import (
    Account,
    AuditLogEntry,
    DataExport,
    NotificationKind,
    PaymentTransaction,
)
from schema.ids import to_global_id
from services import data_export, notifications
from services.audit import Actor
from tests.billing.test_payment_mutations import refund
from tests.conftest import graphql
from tests.test_privacy import paying_customer

BASE_URL = "http://gateway.test"
# What a card number would look like anywhere in the archive's text.
DIGIT_RUN = re.compile(r"\d{13,19}")
CARD_KEYS = {"type", "brand", "last4", "expMonth", "expYear"}
SECTIONS = {
    "format",
    "exportedAt",
    "profile",
    "subscriptions",
    "invoices",
    "payments",
    "paymentMethods",
    "creditLedger",
    "notifications",
}


async def account_of(db, user_id: str) -> Account:
    async with db.session() as session:
        return (await session.scalars(select(Account).where(Account.user_id == user_id))).one()


async def signed_in(client, token: str) -> None:
    """The caller's account, made on first sight as every signed-in request makes it."""
    result = await graphql(client, "query { viewer { customer { id } } }", token=token)
    assert "errors" not in result, result


async def new_export(db, settings, user_id: str) -> str:
    """An export of the user's data, as exportMyData makes it; its URL's path."""
    account = await account_of(db, user_id)
    async with db.session() as session:
        url, expires_at = await data_export.create_export(
            session,
            account_id=account.id,
            settings=settings,
            base_url=BASE_URL,
            actor=Actor(f"user:{user_id}", "req-export-1"),
        )
    assert expires_at > datetime.now(UTC)
    assert url.startswith(f"{BASE_URL}/exports/")
    return url.removeprefix(BASE_URL)


async def download(client, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await client.get(path, headers=headers)


async def audit_actions(db, account_id: int) -> list[str]:
    async with db.session() as session:
        rows = await session.scalars(
            select(AuditLogEntry.action)
            .where(AuditLogEntry.account_id == account_id)
            .order_by(AuditLogEntry.id)
        )
        return [action for action in rows if action.startswith("data_export.")]


async def exports(db) -> list[DataExport]:
    async with db.session() as session:
        return list((await session.scalars(select(DataExport).order_by(DataExport.id))).all())


async def customer_with_everything(client, db, billing, token_for) -> Account:
    """Ada: billing details, an ABN, a paid subscription (its invoice, payment, card and
    credits), a partial refund by an admin and a receipt owed."""
    await paying_customer(client, token_for("ada"), billing)
    account = await account_of(db, "ada")
    async with db.session() as session:
        payment = (
            await session.scalars(
                select(PaymentTransaction).where(PaymentTransaction.account_id == account.id)
            )
        ).one()
    admin = token_for("ops", admin=True)
    refunded = await refund(
        client, admin, to_global_id("PaymentTransaction", payment.id), amount="500"
    )
    assert refunded["data"]["refundPayment"]["userErrors"] == [], refunded
    async with db.session() as session, session.begin():
        await notifications.notify(
            session,
            account_id=account.id,
            kind=NotificationKind.RECEIPT,
            cause=f"receipt:{payment.invoice_stripe_id}",
            context={"invoice_number": "INV-1"},
            invoice_stripe_id=payment.invoice_stripe_id,
        )
    return account


# --- the archive ---------------------------------------------------------------------------


async def test_the_archive_holds_every_section_and_no_card_number(
    client, db, billing, settings, token_for
):
    await customer_with_everything(client, db, billing, token_for)
    path = await new_export(db, settings, "ada")

    response = await download(client, path, token_for("ada"))

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-disposition"] == 'attachment; filename="billing-export.json"'
    assert response.headers["cache-control"] == "private, no-store"
    archive = response.json()
    assert set(archive) == SECTIONS
    assert archive["format"] == "billing-gateway-export/1"
    assert not DIGIT_RUN.search(response.text), DIGIT_RUN.search(response.text)

    profile = archive["profile"]
    assert (profile["userId"], profile["email"], profile["name"]) == (
        "ada",
        "ada@example.com",
        "Ada Lovelace",
    )
    assert profile["address"]["country"] == "AU" and profile["address"]["city"] == "Sydney"
    assert profile["currency"] == "usd"
    assert [(tax["type"], tax["value"]) for tax in profile["taxIds"]] == [("au_abn", "51824753556")]
    assert profile["notificationPreferences"] == {
        "receipts": True,
        "paymentProblems": True,
        "trialReminders": True,
    }
    assert datetime.fromisoformat(profile["createdAt"]) <= datetime.now(UTC)

    (subscription,) = archive["subscriptions"]
    assert subscription["status"] == "active"
    assert subscription["plan"]["amount"] == 2900 and subscription["plan"]["currency"] == "usd"

    (invoice,) = archive["invoices"]
    assert invoice["status"] == "paid" and invoice["subscriptionId"] == subscription["id"]
    # A Sydney address: Australian GST on top, in the invoice's own currency's minor units.
    assert (invoice["subtotal"], invoice["tax"], invoice["total"]) == (2900, 290, 3190)
    assert invoice["amountPaid"] == 3190 and invoice["currency"] == "usd"
    assert [tax["country"] for tax in invoice["taxes"]] == ["AU"]
    assert [line["amount"] for line in invoice["lines"]] == [2900]

    (payment,) = archive["payments"]
    assert payment["invoiceId"] == invoice["id"] and payment["status"] == "succeeded"
    assert (payment["amount"], payment["amountRefunded"], payment["currency"]) == (3190, 500, "usd")

    (card,) = archive["paymentMethods"]
    assert set(card) == CARD_KEYS
    assert (card["type"], card["brand"], card["last4"]) == ("card", "visa", "4242")
    assert 1 <= card["expMonth"] <= 12 and isinstance(card["expYear"], int)

    ledger = archive["creditLedger"]
    assert [entry["kind"] for entry in ledger] == ["grant", "reversal"]
    balance = 0
    for entry in ledger:
        balance += entry["amount"]
        assert entry["balanceAfter"] == balance

    (mail,) = archive["notifications"]
    assert mail["kind"] == "receipt" and mail["subject"] == "Receipt for invoice INV-1"
    assert mail["recipient"] == "ada@example.com" and mail["sentAt"] is None
    assert set(mail) == {"kind", "status", "subject", "recipient", "createdAt", "sentAt"}


async def test_an_account_with_nothing_yet_exports_empty_sections(client, db, settings, token_for):
    await signed_in(client, token_for("bob"))
    path = await new_export(db, settings, "bob")

    archive = (await download(client, path, token_for("bob"))).json()

    assert archive["profile"]["userId"] == "bob" and archive["profile"]["taxIds"] == []
    for section in ("subscriptions", "invoices", "payments", "paymentMethods"):
        assert archive[section] == [], section
    assert archive["creditLedger"] == [] and archive["notifications"] == []
    json.dumps(archive)  # plain JSON all the way down


# --- who may fetch it ----------------------------------------------------------------------


async def test_without_a_token_or_with_a_bad_one_it_is_401(client, db, settings, token_for):
    await signed_in(client, token_for("ada"))
    path = await new_export(db, settings, "ada")

    missing = await download(client, path, None)
    forged = await download(client, path, "not-a-jwt")

    assert missing.status_code == 401 and forged.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert (await exports(db))[0].downloaded_at is None


@pytest.mark.parametrize("caller", ["mallory", "stranger", "admin"])
async def test_anyone_but_the_owner_gets_404(client, db, settings, token_for, caller):
    """An admin too: the archive is the customer's own copy (admins have the admin API)."""
    await signed_in(client, token_for("ada"))
    await signed_in(client, token_for("mallory"))
    await signed_in(client, token_for("root", admin=True))
    path = await new_export(db, settings, "ada")
    tokens = {
        "mallory": token_for("mallory"),  # another customer
        "stranger": token_for("stranger"),  # never seen: has no account at all
        "admin": token_for("root", admin=True),
    }

    response = await download(client, path, tokens[caller])

    assert response.status_code == 404
    ada = await account_of(db, "ada")
    assert await audit_actions(db, ada.id) == ["data_export.created"]
    assert (await exports(db))[0].downloaded_at is None


async def test_an_unknown_or_expired_token_is_404(client, db, settings, token_for):
    token = token_for("ada")
    await signed_in(client, token)
    path = await new_export(db, settings, "ada")
    async with db.session() as session, session.begin():
        await session.execute(
            update(DataExport).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )

    expired = await download(client, path, token)
    unknown = await download(client, "/exports/" + "A" * 43, token)

    assert expired.status_code == 404 and unknown.status_code == 404
    assert expired.json() == unknown.json()  # nothing tells them apart


# --- records -------------------------------------------------------------------------------


async def test_the_export_keeps_only_the_token_hash_and_expires_after_the_ttl(
    client, db, settings, token_for
):
    await signed_in(client, token_for("ada"))
    before = datetime.now(UTC)
    path = await new_export(db, settings, "ada")

    (row,) = await exports(db)
    token = path.removeprefix("/exports/")
    assert len(token) >= 43 and token not in row.token_hash
    assert row.token_hash == data_export.token_hash(token)
    ttl = timedelta(seconds=settings.data_export_ttl_seconds)
    assert before + ttl <= row.expires_at <= datetime.now(UTC) + ttl


async def test_each_download_is_audited_and_the_first_is_marked(client, db, settings, token_for):
    token = token_for("ada")
    await signed_in(client, token)
    path = await new_export(db, settings, "ada")
    ada = await account_of(db, "ada")

    first = await download(client, path, token)
    (row,) = await exports(db)
    second = await download(client, path, token)

    assert first.status_code == 200 and second.status_code == 200
    (again,) = await exports(db)
    assert row.downloaded_at is not None and again.downloaded_at == row.downloaded_at
    assert await audit_actions(db, ada.id) == [
        "data_export.created",
        "data_export.downloaded",
        "data_export.downloaded",
    ]
    async with db.session() as session:
        entries = (
            await session.scalars(
                select(AuditLogEntry)
                .where(AuditLogEntry.action.startswith("data_export."))
                .order_by(AuditLogEntry.id)
            )
        ).all()
    assert {entry.actor for entry in entries} == {"user:ada"}
    assert {entry.details["export_id"] for entry in entries} == {row.id}
    assert entries[0].request_id == "req-export-1"
    downloads = [entry.request_id for entry in entries[1:]]
    assert all(downloads) and downloads[0] != downloads[1]  # each the request's own id
    assert downloads[0] == first.headers["x-request-id"]
