"""Stripe's wire format in, typed Python values out: form-encoded nested params, checked
against the SDK's TypedDict for the endpoint, exactly as strictly as Stripe checks them."""

import types
import typing
from typing import Any, Literal, Union
from urllib.parse import parse_qsl

from typing_extensions import is_typeddict

from sandbox.errors import invalid_request, missing_parameter, unknown_parameter
from sandbox.spec import typed_fields


def decode_form(body: str) -> dict[str, Any]:
    """`items[0][price]=p&expand[]=x` -> {"items": {"0": {"price": "p"}}, "expand": ["x"]}."""
    decoded: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        head, _, rest = key.partition("[")
        parts = [head] + [part.rstrip("]") for part in rest.split("[")] if rest else [head]
        _place(decoded, parts, value)
    return decoded


def _place(target: dict[str, Any], parts: list[str], value: str) -> None:
    for index, part in enumerate(parts[:-1]):
        if parts[index + 1] == "":
            target.setdefault(part, []).append(value)
            return
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise invalid_request(f"Invalid array or hash: {'['.join(parts)}")
    target[parts[-1]] = value


def validate(params_type: type | None, raw: dict[str, Any]) -> dict[str, Any]:
    """The params with their declared types; Stripe's 400 for unknown, missing or malformed."""
    if params_type is None:
        if raw:
            raise unknown_parameter(next(iter(raw)))
        return {}
    return _typed_dict(params_type, raw, "")


def _typed_dict(typed: type, value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid_request(f"Invalid object{_at(path)}", param=path or None)
    fields, required = typed_fields(typed)
    result = {}
    for key, item in value.items():
        child = f"{path}[{key}]" if path else key
        if key not in fields:
            raise unknown_parameter(child)
        result[key] = coerce(item, fields[key], child)
    for key in sorted(required - value.keys()):
        raise missing_parameter(f"{path}[{key}]" if path else key)
    return result


def coerce(value: Any, hint: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return _union(value, typing.get_args(hint), path)
    if origin is Literal:
        allowed = [str(option) for option in typing.get_args(hint)]
        if value in allowed:
            return value
        raise invalid_request(
            f"Invalid {path.rsplit('[', 1)[-1].rstrip(']')}: must be one of {', '.join(allowed)}",
            param=path,
        )
    if is_typeddict(hint):
        return _typed_dict(hint, value, path)
    if origin is list:
        return _list(value, typing.get_args(hint)[0], path)
    if origin is dict or _is_untyped_object(hint):
        if not isinstance(value, dict):
            raise invalid_request(f"Invalid object{_at(path)}", param=path)
        return value
    return _scalar(value, hint, path)


def _union(value: Any, options: tuple[Any, ...], path: str) -> Any:
    # Literal[''] in a union means "unset this field"; it only matches the empty string.
    first_error = None
    for option in sorted(options, key=lambda o: typing.get_origin(o) is Literal, reverse=True):
        try:
            return coerce(value, option, path)
        except Exception as error:  # noqa: BLE001 - the next option may accept it
            first_error = first_error or error
    assert first_error is not None
    raise first_error


def _list(value: Any, item_hint: Any, path: str) -> list[Any]:
    if isinstance(value, dict) and all(key.isdigit() for key in value):
        items = [value[key] for key in sorted(value, key=int)]
    elif isinstance(value, list):
        items = value
    else:
        raise invalid_request(f"Invalid array{_at(path)}", param=path)
    return [coerce(item, item_hint, f"{path}[{index}]") for index, item in enumerate(items)]


def _scalar(value: Any, hint: Any, path: str) -> Any:
    if hint is Any:
        return value
    if not isinstance(value, str):
        raise invalid_request(f"Invalid {_kind(hint)}{_at(path)}", param=path)
    if hint is bool:
        if value in ("true", "false"):
            return value == "true"
        raise invalid_request(f"Invalid boolean: {value}", param=path)
    if hint is int:
        try:
            return int(value)
        except ValueError:
            raise invalid_request(
                f"Invalid integer: {value}", param=path, code="parameter_invalid_integer"
            ) from None
    if hint is float:
        try:
            return float(value)
        except ValueError:
            raise invalid_request(f"Invalid decimal: {value}", param=path) from None
    return value


def _is_untyped_object(hint: Any) -> bool:
    return getattr(typing.get_origin(hint) or hint, "__name__", "") == "UntypedStripeObject"


def _kind(hint: Any) -> str:
    return {bool: "boolean", int: "integer", float: "decimal", str: "string"}.get(hint, "value")


def _at(path: str) -> str:
    return f" for {path}" if path else ""
