"""eraseCustomer through GraphQL: the Stripe customer deleted, the personal data gone from
every table (and kept gone when Stripe's later events about the customer arrive), the
financial records and the ledger kept, refused to non-admins, and the erased token refused
anything it could buy."""

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from db.models import (
    Account,
    AuditLogEntry,
    Invoice,
    PaymentMethod,
    PaymentTransaction,
    StripeEvent,
    TaxId,
    WebhookEventStatus,
)
from services import credits, metrics, retention
from services.errors import DomainError, ErrorCode
from services.stripe.client import StripeApi
from services.webhooks import inbox
from tests.billing.test_commerce import ADD_TAX_ID, SYDNEY, UPDATE_DETAILS, VALID_ABN, create
from tests.billing.test_subscription_mutations import mutate
from tests.conftest import error_codes, graphql
from tests.webhooks import lifecycles

ERASE = """
mutation ($input: EraseCustomerInput!) {
  eraseCustomer(input: $input) {
    customer { id email name address { country } taxIds { value } }
    userErrors { code field message }
  }
}
"""
CUSTOMER_ID = "query { viewer { customer { id email name } } }"


async def paying_customer(
    client, token: str, billing, *, name: str = "Ada Lovelace", email: str = "ada@example.com"
) -> str:
    """A customer with a name, an address, an ABN and a paid subscription; their id."""
    details = await mutate(
        client,
        UPDATE_DETAILS,
        token,
        name=name,
        email=email,
        address=SYDNEY | {"country": "AU"},
    )
    assert details["userErrors"] == []
    assert (await mutate(client, ADD_TAX_ID, token, type="au_abn", value=VALID_ABN))[
        "userErrors"
    ] == []
    assert (await create(client, token, billing, "pro_monthly"))["userErrors"] == []
    result = await graphql(client, CUSTOMER_ID, token=token)
    return result["data"]["viewer"]["customer"]["id"]


async def erase(client, token: str, customer_id: str, key: str = "erase-1") -> dict[str, Any]:
    result = await graphql(
        client, ERASE, {"input": {"customerId": customer_id, "idempotencyKey": key}}, token=token
    )
    assert "errors" not in result, result
    return result["data"]["eraseCustomer"]


async def account_of(db, user_id: str) -> Account:
    async with db.session() as session:
        return (await session.scalars(select(Account).where(Account.user_id == user_id))).one()


async def count(db, model, account_id: int) -> int:
    async with db.session() as session:
        return await session.scalar(
            select(func.count()).select_from(model).where(model.account_id == account_id)
        )


