"""Events: retrieve one, or list them (newest first) filtered by type or creation time."""

from fnmatch import fnmatchcase

from sandbox.registry import Call, StripeObject, handles
from sandbox.resources.common import in_range


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
        return matches and in_range(event["created"], created)

    return call.store.list_objects("event", params, "/v1/events", keep)
