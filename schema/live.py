"""Live update types: what a `billingUpdates` subscriber receives for each change."""

from datetime import datetime
from enum import Enum

import strawberry

from schema.access import BillingAccess
from schema.billing import Invoice, PaymentMethod, PaymentTransaction, Subscription
from schema.scalars import BigInt
from services.live_bus import LiveUpdate


@strawberry.enum
class BillingUpdateKind(Enum):
    SUBSCRIPTION_UPDATED = "SUBSCRIPTION_UPDATED"
    INVOICE_UPDATED = "INVOICE_UPDATED"
    PAYMENT_UPDATED = "PAYMENT_UPDATED"
    PAYMENT_METHOD_UPDATED = "PAYMENT_METHOD_UPDATED"
    CREDITS_UPDATED = "CREDITS_UPDATED"
    ACCESS_UPDATED = "ACCESS_UPDATED"


@strawberry.type
class BillingUpdate:
    kind: BillingUpdateKind
    occurred_at: datetime
    subscription: Subscription | None = None
    invoice: Invoice | None = None
    transaction: PaymentTransaction | None = None
    payment_method: PaymentMethod | None = None
    credit_balance: BigInt | None = None
    access: BillingAccess | None = None

    @classmethod
    def from_update(cls, update: LiveUpdate) -> "BillingUpdate":
        method = update.payment_method
        default_method = update.account.default_payment_method_stripe_id if update.account else None
        return cls(
            kind=BillingUpdateKind(update.kind.value),
            occurred_at=update.occurred_at,
            subscription=Subscription.from_model(update.subscription)
            if update.subscription is not None
            else None,
            invoice=Invoice.from_model(update.invoice) if update.invoice is not None else None,
            transaction=PaymentTransaction.from_model(update.transaction)
            if update.transaction is not None
            else None,
            payment_method=PaymentMethod.from_model(
                method, is_default=method.stripe_payment_method_id == default_method
            )
            if method is not None
            else None,
            credit_balance=BigInt(update.credit_balance)
            if update.credit_balance is not None
            else None,
            access=BillingAccess.of(update.access) if update.access is not None else None,
        )
