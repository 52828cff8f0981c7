"""Which queries may be answered from services/response_cache.py, and the extension that
keeps their answers.

Only queries whose root fields all read the caller's own billing or the catalog are
cached, keyed by the caller, the document and its variables; a response with any error is
never kept. A field whose value changes with time alone must not be cached: its name goes
in TIME_DEPENDENT_FIELDS. Cached answers are served by gateway/cached_queries.py, which
reads the caller's version before anything runs and, when it holds no answer at that
version, hands the request on with a `MissedResponse` for this extension to fill.
"""

from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
)
from graphql.utilities import get_operation_ast
from strawberry.extensions import SchemaExtension

from services.response_cache import CachedResponse, ResponseCache

CACHEABLE_ROOTS = frozenset({"viewer", "plans", "billingConfig", "__typename"})
# Viewer.access ends a grace period or a trial by the clock, without any commit.
TIME_DEPENDENT_FIELDS = frozenset({"access"})


def _field_names(selection_set: SelectionSetNode | None) -> set[str]:
    names: set[str] = set()
    for selection in selection_set.selections if selection_set else ():
        if isinstance(selection, FieldNode):
            names.add(selection.name.value)
        names |= _field_names(getattr(selection, "selection_set", None))
    return names


def is_cacheable(document: DocumentNode, operation: OperationDefinitionNode) -> bool:
    if operation.operation is not OperationType.QUERY:
        return False
    roots = operation.selection_set.selections
    if not all(
        isinstance(root, FieldNode) and root.name.value in CACHEABLE_ROOTS for root in roots
    ):
        return False
    everywhere = set().union(
        *(_field_names(getattr(node, "selection_set", None)) for node in document.definitions)
    )
    return not everywhere & TIME_DEPENDENT_FIELDS


@dataclass(frozen=True)
class MissedResponse:
    """A request the cache could not answer: where its answer goes, if it may be kept.
    `version` was read before the request's data, so the answer is at least that new."""

    key: tuple[Any, ...]
    version: int
    query: str
    operation_name: str | None  # as requested (the key's), not as derived from the document


MISSED_RESPONSE: ContextVar[MissedResponse | None] = ContextVar("missed_response", default=None)


class CachedResponses(SchemaExtension):
    """Keeps the answer of a missed request whose document may be cached."""

    def __init__(self, *, cache: ResponseCache) -> None:
        self.cache = cache

    async def on_execute(self) -> AsyncIterator[None]:  # type: ignore[override]
        yield
        missed = MISSED_RESPONSE.get()
        context = self.execution_context
        if missed is None or not self._cacheable(missed):
            return
        result = context.result
        cost = getattr(context.context, "operation_cost", None)  # measured by QueryLimits
        if (
            isinstance(result, ExecutionResult)
            and not result.errors
            and result.data is not None
            and cost is not None
        ):
            # Encoded as the router encodes responses, so a hit sends the same bytes.
            data = orjson.dumps(result.data)
            entry = CachedResponse(missed.version, data, cost, context.operation_name)
            self.cache.put(missed.key, entry)

    def _cacheable(self, missed: MissedResponse) -> bool:
        """Whether the operation may be cached, decided once per document and operation."""
        decided = self.cache.may_cache(missed.query, missed.operation_name)
        if decided is None:
            document = self.execution_context.graphql_document
            operation = get_operation_ast(document, missed.operation_name) if document else None
            decided = (
                document is not None and operation is not None and is_cacheable(document, operation)
            )
            self.cache.decide(missed.query, missed.operation_name, decided)
        return decided
