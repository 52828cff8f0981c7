"""Running the real clients of tests/clients against a served gateway: Debian's Chromium under
Playwright; the Node scripts, one-shot ones that print one JSON document, and subscribe.mjs,
read line by line while the test acts."""

import asyncio
import contextlib
import itertools
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, async_playwright

CLIENTS_DIR = Path(__file__).resolve().parent
# Debian's chromium (tests/clients/install), never a browser Playwright downloads.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A guard against a hung client, never a measure of speed.
PATIENCE_SECONDS = 60.0

_users = itertools.count(1)


def new_user(prefix: str) -> str:
    """A user id no other test of the module signs in as."""
    return f"{prefix}-{next(_users)}"


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


def node() -> str:
    path = shutil.which("node")
    assert path, "Node is needed for the real clients: see tests/clients/install"
    assert (CLIENTS_DIR / "node_modules" / "graphql-ws").is_dir(), "run tests/clients/install"
    return path


async def run_script(script: str, *args: str) -> tuple[int, Any, str]:
    """Run a script to its end: exit code, its JSON output, its stderr."""
    process = await asyncio.create_subprocess_exec(
        node(),
        str(CLIENTS_DIR / script),
        *args,
        cwd=CLIENTS_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(PATIENCE_SECONDS * 3):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, json.loads(out), err.decode()


class NodeSubscriber:
    """subscribe.mjs running: the reference graphql-ws client subscribed to billingUpdates."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def line(self) -> dict[str, Any]:
        """The script's next event: ready, update, closed or deadline."""
        assert self.process.stdout is not None
        async with asyncio.timeout(PATIENCE_SECONDS):
            raw = await self.process.stdout.readline()
        if not raw:
            stderr = await self.process.stderr.read() if self.process.stderr else b""
            raise AssertionError(f"subscribe.mjs ended without output: {stderr.decode()}")
        return json.loads(raw)

    async def updates_until(self, kind: str, field: str, row_id: str) -> list[dict[str, Any]]:
        """Every billing update received up to the first of `kind` about `row_id`."""
        received: list[dict[str, Any]] = []
        while True:
            event = await self.line()
            assert "update" in event, f"{event} after {received}"
            assert "errors" not in event["update"], event
            update = event["update"]["data"]["billingUpdates"]
            received.append(update)
            if update["kind"] == kind and (update[field] or {}).get("id") == row_id:
                return received


@contextlib.asynccontextmanager
async def node_subscriber(
    ws_url: str, token: str, *, count: int = 50
) -> AsyncIterator[NodeSubscriber]:
    """subscribe.mjs started; stopped on exit if it has not ended by itself."""
    process = await asyncio.create_subprocess_exec(
        node(),
        str(CLIENTS_DIR / "subscribe.mjs"),
        ws_url,
        token,
        str(count),
        str(int(PATIENCE_SECONDS)),
        cwd=CLIENTS_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield NodeSubscriber(process)
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()
