"""Schema extensions: unexpected errors reach the caller only as a code and a request id."""

import logging

from graphql import GraphQLError
from strawberry.extensions import MaskErrors

log = logging.getLogger("billing_gateway.graphql")


def is_unexpected(error: GraphQLError) -> bool:
    """True for a resolver failure that is not one of our coded errors."""
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
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
