"""`Viewer.credits`: the caller's wallet, its balance and its ledger."""

import strawberry

from resolvers.connections import connection_of, query_error
from schema.common import Connection
from schema.credits import CreditEntry
from schema.scalars import BigInt
from services import credits
from services.errors import DomainError


@strawberry.type
class CreditAccount:
    balance: BigInt
    account_id: strawberry.Private[int]

    @strawberry.field
    async def entries(
        self, info: strawberry.Info, first: int | None = None, after: str | None = None
    ) -> Connection[CreditEntry]:
        try:
            page = await credits.list_entries(
                database=info.context.database, account_id=self.account_id, first=first, after=after
            )
        except DomainError as error:
            raise query_error(error) from error
        return connection_of(page, CreditEntry.from_model)
