"""Payment methods, one-time payments, invoice payments and refunds, end to end:
GraphQL -> service -> Stripe (sandbox) -> mirror, with every user error they can give."""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from db.models import (
    Account,
    AuditLogEntry,
    Invoice,
    InvoiceStatus,
    PaymentMethod,
    PaymentStatus,
    PaymentTransaction,
)
from schema.ids import to_global_id
from services import subscriptions
from services.stripe.client import StripeApi
from tests.conftest import Billing, error_codes, graphql

pytestmark = pytest.mark.usefixtures("billing")

ATTACH = """
mutation ($input: AttachPaymentMethodInput!) {
  attachPaymentMethod(input: $input) {
    paymentMethod { id stripePaymentMethodId type brand last4 expMonth expYear isDefault }
    userErrors { code field }
  }
}
"""
SET_DEFAULT = """
mutation ($input: SetDefaultPaymentMethodInput!) {
  setDefaultPaymentMethod(input: $input) {
    paymentMethod { id stripePaymentMethodId isDefault }
    userErrors { code field }
  }
}
"""
DETACH = """
mutation ($input: DetachPaymentMethodInput!) {
  detachPaymentMethod(input: $input) { detachedPaymentMethodId userErrors { code field } }
}
"""
TRANSACTION_FIELDS = """
  id stripePaymentIntentId status description failureCode
  amount { amount currency } amountRefunded { amount currency }
  invoice { id }
"""
CREATE_PAYMENT = f"""
mutation ($input: CreatePaymentInput!) {{
  createPayment(input: $input) {{
    transaction {{ {TRANSACTION_FIELDS} }}
    clientSecret requiresAction
    userErrors {{ code field }}
  }}
}}
"""
PAY_INVOICE = """
mutation ($input: PayInvoiceInput!) {
  payInvoice(input: $input) {
    invoice { id stripeInvoiceId status amountDue { amount } amountPaid { amount } }
    clientSecret requiresAction
    userErrors { code field }
  }
}
"""
REFUND = f"""
mutation ($input: RefundPaymentInput!) {{
  refundPayment(input: $input) {{
    transaction {{ {TRANSACTION_FIELDS} }}
    userErrors {{ code field }}
  }}
}}
"""
VIEWER_METHODS = """
{ viewer {
    paymentMethods { id stripePaymentMethodId isDefault }
    customer { defaultPaymentMethod { id } }
} }
"""

Faults = Callable[..., Awaitable[None]]


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture
async def faults(billing: Billing) -> AsyncIterator[Faults]:
    """Inject Stripe failures; whatever is left of them is cleared afterwards (a store reset
    does not clear faults, and a 429 is not retried, so some may be left)."""
    async with httpx.AsyncClient(base_url=billing.sandbox.url) as browser:

        async def inject(
            status: int | None, path: str, *, method: str = "POST", count: int = 3, delay: float = 0
        ) -> None:
            form = {"path": path, "method": method, "count": str(count), "delay": str(delay)}
            if status is not None:
                form["status"] = str(status)
            (await browser.post("/_sandbox/faults", data=form)).raise_for_status()

        yield inject
        await browser.delete("/_sandbox/faults")


async def authenticate(billing: Billing, intent_id: str, outcome: str) -> None:
    """The customer answers the 3-D Secure challenge in their browser."""
    async with httpx.AsyncClient(base_url=billing.sandbox.url) as browser:
        answer = await browser.post(
            f"/_sandbox/payment_intents/{intent_id}/authenticate", data={"outcome": outcome}
        )
    answer.raise_for_status()


async def signed_in(client, token: str) -> None:
    """The caller's first request, which creates their account."""
    await graphql(client, "{ viewer { userId } }", token=token)


async def account_of(db, user_id: str) -> Account:
    async with db.session() as session:
        return (await session.scalars(select(Account).where(Account.user_id == user_id))).one()


def payload(result: dict[str, Any], name: str) -> dict[str, Any]:
    assert "errors" not in result, result["errors"]
    return result["data"][name]


def codes(data: dict[str, Any]) -> list[tuple[str, list[str] | None]]:
    return [(error["code"], error["field"]) for error in data["userErrors"]]


async def attach(client, token: str, method: str, make_default: bool = False) -> dict[str, Any]:
    result = await graphql(
        client,
        ATTACH,
        {"input": {"paymentMethodId": method, "makeDefault": make_default}},
        token=token,
    )
    data = payload(result, "attachPaymentMethod")
    assert data["userErrors"] == []
    return data["paymentMethod"]


async def pay(client, token: str, **input: Any) -> dict[str, Any]:
    values = {"amount": "1250", "currency": "usd", "idempotencyKey": "pay-1"} | input
    return payload(
        await graphql(client, CREATE_PAYMENT, {"input": values}, token=token), "createPayment"
    )


async def paid(client, token: str, amount: int = 1250, key: str = "paid-1") -> dict[str, Any]:
    """A succeeded one-time payment of `amount` cents."""
    data = await pay(
        client, token, amount=str(amount), paymentMethodId="pm_card_visa", idempotencyKey=key
    )
    assert data["transaction"]["status"] == "SUCCEEDED", data
    return data["transaction"]


async def refund(client, token: str, transaction_id: str, **input: Any) -> dict[str, Any]:
    values = {"transactionId": transaction_id, "idempotencyKey": "refund-1"} | input
    return await graphql(client, REFUND, {"input": values}, token=token)


async def open_invoice(billing: Billing, db, settings, user_id: str) -> Invoice:
    """An open invoice of the user's, made directly in Stripe as a failed first payment
    would leave it (a card that declines when charged), and mirrored as a webhook would."""
    account = await account_of(db, user_id)
    customer = await billing.stripe.v1.customers.create_async(
        {
            "payment_method": "pm_card_chargeCustomerFail",
            "invoice_settings": {"default_payment_method": "pm_card_chargeCustomerFail"},
        }
    )
    async with db.session() as session, session.begin():
        (await session.get(Account, account.id)).stripe_customer_id = customer.id
    created = await billing.stripe.v1.subscriptions.create_async(
        {
            "customer": customer.id,
            "items": [{"price": billing.plans["pro_monthly"].stripe_price_id}],
            "payment_behavior": "allow_incomplete",
            "expand": ["latest_invoice.payments"],
        }
    )
    assert created.status == "incomplete"
    async with StripeApi(settings, settings.stripe_api_base) as api, db.session() as session:
        row = await subscriptions.write_through(
            session=session, stripe=api, subscription=created, account_id=account.id
        )
    async with db.session() as session:
        invoice = await session.scalar(
            select(Invoice).where(Invoice.stripe_invoice_id == row.latest_invoice_stripe_id)
        )
    assert invoice is not None and invoice.status is InvoiceStatus.OPEN
    return invoice


