"""Execution without per-field bookkeeping for plain attribute fields.

Most fields of a billing response are attributes read off an object: scalars (`amount`,
`status`, `createdAt`) and objects (`node`, `total`, `pageInfo`). graphql-core builds a
resolve-info object, looks for arguments and walks the completion rules for each of them;
Strawberry's resolver for such a field ignores all of that and reads the attribute. This
context reads the attribute and coerces a scalar, or executes an object's selection,
directly; everything else (resolvers, lists, nulls, errors) takes the standard path, and
errors raised below a plain object field are handled as graphql-core handles them.
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
# The object type of a plain field of an object type; None for any other field.
_object_types: dict[int, GraphQLObjectType | None] = {}


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


def _object_type(field: GraphQLField) -> GraphQLObjectType | None:
    """The object type of a Strawberry attribute field without arguments, if it has one."""
    if id(field) not in _object_types:
        named = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
        plain = getattr(field.resolve, "_is_default", False) and not field.args
        _object_types[id(field)] = named if plain and isinstance(named, GraphQLObjectType) else None
    return _object_types[id(field)]


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
            else:
                completed = self._execute_plain_object_field(
                    field, source, field_details_list, path, position_context
                )
                if completed is not Undefined:
                    return completed
        # Anything else, including a null or uncoercible value, fails or succeeds as usual.
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )

    def _execute_plain_object_field(
        self,
        field: GraphQLField,
        source: Any,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any,
    ) -> Any:
        """The object's selection executed, or Undefined for the standard path to take."""
        object_type = _object_type(field)
        if object_type is None:
            return Undefined
        try:
            value = field.resolve(source, None)  # type: ignore[misc]
        except Exception:  # the standard path reports it, located
            return Undefined
        if value is None or value is Undefined:
            return (
                None if value is None and not isinstance(field.type, GraphQLNonNull) else Undefined
            )
        if object_type.is_type_of and not object_type.is_type_of(value, None):  # type: ignore[arg-type]
            return Undefined  # Strawberry's check ignores the info; the standard path raises
        try:
            completed = self.collect_and_execute_subfields(
                object_type, field_details_list, path, value, position_context
            )
        except Exception as raw_error:
            self.handle_field_error(raw_error, field.type, field_details_list, path)
            return None
        if not self.is_awaitable(completed):
            return completed

        async def await_completed() -> Any:
            try:
                return await completed
            except Exception as raw_error:
                self.handle_field_error(raw_error, field.type, field_details_list, path)
                return None

        return await_completed()
