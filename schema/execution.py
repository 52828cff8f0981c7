"""Execution without per-field bookkeeping for plain leaf fields.

Most fields of a billing response are scalars read off an object (`amount`, `status`,
`createdAt`). graphql-core builds a resolve-info object, looks for arguments and walks
the completion rules for each of them; Strawberry's resolver for such a field ignores all
of that and reads the attribute. This context reads the attribute and coerces it
directly, and leaves every other field (resolvers, objects, lists, nulls, errors) to the
standard path, so results and errors are the same.
"""

from collections.abc import Callable
from enum import Enum
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLNonNull,
    GraphQLObjectType,
    Undefined,
    is_leaf_type,
)
from graphql.execution.executor import FieldDetailsList
from graphql.pyutils import Path
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

# (coerce, non-null) for a plain leaf field; None for a field that takes the standard path.
_LeafCoercion = tuple[Callable[[Any], Any], bool] | None
_leaf_coercions: dict[int, _LeafCoercion] = {}


def _enum_coercion(enum_type: GraphQLEnumType) -> Callable[[Any], Any]:
    """Enum members to their GraphQL names by lookup; anything else as graphql-core does."""
    names = {value.value: name for name, value in enum_type.values.items()}

    def coerce(value: Any) -> Any:
        name = names.get(value.value) if isinstance(value, Enum) else None
        return name if name is not None else enum_type.coerce_output_value(value)

    return coerce


def _leaf_coercion(field: GraphQLField) -> _LeafCoercion:
    """How to complete a Strawberry attribute field without arguments of a leaf type."""
    known = _leaf_coercions.get(id(field), Undefined)
    if known is not Undefined:
        return known  # type: ignore[return-value]
    coercion: _LeafCoercion = None
    if getattr(field.resolve, "_is_default", False) and not field.args:
        non_null = isinstance(field.type, GraphQLNonNull)
        named = field.type.of_type if non_null else field.type  # type: ignore[union-attr]
        if isinstance(named, GraphQLEnumType):
            coercion = (_enum_coercion(named), non_null)
        elif is_leaf_type(named):
            coercion = (named.coerce_output_value, non_null)  # type: ignore[union-attr]
    # Fields live as long as the schema (one per process); their ids are stable keys.
    _leaf_coercions[id(field)] = coercion
    return coercion


class FastLeafExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        manager = self.middleware_manager
        self._plain_fields = manager is None or not manager.middlewares

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any,
    ) -> Any:
        node = field_details_list[0].node
        field = parent_type.fields.get(node.name.value)
        if self._plain_fields and field is not None and not node.arguments:
            coercion = _leaf_coercion(field)
            if coercion is not None:
                try:
                    value = field.resolve(source, None)  # type: ignore[misc]
                    coerced = coercion[0](value) if value is not None else None
                except Exception:  # the standard path reports it, located
                    coerced = Undefined
                if coerced is not None and coerced is not Undefined:
                    return coerced
                if value is None and not coercion[1]:
                    return None
        # Anything else, including a null or uncoercible value, fails or succeeds as usual.
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )
