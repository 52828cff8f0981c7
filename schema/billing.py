"""Billing types that mirror rows: each has `from_model`, and relations load through loaders."""

from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any

import strawberry

from db import models
from resolvers.connections import connection_with_relations, query_error
from schema.commerce import Address, Discount, TaxAmount, TaxId
from schema.common import Connection, Money, Node
from schema.ids import to_global_id
from schema.scalars import BigInt
from services import purchases
from services.errors import DomainError
from services.pagination import Page

# The mirror's enums are the GraphQL enums: member names are the GraphQL values.
for _enum in (
    models.BillingInterval,
    models.SubscriptionStatus,
    models.InvoiceStatus,
    models.PaymentStatus,
    models.CreditEntryKind,
    models.WebhookEventStatus,
):
    strawberry.enum(_enum)


@strawberry.type
class BillingConfig:
    publishable_key: str
    sandbox: bool = strawberry.field(
        description="True when the gateway talks to the offline sandbox instead of Stripe."
    )
    stripe_js_url: str = strawberry.field(
        description="Where a page loads Stripe.js from: Stripe's, or the sandbox's stand-in."
    )


@strawberry.type
class Plan(Node):
    stripe_price_id: str
    product_name: str
    description: str | None
    amount: Money
    interval: models.BillingInterval
    interval_count: int
    trial_days: int | None
    credits: BigInt | None = strawberry.field(
        description="Credits granted for each paid billing cycle."
    )
    active: bool
    amounts: list[Money] = strawberry.field(
        description="The price in every currency it is sold in (the plan's own currency first)."
    )

    @classmethod
    def from_model(cls, row: models.Plan) -> "Plan":
        assert row.interval is not None and row.interval_count is not None, "plans recur"
        return cls(
            id=strawberry.ID(to_global_id("Plan", row.id)),
            stripe_price_id=row.stripe_price_id,
            product_name=row.product_name,
            description=row.description,
            amount=Money.of(row.amount, row.currency),
            interval=row.interval,
            interval_count=row.interval_count,
            trial_days=row.trial_days,
            credits=BigInt(row.credits) if row.credits is not None else None,
            active=row.active,
            amounts=[
                Money.of(amount, currency)
                for currency, amount in purchases.plan_amounts(row).items()
            ],
        )


@strawberry.type
class PaymentMethod(Node):
    stripe_payment_method_id: str
    type: str
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None
    is_default: bool
    created_at: datetime

    @classmethod
    def from_model(cls, row: models.PaymentMethod, *, is_default: bool) -> "PaymentMethod":
        return cls(
            id=strawberry.ID(to_global_id("PaymentMethod", row.id)),
            stripe_payment_method_id=row.stripe_payment_method_id,
            type=row.type,
            brand=row.brand,
            last4=row.last4,
            exp_month=row.exp_month,
            exp_year=row.exp_year,
            is_default=is_default,
            created_at=row.stripe_created_at,
        )


