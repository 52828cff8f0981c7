"""Subscription mutations end to end: GraphQL -> services -> Stripe (sandbox) -> mirror.

createSubscription with every test card, 3-D Secure, declines, idempotency keys and races;
changeSubscriptionPlan, resumeSubscription, cancelSubscription's audit trail, Checkout and
the customer portal; ownership, Stripe faults and raw card data for all of them."""

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from db.models import (
    Account,
    AuditLogEntry,
    IdempotencyKey,
    Invoice,
    PaymentMethod,
    PaymentStatus,
    PaymentTransaction,
    Plan,
    Subscription,
    SubscriptionStatus,
)
from sandbox.server import SandboxServer
from schema.ids import from_global_id, to_global_id
from services import catalog
from services.stripe.client import StripeApi
from tests.conftest import Billing, error_codes, graphql

SUBSCRIPTION_FIELDS = """
    id stripeSubscriptionId status quantity cancelAtPeriodEnd canceledAt trialEnd
    currentPeriodStart currentPeriodEnd
    plan { id productName interval }
    latestInvoice { stripeInvoiceId status total { amount currency } lines { proration } }
"""
CREATE = f"""
mutation ($input: CreateSubscriptionInput!) {{
  createSubscription(input: $input) {{
    subscription {{ {SUBSCRIPTION_FIELDS} }}
    clientSecret requiresAction
    userErrors {{ code field message }}
  }}
}}
"""
CHANGE = f"""
mutation ($input: ChangeSubscriptionPlanInput!) {{
  changeSubscriptionPlan(input: $input) {{
    subscription {{ {SUBSCRIPTION_FIELDS} }}
    userErrors {{ code field message }}
  }}
}}
"""
RESUME = """
mutation ($input: ResumeSubscriptionInput!) {
  resumeSubscription(input: $input) {
    subscription { id status cancelAtPeriodEnd }
    userErrors { code field message }
  }
}
"""
CANCEL = """
mutation ($input: CancelSubscriptionInput!) {
  cancelSubscription(input: $input) {
    subscription { id status cancelAtPeriodEnd }
    userErrors { code field message }
  }
}
"""
CHECKOUT = """
mutation ($input: CreateCheckoutSessionInput!) {
  createCheckoutSession(input: $input) { sessionId url userErrors { code field message } }
}
"""
PORTAL = """
mutation ($input: CreatePortalSessionInput!) {
  createPortalSession(input: $input) { url userErrors { code field message } }
}
"""
SHOP = "https://shop.example.com"


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
async def no_faults_left(stripe_sandbox: SandboxServer) -> AsyncIterator[None]:
    """Faults outlive the sandbox's state reset; never leave one for the next test."""
    yield
    async with httpx.AsyncClient(base_url=stripe_sandbox.url) as http:
        await http.delete("/_sandbox/faults")


async def fault(billing: Billing, **form: Any) -> None:
    """Make the next `count` matching Stripe requests fail (StripeApi retries twice)."""
    data = {name: str(value) for name, value in form.items()}
    async with httpx.AsyncClient(base_url=billing.sandbox.url) as http:
        (await http.post("/_sandbox/faults", data=data)).raise_for_status()


async def browser(billing: Billing, path: str, **form: str) -> dict[str, Any]:
    """What the customer does in Stripe.js or on a hosted page."""
    async with httpx.AsyncClient(base_url=billing.sandbox.url) as http:
        response = await http.post(path, data=form)
    response.raise_for_status()
    return response.json()


async def create(
    client: httpx.AsyncClient,
    token: str,
    billing: Billing,
    plan: str = "pro_monthly",
    **fields: Any,
) -> dict[str, Any]:
    variables = {"input": {"planId": billing.plan_id(plan)} | fields}
    result = await graphql(client, CREATE, variables, token=token)
    assert "errors" not in result, result
    return result["data"]["createSubscription"]


async def subscribed(
    client: httpx.AsyncClient, token: str, billing: Billing, plan: str = "pro_monthly"
) -> dict[str, Any]:
    """An active subscription bought with pm_card_visa through the API."""
    payload = await create(client, token, billing, plan, paymentMethodId="pm_card_visa")
    assert payload["userErrors"] == [] and payload["subscription"]["status"] == "ACTIVE"
    return payload["subscription"]


async def mutate(
    client: httpx.AsyncClient, document: str, token: str, **fields: Any
) -> dict[str, Any]:
    result = await graphql(client, document, {"input": fields}, token=token)
    assert "errors" not in result, result
    return next(iter(result["data"].values()))


def codes(payload: dict[str, Any]) -> list[str]:
    return [error["code"] for error in payload["userErrors"]]


async def rows(db, model: type) -> list[Any]:
    async with db.session() as session:
        return list((await session.scalars(select(model).order_by(model.id))).all())


async def count(db, model: type) -> int:
    async with db.session() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def stripe_subscriptions(billing: Billing) -> list[Any]:
    listed = await billing.stripe.v1.subscriptions.list_async({"status": "all", "limit": 100})
    return listed.data


async def account_of(db, user_id: str) -> Account:
    async with db.session() as session:
        return (await session.scalars(select(Account).where(Account.user_id == user_id))).one()


async def mirror_counts(db) -> dict[str, int]:
    models = (Subscription, Invoice, PaymentTransaction, PaymentMethod, AuditLogEntry)
    return {model.__tablename__: await count(db, model) for model in models}


# --- createSubscription: cards ---------------------------------------------------------------


