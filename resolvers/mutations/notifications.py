"""Mail preferences (the customer's own) and, for admins, the product's webhook endpoints and
the replay of parked mails and deliveries."""

import strawberry

from resolvers.mutations.common import Caller, run_mutation
from schema.ids import row_id_of
from schema.notifications import (
    CreateProductWebhookEndpointInput,
    CreateProductWebhookEndpointPayload,
    DeleteProductWebhookEndpointInput,
    DeleteProductWebhookEndpointPayload,
    Notification,
    NotificationPreferences,
    ProductWebhookDelivery,
    ProductWebhookEndpoint,
    RetryNotificationInput,
    RetryNotificationPayload,
    RetryProductWebhookDeliveryInput,
    RetryProductWebhookDeliveryPayload,
    RotateProductWebhookSecretInput,
    RotateProductWebhookSecretPayload,
    UpdateNotificationPreferencesInput,
    UpdateNotificationPreferencesPayload,
)
from services import notifications, product_webhooks
from services.errors import about_field


@strawberry.type
class NotificationMutations:
    @strawberry.mutation
    async def update_notification_preferences(
        self, info: strawberry.Info, input: UpdateNotificationPreferencesInput
    ) -> UpdateNotificationPreferencesPayload:
        async def update(caller: Caller) -> UpdateNotificationPreferencesPayload:
            async with info.context.database.session() as session, session.begin():
                preferences = await notifications.update_preferences(
                    session,
                    account_id=caller.account.id,
                    receipts=input.receipts,
                    payment_problems=input.payment_problems,
                    trial_reminders=input.trial_reminders,
                )
            return UpdateNotificationPreferencesPayload(
                preferences=NotificationPreferences.of(preferences)
            )

        return await run_mutation(info, UpdateNotificationPreferencesPayload, input, update)

    @strawberry.mutation(description="Admin role only.")
    async def create_product_webhook_endpoint(
        self, info: strawberry.Info, input: CreateProductWebhookEndpointInput
    ) -> CreateProductWebhookEndpointPayload:
        async def create(caller: Caller) -> CreateProductWebhookEndpointPayload:
            async with info.context.database.session() as session:
                row, secret = await product_webhooks.create_endpoint(
                    session,
                    url=input.url,
                    event_types=input.event_types,
                    settings=info.context.settings,
                )
            endpoint = ProductWebhookEndpoint.from_model(row)
            return CreateProductWebhookEndpointPayload(endpoint=endpoint, secret=secret)

        return await run_mutation(
            info, CreateProductWebhookEndpointPayload, input, create, admin=True
        )

    @strawberry.mutation(description="Admin role only.")
    async def delete_product_webhook_endpoint(
        self, info: strawberry.Info, input: DeleteProductWebhookEndpointInput
    ) -> DeleteProductWebhookEndpointPayload:
        async def delete(caller: Caller) -> DeleteProductWebhookEndpointPayload:
            row_id = row_id_of(input.endpoint_id, "ProductWebhookEndpoint", field="endpointId")
            with about_field("endpointId"):
                async with info.context.database.session() as session:
                    await product_webhooks.delete_endpoint(session, endpoint_id=row_id)
            return DeleteProductWebhookEndpointPayload(deleted_endpoint_id=input.endpoint_id)

        return await run_mutation(
            info, DeleteProductWebhookEndpointPayload, input, delete, admin=True
        )

    @strawberry.mutation(description="Admin role only.")
    async def rotate_product_webhook_secret(
        self, info: strawberry.Info, input: RotateProductWebhookSecretInput
    ) -> RotateProductWebhookSecretPayload:
        async def rotate(caller: Caller) -> RotateProductWebhookSecretPayload:
            row_id = row_id_of(input.endpoint_id, "ProductWebhookEndpoint", field="endpointId")
            with about_field("endpointId"):
                async with info.context.database.session() as session:
                    row, secret = await product_webhooks.rotate_secret(session, endpoint_id=row_id)
            endpoint = ProductWebhookEndpoint.from_model(row)
            return RotateProductWebhookSecretPayload(endpoint=endpoint, secret=secret)

        return await run_mutation(
            info, RotateProductWebhookSecretPayload, input, rotate, admin=True
        )

    @strawberry.mutation(description="Admin role only.")
    async def retry_product_webhook_delivery(
        self, info: strawberry.Info, input: RetryProductWebhookDeliveryInput
    ) -> RetryProductWebhookDeliveryPayload:
        async def retry(caller: Caller) -> RetryProductWebhookDeliveryPayload:
            row_id = row_id_of(input.delivery_id, "ProductWebhookDelivery", field="deliveryId")
            with about_field("deliveryId"):
                async with info.context.database.session() as session:
                    row = await product_webhooks.retry_delivery(session, delivery_id=row_id)
            return RetryProductWebhookDeliveryPayload(
                delivery=ProductWebhookDelivery.from_model(row)
            )

        return await run_mutation(
            info, RetryProductWebhookDeliveryPayload, input, retry, admin=True
        )

    @strawberry.mutation(
        description="Admin role only: send a parked (FAILED or SKIPPED) mail again."
    )
    async def retry_notification(
        self, info: strawberry.Info, input: RetryNotificationInput
    ) -> RetryNotificationPayload:
        async def retry(caller: Caller) -> RetryNotificationPayload:
            row_id = row_id_of(input.notification_id, "Notification", field="notificationId")
            with about_field("notificationId"):
                async with info.context.database.session() as session, session.begin():
                    row = await notifications.retry_notification(session, notification_id=row_id)
            return RetryNotificationPayload(notification=Notification.from_model(row))

        return await run_mutation(info, RetryNotificationPayload, input, retry, admin=True)