async def test_erasure_deletes_the_personal_data_and_keeps_the_books(
    client, db, billing, token_for
):
    token, admin = token_for("ada"), token_for("ops", admin=True)
    customer_id = await paying_customer(client, token, billing)
    before = await account_of(db, "ada")
    invoices_before = await count(db, Invoice, before.id)
    async with db.session() as session, session.begin():
        for event_id, status in (
            ("evt_about_ada", WebhookEventStatus.PROCESSED),
            ("evt_failed_ada", WebhookEventStatus.FAILED),
        ):
            session.add(
                StripeEvent(
                    stripe_event_id=event_id,
                    type="customer.updated",
                    stripe_created_at=datetime.now(UTC),
                    object_id=before.stripe_customer_id,
                    payload={
                        "id": event_id,
                        "type": "customer.updated",
                        "created": 1796600000,
                        "data": {"object": {"id": before.stripe_customer_id, "email": "ada@x"}},
                    },
                    status=status,
                )
            )
    async with db.session() as session:
        paid_before = await session.scalar(
            select(func.sum(Invoice.amount_paid)).where(Invoice.account_id == before.id)
        )

    erased = await erase(client, admin, customer_id)

    assert erased["userErrors"] == []
    assert erased["customer"] == {
        "id": customer_id,
        "email": None,
        "name": None,
        "address": None,
        "taxIds": [],
    }
    remote = await billing.stripe.v1.customers.retrieve_async(before.stripe_customer_id)
    assert getattr(remote, "deleted", False) is True
    after = await account_of(db, "ada")
    assert after.erased_at is not None and after.user_id == "ada"
    assert await count(db, TaxId, after.id) == 0 and await count(db, PaymentMethod, after.id) == 0
    assert await count(db, Invoice, after.id) == invoices_before
    async with db.session() as session:
        invoices = (
            await session.scalars(select(Invoice).where(Invoice.account_id == after.id))
        ).all()
        paid_after = await session.scalar(
            select(func.sum(Invoice.amount_paid)).where(Invoice.account_id == after.id)
        )
        receipts = await session.scalars(
            select(PaymentTransaction.receipt_url).where(PaymentTransaction.account_id == after.id)
        )
        audit = (
            await session.scalars(
                select(AuditLogEntry).where(
                    AuditLogEntry.account_id == after.id, AuditLogEntry.action == "customer.erased"
                )
            )
        ).all()
        mismatches = await credits.find_mismatches(session=session)
        event, failed = (
            await session.scalars(
                select(StripeEvent)
                .where(StripeEvent.object_id == before.stripe_customer_id)
                .order_by(StripeEvent.stripe_event_id)
            )
        ).all()
    async with db.session() as session:
        with pytest.raises(DomainError) as replay:
            await inbox.replay_event(session=session, event_id="evt_failed_ada")
    assert paid_after == paid_before and paid_before > 0
    assert all(inv.customer_address is None and inv.customer_tax_ids is None for inv in invoices)
    assert set(receipts) <= {None}
    assert len(audit) == 1 and audit[0].actor == "admin:ops"
    assert mismatches == []
    assert retention.is_stripped(event.payload) and "ada@x" not in str(event.payload)
    assert (event.payload["id"], event.payload["type"]) == ("evt_about_ada", "customer.updated")
    assert event.status is WebhookEventStatus.PROCESSED
    assert failed.status is WebhookEventStatus.SKIPPED and retention.is_stripped(failed.payload)
    assert replay.value.code is ErrorCode.INVALID_STATE


async def test_erasure_is_idempotent_and_for_admins_only(client, db, billing, token_for):
    token, admin = token_for("ada"), token_for("ops", admin=True)
    customer_id = await paying_customer(client, token, billing)

    refused = await graphql(
        client, ERASE, {"input": {"customerId": customer_id, "idempotencyKey": "k"}}, token=token
    )
    first = await erase(client, admin, customer_id)
    again = await erase(client, admin, customer_id, key="erase-2")
    unknown = await erase(client, admin, "Q3VzdG9tZXI6OTk5OTk")

    assert error_codes(refused) == ["FORBIDDEN"]
    assert first == again
    assert [error["code"] for error in unknown["userErrors"]] == ["NOT_FOUND"]
    async with db.session() as session:
        erasures = await session.scalar(
            select(func.count())
            .select_from(AuditLogEntry)
            .where(AuditLogEntry.action == "customer.erased")
        )
    assert erasures == 1


async def test_an_erased_token_can_buy_nothing(client, db, billing, token_for):
    token, admin = token_for("ada"), token_for("ops", admin=True)
    await erase(client, admin, await paying_customer(client, token, billing))

    bought = await create(client, token, billing, "starter_monthly")
    details = await mutate(client, UPDATE_DETAILS, token, name="Ada again")
    viewer = await graphql(client, CUSTOMER_ID, token=token)

    assert [error["code"] for error in bought["userErrors"]] == ["CUSTOMER_ERASED"]
    assert [error["code"] for error in details["userErrors"]] == ["CUSTOMER_ERASED"]
    assert viewer["data"]["viewer"]["customer"]["email"] is None
    assert viewer["data"]["viewer"]["customer"]["name"] is None


