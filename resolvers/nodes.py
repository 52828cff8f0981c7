"""`Query.node`: any object by its global id, visible only to whoever may see it."""

from collections.abc import Awaitable, Callable

import strawberry

from db.models import PriceKind
from schema.billing import Customer, PaymentMethod, Plan
from schema.common import Node
from schema.credits import CreditEntry
from schema.ids import from_global_id
from schema.webhooks import WebhookEvent
from services import accounts, catalog, credits, payment_methods
from services.errors import NotFound
from services.webhooks import inbox


async def _plan(info: strawberry.Info, row_id: int) -> Node | None:
    async with info.context.database.read_session() as session:
        row = await catalog.get_plan(session=session, plan_id=row_id)
    return Plan.from_model(row) if row is not None and row.kind is PriceKind.RECURRING else None


async def _customer(info: strawberry.Info, row_id: int) -> Node | None:
    if not await _may_see_account(info, row_id):
        return None
    async with info.context.database.read_session() as session:
        row = await accounts.get_account(session=session, account_id=row_id)
    return Customer.from_model(row) if row is not None else None


async def _payment_method(info: strawberry.Info, row_id: int) -> Node | None:
    async with info.context.database.read_session() as session:
        found = await payment_methods.get_with_owner(session=session, payment_method_id=row_id)
    if found is None or not await _may_see_account(info, found.owner.id):
        return None
    is_default = found.owner.default_payment_method_stripe_id == found.row.stripe_payment_method_id
    return PaymentMethod.from_model(found.row, is_default=is_default)


async def _credit_entry(info: strawberry.Info, row_id: int) -> Node | None:
    async with info.context.database.session() as session:
        found = await credits.get_entry(session=session, entry_id=row_id)
    if found is None or not await _may_see_account(info, found[1]):
        return None
    return CreditEntry.from_model(found[0])


async def _may_see_account(info: strawberry.Info, account_id: int) -> bool:
    principal = info.context.principal
    if principal is None:
        return False
    return principal.is_admin or (await info.context.account()).id == account_id


async def _webhook_event(info: strawberry.Info, row_id: int) -> Node | None:
    principal = info.context.principal
    if principal is None or not principal.is_admin:
        return None
    async with info.context.database.read_session() as session:
        try:
            row = await inbox.get_event(session=session, event_id=row_id)
        except NotFound:
            return None
    return WebhookEvent.from_model(row)


RESOLVERS: dict[str, Callable[[strawberry.Info, int], Awaitable[Node | None]]] = {
    "Plan": _plan,
    "Customer": _customer,
    "PaymentMethod": _payment_method,
    "CreditEntry": _credit_entry,
    "WebhookEvent": _webhook_event,
}


async def resolve_node(info: strawberry.Info, global_id: str) -> Node | None:
    type_name, row_id = from_global_id(global_id)
    resolver = RESOLVERS.get(type_name)
    return await resolver(info, row_id) if resolver is not None else None
