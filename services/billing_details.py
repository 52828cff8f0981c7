"""Who is billed: the customer's name, email and address, and their tax ids, set on the Stripe
customer and written through to the mirror. An ABN is checked here, with the ATO's checksum,
before Stripe is asked; Stripe checks every other type."""

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import TaxId
from services import customers, mirror
from services.errors import DomainError, ErrorCode, InvalidInput, NotFound
from services.stripe.client import StripeApi

MAX_TEXT = 200
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
COUNTRY = re.compile(r"[A-Z]{2}")
TAX_ID_TYPE = re.compile(r"[a-z]{2}_[a-z_]{2,12}")
# The ATO's ABN check: subtract 1 from the first digit, weight the digits, and the weighted
# sum must divide by 89.
ABN_WEIGHTS = (10, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19)
# Stripe's address parts and the AddressInput fields they come from.
STRIPE_ADDRESS = {
    "line1": "line1",
    "line2": "line2",
    "city": "city",
    "state": "state",
    "postal_code": "postalCode",
}


@dataclass(frozen=True)
class Details:
    """What updateBillingDetails sets; None leaves a field as it is. The address is keyed by
    Stripe's names (postal_code)."""

    name: str | None = None
    email: str | None = None
    address: dict[str, str | None] | None = None


def _text(value: str, field: list[str]) -> str:
    value = value.strip()
    if len(value) > MAX_TEXT or any(not char.isprintable() for char in value):
        raise InvalidInput(f"{field[-1]} must be at most {MAX_TEXT} printable characters", field)
    return value


def stripe_params(details: Details) -> dict[str, Any]:
    """The Stripe customer update for the details, checked; INVALID_INPUT names the field."""
    params: dict[str, Any] = {}
    if details.name is not None:
        params["name"] = _text(details.name, ["name"])
    if details.email is not None:
        email = _text(details.email, ["email"])
        if not EMAIL.fullmatch(email):
            raise InvalidInput("email is not an email address", ["email"])
        params["email"] = email
    if details.address is not None:
        params["address"] = _address(details.address)
    if not params:
        raise InvalidInput("Nothing to update: give a name, an email or an address")
    return params


def _address(address: dict[str, str | None]) -> dict[str, str]:
    country = (address.get("country") or "").strip().upper()
    if not COUNTRY.fullmatch(country):
        raise InvalidInput("country must be an ISO 3166-1 alpha-2 code", ["address", "country"])
    checked = {"country": country}
    for name, field in STRIPE_ADDRESS.items():
        value = address.get(name)
        checked[name] = _text(value, ["address", field]) if value else ""
    return checked


async def update(
    *, session: AsyncSession, stripe: StripeApi, account_id: int, details: Details
) -> None:
    params = stripe_params(details)
    customer_id = await customers.ensure_stripe_customer(
        session=session, stripe=stripe, account_id=account_id
    )
    customer = await stripe.update_billing_details(
        customer_id=customer_id,
        details=params,
        idempotency_key=f"billing-details:{account_id}:{uuid.uuid4().hex}",
    )
    async with session.begin():
        await mirror.upsert_customer(session, customer.to_dict(), observed_at=datetime.now(UTC))


# --- tax ids ---------------------------------------------------------------------------------


def is_valid_abn(value: str) -> bool:
    digits = [int(char) for char in value if char.isdigit()]
    if len(digits) != 11 or re.sub(r"[\s]", "", value) != "".join(map(str, digits)):
        return False
    digits[0] -= 1
    return sum(d * w for d, w in zip(digits, ABN_WEIGHTS, strict=True)) % 89 == 0


def checked_tax_id(type: str, value: str) -> tuple[str, str]:
    """The type and value to send to Stripe; INVALID_TAX_ID for what is wrong on its face."""
    type, value = type.strip().lower(), " ".join(value.split())
    if not TAX_ID_TYPE.fullmatch(type):
        raise DomainError(ErrorCode.INVALID_TAX_ID, f"Unknown tax id type {type!r}", ["type"])
    if not value or len(value) > 64:
        raise DomainError(ErrorCode.INVALID_TAX_ID, "The tax id is empty or too long", ["value"])
    if type == "au_abn":
        if not is_valid_abn(value):
            raise DomainError(
                ErrorCode.INVALID_TAX_ID, "That ABN fails the ATO's checksum", ["value"]
            )
        value = value.replace(" ", "")
    return type, value


async def add_tax_id(
    *, session: AsyncSession, stripe: StripeApi, account_id: int, type: str, value: str
) -> TaxId:
    type, value = checked_tax_id(type, value)
    customer_id = await customers.ensure_stripe_customer(
        session=session, stripe=stripe, account_id=account_id
    )
    try:
        created = await stripe.create_tax_id(
            customer_id=customer_id,
            type=type,
            value=value,
            idempotency_key=f"tax-id:{account_id}:{type}:{value}",
        )
    except DomainError as error:
        if error.code is not ErrorCode.INVALID_INPUT:
            raise
        raise DomainError(ErrorCode.INVALID_TAX_ID, error.message, ["value"]) from error
    async with session.begin():
        row_id = await mirror.upsert_tax_id(
            session, created.to_dict(), account_id, observed_at=datetime.now(UTC)
        )
        row = await session.get(TaxId, row_id, populate_existing=True)
    assert row is not None
    return row


async def remove_tax_id(
    *, session: AsyncSession, stripe: StripeApi, account_id: int, tax_id_row: int
) -> None:
    async with session.begin():
        row = await session.get(TaxId, tax_id_row)
    if row is None or row.account_id != account_id or row.deleted_at is not None:
        raise NotFound("No such tax id", ["taxIdId"])
    customer_id = await customers.ensure_stripe_customer(
        session=session, stripe=stripe, account_id=account_id
    )
    try:
        await stripe.delete_tax_id(customer_id=customer_id, tax_id=row.stripe_tax_id)
    except DomainError as error:
        if error.code is not ErrorCode.NOT_FOUND:  # gone already: removing it again is done
            raise
    async with session.begin():
        await mirror.mark_tax_id_deleted(session, row.stripe_tax_id, observed_at=datetime.now(UTC))


async def tax_ids_of(*, session: AsyncSession, account_id: int) -> list[TaxId]:
    rows = await session.scalars(
        select(TaxId)
        .where(TaxId.account_id == account_id, TaxId.deleted_at.is_(None))
        .order_by(TaxId.stripe_created_at, TaxId.id)
    )
    return list(rows)