async def test_stripes_later_events_bring_nothing_personal_back(
    client, db, billing, settings, token_for
):
    token, admin = token_for("ada"), token_for("ops", admin=True)
    customer_id = await paying_customer(client, token, billing)
    account = await account_of(db, "ada")
    await erase(client, admin, customer_id)

    # Every event about the customer, from its creation to its deletion, applied now.
    events = await lifecycles.events_of(billing, account.stripe_customer_id)
    async with StripeApi(settings, billing.sandbox.url) as api:
        await lifecycles.apply_all(db, api, events)

    after = await account_of(db, "ada")
    assert (after.email, after.name, after.address) == (None, None, None)
    assert await count(db, TaxId, after.id) == 0
    async with db.session() as session:
        addresses = await session.scalars(
            select(Invoice.customer_address).where(Invoice.account_id == after.id)
        )
        computed = await metrics.compute(session=session, now=after.erased_at)
    assert set(addresses) == {None}
    async with db.session() as session:
        sql_nulls = await session.scalar(
            select(func.count())
            .select_from(Invoice)
            .where(Invoice.account_id == after.id, Invoice.customer_address.is_(None))
        )
    assert sql_nulls == await count(db, Invoice, after.id)
    # Stripe canceled the subscription with the customer: it no longer counts.
    assert computed.active_subscriptions == 0


EXPORT = """
mutation { exportMyData { export { url expiresAt } userErrors { code message } } }
"""


async def test_export_through_graphql_is_the_owners_alone(client, db, billing, token_for):
    token = token_for("ada")
    await paying_customer(client, token, billing)

    result = await graphql(client, EXPORT, token=token)
    payload = result["data"]["exportMyData"]
    assert payload["userErrors"] == []
    url = payload["export"]["url"]
    assert url.startswith("http://gateway.test/exports/")
    assert datetime.fromisoformat(payload["export"]["expiresAt"]) > datetime.now(UTC)

    path = url.removeprefix("http://gateway.test")
    mine = await client.get(path, headers={"Authorization": f"Bearer {token}"})
    theirs = await client.get(path, headers={"Authorization": f"Bearer {token_for('bob')}"})
    anonymous = await client.get(path)

    assert mine.status_code == 200
    archive = mine.json()
    assert archive["profile"]["email"] == "ada@example.com"
    assert [tax_id["value"] for tax_id in archive["profile"]["taxIds"]] == ["51824753556"]
    assert len(archive["subscriptions"]) == 1 and archive["invoices"][0]["lines"]
    assert (theirs.status_code, anonymous.status_code) == (404, 401)


async def test_an_erased_customer_has_nothing_to_export(client, db, billing, token_for):
    token = token_for("ada")
    await erase(client, token_for("ops", admin=True), await paying_customer(client, token, billing))

    result = await graphql(client, EXPORT, token=token)

    assert [error["code"] for error in result["data"]["exportMyData"]["userErrors"]] == [
        "CUSTOMER_ERASED"
    ]


async def test_events_after_an_erasure_are_stripped_by_the_next_retention_pass(
    client, db, billing, settings, token_for
):
    token, admin = token_for("ada"), token_for("ops", admin=True)
    customer_id = await paying_customer(client, token, billing)
    account = await account_of(db, "ada")
    await erase(client, admin, customer_id)
    # Stripe's events about the deleted customer, received (and applied) after the erasure.
    async with db.session() as session, session.begin():
        for event_id, customer in (
            ("evt_late_ada", account.stripe_customer_id),
            ("evt_someone_else", "cus_someone_else"),
        ):
            session.add(
                StripeEvent(
                    stripe_event_id=event_id,
                    type="invoice.voided",
                    stripe_created_at=datetime.now(UTC),
                    object_id="in_late",
                    payload={
                        "id": event_id,
                        "type": "invoice.voided",
                        "created": 1796600000,
                        "data": {"object": {"id": "in_late", "customer": customer, "x": "ada@x"}},
                    },
                    status=WebhookEventStatus.PROCESSED,
                )
            )

    report = await retention.run(db, settings)

    assert report.event_payloads_stripped == 1
    async with db.session() as session:
        payloads = {
            row.stripe_event_id: row.payload
            for row in await session.scalars(
                select(StripeEvent).where(StripeEvent.object_id == "in_late")
            )
        }
    assert retention.is_stripped(payloads["evt_late_ada"])
    assert "ada@x" not in str(payloads["evt_late_ada"])
    assert payloads["evt_someone_else"]["data"]["object"]["x"] == "ada@x"
