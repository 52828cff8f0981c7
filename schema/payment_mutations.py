"""Inputs and payloads of the payment method and payment mutations."""

import strawberry

from schema.billing import Invoice, PaymentMethod, PaymentTransaction
from schema.common import UserError
from schema.scalars import BigInt


@strawberry.type
class CreateSetupIntentPayload:
    client_secret: str | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class AttachPaymentMethodInput:
    payment_method_id: str = strawberry.field(
        description="A Stripe PaymentMethod id from Stripe.js (pm_...). Card numbers are refused."
    )
    make_default: bool | None = None


@strawberry.type
class AttachPaymentMethodPayload:
    payment_method: PaymentMethod | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class SetDefaultPaymentMethodInput:
    payment_method_id: strawberry.ID


@strawberry.type
class SetDefaultPaymentMethodPayload:
    payment_method: PaymentMethod | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class DetachPaymentMethodInput:
    payment_method_id: strawberry.ID


@strawberry.type
class DetachPaymentMethodPayload:
    detached_payment_method_id: strawberry.ID | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class CreatePaymentInput:
    amount: BigInt
    currency: str
    description: str | None = None
    payment_method_id: str | None = None
    idempotency_key: str


@strawberry.type
class CreatePaymentPayload:
    transaction: PaymentTransaction | None = None
    client_secret: str | None = None
    requires_action: bool = False
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class PayInvoiceInput:
    invoice_id: strawberry.ID
    payment_method_id: strawberry.ID | None = None
    idempotency_key: str | None = None


@strawberry.type
class PayInvoicePayload:
    invoice: Invoice | None = None
    client_secret: str | None = None
    requires_action: bool = False
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class RefundPaymentInput:
    transaction_id: strawberry.ID
    amount: BigInt | None = None
    reason: str | None = None
    idempotency_key: str


@strawberry.type
class RefundPaymentPayload:
    transaction: PaymentTransaction | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)
