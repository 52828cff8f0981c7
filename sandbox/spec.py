"""What Stripe's v1 API accepts, read from the pinned `stripe` SDK itself.

Every service method of the SDK names its HTTP method, its path and the TypedDict of its
parameters. The sandbox routes requests by those paths and checks parameters against
those TypedDicts, so it accepts exactly what the SDK can send, and refuses the rest the
way Stripe does.
"""

import ast
import functools
import importlib
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import stripe
from stripe._request_options import RequestOptions
from typing_extensions import is_typeddict

API_VERSION: str = stripe.api_version
# Keys of the SDK's per-request options, which params TypedDicts inherit but never send.
REQUEST_OPTION_KEYS = frozenset(RequestOptions.__annotations__)


@dataclass(frozen=True)
class Endpoint:
    method: str
    template: str
    params: type | None
    pattern: re.Pattern[str]

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path)
        return found.groupdict() if found else None


@functools.cache
def sdk_endpoints() -> tuple[Endpoint, ...]:
    """Every (method, path) of the SDK's services, literal paths before templated ones."""
    root = Path(stripe.__file__).parent
    found: dict[tuple[str, str], Endpoint] = {}
    for source in sorted(root.rglob("_*_service.py")):
        for method, template, params in _service_requests(source):
            found.setdefault((method, template), _endpoint(method, template, params))
    return tuple(sorted(found.values(), key=lambda e: (e.template.count("{"), e.template)))


def _endpoint(method: str, template: str, params: type | None) -> Endpoint:
    regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    return Endpoint(method, template, params, re.compile(regex))


def _service_requests(source: Path):
    tree = ast.parse(source.read_text())
    imports = {
        alias.asname or alias.name: node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef):
            continue
        request = _request_call(function)
        if request is None:
            continue
        method, template = request
        params_name = _params_annotation(function)
        params = _resolve(imports, params_name) if params_name else None
        yield method.upper(), template, params


def _request_call(function: ast.FunctionDef) -> tuple[str, str] | None:
    for node in ast.walk(function):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "_request"
            and len(node.args) >= 2
            and isinstance(node.args[0], ast.Constant)
        ):
            path = node.args[1]
            if isinstance(path, ast.Call) and isinstance(path.func, ast.Attribute):
                path = path.func.value
            method = node.args[0].value
            if isinstance(path, ast.Constant) and isinstance(path.value, str):
                return str(method), path.value
    return None


def _params_annotation(function: ast.FunctionDef) -> str | None:
    for arg in function.args.args + function.args.kwonlyargs:
        if arg.arg == "params" and arg.annotation is not None:
            names = re.findall(r"[A-Z]\w*Params\b", ast.unparse(arg.annotation))
            return names[0] if names else None
    return None


def _resolve(imports: dict[str, str], name: str) -> type | None:
    module = imports.get(name)
    return getattr(importlib.import_module(module), name, None) if module else None


def find_endpoint(method: str, path: str) -> tuple[Endpoint, dict[str, str]] | None:
    for endpoint in sdk_endpoints():
        if endpoint.method == method:
            args = endpoint.match(path)
            if args is not None:
                return endpoint, args
    return None


@functools.cache
def typed_fields(typed_dict: type) -> tuple[dict[str, Any], frozenset[str]]:
    """A TypedDict's resolved field annotations (request options left out) and required keys."""
    own = {
        key: hint
        for key, hint in typed_dict.__annotations__.items()
        if key not in REQUEST_OPTION_KEYS
    }
    # Resolved in the TypedDict's own module (inherited request options are left out above).
    holder = type("Fields", (), {"__annotations__": own, "__module__": typed_dict.__module__})
    fields = typing.get_type_hints(holder)
    required: frozenset[str] = typing.cast(Any, typed_dict).__required_keys__
    return fields, required - REQUEST_OPTION_KEYS


__all__ = [
    "API_VERSION",
    "Endpoint",
    "find_endpoint",
    "is_typeddict",
    "sdk_endpoints",
    "typed_fields",
]