async def test_visa_subscribes_at_once_and_writes_through(client, db, billing, token_for):
    payload = await create(client, token_for("alice"), billing, paymentMethodId="pm_card_visa")

    assert payload["userErrors"] == []
    assert payload["requiresAction"] is False and payload["clientSecret"] is None
    subscription = payload["subscription"]
    assert subscription["status"] == "ACTIVE" and subscription["quantity"] == 1
    assert subscription["plan"]["id"] == billing.plan_id("pro_monthly")
    assert subscription["latestInvoice"]["status"] == "PAID"
    assert subscription["latestInvoice"]["total"] == {"amount": "2900", "currency": "USD"}
    # The mirror has it all before any webhook: subscription, invoice, payment, card.
    (row,) = await rows(db, Subscription)
    assert row.stripe_subscription_id == subscription["stripeSubscriptionId"]
    (transaction,) = await rows(db, PaymentTransaction)
    assert transaction.status is PaymentStatus.SUCCEEDED and transaction.amount == 2900
    (method,) = await rows(db, PaymentMethod)
    assert method.last4 == "4242" and method.detached_at is None
    remote = await billing.stripe.v1.subscriptions.retrieve_async(row.stripe_subscription_id)
    account = await account_of(db, "alice")
    assert remote.customer == account.stripe_customer_id
    assert remote.default_payment_method == method.stripe_payment_method_id


async def test_create_writes_an_audit_entry_with_the_amount(client, db, billing, token_for):
    payload = await create(client, token_for("alice"), billing, paymentMethodId="pm_card_visa")

    (entry,) = await rows(db, AuditLogEntry)
    account = await account_of(db, "alice")
    assert (entry.actor, entry.action, entry.account_id) == (
        "user:alice",
        "subscription.create",
        account.id,
    )
    assert entry.stripe_ref == payload["subscription"]["stripeSubscriptionId"]
    assert (entry.amount, entry.currency) == (2900, "usd")
    assert entry.request_id
    assert entry.details["plan"] == billing.plans["pro_monthly"].stripe_price_id


async def test_mastercard_subscribes_too(client, db, billing, token_for):
    payload = await create(
        client, token_for("alice"), billing, "starter_yearly", paymentMethodId="pm_card_mastercard"
    )
    assert payload["userErrors"] == []
    assert payload["subscription"]["status"] == "ACTIVE"
    assert payload["subscription"]["plan"]["interval"] == "YEAR"
    (method,) = await rows(db, PaymentMethod)
    assert (method.brand, method.last4) == ("mastercard", "4444")


