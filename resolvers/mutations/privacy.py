"""exportMyData (the caller's own) and eraseCustomer (admins)."""

import strawberry

from resolvers.mutations.common import Caller, run_mutation
from schema.billing import Customer
from schema.ids import row_id_of
from schema.privacy import DataExport, EraseCustomerInput, EraseCustomerPayload, ExportMyDataPayload
from services import data_export, erasure, idempotency


@strawberry.type
class PrivacyMutations:
    @strawberry.mutation(description="The signed-in caller's own data.")
    async def export_my_data(self, info: strawberry.Info) -> ExportMyDataPayload:
        async def export(caller: Caller) -> ExportMyDataPayload:
            base_url = str(info.context.request.base_url).rstrip("/")
            async with info.context.database.session() as session:
                url, expires_at = await data_export.create_export(
                    session,
                    account_id=caller.account.id,
                    settings=info.context.settings,
                    base_url=base_url,
                    actor=caller.audit_actor,
                )
            return ExportMyDataPayload(export=DataExport(url=url, expires_at=expires_at))

        return await run_mutation(info, ExportMyDataPayload, None, export)

    @strawberry.mutation(description="Admin role only.")
    async def erase_customer(
        self, info: strawberry.Info, input: EraseCustomerInput
    ) -> EraseCustomerPayload:
        async def erase(caller: Caller) -> EraseCustomerPayload:
            account_id = row_id_of(input.customer_id, "Customer", field="customerId")
            key = idempotency.check_key(input.idempotency_key)
            async with info.context.database.session() as session:
                row = await erasure.erase_customer(
                    session,
                    info.context.stripe,
                    account_id=account_id,
                    idempotency_key=key,
                    actor=caller.audit_actor,
                )
            return EraseCustomerPayload(customer=Customer.from_model(row))

        return await run_mutation(info, EraseCustomerPayload, input, erase, admin=True)