async def live_subscription(billing: Billing, db, settings, user_id: str, method: str) -> None:
    """An active subscription charged to `method` (a Stripe id), mirrored."""
    account = await account_of(db, user_id)
    created = await billing.stripe.v1.subscriptions.create_async(
        {
            "customer": account.stripe_customer_id,
            "items": [{"price": billing.plans["pro_monthly"].stripe_price_id}],
            "default_payment_method": method,
            "expand": ["latest_invoice.payments"],
        }
    )
    assert created.status == "active"
    async with StripeApi(settings, settings.stripe_api_base) as api, db.session() as session:
        await subscriptions.write_through(
            session=session,
            stripe=api,
            subscription=created,
            account_id=account.id,
        )


async def rows(db, model: Any) -> list[Any]:
    async with db.session() as session:
        return list((await session.scalars(select(model).order_by(model.id))).all())


async def count(db, model: Any) -> int:
    async with db.session() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def mirror_snapshot(db) -> dict[str, list[tuple[Any, ...]]]:
    """Every mirrored and audited row, as plain values, to prove nothing changed."""
    snapshot: dict[str, list[tuple[Any, ...]]] = {}
    async with db.session() as session:
        for table in ("payment_transactions", "invoices", "payment_methods", "audit_log"):
            result = await session.execute(text(f"SELECT * FROM {table} ORDER BY id"))
            snapshot[table] = [tuple(row) for row in result]
        accounts = await session.execute(
            text("SELECT id, default_payment_method_stripe_id FROM accounts ORDER BY id")
        )
        snapshot["accounts"] = [tuple(row) for row in accounts]
    return snapshot


async def stripe_intents(billing: Billing) -> list[Any]:
    return (await billing.stripe.v1.payment_intents.list_async({"limit": 100})).data


async def stripe_refunds(billing: Billing) -> list[Any]:
    return (await billing.stripe.v1.refunds.list_async({"limit": 100})).data


# --- attachPaymentMethod -------------------------------------------------------------------


async def test_attach_saves_a_card_to_a_new_customer_and_makes_it_default(
    client, db, billing, token_for
):
    token = token_for("alice")

    method = await attach(client, token, "pm_card_visa", make_default=True)

    assert method["brand"] == "visa" and method["last4"] == "4242" and method["isDefault"]
    account = await account_of(db, "alice")
    remote = await billing.stripe.v1.payment_methods.retrieve_async(method["stripePaymentMethodId"])
    customer = await billing.stripe.v1.customers.retrieve_async(account.stripe_customer_id)
    assert remote.customer == customer.id
    assert customer.invoice_settings.default_payment_method == remote.id
    assert account.default_payment_method_stripe_id == remote.id
    viewer = payload(await graphql(client, VIEWER_METHODS, token=token), "viewer")
    assert viewer["paymentMethods"] == [
        {"id": method["id"], "stripePaymentMethodId": remote.id, "isDefault": True}
    ]
    assert viewer["customer"]["defaultPaymentMethod"] == {"id": method["id"]}


async def test_attach_without_make_default_keeps_the_default(client, db, billing, token_for):
    token = token_for("alice")
    first = await attach(client, token, "pm_card_visa", make_default=True)

    second = await attach(client, token, "pm_card_mastercard")

    assert second["brand"] == "mastercard" and second["isDefault"] is False
    viewer = payload(await graphql(client, VIEWER_METHODS, token=token), "viewer")
    assert {m["id"]: m["isDefault"] for m in viewer["paymentMethods"]} == {
        first["id"]: True,
        second["id"]: False,
    }


@pytest.mark.parametrize("card", ["pm_card_chargeCustomerFail", "pm_card_authenticationRequired"])
async def test_cards_that_fail_only_when_charged_attach(client, db, billing, token_for, card):
    method = await attach(client, token_for("alice"), card)
    assert method["type"] == "card"
    assert len(await rows(db, PaymentMethod)) == 1


@pytest.mark.parametrize(
    "card", ["pm_card_chargeDeclined", "pm_card_chargeDeclinedInsufficientFunds"]
)
async def test_cards_declined_when_saved_are_refused_and_not_mirrored(
    client, db, billing, token_for, card
):
    result = await graphql(
        client, ATTACH, {"input": {"paymentMethodId": card}}, token=token_for("alice")
    )
    data = payload(result, "attachPaymentMethod")
    assert data["paymentMethod"] is None
    assert codes(data) == [("CARD_DECLINED", ["paymentMethodId"])]
    assert await rows(db, PaymentMethod) == []


@pytest.mark.parametrize("value", ["card_1234", "tok_visa", "pm_", "pm_abc def", "", "visa"])
async def test_attach_takes_only_payment_method_ids(client, db, billing, token_for, value):
    result = await graphql(
        client, ATTACH, {"input": {"paymentMethodId": value}}, token=token_for("alice")
    )
    data = payload(result, "attachPaymentMethod")
    assert codes(data) == [("INVALID_INPUT", ["paymentMethodId"])]
    assert (await billing.stripe.v1.customers.list_async()).data == []


async def test_attach_of_an_unknown_payment_method_is_not_found(client, db, billing, token_for):
    result = await graphql(
        client, ATTACH, {"input": {"paymentMethodId": "pm_nosuchthing"}}, token=token_for("alice")
    )
    data = payload(result, "attachPaymentMethod")
    assert codes(data) == [("NOT_FOUND", ["paymentMethodId"])]
    assert await rows(db, PaymentMethod) == []


async def test_attach_of_another_customers_payment_method_is_not_found(
    client, db, billing, token_for
):
    alices = await attach(client, token_for("alice"), "pm_card_visa")
    alice = await account_of(db, "alice")

    result = await graphql(
        client,
        ATTACH,
        {"input": {"paymentMethodId": alices["stripePaymentMethodId"], "makeDefault": True}},
        token=token_for("mallory"),
    )

    assert codes(payload(result, "attachPaymentMethod")) == [("NOT_FOUND", ["paymentMethodId"])]
    remote = await billing.stripe.v1.payment_methods.retrieve_async(alices["stripePaymentMethodId"])
    assert remote.customer == alice.stripe_customer_id
    assert [row.account_id for row in await rows(db, PaymentMethod)] == [alice.id]


