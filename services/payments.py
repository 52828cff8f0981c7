"""Payment transactions (PaymentIntents) of an account: reads from the mirror; one-time
payments and refunds through Stripe, written through with an audit row."""

import re
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.database import Database
from db.models import PaymentStatus, PaymentTransaction
from services import (
    audit,
    credit_sources,
    customers,
    idempotency,
    mirror,
    money,
    payment_methods,
    subscriptions,
)
from services.audit import Actor
from services.credits import CREDITS_METADATA
from services.errors import DomainError, ErrorCode, InvalidInput, NotFound, about_field
from services.pagination import Listing, Page, paginate
from services.stripe.client import StripeApi
from services.stripe.errors import PaymentFailed

CURRENCY = re.compile(r"[A-Za-z]{3}")
# Stripe keeps a metadata value to 500 characters; the refund reason travels as one.
MAX_REASON_LENGTH = 500
# A PaymentIntent in one of these waits for Stripe.js, which needs its client secret.
AWAITING_CUSTOMER = (PaymentStatus.REQUIRES_PAYMENT_METHOD, PaymentStatus.REQUIRES_ACTION)


class PaymentOutcome(NamedTuple):
    transaction: PaymentTransaction
    client_secret: str | None
    requires_action: bool


async def list_for_account(
    *, database: Database, account_id: int, first: int | None, after: str | None
) -> Page[PaymentTransaction]:
    listing = Listing.matching(
        PaymentTransaction.__table__, "stripe_created_at", account_id=account_id
    )
    return await paginate(database, listing, first=first, after=after)


async def get_owned(
    *, session: AsyncSession, account_id: int, transaction_id: int
) -> PaymentTransaction | None:
    row = await session.get(PaymentTransaction, transaction_id)
    return row if row is not None and row.account_id == account_id else None


async def write_through_invoice_payments(
    *, session: AsyncSession, stripe: StripeApi, invoice: dict[str, Any], account_id: int
) -> None:
    """Mirror the PaymentIntents that pay an invoice (its `payments` must be expanded)."""
    for intent_id in mirror.invoice_payment_intents(invoice):
        intent = await stripe.retrieve_payment(intent_id)
        await write_through(
            session=session,
            intent=intent.to_dict(),
            account_id=account_id,
            invoice_id=invoice["id"],
        )


async def write_through(
    *, session: AsyncSession, intent: dict[str, Any], account_id: int, invoice_id: str | None = None
) -> int | None:
    async with session.begin():
        return await mirror.upsert_transaction(
            session, intent, account_id, observed_at=datetime.now(UTC), invoice_id=invoice_id
        )


# --- one-time payments -----------------------------------------------------------------


async def create_payment(
    *,
    database: Database,
    stripe: StripeApi,
    account_id: int,
    actor: Actor,
    amount: int,
    currency: str,
    description: str | None,
    payment_method_id: str | None,
    idempotency_key: str,
    credits_per_currency_unit: int,
) -> PaymentOutcome:
    """A one-time payment (a credit top-up, say): confirmed at once with `payment_method_id`,
    else left for Stripe.js to collect a card; once per idempotency key. The credits it buys
    at today's rate travel on the PaymentIntent, and are granted when it succeeds."""
    currency = _checked_currency(currency)
    if amount <= 0:
        raise InvalidInput("The amount must be positive (in minor units)", ["amount"])
    if payment_method_id is not None:
        payment_methods.check_stripe_id(payment_method_id)
    request = {
        "amount": amount,
        "currency": currency,
        "description": description,
        "payment_method_id": payment_method_id,
    }

    async def run() -> idempotency.Response:
        async with database.session() as session:
            return await _charge(
                session=session,
                stripe=stripe,
                account_id=account_id,
                actor=actor,
                request=request,
                credits=credits_bought(amount, currency, credits_per_currency_unit),
                stripe_key=subscriptions.stripe_key("create-payment", account_id, idempotency_key),
            )

    response = await idempotency.run_once(
        database=database,
        account_id=account_id,
        key=idempotency.check_key(idempotency_key),
        operation="createPayment",
        request=request,
        run=run,
    )
    async with database.session() as session:
        row = await session.get(PaymentTransaction, response["transaction_id"])
    assert row is not None, "a stored payment outcome names its mirrored transaction"
    return PaymentOutcome(row, response["client_secret"], response["requires_action"])


