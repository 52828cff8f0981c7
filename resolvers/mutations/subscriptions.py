"""Subscription mutations: thin: decode, authorize, call a service, map."""

import strawberry

from resolvers.mutations.common import Caller, run_mutation
from schema.billing import Subscription
from schema.ids import row_id_of
from schema.subscription_mutations import CancelSubscriptionInput, CancelSubscriptionPayload
from services import subscriptions


@strawberry.type
class SubscriptionMutations:
    @strawberry.mutation
    async def cancel_subscription(
        self, info: strawberry.Info, input: CancelSubscriptionInput
    ) -> CancelSubscriptionPayload:
        async def cancel(caller: Caller) -> CancelSubscriptionPayload:
            subscription_id = row_id_of(
                input.subscription_id, "Subscription", field="subscriptionId"
            )
            async with info.context.database.session() as session:
                row = await subscriptions.cancel(
                    session=session,
                    stripe=info.context.stripe,
                    account_id=caller.account.id,
                    subscription_id=subscription_id,
                    at_period_end=input.at_period_end is not False,
                )
            return CancelSubscriptionPayload(subscription=Subscription.from_model(row))

        return await run_mutation(info, CancelSubscriptionPayload, input, cancel)
