"""Webhook delivery misbehaving on purpose (`/_sandbox/webhook_endpoints/{id}/chaos`): events
sent twice, out of order, late, or only after failed attempts; the same with the same seed."""

import random
from collections import Counter

import stripe

from tests.sandbox.test_billing import catalog, customer_with_card
from tests.sandbox.test_time import sandbox_post


async def endpoint_with_chaos(client: stripe.StripeClient, sandbox, sink, **chaos):
    endpoint = await client.v1.webhook_endpoints.create_async(
        {"url": sink.url, "enabled_events": ["*"]}
    )
    response = await sandbox_post(
        sandbox,
        f"/_sandbox/webhook_endpoints/{endpoint.id}/chaos",
        {name: str(value).lower() for name, value in chaos.items()},
    )
    assert response.status_code == 200, response.text
    return endpoint


async def ready_to_subscribe(client: stripe.StripeClient):
    """A customer with a card and a price, made before the endpoint exists (so none of their
    events is delivered), and the ids of the events so far."""
    _, price = await catalog(client)
    customer, _ = await customer_with_card(client)
    before = {event.id for event in (await client.v1.events.list_async({"limit": 100})).data}
    return customer, price, before


async def created_since(client: stripe.StripeClient, before: set[str]) -> list[str]:
    """The ids of the events created since, oldest first."""
    events = (await client.v1.events.list_async({"limit": 100})).data
    return [event.id for event in reversed(events) if event.id not in before]


async def test_duplicates_are_delivered_twice(stripe_client, sandbox, webhook_sink):
    customer, price, before = await ready_to_subscribe(stripe_client)
    await endpoint_with_chaos(stripe_client, sandbox, webhook_sink, duplicate=1, seed=3)
    await stripe_client.v1.subscriptions.create_async(
        {"customer": customer.id, "items": [{"price": price.id}]}
    )
    created = await created_since(stripe_client, before)
    received = await webhook_sink.wait_for(2 * len(created))
    counts = Counter(event["id"] for event in received)
    assert set(counts) == set(created) and set(counts.values()) == {2}


async def test_events_go_out_one_at_a_time_in_order_by_default(
    stripe_client, sandbox, webhook_sink
):
    customer, price, before = await ready_to_subscribe(stripe_client)
    webhook_sink.delay = 0.02
    await stripe_client.v1.webhook_endpoints.create_async(
        {"url": webhook_sink.url, "enabled_events": ["*"]}
    )
    await stripe_client.v1.subscriptions.create_async(
        {"customer": customer.id, "items": [{"price": price.id}]}
    )
    created = await created_since(stripe_client, before)
    received = [event["id"] for event in await webhook_sink.wait_for(len(created))]
    assert received == created and webhook_sink.most_in_flight == 1


async def test_several_deliveries_are_in_flight_when_asked(stripe_client, sandbox, webhook_sink):
    customer, price, before = await ready_to_subscribe(stripe_client)
    webhook_sink.delay = 0.1
    sandbox.deliverer.concurrency = 4
    try:
        await stripe_client.v1.webhook_endpoints.create_async(
            {"url": webhook_sink.url, "enabled_events": ["*"]}
        )
        await stripe_client.v1.subscriptions.create_async(
            {"customer": customer.id, "items": [{"price": price.id}]}
        )
        created = await created_since(stripe_client, before)
        received = await webhook_sink.wait_for(len(created))
    finally:
        sandbox.deliverer.concurrency = 1
    assert sorted(event["id"] for event in received) == sorted(created)
    assert 1 < webhook_sink.most_in_flight <= 4


async def test_reordering_with_a_seed_is_deterministic(stripe_client, sandbox, webhook_sink):
    customer, price, before = await ready_to_subscribe(stripe_client)
    await endpoint_with_chaos(stripe_client, sandbox, webhook_sink, reorder=True, window=50, seed=7)
    await stripe_client.v1.subscriptions.create_async(
        {"customer": customer.id, "items": [{"price": price.id}]}
    )
    created = await created_since(stripe_client, before)
    received = [event["id"] for event in await webhook_sink.wait_for(len(created))]
    assert sorted(received) == sorted(created) and received != created
    # One request's events wait together and are shuffled by the seeded generator.
    order = list(range(len(created)))
    random.Random(7).shuffle(order)
    assert received == [created[index] for index in order]


async def test_fail_first_attempts_and_random_delays(stripe_client, sandbox, webhook_sink):
    customer, price, before = await ready_to_subscribe(stripe_client)
    await endpoint_with_chaos(stripe_client, sandbox, webhook_sink, fail_first=2, delay=0.05)
    await stripe_client.v1.subscriptions.create_async(
        {"customer": customer.id, "items": [{"price": price.id}]}
    )
    created = await created_since(stripe_client, before)
    received = await webhook_sink.wait_for(len(created))
    # The failed attempts were never posted: each event arrives once, after two retries.
    assert sorted(event["id"] for event in received) == sorted(created)
    assert webhook_sink.attempts == len(created)


async def test_chaos_settings_are_checked(stripe_client, sandbox, webhook_sink):
    endpoint = await endpoint_with_chaos(stripe_client, sandbox, webhook_sink)
    path = f"/_sandbox/webhook_endpoints/{endpoint.id}/chaos"
    assert (await sandbox_post(sandbox, path, {"duplicate": "2"})).status_code == 400
    assert (await sandbox_post(sandbox, path, {"fail_first": "many"})).status_code == 400
    missing = await sandbox_post(sandbox, "/_sandbox/webhook_endpoints/we_nope/chaos", {})
    assert missing.status_code == 404
    settings = await sandbox_post(sandbox, path, {"reorder": "true", "seed": "1"})
    assert settings.json()["chaos"]["reorder"] is True
