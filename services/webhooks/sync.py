"""Re-reading Stripe into the mirror: the handlers' fallback when an event is ambiguous or
refers to something the mirror lacks, and a whole account's resync (the inbox's catch-up is
services/webhooks/reconcile.py).

Everything here reads Stripe (never writes) and upserts with `observed_at` taken *before*
the read, so a re-read is never stamped newer than the state it saw."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.database import Database, driver_of
from db.models import Account
from services import mirror
from services.stripe.client import StripeApi

StripeDict = dict[str, Any]


def fresh_time(event: StripeDict | None = None) -> datetime:
    """When a re-read is observed: now, but never before the event that asked for it (a test
    clock can date events ahead of the wall clock)."""
    now = datetime.now(UTC)
    if event is None:
        return now
    return max(now, datetime.fromtimestamp(event["created"], UTC))


async def mirror_price(
    session: AsyncSession, stripe: StripeApi, price_id: str, observed_at: datetime
) -> int:
    """Mirror one price (with its product) as Stripe has it now; the plan's row id."""
    price = (await stripe.retrieve_price(price_id)).to_dict()
    return await mirror.upsert_plan(session, price, price["product"], observed_at=observed_at)


async def plan_id_for(
    session: AsyncSession, stripe: StripeApi, price_id: str, observed_at: datetime
) -> int:
    """The plan of a price, mirrored from Stripe first when the mirror does not know it."""
    plan_id = await mirror.plan_id_for_price(session, price_id)
    if plan_id is not None:
        return plan_id
    return await mirror_price(session, stripe, price_id, observed_at)


async def mirror_subscription(
    session: AsyncSession,
    stripe: StripeApi,
    subscription_id: str,
    account_id: int,
    observed_at: datetime,
) -> None:
    """Mirror a subscription as Stripe has it now, with its latest invoice and payments."""
    data = (await stripe.retrieve_subscription(subscription_id)).to_dict()
    await mirror_subscription_data(session, stripe, data, account_id, observed_at)


async def mirror_subscription_data(
    session: AsyncSession,
    stripe: StripeApi,
    data: StripeDict,
    account_id: int,
    observed_at: datetime,
) -> None:
    """Mirror a freshly read subscription (latest invoice expanded with its payments)."""
    plan_id = await plan_id_for(session, stripe, mirror.subscription_price_id(data), observed_at)
    await mirror.upsert_subscription(
        session, stripe, data, account_id, plan_id, observed_at=observed_at
    )
    invoice = data.get("latest_invoice")
    if isinstance(invoice, dict):
        await mirror.upsert_invoice(session, stripe, invoice, account_id, observed_at=observed_at)
        await link_payments(session, stripe, invoice, account_id, observed_at)


# A subscription's latest invoice is its newest one. An invoice may reach the mirror after
# the subscription event that named an older one (a renewal's subscription.updated can come
# first), so each side moves the link forward to the newest mirrored invoice, never back.
SETTLE_LATEST_INVOICE = """
    UPDATE subscriptions AS s
    SET latest_invoice_stripe_id = newest.stripe_invoice_id, updated_at = now()
    FROM (
        SELECT stripe_invoice_id, stripe_created_at FROM invoices
        WHERE subscription_stripe_id = $1
        ORDER BY stripe_created_at DESC, stripe_invoice_id DESC
        LIMIT 1
    ) AS newest
    WHERE s.stripe_subscription_id = $1
      AND s.latest_invoice_stripe_id IS DISTINCT FROM newest.stripe_invoice_id
      AND (
        s.latest_invoice_stripe_id IS NULL
        OR EXISTS (
            SELECT 1 FROM invoices AS current
            WHERE current.stripe_invoice_id = s.latest_invoice_stripe_id
              AND current.stripe_created_at < newest.stripe_created_at
        )
      )
"""


async def settle_latest_invoice(session: AsyncSession, subscription_id: str) -> None:
    """Point the subscription at its newest mirrored invoice when it names an older one."""
    driver = await driver_of(session)
    await driver.execute(SETTLE_LATEST_INVOICE, subscription_id)