@strawberry.type(
    description="The billing account of one user of the product; created when the user is first seen."
)
class Customer(Node):
    stripe_customer_id: str | None = strawberry.field(
        description="Set once the first billing action has created the Stripe customer."
    )
    user_id: str
    email: str | None
    name: str | None
    address: Address | None
    currency: str | None = strawberry.field(
        description="The currency the customer is billed in, once set by a first purchase."
    )
    created_at: datetime
    account_id: strawberry.Private[int]
    default_payment_method_stripe_id: strawberry.Private[str | None]

    @strawberry.field
    async def default_payment_method(self, info: strawberry.Info) -> PaymentMethod | None:
        if self.default_payment_method_stripe_id is None:
            return None
        row = await info.context.loaders.payment_method_by_stripe_id.load(
            self.default_payment_method_stripe_id
        )
        if row is None or row.account_id != self.account_id or row.detached_at is not None:
            return None
        return PaymentMethod.from_model(row, is_default=True)

    @strawberry.field
    async def tax_ids(self, info: strawberry.Info) -> list[TaxId]:
        rows = await info.context.loaders.tax_ids_by_account_id.load(self.account_id)
        return [TaxId.from_model(row) for row in rows if row.deleted_at is None]

    @strawberry.field(description="The customer's subscriptions, newest first.")
    async def subscriptions(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        status: list[models.SubscriptionStatus] | None = None,
    ) -> Connection["Subscription"]:
        page = await _page(
            info.context.loaders.subscription_pages_by_account,
            _page_key(self.account_id, first, after, status),
        )
        return await connection_with_relations(info, page, Subscription)

    @strawberry.field(description="The customer's invoices, newest first.")
    async def invoices(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        status: list[models.InvoiceStatus] | None = None,
    ) -> Connection["Invoice"]:
        loader = info.context.loaders.invoice_pages_by_account
        page = await _page(loader, _page_key(self.account_id, first, after, status))
        return await connection_with_relations(info, page, Invoice)

    @classmethod
    def from_model(cls, row: models.Account) -> "Customer":
        return cls(
            id=strawberry.ID(to_global_id("Customer", row.id)),
            stripe_customer_id=row.stripe_customer_id,
            user_id=row.user_id,
            email=row.email,
            name=row.name,
            address=Address.of(row.address) if row.address else None,
            currency=row.currency.upper() if row.currency else None,
            created_at=row.created_at,
            account_id=row.id,
            default_payment_method_stripe_id=row.default_payment_method_stripe_id,
        )


def _page_key(
    account_id: int, first: int | None, after: str | None, statuses: list[Any] | None
) -> tuple[Any, ...]:
    return (account_id, first, after, tuple(sorted(statuses)) if statuses else None)


def _now_or_later(build: Callable[..., Any], *loaded: Any) -> Any:
    """`build` of loaders' values: at once when the loaders have them (a page preloaded
    them, see `related`), else when they come."""
    if all(value.done() and value.exception() is None for value in loaded):
        return build(*(value.result() for value in loaded))

    async def later() -> Any:
        return build(*[await value for value in loaded])

    return later()


def _present(keys: Iterable[Any]) -> list[Any]:
    return list({key for key in keys if key is not None})


async def _page(loader: Any, key: tuple[Any, ...]) -> Page[Any]:
    """A loader's page; a refused argument (aiodataloader raises it) becomes a query error."""
    try:
        return await loader.load(key)
    except DomainError as error:
        raise query_error(error) from error


@strawberry.type
class InvoiceLine:
    description: str | None
    amount: Money
    quantity: int | None
    proration: bool
    period_start: datetime | None
    period_end: datetime | None
    tax: Money | None

    @classmethod
    def from_model(cls, row: models.InvoiceLine) -> "InvoiceLine":
        return cls(
            description=row.description,
            amount=Money.of(row.amount, row.currency),
            quantity=row.quantity,
            proration=row.proration,
            period_start=row.period_start,
            period_end=row.period_end,
            tax=Money.of(row.tax, row.currency) if row.tax is not None else None,
        )


