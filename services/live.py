"""Publishing billing updates: a `pg_notify` in the transaction that made the change.

PostgreSQL delivers a notification only when its transaction commits (and drops it on
rollback), so subscribers never hear of a change that did not happen, on this instance
or any other. The payload carries ids only; subscribers load fresh rows themselves."""

import json
from collections.abc import Sequence
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from db.database import driver_of

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


PUBLISH = f"SELECT pg_notify('{CHANNEL}', notice) FROM unnest($1::text[]) AS notice"


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
    driver = await driver_of(session)
    await driver.execute(PUBLISH, notices(kind, account_id=account_id, row_ids=row_ids))


def notices(
    kind: UpdateKind, *, account_id: int | None, row_ids: Sequence[int | None]
) -> list[str]:
    """The NOTIFY payloads announcing these rows, for statements that send them themselves."""
    return [
        json.dumps({"kind": kind.value, "account": account_id, "row": row_id}) for row_id in row_ids
    ]
