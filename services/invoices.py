"""Invoices of an account: reads from the mirror; paying an open one through Stripe, written
through with an audit row."""

import functools
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple

import stripe as stripe_sdk
from sqlalchemy.ext.asyncio import AsyncSession

from db.database import Database
from db.models import Invoice, InvoiceStatus
from services import audit, credit_sources, idempotency, mirror, payment_methods, subscriptions
from services.audit import Actor
from services.errors import DomainError, ErrorCode, NotFound
from services.pagination import Listing, Page, paginate, paginate_each
from services.stripe.client import StripeApi
from services.stripe.errors import PaymentFailed, PaymentRequiresAction


class InvoicePayment(NamedTuple):
    invoice: Invoice
    client_secret: str | None
    requires_action: bool


async def list_for_account(
    *,
    database: Database,
    account_id: int,
    statuses: Sequence[InvoiceStatus] | None,
    first: int | None,
    after: str | None,
) -> Page[Invoice]:
    listing = _listing(account_id=account_id, status=statuses)
    return await paginate(database, listing, first=first, after=after)


async def pages_for_accounts(
    *,
    database: Database,
    account_ids: Sequence[int],
    statuses: Sequence[InvoiceStatus] | None,
    first: int | None,
    after: str | None,
) -> dict[int, Page[Invoice]]:
    """The same page of each account's invoices, in a constant number of statements."""
    listing = _listing(status=statuses)
    return await paginate_each(
        database, listing, parent="account_id", parent_ids=account_ids, first=first, after=after
    )


def _listing(**filters: object) -> Listing:
    return Listing.matching(Invoice.__table__, "stripe_created_at", **filters)


async def get_owned(*, session: AsyncSession, account_id: int, invoice_id: int) -> Invoice | None:
    row = await session.get(Invoice, invoice_id)
    return row if row is not None and row.account_id == account_id else None


async def pay(
    *,
    database: Database,
    stripe: StripeApi,
    account_id: int,
    actor: Actor,
    invoice_id: int,
    payment_method_id: int | None,
    idempotency_key: str | None,
) -> InvoicePayment:
    """Retry an open invoice now, with the customer present (3-D Secure is asked for, not
    declined); with its default payment method or one of the account's. Once per key, if any."""

    async def run() -> idempotency.Response:
        async with database.session() as session:
            return await _pay(
                session=session,
                stripe=stripe,
                account_id=account_id,
                actor=actor,
                invoice_id=invoice_id,
                payment_method_id=payment_method_id,
                stripe_key=subscriptions.stripe_key("pay-invoice", account_id, idempotency_key),
            )

    if idempotency_key is None:
        response = await run()
    else:
        response = await idempotency.run_once(
            database=database,
            account_id=account_id,
            key=idempotency.check_key(idempotency_key),
            operation="payInvoice",
            request={"invoice_id": invoice_id, "payment_method_id": payment_method_id},
            run=run,
        )
    async with database.session() as session:
        row = await session.get(Invoice, invoice_id)
    assert row is not None, "a paid invoice stays mirrored"
    return InvoicePayment(row, response["client_secret"], response["requires_action"])


async def _pay(
    *,
    session: AsyncSession,
    stripe: StripeApi,
    account_id: int,
    actor: Actor,
    invoice_id: int,
    payment_method_id: int | None,
    stripe_key: str,
) -> idempotency.Response:
    invoice, method_id = await _payable(
        session=session,
        account_id=account_id,
        invoice_id=invoice_id,
        payment_method_id=payment_method_id,
    )
    stripe_id = invoice.stripe_invoice_id
    refresh = functools.partial(
        _refresh, session=session, stripe=stripe, invoice_id=stripe_id, account_id=account_id
    )
    try:
        paid = await stripe.pay_invoice(
            invoice_id=stripe_id,
            payment_method_id=method_id,
            idempotency_key=stripe_key,
            off_session=False,
        )
    except PaymentRequiresAction:
        # Not a failure: the customer confirms with Stripe.js, using the invoice's secret.
        secret = (await refresh(actor=actor)).confirmation_secret
        return {"client_secret": secret.client_secret if secret else None, "requires_action": True}
    except PaymentFailed:
        # The declined attempt is mirrored too: the invoice's attempts and the failed payment.
        await refresh(actor=actor)
        raise
    except DomainError as error:
        if error.code is not ErrorCode.INVALID_INPUT:
            raise  # Stripe unreachable or busy: nothing changed, nothing to mirror
        # Stripe refused to charge it: the mirror may be stale (paid or voided meanwhile).
        if (await refresh(actor=None)).status != InvoiceStatus.OPEN.value:
            raise _not_open() from error
        raise
    await _mirror(session=session, stripe=stripe, invoice=paid, account_id=account_id, actor=actor)
    return {"client_secret": None, "requires_action": False}


async def _payable(
    *, session: AsyncSession, account_id: int, invoice_id: int, payment_method_id: int | None
) -> tuple[Invoice, str | None]:
    """The caller's open invoice and the Stripe id of the method to charge (None: its default)."""
    async with session.begin():
        invoice = await get_owned(session=session, account_id=account_id, invoice_id=invoice_id)
        if invoice is None:
            raise NotFound("No such invoice", ["invoiceId"])
        if invoice.status is not InvoiceStatus.OPEN:
            raise _not_open()
        if payment_method_id is None:
            return invoice, None
        method = await payment_methods.get_owned(
            session=session, account_id=account_id, payment_method_id=payment_method_id
        )
        return invoice, method.row.stripe_payment_method_id


def _not_open() -> DomainError:
    return DomainError(ErrorCode.INVALID_STATE, "Only an open invoice can be paid", ["invoiceId"])


async def _refresh(
    *,
    session: AsyncSession,
    stripe: StripeApi,
    invoice_id: str,
    account_id: int,
    actor: Actor | None,
) -> stripe_sdk.Invoice:
    """The invoice as Stripe has it now, mirrored."""
    current = await stripe.retrieve_invoice(invoice_id)
    await _mirror(
        session=session, stripe=stripe, invoice=current, account_id=account_id, actor=actor
    )
    return current


async def _mirror(
    *,
    session: AsyncSession,
    stripe: StripeApi,
    invoice: stripe_sdk.Invoice,
    account_id: int,
    actor: Actor | None,
) -> None:
    """Write the invoice and its payments through, audited (when `actor` attempted a payment)
    in the same transaction. `payments` must be expanded."""
    data = invoice.to_dict()
    intents = [
        (await stripe.retrieve_payment(intent_id)).to_dict()
        for intent_id in mirror.invoice_payment_intents(data)
    ]
    observed_at = datetime.now(UTC)
    async with session.begin():
        await mirror.upsert_invoice(session, stripe, data, account_id, observed_at=observed_at)
        for intent in intents:
            await mirror.upsert_transaction(
                session, intent, account_id, observed_at=observed_at, invoice_id=data["id"]
            )
        if actor is not None:
            audit.record(
                session,
                actor=actor.name,
                action="invoice.pay",
                account_id=account_id,
                stripe_ref=data["id"],
                amount=data["amount_due"],
                currency=data["currency"],
                details={
                    "status": data["status"],
                    "payments": {intent["id"]: intent["status"] for intent in intents},
                },
                request_id=actor.request_id,
            )
    await credit_sources.credit_sighting(
        session, stripe, account_id=account_id, invoice_id=data["id"]
    )
