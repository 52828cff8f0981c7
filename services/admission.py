"""How many GraphQL operations a process executes at once.

Operations are CPU work between short database round trips. Interleaving dozens of them
on one event loop makes each as slow as all of them together and thrashes the caches;
a few at a time, in arrival order, answer sooner and more of them per second (the rest
wait their turn, most of them having parsed their request). An operation that calls
Stripe gives its place up for good at its first call: it then waits on the network, and
it never waits for a place again while it may hold database locks.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar


class _Place:
    def __init__(self, places: asyncio.Semaphore) -> None:
        self._places = places
        self._held = True

    def give_up(self) -> None:
        if self._held:
            self._held = False
            self._places.release()


_current: ContextVar[_Place | None] = ContextVar("admission_place", default=None)


class Admission:
    """At most `limit` operations at once (0: no limit)."""

    def __init__(self, limit: int) -> None:
        self._places = asyncio.Semaphore(limit) if limit > 0 else None

    @asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        if self._places is None:
            yield
            return
        await self._places.acquire()
        place = _Place(self._places)
        token = _current.set(place)
        try:
            yield
        finally:
            _current.reset(token)
            place.give_up()


def give_up_place() -> None:
    """The current operation's place given up: it waits on something slow now."""
    place = _current.get()
    if place is not None:
        place.give_up()
