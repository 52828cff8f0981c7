"""The sandbox's state: every Stripe object as the JSON Stripe would send, kept in memory
(and, given a state file, on disk through a `Journal`), and the webhook deliveries owed.

Handlers run one at a time on the event loop, so the state needs no locks. Objects are
built from the key sets of Stripe's published fixtures, so each carries exactly the
fields of its Stripe type. Time is the wall clock moved on by `clock_offset` (the
sandbox-wide clock), or a moment `at()` pins, such as a test clock's frozen time.
"""

import contextlib
import copy
import functools
import json
import secrets
import string
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.errors import invalid_request, no_such
from sandbox.journal import Journal, TrackedDict
from sandbox.registry import EVENT_HOOKS, StripeObject
from sandbox.spec import API_VERSION

# Money that moved (or failed to) is never undone, so these events are never held back.
NEVER_HELD = ("payment_intent.", "charge.", "payment_method.", "setup_intent.", "refund.")
HeldEvent = tuple[str, StripeObject, StripeObject | None]
DAY = 86400

FIXTURES = Path(__file__).parent / "fixtures" / "stripe_fixtures.json"
ID_ALPHABET = string.ascii_letters + string.digits
MAX_LIST_LIMIT = 100


@functools.cache
def fixture(object_name: str) -> StripeObject:
    return json.loads(FIXTURES.read_text())["resources"][object_name]


def blank(object_name: str, **fields: Any) -> StripeObject:
    """An object with exactly its fixture's top-level keys: None unless given here."""
    keys = fixture(object_name).keys()
    unknown = fields.keys() - keys
    assert not unknown, f"{object_name} has no fields {sorted(unknown)}"
    obj: StripeObject = dict.fromkeys(keys)
    obj.update(object=fixture(object_name)["object"], livemode=False)
    obj.update(fields)
    return obj


@dataclass
class BillingSettings:
    """Billing behaviour Stripe leaves to Dashboard settings; the defaults are Stripe-like."""

    # Retry a failed renewal payment this many days after the previous attempt, in turn.
    retry_days: tuple[int, ...] = (3, 5, 7)
    # What a subscription becomes when its last retry fails: canceled or unpaid.
    after_retries: str = "canceled"
    # invoice.upcoming is sent this many days before a renewal (0: never).
    upcoming_days: int = 3
    # A renewal invoice stays a draft this long before it is finalized and charged.
    finalize_after: int = 3600


@dataclass
class RequestInfo:
    id: str
    idempotency_key: str | None


