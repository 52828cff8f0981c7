"""Real sandbox lifecycles for the handler tests: drive Stripe, read back the events it
emitted for one customer (in creation order), apply them as the worker would, and compare
the mirror with what Stripe says now."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError

from db.database import Database
from db.models import Account, Invoice, PaymentMethod, PaymentTransaction, Plan, Subscription
from services.stripe.client import StripeApi
from services.webhooks import dispatch
from tests.conftest import Billing

Event = dict[str, Any]
State = dict[str, Any]


@dataclass
class Customer:
    """A Stripe customer and the account that owns it."""

    stripe_id: str
    account_id: int


@dataclass
class Recorded:
    customer: Customer
    events: list[Event]


def key() -> str:
    return f"test:{uuid.uuid4().hex}"


async def new_customer(db: Database, billing: Billing, user_id: str, **params: Any) -> Customer:
    """A Stripe customer, with our account pointing at it (as createSetupIntent leaves it)."""
    customer = await billing.stripe.v1.customers.create_async(
        {"email": f"{user_id}@x.test"} | params
    )
    async with db.session() as session, session.begin():
        account = Account(user_id=user_id, stripe_customer_id=customer.id)
        session.add(account)
        await session.flush()
        return Customer(customer.id, account.id)


async def events_of(billing: Billing, customer_id: str) -> list[Event]:
    """Every event about the customer's objects, oldest first (Stripe lists newest first)."""
    found: list[Event] = []
    params: dict[str, Any] = {"limit": 100}
    while True:
        page = await billing.stripe.v1.events.list_async(params)  # type: ignore[arg-type]
        found.extend(event.to_dict() for event in page.data)
        if not page.has_more:
            break
        params["starting_after"] = page.data[-1].id
    return [event for event in reversed(found) if _about(event, customer_id)]


def _about(event: Event, customer_id: str) -> bool:
    data = event["data"]
    obj = data["object"]
    previous = data.get("previous_attributes") or {}
    return customer_id in (obj.get("customer"), obj.get("id"), previous.get("customer"))


async def apply(db: Database, api: StripeApi, event: Event, attempts: int = 5) -> None:
    """Apply one event in its own transaction; retried after a deadlock, as the worker does."""
    for attempt in range(attempts):
        try:
            async with db.session() as session, session.begin():
                await dispatch.apply_event(session=session, stripe=api, event=event)
            return
        except DBAPIError as error:
            if "deadlock" not in str(error) or attempt == attempts - 1:
                raise
            await asyncio.sleep(0.01 * (attempt + 1))


async def apply_all(db: Database, api: StripeApi, events: Sequence[Event]) -> None:
    for event in events:
        await apply(db, api, event)


async def apply_concurrently(
    db: Database, api: StripeApi, events: Sequence[Event], workers: int = 3
) -> None:
    """Deal the events round-robin to `workers` tasks that apply them at the same time."""
    queues = [events[index::workers] for index in range(workers)]
    await asyncio.gather(*(apply_all(db, api, queue) for queue in queues))


async def clear_mirror(db: Database) -> None:
    """Forget everything the events wrote (plans and accounts stay; accounts as new)."""
    async with db.session() as session, session.begin():
        for model in (Subscription, Invoice, PaymentTransaction, PaymentMethod):
            await session.execute(delete(model))
        await session.execute(
            update(Account).values(
                default_payment_method_stripe_id=None,
                stripe_deleted_at=None,
                last_event_at=None,
                last_event_id=None,
            )
        )


# --- the lifecycles ------------------------------------------------------------------------


def price(billing: Billing, lookup_key: str) -> str:
    return billing.plans[lookup_key].stripe_price_id


async def attach(api: StripeApi, customer: Customer, token: str) -> str:
    method = await api.attach_payment_method(
        payment_method_id=token, customer_id=customer.stripe_id, idempotency_key=key()
    )
    return method.id


async def subscribe(
    api: StripeApi, billing: Billing, customer: Customer, method: str, plan: str
) -> dict[str, Any]:
    created = await api.create_subscription(
        customer_id=customer.stripe_id,
        price_id=price(billing, plan),
        quantity=1,
        payment_method_id=method,
        trial_days=None,
        idempotency_key=key(),
    )
    return created.to_dict()