CARD_NUMBERS = ["4242424242424242", "4242 4242 4242 4242", "5555-5555-5555-4444"]


@pytest.mark.parametrize("number", CARD_NUMBERS)
async def test_card_numbers_are_refused_never_logged_nor_stored(
    client, db, billing, token_for, caplog, number
):
    caplog.set_level(logging.DEBUG)
    token = token_for("alice")
    await signed_in(client, token)

    attached = await graphql(client, ATTACH, {"input": {"paymentMethodId": number}}, token=token)
    described = await graphql(
        client,
        CREATE_PAYMENT,
        {
            "input": {
                "amount": "500",
                "currency": "usd",
                "description": f"top-up with {number} cvc 123",
                "idempotencyKey": "card-data",
            }
        },
        token=token,
    )
    security_code = await pay(client, token, description="CVC: 737", idempotencyKey="cvc")

    assert codes(payload(attached, "attachPaymentMethod")) == [
        ("RAW_CARD_DATA_REJECTED", ["paymentMethodId"])
    ]
    assert codes(payload(described, "createPayment")) == [
        ("RAW_CARD_DATA_REJECTED", ["description"])
    ]
    assert codes(security_code) == [("RAW_CARD_DATA_REJECTED", ["description"])]
    # Three digits alone turn up anywhere (ports, timestamps): look for the phrases instead.
    secrets = [number, number.replace(" ", "").replace("-", ""), "cvc 123", "CVC: 737"]
    stored = await all_text(db)
    assert [secret for secret in secrets if secret in caplog.text or secret in stored] == []
    assert (await billing.stripe.v1.customers.list_async()).data == []


async def all_text(db) -> str:
    """Every row of every table as text: what a leak would have to be in."""
    async with db.session() as session:
        tables = (
            await session.scalars(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )
        ).all()
        dumps = [
            (await session.scalars(text(f'SELECT t::text FROM "{table}" t'))).all()
            for table in tables
        ]
    return "\n".join(line for dump in dumps for line in dump)


# --- setDefaultPaymentMethod ---------------------------------------------------------------


async def test_set_default_switches_the_customers_default(client, db, billing, token_for):
    token = token_for("alice")
    first = await attach(client, token, "pm_card_visa", make_default=True)
    second = await attach(client, token, "pm_card_mastercard")

    result = await graphql(
        client, SET_DEFAULT, {"input": {"paymentMethodId": second["id"]}}, token=token
    )

    data = payload(result, "setDefaultPaymentMethod")
    assert data["userErrors"] == [] and data["paymentMethod"]["isDefault"] is True
    account = await account_of(db, "alice")
    customer = await billing.stripe.v1.customers.retrieve_async(account.stripe_customer_id)
    assert customer.invoice_settings.default_payment_method == second["stripePaymentMethodId"]
    viewer = payload(await graphql(client, VIEWER_METHODS, token=token), "viewer")
    assert {m["id"]: m["isDefault"] for m in viewer["paymentMethods"]} == {
        first["id"]: False,
        second["id"]: True,
    }


async def test_set_default_of_another_customers_method_is_not_found_and_changes_nothing(
    client, db, billing, token_for
):
    alices = await attach(client, token_for("alice"), "pm_card_visa")
    mallorys = await attach(client, token_for("mallory"), "pm_card_mastercard", make_default=True)
    mallory = await account_of(db, "mallory")

    result = await graphql(
        client,
        SET_DEFAULT,
        {"input": {"paymentMethodId": alices["id"]}},
        token=token_for("mallory"),
    )

    data = payload(result, "setDefaultPaymentMethod")
    assert data["paymentMethod"] is None
    assert codes(data) == [("NOT_FOUND", ["paymentMethodId"])]
    for user in ("alice", "mallory"):
        account = await account_of(db, user)
        customer = await billing.stripe.v1.customers.retrieve_async(account.stripe_customer_id)
        expected = mallorys["stripePaymentMethodId"] if user == "mallory" else None
        assert customer.invoice_settings.default_payment_method == expected
    assert mallory.default_payment_method_stripe_id == mallorys["stripePaymentMethodId"]


@pytest.mark.parametrize("kind", ["Plan", "Invoice", "garbage"])
async def test_set_default_takes_only_payment_method_ids(client, db, billing, token_for, kind):
    global_id = "not-an-id" if kind == "garbage" else to_global_id(kind, 1)
    result = await graphql(
        client, SET_DEFAULT, {"input": {"paymentMethodId": global_id}}, token=token_for("alice")
    )
    assert codes(payload(result, "setDefaultPaymentMethod")) == [
        ("INVALID_INPUT", ["paymentMethodId"])
    ]


# --- detachPaymentMethod -------------------------------------------------------------------


async def test_detach_removes_the_method_in_stripe_and_the_mirror(client, db, billing, token_for):
    token = token_for("alice")
    kept = await attach(client, token, "pm_card_visa", make_default=True)
    extra = await attach(client, token, "pm_card_mastercard")

    result = await graphql(client, DETACH, {"input": {"paymentMethodId": extra["id"]}}, token=token)

    data = payload(result, "detachPaymentMethod")
    assert data == {"detachedPaymentMethodId": extra["id"], "userErrors": []}
    remote = await billing.stripe.v1.payment_methods.retrieve_async(extra["stripePaymentMethodId"])
    assert remote.customer is None
    viewer = payload(await graphql(client, VIEWER_METHODS, token=token), "viewer")
    assert [m["id"] for m in viewer["paymentMethods"]] == [kept["id"]]
    assert viewer["customer"]["defaultPaymentMethod"] == {"id": kept["id"]}


async def test_detach_of_the_default_without_a_subscription_clears_the_default(
    client, db, billing, token_for
):
    token = token_for("alice")
    method = await attach(client, token, "pm_card_visa", make_default=True)

    result = await graphql(
        client, DETACH, {"input": {"paymentMethodId": method["id"]}}, token=token
    )

    assert payload(result, "detachPaymentMethod")["userErrors"] == []
    account = await account_of(db, "alice")
    customer = await billing.stripe.v1.customers.retrieve_async(account.stripe_customer_id)
    assert customer.invoice_settings.default_payment_method is None
    assert account.default_payment_method_stripe_id is None
    viewer = payload(await graphql(client, VIEWER_METHODS, token=token), "viewer")
    assert viewer == {"paymentMethods": [], "customer": {"defaultPaymentMethod": None}}


