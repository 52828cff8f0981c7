"""The viewer's billing after real mutations: every list scoped to the caller."""

from tests.conftest import Billing, graphql

CREATE = """
mutation ($input: CreateSubscriptionInput!) {
  createSubscription(input: $input) { subscription { id status } userErrors { code } }
}
"""
DASHBOARD = """
query {
  viewer {
    activeSubscription { id status quantity plan { productName amount { formatted } } }
    subscriptions(first: 10) { totalCount edges { node { id status latestInvoice { id } } } }
    invoices(first: 10) {
      totalCount
      edges { node { id status number total { amount currency } amountPaid { amount }
                     subscription { id } lines { description amount { amount } quantity proration } } }
    }
    paymentMethods { stripePaymentMethodId brand last4 isDefault }
    transactions(first: 10) {
      totalCount
      edges { node { status amount { amount } paymentMethod { last4 } invoice { id } receiptUrl } }
    }
  }
}
"""


async def test_the_dashboard_shows_the_callers_subscription_invoice_card_and_payment(
    client, billing: Billing, token_for
):
    alice, bob = token_for("alice"), token_for("bob")
    created = await graphql(
        client,
        CREATE,
        {"input": {"planId": billing.plan_id("pro_monthly"), "paymentMethodId": "pm_card_visa"}},
        token=alice,
    )
    subscription = created["data"]["createSubscription"]["subscription"]
    assert subscription["status"] == "ACTIVE"

    mine = (await graphql(client, DASHBOARD, token=alice))["data"]["viewer"]
    theirs = (await graphql(client, DASHBOARD, token=bob))["data"]["viewer"]

    assert mine["activeSubscription"]["id"] == subscription["id"]
    assert mine["activeSubscription"]["plan"] == {
        "productName": "Pro",
        "amount": {"formatted": "$29.00"},
    }
    (sub_edge,) = mine["subscriptions"]["edges"]
    (invoice_edge,) = mine["invoices"]["edges"]
    invoice = invoice_edge["node"]
    assert sub_edge["node"]["latestInvoice"]["id"] == invoice["id"]
    assert invoice["status"] == "PAID" and invoice["total"] == {"amount": "2900", "currency": "USD"}
    assert invoice["amountPaid"]["amount"] == "2900"
    assert invoice["subscription"]["id"] == subscription["id"]
    assert [line["amount"]["amount"] for line in invoice["lines"]] == ["2900"]
    assert mine["paymentMethods"] == [
        {
            "stripePaymentMethodId": mine["paymentMethods"][0]["stripePaymentMethodId"],
            "brand": "visa",
            "last4": "4242",
            "isDefault": True,
        }
    ]
    (payment,) = [edge["node"] for edge in mine["transactions"]["edges"]]
    assert payment["status"] == "SUCCEEDED" and payment["amount"]["amount"] == "2900"
    assert payment["invoice"]["id"] == invoice["id"] and payment["paymentMethod"]["last4"] == "4242"
    assert payment["receiptUrl"]

    assert theirs["activeSubscription"] is None
    assert theirs["subscriptions"]["totalCount"] == theirs["invoices"]["totalCount"] == 0
    assert theirs["transactions"]["totalCount"] == 0 and theirs["paymentMethods"] == []
