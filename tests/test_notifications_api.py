"""The contract's notifications block through GraphQL: a customer's mails and preferences
(their own only), and the admin's mails, endpoints and deliveries (admins only)."""

from typing import Any

from sqlalchemy import update

from db.models import DeliveryStatus, Notification, NotificationKind, ProductWebhookDelivery
from schema.ids import row_id_of
from services import accounts, notifications, product_webhooks
from tests.conftest import error_codes, graphql

PREFERENCES = "receipts paymentProblems trialReminders"
UPDATE_PREFERENCES = f"""
mutation ($input: UpdateNotificationPreferencesInput!) {{
  updateNotificationPreferences(input: $input) {{
    preferences {{ {PREFERENCES} }} userErrors {{ code field message }}
  }}
}}
"""
MY_MAILS = f"""
query {{ viewer {{
  notificationPreferences {{ {PREFERENCES} }}
  notifications(first: 10) {{ totalCount edges {{ node {{
    id kind status recipient subject attempts lastError createdAt sentAt text
  }} }} }}
}} }}
"""
ALL_MAILS = """
query ($status: [DeliveryStatus!], $kind: [NotificationKind!]) { admin {
  notifications(first: 10, status: $status, kind: $kind) {
    totalCount edges { node { id kind status recipient } }
  }
} }
"""
ENDPOINT = "id url eventTypes enabled createdAt"
CREATE_ENDPOINT = f"""
mutation ($input: CreateProductWebhookEndpointInput!) {{
  createProductWebhookEndpoint(input: $input) {{
    endpoint {{ {ENDPOINT} }} secret userErrors {{ code field message }}
  }}
}}
"""
ROTATE = f"""
mutation ($input: RotateProductWebhookSecretInput!) {{
  rotateProductWebhookSecret(input: $input) {{
    endpoint {{ {ENDPOINT} }} secret userErrors {{ code field message }}
  }}
}}
"""
DELETE = """
mutation ($input: DeleteProductWebhookEndpointInput!) {
  deleteProductWebhookEndpoint(input: $input) { deletedEndpointId userErrors { code field } }
}
"""
ENDPOINTS = f"query {{ admin {{ productWebhookEndpoints {{ {ENDPOINT} }} }} }}"
DELIVERIES = """
query ($status: [DeliveryStatus!]) { admin { productWebhookDeliveries(first: 10, status: $status) {
  totalCount edges { node {
    id messageId eventType status attempts responseStatus lastError createdAt deliveredAt
  } }
} } }
"""
RETRY_DELIVERY = """
mutation ($input: RetryProductWebhookDeliveryInput!) {
  retryProductWebhookDelivery(input: $input) {
    delivery { id status messageId } userErrors { code field }
  }
}
"""
RETRY_MAIL = """
mutation ($input: RetryNotificationInput!) {
  retryNotification(input: $input) { notification { id status } userErrors { code field } }
}
"""


async def data(client, document: str, token: str, **variables: Any) -> dict[str, Any]:
    result = await graphql(client, document, variables, token=token)
    assert "errors" not in result, result
    return result["data"]


async def mutate(client, document: str, token: str, **fields: Any) -> dict[str, Any]:
    result = await data(client, document, token, input=fields)
    return next(iter(result.values()))


async def mail_for(db, user_id: str, kind: NotificationKind, cause: str) -> int:
    """A mail in the outbox of `user_id` (its account made, with an address)."""
    async with db.session() as session:
        account = await accounts.ensure_account(
            session=session, user_id=user_id, email=f"{user_id}@example.com"
        )
    async with db.session() as session, session.begin():
        await notifications.notify(
            session,
            account_id=account.id,
            kind=kind,
            cause=cause,
            context={"invoice_number": "INV-1", "amount": "$29.00", "plan_name": "Pro"},
        )
    return account.id


async def test_preferences_are_the_customers_own(client, token_for):
    alice, bob = token_for("alice"), token_for("bob")
    assert (await data(client, MY_MAILS, alice))["viewer"]["notificationPreferences"] == {
        "receipts": True,
        "paymentProblems": True,
        "trialReminders": True,
    }

    updated = await mutate(client, UPDATE_PREFERENCES, alice, receipts=False)

    assert updated["userErrors"] == []
    assert updated["preferences"] == {
        "receipts": False,
        "paymentProblems": True,
        "trialReminders": True,
    }
    assert (await data(client, MY_MAILS, alice))["viewer"]["notificationPreferences"][
        "receipts"
    ] is False
    assert (await data(client, MY_MAILS, bob))["viewer"]["notificationPreferences"][
        "receipts"
    ] is True


async def test_a_customer_sees_only_their_own_mails(client, db, token_for):
    await mail_for(db, "alice", NotificationKind.RECEIPT, "receipt:in_alice")
    await mail_for(db, "bob", NotificationKind.PAYMENT_FAILED, "payment_failed:evt_bob")

    mine = (await data(client, MY_MAILS, token_for("alice")))["viewer"]["notifications"]

    assert mine["totalCount"] == 1
    (mail,) = [edge["node"] for edge in mine["edges"]]
    assert mail["kind"] == "RECEIPT" and mail["status"] == "PENDING"
    assert mail["recipient"] == "alice@example.com" and "INV-1" in mail["subject"]
    assert mail["attempts"] == 0 and mail["sentAt"] is None
    # Unsent (no SMTP_URL), the mail is read where it waits.
    assert "INV-1" in mail["text"] and "$29.00" in mail["text"]


