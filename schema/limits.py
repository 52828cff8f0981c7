"""Query guard rails: token, depth, alias and cost limits, and a per-caller cost budget
(services/cost_budgets.py: one for all replicas).

Every refusal is a top-level error with `extensions.code` and happens before execution.
Strawberry's QueryDepthLimiter, MaxAliasesLimiter and MaxTokensLimiter report errors
without a code (the alias rule reports straight to the validation context, so it cannot
be wrapped), hence one walk over the operation measures all three and the cost.
"""

import functools
import logging
import math
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import asyncpg
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLNamedType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Source,
    TokenKind,
    get_named_type,
    get_nullable_type,
    get_variable_values,
    is_leaf_type,
    is_list_type,
    validate,
)
from graphql.language import Lexer
from graphql.utilities import get_operation_ast, value_from_ast_untyped
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import SchemaExtension
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from db.database import Database
from gateway.settings import Settings
from services import cost_budgets
from services.cost_budgets import Charge, Spend
from services.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

log = logging.getLogger("billing_gateway.graphql")

# Plain lists (paymentMethods, lines) have no `first`; assume this many items each.
ASSUMED_LIST_SIZE = 10

QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
RATE_LIMITED = "RATE_LIMITED"


@dataclass(frozen=True)
class Prepaid:
    """A spend gateway/cached_queries.py made already, with the version it read, for an
    answer it then could not send: the pipeline takes it as this request's charge."""

    spend: Spend
    charge: Charge


PREPAID: ContextVar[Prepaid | None] = ContextVar("prepaid", default=None)


@dataclass(frozen=True)
class Measure:
    """What a selection asks for: estimated cost, depth in fields and aliases used."""

    cost: int = 0
    depth: int = 0
    aliases: int = 0


def _combined(measures: Iterator[Measure]) -> Measure:
    """Sibling selections: costs and aliases add up, the deepest one sets the depth."""
    cost = depth = aliases = 0
    for measure in measures:
        cost += measure.cost
        depth = max(depth, measure.depth)
        aliases += measure.aliases
    return Measure(cost, depth, aliases)


class OperationMeasure:
    """Measures one operation with fragments expanded and variables (and defaults) applied."""

    def __init__(
        self, schema: GraphQLSchema, document: DocumentNode, variables: dict[str, Any]
    ) -> None:
        self.schema = schema
        self.variables = variables
        self.fragments = {
            node.name.value: node
            for node in document.definitions
            if isinstance(node, FragmentDefinitionNode)
        }
        # A fragment measures the same wherever it is spread: memoising keeps the walk
        # linear even for fragments that spread other fragments many times over.
        self._fragment_measures: dict[str, Measure] = {}

    def of_operation(self, operation: OperationDefinitionNode) -> Measure:
        root = self.schema.get_root_type(operation.operation)
        if root is None:
            return Measure()
        return self._of_selections(operation.selection_set, root)

    def _of_selections(self, selections: SelectionSetNode, parent: GraphQLNamedType) -> Measure:
        return _combined(self._of_selection(node, parent) for node in selections.selections)

    def _of_selection(self, node: Any, parent: GraphQLNamedType) -> Measure:
        if isinstance(node, FieldNode):
            return self._of_field(node, parent)
        if isinstance(node, InlineFragmentNode):
            condition = node.type_condition
            inner = self.schema.get_type(condition.name.value) if condition else parent
            return self._of_selections(node.selection_set, inner or parent)
        if isinstance(node, FragmentSpreadNode):
            return self._of_fragment(node.name.value)
        return Measure()

    def _of_fragment(self, name: str) -> Measure:
        if name not in self._fragment_measures:
            fragment = self.fragments[name]
            condition = self.schema.get_type(fragment.type_condition.name.value)
            assert condition is not None, "validation checked the type condition"
            self._fragment_measures[name] = self._of_selections(fragment.selection_set, condition)
        return self._fragment_measures[name]

    def _of_field(self, node: FieldNode, parent: GraphQLNamedType) -> Measure:
        alias = 1 if node.alias else 0
        name = node.name.value
        if name in ("__schema", "__type"):
            # Introspection is refused in production and needed by GraphiQL elsewhere.
            return Measure(aliases=alias)
        definition = getattr(parent, "fields", {}).get(name)
        if definition is None:  # __typename
            return Measure(depth=1, aliases=alias)
        named = get_named_type(definition.type)
        if is_leaf_type(named) or node.selection_set is None:
            return Measure(depth=1, aliases=alias)
        children = self._of_selections(node.selection_set, named)
        size = self._size(node, definition, parent)
        return Measure(1 + size * children.cost, 1 + children.depth, alias + children.aliases)

    def _size(self, node: FieldNode, definition: Any, parent: GraphQLNamedType) -> int:
        """How many times the field's children may be returned."""
        if "first" in definition.args:
            return self._first(node)
        if get_named_type(definition.type).name.endswith("Connection"):
            return DEFAULT_PAGE_SIZE
        if parent.name.endswith("Connection"):
            return 1  # `edges` of a connection: `first` already counted them
        return ASSUMED_LIST_SIZE if is_list_type(get_nullable_type(definition.type)) else 1

    def _first(self, node: FieldNode) -> int:
        arguments = node.arguments or ()
        argument = next((arg for arg in arguments if arg.name.value == "first"), None)
        if argument is None:
            return DEFAULT_PAGE_SIZE
        value = value_from_ast_untyped(argument.value, self.variables)
        if not isinstance(value, int) or isinstance(value, bool):
            return DEFAULT_PAGE_SIZE
        # More than the maximum is refused by the field itself with INVALID_INPUT.
        return min(max(value, 0), MAX_PAGE_SIZE)


