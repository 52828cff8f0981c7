"""Maps a service's Page onto a Relay connection, and domain errors onto query errors."""

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import strawberry
from graphql import FieldNode, FragmentSpreadNode, GraphQLError

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


async def connection_with_relations(
    info: strawberry.Info, page: Page[Any], node_type: Any
) -> Connection[Any]:
    """The page's connection, with the relations its nodes are asked for loaded first
    (`node_type.related`): one statement for each relation of the whole page, and each
    node's relation then answered without waiting (no task or await per node)."""
    loads = node_type.related(info.context.loaders, page.rows, node_fields(info))
    if loads:
        # A failed load fails on its fields, loaded again there, as it would unpreloaded.
        await asyncio.gather(*loads, return_exceptions=True)
    return connection_of(page, node_type.from_model)


def node_fields(info: strawberry.Info) -> set[str]:
    """The fields a connection's query selects on its nodes (`edges { node { … } }`)."""
    # The document's own nodes: Strawberry's `selected_fields` would convert the whole
    # subtree, arguments included, for three names.
    raw = info._raw_info
    edges = _fields(raw.field_nodes, raw.fragments, "edges")
    return {
        field.name.value for field in _fields(_fields(edges, raw.fragments, "node"), raw.fragments)
    }


def _fields(
    parents: Iterable[FieldNode], fragments: dict[str, Any], name: str | None = None
) -> list[FieldNode]:
    """The fields selected under `parents` (named `name`, when given), through fragments."""
    found: list[FieldNode] = []
    pending = [parent.selection_set for parent in parents]
    while pending:
        selection_set = pending.pop()
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                if name is None or selection.name.value == name:
                    found.append(selection)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = fragments.get(selection.name.value)
                if fragment is not None:
                    pending.append(fragment.selection_set)
            else:
                pending.append(selection.selection_set)
    return found


def query_error(error: DomainError) -> GraphQLError:
    """Queries have no userErrors: an expected failure is a top-level error with its code."""
    return GraphQLError(error.message, extensions={"code": error.code.value, "field": error.field})
