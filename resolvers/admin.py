"""`Query.admin`: fields for the billing admin role only (guarded on Query.admin)."""

import strawberry

from resolvers.connections import connection_of, query_error
from schema.billing import Customer
from schema.common import Connection
from services import accounts
from services.errors import DomainError


@strawberry.type
class Admin:
    @strawberry.field
    async def customers(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        search: str | None = None,
    ) -> Connection[Customer]:
        try:
            async with info.context.database.session() as session:
                page = await accounts.search_accounts(
                    session=session, search=search, first=first, after=after
                )
        except DomainError as error:
            raise query_error(error) from error
        return connection_of(page, Customer.from_model)
