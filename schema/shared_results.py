"""One execution per live update and document, shared by every subscriber that asks the same.

graphql-core executes a subscription's selection set once per subscriber for each event,
about half a millisecond each here: a thousand dashboards of one account would cost half
a second per update. A payload that carries a `shared_results` dict (BillingUpdate) was
built once for all subscribers of one account, so the same document with the same
variables gives the same result for each of them: the first executes it, the rest reuse
it (or await it while it runs)."""

import asyncio
import inspect
import json
from typing import Any

from graphql import ExecutionResult
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext


class SharedEventExecutor(StrawberryGraphQLCoreExecutionContext):
    def execute_operation(self, serially: bool | None = None) -> Any:
        shared: dict[Any, Any] | None = getattr(self.root_value, "shared_results", None)
        if shared is None:
            return super().execute_operation(serially)
        key = self._result_key()
        if key not in shared:
            result = super().execute_operation(serially)
            if not inspect.isawaitable(result):
                shared[key] = result
                return result
            shared[key] = asyncio.ensure_future(result)
        found = shared[key]
        return _awaited(found) if isinstance(found, asyncio.Future) else found

    def _result_key(self) -> tuple[str, str | None, str]:
        operation = self.operation
        text = operation.loc.source.body if operation.loc is not None else repr(operation)
        name = operation.name.value if operation.name is not None else None
        variables = json.dumps(self.variable_values.coerced, sort_keys=True, default=str)
        return text, name, variables


async def _awaited(future: "asyncio.Future[ExecutionResult]") -> ExecutionResult:
    # Shielded: one subscriber going away must not cancel the others' result.
    return await asyncio.shield(future)