@pytest.mark.parametrize(
    ("card", "decline_code"),
    [
        ("pm_card_chargeDeclined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
    ],
)
async def test_a_card_declined_when_saved_buys_nothing(
    client, db, billing, token_for, card, decline_code
):
    payload = await create(client, token_for("alice"), billing, paymentMethodId=card)

    assert payload["subscription"] is None
    assert codes(payload) == ["CARD_DECLINED"]
    assert decline_code in payload["userErrors"][0]["message"]
    assert payload["userErrors"][0]["field"] == ["paymentMethodId"]
    assert await stripe_subscriptions(billing) == []
    assert await count(db, Subscription) == 0


async def test_a_declined_first_payment_cancels_the_subscription(client, db, billing, token_for):
    token = token_for("alice")
    payload = await create(client, token, billing, paymentMethodId="pm_card_chargeCustomerFail")

    assert payload["subscription"] is None and payload["requiresAction"] is False
    assert codes(payload) == ["CARD_DECLINED"]
    assert "generic_decline" in payload["userErrors"][0]["message"]
    # Stripe left it incomplete with an open invoice; the gateway canceled it, so nothing is
    # owed and nothing holds the account.
    (remote,) = await stripe_subscriptions(billing)
    assert remote.status == "canceled"
    (row,) = await rows(db, Subscription)
    assert row.status is SubscriptionStatus.CANCELED
    (transaction,) = await rows(db, PaymentTransaction)
    assert transaction.failure_code == "generic_decline"
    actions = [entry.action for entry in await rows(db, AuditLogEntry)]
    assert actions == ["subscription.create", "subscription.abandon"]

    retry = await create(client, token, billing, paymentMethodId="pm_card_visa")
    assert retry["userErrors"] == [] and retry["subscription"]["status"] == "ACTIVE"


async def test_three_d_secure_then_authenticated(client, db, billing, token_for):
    payload = await create(
        client, token_for("alice"), billing, paymentMethodId="pm_card_authenticationRequired"
    )

    assert payload["userErrors"] == []
    assert payload["subscription"]["status"] == "INCOMPLETE"
    assert payload["requiresAction"] is True
    intent_id = payload["clientSecret"].split("_secret_")[0]
    assert intent_id.startswith("pi_")
    (transaction,) = await rows(db, PaymentTransaction)
    assert transaction.stripe_payment_intent_id == intent_id
    assert transaction.status is PaymentStatus.REQUIRES_ACTION

    # The customer passes the bank's challenge in Stripe.js.
    await browser(billing, f"/_sandbox/payment_intents/{intent_id}/authenticate", outcome="succeed")

    intent = await billing.stripe.v1.payment_intents.retrieve_async(intent_id)
    assert intent.status == "succeeded"
    invoice_id = payload["subscription"]["latestInvoice"]["stripeInvoiceId"]
    assert (await billing.stripe.v1.invoices.retrieve_async(invoice_id)).status == "paid"
    remote = await billing.stripe.v1.subscriptions.retrieve_async(
        payload["subscription"]["stripeSubscriptionId"]
    )
    assert remote.status == "active"


async def test_three_d_secure_failed_leaves_it_incomplete(client, db, billing, token_for):
    payload = await create(
        client, token_for("alice"), billing, paymentMethodId="pm_card_authenticationRequired"
    )
    intent_id = payload["clientSecret"].split("_secret_")[0]

    await browser(billing, f"/_sandbox/payment_intents/{intent_id}/authenticate", outcome="fail")

    intent = await billing.stripe.v1.payment_intents.retrieve_async(intent_id)
    assert intent.status == "requires_payment_method"
    remote = await billing.stripe.v1.subscriptions.retrieve_async(
        payload["subscription"]["stripeSubscriptionId"]
    )
    assert remote.status == "incomplete"


async def test_without_any_card_stripe_js_confirms_the_first_payment(
    client, db, billing, token_for
):
    payload = await create(client, token_for("alice"), billing)

    assert payload["userErrors"] == []
    assert payload["subscription"]["status"] == "INCOMPLETE"
    assert payload["requiresAction"] is True
    intent_id = payload["clientSecret"].split("_secret_")[0]
    intent = await billing.stripe.v1.payment_intents.retrieve_async(intent_id)
    assert intent.status == "requires_payment_method"

    # Stripe.js collects a card and confirms the PaymentIntent with the client secret.
    await billing.stripe.v1.payment_intents.confirm_async(
        intent_id, {"payment_method": "pm_card_visa"}
    )
    remote = await billing.stripe.v1.subscriptions.retrieve_async(
        payload["subscription"]["stripeSubscriptionId"]
    )
    assert remote.status == "active"


async def test_the_customers_default_card_is_charged_when_none_is_given(
    client, db, billing, token_for
):
    token = token_for("alice")
    await graphql(client, "mutation { createSetupIntent { clientSecret } }", token=token)
    customer_id = (await account_of(db, "alice")).stripe_customer_id
    method = await billing.stripe.v1.payment_methods.attach_async(
        "pm_card_mastercard", {"customer": customer_id}
    )
    await billing.stripe.v1.customers.update_async(
        customer_id, {"invoice_settings": {"default_payment_method": method.id}}
    )

    payload = await create(client, token, billing)

    assert payload["userErrors"] == [] and payload["requiresAction"] is False
    assert payload["subscription"]["status"] == "ACTIVE"
    (transaction,) = await rows(db, PaymentTransaction)
    assert transaction.payment_method_stripe_id == method.id


async def test_quantity_multiplies_the_first_invoice(client, db, billing, token_for):
    payload = await create(
        client, token_for("alice"), billing, paymentMethodId="pm_card_visa", quantity=3
    )
    assert payload["subscription"]["quantity"] == 3
    assert payload["subscription"]["latestInvoice"]["total"]["amount"] == "8700"


async def with_trial(db, billing: Billing, days: int = 14) -> None:
    """Give Pro monthly a trial, as a price's recurring.trial_period_days mirrors in."""
    async with db.session() as session, session.begin():
        plan = await session.get(Plan, billing.plans["pro_monthly"].id)
        plan.trial_days = days


async def test_a_plan_with_trial_days_starts_trialing(client, db, billing, token_for):
    await with_trial(db, billing)

    payload = await create(client, token_for("alice"), billing, paymentMethodId="pm_card_visa")

    assert payload["userErrors"] == [] and payload["requiresAction"] is False
    assert payload["subscription"]["status"] == "TRIALING"
    assert payload["subscription"]["trialEnd"] is not None
    assert payload["subscription"]["latestInvoice"]["total"]["amount"] == "0"
    remote = await billing.stripe.v1.subscriptions.retrieve_async(
        payload["subscription"]["stripeSubscriptionId"]
    )
    assert remote.status == "trialing"
    assert remote.trial_end - remote.trial_start == 14 * 86400


async def test_a_trial_needs_no_card_now(client, db, billing, token_for):
    await with_trial(db, billing)

    payload = await create(client, token_for("alice"), billing)

    assert payload["userErrors"] == []
    assert payload["subscription"]["status"] == "TRIALING"
    assert payload["requiresAction"] is False and payload["clientSecret"] is None


# --- createSubscription: refusals --------------------------------------------------------------


async def plan_id_of(kind: str, billing: Billing, db, settings) -> str:
    """A planId that is malformed, unknown, not a plan, inactive, or not recurring."""
    if kind == "malformed":
        return "not-an-id"
    if kind == "unknown":
        return to_global_id("Plan", 999_999)
    if kind == "other type":
        return to_global_id("Subscription", billing.plans["pro_monthly"].id)
    price = billing.plans["starter_yearly"].stripe_price_id
    if kind == "inactive":
        await billing.stripe.v1.prices.update_async(price, {"active": False})
    else:  # a one-time top-up price
        product = (await billing.stripe.v1.prices.retrieve_async(price)).product
        price = (
            await billing.stripe.v1.prices.create_async(
                {"product": product, "currency": "usd", "unit_amount": 500}
            )
        ).id
    async with db.session() as session:
        async with StripeApi(settings, billing.sandbox.url) as api:
            await catalog.sync_plans(session=session, stripe=api)
    async with db.session() as session:
        plan = await session.scalar(select(Plan).where(Plan.stripe_price_id == price))
    return to_global_id("Plan", plan.id)


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("malformed", "INVALID_INPUT"),
        ("unknown", "NOT_FOUND"),
        ("other type", "INVALID_INPUT"),
        ("inactive", "INVALID_INPUT"),
        ("one-time", "INVALID_INPUT"),
    ],
)
async def test_a_plan_that_is_not_for_sale_is_refused(
    client, db, billing, settings, token_for, kind, code
):
    plan_id = await plan_id_of(kind, billing, db, settings)
    payload = await mutate(
        client, CREATE, token_for("alice"), planId=plan_id, paymentMethodId="pm_card_visa"
    )
    assert payload["userErrors"] == [
        {"code": code, "field": ["planId"], "message": payload["userErrors"][0]["message"]}
    ]
    assert await stripe_subscriptions(billing) == []


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"quantity": 0}, "INVALID_INPUT", ["quantity"]),
        ({"quantity": -2}, "INVALID_INPUT", ["quantity"]),
        ({"paymentMethodId": "card_1234"}, "INVALID_INPUT", ["paymentMethodId"]),
        ({"paymentMethodId": "tok_visa"}, "INVALID_INPUT", ["paymentMethodId"]),
        ({"paymentMethodId": "pm_nope"}, "NOT_FOUND", ["paymentMethodId"]),
    ],
)
async def test_bad_input_is_refused(client, db, billing, token_for, fields, code, field):
    payload = await create(client, token_for("alice"), billing, **fields)
    assert codes(payload) == [code]
    assert payload["userErrors"][0]["field"] == field
    assert await stripe_subscriptions(billing) == []
    assert await count(db, Subscription) == 0


