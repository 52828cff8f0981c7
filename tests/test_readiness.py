"""/healthz says the process is up; /readyz says the database is reachable and migrated."""

import httpx

from db.database import Database
from db.migrate import downgrade, upgrade
from gateway.app import create_app
from gateway.settings import Settings
from tests.conftest import create_scratch_database, drop_database


def client_for(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test")


async def test_ready_when_migrated_and_unavailable_when_the_database_is_gone(settings: Settings):
    url = await create_scratch_database("billing_readyz")
    database = Database(url, pool_size=2)
    try:
        await upgrade(database.engine)
        async with client_for(create_app(settings, database=database)) as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["status"] == "ready"

            await drop_database(url)

            gone = await client.get("/readyz")
            assert gone.status_code == 503 and gone.json()["reason"] == "database"
            assert (await client.get("/healthz")).status_code == 200
    finally:
        await database.dispose()
        await drop_database(url)


async def test_unavailable_until_migrations_are_current(settings: Settings):
    url = await create_scratch_database("billing_readyz")
    database = Database(url, pool_size=2)
    try:
        async with client_for(create_app(settings, database=database)) as client:
            empty = await client.get("/readyz")
            assert empty.status_code == 503
            assert empty.json() == {
                "status": "unavailable",
                "reason": "migrations",
                "revision": None,
            }

            await upgrade(database.engine)
            assert (await client.get("/readyz")).status_code == 200

            await downgrade(database.engine, "base")
            assert (await client.get("/readyz")).status_code == 503
    finally:
        await database.dispose()
        await drop_database(url)


async def test_an_unexpected_failure_is_masked_with_a_request_id_that_is_logged(settings, caplog):
    url = await create_scratch_database("billing_masking")
    database = Database(url, pool_size=2)
    try:
        await upgrade(database.engine)
        async with client_for(create_app(settings, database=database)) as client:
            await drop_database(url)
            response = await client.post("/graphql", json={"query": "{ plans { id } }"})
    finally:
        await database.dispose()
        await drop_database(url)
    error = response.json()["errors"][0]
    request_id = error["extensions"]["requestId"]
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert error["message"] == f"Internal server error (request id {request_id})"
    assert "billing_masking" not in response.text  # no internals leak to the caller
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None
