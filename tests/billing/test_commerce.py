"""Commerce end to end through GraphQL: billing details, tax ids (the ABN checked before
Stripe), promotion codes, currencies, automatic tax and previews that equal the bill.

The sandbox runs with TAX_MODE unset, so automatic tax (its documented table) applies to
customers with an address; the demo catalog sells in USD and AUD and seeds WELCOME20."""

import asyncio
import io
import time
from typing import Any

import httpx
import pytest
from pypdf import PdfReader
from sqlalchemy import select

from db.models import Account, Subscription
from services.billing_details import is_valid_abn
from tests.billing.test_subscription_mutations import (
    CANCEL,
    CHANGE,
    CHECKOUT,
    CREATE,
    SHOP,
    browser,
    codes,
    mutate,
    rows,
    stripe_subscriptions,
)
from tests.conftest import Billing, graphql

VALID_ABN, BAD_ABN = "51 824 753 556", "51 824 753 557"
MONEY = "amount currency"
DISCOUNT = "couponId name percentOff amountOff { amount currency } duration promotionCode"
TAXES = "amount { amount currency } name percentage inclusive country"
BILL = f"""
    lines {{ description amount {{ {MONEY} }} proration tax {{ {MONEY} }} }}
    subtotal {{ {MONEY} }} totalDiscount {{ {MONEY} }} total {{ {MONEY} }}
    discounts {{ {DISCOUNT} }} taxes {{ {TAXES} }}
"""
PREVIEW = f"""
query ($planId: ID!, $subscriptionId: ID, $quantity: Int, $code: String, $currency: String) {{
  viewer {{
    invoicePreview(planId: $planId, subscriptionId: $subscriptionId, quantity: $quantity,
                   promotionCode: $code, currency: $currency) {{
      {BILL} amountDue {{ {MONEY} }} chargedAt
    }}
  }}
}}
"""
LATEST_INVOICE = f"""
query {{ viewer {{ subscriptions(first: 1) {{ edges {{ node {{
  id discount {{ {DISCOUNT} }}
  latestInvoice {{ id pdfUrl customerTaxIds amountDue {{ {MONEY} }} {BILL} }}
}} }} }} }} }}
"""
UPDATE_DETAILS = """
mutation ($input: UpdateBillingDetailsInput!) {
  updateBillingDetails(input: $input) {
    customer { name email currency address { line1 city state postalCode country } }
    userErrors { code field message }
  }
}
"""
ADD_TAX_ID = """
mutation ($input: AddTaxIdInput!) {
  addTaxId(input: $input) {
    taxId { id type value country verification }
    userErrors { code field message }
  }
}
"""
REMOVE_TAX_ID = """
mutation ($input: RemoveTaxIdInput!) {
  removeTaxId(input: $input) { removedTaxIdId userErrors { code field message } }
}
"""
APPLY_CODE = f"""
mutation ($input: ApplyPromotionCodeInput!) {{
  applyPromotionCode(input: $input) {{
    subscription {{ id discount {{ {DISCOUNT} }} }}
    userErrors {{ code field message }}
  }}
}}
"""
CHECK_CODE = f"""
query ($code: String!, $planId: ID) {{
  viewer {{ promotionCode(code: $code, planId: $planId) {{
    valid reason discount {{ {DISCOUNT} durationInMonths }}
  }} }}
}}
"""
CUSTOMER = """
query { viewer { customer { name email currency address { country city }
  taxIds { id type value verification } } } }
"""
PLANS = "query { plans { id stripePriceId amounts { amount currency } } }"
SYDNEY = {"line1": "1 George St", "city": "Sydney", "state": "NSW", "postalCode": "2000"}


async def query(client, token: str, document: str, **variables: Any) -> dict[str, Any]:
    result = await graphql(client, document, variables, token=token)
    assert "errors" not in result, result
    return result["data"]


async def australian_business(client, token: str) -> None:
    """A customer with a Sydney address and a valid ABN."""
    details = await mutate(
        client, UPDATE_DETAILS, token, name="Acme Pty Ltd", address=SYDNEY | {"country": "AU"}
    )
    assert details["userErrors"] == []
    added = await mutate(client, ADD_TAX_ID, token, type="au_abn", value=VALID_ABN)
    assert added["userErrors"] == []


