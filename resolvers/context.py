"""What every resolver gets: settings, database, loaders and the verified caller."""

from dataclasses import dataclass, field

from fastapi import Request
from strawberry.fastapi import BaseContext

from db.database import Database
from db.models import Account
from gateway.auth import AuthError, Principal, TokenVerifier, bearer_token
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
    _account: Account | None = None

    def __post_init__(self) -> None:
        super().__init__()

    async def account(self) -> Account:
        """The caller's billing account, created on first sight; call after authorization."""
        assert self.principal is not None, "account() needs an authenticated caller"
        if self._account is None:
            async with self.database.read_session() as session:
                self._account = await accounts.find_account(
                    session=session, user_id=self.principal.user_id
                )
        if self._account is None:
            async with self.database.session() as session:
                self._account = await accounts.ensure_account(
                    session=session,
                    user_id=self.principal.user_id,
                    email=self.principal.email,
                    name=self.principal.name,
                )
        return self._account


def context_getter(settings: Settings, verifier: TokenVerifier):
    """The per-request context; the database is the one the app's lifespan opened."""

    async def get_context(request: Request) -> RequestContext:
        principal, auth_error = None, None
        try:
            token = bearer_token(request.headers.get("authorization"))
            if token is not None:
                principal = verifier.verify(token)
        except AuthError as exc:
            auth_error = str(exc)
        return RequestContext(
            settings=settings,
            database=request.app.state.database,
            stripe=request.app.state.stripe,
            loaders=Loaders.create(request.app.state.database),
            principal=principal,
            auth_error=auth_error,
        )

    return get_context
