"""`Query.admin`: fields for the billing admin role only (guarded on Query.admin)."""

from datetime import UTC, datetime

import strawberry

from db.models import DeliveryStatus, NotificationKind, WebhookEventStatus
from resolvers.connections import connection_of, query_error
from schema.billing import Customer
from schema.common import Connection
from schema.metrics import BillingMetrics
from schema.notifications import Notification, ProductWebhookDelivery, ProductWebhookEndpoint
from schema.webhooks import WebhookEvent
from services import accounts, metrics, notifications, product_webhooks
from services.errors import DomainError
from services.webhooks import inbox


@strawberry.type
class Admin:
    @strawberry.field
    async def customers(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        search: str | None = None,
    ) -> Connection[Customer]:
        try:
            page = await accounts.search_accounts(
                database=info.context.database, search=search, first=first, after=after
            )
        except DomainError as error:
            raise query_error(error) from error
        return connection_of(page, Customer.from_model)

    @strawberry.field
    async def metrics(self, info: strawberry.Info) -> BillingMetrics:
        async with info.context.database.read_session() as session:
            computed = await metrics.compute(session=session, now=datetime.now(UTC))
        return BillingMetrics.from_model(computed)

    @strawberry.field
    async def webhook_events(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        status: list[WebhookEventStatus] | None = None,
        type: str | None = None,
    ) -> Connection[WebhookEvent]:
        try:
            page = await inbox.list_events(
                database=info.context.database,
                statuses=status,
                event_type=type,
                first=first,
                after=after,
            )
        except DomainError as error:
            raise query_error(error) from error
        return connection_of(page, WebhookEvent.from_model)

    @strawberry.field
    async def notifications(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        status: list[DeliveryStatus] | None = None,
        kind: list[NotificationKind] | None = None,
    ) -> Connection[Notification]:
        try:
            page = await notifications.list_notifications(
                info.context.database,
                account_id=None,
                statuses=status,
                kinds=kind,
                first=first,
                after=after,
            )
        except DomainError as error:
            raise query_error(error) from error
        return connection_of(page, Notification.from_model)

    @strawberry.field
    async def product_webhook_endpoints(
        self, info: strawberry.Info
    ) -> list[ProductWebhookEndpoint]:
        async with info.context.database.read_session() as session:
            rows = await product_webhooks.list_endpoints(session)
        return [ProductWebhookEndpoint.from_model(row) for row in rows]

    @strawberry.field
    async def product_webhook_deliveries(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        status: list[DeliveryStatus] | None = None,
    ) -> Connection[ProductWebhookDelivery]:
        try:
            page = await product_webhooks.list_deliveries(
                info.context.database, statuses=status, first=first, after=after
            )
        except DomainError as error:
            raise query_error(error) from error
        return connection_of(page, ProductWebhookDelivery.from_model)