async def test_detach_of_the_default_a_live_subscription_needs_is_refused(
    client, db, billing, settings, token_for
):
    token = token_for("alice")
    method = await attach(client, token, "pm_card_visa", make_default=True)
    await live_subscription(billing, db, settings, "alice", method["stripePaymentMethodId"])

    result = await graphql(
        client, DETACH, {"input": {"paymentMethodId": method["id"]}}, token=token
    )

    data = payload(result, "detachPaymentMethod")
    assert data["detachedPaymentMethodId"] is None
    assert codes(data) == [("INVALID_STATE", ["paymentMethodId"])]
    remote = await billing.stripe.v1.payment_methods.retrieve_async(method["stripePaymentMethodId"])
    assert remote.customer is not None
    viewer = payload(await graphql(client, VIEWER_METHODS, token=token), "viewer")
    assert [m["id"] for m in viewer["paymentMethods"]] == [method["id"]]


async def test_a_method_no_live_subscription_needs_can_go_while_one_is_live(
    client, db, billing, settings, token_for
):
    token = token_for("alice")
    used = await attach(client, token, "pm_card_visa", make_default=True)
    spare = await attach(client, token, "pm_card_mastercard")
    await live_subscription(billing, db, settings, "alice", used["stripePaymentMethodId"])

    result = await graphql(client, DETACH, {"input": {"paymentMethodId": spare["id"]}}, token=token)

    assert payload(result, "detachPaymentMethod")["detachedPaymentMethodId"] == spare["id"]


async def test_detach_of_another_customers_method_is_not_found_and_changes_nothing(
    client, db, billing, token_for
):
    alices = await attach(client, token_for("alice"), "pm_card_visa", make_default=True)
    await signed_in(client, token_for("mallory"))

    result = await graphql(
        client, DETACH, {"input": {"paymentMethodId": alices["id"]}}, token=token_for("mallory")
    )

    assert codes(payload(result, "detachPaymentMethod")) == [("NOT_FOUND", ["paymentMethodId"])]
    remote = await billing.stripe.v1.payment_methods.retrieve_async(alices["stripePaymentMethodId"])
    assert remote.customer == (await account_of(db, "alice")).stripe_customer_id
    assert [row.detached_at for row in await rows(db, PaymentMethod)] == [None]


@pytest.mark.parametrize(
    ("mutation", "path"),
    [
        ("attach", "/v1/payment_methods"),
        ("set_default", "/v1/customers"),
        ("detach", "/v1/payment_methods"),
    ],
)
async def test_payment_method_changes_with_stripe_unavailable_change_nothing(
    client, db, billing, token_for, faults, mutation, path
):
    token = token_for("alice")
    method = await attach(client, token, "pm_card_visa")
    before = await mirror_snapshot(db)
    await faults(503, path)

    if mutation == "attach":
        result = await graphql(
            client, ATTACH, {"input": {"paymentMethodId": "pm_card_mastercard"}}, token=token
        )
    else:
        document = SET_DEFAULT if mutation == "set_default" else DETACH
        result = await graphql(
            client, document, {"input": {"paymentMethodId": method["id"]}}, token=token
        )

    [data] = result["data"].values()
    assert codes(data) == [("STRIPE_UNAVAILABLE", None)]
    assert await mirror_snapshot(db) == before
    account = await account_of(db, "alice")
    methods = await billing.stripe.v1.payment_methods.list_async(
        {"customer": account.stripe_customer_id}
    )
    assert [m.id for m in methods.data] == [method["stripePaymentMethodId"]]


async def test_a_detached_method_is_not_found_afterwards(client, db, billing, token_for):
    token = token_for("alice")
    method = await attach(client, token, "pm_card_visa")
    await graphql(client, DETACH, {"input": {"paymentMethodId": method["id"]}}, token=token)

    again = await graphql(client, DETACH, {"input": {"paymentMethodId": method["id"]}}, token=token)
    default = await graphql(
        client, SET_DEFAULT, {"input": {"paymentMethodId": method["id"]}}, token=token
    )

    assert codes(payload(again, "detachPaymentMethod")) == [("NOT_FOUND", ["paymentMethodId"])]
    assert codes(payload(default, "setDefaultPaymentMethod")) == [
        ("NOT_FOUND", ["paymentMethodId"])
    ]


# --- createPayment -------------------------------------------------------------------------


@pytest.mark.parametrize("card", ["pm_card_visa", "pm_card_mastercard"])
async def test_create_payment_with_a_card_succeeds_at_once(client, db, billing, token_for, card):
    data = await pay(
        client,
        token_for("alice"),
        amount="1250",
        currency="EUR",
        description="500 credits",
        paymentMethodId=card,
    )

    assert data["userErrors"] == [] and data["requiresAction"] is False
    assert data["clientSecret"] is None
    transaction = data["transaction"]
    assert transaction["status"] == "SUCCEEDED"
    assert transaction["amount"] == {"amount": "1250", "currency": "EUR"}
    assert transaction["amountRefunded"] == {"amount": "0", "currency": "EUR"}
    assert transaction["description"] == "500 credits"
    account = await account_of(db, "alice")
    [intent] = await stripe_intents(billing)
    assert intent.id == transaction["stripePaymentIntentId"] and intent.status == "succeeded"
    assert intent.currency == "eur" and intent.customer == account.stripe_customer_id
    # 12.50 at the default 10 credits a currency unit.
    assert intent.metadata.to_dict() == {
        "account_id": str(account.id),
        "kind": "one_time",
        "credits": "125",
    }
    [entry] = await rows(db, AuditLogEntry)
    assert (entry.actor, entry.action, entry.account_id) == (
        "user:alice",
        "payment.create",
        account.id,
    )
    assert (entry.stripe_ref, entry.amount, entry.currency) == (intent.id, 1250, "eur")
    assert entry.details["status"] == "succeeded"


async def test_create_payment_without_a_card_leaves_it_to_stripe_js(client, db, billing, token_for):
    data = await pay(client, token_for("alice"))

    assert data["userErrors"] == [] and data["requiresAction"] is False
    assert data["transaction"]["status"] == "REQUIRES_PAYMENT_METHOD"
    [intent] = await stripe_intents(billing)
    assert data["clientSecret"] == intent.client_secret


async def test_create_payment_with_a_saved_card(client, db, billing, token_for):
    token = token_for("alice")
    method = await attach(client, token, "pm_card_mastercard", make_default=True)

    data = await pay(client, token, paymentMethodId=method["stripePaymentMethodId"])

    assert data["transaction"]["status"] == "SUCCEEDED"
    [intent] = await stripe_intents(billing)
    assert intent.payment_method == method["stripePaymentMethodId"]