async def preview(client, token: str, billing: Billing, plan: str, **variables: Any) -> dict:
    data = await query(client, token, PREVIEW, planId=billing.plan_id(plan), **variables)
    return data["viewer"]["invoicePreview"]


async def latest(client, token: str) -> dict[str, Any]:
    data = await query(client, token, LATEST_INVOICE)
    return data["viewer"]["subscriptions"]["edges"][0]["node"]


def bill(invoice: dict[str, Any]) -> dict[str, Any]:
    """What a preview and the invoice billed must agree on, to the cent."""
    keys = ("lines", "subtotal", "totalDiscount", "total", "discounts", "taxes")
    return {key: invoice[key] for key in keys}


# --- tax ids and billing details -----------------------------------------------------------


def test_the_abn_checksum():
    assert is_valid_abn("51 824 753 556") and is_valid_abn("51824753556")
    assert not is_valid_abn("51 824 753 557")
    assert not is_valid_abn("5182475355")  # ten digits
    assert not is_valid_abn("51-824-753-556x")


async def test_billing_details_and_an_abn_are_set_on_the_stripe_customer(
    client, db, billing, token_for
):
    token = token_for("acme")
    updated = await mutate(
        client,
        UPDATE_DETAILS,
        token,
        name="Acme Pty Ltd",
        email="accounts@acme.example",
        address=SYDNEY | {"country": "au"},
    )
    assert updated["userErrors"] == []
    customer = updated["customer"]
    assert customer["name"] == "Acme Pty Ltd" and customer["email"] == "accounts@acme.example"
    assert customer["address"] == SYDNEY | {"country": "AU"}

    added = await mutate(client, ADD_TAX_ID, token, type="au_abn", value=VALID_ABN)
    assert added["userErrors"] == []
    tax_id = added["taxId"]
    assert (tax_id["type"], tax_id["value"], tax_id["country"]) == ("au_abn", "51824753556", "AU")

    (account,) = await rows(db, Account)
    remote = await billing.stripe.v1.customers.retrieve_async(account.stripe_customer_id)
    assert remote.address.country == "AU" and remote.address.postal_code == "2000"
    remote_ids = await billing.stripe.v1.customers.tax_ids.list_async(account.stripe_customer_id)
    assert [entry.value for entry in remote_ids.data] == ["51824753556"]
    viewer = (await query(client, token, CUSTOMER))["viewer"]["customer"]
    assert [entry["value"] for entry in viewer["taxIds"]] == ["51824753556"]

    removed = await mutate(client, REMOVE_TAX_ID, token, taxIdId=tax_id["id"])
    assert removed == {"removedTaxIdId": tax_id["id"], "userErrors": []}
    remote_ids = await billing.stripe.v1.customers.tax_ids.list_async(account.stripe_customer_id)
    assert remote_ids.data == []
    assert (await query(client, token, CUSTOMER))["viewer"]["customer"]["taxIds"] == []


async def test_a_bad_abn_is_refused_before_stripe_is_called(client, db, billing, token_for):
    token = token_for("acme")
    payload = await mutate(client, ADD_TAX_ID, token, type="au_abn", value=BAD_ABN)

    assert codes(payload) == ["INVALID_TAX_ID"] and payload["taxId"] is None
    (account,) = await rows(db, Account)
    assert account.stripe_customer_id is None  # Stripe was never asked for anything


async def test_a_value_stripe_refuses_answers_invalid_tax_id(client, billing, token_for):
    payload = await mutate(client, ADD_TAX_ID, token_for("acme"), type="eu_vat", value="nope")
    assert codes(payload) == ["INVALID_TAX_ID"]


async def test_nobody_removes_another_customers_tax_id(client, billing, token_for):
    added = await mutate(client, ADD_TAX_ID, token_for("acme"), type="au_abn", value=VALID_ABN)
    tax_id = added["taxId"]["id"]

    payload = await mutate(client, REMOVE_TAX_ID, token_for("mallory"), taxIdId=tax_id)

    assert codes(payload) == ["NOT_FOUND"]
    customer = (await query(client, token_for("acme"), CUSTOMER))["viewer"]["customer"]
    assert [entry["id"] for entry in customer["taxIds"]] == [tax_id]


