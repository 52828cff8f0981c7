"""The reference billing app (web/, built into static/app) at /app, and outside production
its sign-in: `POST /app/dev-token` mints a development token for a typed user name."""

import re
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field
from starlette.staticfiles import StaticFiles

from gateway.auth import AuthError, mint_token
from gateway.settings import Settings

APP_PREFIX = "/app"
BUILD_DIR = Path(__file__).parent / "static" / "app"
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
DEV_TOKEN_TTL_SECONDS = 8 * 3600


class DevTokenRequest(BaseModel):
    user: str = Field(max_length=64)
    admin: bool = False


def mount_web_app(app: FastAPI, settings: Settings) -> None:
    if not settings.is_production:
        _add_dev_token_route(app, settings)

    @app.get(APP_PREFIX, include_in_schema=False)
    async def app_root() -> RedirectResponse:
        return RedirectResponse(f"{APP_PREFIX}/", status_code=308)

    # check_dir=False: a checkout without a build still serves the API (the app answers 404).
    app.mount(APP_PREFIX, StaticFiles(directory=BUILD_DIR, html=True, check_dir=False), "app")


def _add_dev_token_route(app: FastAPI, settings: Settings) -> None:
    @app.post(f"{APP_PREFIX}/dev-token", include_in_schema=False)
    async def dev_token(request: DevTokenRequest) -> dict[str, str]:
        if not USER_NAME.fullmatch(request.user):
            raise HTTPException(
                status_code=422,
                detail="a user name is 1-64 letters, digits and . _ @ -, starting alphanumeric",
            )
        try:
            token = mint_token(
                settings,
                user_id=request.user,
                admin=request.admin,
                ttl_seconds=DEV_TOKEN_TTL_SECONDS,
            )
        except AuthError as error:  # RS256: tokens come from the product's provider
            raise HTTPException(status_code=409, detail=str(error)) from error
        return {"token": token}
