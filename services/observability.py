"""What the process counts for Prometheus, and the id of the request being served.

The metric objects live here so that every layer records into the same ones:
`gateway/observability.py` serves them at /metrics, `schema/extensions.py` counts GraphQL
operations, `services/stripe/client.py` times Stripe calls, and whoever serves websockets
moves `WEBSOCKET_CONNECTIONS` up and down (`.inc()` on connect, `.dec()` on close).
"""

import uuid
from contextvars import ContextVar
from datetime import datetime
from typing import NamedTuple

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import (
    EVENTS_MARK,
    Notification,
    ProductWebhookDelivery,
    ReconciliationMark,
    StripeEvent,
    WebhookEventStatus,
)

# Set per HTTP request by gateway/observability.py; read by logs, errors and the context.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)


def current_request_id() -> str:
    """The id of the request being served (a fresh one outside any request)."""
    return REQUEST_ID.get() or uuid.uuid4().hex


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

GRAPHQL_OPERATIONS = Counter(
    "billing_graphql_operations", "GraphQL operations served", ["operation", "type"]
)
GRAPHQL_ERRORS = Counter(
    "billing_graphql_errors", "Top-level GraphQL errors, by extensions.code", ["operation", "code"]
)
GRAPHQL_DURATION = Histogram(
    "billing_graphql_operation_duration_seconds",
    "Time from parsing to the result, by operation",
    ["operation"],
    buckets=LATENCY_BUCKETS,
)
STRIPE_CALLS = Counter(
    "billing_stripe_calls", "Calls to Stripe, by operation and outcome", ["operation", "outcome"]
)
STRIPE_DURATION = Histogram(
    "billing_stripe_call_duration_seconds",
    "Latency of Stripe calls (with the SDK's retries), by operation",
    ["operation"],
    buckets=LATENCY_BUCKETS,
)
RECONCILE_RUNS = Counter(
    "billing_reconcile_runs",
    "Reconciliation passes over Stripe's event list, by outcome (ok, busy: another process "
    "held the lock, failed)",
    ["outcome"],
)
RECONCILE_EVENTS_FOUND = Counter(
    "billing_reconcile_events_found", "Events Stripe had that the inbox lacked, stored by a pass"
)
RECONCILE_REREADS = Counter(
    "billing_reconcile_rereads",
    "Subscriptions re-read by a pass because their mirror showed a due time long past",
)
SUBSCRIPTION_CREATIONS = Counter(
    "billing_subscription_creations",
    "createSubscription attempts, by outcome: created, requires_action (3-D Secure), the "
    "user error's code in lower case (card_declined, ...), or error (unexpected)",
    ["outcome"],
)
NOTIFICATIONS_SENT = Counter(
    "billing_notifications_sent",
    "Mail attempts, by kind and outcome (sent, retry, failed: parked after its last attempt)",
    ["kind", "outcome"],
)
NOTIFICATION_SEND_DURATION = Histogram(
    "billing_notification_send_duration_seconds",
    "Time to render and hand a mail to the SMTP server, by kind",
    ["kind"],
    buckets=LATENCY_BUCKETS,
)
PRODUCT_WEBHOOK_DELIVERIES = Counter(
    "billing_product_webhook_deliveries",
    "Delivery attempts to the product's endpoints, by endpoint id and outcome (sent, retry, "
    "failed: given up, gone: the endpoint answered 410)",
    ["endpoint", "outcome"],
)
PRODUCT_WEBHOOK_DURATION = Histogram(
    "billing_product_webhook_delivery_duration_seconds",
    "Latency of one delivery attempt, by endpoint id",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
)
WEBSOCKET_CONNECTIONS = Gauge("billing_websocket_connections", "Open websocket connections")


class InboxCount(NamedTuple):
    type: str
    status: WebhookEventStatus
    events: int
    oldest_pending_at: datetime | None


async def webhook_inbox_counts(*, session: AsyncSession) -> list[InboxCount]:
    """Stored webhook events by type and status, with the oldest pending one's arrival."""
    oldest_pending = func.min(StripeEvent.received_at).filter(
        StripeEvent.status == WebhookEventStatus.PENDING
    )
    query = (
        select(StripeEvent.type, StripeEvent.status, func.count(), oldest_pending)
        .group_by(StripeEvent.type, StripeEvent.status)
        .order_by(StripeEvent.type, StripeEvent.status)
    )
    return [InboxCount(*row) for row in await session.execute(query)]


async def reconciliation_mark(*, session: AsyncSession) -> datetime | None:
    """How far Stripe's event list has been read into the inbox (None before any pass)."""
    return await session.scalar(
        select(ReconciliationMark.listed_through).where(ReconciliationMark.name == EVENTS_MARK)
    )


class OutboxCount(NamedTuple):
    outbox: str  # "mail" (by kind) or "webhook" (by endpoint id)
    key: str
    status: str
    count: int


async def outbox_counts(*, session: AsyncSession) -> list[OutboxCount]:
    """Mails by kind and status, and deliveries to the product's endpoints by endpoint and
    status: the outbox's depth is their pending count."""
    mails = select(Notification.kind, Notification.status, func.count()).group_by(
        Notification.kind, Notification.status
    )
    deliveries = select(
        ProductWebhookDelivery.endpoint_id, ProductWebhookDelivery.status, func.count()
    ).group_by(ProductWebhookDelivery.endpoint_id, ProductWebhookDelivery.status)
    counts = [
        OutboxCount("mail", kind.value, status.value, count)
        for kind, status, count in await session.execute(mails)
    ]
    counts += [
        OutboxCount("webhook", str(endpoint), status.value, count)
        for endpoint, status, count in await session.execute(deliveries)
    ]
    return counts
