"""Maps a service's Page onto a Relay connection, and domain errors onto query errors."""

from collections.abc import Callable
from typing import Any, TypeVar

from graphql import GraphQLError

from schema.common import Connection, Edge, PageInfo
from services.errors import DomainError
from services.pagination import Page

NodeType = TypeVar("NodeType")


def connection_of(page: Page[Any], to_node: Callable[[Any], NodeType]) -> Connection[NodeType]:
    edges = [
        Edge(cursor=cursor, node=to_node(row))
        for row, cursor in zip(page.rows, page.cursors, strict=True)
    ]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.has_next_page,
            has_previous_page=page.has_previous_page,
            start_cursor=page.cursors[0] if page.cursors else None,
            end_cursor=page.cursors[-1] if page.cursors else None,
        ),
        total_count=page.total_count,
    )


def query_error(error: DomainError) -> GraphQLError:
    """Queries have no userErrors: an expected failure is a top-level error with its code."""
    return GraphQLError(error.message, extensions={"code": error.code.value, "field": error.field})
