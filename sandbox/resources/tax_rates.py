"""Tax rates (`/v1/tax_rates`): create, retrieve, update, list; and the rates a subscription
or its items are given (`default_tax_rates`, `items[][tax_rates]`), which they carry as
whole tax_rate objects, as Stripe shows them. A rate's percentage and inclusiveness are fixed
once it is created; an archived rate (`active=false`) cannot be given to anything new."""

import copy
from typing import Any

from sandbox.errors import invalid_request
from sandbox.registry import Call, StripeObject, handles
from sandbox.resources import tax
from sandbox.resources.common import apply_update, in_range
from sandbox.store import Store, changed_fields

UPDATABLE = (
    "active",
    "country",
    "description",
    "display_name",
    "jurisdiction",
    "state",
    "tax_type",
)
MAX_DISPLAY_NAME = 50


@handles("POST", "/v1/tax_rates")
def create(call: Call) -> StripeObject:
    params = call.params
    percentage = params["percentage"]
    if not 0 <= percentage <= 100:
        raise invalid_request(
            "This value must be greater than or equal to 0 and less than or equal to 100.",
            param="percentage",
        )
    _check_display_name(params["display_name"])
    value = int(percentage) if percentage == int(percentage) else percentage
    rate = tax.new_rate(call.store, call.store.new_id("txr"), params | {"percentage": value})
    call.store.emit("tax_rate.created", rate)
    return rate


def _check_display_name(name: str) -> None:
    if len(name) > MAX_DISPLAY_NAME:
        raise invalid_request(
            f"Invalid display_name: must be at most {MAX_DISPLAY_NAME} characters",
            param="display_name",
        )


@handles("GET", "/v1/tax_rates/{tax_rate}")
def retrieve(call: Call) -> StripeObject:
    return tax.find_rate(call.store, call.args["tax_rate"], param="tax_rate")


@handles("POST", "/v1/tax_rates/{tax_rate}")
def update(call: Call) -> StripeObject:
    rate = tax.find_rate(call.store, call.args["tax_rate"], param="tax_rate")
    if "display_name" in call.params:
        _check_display_name(call.params["display_name"])
    before = copy.deepcopy(rate)
    apply_update(rate, call.params, UPDATABLE)
    changes = changed_fields(before, rate)
    if changes:
        call.store.emit("tax_rate.updated", rate, changes)
    return rate


@handles("GET", "/v1/tax_rates")
def list_tax_rates(call: Call) -> StripeObject:
    params = call.params

    def keep(rate: StripeObject) -> bool:
        checks = [
            "active" not in params or rate["active"] == params["active"],
            "inclusive" not in params or rate["inclusive"] == params["inclusive"],
            in_range(rate["created"], params.get("created")),
        ]
        return all(checks)

    return call.store.list_objects("tax_rate", params, "/v1/tax_rates", keep)


def applied(store: Store, rate_ids: Any, param: str) -> list[StripeObject]:
    """The tax rates named (`""` clears them), as whole objects; archived ones are refused."""
    if rate_ids in ("", None):
        return []
    rates = []
    for index, rate_id in enumerate(rate_ids):
        rate = tax.find_rate(store, rate_id, param=f"{param}[{index}]")
        if not rate["active"]:
            raise invalid_request(
                f"Tax rate {rate_id} is inactive and cannot be applied.",
                param=f"{param}[{index}]",
            )
        rates.append(copy.deepcopy(rate))
    return rates