async def test_another_customers_card_cannot_be_used(client, db, billing, token_for):
    bob = await billing.stripe.v1.customers.create_async({"email": "bob@example.com"})
    card = await billing.stripe.v1.payment_methods.attach_async(
        "pm_card_visa", {"customer": bob.id}
    )

    payload = await create(client, token_for("alice"), billing, paymentMethodId=card.id)

    assert codes(payload) == ["INVALID_INPUT"]
    assert payload["userErrors"][0]["field"] == ["paymentMethodId"]
    assert (await billing.stripe.v1.payment_methods.retrieve_async(card.id)).customer == bob.id
    assert await stripe_subscriptions(billing) == []


async def test_a_second_subscription_is_refused(client, db, billing, token_for):
    token = token_for("alice")
    await subscribed(client, token, billing)

    payload = await create(
        client, token, billing, "starter_monthly", paymentMethodId="pm_card_visa"
    )

    assert codes(payload) == ["ALREADY_SUBSCRIBED"]
    assert len(await stripe_subscriptions(billing)) == 1


async def test_an_incomplete_subscription_counts_as_live(client, db, billing, token_for):
    token = token_for("alice")
    first = await create(client, token, billing, paymentMethodId="pm_card_authenticationRequired")
    assert first["subscription"]["status"] == "INCOMPLETE"

    second = await create(client, token, billing, paymentMethodId="pm_card_visa")
    assert codes(second) == ["ALREADY_SUBSCRIBED"]


async def test_concurrent_creates_make_exactly_one_subscription(client, db, billing, token_for):
    token = token_for("alice")
    await graphql(client, "{ viewer { userId } }", token=token)

    payloads = await asyncio.gather(
        *(
            create(client, token, billing, plan, paymentMethodId="pm_card_visa")
            for plan in ("pro_monthly", "starter_monthly", "pro_yearly", "starter_yearly")
        )
    )

    outcomes = sorted(codes(payload)[0] if payload["userErrors"] else "OK" for payload in payloads)
    assert outcomes == ["ALREADY_SUBSCRIBED"] * 3 + ["OK"]
    assert len(await stripe_subscriptions(billing)) == 1
    assert len((await billing.stripe.v1.customers.list_async()).data) == 1
    assert await count(db, Subscription) == 1


async def test_concurrent_first_creates_share_one_new_customer(client, db, billing, token_for):
    token = token_for("alice")
    payloads = await asyncio.gather(
        *(create(client, token, billing, paymentMethodId="pm_card_visa") for _ in range(3))
    )
    outcomes = sorted(codes(payload)[0] if payload["userErrors"] else "OK" for payload in payloads)
    assert outcomes == ["ALREADY_SUBSCRIBED", "ALREADY_SUBSCRIBED", "OK"]
    assert len((await billing.stripe.v1.customers.list_async()).data) == 1
    assert len(await stripe_subscriptions(billing)) == 1


# --- createSubscription: idempotency keys ---------------------------------------------------------


async def test_a_retry_with_the_same_key_replays_without_calling_stripe(
    client, db, billing, token_for
):
    token = token_for("alice")
    first = await create(
        client, token, billing, paymentMethodId="pm_card_visa", idempotencyKey="k1"
    )
    # Were Stripe called again, the replay would fail: every Stripe request now answers 503.
    await fault(billing, status=503, count=1000, path="/v1/")

    again = await create(
        client, token, billing, paymentMethodId="pm_card_visa", idempotencyKey="k1"
    )

    assert again == first and first["userErrors"] == []
    assert len(billing.sandbox.store.ids_by_type["subscription"]) == 1
    assert await count(db, AuditLogEntry) == 1
    (stored,) = await rows(db, IdempotencyKey)
    assert stored.response == {
        "ok": {
            "subscription_id": from_global_id(first["subscription"]["id"])[1],
            "client_secret": None,
        }
    }


async def test_a_replayed_three_d_secure_start_keeps_its_client_secret(
    client, db, billing, token_for
):
    token = token_for("alice")
    card = "pm_card_authenticationRequired"
    first = await create(client, token, billing, paymentMethodId=card, idempotencyKey="k3ds")
    await fault(billing, status=503, count=1000, path="/v1/")

    again = await create(client, token, billing, paymentMethodId=card, idempotencyKey="k3ds")

    assert again["requiresAction"] is True
    assert again["clientSecret"] == first["clientSecret"] is not None
    assert again["subscription"]["id"] == first["subscription"]["id"]


async def test_the_same_key_with_other_input_is_refused(client, db, billing, token_for):
    token = token_for("alice")
    await create(client, token, billing, paymentMethodId="pm_card_visa", idempotencyKey="k2")

    other = await create(
        client, token, billing, paymentMethodId="pm_card_visa", quantity=2, idempotencyKey="k2"
    )

    assert codes(other) == ["IDEMPOTENCY_KEY_REUSED"]
    assert other["userErrors"][0]["field"] == ["idempotencyKey"]
    assert len(await stripe_subscriptions(billing)) == 1


async def test_a_replayed_decline_is_declined_again(client, db, billing, token_for):
    token = token_for("alice")
    card = "pm_card_chargeCustomerFail"
    first = await create(client, token, billing, paymentMethodId=card, idempotencyKey="k4")
    await fault(billing, status=503, count=1000, path="/v1/")

    again = await create(client, token, billing, paymentMethodId=card, idempotencyKey="k4")

    assert codes(first) == codes(again) == ["CARD_DECLINED"]
    assert len(billing.sandbox.store.ids_by_type["subscription"]) == 1


