"""A product's page on another origin, in Debian's Chromium, calling `billing-gateway serve`
(started with CORS_ALLOWED_ORIGINS naming that origin): it queries with its bearer token and
subscribes over a websocket; a page on an origin not named is refused both. Plain HTTP and
websocket checks of the same rules, and of clients that send no Origin at all."""

import asyncio
import contextlib
import http.server
import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
import websockets
from playwright.async_api import Browser, Page

from tests.clients.support import CLIENTS_DIR, PATIENCE_SECONDS, chromium, new_user
from tests.served import ServedGateway, served

PAGE = (CLIENTS_DIR / "page.html").read_bytes()


class _PageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the http.server protocol)
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@contextlib.contextmanager
def page_origin() -> Iterator[str]:
    """page.html served on a free loopback port: a browser origin of its own."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def origins() -> Iterator[tuple[str, str]]:
    """(allowed, refused): two page servers, the gateway told of the first only."""
    with page_origin() as allowed, page_origin() as refused:
        yield allowed, refused


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway(origins: tuple[str, str]) -> AsyncIterator[ServedGateway]:
    allowed, _ = origins
    async with served({"CORS_ALLOWED_ORIGINS": allowed}) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest_asyncio.fixture
async def page_of(browser: Browser) -> AsyncIterator[Any]:
    """Opens page.html from an origin in a fresh browser context."""
    context = await browser.new_context()

    async def open_page(origin: str) -> Page:
        page = await context.new_page()
        await page.goto(f"{origin}/")
        return page

    yield open_page
    await context.close()


async def test_a_page_on_an_allowed_origin_queries_and_subscribes(gateway, origins, page_of):
    allowed, _ = origins
    user = new_user("browser")
    token = await gateway.token(user)
    page = await page_of(allowed)

    answer = await page.evaluate("([url, token]) => queryViewer(url, token)", [gateway.url, token])
    assert answer["status"] == 200
    assert answer["body"]["data"] == {"viewer": {"userId": user}}

    first_update = asyncio.create_task(
        page.evaluate(
            "([url, token]) => firstUpdate(url, token, 'SUBSCRIPTION_UPDATED')",
            [gateway.ws_url, token],
        )
    )
    await page.wait_for_function("window.subscriptionReady", timeout=PATIENCE_SECONDS * 1000)
    subscription = await gateway.subscribe_customer(token)
    async with asyncio.timeout(PATIENCE_SECONDS):
        received = await first_update

    assert received == {
        "update": {
            "kind": "SUBSCRIPTION_UPDATED",
            "subscription": {"id": subscription["id"], "status": "ACTIVE"},
        },
        "textFrame": True,
    }


async def test_a_page_on_another_origin_is_refused_both(gateway, origins, page_of):
    _, refused = origins
    token = await gateway.token(new_user("elsewhere"))
    page = await page_of(refused)

    answer = await page.evaluate("([url, token]) => queryViewer(url, token)", [gateway.url, token])
    assert answer == {"error": "TypeError: Failed to fetch"}

    async with asyncio.timeout(PATIENCE_SECONDS):
        closed = await page.evaluate(
            "([url, token]) => firstUpdate(url, token, 'SUBSCRIPTION_UPDATED')",
            [gateway.ws_url, token],
        )
    # The handshake is refused: the socket never opens, and a browser reports only 1006.
    assert closed == {"closed": 1006, "opened": False}


def _preflight_headers(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }


async def test_a_preflight_from_the_allowed_origin_allows_the_token_and_json(gateway, origins):
    allowed, _ = origins
    async with httpx.AsyncClient() as client:
        response = await client.options(gateway.url, headers=_preflight_headers(allowed))

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == allowed
    allowed_headers = {
        name.strip().lower() for name in response.headers["access-control-allow-headers"].split(",")
    }
    assert {"authorization", "content-type"} <= allowed_headers
    assert "POST" in response.headers["access-control-allow-methods"]


async def test_a_preflight_from_another_origin_is_not_allowed(gateway, origins):
    _, refused = origins
    async with httpx.AsyncClient() as client:
        response = await client.options(gateway.url, headers=_preflight_headers(refused))

    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_an_answer_to_the_allowed_origin_names_it(gateway, origins):
    allowed, refused = origins
    query = {"query": "{ __typename }"}
    async with httpx.AsyncClient() as client:
        mine = await client.post(gateway.url, json=query, headers={"Origin": allowed})
        other = await client.post(gateway.url, json=query, headers={"Origin": refused})

    assert mine.headers["access-control-allow-origin"] == allowed
    # Answered (CORS is the browser's to enforce), but not readable by the other page.
    assert "access-control-allow-origin" not in other.headers


async def _acknowledged(gateway: ServedGateway, **connect: Any) -> dict[str, Any]:
    token = await gateway.token(new_user("handshake"))
    async with websockets.connect(
        gateway.ws_url,
        subprotocols=["graphql-transport-ws"],
        **connect,  # type: ignore[list-item]
    ) as connection:
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await connection.send(json.dumps(init))
        async with asyncio.timeout(PATIENCE_SECONDS):
            return json.loads(await connection.recv())


async def test_a_websocket_from_another_origin_is_refused(gateway, origins):
    _, refused = origins
    with pytest.raises(websockets.InvalidStatus) as refusal:
        await _acknowledged(gateway, origin=refused)
    assert refusal.value.response.status_code == 403


async def test_a_websocket_from_the_allowed_origin_is_accepted(gateway, origins):
    allowed, _ = origins
    assert (await _acknowledged(gateway, origin=allowed))["type"] == "connection_ack"


async def test_a_websocket_without_an_origin_is_accepted(gateway):
    # Servers and native apps send no Origin: only browsers are held to the list.
    assert (await _acknowledged(gateway))["type"] == "connection_ack"
