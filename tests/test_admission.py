"""services/admission.py: a process executes at most GRAPHQL_CONCURRENCY operations at once,
the others in arrival order, and an operation waiting on Stripe holds no place."""

import asyncio

import pytest

from gateway.settings import ConfigurationError, Settings
from services.admission import Admission, give_up_place
from services.stripe.client import StripeApi


async def _run_all(admission: Admission, count: int, work) -> tuple[list[int], int]:
    """Start `count` operations in order; the order they were admitted in, and the most
    that ran at once."""
    admitted: list[int] = []
    running, most = 0, 0

    async def operation(number: int) -> None:
        nonlocal running, most
        async with admission.admitted():
            admitted.append(number)
            running += 1
            most = max(most, running)
            await work(number)
            running -= 1

    await asyncio.gather(*(operation(number) for number in range(count)))
    return admitted, most


async def test_at_most_the_limit_run_at_once_in_arrival_order():
    async def work(_: int) -> None:
        for _ in range(3):
            await asyncio.sleep(0)

    admitted, most = await _run_all(Admission(2), 8, work)
    assert most == 2
    assert admitted == list(range(8))


async def test_no_limit_runs_everything_at_once():
    async def work(_: int) -> None:
        await asyncio.sleep(0)

    _, most = await _run_all(Admission(0), 8, work)
    assert most == 8


async def test_a_stripe_call_gives_the_place_up_for_others(settings):
    """With one place, an operation waiting on Stripe lets the next one run meanwhile;
    it finishes without waiting for a place again."""
    stripe = StripeApi(settings, "http://127.0.0.1:9")
    admission = Admission(1)
    answered = asyncio.Event()
    order: list[str] = []

    async def stripe_answer() -> str:
        await answered.wait()  # Stripe answers once the query is done
        return "ok"

    async def mutation() -> None:
        async with admission.admitted():
            order.append("mutation calls Stripe")
            assert await stripe.call("retrieve_customer", stripe_answer()) == "ok"
            order.append("mutation done")

    async def query() -> None:
        await asyncio.sleep(0)  # after the mutation took the place
        async with admission.admitted():
            order.append("query")
            answered.set()

    try:
        await asyncio.wait_for(asyncio.gather(mutation(), query()), 5)
    finally:
        await stripe.close()
    assert order == ["mutation calls Stripe", "query", "mutation done"]


async def test_a_place_given_up_twice_frees_one_place():
    admission = Admission(1)
    async with admission.admitted():
        give_up_place()
        give_up_place()

    async def work(_: int) -> None:
        await asyncio.sleep(0)

    _, most = await _run_all(admission, 4, work)
    assert most == 1


def test_a_negative_limit_is_refused():
    with pytest.raises(ConfigurationError, match="GRAPHQL_CONCURRENCY"):
        Settings(billing_env="test", graphql_concurrency=-1)