@pytest.mark.parametrize("key", ["", "   ", "k" * 201])
async def test_an_unusable_key_is_refused(client, db, billing, token_for, key):
    payload = await create(
        client, token_for("alice"), billing, paymentMethodId="pm_card_visa", idempotencyKey=key
    )
    assert codes(payload) == ["INVALID_INPUT"]
    assert payload["userErrors"][0]["field"] == ["idempotencyKey"]
    assert await stripe_subscriptions(billing) == []


async def test_keys_belong_to_their_caller(client, db, billing, token_for):
    alice = await create(
        client, token_for("alice"), billing, paymentMethodId="pm_card_visa", idempotencyKey="same"
    )
    bob = await create(
        client, token_for("bob"), billing, paymentMethodId="pm_card_visa", idempotencyKey="same"
    )
    assert alice["userErrors"] == bob["userErrors"] == []
    assert alice["subscription"]["id"] != bob["subscription"]["id"]
    assert len(await stripe_subscriptions(billing)) == 2


# --- createSubscription: Stripe failing ------------------------------------------------------------


async def test_stripe_unavailable_changes_nothing_and_the_key_may_retry(
    client, db, billing, token_for
):
    token = token_for("alice")
    await fault(billing, status=503, count=3, path="/v1/subscriptions", method="POST")

    failed = await create(
        client, token, billing, paymentMethodId="pm_card_visa", idempotencyKey="k5"
    )

    assert codes(failed) == ["STRIPE_UNAVAILABLE"] and failed["subscription"] is None
    assert await mirror_counts(db) == dict.fromkeys(
        ("subscriptions", "invoices", "payment_transactions", "payment_methods", "audit_log"), 0
    )
    assert await stripe_subscriptions(billing) == []
    assert await count(db, IdempotencyKey) == 0

    retried = await create(
        client, token, billing, paymentMethodId="pm_card_visa", idempotencyKey="k5"
    )
    assert retried["userErrors"] == [] and retried["subscription"]["status"] == "ACTIVE"
    assert len(await stripe_subscriptions(billing)) == 1


async def test_stripe_rate_limiting_is_rate_limited(client, db, billing, token_for):
    await fault(billing, status=429, count=3, path="/v1/subscriptions", method="POST")

    payload = await create(client, token_for("alice"), billing, paymentMethodId="pm_card_visa")

    assert codes(payload) == ["RATE_LIMITED"]
    assert await count(db, Subscription) == 0


# --- changeSubscriptionPlan ----------------------------------------------------------------------


async def test_upgrade_with_proration_invoices_the_difference_at_once(
    client, db, billing, token_for
):
    token = token_for("alice")
    subscription = await subscribed(client, token, billing, "starter_monthly")

    payload = await mutate(
        client,
        CHANGE,
        token,
        subscriptionId=subscription["id"],
        planId=billing.plan_id("pro_monthly"),
    )

    assert payload["userErrors"] == []
    changed = payload["subscription"]
    assert changed["plan"]["id"] == billing.plan_id("pro_monthly")
    invoice = changed["latestInvoice"]
    assert invoice["stripeInvoiceId"] != subscription["latestInvoice"]["stripeInvoiceId"]
    assert invoice["status"] == "PAID" and any(line["proration"] for line in invoice["lines"])
    assert 0 < int(invoice["total"]["amount"]) <= 2900 - 900
    remote = await billing.stripe.v1.subscriptions.retrieve_async(
        subscription["stripeSubscriptionId"]
    )
    assert remote["items"].data[0].price.id == billing.plans["pro_monthly"].stripe_price_id
    entry = (await rows(db, AuditLogEntry))[-1]
    assert entry.action == "subscription.change_plan"
    assert (entry.amount, entry.currency) == (int(invoice["total"]["amount"]), "usd")
    assert entry.details["from_plan"] == billing.plans["starter_monthly"].stripe_price_id


async def test_change_without_proration_makes_no_invoice(client, db, billing, token_for):
    token = token_for("alice")
    subscription = await subscribed(client, token, billing)

    payload = await mutate(
        client,
        CHANGE,
        token,
        subscriptionId=subscription["id"],
        planId=billing.plan_id("starter_monthly"),
        prorate=False,
    )

    assert payload["userErrors"] == []
    assert payload["subscription"]["plan"]["id"] == billing.plan_id("starter_monthly")
    assert payload["subscription"]["latestInvoice"] == subscription["latestInvoice"]
    entry = (await rows(db, AuditLogEntry))[-1]
    assert entry.action == "subscription.change_plan" and entry.amount is None


async def test_change_of_quantity_only(client, db, billing, token_for):
    token = token_for("alice")
    subscription = await subscribed(client, token, billing)

    payload = await mutate(
        client,
        CHANGE,
        token,
        subscriptionId=subscription["id"],
        planId=billing.plan_id("pro_monthly"),
        quantity=2,
    )

    assert payload["userErrors"] == [] and payload["subscription"]["quantity"] == 2
    remote = await billing.stripe.v1.subscriptions.retrieve_async(
        subscription["stripeSubscriptionId"]
    )
    assert remote["items"].data[0].quantity == 2


async def test_monthly_to_yearly_restarts_the_period(client, db, billing, token_for):
    token = token_for("alice")
    subscription = await subscribed(client, token, billing)

    payload = await mutate(
        client,
        CHANGE,
        token,
        subscriptionId=subscription["id"],
        planId=billing.plan_id("pro_yearly"),
    )

    changed = payload["subscription"]
    assert changed["plan"]["interval"] == "YEAR"
    assert changed["currentPeriodEnd"] > subscription["currentPeriodEnd"]
    assert changed["latestInvoice"]["status"] == "PAID"