@strawberry.type
class Invoice(Node):
    stripe_invoice_id: str
    number: str | None
    status: models.InvoiceStatus
    subtotal: Money
    discounts: list[Discount]
    total_discount: Money
    taxes: list[TaxAmount]
    customer_tax_ids: list[str] = strawberry.field(
        description="The customer's tax ids printed on the invoice."
    )
    total: Money
    tax: Money | None
    amount_due: Money
    amount_paid: Money
    period_start: datetime | None
    period_end: datetime | None
    due_date: datetime | None
    paid_at: datetime | None
    hosted_invoice_url: str | None
    pdf_url: str = strawberry.field(
        description="A gateway URL that serves this invoice as a PDF to its owner."
    )
    created_at: datetime
    row_id: strawberry.Private[int]
    subscription_stripe_id: strawberry.Private[str | None]

    @strawberry.field
    def subscription(self, info: strawberry.Info) -> "Subscription | None":
        if self.subscription_stripe_id is None:
            return None
        loaded = info.context.loaders.subscription_by_stripe_id.load(self.subscription_stripe_id)
        return _now_or_later(_subscription_of, loaded)

    @strawberry.field
    def lines(self, info: strawberry.Info) -> list[InvoiceLine]:
        loaded = info.context.loaders.lines_by_invoice_id.load(self.row_id)
        return _now_or_later(_lines_of, loaded)

    @staticmethod
    def related(loaders: Any, rows: list[models.Invoice], fields: set[str]) -> list[Awaitable[Any]]:
        """Loads of what `fields` ask of these invoices, for them to be answered at once;
        the invoices themselves are at hand for whatever asks one by id (a subscription's
        latest invoice, a payment's)."""
        for row in rows:
            loaders.invoice_by_stripe_id.prime(row.stripe_invoice_id, row)
        loads = []
        if "lines" in fields:
            loads.append(loaders.lines_by_invoice_id.load_many([row.id for row in rows]))
        if "subscription" in fields:
            keys = _present(row.subscription_stripe_id for row in rows)
            loads.append(loaders.subscription_by_stripe_id.load_many(keys))
        return loads

    @classmethod
    def from_model(cls, row: models.Invoice) -> "Invoice":
        global_id = to_global_id("Invoice", row.id)
        return cls(
            id=strawberry.ID(global_id),
            stripe_invoice_id=row.stripe_invoice_id,
            number=row.number,
            status=row.status,
            subtotal=Money.of(row.subtotal, row.currency),
            discounts=[Discount.of(described) for described in row.discounts],
            total_discount=Money.of(row.total_discount, row.currency),
            taxes=[TaxAmount.of(described, row.currency) for described in row.taxes],
            customer_tax_ids=[entry["value"] for entry in row.customer_tax_ids or []],
            total=Money.of(row.total, row.currency),
            tax=Money.of(row.tax, row.currency) if row.tax is not None else None,
            amount_due=Money.of(row.amount_due, row.currency),
            amount_paid=Money.of(row.amount_paid, row.currency),
            period_start=row.period_start,
            period_end=row.period_end,
            due_date=row.due_date,
            paid_at=row.paid_at,
            hosted_invoice_url=row.hosted_invoice_url,
            pdf_url=f"/invoices/{global_id}/pdf",
            created_at=row.stripe_created_at,
            row_id=row.id,
            subscription_stripe_id=row.subscription_stripe_id,
        )


@strawberry.type
class Subscription(Node):
    stripe_subscription_id: str
    status: models.SubscriptionStatus
    quantity: int
    current_period_start: datetime
    current_period_end: datetime
    cancel_at_period_end: bool
    canceled_at: datetime | None
    trial_end: datetime | None
    discount: Discount | None
    created_at: datetime
    updated_at: datetime
    plan_id: strawberry.Private[int]
    latest_invoice_stripe_id: strawberry.Private[str | None]

    @strawberry.field
    def plan(self, info: strawberry.Info) -> Plan:
        return _now_or_later(Plan.from_model, info.context.loaders.plan_by_id.load(self.plan_id))

    @strawberry.field
    def latest_invoice(self, info: strawberry.Info) -> Invoice | None:
        if self.latest_invoice_stripe_id is None:
            return None
        loaded = info.context.loaders.invoice_by_stripe_id.load(self.latest_invoice_stripe_id)
        return _now_or_later(_invoice_of, loaded)

    @staticmethod
    def related(
        loaders: Any, rows: list[models.Subscription], fields: set[str]
    ) -> list[Awaitable[Any]]:
        """Loads of what `fields` ask of these subscriptions, for them to be answered at
        once; the subscriptions themselves are at hand for an invoice's."""
        for row in rows:
            loaders.subscription_by_stripe_id.prime(row.stripe_subscription_id, row)
        loads = []
        if "plan" in fields:
            loads.append(loaders.plan_by_id.load_many(_present(row.plan_id for row in rows)))
        if "latestInvoice" in fields:
            keys = _present(row.latest_invoice_stripe_id for row in rows)
            loads.append(loaders.invoice_by_stripe_id.load_many(keys))
        return loads

    @classmethod
    def from_model(cls, row: models.Subscription) -> "Subscription":
        return cls(
            id=strawberry.ID(to_global_id("Subscription", row.id)),
            stripe_subscription_id=row.stripe_subscription_id,
            status=row.status,
            quantity=row.quantity,
            current_period_start=row.current_period_start,
            current_period_end=row.current_period_end,
            cancel_at_period_end=row.cancel_at_period_end,
            canceled_at=row.canceled_at,
            trial_end=row.trial_end,
            discount=Discount.of(row.discount) if row.discount else None,
            created_at=row.stripe_created_at,
            updated_at=row.updated_at,
            plan_id=row.plan_id,
            latest_invoice_stripe_id=row.latest_invoice_stripe_id,
        )


