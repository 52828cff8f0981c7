"""Subscriptions of an account: reads from the mirror; changes through Stripe, written through."""

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import stripe as stripe_sdk
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from db.database import Database
from db.models import (
    PaymentStatus,
    PaymentTransaction,
    Plan,
    Subscription,
    SubscriptionStatus,
)
from gateway.settings import Settings
from services import (
    accounts,
    audit,
    catalog,
    credit_sources,
    customers,
    idempotency,
    mirror,
    payment_methods,
    payments,
    purchases,
)
from services.audit import Actor
from services.errors import DomainError, ErrorCode, InvalidInput, NotFound, about_field
from services.observability import SUBSCRIPTION_CREATIONS
from services.pagination import Listing, Page, paginate, paginate_each
from services.stripe.client import StripeApi, Terms

log = logging.getLogger("billing_gateway.subscriptions")

# A subscription in one of these still gives (or is about to give) access; an account may
# have only one at a time.
LIVE_STATUSES = (
    SubscriptionStatus.ACTIVE,
    SubscriptionStatus.TRIALING,
    SubscriptionStatus.PAST_DUE,
    SubscriptionStatus.INCOMPLETE,
    SubscriptionStatus.UNPAID,
    SubscriptionStatus.PAUSED,
)
# The statuses that may give access now; services/access.py decides whether they do.
ACTIVE_STATUSES = (
    SubscriptionStatus.ACTIVE,
    SubscriptionStatus.TRIALING,
    SubscriptionStatus.PAST_DUE,
)
ENDED_STATUSES = (SubscriptionStatus.CANCELED, SubscriptionStatus.INCOMPLETE_EXPIRED)

Response = dict[str, Any]


@dataclass(frozen=True)
class AuditNote:
    """An audit entry to write in the same transaction as the mirror change it explains."""

    actor: Actor
    action: str
    amount: int | None = None
    currency: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Order:
    """What createSubscription asks for."""

    plan_id: int
    payment_method_id: str | None = None
    quantity: int | None = None
    idempotency_key: str | None = None
    promotion_code: str | None = None
    currency: str | None = None


@dataclass(frozen=True)
class PlanChange:
    """What changeSubscriptionPlan asks for."""

    subscription_id: int
    plan_id: int
    quantity: int | None = None
    prorate: bool = True
    idempotency_key: str | None = None
    promotion_code: str | None = None


@dataclass(frozen=True)
class Started:
    """A new subscription and, while its first payment waits for the customer, the client
    secret Stripe.js confirms it with."""

    subscription: Subscription
    client_secret: str | None = None

    @property
    def requires_action(self) -> bool:
        return self.client_secret is not None


async def list_for_account(
    *,
    database: Database,
    account_id: int,
    statuses: Sequence[SubscriptionStatus] | None,
    first: int | None,
    after: str | None,
) -> Page[Subscription]:
    listing = _listing(account_id=account_id, status=statuses)
    return await paginate(database, listing, first=first, after=after)


async def pages_for_accounts(
    *,
    database: Database,
    account_ids: Sequence[int],
    statuses: Sequence[SubscriptionStatus] | None,
    first: int | None,
    after: str | None,
) -> dict[int, Page[Subscription]]:
    """The same page of each account's subscriptions, in a constant number of statements."""
    listing = _listing(status=statuses)
    return await paginate_each(
        database, listing, parent="account_id", parent_ids=account_ids, first=first, after=after
    )


def _listing(**filters: object) -> Listing:
    return Listing.matching(Subscription.__table__, "stripe_created_at", **filters)


async def get_owned(
    *, session: AsyncSession, account_id: int, subscription_id: int
) -> Subscription | None:
    row = await session.get(Subscription, subscription_id)
    return row if row is not None and row.account_id == account_id else None


def stripe_key(operation: str, account_id: int, caller_key: str | None) -> str:
    """The idempotency key of a Stripe write: the caller's key scoped to them, or a fresh one
    (the SDK's own retries of this call reuse it either way)."""
    return f"{operation}:{account_id}:{caller_key or uuid.uuid4().hex}"


