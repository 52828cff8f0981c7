"""GraphQL over HTTP as its spec says: the response media type, status codes and errors.

- A client accepting `application/graphql-response+json` gets it; everyone else gets
  `application/json` (the spec's legacy type).
- A request error (unparsable, invalid or uncoercible before execution: errors without a
  path, no data) has no `data` entry; with the new media type it answers 400, with
  `application/json` 200, as the spec asks of each.
- A malformed request (a body that is not a JSON object, a parameter of the wrong type)
  answers 400, a mutation over GET 405, each with a GraphQL error body, never a 500.
"""

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from cross_web import HTTPException
from graphql import ExecutionResult
from starlette import status
from starlette.datastructures import Headers
from starlette.responses import Response
from strawberry.http import GraphQLHTTPResponse
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types.unset import UNSET

from services.admission import Admission

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
JSON = "application/json"


def response_media_type(accept: str | None) -> str:
    """The media type to answer in: the spec's own when the client accepts it."""
    for part in (accept or "").split(","):
        media_type, *params = (item.strip() for item in part.split(";"))
        if media_type.lower() == GRAPHQL_RESPONSE_JSON and "q=0" not in params:
            return GRAPHQL_RESPONSE_JSON
    return JSON


def is_request_error(result: ExecutionResult) -> bool:
    """True when the request failed before execution (parse, validation, variables)."""
    return result.data is None and bool(result.errors) and all(
        error.path is None for error in result.errors or ()
    )


def error_body(message: str) -> dict[str, Any]:
    return {"errors": [{"message": message}]}


@dataclass
class Exchange:
    """What this request's answer must look like, decided as the request is read."""

    media_type: str
    request_error: bool = False


_EXCHANGE: ContextVar[Exchange] = ContextVar("graphql_http_exchange")


class GraphQLHttpProtocol:
    """Mixed into the GraphQL router (a Strawberry AsyncBaseHTTPView) ahead of it."""

    encode_json: Any
    admission: Admission

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        if request.scope["type"] != "http":
            return await super().run(request, context=context, root_value=root_value)  # type: ignore[misc]
        exchange = Exchange(response_media_type(Headers(scope=request.scope).get("accept")))
        token = _EXCHANGE.set(exchange)
        try:
            return await super().run(request, context=context, root_value=root_value)  # type: ignore[misc]
        except HTTPException as error:
            return self._error_response(error, exchange)
        finally:
            _EXCHANGE.reset(token)

    def parse_json(self, data: str | bytes) -> Any:
        parsed = super().parse_json(data)  # type: ignore[misc]
        if not isinstance(parsed, dict):
            raise HTTPException(400, "The request body must be a JSON object")
        return parsed

    async def parse_http_body(self, request: Any) -> Any:
        data = await super().parse_http_body(request)  # type: ignore[misc]
        if not isinstance(data.operation_name, str | None):
            raise HTTPException(400, "The GraphQL operation's `operationName` must be a string")
        return data

    async def execute_single(self, *args: Any, **kwargs: Any) -> ExecutionResult:
        try:
            async with self.admission.admitted():
                return await super().execute_single(*args, **kwargs)  # type: ignore[misc]
        except HTTPException as error:
            if isinstance(error.__cause__, InvalidOperationTypeError):
                raise HTTPException(405, error.reason) from error
            raise

    async def process_result(self, request: Any, result: ExecutionResult) -> GraphQLHTTPResponse:
        processed = await super().process_result(request, result)  # type: ignore[misc]
        if is_request_error(result):
            processed.pop("data", None)
            _EXCHANGE.get().request_error = True
        return processed

    def create_response(self, response_data: Any, sub_response: Response) -> Response:
        exchange = _EXCHANGE.get()
        status_code = sub_response.status_code or status.HTTP_200_OK
        if exchange.request_error and exchange.media_type == GRAPHQL_RESPONSE_JSON:
            status_code = status.HTTP_400_BAD_REQUEST
        response = Response(
            self.encode_json(response_data), media_type=exchange.media_type, status_code=status_code
        )
        response.headers.raw.extend(sub_response.headers.raw)
        return response

    def _error_response(self, error: HTTPException, exchange: Exchange) -> Response:
        # The one 405 raised here is a mutation over GET: only POST may carry it.
        headers = {"Allow": "POST"} if error.status_code == 405 else None
        return Response(
            self.encode_json(error_body(error.reason)),
            status_code=error.status_code,
            media_type=exchange.media_type,
            headers=headers,
        )
