"""Time in the sandbox: which clock an object lives by, and running what falls due.

A customer created on a test clock lives by the clock's frozen time, and so do its
subscriptions, invoices and payments; everyone else lives by the sandbox-wide clock (the
wall clock moved on by `/_sandbox/clock/advance`). Nothing happens by itself between
advances: advancing a clock runs everything due on it up to the target, earliest first,
each at its own moment, so renewals, retries and trial ends happen in time order.
"""

from collections.abc import Callable, Mapping
from typing import Any

from sandbox.errors import invalid_request
from sandbox.registry import TIMERS, Due, StripeObject
from sandbox.store import Store

CLOCK = "test_helpers.test_clock"
# A bound on the work one advance may do; only a timer that never stops being due reaches it.
MAX_STEPS = 10_000


def clock_of(store: Store, obj: StripeObject) -> str | None:
    """The test clock an object lives by: its own, or its customer's."""
    if obj.get("object") == CLOCK:
        return obj["id"]
    if obj.get("test_clock"):
        return obj["test_clock"]
    customer = obj.get("customer")
    owner = store.objects.get(customer) if isinstance(customer, str) else None
    return owner.get("test_clock") if owner else None


def time_of_request(store: Store, params: Mapping[str, Any], args: Mapping[str, str]) -> int | None:
    """The frozen time of the test clock a request's objects live by, if any: the objects are
    those its path names and the ids its top-level parameters give."""
    for value in [*args.values(), *params.values()]:
        obj = store.objects.get(value) if isinstance(value, str) else None
        clock_id = clock_of(store, obj) if obj else None
        clock = store.find(CLOCK, clock_id) if clock_id else None
        if clock is not None:
            return clock["frozen_time"]
    return None


def run_due(
    store: Store,
    clock_id: str | None,
    until: int,
    on_step: Callable[[int], None] = lambda moment: None,
) -> None:
    """Run, earliest first, everything due by `until` for customers on this clock (None: the
    sandbox-wide clock), each at its own moment (never before the last: anything overdue runs
    now); `on_step` hears each moment first."""
    moment = store.now()
    for _ in range(MAX_STEPS):
        due = _next_due(store, clock_id, until)
        if due is None:
            return
        moment = max(moment, due.at)
        on_step(moment)
        with store.at(moment):
            due.run()
    raise RuntimeError(f"more than {MAX_STEPS} things fell due in one advance")


def _next_due(store: Store, clock_id: str | None, until: int) -> Due | None:
    """The earliest thing due by `until` for customers living by this clock."""
    due = [
        found
        for find_due in TIMERS
        for found in find_due(store)
        if found.at <= until and _lives_by(store, found.customer, clock_id)
    ]
    return min(due, key=lambda found: found.at, default=None)


def _lives_by(store: Store, customer_id: str, clock_id: str | None) -> bool:
    """Whether the customer lives by this clock (a deleted one's objects stay as they are)."""
    customer = store.objects.get(customer_id)
    if customer is None or customer.get("deleted"):
        return False
    return customer["test_clock"] == clock_id


def advance_sandbox(store: Store, form: Mapping[str, Any]) -> StripeObject:
    """Move the sandbox-wide clock to `to` (unix time) or on by `seconds`, running what falls
    due for customers without a test clock."""
    now = store.now()
    try:
        target = int(form["to"]) if "to" in form else now + int(form.get("seconds", 0))
    except ValueError:
        raise invalid_request("`to` and `seconds` must be whole numbers.") from None
    if target < now:
        raise invalid_request(f"The sandbox clock cannot go back (it is {now}).", param="to")
    run_due(store, None, target)
    store.clock_offset += target - store.now()
    return {"now": store.now(), "clock_offset": store.clock_offset}
