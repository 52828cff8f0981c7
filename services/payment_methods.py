"""Saved payment methods of an account: reads from the mirror; changes through Stripe, written
through."""

import re
import uuid
from datetime import UTC, datetime
from typing import Any, NamedTuple

import stripe as stripe_sdk
from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.database import Database
from db.models import Account, PaymentMethod, Subscription
from db.rows import rows_where
from services import customers, mirror, subscriptions
from services.errors import DomainError, ErrorCode, InvalidInput, NotFound, about_field
from services.stripe.client import StripeApi

# What Stripe.js hands over: a PaymentMethod id. Anything else, a card number above all, is
# refused before it goes anywhere.
STRIPE_ID = re.compile(r"pm_[A-Za-z0-9_]{1,250}")


class OwnedPaymentMethod(NamedTuple):
    row: PaymentMethod
    owner: Account

    @property
    def is_default(self) -> bool:
        return self.owner.default_payment_method_stripe_id == self.row.stripe_payment_method_id


def check_stripe_id(value: str, field: str = "paymentMethodId") -> str:
    """`value` if it is a Stripe PaymentMethod id (pm_…); INVALID_INPUT otherwise."""
    if not STRIPE_ID.fullmatch(value):
        raise InvalidInput("Expected a Stripe PaymentMethod id (pm_…) from Stripe.js", [field])
    return value


async def get_with_owner(
    *, session: AsyncSession, payment_method_id: int
) -> OwnedPaymentMethod | None:
    query = (
        select(PaymentMethod, Account)
        .join(Account, Account.id == PaymentMethod.account_id)
        .where(PaymentMethod.id == payment_method_id, PaymentMethod.detached_at.is_(None))
        .execution_options(populate_existing=True)
    )
    found = (await session.execute(query)).one_or_none()
    return OwnedPaymentMethod(*found) if found is not None else None


async def get_owned(
    *, session: AsyncSession, account_id: int, payment_method_id: int
) -> OwnedPaymentMethod:
    """The account's attached payment method; NOT_FOUND for anyone else's (ids reveal nothing)."""
    found = await get_with_owner(session=session, payment_method_id=payment_method_id)
    if found is None or found.owner.id != account_id:
        raise NotFound("No such payment method", ["paymentMethodId"])
    return found


async def refuse_foreign(*, session: AsyncSession, account_id: int, stripe_id: str) -> None:
    """NOT_FOUND when the mirror knows this Stripe payment method as another account's."""
    owner = await session.scalar(
        select(PaymentMethod.account_id).where(PaymentMethod.stripe_payment_method_id == stripe_id)
    )
    if owner is not None and owner != account_id:
        raise NotFound("No such payment method", ["paymentMethodId"])


async def list_for_account(*, database: Database, account_id: int) -> list[Any]:
    """The account's attached payment methods, newest first, as plain rows of the table."""
    return await rows_where(
        database,
        PaymentMethod.__table__,
        "account_id = $1 AND detached_at IS NULL",
        account_id,
        order_by="stripe_created_at DESC, id DESC",
    )


async def create_setup_intent(*, session: AsyncSession, stripe: StripeApi, account_id: int) -> str:
    """A SetupIntent's client secret, for Stripe.js to collect and save a card."""
    customer_id = await customers.ensure_stripe_customer(
        session=session, stripe=stripe, account_id=account_id
    )
    intent = await stripe.create_setup_intent(
        customer_id=customer_id, idempotency_key=f"setup-intent:{account_id}:{uuid.uuid4().hex}"
    )
    assert intent.client_secret is not None
    return intent.client_secret


async def attach(
    *,
    session: AsyncSession,
    stripe: StripeApi,
    account_id: int,
    stripe_id: str,
    make_default: bool,
) -> OwnedPaymentMethod:
    """Save a payment method from Stripe.js to the account's customer, optionally as default."""
    check_stripe_id(stripe_id)
    async with session.begin():
        await refuse_foreign(session=session, account_id=account_id, stripe_id=stripe_id)
    customer_id = await customers.ensure_stripe_customer(
        session=session, stripe=stripe, account_id=account_id
    )
    # Stripe's refusals here (no such method, already someone's, spent) are about the id.
    with about_field("paymentMethodId", ErrorCode.NOT_FOUND, ErrorCode.INVALID_INPUT):
        method = await stripe.attach_payment_method(
            payment_method_id=stripe_id,
            customer_id=customer_id,
            idempotency_key=subscriptions.stripe_key("attach-payment-method", account_id, None),
        )
    # Mirrored before the default is set, so a failure there leaves the mirror like Stripe.
    row_id = await _write_through(session=session, account_id=account_id, method=method)
    if make_default:
        await _make_default(
            session=session,
            stripe=stripe,
            customer_id=customer_id,
            account_id=account_id,
            stripe_id=method.id,
        )
    return await _reload(session=session, payment_method_id=row_id)


