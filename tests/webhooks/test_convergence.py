"""Convergence: whatever order Stripe delivers a lifecycle's events in, duplicated or not,
and however many workers apply them at once, the mirror ends as in-order delivery leaves it
(which is what Stripe says now)."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.stripe.client import StripeApi
from tests.webhooks import lifecycles
from tests.webhooks.lifecycles import (
    Recorded,
    apply_all,
    apply_concurrently,
    clear_mirror,
    mirror_state,
    stripe_state,
)

EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def api(settings, billing) -> StripeApi:
    return StripeApi(settings, billing.sandbox.url)


async def in_order(db, billing, api, life: lifecycles.Life) -> tuple[Recorded, dict]:
    """A lifecycle's events and the mirror in-order delivery leaves (checked against Stripe)."""
    recorded = await lifecycles.record(db, api, billing, life)
    await apply_all(db, api, recorded.events)
    expected = await mirror_state(db, recorded.customer.account_id)
    assert expected == await stripe_state(billing, recorded.customer.stripe_id)
    return recorded, expected


@pytest.fixture
async def happy(db, billing, api) -> tuple[Recorded, dict]:
    return await in_order(db, billing, api, lifecycles.happy_life)


@pytest.fixture
async def recovery(db, billing, api) -> tuple[Recorded, dict]:
    return await in_order(db, billing, api, lifecycles.recovery_life)


@pytest.fixture(params=["three_d_secure_life", "renewal_life"])
async def other(request, db, billing, api) -> tuple[Recorded, dict]:
    """3-D Secure, and a test-clock renewal (events dated ahead of the wall clock)."""
    return await in_order(db, billing, api, getattr(lifecycles, request.param))


def deliveries(count: int) -> st.SearchStrategy[list[int]]:
    """Indexes of the events in any order, some of them more than once."""
    duplicates = st.lists(st.integers(0, count - 1), max_size=count // 2)
    return duplicates.flatmap(lambda extra: st.permutations(list(range(count)) + extra))


async def converges(db, api, recorded: Recorded, expected: dict, order: list[int]) -> None:
    await clear_mirror(db)
    await apply_concurrently(db, api, [recorded.events[index] for index in order])
    assert await mirror_state(db, recorded.customer.account_id) == expected


@EXAMPLES
@given(data=st.data())
async def test_any_order_with_duplicates_converges_happy(db, api, happy, data):
    recorded, expected = happy
    order = data.draw(deliveries(len(recorded.events)))
    await converges(db, api, recorded, expected, order)


@settings(EXAMPLES, max_examples=15)
@given(data=st.data())
async def test_any_order_with_duplicates_converges_recovery(db, api, recovery, data):
    recorded, expected = recovery
    order = data.draw(deliveries(len(recorded.events)))
    await converges(db, api, recorded, expected, order)


@settings(EXAMPLES, max_examples=10)
@given(data=st.data())
async def test_any_order_with_duplicates_converges_other(db, api, other, data):
    recorded, expected = other
    order = data.draw(deliveries(len(recorded.events)))
    await converges(db, api, recorded, expected, order)


async def test_newest_first_converges(db, api, happy):
    recorded, expected = happy
    await converges(db, api, recorded, expected, list(reversed(range(len(recorded.events)))))
