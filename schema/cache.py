"""Serving a customer's repeated read-only query from services/response_cache.py.

Only queries whose root fields all read the caller's own billing or the catalog are
cached, keyed by the caller, the document and its variables; a response with any error is
never kept. Limits and the cost budget still apply to a cached answer (they run before
execution). A field whose value changes with time alone must not be cached: its name goes
in TIME_DEPENDENT_FIELDS.
"""

from collections.abc import AsyncIterator
from typing import Any

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

from services import response_cache
from services.response_cache import ResponseCache

CACHEABLE_ROOTS = frozenset({"viewer", "plans", "billingConfig", "__typename"})
# Viewer.access ends a grace period or a trial by the clock, without any commit.
TIME_DEPENDENT_FIELDS = frozenset({"access"})
MAX_DOCUMENTS = 1024


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


class CachedResponses(SchemaExtension):
    def __init__(self, *, cache: ResponseCache, cacheable: dict[tuple[Any, ...], bool]) -> None:
        self.cache = cache
        self.cacheable = cacheable

    async def on_execute(self) -> AsyncIterator[None]:  # type: ignore[override]
        context = self.execution_context
        principal = getattr(context.context, "principal", None)
        if self.cache.maxsize == 0 or not self._cacheable() or principal is None:
            yield
            return
        async with context.context.database.read_session() as session:
            found = await response_cache.account_version(session=session, user_id=principal.user_id)
        if found is None:  # the account is created by this very request
            yield
            return
        key = (
            found[0],
            principal.is_admin,
            context.query,
            context.operation_name,
            repr(context.variables),
        )
        data = self.cache.get(key, found[1])
        if data is not None:
            context.result = ExecutionResult(data=data)
            yield
            return
        yield
        result = context.result
        if isinstance(result, ExecutionResult) and not result.errors and result.data is not None:
            self.cache.put(key, found[1], result.data)

    def _cacheable(self) -> bool:
        """Whether the operation may be cached, decided once per document and operation."""
        context = self.execution_context
        key = (context.query, context.operation_name)
        if key not in self.cacheable:
            document = context.graphql_document
            operation = get_operation_ast(document, context.operation_name) if document else None
            if len(self.cacheable) > MAX_DOCUMENTS:
                self.cacheable.clear()
            self.cacheable[key] = (
                document is not None and operation is not None and is_cacheable(document, operation)
            )
        return self.cacheable[key]