def first_intent(subscription: dict[str, Any]) -> str:
    payments = subscription["latest_invoice"]["payments"]["data"]
    return payments[0]["payment"]["payment_intent"]


async def browser(billing: Billing, path: str, **form: str) -> None:
    async with httpx.AsyncClient(base_url=billing.sandbox.url) as http:
        (await http.post(path, data=form)).raise_for_status()


async def happy_life(api: StripeApi, billing: Billing, customer: Customer) -> None:
    """Subscribe with a good card, upgrade (prorated, invoiced), refund part of the first
    payment, cancel at the period end, then at once."""
    method = await attach(api, customer, "pm_card_visa")
    await api.set_default_payment_method(
        customer_id=customer.stripe_id, payment_method_id=method, idempotency_key=key()
    )
    subscription = await subscribe(api, billing, customer, method, "starter_monthly")
    await api.refund(
        payment_intent_id=first_intent(subscription),
        amount=300,
        reason=None,
        idempotency_key=key(),
    )
    await api.change_subscription_price(
        subscription_id=subscription["id"],
        item_id=subscription["items"]["data"][0]["id"],
        price_id=price(billing, "pro_monthly"),
        quantity=1,
        prorate=True,
        idempotency_key=key(),
    )
    await api.set_cancel_at_period_end(
        subscription_id=subscription["id"], cancel=True, idempotency_key=key()
    )
    await api.cancel_subscription(subscription_id=subscription["id"], idempotency_key=key())


async def three_d_secure_life(api: StripeApi, billing: Billing, customer: Customer) -> None:
    """A card that asks for 3-D Secure; the customer passes the challenge."""
    method = await attach(api, customer, "pm_card_authenticationRequired")
    subscription = await subscribe(api, billing, customer, method, "pro_monthly")
    assert subscription["status"] == "incomplete"
    intent = first_intent(subscription)
    await browser(billing, f"/_sandbox/payment_intents/{intent}/authenticate", outcome="succeed")


async def recovery_life(api: StripeApi, billing: Billing, customer: Customer) -> None:
    """The first payment fails; the customer pays the open invoice with a good card."""
    bad = await attach(api, customer, "pm_card_chargeCustomerFail")
    subscription = await subscribe(api, billing, customer, bad, "pro_monthly")
    assert subscription["status"] == "incomplete"
    good = await attach(api, customer, "pm_card_visa")
    await api.pay_invoice(
        invoice_id=subscription["latest_invoice"]["id"],
        payment_method_id=good,
        idempotency_key=key(),
        off_session=False,
    )
    await api.detach_payment_method(payment_method_id=bad, idempotency_key=key())


async def renewal_life(api: StripeApi, billing: Billing, customer: Customer) -> None:
    """A monthly subscription renewed by a test clock (its events dated in the clock's time)."""
    method = await attach(api, customer, "pm_card_visa")
    subscription = await subscribe(api, billing, customer, method, "starter_monthly")
    remote = await billing.stripe.v1.customers.retrieve_async(customer.stripe_id)
    clock_id = remote.test_clock
    assert isinstance(clock_id, str)
    period_end = subscription["items"]["data"][0]["current_period_end"]
    await billing.stripe.v1.test_helpers.test_clocks.advance_async(
        clock_id, {"frozen_time": period_end + 7200}
    )


Life = Callable[[StripeApi, Billing, Customer], Awaitable[None]]


async def record(db: Database, api: StripeApi, billing: Billing, life: Life) -> Recorded:
    """Run a lifecycle for a new customer and return its events, oldest first."""
    params: dict[str, Any] = {}
    if life is renewal_life:
        now = int(datetime.now(UTC).timestamp())
        clock = await billing.stripe.v1.test_helpers.test_clocks.create_async({"frozen_time": now})
        params["test_clock"] = clock.id
    customer = await new_customer(db, billing, f"user-{uuid.uuid4().hex[:8]}", **params)
    await life(api, billing, customer)
    return Recorded(customer, await events_of(billing, customer.stripe_id))


# --- mirror versus Stripe ------------------------------------------------------------------


