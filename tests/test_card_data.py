"""The card-data filter: every network's numbers and CVC phrases refused, digit runs that no
network issues (timestamps, order numbers) accepted."""

import pytest

from services.card_data import looks_like_card_data
from tests.billing.test_payment_mutations import codes, pay, signed_in

# Stripe's test numbers, one per network and length.
CARD_NUMBERS = [
    "4242424242424242",  # Visa
    "4222222222222",  # Visa, 13 digits
    "5555 5555 5555 4444",  # Mastercard
    "2223-0031-2200-3222",  # Mastercard 2-series
    "378282246310005",  # American Express
    "6011111111111117",  # Discover
    "3056930009020004",  # Diners Club
    "36227206271667",  # Diners Club, 14 digits
    "3566002020360505",  # JCB
    "6200000000000005",  # UnionPay
    "6759649826438453",  # Maestro
]
NOT_CARD_NUMBERS = [
    "order-1765000000007",  # a millisecond timestamp that passes Luhn
    "render job 1765000000007",
    "1765000000007123",  # microseconds, Luhn-valid: no network starts with 1
    "invoice 9000000000000001",  # Luhn-valid, no network issues 9
    "4242424242424241",  # Visa's prefix, Luhn fails
    "37828224631000",  # Amex's prefix, wrong length
]


@pytest.mark.parametrize("number", CARD_NUMBERS)
def test_every_networks_numbers_are_card_data(number):
    assert looks_like_card_data(number)
    assert looks_like_card_data(f"key-{number}")
    assert looks_like_card_data(f"paid with {number} yesterday")


@pytest.mark.parametrize("text", NOT_CARD_NUMBERS)
def test_digit_runs_no_network_issues_are_not_card_data(text):
    assert not looks_like_card_data(text)


@pytest.mark.parametrize("text", ["cvc 123", "CVV: 0737", "security code 123"])
def test_cvc_phrases_are_card_data(text):
    assert looks_like_card_data(text)


async def test_a_timestamp_key_and_description_are_accepted(client, billing, token_for):
    token = token_for("alice")
    await signed_in(client, token)
    data = await pay(
        client,
        token,
        paymentMethodId="pm_card_visa",
        idempotencyKey="order-1765000000007",
        description="render job 1765000000007",
    )
    assert codes(data) == []
    assert data["transaction"]["status"] == "SUCCEEDED"
    assert data["transaction"]["description"] == "render job 1765000000007"


async def test_a_card_number_in_an_idempotency_key_is_still_refused(client, billing, token_for):
    token = token_for("alice")
    await signed_in(client, token)
    data = await pay(client, token, idempotencyKey="order-378282246310005")
    assert codes(data) == [("RAW_CARD_DATA_REJECTED", ["idempotencyKey"])]
