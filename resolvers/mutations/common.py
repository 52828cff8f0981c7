"""What every mutation does first and last: refuse raw card data, authorize, and turn
expected failures into `userErrors` (auth failures stay top-level errors)."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import strawberry

from db.models import Account
from gateway.auth import Principal
from resolvers.permissions import require_admin, require_principal
from schema.common import UserError
from services.audit import Actor
from services.card_data import reject_card_data
from services.errors import DomainError, ErrorCode

Payload = TypeVar("Payload")


@dataclass(frozen=True)
class Caller:
    principal: Principal
    account: Account
    request_id: str

    @property
    def actor(self) -> str:
        role = "admin" if self.principal.is_admin else "user"
        return f"{role}:{self.principal.user_id}"

    @property
    def audit_actor(self) -> Actor:
        return Actor(self.actor, self.request_id)


async def run_mutation(
    info: strawberry.Info,
    payload: Callable[..., Payload],
    input: Any,
    action: Callable[[Caller], Awaitable[Payload]],
    *,
    admin: bool = False,
) -> Payload:
    """`action`'s payload, or `payload(user_errors=[…])` for an expected failure."""
    principal = require_admin(info) if admin else require_principal(info)
    try:
        reject_card_data(input)
        caller = Caller(principal, await info.context.account(), info.context.request_id)
        if caller.account.erased_at is not None and not admin:
            raise DomainError(
                ErrorCode.CUSTOMER_ERASED,
                "This customer's data was erased: it can no longer buy or change anything",
            )
        return await action(caller)
    except DomainError as error:
        return payload(user_errors=[UserError.from_domain(error)])