@pytest.mark.parametrize(
    ("card", "code"),
    [
        ("pm_card_chargeCustomerFail", "CARD_DECLINED"),
        ("pm_card_authenticationRequired", "AUTHENTICATION_REQUIRED"),
    ],
)
async def test_an_upgrade_the_card_does_not_pay_changes_nothing(
    client, db, billing, token_for, card, code
):
    token = token_for("alice")
    subscription = await subscribed(client, token, billing, "starter_monthly")
    customer_id = (await account_of(db, "alice")).stripe_customer_id
    method = await billing.stripe.v1.payment_methods.attach_async(card, {"customer": customer_id})
    await billing.stripe.v1.subscriptions.update_async(
        subscription["stripeSubscriptionId"], {"default_payment_method": method.id}
    )
    audit_before = await count(db, AuditLogEntry)

    payload = await mutate(
        client,
        CHANGE,
        token,
        subscriptionId=subscription["id"],
        planId=billing.plan_id("pro_monthly"),
    )

    assert codes(payload) == [code] and payload["subscription"] is None
    remote = await billing.stripe.v1.subscriptions.retrieve_async(
        subscription["stripeSubscriptionId"]
    )
    assert remote["items"].data[0].price.id == billing.plans["starter_monthly"].stripe_price_id
    assert remote.status == "active"
    (row,) = await rows(db, Subscription)
    assert row.plan_id == billing.plans["starter_monthly"].id
    assert await count(db, AuditLogEntry) == audit_before


async def test_same_plan_and_quantity_is_invalid_state(client, db, billing, token_for):
    token = token_for("alice")
    subscription = await subscribed(client, token, billing)

    payload = await mutate(
        client,
        CHANGE,
        token,
        subscriptionId=subscription["id"],
        planId=billing.plan_id("pro_monthly"),
        quantity=1,
    )

    assert codes(payload) == ["INVALID_STATE"]


async def test_an_ended_subscription_cannot_change(client, db, billing, token_for):
    token = token_for("alice")
    subscription = await subscribed(client, token, billing)
    await mutate(client, CANCEL, token, subscriptionId=subscription["id"], atPeriodEnd=False)

    payload = await mutate(
        client,
        CHANGE,
        token,
        subscriptionId=subscription["id"],
        planId=billing.plan_id("starter_monthly"),
    )

    assert codes(payload) == ["INVALID_STATE"]


async def test_an_incomplete_subscription_cannot_change(client, db, billing, token_for):
    token = token_for("alice")
    started = await create(client, token, billing, paymentMethodId="pm_card_authenticationRequired")

    payload = await mutate(
        client,
        CHANGE,
        token,
        subscriptionId=started["subscription"]["id"],
        planId=billing.plan_id("starter_monthly"),
    )

    assert codes(payload) == ["INVALID_STATE"]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"quantity": 0}, "INVALID_INPUT"),
        ({"planId": to_global_id("Plan", 999_999)}, "NOT_FOUND"),
        ({"subscriptionId": to_global_id("Subscription", 999_999)}, "NOT_FOUND"),
        ({"subscriptionId": "garbage"}, "INVALID_INPUT"),
    ],
)
async def test_change_refuses_bad_input(client, db, billing, token_for, fields, code):
    token = token_for("alice")
    subscription = await subscribed(client, token, billing)
    inputs = {"subscriptionId": subscription["id"], "planId": billing.plan_id("starter_monthly")}

    payload = await mutate(client, CHANGE, token, **(inputs | fields))

    assert codes(payload) == [code]


async def test_change_replays_by_key_and_refuses_reuse(client, db, billing, token_for):
    token = token_for("alice")
    subscription = await subscribed(client, token, billing, "starter_monthly")
    inputs = {
        "subscriptionId": subscription["id"],
        "planId": billing.plan_id("pro_monthly"),
        "idempotencyKey": "upgrade-1",
    }
    first = await mutate(client, CHANGE, token, **inputs)
    invoices = len(billing.sandbox.store.ids_by_type["invoice"])
    await fault(billing, status=503, count=1000, path="/v1/")

    again = await mutate(client, CHANGE, token, **inputs)
    reused = await mutate(client, CHANGE, token, **(inputs | {"quantity": 5}))

    assert first["userErrors"] == [] and again == first
    assert codes(reused) == ["IDEMPOTENCY_KEY_REUSED"]
    assert len(billing.sandbox.store.ids_by_type["invoice"]) == invoices


async def test_change_when_stripe_is_unavailable_changes_nothing(client, db, billing, token_for):
    token = token_for("alice")
    subscription = await subscribed(client, token, billing)
    before = await mirror_counts(db)
    await fault(billing, status=503, count=3, path="/v1/subscriptions/", method="POST")

    payload = await mutate(
        client,
        CHANGE,
        token,
        subscriptionId=subscription["id"],
        planId=billing.plan_id("starter_monthly"),
    )

    assert codes(payload) == ["STRIPE_UNAVAILABLE"]
    assert await mirror_counts(db) == before
    (row,) = await rows(db, Subscription)
    assert row.plan_id == billing.plans["pro_monthly"].id


async def test_change_when_stripe_rate_limits(client, db, billing, token_for):
    token = token_for("alice")
    subscription = await subscribed(client, token, billing)
    await fault(billing, status=429, count=3, path="/v1/subscriptions/", method="POST")

    payload = await mutate(
        client,
        CHANGE,
        token,
        subscriptionId=subscription["id"],
        planId=billing.plan_id("starter_monthly"),
    )

    assert codes(payload) == ["RATE_LIMITED"]


# --- resume and cancel ---------------------------------------------------------------------------


