"""Mails to customers and the product's webhook endpoints and deliveries, with the inputs
and payloads of their mutations."""

from datetime import datetime
from typing import Any

import strawberry

from db import models
from schema.common import Node, UserError
from schema.ids import to_global_id
from services import notifications

strawberry.enum(models.NotificationKind)
strawberry.enum(models.DeliveryStatus)


@strawberry.type
class Notification(Node):
    kind: models.NotificationKind
    status: models.DeliveryStatus
    recipient: str = strawberry.field(description="The address it was (or will be) sent to.")
    subject: str
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    row: strawberry.Private[models.Notification]

    @strawberry.field(
        description="The mail's plain-text body as it is (or was) sent: the outbox is readable "
        "where no SMTP_URL sends it."
    )
    def text(self, info: strawberry.Info) -> str:
        return notifications.render(self.row, info.context.settings).text

    @classmethod
    def from_model(cls, row: models.Notification) -> "Notification":
        return cls(
            row=row,
            id=strawberry.ID(to_global_id("Notification", row.id)),
            kind=row.kind,
            status=row.status,
            recipient=row.recipient,
            subject=row.subject,
            attempts=row.attempts,
            last_error=row.last_error,
            created_at=row.created_at,
            sent_at=row.sent_at,
        )


@strawberry.type
class NotificationPreferences:
    receipts: bool
    payment_problems: bool
    trial_reminders: bool

    @classmethod
    def of(cls, preferences: Any) -> "NotificationPreferences":
        return cls(
            receipts=preferences.receipts,
            payment_problems=preferences.payment_problems,
            trial_reminders=preferences.trial_reminders,
        )


@strawberry.type
class ProductWebhookEndpoint(Node):
    url: str
    event_types: list[str] = strawberry.field(
        description="Event types it receives, e.g. access.updated; empty for all."
    )
    enabled: bool
    created_at: datetime

    @classmethod
    def from_model(cls, row: models.ProductWebhookEndpoint) -> "ProductWebhookEndpoint":
        return cls(
            id=strawberry.ID(to_global_id("ProductWebhookEndpoint", row.id)),
            url=row.url,
            event_types=list(row.event_types),
            enabled=row.enabled,
            created_at=row.created_at,
        )


@strawberry.type
class ProductWebhookDelivery(Node):
    message_id: str = strawberry.field(
        description="The webhook-id header: the same on every retry of one event."
    )
    event_type: str
    status: models.DeliveryStatus
    attempts: int
    response_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def from_model(cls, row: Any) -> "ProductWebhookDelivery":
        """A delivery row with its event's `message_id` and `event_type`."""
        return cls(
            id=strawberry.ID(to_global_id("ProductWebhookDelivery", row.id)),
            message_id=row.message_id,
            event_type=row.event_type,
            status=row.status,
            attempts=row.attempts,
            response_status=row.response_status,
            last_error=row.last_error,
            created_at=row.created_at,
            delivered_at=row.delivered_at,
        )


@strawberry.input
class UpdateNotificationPreferencesInput:
    receipts: bool | None = None
    payment_problems: bool | None = None
    trial_reminders: bool | None = None


@strawberry.type
class UpdateNotificationPreferencesPayload:
    preferences: NotificationPreferences | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class CreateProductWebhookEndpointInput:
    url: str
    event_types: list[str] | None = None


@strawberry.type
class CreateProductWebhookEndpointPayload:
    endpoint: ProductWebhookEndpoint | None = None
    secret: str | None = strawberry.field(
        default=None,
        description="The signing secret (whsec_… in the Standard Webhooks format), shown only here.",
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class DeleteProductWebhookEndpointInput:
    endpoint_id: strawberry.ID


@strawberry.type
class DeleteProductWebhookEndpointPayload:
    deleted_endpoint_id: strawberry.ID | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class RotateProductWebhookSecretInput:
    endpoint_id: strawberry.ID


@strawberry.type
class RotateProductWebhookSecretPayload:
    endpoint: ProductWebhookEndpoint | None = None
    secret: str | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class RetryProductWebhookDeliveryInput:
    delivery_id: strawberry.ID


@strawberry.type
class RetryProductWebhookDeliveryPayload:
    delivery: ProductWebhookDelivery | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class RetryNotificationInput:
    notification_id: strawberry.ID


@strawberry.type
class RetryNotificationPayload:
    notification: Notification | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)
