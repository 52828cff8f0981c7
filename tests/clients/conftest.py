"""Fixtures of the real-client tests: one `billing-gateway serve` per test module."""

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.served import ServedGateway, served


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway() -> AsyncIterator[ServedGateway]:
    async with served() as running:
        yield running
