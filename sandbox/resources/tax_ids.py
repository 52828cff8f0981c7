"""Customers' tax ids (`/v1/customers/{customer}/tax_ids`): create, retrieve, list, delete, and
`tax_id_data` when a customer is created.

A value is checked against its type's format (spaces removed, letters upper-cased, as stored)
and refused with Stripe's `tax_id_invalid`; an ABN must also pass the ATO's checksum. Then
the government registry is asked, as Stripe asks it: in the sandbox an ABN that passes the
checksum is `verified` at once; an EU VAT number (VIES) or a UK VAT number (HMRC) is
`pending` and becomes `verified` when the registry answers, a minute later by the customer's
clock (customer.tax_id.updated); types without a registry are `unavailable`. Types the
sandbox has no format for are refused rather than accepted unchecked."""

import copy
import functools
import re
from collections.abc import Iterator
from typing import Any

from sandbox.errors import invalid_request, no_such
from sandbox.registry import Call, Due, StripeObject, handles, includable, timer
from sandbox.store import Store, blank
from services.billing_details import is_valid_abn  # the ATO checksum, as the gateway checks it

# EU VAT numbers by prefix, after the two-letter prefix (Greece's is EL).
EU_VAT_FORMATS = {
    "AT": r"U\d{8}",
    "BE": r"[01]\d{9}",
    "BG": r"\d{9,10}",
    "CY": r"\d{8}[A-Z]",
    "CZ": r"\d{8,10}",
    "DE": r"\d{9}",
    "DK": r"\d{8}",
    "EE": r"\d{9}",
    "EL": r"\d{9}",
    "ES": r"[A-Z0-9]\d{7}[A-Z0-9]",
    "FI": r"\d{8}",
    "FR": r"[A-Z0-9]{2}\d{9}",
    "HR": r"\d{11}",
    "HU": r"\d{8}(\d{3})?",
    "IE": r"\d{7}[A-Z]{1,2}|\d[A-Z+*]\d{5}[A-Z]",
    "IT": r"\d{11}",
    "LT": r"\d{9}(\d{3})?",
    "LU": r"\d{8}",
    "LV": r"\d{11}",
    "MT": r"\d{8}",
    "NL": r"\d{9}B\d{2}",
    "PL": r"\d{10}",
    "PT": r"\d{9}",
    "RO": r"\d{2,10}",
    "SE": r"\d{12}",
    "SI": r"\d{8}",
    "SK": r"\d{10}",
}
# type -> (country, the value's form); eu_vat's country comes from its prefix.
FORMATS: dict[str, tuple[str | None, str]] = {
    "ae_trn": ("AE", r"\d{15}"),
    "au_abn": ("AU", r"\d{11}"),
    "au_arn": ("AU", r"\d{12}"),
    "ca_bn": ("CA", r"\d{9}"),
    "ca_gst_hst": ("CA", r"\d{9}RT\d{4}"),
    "ch_vat": ("CH", r"CHE-?\d{3}\.?\d{3}\.?\d{3}(MWST|TVA|IVA)"),
    "eu_vat": (None, "(" + "|".join(f"{p}({f})" for p, f in EU_VAT_FORMATS.items()) + ")"),
    "gb_vat": ("GB", r"GB(\d{9}|\d{12}|GD\d{3}|HA\d{3})"),
    "hk_br": ("HK", r"\d{8}"),
    "in_gst": ("IN", r"\d{2}[A-Z]{5}\d{4}[A-Z][A-Z0-9]Z[A-Z0-9]"),
    "jp_cn": ("JP", r"\d{13}"),
    "no_vat": ("NO", r"\d{9}MVA"),
    "nz_gst": ("NZ", r"\d{2,3}-?\d{3}-?\d{3}"),
    "sg_gst": ("SG", r"[A-Z]\d{8}[A-Z]"),
    "us_ein": ("US", r"\d{2}-?\d{7}"),
    "za_vat": ("ZA", r"4\d{9}"),
}
# Types checked against a government registry that answers later: VIES, HMRC.
REGISTRY_CHECKED = ("eu_vat", "gb_vat")
REGISTRY_DELAY = 60