@pytest.mark.parametrize(
    ("card", "decline"),
    [
        ("pm_card_chargeDeclined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
        ("pm_card_chargeCustomerFail", "generic_decline"),
    ],
)
async def test_a_declined_payment_is_card_declined_and_still_mirrored(
    client, db, billing, token_for, card, decline
):
    data = await pay(client, token_for("alice"), paymentMethodId=card)

    assert data["transaction"] is None
    assert codes(data) == [("CARD_DECLINED", ["paymentMethodId"])]
    [intent] = await stripe_intents(billing)
    [row] = await rows(db, PaymentTransaction)
    assert row.stripe_payment_intent_id == intent.id
    assert row.status is PaymentStatus.REQUIRES_PAYMENT_METHOD
    assert row.failure_code == decline
    [entry] = await rows(db, AuditLogEntry)
    assert entry.stripe_ref == intent.id and entry.details["failure_code"] == decline


async def test_a_saved_card_that_fails_when_charged_is_declined(client, db, billing, token_for):
    token = token_for("alice")
    method = await attach(client, token, "pm_card_chargeCustomerFail")

    data = await pay(client, token, paymentMethodId=method["stripePaymentMethodId"])

    assert codes(data) == [("CARD_DECLINED", ["paymentMethodId"])]


async def test_three_d_secure_then_authenticated(client, db, billing, token_for):
    data = await pay(client, token_for("alice"), paymentMethodId="pm_card_authenticationRequired")

    assert data["userErrors"] == [] and data["requiresAction"] is True
    assert data["transaction"]["status"] == "REQUIRES_ACTION"
    [intent] = await stripe_intents(billing)
    assert data["clientSecret"] == intent.client_secret
    [row] = await rows(db, PaymentTransaction)
    assert row.status is PaymentStatus.REQUIRES_ACTION

    await authenticate(billing, intent.id, "succeed")

    settled = await billing.stripe.v1.payment_intents.retrieve_async(intent.id)
    assert settled.status == "succeeded" and settled.amount_received == 1250


async def test_three_d_secure_then_failed(client, db, billing, token_for):
    data = await pay(client, token_for("alice"), paymentMethodId="pm_card_authenticationRequired")
    intent_id = data["transaction"]["stripePaymentIntentId"]

    await authenticate(billing, intent_id, "fail")

    settled = await billing.stripe.v1.payment_intents.retrieve_async(intent_id)
    assert settled.status == "requires_payment_method"
    assert settled.last_payment_error.code == "payment_intent_authentication_failure"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": "0"}, "amount"),
        ({"amount": "-100"}, "amount"),
        ({"currency": "us"}, "currency"),
        ({"currency": "usdd"}, "currency"),
        ({"currency": "12$"}, "currency"),
        ({"paymentMethodId": "card_visa"}, "paymentMethodId"),
        ({"idempotencyKey": " "}, "idempotencyKey"),
        ({"idempotencyKey": "k" * 201}, "idempotencyKey"),
    ],
)
async def test_create_payment_refuses_bad_input_before_stripe(
    client, db, billing, token_for, change, field
):
    data = await pay(client, token_for("alice"), **change)

    assert codes(data) == [("INVALID_INPUT", [field])]
    assert await stripe_intents(billing) == []
    assert (await billing.stripe.v1.customers.list_async()).data == []


async def test_stripes_own_refusal_is_invalid_input(client, db, billing, token_for):
    # Below Stripe's minimum charge for the currency: only Stripe knows those.
    data = await pay(client, token_for("alice"), amount="10", paymentMethodId="pm_card_visa")

    assert [code for code, _ in codes(data)] == ["INVALID_INPUT"]
    assert await rows(db, PaymentTransaction) == []


async def test_an_unknown_payment_method_is_not_found(client, db, billing, token_for):
    data = await pay(client, token_for("alice"), paymentMethodId="pm_nosuchthing")
    assert codes(data) == [("NOT_FOUND", ["paymentMethodId"])]


async def test_paying_with_another_customers_method_is_not_found(client, db, billing, token_for):
    alices = await attach(client, token_for("alice"), "pm_card_visa", make_default=True)

    data = await pay(client, token_for("mallory"), paymentMethodId=alices["stripePaymentMethodId"])

    assert codes(data) == [("NOT_FOUND", ["paymentMethodId"])]
    assert await stripe_intents(billing) == []
    assert await rows(db, PaymentTransaction) == []


async def test_a_retry_with_the_same_key_returns_the_first_payment(client, db, billing, token_for):
    token = token_for("alice")
    first = await pay(client, token, paymentMethodId="pm_card_visa", idempotencyKey="top-up-7")
    again = await pay(client, token, paymentMethodId="pm_card_visa", idempotencyKey="top-up-7")

    assert again == first
    assert len(await stripe_intents(billing)) == 1
    assert await count(db, AuditLogEntry) == 1


async def test_concurrent_retries_with_one_key_make_one_payment(
    client, db, billing, token_for, faults
):
    token = token_for("alice")
    await signed_in(client, token)
    # The first takes its time at Stripe, so the others arrive while it is still running.
    await faults(None, "/v1/payment_intents", count=1, delay=0.5)

    results = await asyncio.gather(
        *(pay(client, token, paymentMethodId="pm_card_visa", idempotencyKey="once") for _ in "abc")
    )

    assert len({result["transaction"]["id"] for result in results}) == 1
    assert len(await stripe_intents(billing)) == 1


async def test_a_declined_payment_replays_as_declined(client, db, billing, token_for):
    token = token_for("alice")
    first = await pay(client, token, paymentMethodId="pm_card_chargeDeclined")
    again = await pay(client, token, paymentMethodId="pm_card_chargeDeclined")

    assert codes(first) == codes(again) == [("CARD_DECLINED", ["paymentMethodId"])]
    assert len(await stripe_intents(billing)) == 1


async def test_the_same_key_with_other_input_is_refused(client, db, billing, token_for):
    token = token_for("alice")
    await pay(client, token, paymentMethodId="pm_card_visa", idempotencyKey="k1")

    other = await pay(
        client, token, amount="9900", paymentMethodId="pm_card_visa", idempotencyKey="k1"
    )

    assert codes(other) == [("IDEMPOTENCY_KEY_REUSED", ["idempotencyKey"])]
    assert len(await stripe_intents(billing)) == 1