async def test_admins_list_every_mail_and_customers_may_not(client, db, token_for):
    await mail_for(db, "alice", NotificationKind.RECEIPT, "receipt:in_alice")
    await mail_for(db, "bob", NotificationKind.PAYMENT_FAILED, "payment_failed:evt_bob")
    admin = token_for("ops", admin=True)

    everything = (await data(client, ALL_MAILS, admin))["admin"]["notifications"]
    failed = (await data(client, ALL_MAILS, admin, kind=["PAYMENT_FAILED"]))["admin"]
    sent = (await data(client, ALL_MAILS, admin, status=["SENT"]))["admin"]
    refused = await graphql(client, ALL_MAILS, token=token_for("alice"))

    assert everything["totalCount"] == 2
    assert [edge["node"]["recipient"] for edge in failed["notifications"]["edges"]] == [
        "bob@example.com"
    ]
    assert sent["notifications"]["totalCount"] == 0
    assert error_codes(refused) == ["FORBIDDEN"]


async def test_a_parked_mail_is_retried_by_an_admin_only(client, db, token_for):
    await mail_for(db, "alice", NotificationKind.RECEIPT, "receipt:in_alice")
    async with db.session() as session, session.begin():
        await session.execute(update(Notification).values(status=DeliveryStatus.FAILED, attempts=8))
    mail_id = (await data(client, ALL_MAILS, token_for("ops", admin=True)))["admin"][
        "notifications"
    ]["edges"][0]["node"]["id"]

    refused = await graphql(
        client, RETRY_MAIL, {"input": {"notificationId": mail_id}}, token=token_for("alice")
    )
    retried = await mutate(client, RETRY_MAIL, token_for("ops", admin=True), notificationId=mail_id)

    assert error_codes(refused) == ["FORBIDDEN"]
    assert retried["userErrors"] == [] and retried["notification"]["status"] == "PENDING"


async def test_endpoints_are_created_rotated_and_deleted_by_admins(client, token_for):
    admin = token_for("ops", admin=True)
    refused = await graphql(
        client,
        CREATE_ENDPOINT,
        {"input": {"url": "https://hooks.example.com/billing"}},
        token=token_for("alice"),
    )
    bad_url = await mutate(client, CREATE_ENDPOINT, admin, url="not a url")
    bad_type = await mutate(
        client, CREATE_ENDPOINT, admin, url="https://hooks.example.com/b", eventTypes=["nope"]
    )

    created = await mutate(
        client,
        CREATE_ENDPOINT,
        admin,
        url="https://hooks.example.com/billing",
        eventTypes=["invoice.paid", "access.updated"],
    )
    endpoint = created["endpoint"]
    rotated = await mutate(client, ROTATE, admin, endpointId=endpoint["id"])
    listed = (await data(client, ENDPOINTS, admin))["admin"]["productWebhookEndpoints"]
    deleted = await mutate(client, DELETE, admin, endpointId=endpoint["id"])
    again = await mutate(client, DELETE, admin, endpointId=endpoint["id"])

    assert error_codes(refused) == ["FORBIDDEN"]
    assert [(error["code"], error["field"]) for error in bad_url["userErrors"]] == [
        ("INVALID_INPUT", ["url"])
    ]
    assert [error["field"] for error in bad_type["userErrors"]] == [["eventTypes"]]
    assert created["userErrors"] == [] and created["secret"].startswith("whsec_")
    assert endpoint["eventTypes"] == ["invoice.paid", "access.updated"] and endpoint["enabled"]
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
    assert listed == [endpoint]
    assert deleted == {"deletedEndpointId": endpoint["id"], "userErrors": []}
    assert (await data(client, ENDPOINTS, admin))["admin"]["productWebhookEndpoints"] == []
    assert [error["code"] for error in again["userErrors"]] == ["NOT_FOUND"]


async def test_deliveries_are_listed_and_a_failed_one_retried(client, db, settings, token_for):
    admin = token_for("ops", admin=True)
    created = await mutate(client, CREATE_ENDPOINT, admin, url="https://hooks.example.com/b")
    assert created["userErrors"] == []
    async with db.session() as session, session.begin():
        await product_webhooks.publish(
            session, type="credits.updated", cause="test:1", account_id=None, data={"n": 1}
        )
        await session.execute(
            update(ProductWebhookDelivery).values(
                status=DeliveryStatus.FAILED, attempts=3, last_error="HTTP 500"
            )
        )

    failed = (await data(client, DELIVERIES, admin, status=["FAILED"]))["admin"]
    (delivery,) = [edge["node"] for edge in failed["productWebhookDeliveries"]["edges"]]
    retried = await mutate(client, RETRY_DELIVERY, admin, deliveryId=delivery["id"])
    refused = await graphql(
        client, RETRY_DELIVERY, {"input": {"deliveryId": delivery["id"]}}, token=token_for("a")
    )

    assert delivery["eventType"] == "credits.updated" and delivery["messageId"].startswith("msg_")
    assert delivery["lastError"] == "HTTP 500"
    assert retried["userErrors"] == [] and retried["delivery"]["status"] == "PENDING"
    assert retried["delivery"]["messageId"] == delivery["messageId"]
    assert error_codes(refused) == ["FORBIDDEN"]


async def test_metrics_show_the_outbox(client, db, token_for):
    await mail_for(db, "alice", NotificationKind.RECEIPT, "receipt:in_alice")
    created = await mutate(
        client, CREATE_ENDPOINT, token_for("ops", admin=True), url="https://hooks.example.com/b"
    )
    endpoint_row = row_id_of(created["endpoint"]["id"], "ProductWebhookEndpoint")
    async with db.session() as session, session.begin():
        await product_webhooks.publish(
            session, type="credits.updated", cause="test:1", account_id=None, data={}
        )

    text = (await client.get("/metrics")).text

    assert 'billing_outbox_mails{kind="receipt",status="pending"} 1.0' in text
    assert (
        f'billing_outbox_webhook_deliveries{{endpoint="{endpoint_row}",status="pending"}} 1.0'
        in text
    )
