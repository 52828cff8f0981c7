"""Which handler applies which Stripe event type; the one entry point the worker calls."""

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.stripe.client import StripeApi

StripeEvent = dict[str, Any]
Handler = Callable[[AsyncSession, StripeApi, StripeEvent], Awaitable[None]]

HANDLERS: dict[str, Handler] = {}


def handles(*event_types: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        for event_type in event_types:
            HANDLERS[event_type] = handler
        return handler

    return register


async def apply_event(*, session: AsyncSession, stripe: StripeApi, event: StripeEvent) -> bool:
    """Apply one verified event inside the caller's transaction; False for a type we ignore.

    Raises on failure: the caller rolls back and retries later."""
    handler = HANDLERS.get(event["type"])
    if handler is None:
        return False
    await handler(session, stripe, event)
    return True


# Last, so the handler modules find `handles` defined.
from services.webhooks import handlers  # noqa: E402,F401 - registers them