async def mirror_invoice(
    session: AsyncSession,
    stripe: StripeApi,
    invoice_id: str,
    account_id: int,
    observed_at: datetime,
) -> None:
    """Mirror an invoice as Stripe has it now, and link (or mirror) its payments."""
    invoice = (await stripe.retrieve_invoice(invoice_id)).to_dict()
    await mirror.upsert_invoice(session, stripe, invoice, account_id, observed_at=observed_at)
    await link_payments(session, stripe, invoice, account_id, observed_at)


async def link_payments(
    session: AsyncSession,
    stripe: StripeApi,
    invoice: StripeDict,
    account_id: int,
    observed_at: datetime,
) -> None:
    """Point the invoice's PaymentIntents at it (its `payments` expanded); mirror the missing.

    A PaymentIntent of this API version does not name its invoice, so only the invoice's
    side knows the link; it never changes once made, so the update needs no ordering guard."""
    for intent_id in mirror.invoice_payment_intents(invoice):
        if not await mirror.link_transaction(session, intent_id, invoice["id"]):
            await mirror_payment(
                session, stripe, intent_id, account_id, observed_at, invoice_id=invoice["id"]
            )


async def mirror_payment(
    session: AsyncSession,
    stripe: StripeApi,
    intent_id: str,
    account_id: int,
    observed_at: datetime,
    *,
    invoice_id: str | None = None,
) -> None:
    """Mirror a PaymentIntent as Stripe has it now (its charge expanded: refunds, receipt)."""
    intent = (await stripe.retrieve_payment(intent_id)).to_dict()
    await mirror.upsert_transaction(
        session, intent, account_id, observed_at=observed_at, invoice_id=invoice_id
    )


async def mirror_payment_method(
    session: AsyncSession,
    stripe: StripeApi,
    method_id: str,
    account_id: int,
    observed_at: datetime,
) -> None:
    """Mirror a payment method as Stripe has it now."""
    method = (await stripe.retrieve_payment_method(method_id)).to_dict()
    await mirror.upsert_payment_method(session, method, account_id, observed_at=observed_at)


# --- recovery: billing-gateway sync --------------------------------------------------------


async def resync_account(*, session: AsyncSession, stripe: StripeApi, account_id: int) -> bool:
    """Re-read a known account's customer, subscriptions (with their latest invoices and
    payments) and payment methods into the mirror, inside the caller's transaction.

    False when the account has no Stripe customer (nothing to read)."""
    account = await session.get(Account, account_id)
    if account is None or account.stripe_customer_id is None:
        return False
    customer_id = account.stripe_customer_id
    observed_at = fresh_time()
    customer = (await stripe.retrieve_customer(customer_id)).to_dict()
    if customer.get("deleted"):
        await mirror.mark_customer_deleted(
            session, customer_id, observed_at=observed_at, event_id=None
        )
        return True
    await mirror.upsert_customer(session, customer, observed_at=observed_at)
    for subscription in await stripe.list_subscriptions(customer_id):
        await mirror_subscription_data(
            session, stripe, subscription.to_dict(), account_id, observed_at
        )
    for method in await stripe.list_payment_methods(customer_id):
        await mirror.upsert_payment_method(
            session, method.to_dict(), account_id, observed_at=observed_at
        )
    return True


async def resync_accounts(
    *, database: Database, stripe: StripeApi, user_ids: list[str] | None = None
) -> int:
    """Resync every account with a Stripe customer (or only these users'), one transaction
    each; the number resynced."""
    query = select(Account.id).where(Account.stripe_customer_id.is_not(None))
    if user_ids:
        query = query.where(Account.user_id.in_(user_ids))
    async with database.session() as session:
        account_ids = list((await session.scalars(query.order_by(Account.id))).all())
    done = 0
    for account_id in account_ids:
        async with database.session() as session, session.begin():
            done += await resync_account(session=session, stripe=stripe, account_id=account_id)
    return done
