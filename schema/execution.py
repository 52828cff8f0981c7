"""Execution without per-field bookkeeping for plain attribute fields and simple resolvers.

Most fields of a billing response are attributes read off an object: scalars (`amount`,
`status`, `createdAt`), objects (`node`, `total`, `pageInfo`) and lists of objects
(`edges`). graphql-core builds a path, a resolve-info object and an argument map for each,
calls Strawberry's resolver (which ignores them and reads the attribute) and walks the
completion rules. This context reads the attribute and coerces a scalar, or executes an
object's (or each listed object's) selection, directly in its loop over an object's fields;
a resolver without arguments, extensions or exception handlers is called directly, without
Strawberry's argument conversion around it. Everything else (arguments, abstract types,
nulls where none may be, values that do not coerce) takes the standard path, and errors
raised below a plain object or list are handled as graphql-core handles them: located, and
nulling the nearest nullable field.
"""

from __future__ import annotations

import operator
import weakref
from collections import OrderedDict
from collections.abc import Callable
from enum import Enum
from typing import Any, NamedTuple

from graphql import (
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLResolveInfoHelpers,
    OperationDefinitionNode,
    SelectionSetNode,
    Undefined,
    is_leaf_type,
)
from graphql.execution.collect_fields import CollectedFields
from graphql.execution.executor import FieldDetailsList, to_nodes
from graphql.pyutils import Path, gather_with_cancel
import strawberry
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter


class PlainField(NamedTuple):
    """How to complete a Strawberry attribute field without arguments."""

    read: Callable[[Any], Any]
    non_null: bool
    # Exactly one of these: the coercion of a scalar or enum, or the object type.
    coerce: Callable[[Any], Any] | None
    object_type: GraphQLObjectType | None
    # For a list of objects (`object_type`): the item's type, non-null or not.
    item_type: GraphQLOutputType | None = None


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


def _nullable(output_type: GraphQLOutputType) -> tuple[bool, GraphQLOutputType]:
    if isinstance(output_type, GraphQLNonNull):
        return False, output_type.of_type
    return True, output_type


def plain_field(field: GraphQLField) -> PlainField | None:
    if id(field) in _plain_fields:
        return _plain_fields[id(field)]
    plain = None
    if getattr(field.resolve, "_is_default", False) and not field.args:
        nullable, named = _nullable(field.type)
        if isinstance(named, GraphQLEnumType):
            plain = PlainField(_reader(field), not nullable, _enum_coercion(named), None)
        elif is_leaf_type(named):
            coerce = named.coerce_output_value  # type: ignore[union-attr]
            plain = PlainField(_reader(field), not nullable, coerce, None)
        elif isinstance(named, GraphQLObjectType):
            plain = PlainField(_reader(field), not nullable, None, named)
        elif isinstance(named, GraphQLList):
            item_type = named.of_type
            object_type = _nullable(item_type)[1]
            if isinstance(object_type, GraphQLObjectType):
                plain = PlainField(_reader(field), not nullable, None, object_type, item_type)
    _plain_fields[id(field)] = plain
    return plain


# Fields live as long as the schema; None: not a resolver to call directly.
_direct_calls: dict[int, Callable[[Any, GraphQLResolveInfo], Any] | None] = {}


