"""The webhook inbox as admins see it, and the replay mutation's input and payload."""

from datetime import datetime

import strawberry

from db import models
from schema import billing as _billing  # noqa: F401  (registers models.WebhookEventStatus)
from schema.common import Node, UserError
from schema.ids import to_global_id


@strawberry.type
class WebhookEvent(Node):
    stripe_event_id: str
    type: str
    status: models.WebhookEventStatus
    attempts: int
    last_error: str | None
    received_at: datetime
    processed_at: datetime | None

    @classmethod
    def from_model(cls, row: models.StripeEvent) -> "WebhookEvent":
        return cls(
            id=strawberry.ID(to_global_id("WebhookEvent", row.id)),
            stripe_event_id=row.stripe_event_id,
            type=row.type,
            status=row.status,
            attempts=row.attempts,
            last_error=row.last_error,
            received_at=row.received_at,
            processed_at=row.processed_at,
        )


@strawberry.input
class ReplayWebhookEventInput:
    event_id: strawberry.ID


@strawberry.type
class ReplayWebhookEventPayload:
    event: WebhookEvent | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)
