"""Where resource modules register what they implement: API handlers, reactions to events,
includable fields, and timers (what falls due as time passes). Handlers may only be
registered for paths the SDK really calls."""

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Due:
    """Something that happens by itself at `at`, to an object of `customer` (whose test clock,
    or the sandbox-wide clock, decides when that is). `run` must leave it no longer due."""

    at: int
    customer: str
    run: Callable[[], object] = field(compare=False)


Handler = Callable[[Call], StripeObject]
EventHook = Callable[["Store", StripeObject], None]
Includer = Callable[["Store", StripeObject], Any]
Timer = Callable[["Store"], Iterable[Due]]

HANDLERS: dict[tuple[str, str], Handler] = {}
EVENT_HOOKS: dict[str, list[EventHook]] = defaultdict(list)
# (object type, field) -> how to compute a field Stripe includes only when expanded.
INCLUDABLE: dict[tuple[str, str], Includer] = {}
TIMERS: list[Timer] = []


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


def timer(find_due: Timer) -> Timer:
    """Register a function that lists what is due (at any time) among a module's objects."""
    TIMERS.append(find_due)
    return find_due
