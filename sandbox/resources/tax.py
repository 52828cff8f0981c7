"""Tax on invoices: Stripe Tax (`automatic_tax`) from the sandbox's table, or tax rates, per
line on what its discounts leave; and where a customer is, for tax.

The sandbox's Stripe Tax is this table, by the customer's location (the country of their
address; a US address also needs its postal code). The sandbox account is established in
the United States (invoices' `account_country`) and registered to collect:

    Australia       GST 10%                  New Zealand      GST 15%
    United Kingdom  VAT 20%                  EU member states  their standard VAT rate

An EU customer with an `eu_vat` tax id, in a member state other than the account's, is
reverse charged (0, `reverse_charge`); a customer whose `tax_exempt` is `exempt` pays none
(`customer_exempt`) and one marked `reverse` is reverse charged; anywhere else the account is
not registered and collects nothing (0, `not_collecting`). Each rate is a real tax_rate,
one per (country, percentage, inclusive), with a fixed id such as `txr_sandbox_au_10_exclusive`:
it exists from its first use, and can still be retrieved after a preview that used it first
is undone. A price's `tax_behavior` in the invoice's currency says whether its tax is inside
its amount (`inclusive`) or added to it; `unspecified` is treated as `exclusive`, the sandbox
account's default tax behavior (a Dashboard setting on Stripe).

Without automatic tax, a line is taxed by its subscription item's (or invoice item's)
`tax_rates`, else by the invoice's `default_tax_rates`; Stripe gives no taxability reason for
those (`not_available`). Amounts are rounded half up per line; inclusive rates on one line
share the amount's tax, exclusive ones are added to what is left without it.

Automatic tax needs a location: creating or updating a subscription with it refuses a
customer Stripe cannot place (`customer_tax_location_invalid`); a preview instead answers
`automatic_tax.status` `requires_location_inputs`; an invoice finalized without one (the
address was removed since) is finalized without tax, its and its subscription's automatic tax
disabled, as Stripe does."""

import copy
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sandbox.errors import invalid_request
from sandbox.registry import StripeObject, includable
from sandbox.resources import prices
from sandbox.resources.common import metadata_update
from sandbox.resources.tax_ids import tax_ids_of
from sandbox.store import Store, blank, changed_fields

ACCOUNT_COUNTRY = "US"
EU_VAT = {
    "AT": 20, "BE": 21, "BG": 20, "CY": 19, "CZ": 21, "DE": 19, "DK": 25, "EE": 24,
    "ES": 21, "FI": 25.5, "FR": 20, "GR": 24, "HR": 25, "HU": 27, "IE": 23, "IT": 22,
    "LT": 21, "LU": 17, "LV": 21, "MT": 18, "NL": 21, "PL": 23, "PT": 23, "RO": 21,
    "SE": 25, "SI": 22, "SK": 23,
}  # fmt: skip
# country -> (display name, percentage, tax type): where the sandbox account collects tax.
TABLE: dict[str, tuple[str, float, str]] = {
    "AU": ("GST", 10, "gst"),
    "NZ": ("GST", 15, "gst"),
    "GB": ("VAT", 20, "vat"),
    **{country: ("VAT", rate, "vat") for country, rate in EU_VAT.items()},
}
AUTOMATIC_RATE_ID = re.compile(r"txr_sandbox_([a-z]{2})_(\d+(?:_\d+)?)_(exclusive|inclusive)")
LOCATION_INVALID = (
    "The customer's location isn't recognized. Set a valid customer address in order to "
    "automatically calculate tax."
)
# Reasons for which nothing is taxed at all (a reverse charge taxes the buyer instead).
UNTAXED = ("not_collecting", "customer_exempt")


# Where the customer is ------------------------------------------------------------------------


def location_of(customer: StripeObject) -> str | None:
    """The country Stripe Tax places the customer in, if it can."""
    address = customer.get("address") or {}
    country = (address.get("country") or "").upper()
    if not re.fullmatch(r"[A-Z]{2}", country):
        return None
    if country == "US" and not re.fullmatch(r"\d{5}(-?\d{4})?", address.get("postal_code") or ""):
        return None
    return country


