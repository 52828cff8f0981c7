"""Test clocks (`/v1/test_helpers/test_clocks`): create, retrieve, list, advance, delete.

Customers created with `test_clock` live by the clock's frozen time (sandbox/clocks.py), and
advancing it runs what falls due for them in time order. Stripe advances asynchronously,
`advancing` then `ready`; the sandbox finishes within the request but answers as Stripe does
when an advance starts, so a caller polling for `ready` finds it at once.
"""

import copy

from sandbox.clocks import CLOCK, run_due
from sandbox.errors import invalid_request, no_such
from sandbox.registry import Call, StripeObject, handles
from sandbox.resources import customers
from sandbox.resources.subscriptions import ENDED, add_interval
from sandbox.store import DAY, Store, blank

# Stripe deletes a test clock by itself this long after creating it.
LIFETIME = 30 * DAY


def get_clock(store: Store, clock_id: str, param: str | None = "test_clock") -> StripeObject:
    """A live test clock, or Stripe's 404."""
    clock = store.find(CLOCK, clock_id)
    if clock is None or clock.get("deleted"):
        raise no_such("test_clock", clock_id, param)
    return clock


@handles("POST", "/v1/test_helpers/test_clocks")
def create(call: Call) -> StripeObject:
    store, params = call.store, call.params
    now = store.now()
    clock = blank(
        CLOCK,
        id=store.new_id("clock"),
        created=now,
        deletes_after=now + LIFETIME,
        frozen_time=params["frozen_time"],
        name=params.get("name"),
        status="ready",
        status_details={},
    )
    if "customer" in params:
        _attach(store, store.get("customer", params["customer"], param="customer"), clock)
    store.add(clock)
    store.emit("test_helpers.test_clock.created", clock)
    return clock


def _attach(store: Store, customer: StripeObject, clock: StripeObject) -> None:
    if customer["test_clock"]:
        raise invalid_request(
            "This customer is already attached to a test clock; it cannot be moved.",
            param="customer",
        )
    customer["test_clock"] = clock["id"]
    for subscription in _subscriptions_on(store, clock["id"]):
        subscription["test_clock"] = clock["id"]


@handles("GET", "/v1/test_helpers/test_clocks/{test_clock}")
def retrieve(call: Call) -> StripeObject:
    return get_clock(call.store, call.args["test_clock"], "test_clock")


@handles("GET", "/v1/test_helpers/test_clocks")
def list_clocks(call: Call) -> StripeObject:
    return call.store.list_objects(CLOCK, call.params, "/v1/test_helpers/test_clocks")


@handles("POST", "/v1/test_helpers/test_clocks/{test_clock}/advance")
def advance(call: Call) -> StripeObject:
    store = call.store
    clock = get_clock(store, call.args["test_clock"])
    target = call.params["frozen_time"]
    _check_target(store, clock, target)
    clock.update(status="advancing", status_details={"advancing": {"target_frozen_time": target}})
    store.emit("test_helpers.test_clock.advancing", clock)
    started = copy.deepcopy(clock)
    run_due(store, clock["id"], target, lambda moment: clock.update(frozen_time=moment))
    clock.update(frozen_time=target, status="ready", status_details={})
    with store.at(target):
        store.emit("test_helpers.test_clock.ready", clock)
    return started


def _check_target(store: Store, clock: StripeObject, target: int) -> None:
    """Stripe moves a clock forward only, by at most two intervals of its shortest
    subscription (two years without one), so no renewal is skipped over unseen."""
    if target <= clock["frozen_time"]:
        raise invalid_request(
            f"The test clock's new frozen_time must be after its current one "
            f"({clock['frozen_time']}).",
            param="frozen_time",
        )
    limit = _advance_limit(store, clock)
    if target > limit:
        raise invalid_request(
            "A test clock cannot advance more than two intervals of its shortest subscription "
            f"at a time (this one: to {limit} at most). Advance it in smaller steps.",
            param="frozen_time",
        )


def _advance_limit(store: Store, clock: StripeObject) -> int:
    frozen = clock["frozen_time"]
    limits = []
    for subscription in _subscriptions_on(store, clock["id"]):
        if subscription["status"] in ENDED:
            continue
        for item in subscription["items"]["data"]:
            recurring = item["price"]["recurring"]
            limits.append(
                add_interval(frozen, recurring["interval"], 2 * recurring["interval_count"])
            )
    return min(limits, default=add_interval(frozen, "year", 2))


def _subscriptions_on(store: Store, clock_id: str) -> list[StripeObject]:
    found = []
    for subscription_id in store.ids_by_type["subscription"]:
        subscription = store.objects[subscription_id]
        if store.objects[subscription["customer"]]["test_clock"] == clock_id:
            found.append(subscription)
    return found


@handles("DELETE", "/v1/test_helpers/test_clocks/{test_clock}")
def delete(call: Call) -> StripeObject:
    """Deleting a clock deletes its customers, which cancels their subscriptions."""
    store = call.store
    clock = get_clock(store, call.args["test_clock"])
    for customer_id in list(store.ids_by_type["customer"]):
        customer = store.objects[customer_id]
        if customer["test_clock"] == clock["id"] and not customer.get("deleted"):
            customers.remove(store, customer)
    store.emit("test_helpers.test_clock.deleted", clock)
    clock["deleted"] = True
    return {"id": clock["id"], "object": CLOCK, "deleted": True}
