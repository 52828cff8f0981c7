"""Whether an account may use the product now, read from the mirror's subscriptions.

ACTIVE and TRIALING while Stripe says so; CANCELING from a cancel at the period end until
that end; GRACE_PERIOD while a past-due subscription is within BILLING_GRACE_DAYS of the
start of the period its renewal failed to pay (a subscription becomes past due only when a
renewal fails, and the renewal starts the new period); NONE otherwise."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.database import Database
from db.models import Subscription, SubscriptionStatus
from db.rows import rows_where
from services.subscriptions import ACTIVE_STATUSES


class AccessStatus(StrEnum):
    ACTIVE = "ACTIVE"
    TRIALING = "TRIALING"
    GRACE_PERIOD = "GRACE_PERIOD"
    CANCELING = "CANCELING"
    NONE = "NONE"


@dataclass(frozen=True)
class Access:
    status: AccessStatus
    # When access ends unless something changes: period end, trial end or grace end.
    until: datetime | None = None
    # The subscription that gives access (None with NONE).
    subscription: Subscription | None = None

    @property
    def has_access(self) -> bool:
        return self.status is not AccessStatus.NONE


NO_ACCESS = Access(AccessStatus.NONE)


async def access_for_account(
    *, session: AsyncSession, account_id: int, grace_days: int, now: datetime
) -> Access:
    """The access of the newest subscription that gives any at `now`, as the session's
    transaction sees the subscriptions (what it wrote included)."""
    # The table's columns, not the entity: plain rows read like it, without ORM objects.
    rows = await session.execute(
        select(*Subscription.__table__.columns)
        .where(Subscription.account_id == account_id, Subscription.status.in_(ACTIVE_STATUSES))
        .order_by(Subscription.stripe_created_at.desc(), Subscription.id.desc())
    )
    return _first_access(rows.all(), grace_days=grace_days, now=now)


async def current_access(
    database: Database, *, account_id: int, grace_days: int, now: datetime
) -> Access:
    """The same outside any transaction, as committed: one prepared statement on the driver."""
    rows = await rows_where(
        database,
        Subscription.__table__,
        "account_id = $1 AND status = ANY($2)",
        account_id,
        [status.value for status in ACTIVE_STATUSES],
        order_by="stripe_created_at DESC, id DESC",
    )
    return _first_access(rows, grace_days=grace_days, now=now)


def _first_access(rows: Iterable[Any], *, grace_days: int, now: datetime) -> Access:
    for row in rows:
        access = access_of(row, grace_days=grace_days, now=now)
        if access.has_access:
            return access
    return NO_ACCESS


def access_of(row: Any, *, grace_days: int, now: datetime) -> Access:
    """What one mirrored subscription (a model or a plain row of its table) gives at `now`."""
    if row.status is SubscriptionStatus.PAST_DUE:
        grace_end = row.current_period_start + timedelta(days=grace_days)
        if now < grace_end:
            return Access(AccessStatus.GRACE_PERIOD, grace_end, row)
        return NO_ACCESS
    if row.cancel_at_period_end:
        if now < row.current_period_end:
            return Access(AccessStatus.CANCELING, row.current_period_end, row)
        return NO_ACCESS
    if row.status is SubscriptionStatus.TRIALING:
        return Access(AccessStatus.TRIALING, row.trial_end or row.current_period_end, row)
    if row.status is SubscriptionStatus.ACTIVE:
        return Access(AccessStatus.ACTIVE, row.current_period_end, row)
    return NO_ACCESS
