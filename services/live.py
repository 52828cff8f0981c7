"""Publishing billing updates: a `pg_notify` in the transaction that made the change.

PostgreSQL delivers a notification only when its transaction commits (and drops it on
rollback), so subscribers never hear of a change that did not happen, on this instance
or any other. The payload carries ids only; subscribers load fresh rows themselves."""

import json
from collections.abc import Sequence
from enum import StrEnum

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

CHANNEL = "billing_updates"


class UpdateKind(StrEnum):
    """What changed; the names of the contract's BillingUpdateKind, plus webhook events."""

    SUBSCRIPTION_UPDATED = "SUBSCRIPTION_UPDATED"
    INVOICE_UPDATED = "INVOICE_UPDATED"
    PAYMENT_UPDATED = "PAYMENT_UPDATED"
    PAYMENT_METHOD_UPDATED = "PAYMENT_METHOD_UPDATED"
    CREDITS_UPDATED = "CREDITS_UPDATED"
    ACCESS_UPDATED = "ACCESS_UPDATED"
    # Admin only: an inbox event was received or settled (row id of webhook_events).
    WEBHOOK_EVENT = "WEBHOOK_EVENT"


PUBLISH = text(
    "SELECT pg_notify(:channel, payload) FROM unnest(CAST(:payloads AS text[])) AS payload"
)


async def publish(
    session: AsyncSession, kind: UpdateKind, *, account_id: int | None, row_id: int | None
) -> None:
    """Announce, once `session`'s transaction commits, that `row_id` of `kind` changed.

    `account_id` is the owner (None for admin-only updates); `row_id` is our primary key
    of the changed row (the subscription, invoice, transaction, payment method, credit
    entry or webhook event), None when the whole account should resync."""
    await publish_each(session, kind, account_id=account_id, row_ids=[row_id])


async def publish_each(
    session: AsyncSession,
    kind: UpdateKind,
    *,
    account_id: int | None,
    row_ids: Sequence[int | None],
) -> None:
    """`publish` for several rows of one kind and owner, in one statement."""
    payloads = [
        json.dumps({"kind": kind.value, "account": account_id, "row": row_id}) for row_id in row_ids
    ]
    await session.execute(PUBLISH, {"channel": CHANNEL, "payloads": payloads})
