"""GraphiQL served entirely from this process: Strawberry's page, our copies of its assets."""

import re
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from strawberry.fastapi import GraphQLRouter

ASSET_PREFIX = "/graphiql-assets"
STATIC_DIR = Path(__file__).parent / "static" / "graphiql"

# Pinned to the URLs in Strawberry's own template; the files are byte-identical
# (same sha384), so the template's integrity= attributes stay valid and are kept.
UNPKG_ASSETS = {
    "https://unpkg.com/react@18.2.0/umd/react.production.min.js": "react.production.min.js",
    "https://unpkg.com/react-dom@18.2.0/umd/react-dom.production.min.js": (
        "react-dom.production.min.js"
    ),
    "https://unpkg.com/js-cookie@3.0.5/dist/js.cookie.min.js": "js.cookie.min.js",
    "https://unpkg.com/graphiql@3.8.3/graphiql.min.css": "graphiql.min.css",
    "https://unpkg.com/graphiql@3.8.3/graphiql.min.js": "graphiql.min.js",
    "https://unpkg.com/@graphiql/plugin-explorer@1.0.2/dist/style.css": (
        "graphiql-plugin-explorer.css"
    ),
    "https://unpkg.com/@graphiql/plugin-explorer@1.0.2/dist/index.umd.js": (
        "graphiql-plugin-explorer.umd.js"
    ),
}

_REMOTE_ASSET = re.compile(r"""(?:src|href)\s*=\s*["'](https?://[^"']+)""", re.IGNORECASE)


def localize_graphiql_html(html: str) -> str:
    """Strawberry's GraphiQL page with every unpkg asset pointed at our own copy."""
    for remote, filename in UNPKG_ASSETS.items():
        html = html.replace(remote, f"{ASSET_PREFIX}/{filename}")
    # A Strawberry upgrade that bumps an asset version must fail loudly, not go online.
    leftover = _REMOTE_ASSET.findall(html)
    if leftover:
        raise RuntimeError(f"GraphiQL page still loads remote assets: {leftover}")
    return html


class GatewayGraphQLRouter(GraphQLRouter):
    """GraphQLRouter whose GraphiQL page loads nothing from outside this server."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Apollo Sandbox and Pathfinder are hosted elsewhere; only GraphiQL can be local.
        if self.graphql_ide not in (None, "graphiql"):
            raise ValueError(f"graphql_ide={self.graphql_ide!r} would load assets from a CDN")
        # Strawberry's own rendering, so anything it puts in the page is preserved.
        html = localize_graphiql_html(self.graphql_ide_html) if self.graphql_ide else ""
        self._local_ide_html = html

    def encode_json(self, data: object) -> bytes:
        """Responses of hundreds of fields: orjson encodes them several times faster."""
        return orjson.dumps(data)

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        """The GraphiQL page with local asset URLs."""
        return HTMLResponse(self._local_ide_html)


def mount_graphiql_assets(app: FastAPI) -> None:
    """Serve the vendored GraphiQL files at ASSET_PREFIX."""
    app.mount(ASSET_PREFIX, StaticFiles(directory=STATIC_DIR), name="graphiql-assets")
