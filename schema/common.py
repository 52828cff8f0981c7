"""Types shared by every part of the schema: Node, Money, pages and user errors."""

import functools
from typing import Generic, TypeVar

import strawberry

from schema.scalars import BigInt
from services import money
from services.errors import DomainError, ErrorCode

strawberry.enum(ErrorCode, name="UserErrorCode")


@strawberry.interface
class Node:
    id: strawberry.ID


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


NodeType = TypeVar("NodeType")


@strawberry.type
class Edge(Generic[NodeType]):
    cursor: str
    node: NodeType


@strawberry.type
class Connection(Generic[NodeType]):
    edges: list[Edge[NodeType]]
    page_info: PageInfo
    total_count: int


@strawberry.type
class Money:
    amount: BigInt = strawberry.field(
        description="Amount in the currency's minor unit as Stripe counts it (1250 = 12.50 USD)."
    )
    currency: str = strawberry.field(description="ISO 4217 code, upper case.")
    decimal: str = strawberry.field(
        description='Major units as a decimal string, e.g. "12.50"; "1250" for JPY.'
    )
    formatted: str = strawberry.field(description='Display string, e.g. "$12.50".')

    @classmethod
    def of(cls, amount: int, currency: str) -> "Money":
        return _money(amount, currency)


# Money is a value nobody changes: a page of invoices repeats a few amounts hundreds of
# times, so equal amounts share one object.
@functools.lru_cache(maxsize=8192)
def _money(amount: int, currency: str) -> Money:
    return Money(
        amount=BigInt(amount),
        currency=currency.upper(),
        decimal=money.decimal_string(amount, currency),
        formatted=money.formatted(amount, currency),
    )


@strawberry.type
class UserError:
    field: list[str] | None
    message: str
    code: ErrorCode

    @classmethod
    def from_domain(cls, error: DomainError) -> "UserError":
        return cls(field=error.field, message=error.message, code=error.code)