async def test_resume_undoes_cancel_at_period_end(client, db, billing, token_for):
    token = token_for("alice")
    subscription = await subscribed(client, token, billing)
    canceling = await mutate(client, CANCEL, token, subscriptionId=subscription["id"])
    assert canceling["subscription"]["cancelAtPeriodEnd"] is True

    payload = await mutate(client, RESUME, token, subscriptionId=subscription["id"])

    assert payload["userErrors"] == []
    assert payload["subscription"] == {
        "id": subscription["id"],
        "status": "ACTIVE",
        "cancelAtPeriodEnd": False,
    }
    remote = await billing.stripe.v1.subscriptions.retrieve_async(
        subscription["stripeSubscriptionId"]
    )
    assert remote.cancel_at_period_end is False and remote.cancel_at is None
    (row,) = await rows(db, Subscription)
    assert row.cancel_at_period_end is False
    actions = [entry.action for entry in await rows(db, AuditLogEntry)]
    assert actions == ["subscription.create", "subscription.cancel", "subscription.resume"]


async def test_resume_of_a_subscription_not_canceling_is_invalid_state(
    client, db, billing, token_for
):
    token = token_for("alice")
    subscription = await subscribed(client, token, billing)

    payload = await mutate(client, RESUME, token, subscriptionId=subscription["id"])

    assert codes(payload) == ["INVALID_STATE"]


async def test_resume_of_an_ended_subscription_is_invalid_state(client, db, billing, token_for):
    token = token_for("alice")
    subscription = await subscribed(client, token, billing)
    await mutate(client, CANCEL, token, subscriptionId=subscription["id"], atPeriodEnd=False)

    payload = await mutate(client, RESUME, token, subscriptionId=subscription["id"])

    assert codes(payload) == ["INVALID_STATE"]


async def test_resume_when_stripe_is_unavailable(client, db, billing, token_for):
    token = token_for("alice")
    subscription = await subscribed(client, token, billing)
    await mutate(client, CANCEL, token, subscriptionId=subscription["id"])
    await fault(billing, status=503, count=3, path="/v1/subscriptions/", method="POST")

    payload = await mutate(client, RESUME, token, subscriptionId=subscription["id"])

    assert codes(payload) == ["STRIPE_UNAVAILABLE"]
    (row,) = await rows(db, Subscription)
    assert row.cancel_at_period_end is True


async def test_cancel_writes_an_audit_entry(client, db, billing, token_for):
    token = token_for("alice")
    subscription = await subscribed(client, token, billing)

    await mutate(client, CANCEL, token, subscriptionId=subscription["id"], atPeriodEnd=False)

    entry = (await rows(db, AuditLogEntry))[-1]
    assert (entry.action, entry.actor) == ("subscription.cancel", "user:alice")
    assert entry.stripe_ref == subscription["stripeSubscriptionId"]
    assert entry.details == {"at_period_end": False}


@pytest.mark.parametrize("document", [CHANGE, RESUME, CANCEL])
async def test_another_customers_subscription_is_not_found_and_unchanged(
    client, db, billing, token_for, document
):
    alice = token_for("alice")
    subscription = await subscribed(client, alice, billing)
    await mutate(client, CANCEL, alice, subscriptionId=subscription["id"])
    audit_before = await count(db, AuditLogEntry)
    fields = {"subscriptionId": subscription["id"]}
    if document == CHANGE:
        fields["planId"] = billing.plan_id("starter_monthly")

    payload = await mutate(client, document, token_for("mallory"), **fields)

    assert payload["subscription"] is None
    assert codes(payload) == ["NOT_FOUND"]
    remote = await billing.stripe.v1.subscriptions.retrieve_async(
        subscription["stripeSubscriptionId"]
    )
    assert remote.status == "active" and remote.cancel_at_period_end is True
    assert remote["items"].data[0].price.id == billing.plans["pro_monthly"].stripe_price_id
    assert await count(db, AuditLogEntry) == audit_before


# --- hosted pages ----------------------------------------------------------------------------------


async def test_checkout_session_for_a_plan(client, db, billing, token_for):
    token = token_for("alice")
    payload = await mutate(
        client,
        CHECKOUT,
        token,
        planId=billing.plan_id("starter_monthly"),
        successUrl=f"{SHOP}/welcome?session={{CHECKOUT_SESSION_ID}}",
        cancelUrl=f"{SHOP}/pricing",
    )

    assert payload["userErrors"] == []
    assert payload["sessionId"].startswith("cs_") and payload["url"].startswith("https://")
    session = await billing.stripe.v1.checkout.sessions.retrieve_async(payload["sessionId"])
    assert session.customer == (await account_of(db, "alice")).stripe_customer_id
    assert session.mode == "subscription" and session.cancel_url == f"{SHOP}/pricing"

    # The customer pays on the hosted page: Stripe starts the subscription.
    await browser(billing, f"/_sandbox/checkout/sessions/{payload['sessionId']}/complete")
    (remote,) = await stripe_subscriptions(billing)
    assert remote.customer == session.customer and remote.status == "active"


@pytest.mark.parametrize(
    "url",
    ["ftp://shop.example.com/ok", "javascript:alert(1)", "/relative", "https://", "not a url"],
)
async def test_checkout_refuses_urls_that_are_not_http(client, db, billing, token_for, url):
    token = token_for("alice")
    plan_id = billing.plan_id("pro_monthly")

    bad_success = await mutate(
        client, CHECKOUT, token, planId=plan_id, successUrl=url, cancelUrl=SHOP
    )
    bad_cancel = await mutate(
        client, CHECKOUT, token, planId=plan_id, successUrl=SHOP, cancelUrl=url
    )

    assert codes(bad_success) == codes(bad_cancel) == ["INVALID_INPUT"]
    assert bad_success["userErrors"][0]["field"] == ["successUrl"]
    assert bad_cancel["userErrors"][0]["field"] == ["cancelUrl"]
    assert (await billing.stripe.v1.checkout.sessions.list_async()).data == []


