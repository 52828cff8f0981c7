"""Raw card data must never enter the gateway: a card number or a CVC anywhere in any input
is refused before it is used, logged or stored.

A digit run is a card number only as a card network issues them: its prefix, a length that
network uses, and a valid Luhn check digit. A run of 12-19 digits alone is not one: a
millisecond timestamp is 13 digits starting with 1, and one in ten passes Luhn. Ids and
idempotency keys are read like any text, since a key holding a card number would be stored
and sent to Stripe; with this rule, keys built from timestamps or UUIDs never match."""

import dataclasses
import re
from typing import Any

from services.errors import DomainError, ErrorCode

# 12 to 19 digits, optionally grouped by spaces or dashes, not inside a longer number; a
# dash or space next to it that does not continue the number is a separator ("key-4242…").
CARD_NUMBER = re.compile(r"(?<!\d)(?<!\d[ -])\d(?:[ -]?\d){11,18}(?!\d)(?![ -]\d)")
# (prefix range, lengths) of the networks' numbers (ISO/IEC 7812 issuer ranges).
CARD_RANGES: tuple[tuple[int, int, range], ...] = (
    (4, 4, range(13, 20)),  # Visa (13, 16, 19 issued; 13-19 allowed)
    (51, 55, range(16, 17)),  # Mastercard
    (2221, 2720, range(16, 17)),  # Mastercard 2-series
    (34, 34, range(15, 16)),  # American Express
    (37, 37, range(15, 16)),
    (300, 305, range(14, 20)),  # Diners Club
    (36, 36, range(14, 20)),
    (38, 39, range(14, 20)),
    (3528, 3589, range(16, 20)),  # JCB
    (50, 50, range(12, 20)),  # Maestro
    (56, 69, range(12, 20)),  # Maestro, Discover (6011, 644-649, 65), UnionPay (62), RuPay
    (81, 82, range(16, 20)),  # UnionPay, RuPay
)
CVC = re.compile(r"\b(?:cvc|cvv2?|cvn|csc|cid|security[ _-]?code)\b\D{0,12}\b\d{3,4}\b", re.I)


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def has_network_prefix(digits: str) -> bool:
    """True when a card network issues numbers of this prefix and length."""
    for low, high, lengths in CARD_RANGES:
        width = len(str(low))
        if len(digits) in lengths and low <= int(digits[:width]) <= high:
            return True
    return False


def is_card_number(digits: str) -> bool:
    return has_network_prefix(digits) and luhn_valid(digits)


def holds_card_number(text: str) -> bool:
    numbers = (re.sub(r"\D", "", match) for match in CARD_NUMBER.findall(text))
    return any(is_card_number(number) for number in numbers)


def looks_like_card_data(text: str) -> bool:
    """A card number in the text, or a CVC phrase such as "cvc 123"."""
    return holds_card_number(text) or CVC.search(text) is not None


def reject_card_data(value: Any, path: tuple[str, ...] = ()) -> None:
    """RAW_CARD_DATA_REJECTED if any string inside `value` holds card data (never echoed)."""
    if isinstance(value, str):
        if looks_like_card_data(value):
            raise DomainError(
                ErrorCode.RAW_CARD_DATA_REJECTED,
                "Card numbers and security codes are never accepted here; collect cards with "
                "Stripe.js and send its pm_… id",
                list(path) or None,
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            reject_card_data(item, (*path, str(key)))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            reject_card_data(item, (*path, str(index)))
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            reject_card_data(getattr(value, field.name), (*path, _input_name(field.name)))


def _input_name(name: str) -> str:
    """The name the caller used: GraphQL inputs are the camel-cased dataclass fields."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)
