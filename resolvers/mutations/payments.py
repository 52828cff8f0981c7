"""Payment method and payment mutations: thin: decode, authorize, call a service, map."""

import strawberry

from resolvers.mutations.common import Caller, run_mutation
from schema.payment_mutations import CreateSetupIntentPayload
from services import payment_methods


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