async def write_through(
    *,
    session: AsyncSession,
    stripe: StripeApi,
    subscription: stripe_sdk.Subscription,
    account_id: int,
    audit_note: AuditNote | None = None,
) -> Subscription:
    """Mirror what Stripe answered (the subscription, its latest invoice and that invoice's
    payment) before the caller sees it, with its audit entry if given; the subscription row.

    Call it outside a transaction: each step commits its own, short one."""
    data = subscription.to_dict()
    observed_at = datetime.now(UTC)
    plan = await catalog.plan_for_price(
        session=session, stripe=stripe, price_id=mirror.subscription_price_id(data)
    )
    async with session.begin():
        row_id = await mirror.upsert_subscription(
            session, stripe, data, account_id, plan.id, observed_at=observed_at
        )
        invoice = data.get("latest_invoice")
        if isinstance(invoice, dict):
            await mirror.upsert_invoice(
                session, stripe, invoice, account_id, observed_at=observed_at
            )
        if audit_note is not None:
            _record(session, audit_note, account_id, data["id"])
    if isinstance(invoice, dict):
        await payments.write_through_invoice_payments(
            session=session, stripe=stripe, invoice=invoice, account_id=account_id
        )
        await credit_sources.credit_sighting(
            session, stripe, account_id=account_id, invoice_id=invoice["id"]
        )
    return await _load(session, row_id)


def _record(session: AsyncSession, note: AuditNote, account_id: int, stripe_ref: str) -> None:
    audit.record(
        session,
        actor=note.actor.name,
        action=note.action,
        account_id=account_id,
        stripe_ref=stripe_ref,
        amount=note.amount,
        currency=note.currency,
        details=note.details,
        request_id=note.actor.request_id,
    )


async def _load(session: AsyncSession, row_id: int) -> Subscription:
    async with session.begin():
        row = await session.get(Subscription, row_id, populate_existing=True)
    assert row is not None
    return row


def _invoice_of(subscription: stripe_sdk.Subscription) -> dict[str, Any]:
    """The subscription's expanded latest invoice ({} when there is none)."""
    invoice = subscription.to_dict().get("latest_invoice")
    return invoice if isinstance(invoice, dict) else {}


def _billed(invoice: dict[str, Any]) -> dict[str, Any]:
    """An audit note's amount and currency for an invoice ({} when there is none)."""
    if not invoice:
        return {}
    return {"amount": invoice.get("total"), "currency": invoice.get("currency")}


def _check_input(quantity: int | None, key: str | None) -> None:
    if quantity is not None and quantity < 1:
        raise InvalidInput("quantity must be at least 1", ["quantity"])
    if key is not None:
        idempotency.check_key(key)


async def _once(
    *,
    database: Database,
    account_id: int,
    key: str | None,
    operation: str,
    request: dict[str, Any],
    run: Callable[[], Awaitable[Response]],
) -> Response:
    """run()'s response; with a caller key, computed once and replayed to retries."""
    if key is None:
        return await run()
    return await idempotency.run_once(
        database=database,
        account_id=account_id,
        key=key,
        operation=operation,
        request=request,
        run=run,
    )


async def owned_live(session: AsyncSession, account_id: int, subscription_id: int) -> Subscription:
    """The caller's subscription that has not ended; NOT_FOUND for anyone else's."""
    async with session.begin():
        row = await get_owned(
            session=session, account_id=account_id, subscription_id=subscription_id
        )
    if row is None:
        raise NotFound("No such subscription", ["subscriptionId"])
    if row.status in ENDED_STATUSES:
        raise DomainError(
            ErrorCode.INVALID_STATE, "The subscription has already ended", ["subscriptionId"]
        )
    return row


# --- create ------------------------------------------------------------------------------