def checked_value(type: str, raw: str, param: str) -> tuple[str, str | None]:
    """The value as stored and the tax id's country; Stripe's tax_id_invalid otherwise."""
    if type not in FORMATS:
        raise invalid_request(
            f"The sandbox does not check tax ids of type `{type}`; it knows "
            f"{', '.join(sorted(FORMATS))}.",
            param=param.replace("value", "type"),
        )
    value = re.sub(r"\s", "", raw).upper()
    country, form = FORMATS[type]
    valid = re.fullmatch(form, value) is not None
    if type == "au_abn" and valid:
        valid = is_valid_abn(value)
    if not valid:
        raise invalid_request(f"Invalid value for {type}.", param=param, code="tax_id_invalid")
    if type == "eu_vat":
        country = "GR" if value.startswith("EL") else value[:2]
    return value, country


def checked_data(entries: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    """A new customer's `tax_id_data`, every entry checked before anything is created."""
    checked = []
    for index, entry in enumerate(entries):
        value, country = checked_value(
            entry["type"], entry["value"], f"tax_id_data[{index}][value]"
        )
        checked.append((entry["type"], value, country))
    return checked


def new_tax_id(
    store: Store, customer: StripeObject, type: str, value: str, country: str | None
) -> StripeObject:
    """A checked tax id of the customer, announced with customer.tax_id.created."""
    tax_id = blank(
        "tax_id",
        id=store.new_id("txi"),
        country=country,
        created=store.now(),
        customer=customer["id"],
        customer_account=None,
        owner={"customer": customer["id"], "type": "customer", "customer_account": None},
        type=type,
        value=value,
        verification={
            "status": _first_status(type),
            "verified_address": None,
            "verified_name": None,
        },
    )
    store.add(tax_id)
    store.emit("customer.tax_id.created", tax_id)
    return tax_id


def _first_status(type: str) -> str:
    if type == "au_abn":
        return "verified"
    return "pending" if type in REGISTRY_CHECKED else "unavailable"


def tax_ids_of(store: Store, customer_id: str) -> list[StripeObject]:
    """The customer's tax ids, oldest first."""
    return [
        tax_id
        for tax_id_id in store.ids_by_type["tax_id"]
        if not (tax_id := store.objects[tax_id_id]).get("deleted")
        and tax_id["customer"] == customer_id
    ]


@includable("customer", "tax_ids")
def customer_tax_ids(store: Store, customer: StripeObject) -> StripeObject:
    return {
        "object": "list",
        "data": [copy.deepcopy(tax_id) for tax_id in reversed(tax_ids_of(store, customer["id"]))],
        "has_more": False,
        "url": f"/v1/customers/{customer['id']}/tax_ids",
    }


@timer
def _registry_answers(store: Store) -> Iterator[Due]:
    for tax_id_id in store.ids_by_type["tax_id"]:
        tax_id = store.objects[tax_id_id]
        if not tax_id.get("deleted") and tax_id["verification"]["status"] == "pending":
            at = tax_id["created"] + REGISTRY_DELAY
            yield Due(at, tax_id["customer"], functools.partial(_verified, store, tax_id))


def _verified(store: Store, tax_id: StripeObject) -> None:
    before = copy.deepcopy(tax_id["verification"])
    tax_id["verification"]["status"] = "verified"
    store.emit("customer.tax_id.updated", tax_id, {"verification": before})


def _owned(call: Call) -> StripeObject:
    customer = call.store.get("customer", call.args["customer"], param="customer")
    tax_id = call.store.find("tax_id", call.args["id"])
    if tax_id is None or tax_id.get("deleted") or tax_id["customer"] != customer["id"]:
        raise no_such("tax_id", call.args["id"])
    return tax_id


@handles("POST", "/v1/customers/{customer}/tax_ids")
def create(call: Call) -> StripeObject:
    customer = call.store.get("customer", call.args["customer"], param="customer")
    value, country = checked_value(call.params["type"], call.params["value"], "value")
    return new_tax_id(call.store, customer, call.params["type"], value, country)


@handles("GET", "/v1/customers/{customer}/tax_ids")
def list_tax_ids(call: Call) -> StripeObject:
    customer = call.store.get("customer", call.args["customer"], param="customer")
    return call.store.list_objects(
        "tax_id",
        call.params,
        f"/v1/customers/{customer['id']}/tax_ids",
        lambda tax_id: tax_id["customer"] == customer["id"],
    )


@handles("GET", "/v1/customers/{customer}/tax_ids/{id}")
def retrieve(call: Call) -> StripeObject:
    return _owned(call)


@handles("DELETE", "/v1/customers/{customer}/tax_ids/{id}")
def delete(call: Call) -> StripeObject:
    tax_id = _owned(call)
    call.store.emit("customer.tax_id.deleted", tax_id)
    tax_id["deleted"] = True
    return {"id": tax_id["id"], "object": "tax_id", "deleted": True}