def require_location(store: Store, customer: StripeObject) -> None:
    """Stripe refuses automatic tax for a customer it cannot place; a preview (a rehearsal)
    is answered with `requires_location_inputs` instead."""
    if location_of(customer) is None and not store.muted:
        raise invalid_request(LOCATION_INVALID, code="customer_tax_location_invalid")


@includable("customer", "tax")
def customer_tax(store: Store, customer: StripeObject) -> StripeObject:
    country = location_of(customer)
    if country is None:
        status = "unrecognized_location"
    else:
        status = "supported" if country in TABLE else "not_collecting"
    location = {"country": country, "source": "billing_address", "state": None}
    return {
        "automatic_tax": status,
        "ip_address": None,
        "location": location if country else None,
        "provider": "stripe",
    }


# Shapes ----------------------------------------------------------------------------------------


def automatic_tax_of(enabled: bool) -> StripeObject:
    """A subscription's `automatic_tax`."""
    liability = {"account": None, "type": "self"} if enabled else None
    return {"disabled_reason": None, "enabled": enabled, "liability": liability}


def invoice_automatic_tax(enabled: bool) -> StripeObject:
    """An invoice's `automatic_tax`; its status is set when the invoice is taxed."""
    return {
        "disabled_reason": None,
        "enabled": enabled,
        "liability": {"account": None, "type": "self"} if enabled else None,
        "provider": "stripe" if enabled else None,
        "status": None,
    }


def check_compatible(subscription: StripeObject) -> None:
    """Stripe Tax computes every line of an automatic-tax invoice: no tax rates beside it."""
    if not subscription["automatic_tax"]["enabled"]:
        return
    items_with_rates = [item for item in subscription["items"]["data"] if item["tax_rates"]]
    if subscription["default_tax_rates"] or items_with_rates:
        raise invalid_request(
            "You cannot set `default_tax_rates` or items' `tax_rates` on a subscription with "
            "`automatic_tax[enabled]=true`.",
            param="automatic_tax[enabled]",
        )


# Tax rates -------------------------------------------------------------------------------------


def new_rate(store: Store, rate_id: str, fields: dict[str, Any]) -> StripeObject:
    """A tax rate from create params (or the table's fields), stored under `rate_id`."""
    rate = blank(
        "tax_rate",
        id=rate_id,
        active=fields.get("active", True),
        country=fields.get("country"),
        created=store.now(),
        description=fields.get("description"),
        display_name=fields["display_name"],
        effective_percentage=fields.get("effective_percentage"),
        flat_amount=None,
        inclusive=fields["inclusive"],
        jurisdiction=fields.get("jurisdiction"),
        jurisdiction_level=fields.get("jurisdiction_level"),
        metadata=metadata_update({}, fields.get("metadata")),
        percentage=fields["percentage"],
        rate_type="percentage",
        state=fields.get("state"),
        tax_type=fields.get("tax_type"),
    )
    return store.add(rate)


def find_rate(store: Store, rate_id: str, param: str | None = "tax_rate") -> StripeObject:
    """A tax rate; the table's rates exist from their first mention, even after an undo."""
    rate = store.find("tax_rate", rate_id)
    if rate is not None:
        return rate
    match = AUTOMATIC_RATE_ID.fullmatch(rate_id)
    if match is not None:
        country, percentage = match[1].upper(), float(match[2].replace("_", "."))
        charged = TABLE[country][1] if country in TABLE else 0
        if percentage in (0, charged):
            return automatic_rate(store, country, percentage, match[3] == "inclusive")
    return store.get("tax_rate", rate_id, param=param)