def direct_call(field: GraphQLField) -> Callable[[Any, GraphQLResolveInfo], Any] | None:
    """The call Strawberry makes of a resolver without arguments, field extensions or
    exception handlers (permissions are extensions), without its argument conversion and
    wrappers around it: the source as `self` or root, and the Info."""
    if id(field) in _direct_calls:
        return _direct_calls[id(field)]
    definition = (field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    resolver = getattr(definition, "base_resolver", None)
    call = None
    # A subscription's field resolves each event, not the resolver that streams them.
    if resolver is not None and not (
        field.args or definition.arguments or definition.extensions or field.subscribe
    ):
        call = _resolver_call(definition, resolver)
    _direct_calls[id(field)] = call
    return call


def _resolver_call(definition: Any, resolver: Any) -> Callable[[Any, GraphQLResolveInfo], Any]:
    function = resolver.wrapped_func
    passes_self = resolver.self_parameter is not None
    info_name = resolver.info_parameter.name if resolver.info_parameter else None
    source_names = [
        parameter.name
        for parameter in (resolver.root_parameter, resolver.parent_parameter)
        if parameter is not None
    ]

    def call(source: Any, info: GraphQLResolveInfo) -> Any:
        keywords = dict.fromkeys(source_names, source)
        if info_name is not None:
            keywords[info_name] = strawberry.Info(_raw_info=info, _field=definition)
        return function(source, **keywords) if passes_self else function(**keywords)

    return call


# (response name, its field nodes, the field's definition, how to complete it when plain,
# how to call its resolver directly)
Step = tuple[
    str,
    FieldDetailsList,
    GraphQLField | None,
    PlainField | None,
    Callable[[Any, GraphQLResolveInfo], Any] | None,
]


class Selections:
    """What an operation's selections come to: the subfields collected for each type and
    field nodes, and the steps of each collected selection, by its id (`collected` keeps
    it alive, so the id stays its own)."""

    def __init__(self) -> None:
        self.collected: dict[tuple[Any, ...], CollectedFields] = {}
        self.steps: dict[int, list[Step]] = {}


# Strawberry's parser cache hands out the same nodes for the same text, so an operation's
# selections hold across its executions when they are the same whatever the variables:
# when no selection carries a directive (@skip, @include, @defer) or fragment arguments.
# Kept for the operations seen last.
REMEMBERED_OPERATIONS = 256
_remembered: OrderedDict[int, tuple[OperationDefinitionNode, Selections]] = OrderedDict()


def selections_of(operation: OperationDefinitionNode, fragments: dict[str, Any]) -> Selections:
    entry = _remembered.get(id(operation))
    if entry is not None and entry[0] is operation:
        _remembered.move_to_end(id(operation))
        return entry[1]
    selections = Selections()
    selection_sets = [operation.selection_set]
    selection_sets += [fragment.definition.selection_set for fragment in fragments.values()]
    if _undirected(selection_sets):
        _remembered[id(operation)] = (operation, selections)
        if len(_remembered) > REMEMBERED_OPERATIONS:
            _remembered.popitem(last=False)
    return selections


def _undirected(selection_sets: list[SelectionSetNode | None]) -> bool:
    pending = list(selection_sets)
    while pending:
        selection_set = pending.pop()
        for selection in selection_set.selections if selection_set else ():
            if selection.directives or (
                isinstance(selection, FragmentSpreadNode) and getattr(selection, "arguments", None)
            ):
                return False
            pending.append(getattr(selection, "selection_set", None))
    return True


def _weakly(method: Callable[..., Any]) -> Callable[..., Any]:
    reference = weakref.WeakMethod(method)

    def call(*args: Any) -> Any:
        return reference()(*args)  # type: ignore[misc]

    return call


class PlainFieldsExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # graphql-core's helpers for resolvers are bound methods of the executor, which holds
        # them: a cycle that would keep each request's context, its loaders and every row
        # they read until a collection finds it, and under load those collections of whole
        # requests take hundreds of milliseconds. Referring back weakly, an executor goes as
        # soon as its execution is over.
        self.async_helpers = GraphQLResolveInfoHelpers(
            gather=_weakly(self.gather_async_work), track=_weakly(self.track_async_work)
        )
        manager = self.middleware_manager
        self._plain = manager is None or not manager.middlewares
        # Exception handlers (Strawberry's, for error unions) wrap each resolver call.
        converter = self.schema._strawberry_schema.schema_converter  # type: ignore[attr-defined]
        self._direct = not getattr(converter, "_exception_handler_specs", ())
        self._selections = selections_of(self.operation, self.fragments)

    def collect_subfields(
        self, return_type: GraphQLObjectType, field_details_list: FieldDetailsList
    ) -> CollectedFields:
        collected = self._selections.collected
        # The nodes live as long as the operation.
        key = (return_type, *[id(details.node) for details in field_details_list])
        found = collected.get(key)
        if found is None:
            found = collected[key] = super().collect_subfields(return_type, field_details_list)
        return found

    def _steps_of(
        self, parent_type: GraphQLObjectType, grouped_field_set: Any, path: Path | None
    ) -> list[Step]:
        known = self._selections.steps.get(id(grouped_field_set))
        if known is not None:
            return known
        steps: list[Step] = []
        for name, field_details_list in grouped_field_set.items():
            node = field_details_list[0].node
            field = parent_type.fields.get(node.name.value)
            plain = call = None
            if field is not None and not node.arguments:
                plain = plain_field(field)
                if plain is None and self._direct:
                    call = direct_call(field)
            steps.append((name, field_details_list, field, plain, call))
        if path is not None:  # the root's selection is collected anew by each execution
            self._selections.steps[id(grouped_field_set)] = steps
        return steps

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: Any,
        position_context: Any,
    ) -> Any:
        if not self._plain:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        results: dict[str, Any] = {}
        awaitable_fields: list[str] = []
        is_awaitable = self.is_awaitable
        try:
            for name, field_details_list, field, plain, call in self._steps_of(
                parent_type, grouped_field_set, path
            ):
                result = Undefined
                if plain is not None:
                    result = self._plain_value(
                        plain, field, source_value, field_details_list, path, name, parent_type,
                        position_context,
                    )  # fmt: skip
                elif call is not None:
                    result = self._called(
                        call, field, parent_type, source_value, field_details_list,
                        Path(path, name, parent_type.name), position_context,
                    )  # fmt: skip
                if result is Undefined:
                    # Anything else, including a null or uncoercible value, fails or
                    # succeeds as usual.
                    result = self.execute_field(
                        parent_type,
                        source_value,
                        field_details_list,
                        Path(path, name, parent_type.name),
                        position_context,
                    )
                    if result is Undefined:
                        continue
                results[name] = result
                if is_awaitable(result):
                    awaitable_fields.append(name)
        except Exception:
            if awaitable_fields:
                self.settle_in_background([results[name] for name in awaitable_fields])
            raise
        if not awaitable_fields:
            return results

        async def get_results() -> dict[str, Any]:
            if len(awaitable_fields) == 1:
                name = awaitable_fields[0]
                results[name] = await results[name]
            else:
                awaited = await gather_with_cancel(*(results[name] for name in awaitable_fields))
                results.update(zip(awaitable_fields, awaited, strict=True))
            return results

        return get_results()

    def _called(
        self,
        call: Callable[[Any, GraphQLResolveInfo], Any],
        field: GraphQLField,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any,
    ) -> Any:
        """The standard path's `execute_field`, with the resolver called directly."""
        return_type = field.type
        info = self.build_resolve_info(field, to_nodes(field_details_list), parent_type, path)
        try:
            result = call(source, info)
            if self.is_awaitable(result):
                return self.complete_awaitable_value(
                    return_type, field_details_list, info, path, result, position_context
                )
            completed = self.complete_value(
                return_type, field_details_list, info, path, result, position_context
            )
        except Exception as raw_error:
            self.handle_field_error(raw_error, return_type, field_details_list, path)
            return None
        return self._settled(completed, return_type, field_details_list, path)

    def _plain_value(
        self,
        plain: PlainField,
        field: Any,
        source: Any,
        field_details_list: FieldDetailsList,
        path: Path | None,
        name: str,
        parent_type: GraphQLObjectType,
        position_context: Any,
    ) -> Any:
        """The completed value, or Undefined for the standard path to take."""
        try:
            value = plain.read(source)
        except Exception:  # the standard path reports it, located
            return Undefined
        if value is None:
            return Undefined if plain.non_null else None
        coerce = plain.coerce
        if coerce is not None:
            try:
                coerced = coerce(value)
            except Exception:  # the standard path reports it, located
                return Undefined
            return Undefined if coerced is None else coerced
        field_path = Path(path, name, parent_type.name)
        if plain.item_type is None:
            return self._object(
                plain, field, value, field_details_list, field_path, position_context
            )
        return self._list(plain, field, value, field_details_list, field_path, position_context)

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
        grouped_field_set = self.collect_subfields(object_type, field_details_list)[0]
        try:
            completed = self.execute_fields(
                object_type, value, path, grouped_field_set, position_context
            )
        except Exception as raw_error:
            self.handle_field_error(raw_error, field.type, field_details_list, path)
            return None
        return self._settled(completed, field.type, field_details_list, path)

    def _list(
        self,
        plain: PlainField,
        field: GraphQLField,
        items: Any,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any,
    ) -> Any:
        """Each listed object's selection executed, or Undefined for the standard path."""
        object_type = plain.object_type
        assert object_type is not None
        is_type_of = object_type.is_type_of
        if not isinstance(items, list | tuple) or not all(
            item is not None and (is_type_of is None or is_type_of(item, None))  # type: ignore[arg-type]
            for item in items
        ):
            return Undefined
        completed: list[Any] = []
        awaitable_indices: list[int] = []
        item_type = plain.item_type
        grouped_field_set = self.collect_subfields(object_type, field_details_list)[0]
        try:
            for index, item in enumerate(items):
                item_path = path.add_key(index, None)
                try:
                    value = self.execute_fields(
                        object_type, item, item_path, grouped_field_set, position_context
                    )
                except Exception as raw_error:
                    self.handle_field_error(raw_error, item_type, field_details_list, item_path)
                    value = None
                if self.is_awaitable(value):
                    value = self._settled(value, item_type, field_details_list, item_path)
                    awaitable_indices.append(index)
                completed.append(value)
        except Exception as raw_error:
            if awaitable_indices:
                self.settle_in_background([completed[index] for index in awaitable_indices])
            self.handle_field_error(raw_error, field.type, field_details_list, path)
            return None
        if not awaitable_indices:
            return completed

        async def await_items() -> Any:
            awaited = await gather_with_cancel(*(completed[index] for index in awaitable_indices))
            for index, value in zip(awaitable_indices, awaited, strict=True):
                completed[index] = value
            return completed

        return self._settled(await_items(), field.type, field_details_list, path)

    def _settled(
        self,
        completed: Any,
        return_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        path: Path,
    ) -> Any:
        """`completed` as is, or, when awaitable, awaited with its error handled in place."""
        if not self.is_awaitable(completed):
            return completed

        async def await_completed() -> Any:
            try:
                return await completed
            except Exception as raw_error:
                self.handle_field_error(raw_error, return_type, field_details_list, path)
                return None

        return await_completed()