@functools.lru_cache(maxsize=256)
def count_tokens(query: str, stop_after: int) -> int:
    """The document's tokens as the parser counts them, reading no further than needed."""
    lexer = Lexer(Source(query))
    count = 0
    while count <= stop_after and lexer.advance().kind is not TokenKind.EOF:
        count += 1
    return count


def too_complex(message: str, **details: int) -> GraphQLError:
    return GraphQLError(message, extensions={"code": QUERY_TOO_COMPLEX, **details})


def internal_error(request_id: str) -> GraphQLError:
    return GraphQLError(
        f"Internal server error (request id {request_id})",
        extensions={"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
    )


def refusals(measure: Measure, settings: Settings) -> list[GraphQLError]:
    """One error for each limit the operation exceeds."""
    errors = []
    if measure.depth > settings.graphql_max_depth:
        errors.append(
            too_complex(
                f"Query depth {measure.depth} exceeds the limit of {settings.graphql_max_depth}",
                depth=measure.depth,
                limit=settings.graphql_max_depth,
            )
        )
    if measure.aliases > settings.graphql_max_aliases:
        errors.append(
            too_complex(
                f"{measure.aliases} aliases exceed the limit of {settings.graphql_max_aliases}",
                aliases=measure.aliases,
                limit=settings.graphql_max_aliases,
            )
        )
    if measure.cost > settings.graphql_max_cost:
        errors.append(
            too_complex(
                f"Query cost {measure.cost} exceeds the limit of {settings.graphql_max_cost}",
                cost=measure.cost,
                limit=settings.graphql_max_cost,
            )
        )
    return errors


class DocumentMemo:
    """What depends only on a document's text (its validation errors) or on its text and
    variables (its measure), for the most recently used texts; shared by one schema's
    requests, so a client's repeated query is validated and measured once."""

    def __init__(self, maxsize: int = 256) -> None:
        self._maxsize = maxsize
        self._entries: OrderedDict[tuple[Any, ...], Any] = OrderedDict()

    def get(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = self._entries[key] = compute()
        if len(self._entries) > self._maxsize:
            self._entries.popitem(last=False)
        return value


def user_caller(user_id: str) -> str:
    return f"user:{user_id}"


def caller_key(context: Any) -> str:
    """The budget's owner: the signed-in user, else the client address."""
    principal = getattr(context, "principal", None)
    if principal is not None:
        return user_caller(principal.user_id)
    request = getattr(context, "request", None)
    client = getattr(request, "client", None)
    return f"ip:{client.host if client else 'unknown'}"


class QueryLimits(SchemaExtension):
    """Refuses over-limit or over-budget operations before execution; reports each cost."""

    def __init__(self, *, memo: DocumentMemo) -> None:
        self.memo = memo
        self.cost: int | None = None
        self.charge: Charge | None = None

    @property
    def settings(self) -> Settings:
        return self.execution_context.context.settings

    def on_parse(self) -> Iterator[None]:
        limit = self.settings.graphql_max_tokens
        tokens = count_tokens(self.execution_context.query or "", stop_after=limit)
        if tokens > limit:
            # Strawberry answers an error raised here as a top-level error, unparsed.
            raise too_complex(
                f"The document has more than {limit} tokens", tokens=tokens, limit=limit
            )
        yield

    async def on_validate(self) -> AsyncIterator[None]:
        context = self.execution_context
        # Set here, the errors stand in for Strawberry's own validation, which then skips.
        if context.pre_execution_errors is None:
            try:
                errors = self._validation_errors() or await self._limit_errors()
            except Exception:  # a bug here must neither run the query nor leak its text
                request_id = context.context.request_id
                log.exception("query limits failed, request id %s", request_id)
                errors = [internal_error(request_id)]
            context.pre_execution_errors = errors
        yield

    def _validation_errors(self) -> list[GraphQLError]:
        """The schema's validation, without introspection or suggestions in production."""
        context = self.execution_context
        document = context.graphql_document
        assert document is not None
        production = self.settings.is_production
        rules = (*context.validation_rules, MaybeNullValidationRule, OneOfInputValidationRule)
        if production:
            rules = (*rules, NoSchemaIntrospectionCustomRule)
        return self.memo.get(
            ("validation", context.query, production),
            lambda: validate(context.schema._schema, document, rules, hide_suggestions=production),
        )

    async def _limit_errors(self) -> list[GraphQLError]:
        """Limit refusals, else the rate limit's, else none and the cost is charged."""
        context = self.execution_context
        assert context.graphql_document is not None
        operation = get_operation_ast(context.graphql_document, context.operation_name)
        if operation is None:
            return []  # execution reports the missing or ambiguous operation
        schema = context.schema._schema
        # Coerced as execution will coerce them (defaults applied), so `first: $n` is known;
        # bad values are refused here already, without suggestions in production.
        variables = get_variable_values(
            schema,
            operation.variable_definitions or (),
            context.variables or {},
            hide_suggestions=self.settings.is_production,
        )
        if isinstance(variables, list):
            return variables
        document = context.graphql_document
        measure = self.memo.get(
            ("measure", context.query, context.operation_name, repr(variables.coerced)),
            lambda: OperationMeasure(schema, document, variables.coerced).of_operation(operation),
        )
        self.cost = context.context.operation_cost = measure.cost
        errors = refusals(measure, self.settings)
        return errors or await self._rate_limit_errors(measure.cost)

    async def _rate_limit_errors(self, cost: int) -> list[GraphQLError]:
        context = self.execution_context.context
        spend = budget_spend(caller_key(context), cost, self.settings)
        prepaid = PREPAID.get()
        if prepaid is not None and prepaid.spend == spend:
            self.charge = prepaid.charge
        else:
            self.charge = await _spent_or_none(context.database, spend)
        if self.charge is None or self.charge.allowed:
            return []
        retry_after = self.charge.retry_after
        response = getattr(self.execution_context.context, "response", None)
        if response is not None:
            response.headers["Retry-After"] = str(retry_after)
        return [
            GraphQLError(
                f"Query cost budget exhausted; retry in {retry_after} s",
                extensions={"code": RATE_LIMITED, "retryAfter": retry_after, "cost": cost},
            )
        ]

    def get_results(self) -> dict[str, Any]:
        if self.cost is None:
            return {}
        return {"cost": cost_extension(self.cost, self.charge, self.settings)}


async def _spent_or_none(database: Database, spend: Spend) -> Charge | None:
    """The charge, or None when the budgets cannot be read: an unreachable database must
    not refuse the operations that need none (billingConfig), and those that do fail on
    their own, so the guard fails open and says so."""
    try:
        return await cost_budgets.spend(database, spend)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        log.warning(
            "cost budget unavailable, operation admitted uncharged: %s", type(error).__name__
        )
        return None


def budget_spend(caller: str, cost: int, settings: Settings) -> Spend:
    """Spending an admitted operation's cost from the caller's budget, as configured."""
    return Spend(
        caller,
        cost,
        capacity=settings.graphql_cost_budget,
        refill_per_second=settings.graphql_cost_refill_per_second,
    )


def cost_extension(cost: int, charge: Charge | None, settings: Settings) -> dict[str, Any]:
    """A response's `extensions.cost`: what the operation costs and what the caller has left."""
    reported: dict[str, Any] = {"requested": cost, "limit": settings.graphql_max_cost}
    if charge is not None:
        reported["budget"] = {
            "available": math.floor(charge.available),
            "capacity": settings.graphql_cost_budget,
            "refillPerSecond": settings.graphql_cost_refill_per_second,
        }
    return reported