async def set_default(
    *, session: AsyncSession, stripe: StripeApi, account_id: int, payment_method_id: int
) -> OwnedPaymentMethod:
    """Make one of the account's payment methods the one its invoices are charged to."""
    async with session.begin():
        found = await get_owned(
            session=session, account_id=account_id, payment_method_id=payment_method_id
        )
    assert found.owner.stripe_customer_id is not None, "an attached method has a customer"
    await _make_default(
        session=session,
        stripe=stripe,
        customer_id=found.owner.stripe_customer_id,
        account_id=account_id,
        stripe_id=found.row.stripe_payment_method_id,
    )
    return await _reload(session=session, payment_method_id=found.row.id)


async def detach(
    *, session: AsyncSession, stripe: StripeApi, account_id: int, payment_method_id: int
) -> int:
    """Remove a payment method from the account's customer; the detached row's id."""
    async with session.begin():
        found = await get_owned(
            session=session, account_id=account_id, payment_method_id=payment_method_id
        )
        if await _needed_by_live_subscription(session=session, found=found):
            raise DomainError(
                ErrorCode.INVALID_STATE,
                "A live subscription is charged to this payment method; make another one the "
                "default first",
                ["paymentMethodId"],
            )
    stripe_id = found.row.stripe_payment_method_id
    method = await stripe.detach_payment_method(
        payment_method_id=stripe_id,
        idempotency_key=subscriptions.stripe_key("detach-payment-method", account_id, None),
    )
    async with session.begin():
        await mirror.upsert_payment_method(
            session, method.to_dict(), account_id, observed_at=datetime.now(UTC)
        )
        # Stripe clears the customer's default when it is the detached method: so does the mirror.
        await session.execute(
            update(Account)
            .where(Account.id == account_id, Account.default_payment_method_stripe_id == stripe_id)
            .values(default_payment_method_stripe_id=None)
        )
    return found.row.id


async def _needed_by_live_subscription(*, session: AsyncSession, found: OwnedPaymentMethod) -> bool:
    """Whether a live subscription is charged to this method: as its own default, or through
    the account's default when it has none of its own."""
    stripe_id = found.row.stripe_payment_method_id
    own = Subscription.default_payment_method_stripe_id
    charged_here = own == stripe_id
    if found.is_default:
        charged_here = or_(charged_here, own.is_(None))
    query = select(Subscription.id).where(
        and_(
            Subscription.account_id == found.owner.id,
            Subscription.status.in_(subscriptions.LIVE_STATUSES),
            charged_here,
        )
    )
    return await session.scalar(query.limit(1)) is not None


async def _make_default(
    *, session: AsyncSession, stripe: StripeApi, customer_id: str, account_id: int, stripe_id: str
) -> None:
    customer = await stripe.set_default_payment_method(
        customer_id=customer_id,
        payment_method_id=stripe_id,
        idempotency_key=subscriptions.stripe_key("set-default-payment-method", account_id, None),
    )
    async with session.begin():
        await mirror.upsert_customer(session, customer.to_dict(), observed_at=datetime.now(UTC))


async def _write_through(
    *, session: AsyncSession, account_id: int, method: stripe_sdk.PaymentMethod
) -> int:
    async with session.begin():
        return await mirror.upsert_payment_method(
            session, method.to_dict(), account_id, observed_at=datetime.now(UTC)
        )


async def _reload(*, session: AsyncSession, payment_method_id: int) -> OwnedPaymentMethod:
    async with session.begin():
        found = await get_with_owner(session=session, payment_method_id=payment_method_id)
    assert found is not None, "the method was just written through"
    return found