@strawberry.type
class PaymentTransaction(Node):
    stripe_payment_intent_id: str
    status: models.PaymentStatus
    amount: Money
    amount_refunded: Money
    description: str | None
    failure_code: str | None
    failure_message: str | None
    receipt_url: str | None
    created_at: datetime
    account_id: strawberry.Private[int]
    payment_method_stripe_id: strawberry.Private[str | None]
    invoice_stripe_id: strawberry.Private[str | None]

    @strawberry.field
    def payment_method(self, info: strawberry.Info) -> PaymentMethod | None:
        if self.payment_method_stripe_id is None:
            return None
        loaders = info.context.loaders
        return _now_or_later(
            self._payment_method,
            loaders.payment_method_by_stripe_id.load(self.payment_method_stripe_id),
            loaders.account_by_id.load(self.account_id),
        )

    def _payment_method(
        self, row: models.PaymentMethod | None, account: models.Account
    ) -> PaymentMethod | None:
        if row is None or row.account_id != self.account_id:
            return None
        is_default = account.default_payment_method_stripe_id == row.stripe_payment_method_id
        return PaymentMethod.from_model(row, is_default=is_default)

    @strawberry.field
    def invoice(self, info: strawberry.Info) -> Invoice | None:
        if self.invoice_stripe_id is None:
            return None
        loaded = info.context.loaders.invoice_by_stripe_id.load(self.invoice_stripe_id)
        return _now_or_later(self._own_invoice, loaded)

    def _own_invoice(self, row: models.Invoice | None) -> Invoice | None:
        return _invoice_of(row) if row is not None and row.account_id == self.account_id else None

    @staticmethod
    def related(
        loaders: Any, rows: list[models.PaymentTransaction], fields: set[str]
    ) -> list[Awaitable[Any]]:
        """Loads of what `fields` ask of these payments, for them to be answered at once."""
        loads = []
        if "paymentMethod" in fields:
            keys = _present(row.payment_method_stripe_id for row in rows)
            loads.append(loaders.payment_method_by_stripe_id.load_many(keys))
            loads.append(loaders.account_by_id.load_many(_present(row.account_id for row in rows)))
        if "invoice" in fields:
            keys = _present(row.invoice_stripe_id for row in rows)
            loads.append(loaders.invoice_by_stripe_id.load_many(keys))
        return loads

    @classmethod
    def from_model(cls, row: models.PaymentTransaction) -> "PaymentTransaction":
        return cls(
            id=strawberry.ID(to_global_id("PaymentTransaction", row.id)),
            stripe_payment_intent_id=row.stripe_payment_intent_id,
            status=row.status,
            amount=Money.of(row.amount, row.currency),
            amount_refunded=Money.of(row.amount_refunded, row.currency),
            description=row.description,
            failure_code=row.failure_code,
            failure_message=row.failure_message,
            receipt_url=row.receipt_url,
            created_at=row.stripe_created_at,
            account_id=row.account_id,
            payment_method_stripe_id=row.payment_method_stripe_id,
            invoice_stripe_id=row.invoice_stripe_id,
        )


def _invoice_of(row: models.Invoice | None) -> Invoice | None:
    return Invoice.from_model(row) if row is not None else None


def _subscription_of(row: models.Subscription | None) -> Subscription | None:
    return Subscription.from_model(row) if row is not None else None


def _lines_of(rows: list[models.InvoiceLine]) -> list[InvoiceLine]:
    return [InvoiceLine.from_model(row) for row in rows]