@dataclass
class Store:
    webhook_secret: str | None = None
    objects: TrackedDict = field(default_factory=TrackedDict)
    ids_by_type: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    idempotent_responses: dict[str, tuple[str, int, StripeObject]] = field(default_factory=dict)
    # Stripe shows an endpoint's signing secret only when it is created.
    endpoint_secrets: TrackedDict = field(default_factory=TrackedDict)
    # Webhook deliveries not yet made or not yet successful, by key (see sandbox.delivery).
    deliveries: TrackedDict = field(default_factory=TrackedDict)
    # Each endpoint's chaos settings (see sandbox.delivery.Chaos).
    chaos: TrackedDict = field(default_factory=TrackedDict)
    # Called with every new event; the webhook deliverer listens here.
    event_listeners: list[Callable[[StripeObject], None]] = field(default_factory=list)
    current_request: RequestInfo | None = None
    clock_offset: int = 0
    # While set, the moment now() answers: a test clock's frozen time, or a due time being run.
    pinned_time: int | None = None
    billing: BillingSettings = field(default_factory=BillingSettings)
    # Events of an all-or-nothing operation wait here until it has succeeded.
    held_events: list[HeldEvent] | None = None
    # While rehearsing (see `rehearsal`) nothing is announced.
    muted: bool = False
    journal: Journal | None = None

    def now(self) -> int:
        if self.pinned_time is not None:
            return self.pinned_time
        return int(time.time()) + self.clock_offset

    @contextlib.contextmanager
    def at(self, moment: int | None) -> Iterator[None]:
        """Make now() answer `moment` meanwhile (None: leave the time as it is)."""
        outer = self.pinned_time
        if moment is not None:
            self.pinned_time = moment
        try:
            yield
        finally:
            self.pinned_time = outer

    @staticmethod
    def new_id(prefix: str, length: int = 24) -> str:
        return f"{prefix}_{''.join(secrets.choice(ID_ALPHABET) for _ in range(length))}"

    def add(self, obj: StripeObject) -> StripeObject:
        self.objects[obj["id"]] = obj
        self.ids_by_type[obj["object"]].append(obj["id"])
        return obj

    def find(self, object_type: str, object_id: str) -> StripeObject | None:
        obj = self.objects.get(object_id)
        return obj if obj is not None and obj["object"] == object_type else None

    def get(
        self, object_type: str, object_id: str, *, param: str | None = "id", kind: str | None = None
    ) -> StripeObject:
        """The object, or Stripe's 404 ("No such <kind>: …"; kind defaults from the type)."""
        obj = self.find(object_type, object_id)
        if obj is None or obj.get("deleted"):
            name = kind or object_type.replace("_", "").rsplit(".", 1)[-1]
            raise no_such(name, object_id, param)
        return obj

    def list_objects(
        self,
        object_type: str,
        params: dict[str, Any],
        url: str,
        keep: Callable[[StripeObject], bool] = lambda _: True,
    ) -> StripeObject:
        """A Stripe list, newest first, paged by `limit`, `starting_after`, `ending_before`."""
        limit = params.get("limit", 10)
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise invalid_request(
                "This value must be greater than or equal to 1 and less than or equal to 100.",
                param="limit",
            )
        candidates = [
            obj
            for object_id in reversed(self.ids_by_type[object_type])
            if not (obj := self.objects[object_id]).get("deleted") and keep(obj)
        ]
        ids = [obj["id"] for obj in candidates]
        start, end = 0, len(candidates)
        if cursor := params.get("starting_after"):
            start = self._cursor_index(ids, cursor, "starting_after") + 1
        if cursor := params.get("ending_before"):
            end = self._cursor_index(ids, cursor, "ending_before")
            start = max(start, end - limit)
        page = candidates[start:end][:limit]
        has_more = start + len(page) < end if not params.get("ending_before") else start > 0
        return {"object": "list", "data": page, "has_more": has_more, "url": url}

    @staticmethod
    def _cursor_index(ids: list[str], cursor: str, param: str) -> int:
        if cursor not in ids:
            raise no_such("object", cursor, param)
        return ids.index(cursor)

    def emit(
        self, event_type: str, obj: StripeObject, previous_attributes: StripeObject | None = None
    ) -> None:
        """Record an event with a snapshot of the object, react to it, and hand it to listeners
        (unless `holding_events` is collecting this kind of event)."""
        if self.muted:
            return
        if self.held_events is not None and not event_type.startswith(NEVER_HELD):
            self.held_events.append(
                (event_type, copy.deepcopy(obj), copy.deepcopy(previous_attributes))
            )
            return
        data: StripeObject = {"object": copy.deepcopy(obj)}
        if previous_attributes:
            data["previous_attributes"] = copy.deepcopy(previous_attributes)
        request = self.current_request
        event = blank(
            "event",
            id=self.new_id("evt"),
            api_version=API_VERSION,
            created=self.now(),
            data=data,
            pending_webhooks=0,
            request={
                "id": request.id if request else None,
                "idempotency_key": request.idempotency_key if request else None,
            },
            type=event_type,
        )
        self.add(event)
        for hook in EVENT_HOOKS[event_type]:
            hook(self, obj)
        for listener in self.event_listeners:
            listener(event)

    @contextlib.contextmanager
    def holding_events(self) -> Iterator[list[HeldEvent]]:
        """Collect events (snapshots as of now) instead of emitting them; see `release`."""
        outer, self.held_events = self.held_events, []
        try:
            yield self.held_events
        finally:
            self.held_events = outer

    def release(self, held: list[HeldEvent]) -> None:
        """Emit held events in the order they happened."""
        for event_type, snapshot, previous in held:
            self.emit(event_type, snapshot, previous)

    @contextlib.contextmanager
    def rehearsal(self) -> Iterator[None]:
        """Run changes silently, then undo them all (invoice previews are rehearsed changes).
        Objects are restored in place and in their order, and nothing rehearsed is journaled."""
        saved = copy.deepcopy(dict(self.objects))
        saved_ids = {kind: list(ids) for kind, ids in self.ids_by_type.items()}
        touched = dict(self.objects.touched)
        outer, self.muted = self.muted, True
        try:
            yield
        finally:
            self.muted = outer
            current = dict(self.objects)
            dict.clear(self.objects)
            for object_id, snapshot in saved.items():
                obj = current.get(object_id, snapshot)
                if obj is not snapshot:
                    obj.clear()
                    obj.update(snapshot)
                dict.__setitem__(self.objects, object_id, obj)
            self.objects.touched = touched
            self.ids_by_type.clear()
            self.ids_by_type.update(saved_ids)

    def open_journal(self, path: Path) -> None:
        """Load the state persisted under `path`, and persist every later `commit`."""
        tables = {
            "objects": self.objects,
            "endpoint_secrets": self.endpoint_secrets,
            "deliveries": self.deliveries,
            "chaos": self.chaos,
        }
        # Objects are dated by the sandbox-wide clock; a restart must not turn it back.
        self.journal, scalars = Journal.open(
            path, tables, lambda: {"clock_offset": self.clock_offset}
        )
        self.clock_offset = scalars.get("clock_offset", 0)
        self.ids_by_type.clear()
        for object_id, obj in dict.items(self.objects):
            self.ids_by_type[obj["object"]].append(object_id)

    def commit(self) -> None:
        """Persist what changed since the last commit (with no state file: nothing)."""
        if self.journal is not None:
            self.journal.commit()

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()
            self.journal = None

    def reset(self) -> None:
        for table in (self.objects, self.endpoint_secrets, self.deliveries, self.chaos):
            table.clear()
        self.ids_by_type.clear()
        self.idempotent_responses.clear()
        self.clock_offset = 0
        self.billing = BillingSettings()
        if self.journal is not None:
            self.journal.compact()


def changed_fields(before: StripeObject, after: StripeObject) -> StripeObject:
    """Stripe's `previous_attributes`: the old values of the top-level fields that changed."""
    return {key: before.get(key) for key in after if before.get(key) != after.get(key)}
