"""Alembic environment: runs on the connection db.migrate hands in, or on DATABASE_URL."""

import asyncio

from alembic import context
from sqlalchemy import Connection

from db.database import open_database
from db.models import Base
from gateway.settings import Settings

target_metadata = Base.metadata


def run_on(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_on_configured_database() -> None:
    database = await open_database(Settings())
    try:
        async with database.engine.begin() as conn:
            await conn.run_sync(run_on)
    finally:
        await database.dispose()


connection = context.config.attributes.get("connection")
if connection is not None:
    run_on(connection)
else:
    asyncio.run(run_on_configured_database())
