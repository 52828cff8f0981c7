"""GraphQL over HTTP as its spec's reference audit sees it (graphql-http's auditServer, under
Node, against `billing-gateway serve`), and the malformed requests that once answered 500."""

import json
from typing import Any

import httpx
import pytest

from tests.clients.support import run_script
from tests.served import ServedGateway

GRAPHQL_RESPONSE = "application/graphql-response+json"
ACCEPTS = ["application/json", GRAPHQL_RESPONSE]


@pytest.fixture(scope="module")
async def audit(gateway: ServedGateway) -> dict[str, Any]:
    code, report, stderr = await run_script("audit.mjs", gateway.url)
    assert code == 0, stderr
    return report


async def test_the_audit_ran_every_server_audit(audit):
    ids = [result["id"] for result in audit["results"]]
    assert len(ids) == len(set(ids)) >= 61
    assert {result["name"].split()[0] for result in audit["results"]} == {"MUST", "SHOULD", "MAY"}


async def test_no_must_or_should_fails(audit):
    # graphql-http reports a failed MUST as `error` and a failed SHOULD as `warn`.
    failed = [
        result
        for result in audit["results"]
        if result["status"] in ("error", "warn")
        or (result["status"] != "ok" and result["name"].startswith(("MUST", "SHOULD")))
    ]
    assert failed == []


async def test_no_audit_request_answers_5xx(audit):
    assert audit["responses"], "the audit sent no request"
    assert [response for response in audit["responses"] if response["status"] >= 500] == []


async def _post(gateway: ServedGateway, body: str, accept: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(
            gateway.url,
            content=body,
            headers={"content-type": "application/json", "accept": accept},
        )


def _request_error(response: httpx.Response, accept: str) -> str:
    """The message of a request error answered in the requested media type, without data."""
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith(accept)
    body = response.json()
    assert "data" not in body, body
    (error,) = body["errors"]
    return error["message"]


@pytest.mark.parametrize("accept", ACCEPTS)
@pytest.mark.parametrize("operation_name", [{"name": "Q"}, ["Q"], 7])
async def test_an_operation_name_that_is_not_a_string_is_a_request_error(
    gateway, accept, operation_name
):
    body = json.dumps({"query": "query Q { __typename }", "operationName": operation_name})
    message = _request_error(await _post(gateway, body, accept), accept)
    assert "operationName" in message


@pytest.mark.parametrize("accept", ACCEPTS)
@pytest.mark.parametrize("body", ["null", "7", '"x"', "[]", "true"])
async def test_a_json_body_that_is_not_an_object_is_a_request_error(gateway, accept, body):
    message = _request_error(await _post(gateway, body, accept), accept)
    assert "JSON object" in message


@pytest.mark.parametrize("accept", ACCEPTS)
async def test_a_body_that_is_not_json_is_a_request_error(gateway, accept):
    message = _request_error(await _post(gateway, '{"query": ', accept), accept)
    assert "JSON" in message


@pytest.mark.parametrize("accept", ACCEPTS)
@pytest.mark.parametrize("variables", ['"x"', "[1]", "7"])
async def test_variables_that_are_not_an_object_are_a_request_error(gateway, accept, variables):
    body = f'{{"query": "{{ __typename }}", "variables": {variables}}}'
    message = _request_error(await _post(gateway, body, accept), accept)
    assert "variables" in message


async def test_malformed_variables_in_a_get_are_a_request_error(gateway):
    async with httpx.AsyncClient() as client:
        response = await client.get(
            gateway.url,
            params={"query": "{ __typename }", "variables": "{not json"},
            headers={"accept": GRAPHQL_RESPONSE},
        )
    _request_error(response, GRAPHQL_RESPONSE)


async def test_a_variable_of_the_wrong_type_is_a_request_error_in_graphql_response_json(gateway):
    body = json.dumps(
        {
            "query": "query ($name: String!) { __type(name: $name) { name } }",
            "variables": {"name": 7},
        }
    )
    message = _request_error(await _post(gateway, body, GRAPHQL_RESPONSE), GRAPHQL_RESPONSE)
    assert "$name" in message


async def test_a_mutation_over_get_is_method_not_allowed(gateway):
    async with httpx.AsyncClient() as client:
        response = await client.get(
            gateway.url,
            params={"query": "mutation { __typename }"},
            headers={"accept": "application/json"},
        )
    assert response.status_code == 405
    assert "POST" in response.headers["allow"]
    assert response.json()["errors"][0]["message"]
