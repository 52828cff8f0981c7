"""What a purchase would bill, from Stripe's own invoice preview (nothing changes): subscribing
to a plan, or changing a subscription's plan or quantity, with its code, currency and tax. The
preview sends Stripe the parameters the purchase itself sends, so it bills the same."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.settings import Settings
from services import (
    accounts,
    catalog,
    customers,
    discounts,
    mirror,
    purchases,
    subscriptions,
    taxes,
)
from services.errors import DomainError, ErrorCode, InvalidInput
from services.stripe.client import StripeApi, Terms

StripeDict = dict[str, Any]


@dataclass(frozen=True)
class PreviewLine:
    description: str | None
    amount: int
    quantity: int | None
    proration: bool
    tax: int | None
    period_start: datetime | None
    period_end: datetime | None


@dataclass(frozen=True)
class Preview:
    currency: str
    lines: list[PreviewLine]
    subtotal: int
    discounts: list[dict[str, Any]]
    total_discount: int
    taxes: list[dict[str, Any]]
    total: int
    amount_due: int
    charged_at: datetime | None


def preview_params(
    *,
    customer_id: str,
    price_id: str,
    quantity: int,
    terms: Terms,
    subscription: StripeDict | None,
) -> dict[str, Any]:
    """Stripe's create_preview parameters for subscribing, or for changing `subscription`
    (as retrieved) to the price: the same parameters the purchase itself will send. Without
    a code, a change's preview keeps the subscription's own discounts, as the change does."""
    params: dict[str, Any] = {"customer": customer_id}
    details: dict[str, Any] = {}
    extra = terms.subscription_params()
    if subscription is None:
        details["items"] = [{"price": price_id, "quantity": quantity}]
        if "default_tax_rates" in extra:
            details["default_tax_rates"] = extra["default_tax_rates"]
        if "currency" in extra:
            params["currency"] = extra["currency"]
    else:
        params["subscription"] = subscription["id"]
        item = subscription["items"]["data"][0]
        details["items"] = [{"id": item["id"], "price": price_id, "quantity": quantity}]
        # As changeSubscriptionPlan bills a change (prorated, invoiced at once).
        details["proration_behavior"] = "always_invoice"
    if "discounts" in extra:
        params["discounts"] = extra["discounts"]
    if "automatic_tax" in extra:
        params["automatic_tax"] = extra["automatic_tax"]
    params["subscription_details"] = details
    return params


async def preview(*, session: AsyncSession, stripe: StripeApi, params: dict[str, Any]) -> Preview:
    invoice = (await stripe.preview_invoice(params)).to_dict()
    async with session.begin():
        described_taxes = await taxes.described_taxes(session, stripe, invoice)
    described = {
        value["id"]: discounts.describe(value)
        for value in invoice.get("discounts") or []
        if isinstance(value, dict)
    }
    lines = [
        PreviewLine(
            description=line.get("description"),
            amount=line["amount"],
            quantity=line.get("quantity"),
            proration=mirror.line_is_proration(line),
            tax=taxes.line_tax(line),
            period_start=mirror.timestamp((line.get("period") or {}).get("start")),
            period_end=mirror.timestamp((line.get("period") or {}).get("end")),
        )
        for line in invoice["lines"]["data"]
    ]
    return Preview(
        currency=invoice["currency"],
        lines=lines,
        subtotal=invoice["subtotal"],
        discounts=discounts.invoice_discounts(invoice, described),
        total_discount=sum(e["amount"] for e in invoice.get("total_discount_amounts") or []),
        taxes=described_taxes,
        total=invoice["total"],
        amount_due=invoice["amount_due"],
        # Whatever the gateway buys or changes is invoiced and charged at once.
        charged_at=None,
    )


async def preview_purchase(
    *,
    session: AsyncSession,
    stripe: StripeApi,
    settings: Settings,
    account_id: int,
    plan_id: int,
    subscription_id: int | None,
    quantity: int | None,
    promotion_code: str | None,
    currency: str | None,
) -> Preview:
    if quantity is not None and quantity < 1:
        raise InvalidInput("quantity must be at least 1", ["quantity"])
    plan = await catalog.plan_for_sale(session=session, plan_id=plan_id)
    customer_id = await customers.ensure_stripe_customer(
        session=session, stripe=stripe, account_id=account_id
    )
    account = await accounts.load_account(session, account_id)
    if subscription_id is None:
        terms = await purchases.terms_for(
            session=session,
            stripe=stripe,
            settings=settings,
            account=account,
            plan=plan,
            currency=currency,
            promotion_code=promotion_code,
        )
        params = preview_params(
            customer_id=customer_id,
            price_id=plan.stripe_price_id,
            quantity=quantity or 1,
            terms=terms,
            subscription=None,
        )
        if plan.trial_days:  # the first invoice is the trial's, at $0
            trial_end = datetime.now(UTC) + timedelta(days=plan.trial_days)
            params["subscription_details"]["trial_end"] = int(trial_end.timestamp())
        return await preview(session=session, stripe=stripe, params=params)
    row = await subscriptions.owned_live(session, account_id, subscription_id)
    if currency is not None and currency.strip().lower() != (row.currency or plan.currency):
        raise DomainError(
            ErrorCode.UNSUPPORTED_CURRENCY,
            "A subscription keeps its currency; preview it in its own",
            ["currency"],
        )
    purchases.currency_for(account, plan, row.currency)
    code_id = await purchases.promotion_code_id(
        session=session,
        stripe=stripe,
        account=account,
        code=promotion_code,
        plan=plan,
        currency=row.currency,
    )
    current = await stripe.retrieve_subscription(row.stripe_subscription_id)
    params = preview_params(
        customer_id=customer_id,
        price_id=plan.stripe_price_id,
        quantity=quantity or row.quantity,
        terms=Terms(promotion_code_id=code_id),
        subscription=current.to_dict(),
    )
    return await preview(session=session, stripe=stripe, params=params)
