"""Customer portal sessions: a short-lived link for one customer to manage their billing."""

import copy
from typing import Any

from sandbox.errors import invalid_request, missing_parameter
from sandbox.registry import Call, StripeObject, handles
from sandbox.resources.common import one_of, refuse_unsupported
from sandbox.store import Store, blank

# The portal configuration Stripe uses when none is named: the account's default one.
DEFAULT_CONFIGURATION = "bpc_sandbox_default"
FLOWS = (
    "payment_method_update",
    "subscription_cancel",
    "subscription_pause",
    "subscription_update",
    "subscription_update_confirm",
)
SUPPORTED = frozenset({"customer", "return_url", "flow_data", "locale", "configuration"})


@handles("POST", "/v1/billing_portal/sessions")
def create(call: Call) -> StripeObject:
    store, params = call.store, call.params
    refuse_unsupported(params, SUPPORTED, "customer portal sessions")
    if "customer" not in params:
        raise missing_parameter("customer")
    customer = store.get("customer", params["customer"], param="customer")
    if params.get("configuration", DEFAULT_CONFIGURATION) != DEFAULT_CONFIGURATION:
        # Portal configurations are not modelled; only the default one exists.
        raise invalid_request(
            f"No such configuration: '{params['configuration']}'",
            param="configuration",
            code="resource_missing",
            status=404,
        )
    session_id = store.new_id("bps")
    session = blank(
        "billing_portal.session",
        id=session_id,
        configuration=DEFAULT_CONFIGURATION,
        created=store.now(),
        customer=customer["id"],
        customer_account=None,
        flow=_flow(store, params.get("flow_data"), customer["id"]),
        locale=params.get("locale"),
        on_behalf_of=None,
        return_url=params.get("return_url"),
        url=f"https://billing.stripe.com/p/session/test_{store.new_id('bps', 40).split('_')[1]}",
    )
    store.add(session)
    store.emit("billing_portal.session.created", session)
    return session


def _flow(store: Store, data: dict[str, Any] | None, customer_id: str) -> StripeObject | None:
    """The deep-link flow as Stripe echoes it, with its subscription checked."""
    if data is None:
        return None
    kind = one_of(data["type"], FLOWS, "flow_data[type]")
    after = data.get("after_completion") or {"type": "portal_homepage"}
    flow: StripeObject = {
        "type": kind,
        "after_completion": {
            "type": after["type"],
            "hosted_confirmation": after.get("hosted_confirmation"),
            "redirect": after.get("redirect"),
        },
        **{name: None for name in FLOWS if name != "payment_method_update"},
    }
    if kind != "payment_method_update":
        if kind not in data:
            raise missing_parameter(f"flow_data[{kind}]")
        flow[kind] = copy.deepcopy(data[kind])
        _own_subscription(store, flow[kind]["subscription"], customer_id, kind)
    if kind == "subscription_cancel":
        flow[kind].setdefault("retention", None)
    return flow


def _own_subscription(store: Store, subscription_id: str, customer_id: str, kind: str) -> None:
    subscription = store.get(
        "subscription", subscription_id, param=f"flow_data[{kind}][subscription]"
    )
    if subscription["customer"] != customer_id:
        raise invalid_request(
            f"The subscription {subscription_id} does not belong to customer {customer_id}.",
            param=f"flow_data[{kind}][subscription]",
        )