def automatic_rate(store: Store, country: str, percentage: float, inclusive: bool) -> StripeObject:
    """The table's rate for the country at this percentage (0: not collected there)."""
    number = f"{percentage:g}".replace(".", "_")
    behavior = "inclusive" if inclusive else "exclusive"
    rate_id = f"txr_sandbox_{country.lower()}_{number}_{behavior}"
    rate = store.find("tax_rate", rate_id)
    if rate is not None:
        return rate
    name, _, tax_type = TABLE.get(country, ("Tax", 0, None))
    value = int(percentage) if percentage == int(percentage) else percentage
    return new_rate(
        store,
        rate_id,
        {
            "country": country,
            "display_name": name,
            "effective_percentage": value,
            "inclusive": inclusive,
            "jurisdiction": country,
            "jurisdiction_level": "country",
            "percentage": value,
            "tax_type": tax_type,
        },
    )


# Taxing an invoice ------------------------------------------------------------------------------


def tax_lines(store: Store, invoice: StripeObject) -> None:
    """Set each line's `taxes` and the invoice's `total_taxes` (a draft also shows the
    customer's current address, tax ids and exemption: Stripe keeps them until finalization)."""
    customer = store.objects[invoice["customer"]]
    if invoice["status"] == "draft":
        _show_customer(store, invoice, customer)
    automatic = invoice["automatic_tax"]
    if automatic["enabled"]:
        located = location_of(customer) is not None
        automatic["status"] = "complete" if located else "requires_location_inputs"
    totals: dict[tuple[str, str, str], StripeObject] = {}
    for line in invoice["lines"]["data"]:
        line["taxes"] = _line_taxes(store, invoice, line, customer)
        for entry in line["taxes"]:
            key = (entry["tax_rate_details"]["tax_rate"], entry["tax_behavior"])
            key += (entry["taxability_reason"],)
            total = totals.setdefault(key, dict(entry, amount=0, taxable_amount=0))
            total["amount"] += entry["amount"]
            total["taxable_amount"] += entry["taxable_amount"]
    invoice["total_taxes"] = list(totals.values())


def _show_customer(store: Store, invoice: StripeObject, customer: StripeObject) -> None:
    invoice.update(
        customer_address=copy.deepcopy(customer["address"]),
        customer_tax_exempt=customer["tax_exempt"],
        customer_tax_ids=[
            {"type": tax_id["type"], "value": tax_id["value"]}
            for tax_id in tax_ids_of(store, customer["id"])
        ],
    )


def _line_taxes(
    store: Store, invoice: StripeObject, line: StripeObject, customer: StripeObject
) -> list[StripeObject]:
    net = line["amount"] - sum(entry["amount"] for entry in line["discount_amounts"])
    if not invoice["automatic_tax"]["enabled"]:
        rates = _line_rates(store, invoice, line)
        return _taxes(net, [(rate, "not_available") for rate in rates])
    inclusive = _tax_behavior(store, invoice, line) == "inclusive"
    return _automatic_taxes(store, customer, net, inclusive)


def _automatic_taxes(
    store: Store, customer: StripeObject, net: int, inclusive: bool
) -> list[StripeObject]:
    country = location_of(customer)
    if country is None:
        return []
    percentage, reason = _treatment(store, customer, country)
    rate = automatic_rate(store, country, percentage, inclusive)
    return _taxes(net, [(rate, reason)])


def purchase_taxes(
    store: Store,
    customer: StripeObject | None,
    currency: str,
    lines: list[tuple[int, StripeObject]],
    automatic: bool,
    rates: list[StripeObject],
) -> tuple[int, int]:
    """The tax on a purchase not invoiced yet (a Checkout Session's lines, each its amount
    after discounts and its price): all of it, and the part added to the amounts."""
    entries = []
    for net, price in lines:
        if automatic and customer is not None:
            inclusive = prices.tax_behavior_in(store, price, currency) == "inclusive"
            entries += _automatic_taxes(store, customer, net, inclusive)
        elif not automatic:
            entries += _taxes(net, [(rate, "not_available") for rate in rates])
    added = sum(entry["amount"] for entry in entries if entry["tax_behavior"] == "exclusive")
    return sum(entry["amount"] for entry in entries), added


