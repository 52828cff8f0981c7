"""What every resolver gets: settings, database, loaders and the verified caller."""

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import HTTPConnection
from strawberry.fastapi import BaseContext

from db.database import Database
from db.models import Account
from gateway.auth import Principal, TokenVerifier, authenticate
from gateway.settings import Settings
from resolvers.loaders import Loaders
from services import accounts
from services.observability import current_request_id
from services.stripe.client import StripeApi


@dataclass
class RequestContext(BaseContext):
    settings: Settings
    database: Database
    stripe: StripeApi
    loaders: Loaders
    principal: Principal | None
    auth_error: str | None
    # The HTTP request's id (gateway/observability.py), so errors and logs name the same one.
    request_id: str = field(default_factory=current_request_id)
    # A websocket's connection once `connection_init` authenticated it (gateway/live_ws.py).
    live: Any = None
    # The operation's cost as schema/limits.py measured it (a cached answer keeps it).
    operation_cost: int | None = None
    # The model once created here, else a plain row of its table read the same way.
    _account: Account | None = None

    def __post_init__(self) -> None:
        super().__init__()

    async def account(self) -> Account:
        """The caller's billing account, created on first sight; call after authorization."""
        assert self.principal is not None, "account() needs an authenticated caller"
        if self._account is None:
            account = await accounts.find_account(self.database, self.principal.user_id)
            if account is None:
                async with self.database.session() as session:
                    account = await accounts.ensure_account(
                        session=session,
                        user_id=self.principal.user_id,
                        email=self.principal.email,
                        name=self.principal.name,
                    )
            # Payments ask whether their card is the account's default: it is at hand.
            self.loaders.account_by_id.prime(account.id, account)
            self._account = account
        return self._account


def context_getter(settings: Settings, verifier: TokenVerifier):
    """The per-request (or per-websocket) context; the database is the lifespan's."""

    async def get_context(connection: HTTPConnection) -> RequestContext:
        principal, auth_error = None, None
        # A websocket authenticates with its `connection_init` payload instead.
        if connection.scope["type"] == "http":
            principal, auth_error = authenticate(verifier, connection.headers.get("authorization"))
        return RequestContext(
            settings=settings,
            database=connection.app.state.database,
            stripe=connection.app.state.stripe,
            loaders=Loaders(connection.app.state.database),
            principal=principal,
            auth_error=auth_error,
        )

    return get_context