async def test_checkout_refusals(client, db, billing, token_for):
    token = token_for("alice")
    unknown = await mutate(
        client,
        CHECKOUT,
        token,
        planId=to_global_id("Plan", 999_999),
        successUrl=SHOP,
        cancelUrl=SHOP,
    )
    await subscribed(client, token, billing)
    second = await mutate(
        client,
        CHECKOUT,
        token,
        planId=billing.plan_id("starter_monthly"),
        successUrl=SHOP,
        cancelUrl=SHOP,
    )
    assert codes(unknown) == ["NOT_FOUND"]
    assert codes(second) == ["ALREADY_SUBSCRIBED"]
    assert (await billing.stripe.v1.checkout.sessions.list_async()).data == []


async def test_checkout_when_stripe_is_unavailable(client, db, billing, token_for):
    await fault(billing, status=503, count=3, path="/v1/checkout/sessions")
    payload = await mutate(
        client,
        CHECKOUT,
        token_for("alice"),
        planId=billing.plan_id("pro_monthly"),
        successUrl=SHOP,
        cancelUrl=SHOP,
    )
    assert codes(payload) == ["STRIPE_UNAVAILABLE"] and payload["sessionId"] is None


async def test_portal_session(client, db, billing, token_for):
    payload = await mutate(client, PORTAL, token_for("alice"), returnUrl=f"{SHOP}/account")

    assert payload["userErrors"] == [] and payload["url"].startswith("https://")
    customer_id = (await account_of(db, "alice")).stripe_customer_id
    assert customer_id is not None
    (session,) = [
        obj
        for obj in billing.sandbox.store.objects.values()
        if obj.get("object") == "billing_portal.session"
    ]
    assert session["customer"] == customer_id and session["return_url"] == f"{SHOP}/account"


@pytest.mark.parametrize("url", ["mailto:me@example.com", "", "http://exa mple.com"])
async def test_portal_refuses_urls_that_are_not_http(client, db, billing, token_for, url):
    payload = await mutate(client, PORTAL, token_for("alice"), returnUrl=url)
    assert codes(payload) == ["INVALID_INPUT"] and payload["url"] is None
    assert payload["userErrors"][0]["field"] == ["returnUrl"]


async def test_portal_when_stripe_rate_limits(client, db, billing, token_for):
    await fault(billing, status=429, count=3, path="/v1/billing_portal/sessions")
    payload = await mutate(client, PORTAL, token_for("alice"), returnUrl=SHOP)
    assert codes(payload) == ["RATE_LIMITED"]


# --- every mutation: authentication and raw card data ----------------------------------------------


def every_mutation(billing: Billing, subscription_id: str) -> list[tuple[str, dict[str, Any]]]:
    plan_id = billing.plan_id("pro_monthly")
    return [
        (CREATE, {"planId": plan_id}),
        (CHANGE, {"subscriptionId": subscription_id, "planId": plan_id}),
        (RESUME, {"subscriptionId": subscription_id}),
        (CHECKOUT, {"planId": plan_id, "successUrl": SHOP, "cancelUrl": SHOP}),
        (PORTAL, {"returnUrl": SHOP}),
    ]


async def test_every_mutation_needs_a_token(client, billing):
    for document, fields in every_mutation(billing, to_global_id("Subscription", 1)):
        result = await graphql(client, document, {"input": fields})
        assert error_codes(result) == ["UNAUTHENTICATED"]


PAN = "4242424242424242"
CARD_INPUTS = [
    (CREATE, {"paymentMethodId": "4242 4242 4242 4242"}),
    (CREATE, {"paymentMethodId": "pm_card_visa", "idempotencyKey": f"retry-{PAN}"}),
    (CREATE, {"paymentMethodId": "pm_card_visa cvc: 123"}),
    (CHANGE, {"idempotencyKey": "4242-4242-4242-4242"}),
    (RESUME, {"subscriptionId": PAN}),
    (CHECKOUT, {"successUrl": f"{SHOP}/ok?card={PAN}"}),
    (CHECKOUT, {"cancelUrl": f"{SHOP}/back?cvv=123"}),
    (PORTAL, {"returnUrl": f"{SHOP}/back?pan={PAN}"}),
]


async def test_raw_card_data_is_refused_and_never_stored_or_logged(
    client, db, billing, token_for, caplog
):
    caplog.set_level(logging.DEBUG)
    defaults = dict(every_mutation(billing, to_global_id("Subscription", 1)))
    token = token_for("alice")

    for document, fields in CARD_INPUTS:
        base = defaults[document]
        payload = await mutate(client, document, token, **(base | fields))
        assert codes(payload) == ["RAW_CARD_DATA_REJECTED"], (document, fields)

    assert await stripe_subscriptions(billing) == []
    assert await text_columns_containing(db, ["4242", "cvc", "cvv"]) == []
    for needle in (PAN, "4242 4242 4242 4242", "4242-4242-4242-4242", "cvc: 123", "cvv=123"):
        assert needle not in caplog.text


async def text_columns_containing(db, needles: list[str]) -> list[str]:
    """Every `table.column` of text or JSON whose value contains one of `needles`."""
    async with db.session() as session:
        columns = (
            await session.execute(
                text(
                    "SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND table_name <> 'alembic_version' "
                    "AND data_type IN ('text', 'character varying', 'jsonb', 'json')"
                )
            )
        ).all()
        found = []
        for table, column in columns:
            for needle in needles:
                hit = await session.scalar(
                    text(f'SELECT 1 FROM "{table}" WHERE "{column}"::text ILIKE :p LIMIT 1'),
                    {"p": f"%{needle}%"},
                )
                if hit:
                    found.append(f"{table}.{column}")
    return found


async def test_card_data_scan_sees_stored_text(client, db, billing, token_for):
    """The scan above finds what is there (so its empty answer means something)."""
    await create(client, token_for("alice"), billing, paymentMethodId="pm_card_visa")
    assert "payment_methods.last4" in await text_columns_containing(db, ["4242"])
