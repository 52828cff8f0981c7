"""Which handler applies which Stripe event type; the one entry point the worker calls."""

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.settings import GRACE_DAYS
from services import announcements
from services.stripe.client import StripeApi

StripeEvent = dict[str, Any]
Handler = Callable[[AsyncSession, StripeApi, StripeEvent], Awaitable[None]]

HANDLERS: dict[str, Handler] = {}
# Handlers whose pending events of one object may be applied as one (see Coalesced).
COALESCING: set[Handler] = set()


class Coalesced(dict[str, Any]):
    """An object's newest pending event, standing for its older pending ones too.

    Same-second events cannot be ordered, and older ones may carry what the newest does not
    (an invoice's payment attempt), so its snapshot is not trusted: `ambiguous` is True and
    the handler applies the object as Stripe has it now, which covers every one of them."""


def handles(*event_types: str, coalesce: bool = False) -> Callable[[Handler], Handler]:
    """Register a handler for these types. `coalesce`: the handler re-reads the object when
    `ambiguous` says so, and that read is all its events of the object could apply."""

    def register(handler: Handler) -> Handler:
        for event_type in event_types:
            HANDLERS[event_type] = handler
        if coalesce:
            COALESCING.add(handler)
        return handler

    return register


def coalescing_types(event_type: str) -> list[str]:
    """The event types whose pending events of one object may be applied with one of this
    type; none when its handler applies each event on its own."""
    handler = HANDLERS.get(event_type)
    if handler not in COALESCING:
        return []
    return [other for other, same in HANDLERS.items() if same is handler]


async def apply_event(
    *,
    session: AsyncSession,
    stripe: StripeApi,
    event: StripeEvent,
    claimed: list[tuple[str, str]] | None = None,
    grace_days: int = GRACE_DAYS,
) -> bool:
    """Apply one verified event inside the caller's transaction, and announce what it changed
    (services/announcements.py); False for a type we ignore. `claimed`: the ids and types of
    the events it stands for (a Coalesced one stands for several), by default its own.

    Raises on failure: the caller rolls back and retries later."""
    handler = HANDLERS.get(event["type"])
    if handler is None:
        return False
    await handler(session, stripe, event)
    await announcements.announce_event(
        session, event, claimed or [(event["id"], event["type"])], grace_days
    )
    return True


# Last, so the handler modules find `handles` defined.
from services.webhooks import handlers  # noqa: E402,F401 - registers them
