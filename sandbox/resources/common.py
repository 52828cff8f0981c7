"""Small rules shared by resource modules."""

from typing import Any

from sandbox.registry import StripeObject


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
