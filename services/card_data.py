"""Raw card data must never enter the gateway: anything that looks like a card number or a
CVC, anywhere in any input, is refused before it is used, logged or stored."""

import dataclasses
import re
from typing import Any

from services.errors import DomainError, ErrorCode

# 12 to 19 digits, optionally grouped by spaces or dashes, not inside a longer number; a
# dash or space next to it that does not continue the number is a separator ("key-4242…").
CARD_NUMBER = re.compile(r"(?<!\d)(?<!\d[ -])\d(?:[ -]?\d){11,18}(?!\d)(?![ -]\d)")
CVC = re.compile(r"\b(?:cvc|cvv2?|cvn|csc|cid|security[ _-]?code)\b\D{0,12}\b\d{3,4}\b", re.I)


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def looks_like_card_data(text: str) -> bool:
    numbers = (re.sub(r"\D", "", match) for match in CARD_NUMBER.findall(text))
    return any(luhn_valid(number) for number in numbers) or CVC.search(text) is not None


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
