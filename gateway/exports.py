"""`GET /exports/{token}`: the archive of exportMyData, to its owner only.

Bearer token as for /graphql (none or invalid: 401). The URL's token alone is not enough: a
leaked link is useless without the owner's sign-in. Anyone else, admins included (they have
the admin API, and an export is the customer's own copy), and any unknown or expired token
get 404, never 403: a token reveals nothing.
"""

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from gateway.auth import TokenVerifier, require_principal
from gateway.settings import Settings
from services import accounts, data_export
from services.audit import Actor
from services.observability import current_request_id

HEADERS = {
    "Content-Disposition": 'attachment; filename="billing-export.json"',
    "Cache-Control": "private, no-store",
}


def data_export_router(settings: Settings, verifier: TokenVerifier) -> APIRouter:
    router = APIRouter()

    @router.get("/exports/{token}")
    async def download_export(token: str, request: Request) -> JSONResponse:
        principal = require_principal(verifier, request.headers.get("authorization"))
        database = request.app.state.database
        account = await accounts.find_account(database, principal.user_id)
        archive = None
        if account is not None:  # never seen: owns no export
            role = "admin" if principal.is_admin else "user"
            actor = Actor(f"{role}:{principal.user_id}", current_request_id())
            async with database.session() as session:
                archive = await data_export.archive_for(
                    session, token=token, account_id=account.id, actor=actor
                )
        if archive is None:
            raise HTTPException(status_code=404, detail="Not Found")
        return JSONResponse(archive, headers=HEADERS)

    return router