async def test_keys_belong_to_their_caller(client, db, billing, token_for):
    alice = await pay(client, token_for("alice"), paymentMethodId="pm_card_visa")
    bob = await pay(client, token_for("bob"), paymentMethodId="pm_card_visa")

    assert alice["transaction"]["id"] != bob["transaction"]["id"]
    assert len(await stripe_intents(billing)) == 2


async def test_stripe_unavailable_changes_nothing_and_a_retry_then_pays(
    client, db, billing, token_for, faults
):
    token = token_for("alice")
    await attach(client, token, "pm_card_visa")  # the Stripe customer exists already
    before = await mirror_snapshot(db)
    await faults(503, "/v1/payment_intents")

    failed = await pay(client, token, paymentMethodId="pm_card_visa", idempotencyKey="k")

    assert codes(failed) == [("STRIPE_UNAVAILABLE", None)]
    assert await mirror_snapshot(db) == before
    retried = await pay(client, token, paymentMethodId="pm_card_visa", idempotencyKey="k")
    assert retried["transaction"]["status"] == "SUCCEEDED"
    assert len(await stripe_intents(billing)) == 1


async def test_stripe_rate_limiting_is_rate_limited(client, db, billing, token_for, faults):
    token = token_for("alice")
    await attach(client, token, "pm_card_visa")
    await faults(429, "/v1/payment_intents")

    data = await pay(client, token, paymentMethodId="pm_card_visa")

    assert codes(data) == [("RATE_LIMITED", None)]
    assert await rows(db, PaymentTransaction) == []


# --- payInvoice ----------------------------------------------------------------------------


async def pay_invoice(client, token: str, invoice: Invoice, **input: Any) -> dict[str, Any]:
    values = {"invoiceId": to_global_id("Invoice", invoice.id)} | input
    return payload(await graphql(client, PAY_INVOICE, {"input": values}, token=token), "payInvoice")


async def invoice_row(db, invoice: Invoice) -> Invoice:
    async with db.session() as session:
        return await session.get(Invoice, invoice.id)


async def test_pay_invoice_with_another_card_pays_it(client, db, billing, settings, token_for):
    token = token_for("alice")
    await signed_in(client, token)
    invoice = await open_invoice(billing, db, settings, "alice")
    method = await attach(client, token, "pm_card_visa")

    data = await pay_invoice(client, token, invoice, paymentMethodId=method["id"])

    assert data["userErrors"] == [] and data["requiresAction"] is False
    assert data["clientSecret"] is None
    assert data["invoice"]["status"] == "PAID"
    assert data["invoice"]["amountPaid"] == data["invoice"]["amountDue"]
    remote = await billing.stripe.v1.invoices.retrieve_async(invoice.stripe_invoice_id)
    assert remote.status == "paid"
    [transaction] = await rows(db, PaymentTransaction)
    assert transaction.status is PaymentStatus.SUCCEEDED
    assert transaction.invoice_stripe_id == invoice.stripe_invoice_id
    assert transaction.payment_method_stripe_id == method["stripePaymentMethodId"]
    [entry] = await rows(db, AuditLogEntry)
    assert (entry.actor, entry.action, entry.stripe_ref) == (
        "user:alice",
        "invoice.pay",
        invoice.stripe_invoice_id,
    )
    assert (entry.amount, entry.currency) == (remote.amount_due, remote.currency)


async def test_pay_invoice_with_its_declining_default_is_card_declined(
    client, db, billing, settings, token_for
):
    token = token_for("alice")
    await signed_in(client, token)
    invoice = await open_invoice(billing, db, settings, "alice")
    attempts = (
        await billing.stripe.v1.invoices.retrieve_async(invoice.stripe_invoice_id)
    ).attempt_count

    data = await pay_invoice(client, token, invoice)

    assert data["invoice"] is None
    assert codes(data) == [("CARD_DECLINED", ["paymentMethodId"])]
    assert (await invoice_row(db, invoice)).status is InvoiceStatus.OPEN
    remote = await billing.stripe.v1.invoices.retrieve_async(invoice.stripe_invoice_id)
    assert remote.attempt_count == attempts + 1
    [transaction] = await rows(db, PaymentTransaction)
    assert transaction.status is PaymentStatus.REQUIRES_PAYMENT_METHOD
    assert transaction.failure_code == "generic_decline"
    [entry] = await rows(db, AuditLogEntry)
    assert entry.action == "invoice.pay" and entry.details["status"] == "open"


async def test_pay_invoice_three_d_secure_then_authenticated(
    client, db, billing, settings, token_for
):
    token = token_for("alice")
    await signed_in(client, token)
    invoice = await open_invoice(billing, db, settings, "alice")
    method = await attach(client, token, "pm_card_authenticationRequired")

    data = await pay_invoice(client, token, invoice, paymentMethodId=method["id"])

    assert data["userErrors"] == [] and data["requiresAction"] is True
    assert data["invoice"]["status"] == "OPEN"
    [intent] = [i for i in await stripe_intents(billing) if i.status == "requires_action"]
    assert data["clientSecret"] == intent.client_secret
    [transaction] = await rows(db, PaymentTransaction)
    assert transaction.status is PaymentStatus.REQUIRES_ACTION

    await authenticate(billing, intent.id, "succeed")

    remote = await billing.stripe.v1.invoices.retrieve_async(invoice.stripe_invoice_id)
    assert remote.status == "paid"
    # Paying again finds out from Stripe that it is paid, and the mirror catches up.
    again = await pay_invoice(client, token, invoice)
    assert codes(again) == [("INVALID_STATE", ["invoiceId"])]
    assert (await invoice_row(db, invoice)).status is InvoiceStatus.PAID


async def test_pay_invoice_three_d_secure_failed_then_another_card(
    client, db, billing, settings, token_for
):
    token = token_for("alice")
    await signed_in(client, token)
    invoice = await open_invoice(billing, db, settings, "alice")
    secure = await attach(client, token, "pm_card_authenticationRequired")
    data = await pay_invoice(client, token, invoice, paymentMethodId=secure["id"])
    [intent] = [i for i in await stripe_intents(billing) if i.status == "requires_action"]

    await authenticate(billing, intent.id, "fail")

    failed = await billing.stripe.v1.invoices.retrieve_async(invoice.stripe_invoice_id)
    assert data["requiresAction"] and failed.status == "open"
    visa = await attach(client, token, "pm_card_visa")
    paid_now = await pay_invoice(client, token, invoice, paymentMethodId=visa["id"])
    assert paid_now["invoice"]["status"] == "PAID"