async def create(
    *,
    database: Database,
    stripe: StripeApi,
    settings: Settings,
    account_id: int,
    order: Order,
    actor: Actor,
) -> Started:
    """Subscribe the account to a plan: charged at once with the given (or the default)
    payment method, else left for Stripe.js to confirm; at most one live subscription."""
    outcome = "error"
    try:
        started = await _create(
            database=database,
            stripe=stripe,
            settings=settings,
            account_id=account_id,
            order=order,
            actor=actor,
        )
        outcome = "requires_action" if started.client_secret else "created"
        return started
    except DomainError as error:
        outcome = error.code.value.lower()
        raise
    finally:
        SUBSCRIPTION_CREATIONS.labels(outcome=outcome).inc()


async def _create(
    *,
    database: Database,
    stripe: StripeApi,
    settings: Settings,
    account_id: int,
    order: Order,
    actor: Actor,
) -> Started:
    _check_input(order.quantity, order.idempotency_key)
    method = order.payment_method_id
    if method is not None:
        payment_methods.check_stripe_id(method)
    request = {
        "planId": order.plan_id,
        "paymentMethodId": method,
        "quantity": order.quantity or 1,
        "promotionCode": order.promotion_code,
        "currency": order.currency,
    }

    async def run() -> Response:
        return await _subscribe(
            database=database,
            stripe=stripe,
            settings=settings,
            account_id=account_id,
            order=order,
            actor=actor,
        )

    response = await _once(
        database=database,
        account_id=account_id,
        key=order.idempotency_key,
        operation="createSubscription",
        request=request,
        run=run,
    )
    async with database.session() as session:
        row = await _load(session, response["subscription_id"])
    return Started(row, response["client_secret"])


async def _subscribe(
    *,
    database: Database,
    stripe: StripeApi,
    settings: Settings,
    account_id: int,
    order: Order,
    actor: Actor,
) -> Response:
    async with database.session() as session:
        plan = await catalog.plan_for_sale(session=session, plan_id=order.plan_id)
        customer_id = await customers.ensure_stripe_customer(
            session=session, stripe=stripe, account_id=account_id
        )
        async with account_lock(database, account_id):
            await refuse_second_subscription(session=session, account_id=account_id)
            terms = await purchases.terms_for(
                session=session,
                stripe=stripe,
                settings=settings,
                account=await accounts.load_account(session, account_id),
                plan=plan,
                currency=order.currency,
                promotion_code=order.promotion_code,
            )
            created = await _create_in_stripe(
                session=session,
                stripe=stripe,
                account_id=account_id,
                customer_id=customer_id,
                plan=plan,
                order=order,
                terms=terms,
            )
            row = await write_through(
                session=session,
                stripe=stripe,
                subscription=created,
                account_id=account_id,
                audit_note=_created_note(actor, plan, order, created),
            )
            secret = await _first_payment(
                session=session, stripe=stripe, row=row, created=created, order=order, actor=actor
            )
    return {"subscription_id": row.id, "client_secret": secret}


def _created_note(
    actor: Actor, plan: Plan, order: Order, created: stripe_sdk.Subscription
) -> AuditNote:
    details = {"plan": plan.stripe_price_id, "quantity": order.quantity or 1}
    if order.promotion_code:
        details["promotion_code"] = order.promotion_code
    return AuditNote(
        actor,
        "subscription.create",
        **_billed(_invoice_of(created)),
        details=details | {"status": created.status},
    )


@asynccontextmanager
async def account_lock(database: Database, account_id: int) -> AsyncIterator[None]:
    """Serialize the start of subscriptions per account across every gateway process.

    A transaction-scoped advisory lock on a connection of its own: it holds no row locks
    (webhooks may update the account meanwhile) and ends with the transaction, even if this
    process dies, so a lost request cannot leave the account locked."""
    async with database.engine.connect() as connection, connection.begin():
        await connection.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"subscription-start:{account_id}"},
        )
        yield


