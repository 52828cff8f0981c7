"""Credits mutations: thin: decode, authorize, call a service, map."""

import strawberry

from resolvers.mutations.common import Caller, run_mutation
from schema.credit_mutations import (
    GrantCreditsInput,
    GrantCreditsPayload,
    SpendCreditsInput,
    SpendCreditsPayload,
)
from schema.credits import CreditEntry
from schema.ids import row_id_of
from schema.scalars import BigInt
from services import credits


@strawberry.type
class CreditMutations:
    @strawberry.mutation
    async def spend_credits(
        self, info: strawberry.Info, input: SpendCreditsInput
    ) -> SpendCreditsPayload:
        async def spend(caller: Caller) -> SpendCreditsPayload:
            outcome = await credits.spend(
                database=info.context.database,
                account_id=caller.account.id,
                actor=caller.audit_actor,
                amount=input.amount,
                reason=input.reason,
                idempotency_key=input.idempotency_key,
            )
            return SpendCreditsPayload(
                entry=CreditEntry.from_model(outcome.entry), balance=BigInt(outcome.balance)
            )

        return await run_mutation(info, SpendCreditsPayload, input, spend)

    @strawberry.mutation(description="Admin role only.")
    async def grant_credits(
        self, info: strawberry.Info, input: GrantCreditsInput
    ) -> GrantCreditsPayload:
        async def grant(caller: Caller) -> GrantCreditsPayload:
            entry = await credits.admin_grant(
                database=info.context.database,
                account_id=row_id_of(input.customer_id, "Customer", field="customerId"),
                actor=caller.audit_actor,
                amount=input.amount,
                reason=input.reason,
                idempotency_key=input.idempotency_key,
            )
            return GrantCreditsPayload(entry=CreditEntry.from_model(entry))

        return await run_mutation(info, GrantCreditsPayload, input, grant, admin=True)
