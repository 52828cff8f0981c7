"""Events: retrieve one, or list them (newest first) filtered by type or creation time."""

from fnmatch import fnmatchcase
from typing import Any

from sandbox.registry import Call, StripeObject, handles


@handles("GET", "/v1/events/{id}")
def retrieve(call: Call) -> StripeObject:
    return call.store.get("event", call.args["id"])


@handles("GET", "/v1/events")
def list_events(call: Call) -> StripeObject:
    params = call.params
    patterns = params.get("types") or ([params["type"]] if "type" in params else ["*"])
    created = params.get("created")

    def keep(event: StripeObject) -> bool:
        matches = any(fnmatchcase(event["type"], pattern) for pattern in patterns)
        return matches and _in_range(event["created"], created)

    return call.store.list_objects("event", params, "/v1/events", keep)


def _in_range(value: int, created: Any) -> bool:
    if created is None:
        return True
    if isinstance(created, int):
        return value == created
    bounds = {"gt": value > created.get("gt", value - 1), "gte": value >= created.get("gte", value)}
    bounds |= {
        "lt": value < created.get("lt", value + 1),
        "lte": value <= created.get("lte", value),
    }
    return all(bounds.values())
