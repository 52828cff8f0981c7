"""GraphiQL is served with every asset from this server, and not at all in production."""

import base64
import hashlib
from html.parser import HTMLParser

import httpx

from gateway.graphiql import ASSET_PREFIX

HTML = {"Accept": "text/html"}
MIN_ASSET_BYTES = 500
EXPECTED_ASSETS = 7


class _AssetRefs(HTMLParser):
    """Collects the src/href of every tag, with the tag's integrity attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href"):
            if values.get(name):
                self.refs.append((tag, values[name] or "", values.get("integrity")))


def asset_refs(html: str) -> list[tuple[str, str, str | None]]:
    parser = _AssetRefs()
    parser.feed(html)
    return parser.refs


def sri_sha384(body: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode()


async def test_graphiql_page_loads_nothing_from_outside(dev_client: httpx.AsyncClient) -> None:
    page = await dev_client.get("/graphql", headers=HTML)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "GraphiQL" in page.text

    refs = asset_refs(page.text)
    remote = [url for _, url, _ in refs if url.lower().startswith(("http://", "https://", "//"))]
    assert remote == []
    local = [(tag, url, sri) for tag, url, sri in refs if url.startswith(f"{ASSET_PREFIX}/")]
    assert len(local) == EXPECTED_ASSETS
    assert {tag for tag, _, _ in local} == {"script", "link"}


async def test_every_local_asset_is_served(dev_client: httpx.AsyncClient) -> None:
    page = await dev_client.get("/graphql", headers=HTML)
    local = [ref for ref in asset_refs(page.text) if ref[1].startswith(f"{ASSET_PREFIX}/")]
    assert local

    for tag, url, integrity in local:
        response = await dev_client.get(url)
        assert response.status_code == 200, url
        assert len(response.content) > MIN_ASSET_BYTES, url
        content_type = response.headers["content-type"]
        expected = "javascript" if tag == "script" else "text/css"
        assert expected in content_type, (url, content_type)
        # The browser enforces the kept integrity= attribute, so the bytes must match it.
        if integrity:
            assert sri_sha384(response.content) == integrity, url


async def test_production_has_no_graphiql(production_client: httpx.AsyncClient) -> None:
    page = await production_client.get("/graphql", headers=HTML)
    assert page.status_code == 404
    assert "GraphiQL" not in page.text

    asset = await production_client.get(f"{ASSET_PREFIX}/graphiql.min.js")
    assert asset.status_code == 404
