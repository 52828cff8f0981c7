"""Scalars of the contract; DateTime is Strawberry's own (ISO-8601 with offset)."""

from typing import NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition

BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1


def _parse_bigint(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError("BigInt must be a whole number")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.lstrip("-").isdigit() and value.isascii():
        number = int(value)
    else:
        raise ValueError("BigInt must be a whole number, as a string of digits or an integer")
    if not BIGINT_MIN <= number <= BIGINT_MAX:
        raise ValueError("BigInt is outside the 64-bit range")
    return number


BigInt = NewType("BigInt", int)

BIGINT_SCALAR = strawberry.scalar(
    name="BigInt",
    description="A whole number that may exceed 32 bits, serialized as a JSON string of digits.",
    serialize=str,
    parse_value=_parse_bigint,
)

SCALAR_MAP: dict[object, ScalarDefinition] = {BigInt: BIGINT_SCALAR}
