"""The engine and session factory, on the configured server or the embedded one."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from sqlalchemy import URL, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from db import sealed
from db.embedded import DATABASE_NAME, start_embedded_postgres
from gateway.settings import Settings

DUPLICATE_DATABASE = "42P04"
DRIVER_POOL_SIZE = 10
# asyncpg's close waits for every acquired connection; one never released (a task cancelled
# mid-release) would hold a shutdown forever, so after this the rest are terminated.
CLOSE_PATIENCE_SECONDS = 10.0

log = logging.getLogger("billing_gateway.database")


async def _nothing_to_reset(connection: asyncpg.Connection) -> None:
    return None


class Database:
    """One engine and its session factory for the life of a process."""

    def __init__(
        self, url: URL | str, *, pool_size: int = 20, max_overflow: int | None = None
    ) -> None:
        # Connections past pool_size (up to max_overflow more, by default as many) are
        # opened and closed per use: under a burst that churn costs more than the
        # statements, so the steady pool is sized for bursts.
        self.url = asyncpg_url(url)
        self.engine: AsyncEngine = create_async_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=pool_size if max_overflow is None else max_overflow,
            pool_recycle=1800,
        )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # Reads outside a transaction: no BEGIN and ROLLBACK round trips around each query.
        self.reads = async_sessionmaker(
            self.engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        )
        self._driver_pool: asyncpg.Pool | None = None

    async def dispose(self) -> None:
        if self._driver_pool is not None:
            try:
                await asyncio.wait_for(self._driver_pool.close(), CLOSE_PATIENCE_SECONDS)
            except TimeoutError:
                log.warning("driver connections still in use at close were terminated")
                self._driver_pool.terminate()
            self._driver_pool = None
        await self.engine.dispose()

    def session(self) -> AsyncSession:
        return self.sessions()

    @asynccontextmanager
    async def driver_connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection of a small asyncpg pool of its own, outside any transaction (each
        statement commits), for the hot paths that must not pay for sessions: webhook
        ingest, the response cache's version, rows by key (db/rows.py). Its users leave no
        state behind (no transaction, LISTEN or SET), so a connection goes back without a
        reset; the pool's size is fixed, so a burst waits for a connection rather than
        opening and closing them."""
        if self._driver_pool is None:
            dsn = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._driver_pool = await asyncpg.create_pool(
                dsn, min_size=1, max_size=DRIVER_POOL_SIZE, reset=_nothing_to_reset
            )
        async with self._driver_pool.acquire() as connection:
            yield connection

    def read_session(self) -> AsyncSession:
        """A session for reads only: each statement sees the latest commits on its own."""
        return self.reads()

    @asynccontextmanager
    async def driver_transaction(self) -> AsyncIterator[tuple[AsyncSession, asyncpg.Connection]]:
        """A transaction begun on the driver, and a session whose statements run inside it.

        The hot statements of a path go straight to the driver, prepared once per connection
        and without SQLAlchemy's cost per statement, the rest through the session; all in
        one transaction, committed when the block ends without an exception. The session's
        connection is in autocommit mode, so its own commit and rollback do nothing: flush
        it before the end. Its ORM objects are not refreshed by driver statements."""
        async with self.reads() as session:
            driver = await _driver_under(await session.connection())
            async with driver.transaction():
                yield session, driver


async def driver_of(session: AsyncSession) -> asyncpg.Connection:
    """The driver's connection under `session`, inside its transaction: what is sent on it is
    part of the session's work, without SQLAlchemy's cost per statement (prepared once per
    connection). ORM objects the session holds are not refreshed by it."""
    connection = await session.connection()
    driver = await _driver_under(connection)
    if not driver.is_in_transaction():
        # SQLAlchemy sends BEGIN with its first statement: send one, or ours would run alone.
        await connection.exec_driver_sql("SELECT")
    return driver


async def _driver_under(connection: AsyncConnection) -> asyncpg.Connection:
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None, "a pooled connection is open"
    return driver


def asyncpg_url(url: URL | str) -> URL:
    """The same URL with the asyncpg driver, whichever postgres scheme it was given in."""
    parsed = make_url(url) if isinstance(url, str) else url
    return parsed.set(drivername="postgresql+asyncpg")


async def database_url(settings: Settings) -> URL:
    """DATABASE_URL when set; otherwise the embedded server's billing database, created once."""
    if settings.database_url is not None:
        return asyncpg_url(settings.database_url.get_secret_value())
    server_url = await asyncio.to_thread(start_embedded_postgres, settings.billing_data_dir)
    await create_database_if_missing(server_url, DATABASE_NAME)
    return server_url.set(database=DATABASE_NAME)


async def create_database_if_missing(server_url: URL, name: str) -> None:
    engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            exists = await conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if not exists:
                try:
                    await conn.execute(text(f'CREATE DATABASE "{name}"'))
                except DBAPIError as exc:
                    # Another process starting at the same moment created it first.
                    if getattr(exc.orig, "sqlstate", None) != DUPLICATE_DATABASE:
                        raise
    finally:
        await engine.dispose()


async def open_database(settings: Settings) -> Database:
    """The process's database, with the data keys its sealed columns need installed."""
    sealed.install(sealed.keyring_for(settings))
    # All of DATABASE_POOL_SIZE kept, none opened past it: 32 concurrent dashboards (five
    # reads at once each) overflowing a pool of 20 opened and closed a connection for every
    # other request, a backend started each time (bench/graphql_dashboard.py: 66 -> 78
    # requests/s cold at 40 kept).
    return Database(
        await database_url(settings), pool_size=settings.database_pool_size, max_overflow=0
    )
