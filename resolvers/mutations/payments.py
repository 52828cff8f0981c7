"""Payment method and payment mutations: thin: decode, authorize, call a service, map."""

import strawberry

from resolvers.mutations.common import Caller, run_mutation
from schema.billing import Invoice, PaymentMethod, PaymentTransaction
from schema.ids import row_id_of, to_global_id
from schema.payment_mutations import (
    AttachPaymentMethodInput,
    AttachPaymentMethodPayload,
    CreatePaymentInput,
    CreatePaymentPayload,
    CreateSetupIntentPayload,
    DetachPaymentMethodInput,
    DetachPaymentMethodPayload,
    PayInvoiceInput,
    PayInvoicePayload,
    RefundPaymentInput,
    RefundPaymentPayload,
    SetDefaultPaymentMethodInput,
    SetDefaultPaymentMethodPayload,
)
from services import invoices, payment_methods, payments


def _method_payload(found: payment_methods.OwnedPaymentMethod) -> PaymentMethod:
    return PaymentMethod.from_model(found.row, is_default=found.is_default)


def _method_row_id(global_id: strawberry.ID) -> int:
    return row_id_of(global_id, "PaymentMethod", field="paymentMethodId")


@strawberry.type
class PaymentMutations:
    @strawberry.mutation
    async def create_setup_intent(self, info: strawberry.Info) -> CreateSetupIntentPayload:
        async def create(caller: Caller) -> CreateSetupIntentPayload:
            async with info.context.database.session() as session:
                secret = await payment_methods.create_setup_intent(
                    session=session, stripe=info.context.stripe, account_id=caller.account.id
                )
            return CreateSetupIntentPayload(client_secret=secret)

        return await run_mutation(info, CreateSetupIntentPayload, None, create)

    @strawberry.mutation
    async def attach_payment_method(
        self, info: strawberry.Info, input: AttachPaymentMethodInput
    ) -> AttachPaymentMethodPayload:
        async def attach(caller: Caller) -> AttachPaymentMethodPayload:
            async with info.context.database.session() as session:
                found = await payment_methods.attach(
                    session=session,
                    stripe=info.context.stripe,
                    account_id=caller.account.id,
                    stripe_id=input.payment_method_id,
                    make_default=bool(input.make_default),
                )
            return AttachPaymentMethodPayload(payment_method=_method_payload(found))

        return await run_mutation(info, AttachPaymentMethodPayload, input, attach)

    @strawberry.mutation
    async def set_default_payment_method(
        self, info: strawberry.Info, input: SetDefaultPaymentMethodInput
    ) -> SetDefaultPaymentMethodPayload:
        async def set_default(caller: Caller) -> SetDefaultPaymentMethodPayload:
            async with info.context.database.session() as session:
                found = await payment_methods.set_default(
                    session=session,
                    stripe=info.context.stripe,
                    account_id=caller.account.id,
                    payment_method_id=_method_row_id(input.payment_method_id),
                )
            return SetDefaultPaymentMethodPayload(payment_method=_method_payload(found))

        return await run_mutation(info, SetDefaultPaymentMethodPayload, input, set_default)

    @strawberry.mutation
    async def detach_payment_method(
        self, info: strawberry.Info, input: DetachPaymentMethodInput
    ) -> DetachPaymentMethodPayload:
        async def detach(caller: Caller) -> DetachPaymentMethodPayload:
            async with info.context.database.session() as session:
                row_id = await payment_methods.detach(
                    session=session,
                    stripe=info.context.stripe,
                    account_id=caller.account.id,
                    payment_method_id=_method_row_id(input.payment_method_id),
                )
            detached = strawberry.ID(to_global_id("PaymentMethod", row_id))
            return DetachPaymentMethodPayload(detached_payment_method_id=detached)

        return await run_mutation(info, DetachPaymentMethodPayload, input, detach)

    @strawberry.mutation
    async def create_payment(
        self, info: strawberry.Info, input: CreatePaymentInput
    ) -> CreatePaymentPayload:
        async def create(caller: Caller) -> CreatePaymentPayload:
            outcome = await payments.create_payment(
                database=info.context.database,
                stripe=info.context.stripe,
                account_id=caller.account.id,
                actor=caller.audit_actor,
                amount=input.amount,
                currency=input.currency,
                description=input.description,
                payment_method_id=input.payment_method_id,
                idempotency_key=input.idempotency_key,
                credits_per_currency_unit=info.context.settings.credits_per_currency_unit,
            )
            return CreatePaymentPayload(
                transaction=PaymentTransaction.from_model(outcome.transaction),
                client_secret=outcome.client_secret,
                requires_action=outcome.requires_action,
            )

        return await run_mutation(info, CreatePaymentPayload, input, create)

    @strawberry.mutation
    async def pay_invoice(self, info: strawberry.Info, input: PayInvoiceInput) -> PayInvoicePayload:
        async def pay(caller: Caller) -> PayInvoicePayload:
            method = input.payment_method_id
            outcome = await invoices.pay(
                database=info.context.database,
                stripe=info.context.stripe,
                account_id=caller.account.id,
                actor=caller.audit_actor,
                invoice_id=row_id_of(input.invoice_id, "Invoice", field="invoiceId"),
                payment_method_id=_method_row_id(method) if method is not None else None,
                idempotency_key=input.idempotency_key,
            )
            return PayInvoicePayload(
                invoice=Invoice.from_model(outcome.invoice),
                client_secret=outcome.client_secret,
                requires_action=outcome.requires_action,
            )

        return await run_mutation(info, PayInvoicePayload, input, pay)

    @strawberry.mutation(description="Admin role only.")
    async def refund_payment(
        self, info: strawberry.Info, input: RefundPaymentInput
    ) -> RefundPaymentPayload:
        async def refund(caller: Caller) -> RefundPaymentPayload:
            row = await payments.refund(
                database=info.context.database,
                stripe=info.context.stripe,
                account_id=caller.account.id,
                actor=caller.audit_actor,
                transaction_id=row_id_of(
                    input.transaction_id, "PaymentTransaction", field="transactionId"
                ),
                amount=input.amount,
                reason=input.reason,
                idempotency_key=input.idempotency_key,
            )
            return RefundPaymentPayload(transaction=PaymentTransaction.from_model(row))

        return await run_mutation(info, RefundPaymentPayload, input, refund, admin=True)
