"""Admin mutations on the webhook inbox."""

import strawberry

from resolvers.mutations.common import Caller, run_mutation
from schema.ids import row_id_of
from schema.webhooks import ReplayWebhookEventInput, ReplayWebhookEventPayload, WebhookEvent
from services.errors import about_field
from services.webhooks import inbox


@strawberry.type
class WebhookMutations:
    @strawberry.mutation(description="Admin role only.")
    async def replay_webhook_event(
        self, info: strawberry.Info, input: ReplayWebhookEventInput
    ) -> ReplayWebhookEventPayload:
        async def replay(caller: Caller) -> ReplayWebhookEventPayload:
            row_id = row_id_of(input.event_id, "WebhookEvent", field="eventId")
            with about_field("eventId"):
                async with info.context.database.session() as session:
                    row = await inbox.replay_event(session=session, event_id=row_id)
            return ReplayWebhookEventPayload(event=WebhookEvent.from_model(row))

        return await run_mutation(info, ReplayWebhookEventPayload, input, replay, admin=True)
