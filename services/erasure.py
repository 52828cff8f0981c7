"""Erasing a customer (GDPR art. 17) while keeping the books (tax law keeps invoices,
payments and the ledger for years): the Stripe customer is deleted, the account's personal
data replaced by a tombstone, and the financial rows kept with amounts and dates only.

Once erased, an account stays erased: the triggers of migration 0008 strip whatever Stripe's
later events about it would bring back (its canceled subscriptions' invoices, a late
customer.updated). Its token can still sign in and read the empty tombstone, and every
customer mutation answers CUSTOMER_ERASED (resolvers/mutations/common.py)."""

from sqlalchemy import case, delete, func, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import (
    Account,
    DataExport,
    DeliveryStatus,
    IdempotencyKey,
    Invoice,
    Notification,
    PaymentMethod,
    PaymentTransaction,
    ProductEvent,
    StripeEvent,
    TaxId,
    WebhookEventStatus,
)
from services import audit, retention
from services.audit import Actor
from services.errors import NotFound
from services.stripe.client import StripeApi

# Webhook events about the customer lose their payload (its email, name and address are in
# it) as retention strips old ones: their id and type stay. A failed one is skipped: what it
# carried is gone, so it can never be applied. Pending ones are applied first.
ERASABLE_EVENTS = (
    WebhookEventStatus.PROCESSED,
    WebhookEventStatus.SKIPPED,
    WebhookEventStatus.FAILED,
)


SETTLED_STATUS = case(
    (StripeEvent.status == WebhookEventStatus.FAILED, WebhookEventStatus.SKIPPED.value),
    else_=StripeEvent.status,
)


async def erase_customer(
    session: AsyncSession,
    stripe: StripeApi,
    *,
    account_id: int,
    idempotency_key: str,
    actor: Actor,
) -> Account:
    """Erase the account (again: nothing more happens) and return its tombstone."""
    async with session.begin():
        account = await session.get(Account, account_id)
    if account is None:
        raise NotFound(f"no customer {account_id}", ["customerId"])
    if account.erased_at is not None:
        return account
    if account.stripe_customer_id is not None and account.stripe_deleted_at is None:
        # First, so a failure leaves the account as it was, and a retry does it all again.
        await stripe.delete_customer(
            customer_id=account.stripe_customer_id,
            idempotency_key=f"erase_customer:{account_id}:{idempotency_key}",
        )
    async with session.begin():
        await _tombstone(session, account)
        audit.record(
            session,
            actor=actor.name,
            action="customer.erased",
            account_id=account_id,
            stripe_ref=account.stripe_customer_id,
            request_id=actor.request_id,
        )
    await session.refresh(account)
    return account


async def _tombstone(session: AsyncSession, account: Account) -> None:
    """Personal data out of every table that holds it; amounts, dates and ids stay."""
    owned = account.id
    await session.execute(
        update(Account)
        .where(Account.id == owned)
        .values(email=None, email_index=None, name=None, address=None, erased_at=func.now())
    )
    await session.execute(
        update(Invoice)
        .where(Invoice.account_id == owned)
        .values(customer_address=None, customer_tax_ids=None)
    )
    await session.execute(
        update(PaymentTransaction)
        .where(PaymentTransaction.account_id == owned)
        .values(receipt_url=None)
    )
    await session.execute(
        update(Notification)
        .where(Notification.account_id == owned, Notification.status == DeliveryStatus.PENDING)
        .values(status=DeliveryStatus.SKIPPED, last_error="the customer was erased")
    )
    await session.execute(
        update(Notification)
        .where(Notification.account_id == owned)
        .values(recipient="", recipient_name=None, context={})
    )
    await session.execute(
        update(ProductEvent)
        .where(ProductEvent.account_id == owned, retention.PRODUCT_EVENT_SETTLED)
        .values(payload=retention.PRODUCT_EVENT_STUB)
    )
    for model in (TaxId, PaymentMethod, IdempotencyKey, DataExport):
        await session.execute(delete(model).where(model.account_id == owned))
    if account.stripe_customer_id is not None:
        customer = account.stripe_customer_id
        await session.execute(
            update(StripeEvent)
            .where(
                StripeEvent.status.in_(ERASABLE_EVENTS),
                (StripeEvent.object_id == customer)
                | (StripeEvent.payload["data"]["object"]["customer"].astext == customer),
            )
            .values(payload=retention.EVENT_STUB, status=SETTLED_STATUS)
        )
