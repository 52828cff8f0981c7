"""Where resource modules register what they implement: API handlers, reactions to events,
and includable fields. Handlers may only be registered for paths the SDK really calls."""

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sandbox.spec import sdk_endpoints

if TYPE_CHECKING:
    from sandbox.store import RequestInfo, Store

StripeObject = dict[str, Any]


@dataclass(frozen=True)
class Call:
    """One API request as a handler sees it."""

    store: "Store"
    params: dict[str, Any]
    args: dict[str, str]
    request: "RequestInfo"
    path: str


Handler = Callable[[Call], StripeObject]
EventHook = Callable[["Store", StripeObject], None]
Includer = Callable[["Store", StripeObject], Any]

HANDLERS: dict[tuple[str, str], Handler] = {}
EVENT_HOOKS: dict[str, list[EventHook]] = defaultdict(list)
# (object type, field) -> how to compute a field Stripe includes only when expanded.
INCLUDABLE: dict[tuple[str, str], Includer] = {}


def handles(method: str, template: str) -> Callable[[Handler], Handler]:
    known = {(endpoint.method, endpoint.template) for endpoint in sdk_endpoints()}
    assert (method, template) in known, f"the SDK never calls {method} {template}"

    def register(handler: Handler) -> Handler:
        HANDLERS[(method, template)] = handler
        return handler

    return register


def reacts_to(event_type: str) -> Callable[[EventHook], EventHook]:
    """Run a hook whenever an event of this type is emitted (after it is recorded)."""

    def register(hook: EventHook) -> EventHook:
        EVENT_HOOKS[event_type].append(hook)
        return hook

    return register


def includable(object_type: str, field: str) -> Callable[[Includer], Includer]:
    def register(includer: Includer) -> Includer:
        INCLUDABLE[(object_type, field)] = includer
        return includer

    return register
