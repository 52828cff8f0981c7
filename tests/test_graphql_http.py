"""GraphQL over HTTP as the spec says: media types, status codes, no 500 for bad requests,
and the browser origins (CORS) setting. The real clients' view is tests/clients/."""

import logging

import httpx
import pytest

from db.database import Database
from gateway.app import create_app
from gateway.graphql_http import GRAPHQL_RESPONSE_JSON, response_media_type
from gateway.settings import ConfigurationError, Settings
from tests.test_dashboard_queries import counted_statements
from tests.test_response_cache import a_customer

NEW_TYPE = {"accept": GRAPHQL_RESPONSE_JSON}
PLANS = "{ plans { id } }"
VIEWER = "{ viewer { userId } }"

MALFORMED_BODIES = [
    "null",
    "7",
    '"x"',
    "[]",
    "not json",
    '{"query": {"a": 1}}',
    '{"query": "{ plans { id } }", "operationName": {"a": 1}}',
    '{"query": "{ plans { id } }", "operationName": ["a"]}',
    '{"query": "{ plans { id } }", "operationName": 7}',
    '{"query": "{ plans { id } }", "variables": "x"}',
    '{"query": "{ plans { id } }", "variables": [1]}',
    '{"query": "{ plans { id } }", "extensions": 7}',
]


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        (GRAPHQL_RESPONSE_JSON, GRAPHQL_RESPONSE_JSON),
        (f"application/json, {GRAPHQL_RESPONSE_JSON};q=0.9", GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON};q=0, application/json", "application/json"),
    ],
)
def test_the_answer_is_in_the_media_type_the_client_accepts(accept, expected):
    assert response_media_type(accept) == expected


@pytest.mark.parametrize("body", MALFORMED_BODIES)
async def test_a_malformed_request_is_a_400_with_a_graphql_error(client, body):
    for headers in ({}, NEW_TYPE):
        response = await client.post(
            "/graphql", content=body, headers={"content-type": "application/json", **headers}
        )
        assert response.status_code == 400, response.text
        assert response.json()["errors"][0]["message"]
        expected = headers.get("accept", "application/json")
        assert response.headers["content-type"].startswith(expected)


async def test_a_mutation_over_get_is_405_and_names_post(client):
    response = await client.get(
        "/graphql", params={"query": "mutation { createSetupIntent { clientSecret } }"}
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert "mutation" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    "document",
    ["{ plans { id ", "{ nope }", "query ($n: Int!) { plans { id } }"],
    ids=["parse", "validation", "variables"],
)
async def test_request_errors_have_no_data_and_their_status_follows_the_media_type(
    client, document
):
    legacy = await client.post("/graphql", json={"query": document})
    assert legacy.status_code == 200
    assert "data" not in legacy.json() and legacy.json()["errors"]
    new = await client.post("/graphql", json={"query": document}, headers=NEW_TYPE)
    assert new.status_code == 400
    assert new.headers["content-type"] == GRAPHQL_RESPONSE_JSON
    assert "data" not in new.json() and new.json()["errors"]


async def test_a_field_error_keeps_data_and_200_in_the_new_media_type(client):
    answer = await client.post("/graphql", json={"query": VIEWER}, headers=NEW_TYPE)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == GRAPHQL_RESPONSE_JSON
    body = answer.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_cached_answer_comes_in_the_accepted_media_type(client, db: Database, token_for):
    await a_customer(db, "alice")
    headers = {"authorization": f"Bearer {token_for('alice')}", **NEW_TYPE}
    first = await client.post("/graphql", json={"query": VIEWER}, headers=headers)
    with counted_statements(db) as statements:
        again = await client.post("/graphql", json={"query": VIEWER}, headers=headers)
    assert len(statements) == 1  # the caller's version: the cache answered
    assert first.json()["data"] == again.json()["data"] == {"viewer": {"userId": "alice"}}
    assert again.headers["content-type"] == first.headers["content-type"] == GRAPHQL_RESPONSE_JSON


# ---- browsers: CORS_ALLOWED_ORIGINS ----

APP_ORIGIN = "https://app.example.com"


async def preflight(settings: Settings, db: Database, origin: str) -> httpx.Response:
    app = create_app(settings, database=db)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway.test"
    ) as http:
        return await http.options(
            "/graphql",
            headers={
                "origin": origin,
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization, content-type",
            },
        )


async def test_an_allowed_origin_gets_the_preflight_and_the_headers(settings, db: Database):
    allowed = settings.model_copy(update={"cors_allowed_origins": [APP_ORIGIN]})
    answer = await preflight(allowed, db, APP_ORIGIN)
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == APP_ORIGIN
    allowed_headers = answer.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed_headers and "content-type" in allowed_headers


async def test_any_other_origin_is_refused(settings, db: Database):
    allowed = settings.model_copy(update={"cors_allowed_origins": [APP_ORIGIN]})
    answer = await preflight(allowed, db, "https://evil.example.com")
    assert answer.status_code == 400
    assert "access-control-allow-origin" not in answer.headers


def test_origins_default_to_none_in_production_and_the_dev_server_in_development():
    assert Settings(billing_env="test").allowed_origins == []
    assert "http://localhost:5173" in Settings(billing_env="development").allowed_origins
    configured = Settings(billing_env="test", cors_allowed_origins="https://a.test, http://b:3000/")
    assert configured.allowed_origins == ["https://a.test", "http://b:3000"]


def test_a_value_that_is_not_an_origin_is_refused_naming_the_variable():
    with pytest.raises(ConfigurationError, match="CORS_ALLOWED_ORIGINS"):
        Settings(billing_env="test", cors_allowed_origins="https://a.test/path")


# ---- scalars refusing a literal: the caller's error, nothing unexpected ----

SPEND_LITERAL = (
    'mutation {{ spendCredits(input: {{amount: {amount}, reason: "x", idempotencyKey: "k"}})'
    " {{ balance }} }}"
)


@pytest.mark.parametrize(
    "literal",
    ['"1e400"', '"99999999999999999999999999"', "99999999999999999999999999", '"12.5"', "true"],
)
async def test_a_scalar_literal_out_of_range_is_a_validation_error(
    client, token_for, caplog, literal
):
    caplog.set_level(logging.INFO)
    document = SPEND_LITERAL.format(amount=literal)
    answer = await client.post(
        "/graphql",
        json={"query": document},
        headers={"authorization": f"Bearer {token_for('alice')}", **NEW_TYPE},
    )
    assert answer.status_code == 400
    (error,) = answer.json()["errors"]
    assert "BigInt" in error["message"]
    assert error.get("extensions", {}).get("code") != "INTERNAL_SERVER_ERROR"
    assert "unexpected error" not in caplog.text and "Traceback" not in caplog.text


async def test_an_int_argument_out_of_32_bits_is_a_validation_error(client, token_for):
    document = "{ viewer { invoices(first: 99999999999) { totalCount } } }"
    answer = await client.post(
        "/graphql",
        json={"query": document},
        headers={"authorization": f"Bearer {token_for('alice')}", **NEW_TYPE},
    )
    assert answer.status_code == 400
    assert "Int" in answer.json()["errors"][0]["message"]
