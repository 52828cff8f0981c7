"""A schema object as plain JSON, as a GraphQL query selecting its plain fields would answer:
the bodies of the product's webhooks (services/announcements.py) show the API's own types."""

from datetime import datetime
from enum import Enum
from typing import Any

from strawberry.types.base import StrawberryList, StrawberryOptional, has_object_definition
from strawberry.utils.str_converters import to_camel_case

from schema.scalars import SCALAR_MAP


def plain(value: Any, field_type: Any = None) -> Any:
    """Every field without a resolver, by its GraphQL name and serialized as GraphQL does."""
    if value is None:
        return None
    if has_object_definition(value):
        return {
            field.graphql_name or to_camel_case(field.python_name): plain(
                getattr(value, field.python_name), field.type
            )
            for field in value.__strawberry_definition__.fields
            if field.base_resolver is None
        }
    inner = _unwrapped(field_type)
    if isinstance(value, list):
        item_type = inner.of_type if isinstance(inner, StrawberryList) else None
        return [plain(item, item_type) for item in value]
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, datetime):
        return value.isoformat()
    scalar = SCALAR_MAP.get(inner)
    return scalar.serialize(value) if scalar is not None and scalar.serialize else value


def _unwrapped(field_type: Any) -> Any:
    while isinstance(field_type, StrawberryOptional):
        field_type = field_type.of_type
    return field_type