async def refuse_second_subscription(*, session: AsyncSession, account_id: int) -> None:
    """ALREADY_SUBSCRIBED when the account has a live subscription."""
    async with session.begin():
        live = await session.scalar(
            select(Subscription.id)
            .where(Subscription.account_id == account_id, Subscription.status.in_(LIVE_STATUSES))
            .limit(1)
        )
    if live is not None:
        raise DomainError(
            ErrorCode.ALREADY_SUBSCRIBED,
            "The account already has a subscription; change its plan instead",
            ["planId"],
        )


async def _create_in_stripe(
    *,
    session: AsyncSession,
    stripe: StripeApi,
    account_id: int,
    customer_id: str,
    plan: Plan,
    order: Order,
    terms: Terms,
) -> stripe_sdk.Subscription:
    method, default = await _payment_method(
        stripe=stripe, account_id=account_id, customer_id=customer_id, order=order
    )
    created = await stripe.create_subscription(
        customer_id=customer_id,
        price_id=plan.stripe_price_id,
        quantity=order.quantity or 1,
        payment_method_id=method.id if method is not None else default,
        trial_days=plan.trial_days,
        terms=terms,
        idempotency_key=stripe_key("create-subscription", account_id, order.idempotency_key),
    )
    if method is not None:
        await _keep_card(
            session=session,
            stripe=stripe,
            account_id=account_id,
            method=method,
            make_default=default is None and created.status in ("active", "trialing"),
            order=order,
        )
    return created


async def _keep_card(
    *,
    session: AsyncSession,
    stripe: StripeApi,
    account_id: int,
    method: stripe_sdk.PaymentMethod,
    make_default: bool,
    order: Order,
) -> None:
    """Mirror the card that started the subscription; a customer's first good card becomes
    their default, for the next purchase. Mirrored only now: had the subscription failed,
    the mirror would not have changed (the payment_method.attached webhook still brings it)."""
    customer = None
    if make_default:
        customer = await stripe.set_default_payment_method(
            customer_id=mirror.stripe_id(method.customer) or "",
            payment_method_id=method.id,
            idempotency_key=stripe_key("default-payment-method", account_id, order.idempotency_key),
        )
    observed_at = datetime.now(UTC)
    async with session.begin():
        await mirror.upsert_payment_method(
            session, method.to_dict(), account_id, observed_at=observed_at
        )
        if customer is not None:
            await mirror.upsert_customer(session, customer.to_dict(), observed_at=observed_at)


async def _payment_method(
    *, stripe: StripeApi, account_id: int, customer_id: str, order: Order
) -> tuple[stripe_sdk.PaymentMethod | None, str | None]:
    """The caller's card, attached to the customer (None when not given), and the id of the
    customer's default payment method in Stripe (the mirror may not know a newer one yet)."""
    customer = await stripe.retrieve_customer(customer_id)
    settings = customer.to_dict().get("invoice_settings") or {}
    default = mirror.stripe_id(settings.get("default_payment_method"))
    if order.payment_method_id is None:
        return None, default
    # Unknown, or someone else's: tell the caller which input Stripe refused.
    with about_field("paymentMethodId", ErrorCode.NOT_FOUND, ErrorCode.INVALID_INPUT):
        method = await stripe.attach_payment_method(
            payment_method_id=order.payment_method_id,
            customer_id=customer_id,
            idempotency_key=stripe_key("attach-payment-method", account_id, order.idempotency_key),
        )
    return method, default


async def _first_payment(
    *,
    session: AsyncSession,
    stripe: StripeApi,
    row: Subscription,
    created: stripe_sdk.Subscription,
    order: Order,
    actor: Actor,
) -> str | None:
    """The client secret the customer still has to confirm (3-D Secure, or no card yet), if
    any. A declined first payment cancels the subscription and raises CARD_DECLINED."""
    if row.status is not SubscriptionStatus.INCOMPLETE:
        return None
    invoice = _invoice_of(created)
    decline = await _declined_payment(session, invoice.get("id"))
    if decline is not None:
        await _abandon(session=session, stripe=stripe, row=row, order=order, actor=actor)
        reason = f" ({decline.failure_code})" if decline.failure_code else ""
        message = (decline.failure_message or "The card was declined") + reason
        raise DomainError(ErrorCode.CARD_DECLINED, message, ["paymentMethodId"])
    return (invoice.get("confirmation_secret") or {}).get("client_secret")


