"""The sandbox's wire format, errors, idempotency, pagination and signed delivery, via the SDK."""

import httpx
import pytest
import stripe

from tests.sandbox.conftest import WEBHOOK_SECRET


async def test_customers_round_trip(stripe_client: stripe.StripeClient):
    created = await stripe_client.v1.customers.create_async(
        {"email": "ada@example.com", "name": "Ada", "metadata": {"user_id": "u1"}}
    )
    assert created.id.startswith("cus_") and created.email == "ada@example.com"
    fetched = await stripe_client.v1.customers.retrieve_async(created.id)
    assert fetched.metadata["user_id"] == "u1"
    updated = await stripe_client.v1.customers.update_async(
        created.id, {"name": "Ada L.", "metadata": {"user_id": ""}}
    )
    assert updated.name == "Ada L." and updated.metadata.to_dict() == {}
    deleted = await stripe_client.v1.customers.delete_async(created.id)
    assert deleted.deleted is True
    assert (await stripe_client.v1.customers.retrieve_async(created.id)).deleted is True


async def test_an_unknown_customer_is_a_404_resource_missing(stripe_client):
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await stripe_client.v1.customers.retrieve_async("cus_missing")
    assert raised.value.http_status == 404 and raised.value.code == "resource_missing"
    assert raised.value.param == "id"


async def test_an_unknown_parameter_is_refused_as_stripe_does(stripe_client):
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await stripe_client.v1.customers.create_async({"emial": "typo@example.com"})  # type: ignore[typeddict-unknown-key]
    assert raised.value.http_status == 400
    assert raised.value.code == "parameter_unknown" and raised.value.param == "emial"


async def test_requests_need_a_test_key(sandbox):
    async with httpx.AsyncClient(base_url=sandbox.url) as client:
        missing = await client.get("/v1/customers")
        live = await client.get("/v1/customers", headers={"Authorization": "Bearer sk_live_x"})
        unknown = await client.get(
            "/v1/nothing_here", headers={"Authorization": "Bearer sk_test_x"}
        )
        old = await client.get(
            "/v1/customers",
            headers={"Authorization": "Bearer sk_test_x", "Stripe-Version": "2019-12-03"},
        )
    assert missing.status_code == 401 and live.status_code == 401
    assert old.status_code == 400 and "2019-12-03" in old.json()["error"]["message"]
    assert (
        unknown.status_code == 404
        and "Unrecognized request URL" in unknown.json()["error"]["message"]
    )


async def test_idempotent_retries_replay_and_other_params_are_refused(stripe_client, sandbox):
    first = await stripe_client.v1.customers.create_async(
        {"email": "a@x.io"}, {"idempotency_key": "k1"}
    )
    again = await stripe_client.v1.customers.create_async(
        {"email": "a@x.io"}, {"idempotency_key": "k1"}
    )
    assert again.id == first.id
    assert len(sandbox.store.ids_by_type["customer"]) == 1
    with pytest.raises(stripe.IdempotencyError):
        await stripe_client.v1.customers.create_async(
            {"email": "b@x.io"}, {"idempotency_key": "k1"}
        )


async def test_lists_page_newest_first(stripe_client):
    ids = [
        (await stripe_client.v1.customers.create_async({"email": f"{n}@x.io"})).id for n in range(5)
    ]
    first = await stripe_client.v1.customers.list_async({"limit": 2})
    assert [c.id for c in first.data] == [ids[4], ids[3]] and first.has_more
    rest = await stripe_client.v1.customers.list_async(
        {"limit": 10, "starting_after": first.data[-1].id}
    )
    assert [c.id for c in rest.data] == [ids[2], ids[1], ids[0]] and not rest.has_more
    by_email = await stripe_client.v1.customers.list_async({"email": "3@x.io"})
    assert [c.id for c in by_email.data] == [ids[3]]


async def test_events_are_signed_and_delivered_and_retried(stripe_client, sandbox, webhook_sink):
    endpoint = await stripe_client.v1.webhook_endpoints.create_async(
        {"url": webhook_sink.url, "enabled_events": ["customer.created", "customer.updated"]}
    )
    assert endpoint.secret == WEBHOOK_SECRET
    webhook_sink.failures_left = 2
    customer = await stripe_client.v1.customers.create_async({"email": "w@x.io"})

    (delivered,) = await webhook_sink.wait_for(1)
    headers, body = webhook_sink.received[0]
    event = stripe.Webhook.construct_event(body, headers["stripe-signature"], WEBHOOK_SECRET)
    assert event.type == "customer.created" and event.data.object.id == customer.id
    assert webhook_sink.attempts == 3  # two failures, then the retry that was accepted
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, headers["stripe-signature"], "whsec_wrong")

    events = await stripe_client.v1.events.list_async({"type": "customer.*"})
    assert [e.type for e in events.data] == ["customer.created"]
    assert (await stripe_client.v1.events.retrieve_async(event.id)).data.object.email == "w@x.io"


async def test_injected_faults_reach_the_sdk_as_stripe_errors(stripe_client, sandbox):
    async with httpx.AsyncClient(base_url=sandbox.url) as browser:
        await browser.post(
            "/_sandbox/faults", data={"status": "429", "path": "/v1/customers", "count": "1"}
        )
        await browser.post(
            "/_sandbox/faults", data={"status": "503", "path": "/v1/customers", "method": "POST"}
        )
    with pytest.raises(stripe.RateLimitError):
        await stripe_client.v1.customers.list_async()
    with pytest.raises(stripe.APIError) as raised:
        await stripe_client.v1.customers.create_async({"email": "x@example.com"})
    assert raised.value.http_status == 503
    # Each fault was used up, and nothing was created while Stripe "failed".
    assert (await stripe_client.v1.customers.list_async()).data == []


async def test_a_delay_fault_makes_the_client_time_out(sandbox):
    client = stripe.StripeClient(
        "sk_test_x",
        base_addresses={"api": sandbox.url},
        http_client=stripe.HTTPXClient(timeout=0.2),
        max_network_retries=0,
    )
    async with httpx.AsyncClient(base_url=sandbox.url) as browser:
        await browser.post("/_sandbox/faults", data={"delay": "1", "path": "/v1/customers"})
    with pytest.raises(stripe.APIConnectionError):
        await client.v1.customers.list_async()