async def test_a_bad_address_changes_nothing(client, db, billing, token_for):
    payload = await mutate(
        client,
        UPDATE_DETAILS,
        token_for("acme"),
        address={"city": "Sydney", "country": "Australia"},
    )
    assert codes(payload) == ["INVALID_INPUT"] and payload["customer"] is None
    (account,) = await rows(db, Account)
    assert account.address is None and account.stripe_customer_id is None


# --- promotion codes -----------------------------------------------------------------------


async def test_welcome20_can_be_used_and_an_unknown_code_cannot(client, billing, token_for):
    token = token_for("alice")
    welcome = (await query(client, token, CHECK_CODE, code="WELCOME20"))["viewer"]
    check = welcome["promotionCode"]
    assert check["valid"] is True and check["reason"] is None
    assert check["discount"]["percentOff"] == 20 and check["discount"]["duration"] == "ONCE"
    assert check["discount"]["promotionCode"] == "WELCOME20"

    unknown = (await query(client, token, CHECK_CODE, code="NOPE"))["viewer"]["promotionCode"]
    assert unknown == {"valid": False, "reason": "No such promotion code", "discount": None}


@pytest.mark.parametrize(
    "restriction", ["inactive", "expired", "exhausted", "first_time", "wrong_plan"]
)
async def test_an_unusable_code_is_refused_and_nothing_is_bought(
    client, db, billing, token_for, restriction
):
    code = await restricted_code(billing, restriction)
    token = token_for("alice")
    if restriction == "first_time":
        first = await create(client, token, billing, "starter_monthly")
        assert first["userErrors"] == []
        ended = await mutate(
            client, CANCEL, token, subscriptionId=first["subscription"]["id"], atPeriodEnd=False
        )
        assert ended["userErrors"] == []
    before = len(await stripe_subscriptions(billing))

    payload = await create(client, token, billing, "pro_monthly", promotionCode=code)

    assert codes(payload) == ["INVALID_PROMOTION_CODE"], payload
    assert payload["userErrors"][0]["field"] == ["promotionCode"]
    assert len(await stripe_subscriptions(billing)) == before
    check = await query(client, token, CHECK_CODE, code=code, planId=billing.plan_id("pro_monthly"))
    assert check["viewer"]["promotionCode"]["valid"] is False


async def restricted_code(billing: Billing, restriction: str) -> str:
    """A promotion code that cannot be used for pro_monthly by a returning customer."""
    v1 = billing.stripe.v1
    coupon_params: dict[str, Any] = {"percent_off": 50, "duration": "once"}
    code_params: dict[str, Any] = {"code": f"NO-{restriction.upper().replace('_', '-')}"}
    if restriction == "wrong_plan":
        starter = await v1.prices.retrieve_async(billing.plans["starter_monthly"].stripe_price_id)
        coupon_params["applies_to"] = {"products": [starter.product]}
    if restriction == "first_time":
        code_params["restrictions"] = {"first_time_transaction": True}
    if restriction == "exhausted":
        code_params["max_redemptions"] = 1
    if restriction == "expired":
        code_params["expires_at"] = int(time.time()) + 2
    coupon = await v1.coupons.create_async(coupon_params)
    promotion = await v1.promotion_codes.create_async(
        code_params | {"promotion": {"type": "coupon", "coupon": coupon.id}}
    )
    if restriction == "inactive":
        await v1.promotion_codes.update_async(promotion.id, {"active": False})
    if restriction == "expired":
        await asyncio.sleep(2.5)
    if restriction == "exhausted":
        customer = await v1.customers.create_async({"email": "early@example.com"})
        await v1.subscriptions.create_async(
            {
                "customer": customer.id,
                "items": [{"price": billing.plans["pro_monthly"].stripe_price_id}],
                "payment_behavior": "default_incomplete",
                "discounts": [{"promotion_code": promotion.id}],
            }
        )
    return code_params["code"]


async def create(client, token: str, billing: Billing, plan: str, **fields: Any) -> dict:
    fields.setdefault("paymentMethodId", "pm_card_visa")
    variables = {"input": {"planId": billing.plan_id(plan)} | fields}
    result = await graphql(client, CREATE, variables, token=token)
    assert "errors" not in result, result
    return result["data"]["createSubscription"]


