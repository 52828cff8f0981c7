"""The LiveUpdates root: subscriptions fed by the instance's live bus.

Each update arrives loaded once for all its subscribers; its GraphQL view and the loaders
its relation fields use are built once per update too (`LiveUpdate.view`), so a thousand
subscribers of one account cost one load, not a thousand."""

from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

import strawberry

from db.models import PaymentStatus
from db.models import PaymentTransaction as TransactionRow
from resolvers.connections import query_error
from resolvers.loaders import Loaders
from resolvers.permissions import require_admin, require_principal
from schema.billing import PaymentTransaction
from schema.ids import row_id_of
from schema.live import BillingUpdate
from schema.webhooks import WebhookEvent
from services import payments
from services.errors import DomainError, NotFound
from services.live_bus import LiveUpdate

if TYPE_CHECKING:
    from gateway.live_streams import StreamConnection
    from gateway.live_ws import LiveConnection

SETTLED_STATUSES = (PaymentStatus.SUCCEEDED, PaymentStatus.CANCELED)


def _connection(info: strawberry.Info) -> "LiveConnection | StreamConnection":
    """The socket's connection, or the shared stream's (gateway/live_streams.py)."""
    live = info.context.live
    assert live is not None, "the router serves subscriptions over websockets only"
    return live


def _shared(info: strawberry.Info, update: LiveUpdate) -> None:
    """Point the connection's loaders at the update's, built once for every subscriber."""
    database = info.context.database
    info.context.loaders = update.view(Loaders, lambda _: Loaders(database))


def settled(row: TransactionRow) -> bool:
    """Succeeded, canceled, or failed (Stripe asks for another payment method after a failure)."""
    failed = row.status is PaymentStatus.REQUIRES_PAYMENT_METHOD and row.failure_code is not None
    return row.status in SETTLED_STATUSES or failed


@strawberry.type
class LiveUpdates:
    @strawberry.subscription(
        description="Every change to the signed-in caller's billing, as it commits."
    )
    async def billing_updates(self, info: strawberry.Info) -> AsyncGenerator[BillingUpdate, None]:
        require_principal(info)
        account = await info.context.account()
        live = _connection(info)
        async with live.bus.subscription(
            account_id=account.id, on_overflow=live.close_lagging
        ) as updates:
            while True:
                update = await updates.next()
                _shared(info, update)
                yield update.view(BillingUpdate, BillingUpdate.from_update)

    @strawberry.subscription(
        description="The payment's current state at once, then each change until it settles."
    )
    async def payment_status(
        self, info: strawberry.Info, transaction_id: strawberry.ID
    ) -> AsyncGenerator[PaymentTransaction, None]:
        require_principal(info)
        account = await info.context.account()
        live = _connection(info)
        try:
            row_id = row_id_of(transaction_id, "PaymentTransaction", field="transactionId")
        except DomainError as error:
            raise query_error(error) from error
        # Subscribed before the first read, so no change between the two is missed.
        async with live.bus.subscription(
            account_id=account.id, on_overflow=live.close_lagging
        ) as updates:
            row = await _owned_transaction(info, account.id, row_id)
            yield PaymentTransaction.from_model(row)
            while not settled(row):
                update = await updates.next()
                if update.resync:
                    row = await _owned_transaction(info, account.id, row_id)
                elif update.transaction is not None and update.transaction.id == row_id:
                    row = update.transaction
                else:
                    continue
                _shared(info, update)
                yield PaymentTransaction.from_model(row)

    @strawberry.subscription(
        description="Admin role only: each webhook event as it is received and as it settles."
    )
    async def webhook_events(self, info: strawberry.Info) -> AsyncGenerator[WebhookEvent, None]:
        require_admin(info)
        live = _connection(info)
        async with live.bus.subscription(
            account_id=None, on_overflow=live.close_lagging
        ) as updates:
            while True:
                update = await updates.next()
                if update.webhook_event is not None:
                    yield update.view(WebhookEvent, _webhook_event)


async def _owned_transaction(info: strawberry.Info, account_id: int, row_id: int) -> TransactionRow:
    """The caller's own transaction; NOT_FOUND for anyone else's, so ids reveal nothing."""
    async with info.context.database.session() as session:
        row = await payments.get_owned(
            session=session, account_id=account_id, transaction_id=row_id
        )
    if row is None:
        raise query_error(NotFound("no such payment", ["transactionId"]))
    return row


def _webhook_event(update: LiveUpdate) -> WebhookEvent:
    assert update.webhook_event is not None
    return WebhookEvent.from_model(update.webhook_event)