async def _declined_payment(
    session: AsyncSession, invoice_id: str | None
) -> PaymentTransaction | None:
    """The invoice's payment, as just mirrored, if the card was refused."""
    if invoice_id is None:
        return None
    async with session.begin():
        return await session.scalar(
            select(PaymentTransaction)
            .where(
                PaymentTransaction.invoice_stripe_id == invoice_id,
                PaymentTransaction.status == PaymentStatus.REQUIRES_PAYMENT_METHOD,
                PaymentTransaction.failure_code.is_not(None),
            )
            .order_by(PaymentTransaction.stripe_created_at.desc())
            .limit(1)
        )


async def _abandon(
    *, session: AsyncSession, stripe: StripeApi, row: Subscription, order: Order, actor: Actor
) -> None:
    """Cancel a subscription whose first payment was declined: the caller is told nothing was
    bought, and may try again with another card at once instead of being held (for Stripe's
    23 hours) by a half-made subscription with an open invoice."""
    try:
        canceled = await stripe.cancel_subscription(
            subscription_id=row.stripe_subscription_id,
            idempotency_key=stripe_key(
                "abandon-subscription", row.account_id, order.idempotency_key
            ),
        )
    except DomainError as error:
        # The decline is still the answer; Stripe expires the subscription on its own, and
        # cancelSubscription or payInvoice can settle it meanwhile.
        log.warning(
            "could not cancel declined subscription %s: %s", row.stripe_subscription_id, error.code
        )
        return
    note = AuditNote(actor, "subscription.abandon", details={"reason": "first payment declined"})
    await write_through(
        session=session,
        stripe=stripe,
        subscription=canceled,
        account_id=row.account_id,
        audit_note=note,
    )


# --- change, resume, cancel ----------------------------------------------------------------


async def change_plan(
    *, database: Database, stripe: StripeApi, account_id: int, change: PlanChange, actor: Actor
) -> Subscription:
    """Move a subscription to another plan or quantity, prorated (and invoiced at once) or not.
    A change whose invoice the card does not pay is not made."""
    _check_input(change.quantity, change.idempotency_key)
    request = {
        "subscriptionId": change.subscription_id,
        "planId": change.plan_id,
        "quantity": change.quantity,
        "prorate": change.prorate,
        "promotionCode": change.promotion_code,
    }

    async def run() -> Response:
        async with database.session() as session:
            row = await _change(
                session=session, stripe=stripe, account_id=account_id, change=change, actor=actor
            )
        return {"subscription_id": row.id}

    response = await _once(
        database=database,
        account_id=account_id,
        key=change.idempotency_key,
        operation="changeSubscriptionPlan",
        request=request,
        run=run,
    )
    async with database.session() as session:
        return await _load(session, response["subscription_id"])


async def _change(
    *, session: AsyncSession, stripe: StripeApi, account_id: int, change: PlanChange, actor: Actor
) -> Subscription:
    row = await owned_live(session, account_id, change.subscription_id)
    plan = await catalog.plan_for_sale(session=session, plan_id=change.plan_id)
    quantity = change.quantity or row.quantity
    _check_changeable(row, plan, quantity)
    account = await accounts.load_account(session, account_id)
    purchases.currency_for(account, plan, row.currency)
    code_id = await purchases.promotion_code_id(
        session=session,
        stripe=stripe,
        account=account,
        code=change.promotion_code,
        plan=plan,
        currency=row.currency,
    )
    # Stripe names the item to change; the mirror does not keep item ids.
    current = await stripe.retrieve_subscription(row.stripe_subscription_id)
    item = current.to_dict()["items"]["data"][0]
    changed = await stripe.change_subscription_price(
        subscription_id=row.stripe_subscription_id,
        item_id=item["id"],
        price_id=plan.stripe_price_id,
        quantity=quantity,
        prorate=change.prorate,
        promotion_code_id=code_id,
        idempotency_key=stripe_key("change-subscription", account_id, change.idempotency_key),
    )
    invoice = _invoice_of(changed)
    # Only an invoice the change made is money the change moved.
    billed = _billed(invoice) if invoice.get("id") != _invoice_of(current).get("id") else {}
    details = {"from_plan": item["price"]["id"], "to_plan": plan.stripe_price_id}
    note = AuditNote(
        actor,
        "subscription.change_plan",
        **billed,
        details=details | {"quantity": quantity, "prorate": change.prorate},
    )
    return await write_through(
        session=session, stripe=stripe, subscription=changed, account_id=account_id, audit_note=note
    )


