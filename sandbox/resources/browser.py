"""`/_sandbox/...` actions: what the customer would do in Stripe.js or on a hosted page.

Each entry is (path, action); an action takes (store, path args, form params) and returns
the changed object. Resource modules append their actions here.
"""

from collections.abc import Callable
from typing import Any

from sandbox.registry import StripeObject
from sandbox.store import Store

BrowserAction = Callable[[Store, dict[str, str], dict[str, Any]], StripeObject]
BROWSER_ROUTES: list[tuple[str, BrowserAction]] = []


def browser_action(path: str) -> Callable[[BrowserAction], BrowserAction]:
    def register(action: BrowserAction) -> BrowserAction:
        BROWSER_ROUTES.append((path, action))
        return action

    return register