async def test_an_invoice_that_is_not_open_is_invalid_state(
    client, db, billing, settings, token_for
):
    token = token_for("alice")
    await signed_in(client, token)
    invoice = await open_invoice(billing, db, settings, "alice")
    visa = await attach(client, token, "pm_card_visa")
    await pay_invoice(client, token, invoice, paymentMethodId=visa["id"])
    before = await mirror_snapshot(db)

    again = await pay_invoice(client, token, invoice, paymentMethodId=visa["id"])

    assert codes(again) == [("INVALID_STATE", ["invoiceId"])]
    assert await mirror_snapshot(db) == before


async def test_another_customers_invoice_is_not_found_and_unpaid(
    client, db, billing, settings, token_for
):
    await signed_in(client, token_for("alice"))
    invoice = await open_invoice(billing, db, settings, "alice")
    mallory = token_for("mallory")
    card = await attach(client, mallory, "pm_card_visa")
    attempts = (
        await billing.stripe.v1.invoices.retrieve_async(invoice.stripe_invoice_id)
    ).attempt_count

    data = await pay_invoice(client, mallory, invoice, paymentMethodId=card["id"])

    assert codes(data) == [("NOT_FOUND", ["invoiceId"])]
    remote = await billing.stripe.v1.invoices.retrieve_async(invoice.stripe_invoice_id)
    assert remote.status == "open" and remote.attempt_count == attempts
    assert (await invoice_row(db, invoice)).status is InvoiceStatus.OPEN


async def test_paying_an_invoice_with_another_customers_method_is_not_found(
    client, db, billing, settings, token_for
):
    token = token_for("alice")
    await signed_in(client, token)
    invoice = await open_invoice(billing, db, settings, "alice")
    mallorys = await attach(client, token_for("mallory"), "pm_card_visa")

    data = await pay_invoice(client, token, invoice, paymentMethodId=mallorys["id"])

    assert codes(data) == [("NOT_FOUND", ["paymentMethodId"])]
    remote = await billing.stripe.v1.invoices.retrieve_async(invoice.stripe_invoice_id)
    assert remote.status == "open"


async def test_pay_invoice_ids_must_name_invoices_and_methods(
    client, db, billing, settings, token_for
):
    token = token_for("alice")
    await signed_in(client, token)
    invoice = await open_invoice(billing, db, settings, "alice")

    wrong_invoice = await graphql(
        client, PAY_INVOICE, {"input": {"invoiceId": to_global_id("Plan", 1)}}, token=token
    )
    wrong_method = await pay_invoice(
        client, token, invoice, paymentMethodId=to_global_id("Invoice", invoice.id)
    )

    assert codes(payload(wrong_invoice, "payInvoice")) == [("INVALID_INPUT", ["invoiceId"])]
    assert codes(wrong_method) == [("INVALID_INPUT", ["paymentMethodId"])]


async def test_pay_invoice_with_a_key_pays_once(client, db, billing, settings, token_for):
    token = token_for("alice")
    await signed_in(client, token)
    invoice = await open_invoice(billing, db, settings, "alice")
    visa = await attach(client, token, "pm_card_visa")
    mastercard = await attach(client, token, "pm_card_mastercard")
    input = {"paymentMethodId": visa["id"], "idempotencyKey": "settle-1"}

    first = await pay_invoice(client, token, invoice, **input)
    again = await pay_invoice(client, token, invoice, **input)
    other = await pay_invoice(
        client, token, invoice, paymentMethodId=mastercard["id"], idempotencyKey="settle-1"
    )

    assert first == again and first["invoice"]["status"] == "PAID"
    assert codes(other) == [("IDEMPOTENCY_KEY_REUSED", ["idempotencyKey"])]
    charges = (await billing.stripe.v1.charges.list_async({"limit": 100})).data
    assert [c.status for c in charges].count("succeeded") == 1
    assert await count(db, AuditLogEntry) == 1


async def test_pay_invoice_with_stripe_unavailable_changes_nothing(
    client, db, billing, settings, token_for, faults
):
    token = token_for("alice")
    await signed_in(client, token)
    invoice = await open_invoice(billing, db, settings, "alice")
    visa = await attach(client, token, "pm_card_visa")
    before = await mirror_snapshot(db)
    await faults(503, f"/v1/invoices/{invoice.stripe_invoice_id}/pay")

    data = await pay_invoice(client, token, invoice, paymentMethodId=visa["id"])

    assert codes(data) == [("STRIPE_UNAVAILABLE", None)]
    assert await mirror_snapshot(db) == before
    remote = await billing.stripe.v1.invoices.retrieve_async(invoice.stripe_invoice_id)
    assert remote.status == "open"


# --- refundPayment -------------------------------------------------------------------------


async def test_an_admin_refunds_a_payment_in_full(client, db, billing, token_for):
    transaction = await paid(client, token_for("alice"))
    admin = token_for("root", admin=True)

    result = await refund(client, admin, transaction["id"], reason="customer asked")

    data = payload(result, "refundPayment")
    assert data["userErrors"] == []
    assert data["transaction"]["amountRefunded"] == {"amount": "1250", "currency": "USD"}
    [made] = await stripe_refunds(billing)
    assert made.amount == 1250 and made.payment_intent == transaction["stripePaymentIntentId"]
    assert made.metadata["reason"] == "customer asked"
    alice = await account_of(db, "alice")
    entry = (await rows(db, AuditLogEntry))[-1]
    assert (entry.actor, entry.action, entry.account_id) == (
        "admin:root",
        "payment.refund",
        alice.id,
    )
    assert (entry.stripe_ref, entry.amount, entry.currency) == (made.id, 1250, "usd")
    assert entry.details["payment_intent"] == transaction["stripePaymentIntentId"]


async def test_a_partial_refund_then_the_rest(client, db, billing, token_for):
    transaction = await paid(client, token_for("alice"))
    admin = token_for("root", admin=True)

    part = await refund(client, admin, transaction["id"], amount="500", idempotencyKey="r1")
    rest = await refund(client, admin, transaction["id"], idempotencyKey="r2")

    assert payload(part, "refundPayment")["transaction"]["amountRefunded"]["amount"] == "500"
    assert payload(rest, "refundPayment")["transaction"]["amountRefunded"]["amount"] == "1250"
    assert sorted(r.amount for r in await stripe_refunds(billing)) == [500, 750]


