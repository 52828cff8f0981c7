"""Execution without per-field bookkeeping for plain attribute fields.

Most fields of a billing response are attributes read off an object: scalars (`amount`,
`status`, `createdAt`) and objects (`node`, `total`, `pageInfo`). graphql-core builds a
resolve-info object, looks for arguments and walks the completion rules for each of them;
Strawberry's resolver for such a field ignores all of that and reads the attribute. This
context reads the attribute and coerces a scalar, or executes an object's selection,
directly; everything else (resolvers, lists, nulls, errors) takes the standard path, and
errors raised below a plain object field are handled as graphql-core handles them.
"""

import operator
from collections.abc import Callable
from enum import Enum
from typing import Any, NamedTuple

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
from strawberry.schema.schema_converter import GraphQLCoreConverter


class PlainField(NamedTuple):
    """How to complete a Strawberry attribute field without arguments."""

    read: Callable[[Any], Any]
    non_null: bool
    # Exactly one of these: the coercion of a scalar or enum, or the object type.
    coerce: Callable[[Any], Any] | None
    object_type: GraphQLObjectType | None


# Fields live as long as the schema (one per process); their ids are stable keys.
_plain_fields: dict[int, PlainField | None] = {}


def _enum_coercion(enum_type: GraphQLEnumType) -> Callable[[Any], Any]:
    """Enum members to their GraphQL names by lookup; anything else as graphql-core does."""
    names = {value.value: name for name, value in enum_type.values.items()}

    def coerce(value: Any) -> Any:
        name = names.get(value.value) if isinstance(value, Enum) else None
        return name if name is not None else enum_type.coerce_output_value(value)

    return coerce


def _reader(field: GraphQLField) -> Callable[[Any], Any]:
    """The attribute read Strawberry's resolver would do (with the default `getattr`)."""
    definition = (field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    if definition is not None and definition.default_resolver is getattr:
        return operator.attrgetter(definition.python_name)
    resolve = field.resolve
    return lambda source: resolve(source, None)  # type: ignore[misc]


def plain_field(field: GraphQLField) -> PlainField | None:
    if id(field) in _plain_fields:
        return _plain_fields[id(field)]
    plain = None
    if getattr(field.resolve, "_is_default", False) and not field.args:
        non_null = isinstance(field.type, GraphQLNonNull)
        named = field.type.of_type if non_null else field.type  # type: ignore[union-attr]
        if isinstance(named, GraphQLEnumType):
            plain = PlainField(_reader(field), non_null, _enum_coercion(named), None)
        elif is_leaf_type(named):
            plain = PlainField(_reader(field), non_null, named.coerce_output_value, None)  # type: ignore[union-attr]
        elif isinstance(named, GraphQLObjectType):
            plain = PlainField(_reader(field), non_null, None, named)
    _plain_fields[id(field)] = plain
    return plain


class FastLeafExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        manager = self.middleware_manager
        self._no_middleware = manager is None or not manager.middlewares

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
        plain = plain_field(field) if field is not None and self._no_middleware else None
        if plain is not None and not node.arguments:
            try:
                value = plain.read(source)
            except Exception:  # the standard path reports it, located
                value = Undefined
            if value is None and not plain.non_null:
                return None
            if value is not None and value is not Undefined:
                completed = (
                    self._coerced(plain.coerce, value)
                    if plain.coerce is not None
                    else self._object(
                        plain, field, value, field_details_list, path, position_context
                    )
                )
                if completed is not Undefined:
                    return completed
        # Anything else, including a null or uncoercible value, fails or succeeds as usual.
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )

    @staticmethod
    def _coerced(coerce: Callable[[Any], Any], value: Any) -> Any:
        try:
            coerced = coerce(value)
        except Exception:  # the standard path reports it, located
            return Undefined
        return Undefined if coerced is None else coerced

    def _object(
        self,
        plain: PlainField,
        field: GraphQLField,
        value: Any,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any,
    ) -> Any:
        """The object's selection executed, or Undefined for the standard path to take."""
        object_type = plain.object_type
        assert object_type is not None
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
