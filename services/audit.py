"""The audit trail: who did what to money, written in the same transaction as the change."""

from typing import Any, NamedTuple

from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AuditLogEntry


class Actor(NamedTuple):
    """Who asked for a change to money ("user:<id>", "admin:<id>") and in which request."""

    name: str
    request_id: str | None = None


def record(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    account_id: int | None,
    stripe_ref: str | None = None,
    amount: int | None = None,
    currency: str | None = None,
    details: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> None:
    session.add(
        AuditLogEntry(
            actor=actor,
            action=action,
            account_id=account_id,
            stripe_ref=stripe_ref,
            amount=amount,
            currency=currency,
            details=details or {},
            request_id=request_id,
        )
    )
