"""Money stays in integer minor units; display follows the currency's exponent."""

import pytest

from schema.scalars import _parse_bigint
from services.money import decimal_string, formatted


@pytest.mark.parametrize(
    "amount, currency, decimal, display",
    [
        (1250, "usd", "12.50", "$12.50"),
        (1250, "JPY", "1250", "¥1,250"),
        (1234567, "eur", "12345.67", "€12,345.67"),
        (-300, "gbp", "-3.00", "-£3.00"),
        (5, "usd", "0.05", "$0.05"),
        (1500, "kwd", "1.500", "1.500 KWD"),
        (999, "chf", "9.99", "9.99 CHF"),
        (0, "usd", "0.00", "$0.00"),
    ],
)
def test_minor_units_render_per_currency(amount, currency, decimal, display):
    assert decimal_string(amount, currency) == decimal
    assert formatted(amount, currency) == display


@pytest.mark.parametrize(
    "value, parsed", [("9223372036854775807", 2**63 - 1), (42, 42), ("-7", -7)]
)
def test_bigint_accepts_whole_numbers(value, parsed):
    assert _parse_bigint(value) == parsed


@pytest.mark.parametrize("value", ["1.5", 1.5, True, "", "12a", "9223372036854775808", "١٢"])
def test_bigint_refuses_anything_else(value):
    with pytest.raises(ValueError):
        _parse_bigint(value)