async def test_a_code_applied_to_a_live_subscription_discounts_its_next_invoice(
    client, db, billing, token_for
):
    token = token_for("alice")
    started = await create(client, token, billing, "pro_monthly")
    subscription_id = started["subscription"]["id"]

    applied = await mutate(
        client, APPLY_CODE, token, subscriptionId=subscription_id, code="WELCOME20"
    )
    assert applied["userErrors"] == []
    assert applied["subscription"]["discount"]["promotionCode"] == "WELCOME20"

    refused = await mutate(client, APPLY_CODE, token, subscriptionId=subscription_id, code="NOPE")
    assert codes(refused) == ["INVALID_PROMOTION_CODE"]
    other = await mutate(
        client, APPLY_CODE, token_for("mallory"), subscriptionId=subscription_id, code="WELCOME20"
    )
    assert codes(other) == ["NOT_FOUND"]


# --- currencies ----------------------------------------------------------------------------


async def test_plans_carry_every_currency_of_their_price(client, billing, token_for):
    plans = (await query(client, token_for("alice"), PLANS))["plans"]
    pro = next(p for p in plans if p["id"] == billing.plan_id("pro_monthly"))
    assert [money["currency"] for money in pro["amounts"]] == ["USD", "AUD"]
    assert pro["amounts"][0]["amount"] == "2900"


async def test_a_customer_is_billed_in_the_currency_of_the_first_purchase(
    client, db, billing, token_for
):
    token = token_for("alice")
    unsold = await create(client, token, billing, "pro_monthly", currency="EUR")
    assert codes(unsold) == ["UNSUPPORTED_CURRENCY"]

    first = await create(client, token, billing, "pro_monthly", currency="AUD")
    assert first["userErrors"] == []
    assert first["subscription"]["latestInvoice"]["total"]["currency"] == "AUD"
    customer = (await query(client, token, CUSTOMER))["viewer"]["customer"]
    assert customer["currency"] == "AUD"
    await mutate(
        client, CANCEL, token, subscriptionId=first["subscription"]["id"], atPeriodEnd=False
    )

    again = await create(client, token, billing, "starter_monthly", currency="USD")
    assert codes(again) == ["UNSUPPORTED_CURRENCY"]
    in_aud = await create(client, token, billing, "starter_monthly")  # the customer's currency
    assert in_aud["userErrors"] == []
    assert in_aud["subscription"]["latestInvoice"]["total"]["currency"] == "AUD"


# --- the scenario: an Australian business, in AUD, with WELCOME20 and GST ------------


async def test_an_australian_business_is_billed_what_the_preview_showed(
    client, db, billing, token_for
):
    token = token_for("acme")
    await australian_business(client, token)
    shown = await preview(client, token, billing, "pro_monthly", code="WELCOME20", currency="AUD")

    created = await create(
        client, token, billing, "pro_monthly", promotionCode="WELCOME20", currency="AUD"
    )

    assert created["userErrors"] == [], created
    invoice = (await latest(client, token))["latestInvoice"]
    assert bill(invoice) == bill(shown)
    assert invoice["amountDue"] == shown["amountDue"] and shown["chargedAt"] is None
    subtotal = int(invoice["subtotal"]["amount"])
    discount = int(invoice["totalDiscount"]["amount"])
    assert invoice["subtotal"]["currency"] == "AUD"
    assert discount == subtotal // 5  # 20% off
    (gst,) = invoice["taxes"]
    assert (gst["name"], gst["percentage"], gst["country"]) == ("GST", 10, "AU")
    assert int(gst["amount"]["amount"]) == round((subtotal - discount) / 10)
    assert int(invoice["total"]["amount"]) == subtotal - discount + int(gst["amount"]["amount"])
    assert invoice["customerTaxIds"] == ["51824753556"]

    response = await client.get(invoice["pdfUrl"], headers={"Authorization": f"Bearer {token}"})
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    assert "Tax invoice" in text and "ABN 51824753556" in text and "GST 10%" in text
    assert "Acme Pty Ltd" in text


