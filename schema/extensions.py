"""Schema extensions: unexpected errors reach the caller only as a code and a request id;
each operation is counted and timed for Prometheus."""

import logging
import re
import time
from collections.abc import Iterable, Iterator

from graphql import GraphQLError
from strawberry.extensions import MaskErrors, SchemaExtension

from services.observability import GRAPHQL_DURATION, GRAPHQL_ERRORS, GRAPHQL_OPERATIONS

log = logging.getLogger("billing_gateway.graphql")


def is_unexpected(error: GraphQLError) -> bool:
    """True for a resolver failure that is not one of our coded errors."""
    original = error.original_error
    # Without a path it was raised before execution: a scalar refusing a literal in
    # validation (BigInt "1e400", a bad DateTime) is the caller's error, not ours.
    if original is None or isinstance(original, GraphQLError) or error.path is None:
        return False
    return "code" not in (error.extensions or {})


class MaskInternalErrors(MaskErrors):
    def __init__(self) -> None:
        super().__init__(should_mask_error=is_unexpected)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        request_id = self.execution_context.context.request_id
        log.error(
            "unexpected error at %s, request id %s",
            ".".join(map(str, error.path or [])),
            request_id,
            exc_info=error.original_error,
        )
        return GraphQLError(
            message=f"Internal server error (request id {request_id})",
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
        )


# Operation names are the client's choice: a bounded set of them become label values.
MAX_OPERATION_NAMES = 200
_OPERATION_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,63}")
_operation_names: set[str] = set()


def operation_label(name: str | None) -> str:
    if not name:
        return "anonymous"
    if name in _operation_names:
        return name
    if len(_operation_names) < MAX_OPERATION_NAMES and _OPERATION_NAME.fullmatch(name):
        _operation_names.add(name)
        return name
    return "other"


class OperationMetrics(SchemaExtension):
    """Counts, times and tallies the errors of each operation, by its name."""

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        context = self.execution_context
        kind = context.operation_type.value if context.graphql_document else "invalid"
        errors = context.pre_execution_errors or (context.result.errors if context.result else None)
        record_operation(context.operation_name, kind, started, errors or ())


def record_operation(
    operation_name: str | None, kind: str, started: float, errors: Iterable[GraphQLError]
) -> None:
    """Count and time an operation served since `started` (perf_counter), with its errors."""
    name = operation_label(operation_name)
    GRAPHQL_OPERATIONS.labels(name, kind).inc()
    GRAPHQL_DURATION.labels(name).observe(time.perf_counter() - started)
    for error in errors:
        code = (error.extensions or {}).get("code", "GRAPHQL_VALIDATION_FAILED")
        GRAPHQL_ERRORS.labels(name, str(code)).inc()
