"""Tax: how purchases are taxed (TAX_MODE), and what the mirror shows of an invoice's taxes.

Stripe's invoices name each tax rate by id only; a rate's percentage and inclusiveness never
change, so each rate is read from Stripe once and kept in `tax_rates`."""

from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.database import driver_of
from db.models import Account, TaxRate
from gateway.settings import Settings, TaxMode
from services.stripe.client import StripeApi, Terms

StripeDict = dict[str, Any]

KNOWN_RATES = """
SELECT stripe_tax_rate_id, display_name, percentage, inclusive, country FROM tax_rates
WHERE stripe_tax_rate_id = ANY($1)
"""


def terms(
    settings: Settings,
    account: Account,
    *,
    currency: str | None = None,
    promotion_code_id: str | None = None,
) -> Terms:
    """The terms of the account's purchase. Automatic tax needs the customer's location: an
    account with no billing address is not taxed automatically (Stripe would refuse the
    purchase), which updateBillingDetails fixes."""
    mode = settings.taxes
    return Terms(
        currency=currency,
        promotion_code_id=promotion_code_id,
        automatic_tax=mode is TaxMode.AUTOMATIC and bool((account.address or {}).get("country")),
        tax_rate_ids=tuple(settings.tax_rate_ids) if mode is TaxMode.RATES else (),
    )


def _rate_id(entry: StripeDict) -> str | None:
    return (entry.get("tax_rate_details") or {}).get("tax_rate")


async def described_taxes(
    session: AsyncSession, stripe: StripeApi, invoice: StripeDict
) -> list[dict[str, Any]]:
    """The invoice's taxes, one entry per rate: {amount, name, percentage, inclusive, country}."""
    amounts: dict[str, int] = {}
    for entry in invoice.get("total_taxes") or []:
        rate_id = _rate_id(entry)
        if rate_id is not None:
            amounts[rate_id] = amounts.get(rate_id, 0) + entry["amount"]
    if not amounts:
        return []
    rates = await _rates(session, stripe, list(amounts))
    return [rates[rate_id] | {"amount": amount} for rate_id, amount in amounts.items()]


def line_tax(line: StripeDict) -> int | None:
    taxes = line.get("taxes") or []
    return sum(entry["amount"] for entry in taxes) if taxes else None


async def _rates(
    session: AsyncSession, stripe: StripeApi, rate_ids: list[str]
) -> dict[str, dict[str, Any]]:
    driver = await driver_of(session)
    known = {
        row["stripe_tax_rate_id"]: _described(row)
        for row in await driver.fetch(KNOWN_RATES, rate_ids)
    }
    for rate_id in set(rate_ids) - known.keys():
        rate = (await stripe.retrieve_tax_rate(rate_id)).to_dict()
        values = {
            "stripe_tax_rate_id": rate_id,
            "display_name": rate.get("display_name") or "Tax",
            "percentage": float(rate.get("effective_percentage") or rate.get("percentage") or 0),
            "inclusive": bool(rate.get("inclusive")),
            "country": rate.get("country"),
        }
        await session.execute(insert(TaxRate).values(values).on_conflict_do_nothing())
        known[rate_id] = _described(values)
    return known


def _described(rate: Any) -> dict[str, Any]:
    return {
        "name": rate["display_name"],
        "percentage": rate["percentage"],
        "inclusive": rate["inclusive"],
        "country": rate["country"],
    }