async def mirror_state(db: Database, account_id: int) -> State:
    """What the mirror says about an account, in the shape `stripe_state` builds."""
    async with db.session() as session:
        subscriptions = (
            await session.execute(
                select(Subscription, Plan.stripe_price_id)
                .join(Plan, Plan.id == Subscription.plan_id)
                .where(Subscription.account_id == account_id)
            )
        ).all()
        invoices = (
            await session.scalars(select(Invoice).where(Invoice.account_id == account_id))
        ).all()
        payments = (
            await session.scalars(
                select(PaymentTransaction).where(PaymentTransaction.account_id == account_id)
            )
        ).all()
        methods = (
            await session.scalars(
                select(PaymentMethod).where(
                    PaymentMethod.account_id == account_id, PaymentMethod.detached_at.is_(None)
                )
            )
        ).all()
        account = await session.get(Account, account_id)
    assert account is not None
    return {
        "subscriptions": {
            row.stripe_subscription_id: (
                row.status.value,
                price_id,
                row.quantity,
                row.cancel_at_period_end,
                int(row.current_period_end.timestamp()),
                row.latest_invoice_stripe_id,
            )
            for row, price_id in subscriptions
        },
        "invoices": {
            row.stripe_invoice_id: (
                row.status.value,
                row.subscription_stripe_id,
                row.total,
                row.amount_due,
                row.amount_paid,
                row.amount_remaining,
            )
            for row in invoices
        },
        "payments": {
            row.stripe_payment_intent_id: (
                row.status.value,
                row.amount,
                row.amount_received,
                row.amount_refunded,
                row.invoice_stripe_id,
            )
            for row in payments
        },
        "payment_methods": sorted(row.stripe_payment_method_id for row in methods),
        "default_payment_method": account.default_payment_method_stripe_id,
    }


async def stripe_state(billing: Billing, customer_id: str) -> State:
    """What Stripe says now about a customer, in the shape of `mirror_state`."""
    v1 = billing.stripe.v1
    subscriptions = await v1.subscriptions.list_async(
        {"customer": customer_id, "status": "all", "limit": 100}
    )
    invoices = await v1.invoices.list_async(
        {"customer": customer_id, "limit": 100, "expand": ["data.payments"]}
    )
    intents = await v1.payment_intents.list_async(
        {"customer": customer_id, "limit": 100, "expand": ["data.latest_charge"]}
    )
    methods = await v1.customers.payment_methods.list_async(customer_id, {"limit": 100})
    customer = (await v1.customers.retrieve_async(customer_id)).to_dict()
    paid_by: dict[str, str] = {}
    for invoice in invoices.data:
        for payment in invoice.to_dict()["payments"]["data"]:
            paid_by[payment["payment"]["payment_intent"]] = invoice.id
    return {
        "subscriptions": {s.id: _subscription(s.to_dict()) for s in subscriptions.data},
        "invoices": {i.id: _invoice(i.to_dict()) for i in invoices.data},
        "payments": {p.id: _payment(p.to_dict(), paid_by.get(p.id)) for p in intents.data},
        "payment_methods": sorted(method.id for method in methods.data),
        "default_payment_method": (customer.get("invoice_settings") or {}).get(
            "default_payment_method"
        ),
    }


def _subscription(data: dict[str, Any]) -> tuple[Any, ...]:
    item = data["items"]["data"][0]
    price = item["price"]
    return (
        data["status"],
        price["id"] if isinstance(price, dict) else price,
        item["quantity"],
        data["cancel_at_period_end"],
        item["current_period_end"],
        data["latest_invoice"],
    )


def _invoice(data: dict[str, Any]) -> tuple[Any, ...]:
    details = (data.get("parent") or {}).get("subscription_details") or {}
    return (
        data["status"],
        details.get("subscription"),
        data["total"],
        data["amount_due"],
        data["amount_paid"],
        data["amount_remaining"],
    )


def _payment(data: dict[str, Any], invoice_id: str | None) -> tuple[Any, ...]:
    charge = data.get("latest_charge") or {}
    return (
        data["status"],
        data["amount"],
        data["amount_received"],
        charge.get("amount_refunded") or 0,
        invoice_id,
    )
