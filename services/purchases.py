"""The terms of a purchase: the currency it is billed in, its promotion code and its tax.

A customer is billed in one currency (Stripe refuses to mix them on a customer): the first
purchase chooses it, among the currencies the plan sells in."""

from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Account, Invoice, PaymentStatus, PaymentTransaction, Plan
from gateway.settings import Settings
from services import discounts, taxes
from services.errors import DomainError, ErrorCode
from services.stripe.client import StripeApi, Terms

StripeDict = dict[str, Any]


def plan_amounts(plan: Plan) -> dict[str, int]:
    """The plan's unit amount in each currency it sells in, its own currency first."""
    return {plan.currency: plan.amount} | dict(sorted(plan.other_amounts.items()))


def currency_for(account: Account, plan: Plan, requested: str | None) -> str:
    """The currency this purchase is billed in; UNSUPPORTED_CURRENCY when the plan does not
    sell in it, or the customer is already billed in another."""
    offered = plan_amounts(plan)
    currency = (requested or account.currency or plan.currency).strip().lower()
    if account.currency and currency != account.currency:
        raise DomainError(
            ErrorCode.UNSUPPORTED_CURRENCY,
            f"The customer is billed in {account.currency.upper()}; a purchase cannot be in"
            f" {currency.upper()}",
            ["currency"],
        )
    if currency not in offered:
        sold_in = ", ".join(code.upper() for code in offered)
        raise DomainError(
            ErrorCode.UNSUPPORTED_CURRENCY,
            f"The plan is not sold in {currency.upper()} (only {sold_in})",
            ["currency"],
        )
    return currency


async def is_first_purchase(session: AsyncSession, account_id: int) -> bool:
    """Whether the account has never paid anything (Stripe's `first_time_transaction`)."""
    paid = await session.scalar(
        select(
            or_(
                exists().where(
                    PaymentTransaction.account_id == account_id,
                    PaymentTransaction.status == PaymentStatus.SUCCEEDED,
                ),
                exists().where(Invoice.account_id == account_id, Invoice.amount_paid > 0),
            )
        )
    )
    return not paid


async def check_code(
    *,
    session: AsyncSession,
    stripe: StripeApi,
    account: Account,
    code: str,
    plan: Plan | None,
    currency: str | None,
) -> discounts.CodeCheck:
    async with session.begin():
        first = await is_first_purchase(session, account.id)
    return await discounts.check_code(
        stripe=stripe,
        code=code,
        plan=plan,
        customer_id=account.stripe_customer_id,
        currency=currency or account.currency,
        first_purchase=first,
    )


async def promotion_code_id(
    *,
    session: AsyncSession,
    stripe: StripeApi,
    account: Account,
    code: str | None,
    plan: Plan,
    currency: str | None,
) -> str | None:
    """The Stripe id of the code the caller typed (None when none), checked:
    INVALID_PROMOTION_CODE with the reason when it cannot be used."""
    if code is None:
        return None
    check = await check_code(
        session=session, stripe=stripe, account=account, code=code, plan=plan, currency=currency
    )
    return discounts.require_valid(check)


async def terms_for(
    *,
    session: AsyncSession,
    stripe: StripeApi,
    settings: Settings,
    account: Account,
    plan: Plan,
    currency: str | None,
    promotion_code: str | None,
) -> Terms:
    """The terms of the account's purchase of the plan, checked: UNSUPPORTED_CURRENCY or
    INVALID_PROMOTION_CODE before anything is asked of Stripe."""
    chosen = currency_for(account, plan, currency)
    code_id = await promotion_code_id(
        session=session,
        stripe=stripe,
        account=account,
        code=promotion_code,
        plan=plan,
        currency=chosen,
    )
    # The price's own currency needs no `currency` parameter.
    return taxes.terms(
        settings,
        account,
        currency=chosen if chosen != plan.currency else None,
        promotion_code_id=code_id,
    )
