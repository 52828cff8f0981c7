"""The Query root."""

import strawberry

from resolvers.admin import Admin
from resolvers.connections import query_error
from resolvers.nodes import resolve_node
from resolvers.permissions import IsAdmin, IsAuthenticated
from resolvers.viewer import Viewer
from schema.billing import BillingConfig, Plan
from schema.common import Node
from services import catalog
from services.errors import DomainError


@strawberry.type
class Query:
    @strawberry.field
    async def node(self, info: strawberry.Info, id: strawberry.ID) -> Node | None:
        try:
            return await resolve_node(info, id)
        except DomainError as error:
            raise query_error(error) from error

    @strawberry.field(description="Public: the Stripe publishable key for Stripe.js.")
    def billing_config(self, info: strawberry.Info) -> BillingConfig:
        settings = info.context.settings
        return BillingConfig(
            publishable_key=settings.publishable_key,
            sandbox=settings.uses_sandbox,
            stripe_js_url=info.context.stripe.stripe_js_url,
        )

    @strawberry.field(description="Public: the plans for sale.")
    async def plans(self, info: strawberry.Info) -> list[Plan]:
        async with info.context.database.read_session() as session:
            rows = await catalog.list_plans(session=session)
        return [Plan.from_model(row) for row in rows]

    @strawberry.field(
        description="The signed-in caller's billing; UNAUTHENTICATED without a token.",
        permission_classes=[IsAuthenticated],
    )
    async def viewer(self, info: strawberry.Info) -> Viewer:
        account = await info.context.account()
        return Viewer(user_id=account.user_id, account=account)

    @strawberry.field(
        description="Admin role only; FORBIDDEN otherwise.", permission_classes=[IsAdmin]
    )
    def admin(self) -> Admin:
        return Admin()
