"""`expand[]`: ids replaced by their objects along dotted paths, includable fields computed."""

import copy
from typing import Any

from sandbox.errors import invalid_request
from sandbox.registry import INCLUDABLE, StripeObject
from sandbox.store import Store


def expanded(store: Store, obj: StripeObject, paths: list[str]) -> StripeObject:
    """A deep copy of `obj` with every path expanded; Stripe's 400 for a path it cannot expand."""
    result = copy.deepcopy(obj)
    for path in paths:
        _expand(store, result, path.split("."), path)
    return result


def _expand(store: Store, target: Any, parts: list[str], path: str) -> None:
    if isinstance(target, dict) and target.get("object") == "list" and parts[0] == "data":
        for item in target["data"]:
            if len(parts) > 1:
                _expand(store, item, parts[1:], path)
        return
    if not isinstance(target, dict):
        return
    head, rest = parts[0], parts[1:]
    includer = INCLUDABLE.get((target.get("object", ""), head))
    if includer is not None:
        target[head] = includer(store, target)
    elif head not in target:
        raise invalid_request(f"This property cannot be expanded ({path}).", param="expand")
    value = target[head]
    if isinstance(value, list):  # a list of ids, such as an invoice's `discounts`
        target[head] = [_expanded_item(store, item, rest, path) for item in value]
        return
    if isinstance(value, str) and value in store.objects:
        value = target[head] = copy.deepcopy(store.objects[value])
    elif isinstance(value, str) or (value is not None and not isinstance(value, dict)):
        raise invalid_request(f"This property cannot be expanded ({path}).", param="expand")
    if rest and value is not None:
        _expand(store, value, rest, path)


def _expanded_item(store: Store, item: Any, rest: list[str], path: str) -> Any:
    if isinstance(item, str) and item in store.objects:
        item = copy.deepcopy(store.objects[item])
    elif not isinstance(item, dict):
        raise invalid_request(f"This property cannot be expanded ({path}).", param="expand")
    if rest:
        _expand(store, item, rest, path)
    return item
