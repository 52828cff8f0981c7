"""Small rules shared by resource modules."""

from typing import Any

from sandbox.registry import StripeObject
from services import money


def metadata_update(current: dict[str, str] | None, update: Any) -> dict[str, str]:
    """Stripe's metadata semantics: "" clears all keys, a key set to "" is removed."""
    if update == "":
        return {}
    merged = dict(current or {})
    for key, value in (update or {}).items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def unset_empty(value: Any) -> Any:
    """Stripe's `''` for an optional field means "clear it"."""
    return None if value == "" else value


def apply_update(obj: StripeObject, params: dict[str, Any], fields: tuple[str, ...]) -> None:
    for name in fields:
        if name in params:
            obj[name] = unset_empty(params[name])
    if "metadata" in params:
        obj["metadata"] = metadata_update(obj["metadata"], params["metadata"])


def one_of(value: Any, allowed: tuple[str, ...], param: str) -> str:
    """Stripe's 400 for an enum value it does not know (the SDK's types also allow any str)."""
    if value not in allowed:
        from sandbox.errors import invalid_request

        name = param.rsplit("[", 1)[-1].rstrip("]")
        raise invalid_request(f"Invalid {name}: must be one of {', '.join(allowed)}", param=param)
    return value


def refuse_unsupported(params: dict[str, Any], supported: frozenset[str], what: str) -> None:
    """Stripe accepts these params but the sandbox cannot imitate them: say so, never ignore."""
    from sandbox.errors import invalid_request

    for name in params:
        if name not in supported and name != "expand":
            raise invalid_request(f"The sandbox does not support `{name}` on {what}.", param=name)


def in_range(value: int | None, wanted: Any) -> bool:
    """A list filter on a timestamp: an exact int, or a {gt, gte, lt, lte} range."""
    if wanted is None:
        return True
    if value is None:
        return False
    if isinstance(wanted, int):
        return value == wanted
    tests = {
        "gt": lambda bound: value > bound,
        "gte": lambda bound: value >= bound,
        "lt": lambda bound: value < bound,
        "lte": lambda bound: value <= bound,
    }
    return all(tests[key](bound) for key, bound in wanted.items())


def format_amount(amount: int, currency: str) -> str:
    """An amount as Stripe writes it in messages, e.g. `$12.34`."""
    return money.formatted(amount, currency)