async def _charge(
    *,
    session: AsyncSession,
    stripe: StripeApi,
    account_id: int,
    actor: Actor,
    request: dict[str, Any],
    credits: int,
    stripe_key: str,
) -> idempotency.Response:
    method = request["payment_method_id"]
    if method is not None:
        async with session.begin():
            await payment_methods.refuse_foreign(
                session=session, account_id=account_id, stripe_id=method
            )
    customer_id = await customers.ensure_stripe_customer(
        session=session, stripe=stripe, account_id=account_id
    )
    try:
        with about_field("paymentMethodId"):
            intent = await stripe.create_payment(
                customer_id=customer_id,
                amount=request["amount"],
                currency=request["currency"],
                description=request["description"],
                payment_method_id=method,
                metadata={
                    "account_id": str(account_id),
                    "kind": "one_time",
                    CREDITS_METADATA: str(credits),
                },
                idempotency_key=stripe_key,
            )
    except PaymentFailed as error:
        # The declined attempt is a transaction too: the customer sees it and why it failed.
        if error.payment_intent_id is not None:
            failed = await stripe.retrieve_payment(error.payment_intent_id)
            await _record(
                session=session, intent=failed.to_dict(), account_id=account_id, actor=actor
            )
        raise
    row_id = await _record(
        session=session, intent=intent.to_dict(), account_id=account_id, actor=actor
    )
    await credit_sources.credit_sighting(
        session, stripe, account_id=account_id, intent_id=intent.id
    )
    status = PaymentStatus(intent.status)
    return {
        "transaction_id": row_id,
        "client_secret": intent.client_secret if status in AWAITING_CUSTOMER else None,
        "requires_action": status is PaymentStatus.REQUIRES_ACTION,
    }


async def _record(
    *, session: AsyncSession, intent: dict[str, Any], account_id: int, actor: Actor
) -> int:
    """Mirror a one-time payment and audit it, in one transaction."""
    async with session.begin():
        row_id = await mirror.upsert_transaction(
            session, intent, account_id, observed_at=datetime.now(UTC)
        )
        error = intent.get("last_payment_error") or {}
        audit.record(
            session,
            actor=actor.name,
            action="payment.create",
            account_id=account_id,
            stripe_ref=intent["id"],
            amount=intent["amount"],
            currency=intent["currency"],
            details={
                "status": intent["status"],
                "payment_method": mirror.stripe_id(intent.get("payment_method")),
                "failure_code": error.get("decline_code") or error.get("code"),
            },
            request_id=actor.request_id,
        )
    return row_id


def credits_bought(amount: int, currency: str, credits_per_currency_unit: int) -> int:
    """The credits a one-time payment buys: the rate per major unit, rounded down."""
    return amount * credits_per_currency_unit // 10 ** money.minor_unit_digits(currency)


def _checked_currency(currency: str) -> str:
    if not CURRENCY.fullmatch(currency):
        raise InvalidInput("The currency is a three-letter ISO 4217 code", ["currency"])
    return currency.lower()


# --- refunds -----------------------------------------------------------------------------


