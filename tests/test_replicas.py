"""`billing-gateway serve --workers 2` as a user runs it: two replicas on one port that
spend from one cost budget per caller and never answer from a stale cache, whichever of them
made the change; a replica that dies is started again, and none outlives its supervisor.

Which replica answers is chosen by stopping the other (SIGSTOP): it accepts no connection
until continued, so every new one goes to the replica left running."""

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import psutil

from tests.served import PATIENCE_SECONDS, ServedGateway, served
from tests.test_observability import samples
from tests.test_response_cache import COST as DASHBOARD_COST
from tests.test_response_cache import DASHBOARD

PAYMENT_METHODS = "{ viewer { paymentMethods { id isDefault } } }"
ATTACH = """
mutation ($input: AttachPaymentMethodInput!) {
  attachPaymentMethod(input: $input) { paymentMethod { id } userErrors { code } }
}
"""
# Two dashboards fit, a third does not; refilling it would take a day.
LIMITS = {
    "GRAPHQL_MAX_COST": "100",
    "GRAPHQL_COST_BUDGET": "100",
    "GRAPHQL_COST_REFILL_PER_SECOND": "0.001",
}


def replicas(gateway: ServedGateway) -> list[psutil.Process]:
    supervisor = psutil.Process(gateway.process.pid)
    return [child for child in supervisor.children() if "--socket-fd" in " ".join(child.cmdline())]


@contextlib.contextmanager
def only(replica: psutil.Process, others: list[psutil.Process]) -> Iterator[None]:
    """Every new connection answered by `replica`: the others stopped meanwhile."""
    stopped = [other for other in others if other.pid != replica.pid]
    for other in stopped:
        other.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for other in stopped:
            other.send_signal(signal.SIGCONT)


async def post(gateway: ServedGateway, query: str, token: str, **variables: Any) -> dict:
    async with httpx.AsyncClient(timeout=PATIENCE_SECONDS) as client:
        response = await client.post(
            gateway.url,
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {token}"},
        )
    return response.json()


async def test_two_replicas_share_one_budget_and_one_cache_and_are_restarted():
    async with served(LIMITS, args=["--workers", "2"]) as gateway:
        first, second = both = replicas(gateway)
        assert len(both) == 2
        bob, ada = await gateway.token("bob"), await gateway.token("ada")

        # One budget: a dashboard through each replica spends it, so a third is refused.
        with only(first, both):
            answered = await post(gateway, DASHBOARD, bob)
        assert answered["extensions"]["cost"]["budget"]["available"] == 100 - DASHBOARD_COST
        with only(second, both):
            answered = await post(gateway, DASHBOARD, bob)
        assert answered["extensions"]["cost"]["budget"]["available"] == 100 - 2 * DASHBOARD_COST
        with only(first, both):
            refused = await post(gateway, DASHBOARD, bob)
        assert refused["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        with only(first, both):
            assert await dashboards_served(gateway) == 2
        with only(second, both):
            assert await dashboards_served(gateway) == 1

        # One cache: the first replica's answer, read twice, is not kept past a change the
        # second made.
        with only(first, both):
            assert (await post(gateway, PAYMENT_METHODS, ada))["data"]["viewer"] == {
                "paymentMethods": []
            }
            assert (await post(gateway, PAYMENT_METHODS, ada))["data"]["viewer"] == {
                "paymentMethods": []
            }
        with only(second, both):
            attached = await post(
                gateway, ATTACH, ada, input={"paymentMethodId": "pm_card_visa", "makeDefault": True}
            )
        method = attached["data"]["attachPaymentMethod"]["paymentMethod"]
        with only(first, both):
            after = await post(gateway, PAYMENT_METHODS, ada)
        assert after["data"]["viewer"]["paymentMethods"] == [
            {"id": method["id"], "isDefault": True}
        ]

        # A replica killed is replaced, and the port keeps answering.
        first.kill()
        async with asyncio.timeout(PATIENCE_SECONDS):
            while len(now := replicas(gateway)) < 2 or first.pid in {r.pid for r in now}:
                await asyncio.sleep(0.2)
        replacement = next(r for r in now if r.pid != second.pid)
        with only(replacement, now):
            await wait_answered(gateway, ada)

        # The supervisor killed outright takes its replicas with it.
        await gateway.kill()
        gone, alive = await asyncio.to_thread(psutil.wait_procs, now, PATIENCE_SECONDS)
        assert alive == [] and len(gone) == 2


async def dashboards_served(gateway: ServedGateway) -> float:
    """What the replica answering says it served (each keeps its own metrics)."""
    async with httpx.AsyncClient(timeout=PATIENCE_SECONDS) as client:
        found = samples((await client.get(f"{gateway.base_url}/metrics")).text)
    return found.get(
        ("billing_graphql_operations_total", (("operation", "Dashboard"), ("type", "query"))), 0
    )


async def wait_answered(gateway: ServedGateway, token: str) -> None:
    """A replica just started answers once its start-up is over."""
    async with asyncio.timeout(PATIENCE_SECONDS):
        while True:
            with contextlib.suppress(httpx.HTTPError):
                answer = await post(gateway, PAYMENT_METHODS, token)
                if "data" in answer:
                    return
            await asyncio.sleep(0.2)
