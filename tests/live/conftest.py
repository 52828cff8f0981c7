"""Fixtures of the live update tests: a gateway served over real sockets."""

from collections.abc import AsyncIterator

import pytest

from db.database import Database
from gateway.app import create_app
from gateway.settings import Settings
from tests.live.support import Gateway, serving


@pytest.fixture
async def gateway(settings: Settings, db: Database) -> AsyncIterator[Gateway]:
    async with serving(create_app(settings, database=db)) as served:
        yield served