async def refund(
    *,
    database: Database,
    stripe: StripeApi,
    account_id: int,
    actor: Actor,
    transaction_id: int,
    amount: int | None,
    reason: str | None,
    idempotency_key: str,
) -> PaymentTransaction:
    """Give back all (no `amount`) or part of what a succeeded payment took; once per key of
    the caller (an admin, whose `account_id` scopes the key)."""
    if amount is not None and amount <= 0:
        raise InvalidInput("A refund amount must be positive (in minor units)", ["amount"])
    if reason is not None and len(reason) > MAX_REASON_LENGTH:
        raise InvalidInput(f"A reason is at most {MAX_REASON_LENGTH} characters", ["reason"])
    request = {"transaction_id": transaction_id, "amount": amount, "reason": reason}

    async def run() -> idempotency.Response:
        async with database.session() as session:
            await _refund(
                session=session,
                stripe=stripe,
                actor=actor,
                transaction_id=transaction_id,
                amount=amount,
                reason=reason,
                stripe_key=subscriptions.stripe_key("refund", account_id, idempotency_key),
            )
        return {"transaction_id": transaction_id}

    await idempotency.run_once(
        database=database,
        account_id=account_id,
        key=idempotency.check_key(idempotency_key),
        operation="refundPayment",
        request=request,
        run=run,
    )
    async with database.session() as session:
        row = await session.get(PaymentTransaction, transaction_id)
    assert row is not None, "a refunded transaction stays mirrored"
    return row


async def _refund(
    *,
    session: AsyncSession,
    stripe: StripeApi,
    actor: Actor,
    transaction_id: int,
    amount: int | None,
    reason: str | None,
    stripe_key: str,
) -> None:
    refused: DomainError | None = None
    # Unlike every other write, this transaction is held across the Stripe calls: the row lock
    # makes concurrent refunds of one payment take turns, so each checks what the one before
    # it left (and Stripe refuses an over-refund as well).
    async with session.begin():
        row = await session.scalar(
            select(PaymentTransaction)
            .where(PaymentTransaction.id == transaction_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if row is None:
            raise NotFound("No such transaction", ["transactionId"])
        wanted = _refundable(row, amount)
        try:
            with about_field("amount", ErrorCode.INVALID_INPUT):
                made = await stripe.refund(
                    payment_intent_id=row.stripe_payment_intent_id,
                    amount=wanted,
                    reason=reason,
                    idempotency_key=stripe_key,
                )
        except DomainError as error:
            if error.code is not ErrorCode.INVALID_INPUT:
                raise  # Stripe unreachable or busy: nothing changed, nothing to mirror
            refused = error  # Stripe knows better than a stale mirror: converge on it below
        intent = await stripe.retrieve_payment(row.stripe_payment_intent_id)
        await mirror.upsert_transaction(
            session, intent.to_dict(), row.account_id, observed_at=datetime.now(UTC)
        )
        # The refund's reversal at once, keyed as the webhooks' (refund:<re_…>).
        await credit_sources.settle_reversals(
            session,
            stripe,
            account_id=row.account_id,
            intent_id=row.stripe_payment_intent_id,
            actor=credit_sources.WRITE_THROUGH_ACTOR,
        )
        if refused is None:
            audit.record(
                session,
                actor=actor.name,
                action="payment.refund",
                account_id=row.account_id,
                stripe_ref=made.id,
                amount=made.amount,
                currency=made.currency,
                details={"payment_intent": row.stripe_payment_intent_id, "reason": reason},
                request_id=actor.request_id,
            )
    if refused is not None:
        raise refused


def _refundable(row: PaymentTransaction, amount: int | None) -> int:
    """What to refund: `amount`, or all that is left; refused when the mirror shows too little."""
    if row.status is not PaymentStatus.SUCCEEDED:
        raise DomainError(
            ErrorCode.INVALID_STATE, "Only a succeeded payment can be refunded", ["transactionId"]
        )
    remaining = row.amount_received - row.amount_refunded
    if remaining <= 0:
        raise DomainError(
            ErrorCode.INVALID_STATE, "The payment is already fully refunded", ["transactionId"]
        )
    if amount is not None and amount > remaining:
        raise InvalidInput(
            f"At most {remaining} (minor units) of this payment is left to refund", ["amount"]
        )
    return amount if amount is not None else remaining
