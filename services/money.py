"""Money is an integer amount in the currency's minor unit, as Stripe counts it."""

import functools

# Stripe's zero-decimal and three-decimal currencies; every other one has two decimals.
ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
THREE_DECIMAL = frozenset("bhd jod kwd omr tnd".split())
SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "inr": "₹", "krw": "₩", "cny": "¥"}


def minor_unit_digits(currency: str) -> int:
    code = currency.lower()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


@functools.lru_cache(maxsize=4096)  # prices repeat: a page of invoices has a few amounts
def decimal_string(amount: int, currency: str) -> str:
    """Major units as a plain decimal string: 1250 USD -> "12.50", 1250 JPY -> "1250"."""
    digits = minor_unit_digits(currency)
    sign = "-" if amount < 0 else ""
    whole, fraction = divmod(abs(amount), 10**digits)
    if digits == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{fraction:0{digits}d}"


@functools.lru_cache(maxsize=4096)
def formatted(amount: int, currency: str) -> str:
    """A display string: "$1,234.50", "-€3.00", or "1,234.50 CHF" without a known symbol."""
    digits = minor_unit_digits(currency)
    whole, fraction = divmod(abs(amount), 10**digits)
    number = f"{whole:,}" + (f".{fraction:0{digits}d}" if digits else "")
    sign = "-" if amount < 0 else ""
    symbol = SYMBOLS.get(currency.lower())
    if symbol is None:
        return f"{sign}{number} {currency.upper()}"
    return f"{sign}{symbol}{number}"