async def test_an_australian_business_checks_out_taxed_and_discounted(
    client, db, billing, token_for
):
    token = token_for("acme")
    await australian_business(client, token)
    shown = await preview(client, token, billing, "pro_monthly", code="WELCOME20", currency="AUD")

    payload = await mutate(
        client,
        CHECKOUT,
        token,
        planId=billing.plan_id("pro_monthly"),
        successUrl=f"{SHOP}/welcome",
        cancelUrl=f"{SHOP}/pricing",
        promotionCode="WELCOME20",
        currency="AUD",
    )

    assert payload["userErrors"] == [], payload
    session = await billing.stripe.v1.checkout.sessions.retrieve_async(payload["sessionId"])
    assert session.automatic_tax.enabled and session.currency == "aud"
    assert session.amount_total == int(shown["amountDue"]["amount"])
    await browser(billing, f"/_sandbox/checkout/sessions/{session.id}/complete")
    done = await billing.stripe.v1.checkout.sessions.retrieve_async(
        session.id, {"expand": ["subscription.latest_invoice"]}
    )
    invoice = done.subscription.latest_invoice
    assert invoice.amount_paid == int(shown["amountDue"]["amount"])
    assert invoice.subtotal == int(shown["subtotal"]["amount"])
    (gst,) = shown["taxes"]
    assert [tax.amount for tax in invoice.total_taxes] == [int(gst["amount"]["amount"])]


# --- previews equal the bill, case by case -------------------------------------------------


async def test_previews_of_changes_equal_the_invoices_then_billed(client, db, billing, token_for):
    token = token_for("alice")
    shown = await preview(client, token, billing, "starter_monthly")
    created = await create(client, token, billing, "starter_monthly")
    assert bill((await latest(client, token))["latestInvoice"]) == bill(shown)
    subscription_id = created["subscription"]["id"]

    for plan, quantity in (("pro_monthly", 1), ("pro_monthly", 3), ("starter_monthly", 3)):
        shown = await preview(
            client, token, billing, plan, subscriptionId=subscription_id, quantity=quantity
        )
        changed = await mutate(
            client,
            CHANGE,
            token,
            subscriptionId=subscription_id,
            planId=billing.plan_id(plan),
            quantity=quantity,
        )
        assert changed["userErrors"] == [], changed
        billed = (await latest(client, token))["latestInvoice"]
        assert bill(billed) == bill(shown), (plan, quantity)
        assert any(line["proration"] for line in billed["lines"])


async def test_a_preview_changes_nothing(client, db, billing, token_for):
    token = token_for("alice")
    await preview(client, token, billing, "pro_monthly", code="WELCOME20")

    assert await stripe_subscriptions(billing) == []
    async with db.session() as session:
        assert (await session.scalars(select(Subscription))).all() == []
    code = await billing.stripe.v1.promotion_codes.list_async({"code": "WELCOME20"})
    assert code.data[0].times_redeemed == 0


async def test_a_preview_with_a_bad_code_answers_its_code(client, billing, token_for):
    variables = {"planId": billing.plan_id("pro_monthly"), "code": "NOPE"}
    result = await graphql(client, PREVIEW, variables, token=token_for("alice"))
    assert result["errors"][0]["extensions"]["code"] == "INVALID_PROMOTION_CODE"


async def test_a_code_stripe_refuses_answers_invalid_promotion_code(client, billing, token_for):
    """Stripe stays the judge: a code expired by Stripe's clock, not yet by the gateway's."""
    v1 = billing.stripe.v1
    coupon = await v1.coupons.create_async({"percent_off": 10, "duration": "once"})
    await v1.promotion_codes.create_async(
        {
            "code": "SOON-GONE",
            "expires_at": int(time.time()) + 60,
            "promotion": {"type": "coupon", "coupon": coupon.id},
        }
    )
    async with httpx.AsyncClient(base_url=billing.sandbox.url) as http:
        advanced = await http.post("/_sandbox/clock/advance", data={"seconds": "120"})
        advanced.raise_for_status()

    payload = await create(
        client, token_for("alice"), billing, "pro_monthly", promotionCode="SOON-GONE"
    )

    assert codes(payload) == ["INVALID_PROMOTION_CODE"]
    assert payload["userErrors"][0]["field"] == ["promotionCode"]
    assert await stripe_subscriptions(billing) == []
