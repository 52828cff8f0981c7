"""Billing details, tax ids and promotion codes: thin: decode, authorize, call a service, map."""

import strawberry

from resolvers.mutations.common import Caller, run_mutation
from schema.billing import Customer, Subscription
from schema.commerce import (
    AddTaxIdInput,
    AddTaxIdPayload,
    ApplyPromotionCodeInput,
    RemoveTaxIdInput,
    RemoveTaxIdPayload,
    TaxId,
    UpdateBillingDetailsInput,
)
from schema.ids import row_id_of
from schema.purchases import ApplyPromotionCodePayload, UpdateBillingDetailsPayload
from services import accounts, billing_details, subscriptions


@strawberry.type
class CommerceMutations:
    @strawberry.mutation
    async def update_billing_details(
        self, info: strawberry.Info, input: UpdateBillingDetailsInput
    ) -> UpdateBillingDetailsPayload:
        async def update(caller: Caller) -> UpdateBillingDetailsPayload:
            address = input.address
            details = billing_details.Details(
                name=input.name,
                email=input.email,
                address=vars(address) if address is not None else None,
            )
            async with info.context.database.session() as session:
                await billing_details.update(
                    session=session,
                    stripe=info.context.stripe,
                    account_id=caller.account.id,
                    details=details,
                )
                row = await accounts.load_account(session, caller.account.id)
            return UpdateBillingDetailsPayload(customer=Customer.from_model(row))

        return await run_mutation(info, UpdateBillingDetailsPayload, input, update)

    @strawberry.mutation
    async def add_tax_id(self, info: strawberry.Info, input: AddTaxIdInput) -> AddTaxIdPayload:
        async def add(caller: Caller) -> AddTaxIdPayload:
            async with info.context.database.session() as session:
                row = await billing_details.add_tax_id(
                    session=session,
                    stripe=info.context.stripe,
                    account_id=caller.account.id,
                    type=input.type,
                    value=input.value,
                )
            return AddTaxIdPayload(tax_id=TaxId.from_model(row))

        return await run_mutation(info, AddTaxIdPayload, input, add)

    @strawberry.mutation
    async def remove_tax_id(
        self, info: strawberry.Info, input: RemoveTaxIdInput
    ) -> RemoveTaxIdPayload:
        async def remove(caller: Caller) -> RemoveTaxIdPayload:
            row_id = row_id_of(input.tax_id_id, "TaxId", field="taxIdId")
            async with info.context.database.session() as session:
                await billing_details.remove_tax_id(
                    session=session,
                    stripe=info.context.stripe,
                    account_id=caller.account.id,
                    tax_id_row=row_id,
                )
            return RemoveTaxIdPayload(removed_tax_id_id=input.tax_id_id)

        return await run_mutation(info, RemoveTaxIdPayload, input, remove)

    @strawberry.mutation
    async def apply_promotion_code(
        self, info: strawberry.Info, input: ApplyPromotionCodeInput
    ) -> ApplyPromotionCodePayload:
        async def apply(caller: Caller) -> ApplyPromotionCodePayload:
            subscription_id = row_id_of(
                input.subscription_id, "Subscription", field="subscriptionId"
            )
            async with info.context.database.session() as session:
                row = await subscriptions.apply_promotion_code(
                    session=session,
                    stripe=info.context.stripe,
                    account_id=caller.account.id,
                    subscription_id=subscription_id,
                    code=input.code,
                    actor=caller.audit_actor,
                )
            return ApplyPromotionCodePayload(subscription=Subscription.from_model(row))

        return await run_mutation(info, ApplyPromotionCodePayload, input, apply)