async def test_an_over_refund_is_refused_before_stripe(client, db, billing, token_for):
    transaction = await paid(client, token_for("alice"))
    admin = token_for("root", admin=True)
    await refund(client, admin, transaction["id"], amount="500", idempotencyKey="r1")

    over = await refund(client, admin, transaction["id"], amount="751", idempotencyKey="r2")

    assert codes(payload(over, "refundPayment")) == [("INVALID_INPUT", ["amount"])]
    assert [r.amount for r in await stripe_refunds(billing)] == [500]


async def test_a_fully_refunded_payment_is_invalid_state(client, db, billing, token_for):
    transaction = await paid(client, token_for("alice"))
    admin = token_for("root", admin=True)
    await refund(client, admin, transaction["id"], idempotencyKey="r1")

    again = await refund(client, admin, transaction["id"], idempotencyKey="r2")

    assert codes(payload(again, "refundPayment")) == [("INVALID_STATE", ["transactionId"])]
    assert len(await stripe_refunds(billing)) == 1


async def test_stripes_refusal_of_an_over_refund_is_mapped_and_the_mirror_catches_up(
    client, db, billing, token_for
):
    transaction = await paid(client, token_for("alice"))
    # Refunded in the Dashboard, say: the mirror has not heard of it yet.
    await billing.stripe.v1.refunds.create_async(
        {"payment_intent": transaction["stripePaymentIntentId"], "amount": 1000}
    )

    result = await refund(client, token_for("root", admin=True), transaction["id"])

    assert codes(payload(result, "refundPayment")) == [("INVALID_INPUT", ["amount"])]
    [row] = await rows(db, PaymentTransaction)
    assert row.amount_refunded == 1000
    assert len(await stripe_refunds(billing)) == 1
    assert await count(db, AuditLogEntry) == 1  # the payment's own entry only


@pytest.mark.parametrize("amount", ["0", "-5"])
async def test_a_refund_amount_must_be_positive(client, db, billing, token_for, amount):
    transaction = await paid(client, token_for("alice"))

    result = await refund(client, token_for("root", admin=True), transaction["id"], amount=amount)

    assert codes(payload(result, "refundPayment")) == [("INVALID_INPUT", ["amount"])]
    assert await stripe_refunds(billing) == []


async def test_only_succeeded_payments_are_refunded(client, db, billing, token_for):
    declined = await pay(client, token_for("alice"), paymentMethodId="pm_card_chargeDeclined")
    assert codes(declined) == [("CARD_DECLINED", ["paymentMethodId"])]
    [row] = await rows(db, PaymentTransaction)

    result = await refund(
        client, token_for("root", admin=True), to_global_id("PaymentTransaction", row.id)
    )

    assert codes(payload(result, "refundPayment")) == [("INVALID_STATE", ["transactionId"])]


async def test_an_unknown_transaction_is_not_found(client, db, billing, token_for):
    admin = token_for("root", admin=True)
    missing = await refund(client, admin, to_global_id("PaymentTransaction", 999_999))
    not_a_transaction = await refund(client, admin, to_global_id("Invoice", 1))

    assert codes(payload(missing, "refundPayment")) == [("NOT_FOUND", ["transactionId"])]
    assert codes(payload(not_a_transaction, "refundPayment")) == [
        ("INVALID_INPUT", ["transactionId"])
    ]


async def test_customers_may_not_refund(client, db, billing, token_for):
    token = token_for("alice")
    transaction = await paid(client, token)

    own = await refund(client, token, transaction["id"])
    anonymous = await refund(client, None, transaction["id"])

    assert error_codes(own) == ["FORBIDDEN"] and own["data"] is None
    assert error_codes(anonymous) == ["UNAUTHENTICATED"]
    assert await stripe_refunds(billing) == []
    assert [row.amount_refunded for row in await rows(db, PaymentTransaction)] == [0]


async def test_a_refund_retried_with_its_key_refunds_once(client, db, billing, token_for):
    transaction = await paid(client, token_for("alice"))
    admin = token_for("root", admin=True)

    first = await refund(client, admin, transaction["id"], amount="300", idempotencyKey="r")
    again = await refund(client, admin, transaction["id"], amount="300", idempotencyKey="r")
    other = await refund(client, admin, transaction["id"], amount="301", idempotencyKey="r")

    assert first == again
    assert codes(payload(other, "refundPayment")) == [
        ("IDEMPOTENCY_KEY_REUSED", ["idempotencyKey"])
    ]
    assert [r.amount for r in await stripe_refunds(billing)] == [300]


async def test_two_concurrent_full_refunds_do_not_both_succeed(
    client, db, billing, token_for, faults
):
    transaction = await paid(client, token_for("alice"))
    admin = token_for("root", admin=True)
    await signed_in(client, admin)
    # Stripe takes its time over each refund, so the second request surely arrives while the
    # first is still inside its Stripe call.
    await faults(None, "/v1/refunds", count=2, delay=0.5)

    results = await asyncio.gather(
        *(
            refund(client, admin, transaction["id"], amount="1250", idempotencyKey=key)
            for key in ("race-a", "race-b")
        )
    )

    outcomes = sorted(codes(payload(result, "refundPayment")) for result in results)
    # The row lock made the second wait and see the first: refused before reaching Stripe
    # (without the lock it would pass the check and be refused by Stripe: INVALID_INPUT).
    assert outcomes == [[], [("INVALID_STATE", ["transactionId"])]]
    assert [r.amount for r in await stripe_refunds(billing)] == [1250]
    [row] = await rows(db, PaymentTransaction)
    assert row.amount_refunded == 1250
    assert [e.action for e in await rows(db, AuditLogEntry)].count("payment.refund") == 1


async def test_a_refund_with_stripe_unavailable_changes_nothing(
    client, db, billing, token_for, faults
):
    transaction = await paid(client, token_for("alice"))
    admin = token_for("root", admin=True)
    await signed_in(client, admin)
    before = await mirror_snapshot(db)
    await faults(503, "/v1/refunds")

    result = await refund(client, admin, transaction["id"])

    assert codes(payload(result, "refundPayment")) == [("STRIPE_UNAVAILABLE", None)]
    assert await mirror_snapshot(db) == before
    assert await stripe_refunds(billing) == []


async def test_a_refund_while_stripe_rate_limits_is_rate_limited(
    client, db, billing, token_for, faults
):
    transaction = await paid(client, token_for("alice"))
    await faults(429, "/v1/refunds")

    result = await refund(client, token_for("root", admin=True), transaction["id"])

    assert codes(payload(result, "refundPayment")) == [("RATE_LIMITED", None)]
    assert [row.amount_refunded for row in await rows(db, PaymentTransaction)] == [0]