def _treatment(store: Store, customer: StripeObject, country: str) -> tuple[float, str]:
    """The table's percentage for this customer and the taxability reason Stripe gives."""
    if customer["tax_exempt"] == "exempt":
        return 0, "customer_exempt"
    business = any(tax_id["type"] == "eu_vat" for tax_id in tax_ids_of(store, customer["id"]))
    cross_border = country in EU_VAT and country != ACCOUNT_COUNTRY and business
    if customer["tax_exempt"] == "reverse" or cross_border:
        return 0, "reverse_charge"
    if country not in TABLE:
        return 0, "not_collecting"
    return TABLE[country][1], "standard_rated"


def _tax_behavior(store: Store, invoice: StripeObject, line: StripeObject) -> str:
    price_id = line["pricing"]["price_details"]["price"]
    behavior = prices.tax_behavior_in(store, store.objects[price_id], invoice["currency"])
    return "inclusive" if behavior == "inclusive" else "exclusive"


def _line_rates(store: Store, invoice: StripeObject, line: StripeObject) -> list[StripeObject]:
    """The line's own tax rates (its subscription item's or invoice item's), else the
    invoice's defaults."""
    parent = line["parent"]
    details = parent["subscription_item_details"] or parent["invoice_item_details"] or {}
    if details.get("invoice_item"):
        own = store.objects[details["invoice_item"]]["tax_rates"] or []
    else:
        item = _subscription_item(store, details)
        own = item["tax_rates"] if item else []
    return own or invoice["default_tax_rates"]


def _subscription_item(store: Store, details: StripeObject) -> StripeObject | None:
    subscription = store.objects.get(details.get("subscription") or "")
    for item in (subscription or {}).get("items", {}).get("data", []):
        if item["id"] == details.get("subscription_item"):
            return item
    return None


def _taxes(net: int, rates: list[tuple[StripeObject, str]]) -> list[StripeObject]:
    """A line's tax entries: inclusive rates share the tax inside `net`, exclusive ones are
    charged on what is left without it."""
    inclusive = sum(Decimal(str(rate["percentage"])) for rate, _ in rates if rate["inclusive"])
    base = Decimal(net) * 100 / (100 + inclusive)
    inside = {
        rate["id"]: _rounded(base * Decimal(str(rate["percentage"])) / 100)
        for rate, _ in rates
        if rate["inclusive"]
    }
    untaxed = net - sum(inside.values())
    entries = []
    for rate, reason in rates:
        percentage = Decimal(str(rate["percentage"]))
        amount = inside.get(rate["id"], _rounded(untaxed * percentage / 100))
        entries.append(
            {
                "amount": amount,
                "tax_behavior": "inclusive" if rate["inclusive"] else "exclusive",
                "tax_rate_details": {"tax_rate": rate["id"]},
                "taxability_reason": reason,
                "taxable_amount": 0 if reason in UNTAXED else untaxed,
                "type": "tax_rate_details",
            }
        )
    return entries


def _rounded(amount: Decimal) -> int:
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def settle(store: Store, invoice: StripeObject) -> None:
    """Before finalization: without a location an automatic-tax invoice is finalized untaxed,
    and its subscription stops computing tax until it is enabled again. A preview (a
    rehearsal) shows the draft as it is, `requires_location_inputs`."""
    automatic = invoice["automatic_tax"]
    customer = store.objects[invoice["customer"]]
    if not automatic["enabled"] or location_of(customer) is not None or store.muted:
        return
    invoice["automatic_tax"] = invoice_automatic_tax(False)
    invoice["automatic_tax"]["disabled_reason"] = "finalization_requires_location_inputs"
    subscription_id = ((invoice["parent"] or {}).get("subscription_details") or {}).get(
        "subscription"
    )
    subscription = store.find("subscription", subscription_id or "")
    if subscription is not None and subscription["automatic_tax"]["enabled"]:
        before = copy.deepcopy(subscription)
        subscription["automatic_tax"] = automatic_tax_of(False)
        subscription["automatic_tax"]["disabled_reason"] = "requires_location_inputs"
        store.emit(
            "customer.subscription.updated", subscription, changed_fields(before, subscription)
        )
