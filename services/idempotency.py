"""Caller idempotency keys: the first result is stored; a retry with the same input gets it
back without calling Stripe again; the same key with other input is refused."""

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import and_, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert

from db.database import Database
from db.models import IdempotencyKey
from services.errors import DomainError, ErrorCode

# A first request that has not finished in this long is taken to have died.
STALE_AFTER_SECONDS = 60
WAIT_STEPS = 50
# Failures worth retrying are not stored: the next attempt runs again.
TRANSIENT = {ErrorCode.STRIPE_UNAVAILABLE, ErrorCode.RATE_LIMITED}

Response = dict[str, Any]
# Stripe keys are built from the caller's key plus a short prefix and must stay within 255.
MAX_KEY_LENGTH = 200


def check_key(key: str, field: str = "idempotencyKey") -> str:
    """The caller's key, if it is usable: not blank and not too long."""
    if not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"An idempotency key is 1 to {MAX_KEY_LENGTH} characters",
            [field],
        )
    return key


def request_hash(operation: str, request: dict[str, Any]) -> str:
    canonical = json.dumps([operation, request], sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def run_once(
    *,
    database: Database,
    account_id: int,
    key: str,
    operation: str,
    request: dict[str, Any],
    run: Callable[[], Awaitable[Response]],
) -> Response:
    """`run()`'s response, computed once per (caller, key); DomainErrors replay as raised."""
    digest = request_hash(operation, request)
    stored = await _claim(database, account_id, key, operation, digest)
    if stored is not None:
        return _replayed(stored)
    try:
        response = await run()
    except DomainError as error:
        if error.code in TRANSIENT:
            await _release(database, account_id, key)
        else:
            await _store(database, account_id, key, {"error": _error_dict(error)})
        raise
    except BaseException:
        await _release(database, account_id, key)
        raise
    await _store(database, account_id, key, {"ok": response})
    return response


async def _claim(
    database: Database, account_id: int, key: str, operation: str, digest: str
) -> Response | None:
    """None when this request owns the key now; else the first request's stored outcome."""
    for _ in range(WAIT_STEPS):
        async with database.session() as session, session.begin():
            claimed = await session.scalar(
                insert(IdempotencyKey)
                .values(account_id=account_id, key=key, operation=operation, request_hash=digest)
                .on_conflict_do_nothing(index_elements=["account_id", "key"])
                .returning(IdempotencyKey.id)
            )
            if claimed is not None or await _take_over_stale(session, account_id, key, digest):
                return None
            row = await session.scalar(
                select(IdempotencyKey).where(
                    IdempotencyKey.account_id == account_id, IdempotencyKey.key == key
                )
            )
        if row is None:
            continue  # released between our insert and select: try to claim again
        if row.request_hash != digest:
            raise DomainError(
                ErrorCode.IDEMPOTENCY_KEY_REUSED,
                "This idempotency key was used with different input",
                ["idempotencyKey"],
            )
        if row.response is not None:
            return row.response
        await asyncio.sleep(0.1)  # the first request with this key is still running
    raise DomainError(
        ErrorCode.INVALID_STATE, "A request with this idempotency key is still in progress"
    )


async def _take_over_stale(session, account_id: int, key: str, digest: str) -> bool:
    taken = await session.scalar(
        update(IdempotencyKey)
        .where(
            and_(
                IdempotencyKey.account_id == account_id,
                IdempotencyKey.key == key,
                IdempotencyKey.request_hash == digest,
                IdempotencyKey.response.is_(None),
                IdempotencyKey.created_at
                < func.now() - text(f"interval '{STALE_AFTER_SECONDS} seconds'"),
            )
        )
        .values(created_at=func.now())
        .returning(IdempotencyKey.id)
    )
    return taken is not None


async def _store(database: Database, account_id: int, key: str, outcome: Response) -> None:
    async with database.session() as session, session.begin():
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.account_id == account_id, IdempotencyKey.key == key)
            .values(response=outcome, completed_at=func.now())
        )


async def _release(database: Database, account_id: int, key: str) -> None:
    async with database.session() as session, session.begin():
        await session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.account_id == account_id, IdempotencyKey.key == key
            )
        )


def _error_dict(error: DomainError) -> Response:
    return {"code": error.code.value, "message": error.message, "field": error.field}


def _replayed(stored: Response) -> Response:
    if "error" in stored:
        error = stored["error"]
        raise DomainError(ErrorCode(error["code"]), error["message"], error["field"])
    return stored["ok"]