def _check_changeable(row: Subscription, plan: Plan, quantity: int) -> None:
    if row.status is SubscriptionStatus.INCOMPLETE:
        raise DomainError(
            ErrorCode.INVALID_STATE, "The first payment is not done yet", ["subscriptionId"]
        )
    if (plan.id, quantity) == (row.plan_id, row.quantity):
        raise DomainError(
            ErrorCode.INVALID_STATE, "The subscription is already on that plan", ["planId"]
        )


async def resume(
    *,
    session: AsyncSession,
    stripe: StripeApi,
    account_id: int,
    subscription_id: int,
    actor: Actor,
) -> Subscription:
    """Undo a cancellation at the period end: the subscription renews again."""
    row = await owned_live(session, account_id, subscription_id)
    if not row.cancel_at_period_end:
        raise DomainError(
            ErrorCode.INVALID_STATE, "The subscription is not set to cancel", ["subscriptionId"]
        )
    resumed = await stripe.set_cancel_at_period_end(
        subscription_id=row.stripe_subscription_id,
        cancel=False,
        idempotency_key=stripe_key("resume-subscription", account_id, None),
    )
    note = AuditNote(actor, "subscription.resume")
    return await write_through(
        session=session, stripe=stripe, subscription=resumed, account_id=account_id, audit_note=note
    )


async def cancel(
    *,
    session: AsyncSession,
    stripe: StripeApi,
    account_id: int,
    subscription_id: int,
    at_period_end: bool,
    actor: Actor,
) -> Subscription:
    """Cancel at the period end (access stays until then) or at once."""
    row = await owned_live(session, account_id, subscription_id)
    key = stripe_key("cancel-subscription", account_id, None)
    if at_period_end:
        changed = await stripe.set_cancel_at_period_end(
            subscription_id=row.stripe_subscription_id, cancel=True, idempotency_key=key
        )
    else:
        changed = await stripe.cancel_subscription(
            subscription_id=row.stripe_subscription_id, idempotency_key=key
        )
    note = AuditNote(actor, "subscription.cancel", details={"at_period_end": at_period_end})
    return await write_through(
        session=session, stripe=stripe, subscription=changed, account_id=account_id, audit_note=note
    )


async def apply_promotion_code(
    *,
    session: AsyncSession,
    stripe: StripeApi,
    account_id: int,
    subscription_id: int,
    code: str,
    actor: Actor,
) -> Subscription:
    """Apply a promotion code to a live subscription, from its next invoice on."""
    row = await owned_live(session, account_id, subscription_id)
    async with session.begin():
        plan = await catalog.get_plan(session=session, plan_id=row.plan_id)
    assert plan is not None, "a subscription's plan is mirrored"
    code_id = await purchases.promotion_code_id(
        session=session,
        stripe=stripe,
        account=await accounts.load_account(session, account_id),
        code=code,
        plan=plan,
        currency=row.currency,
    )
    assert code_id is not None
    changed = await stripe.apply_promotion_code(
        subscription_id=row.stripe_subscription_id,
        promotion_code_id=code_id,
        idempotency_key=stripe_key("apply-promotion-code", account_id, None),
    )
    note = AuditNote(actor, "subscription.apply_promotion_code", details={"code": code})
    return await write_through(
        session=session, stripe=stripe, subscription=changed, account_id=account_id, audit_note=note
    )
