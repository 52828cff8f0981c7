"""Publishing events and delivering them to a real endpoint on loopback."""

import asyncio
import ipaddress
import json
import re
import socket
from datetime import UTC, datetime

import aiohttp
import pytest
from sqlalchemy import text
from standardwebhooks.webhooks import Webhook

from db.database import Database
from gateway.settings import Settings
from services import product_webhooks
from services.product_webhooks import MAX_ERROR_CHARS, body_of, deliver_next

from .conftest import (
    HANG,
    HUGE,
    Receiver,
    deliver_all,
    delivered_count,
    deliveries,
    execute,
    make_account,
    make_due,
    make_endpoint,
    production_like,
    publish,
    rows,
    webhook_settings,
)

# ---- publishing ----


async def test_publish_stores_an_event_once_per_cause(db: Database, receiver: Receiver) -> None:
    # Given an endpoint
    await make_endpoint(db, receiver.url)

    # When the same cause is published twice (a Stripe event applied again)
    await publish(db, "invoice.paid:in_1", data={"invoice": "in_1"})
    await publish(db, "invoice.paid:in_1", data={"invoice": "in_1"})

    # Then one event and one delivery exist
    events = await rows(db, "SELECT message_id, type, payload FROM product_events")
    assert len(events) == 1
    assert len(await deliveries(db)) == 1
    message_id, event_type, payload = events[0]
    assert re.fullmatch(r"msg_[0-9a-f]{32}", message_id)
    assert payload["id"] == message_id and payload["type"] == event_type == "invoice.paid"
    # Stored with its data sealed (it names the customer), opened for the body sent.
    assert "data" not in payload and json.loads(body_of(payload))["data"] == {"invoice": "in_1"}


async def test_only_enabled_endpoints_taking_the_type_are_owed_it(
    db: Database, receiver: Receiver
) -> None:
    # Given endpoints for everything, for the type, for another type, disabled and deleted
    everything, _ = await make_endpoint(db, receiver.url + "/all")
    this_type, _ = await make_endpoint(db, receiver.url + "/paid", ["invoice.paid"])
    await make_endpoint(db, receiver.url + "/other", ["payment.failed"])
    disabled, _ = await make_endpoint(db, receiver.url + "/disabled")
    deleted, _ = await make_endpoint(db, receiver.url + "/deleted")
    await execute(
        db, f"UPDATE product_webhook_endpoints SET enabled = false WHERE id = {disabled.id}"
    )
    async with db.session() as session:
        await product_webhooks.delete_endpoint(session, endpoint_id=deleted.id)

    # When an invoice.paid event is published
    await publish(db, "invoice.paid:in_2")

    # Then only the first two are owed it
    assert sorted(row.endpoint_id for row in await deliveries(db)) == [everything.id, this_type.id]


async def test_without_endpoints_an_event_is_stored_and_owed_to_nobody(db: Database) -> None:
    await publish(db, "payment.failed:pi_1", type="payment.failed")

    assert len(await rows(db, "SELECT id FROM product_events")) == 1
    assert await deliveries(db) == []
    async with db.session() as session:
        assert await product_webhooks.depth(session) == 0


async def test_publish_is_part_of_the_callers_transaction(db: Database, receiver: Receiver) -> None:
    await make_endpoint(db, receiver.url)

    # When the cause's transaction rolls back
    async with db.session() as session, session.begin():
        await product_webhooks.publish(
            session, type="invoice.paid", cause="invoice.paid:in_3", account_id=None, data={}
        )
        await session.rollback()

    # Then nothing was published
    assert await rows(db, "SELECT id FROM product_events") == []
    assert await deliveries(db) == []


async def test_publish_runs_in_the_webhook_workers_driver_transaction(
    db: Database, receiver: Receiver
) -> None:
    await make_endpoint(db, receiver.url)
    account = await make_account(db)
    at = datetime(2026, 12, 7, 10, 30, 1, 250000, tzinfo=UTC)

    async with db.driver_transaction() as (session, _driver):
        await product_webhooks.publish(
            session,
            type="access.updated",
            cause="access.updated:evt_1",
            account_id=account.id,
            data={"access": "active"},
            occurred_at=at,
        )

    [event] = await rows(db, "SELECT account_id, payload FROM product_events")
    assert event.account_id == account.id
    assert event.payload["timestamp"] == "2026-12-07T10:30:01.250000Z"
    [delivery] = await deliveries(db)
    assert delivery.account_id == account.id and delivery.status == "pending"


async def test_an_unknown_event_type_is_a_programming_error(db: Database) -> None:
    async with db.session() as session:
        with pytest.raises(ValueError):
            await product_webhooks.publish(
                session, type="invoice.created", cause="x", account_id=None, data={}
            )


# ---- delivering ----


async def test_a_delivery_is_signed_as_standard_webhooks_say(
    db: Database, receiver: Receiver, settings: Settings, http: aiohttp.ClientSession
) -> None:
    # Given an endpoint owed an event
    endpoint, secret = await make_endpoint(db, receiver.url)
    await publish(db, "invoice.paid:in_4", data={"invoice": "in_4", "amount": 1200})
    sent_before = delivered_count(endpoint.id, "sent")

    # When a worker delivers it
    assert await deliver_next(db, settings, http) == 1

    # Then the product's backend verifies it with the spec's own library
    [request] = receiver.requests
    payload = Webhook(secret).verify(request.body, request.headers)
    [event] = await rows(db, "SELECT message_id, payload FROM product_events")
    assert payload == json.loads(body_of(event.payload))
    assert request.headers["webhook-id"] == event.message_id == payload["id"]
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == product_webhooks.USER_AGENT
    [delivery] = await deliveries(db)
    assert (delivery.status, delivery.response_status, delivery.attempts) == ("sent", 200, 1)
    assert delivery.delivered_at is not None and delivery.last_error is None
    assert delivered_count(endpoint.id, "sent") == sent_before + 1
    assert await deliver_next(db, settings, http) == 0


async def test_a_retry_sends_the_same_id_and_body(
    db: Database, receiver: Receiver, settings: Settings, http: aiohttp.ClientSession
) -> None:
    # Given an endpoint that fails once
    _, secret = await make_endpoint(db, receiver.url)
    await publish(db, "invoice.paid:in_5", data={"b": [1, 2], "a": {"z": None, "y": "é"}})
    receiver.answer(500)

    # When it is delivered, and delivered again when due
    await deliver_next(db, settings, http)
    [failed] = await deliveries(db)
    await make_due(db)
    await deliver_next(db, settings, http)

    # Then both attempts carried the same webhook-id and the same bytes, both signed
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    for request in (first, second):
        Webhook(secret).verify(request.body, request.headers)
    assert failed.status == "pending" and failed.response_status == 500
    assert failed.last_error == "HTTP 500: answered 500"
    [delivered] = await deliveries(db)
    assert (delivered.status, delivered.attempts) == ("sent", 2)


async def test_backoff_doubles_up_to_its_ceiling(
    db: Database, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    settings = webhook_settings(
        product_webhook_retry_base_seconds=10, product_webhook_retry_max_seconds=35
    )
    endpoint, _ = await make_endpoint(db, receiver.url)
    await publish(db, "invoice.paid:in_6")
    receiver.answer(500, 503, 502, 500)
    retries_before = delivered_count(endpoint.id, "retry")

    delays = []
    for _ in range(4):
        await make_due(db)
        assert await deliver_next(db, settings, http) == 1
        [delivery] = await deliveries(db)
        delays.append(float(delivery.due_in))

    # 10, 20, 40 → 35, 80 → 35 seconds (less the time the attempt took)
    for delay, expected in zip(delays, [10, 20, 35, 35], strict=True):
        assert expected - 3 < delay <= expected
    assert delivered_count(endpoint.id, "retry") == retries_before + 4
    assert product_webhooks.backoff(settings, 1).total_seconds() == 10
    assert product_webhooks.backoff(settings, 10_000).total_seconds() == 35


async def test_a_delivery_is_given_up_after_the_retry_window(
    db: Database, receiver: Receiver, settings: Settings, http: aiohttp.ClientSession
) -> None:
    # Given a delivery 73 hours old, past the 72 hours of retries
    endpoint, _ = await make_endpoint(db, receiver.url)
    await publish(db, "invoice.paid:in_7")
    await publish(db, "invoice.paid:in_8")
    await execute(
        db,
        "UPDATE product_webhook_deliveries SET created_at = now() - interval '73 hours' "
        "WHERE event_id = 1",
    )
    failed_before = delivered_count(endpoint.id, "failed")
    receiver.answer(500, 500)

    # When both fail
    assert await deliver_all(db, settings, http) == 2

    # Then the old one is given up, the young one will be tried again
    old, young = await deliveries(db)
    assert (old.status, old.last_error) == ("failed", "HTTP 500: answered 500")
    assert young.status == "pending"
    assert delivered_count(endpoint.id, "failed") == failed_before + 1


async def test_410_disables_the_endpoint_and_skips_what_it_was_owed(
    db: Database, receiver: Receiver, settings: Settings, http: aiohttp.ClientSession
) -> None:
    # Given an endpoint owed three events, and another endpoint
    gone, _ = await make_endpoint(db, receiver.url + "/gone", ["invoice.paid"])
    await make_endpoint(db, receiver.url + "/other", ["payment.failed"])
    for n in range(3):
        await publish(db, f"invoice.paid:in_g{n}")
    await publish(db, "payment.failed:pi_g", type="payment.failed")
    gone_before = delivered_count(gone.id, "gone")
    receiver.answer(410)

    # When the first delivery is answered 410 Gone
    assert await deliver_all(db, settings, http) == 2

    # Then the endpoint is disabled, its deliveries skipped, the other endpoint served
    first, second, third, others = await deliveries(db)
    assert (first.status, first.response_status) == ("skipped", 410)
    assert first.last_error == "410 Gone from the endpoint"
    assert second.status == third.status == "skipped"
    assert others.status == "sent"
    assert len(receiver.requests) == 2
    [endpoint] = await rows(
        db, f"SELECT enabled, disabled_reason FROM product_webhook_endpoints WHERE id = {gone.id}"
    )
    assert endpoint == (False, "410 Gone from the endpoint")
    assert delivered_count(gone.id, "gone") == gone_before + 1
    # and it is owed nothing more
    await publish(db, "invoice.paid:in_g9")
    assert [row.endpoint_id for row in await deliveries(db) if row.status == "pending"] == []


async def test_each_customers_deliveries_go_in_order(
    db: Database, receiver: Receiver, settings: Settings, http: aiohttp.ClientSession
) -> None:
    # Given two events of customer A and one of customer B, A's first failing once
    await make_endpoint(db, receiver.url)
    a, b = await make_account(db), await make_account(db)
    await publish(db, "invoice.paid:a1", account_id=a.id)
    await publish(db, "invoice.paid:a2", account_id=a.id)
    await publish(db, "invoice.paid:b1", account_id=b.id)
    await publish(db, "invoice.paid:none", account_id=None)
    receiver.answer(500)

    # When workers deliver what is due: A's second waits while A's first is retrying
    assert await deliver_all(db, settings, http) == 3
    causes = [json.loads(request.body)["data"]["cause"] for request in receiver.requests]
    assert causes == ["invoice.paid:a1", "invoice.paid:b1", "invoice.paid:none"]

    # and once A's first is due again and sent, A's second follows
    await make_due(db)
    assert await deliver_all(db, settings, http) == 2
    causes = [json.loads(request.body)["data"]["cause"] for request in receiver.requests[3:]]
    assert causes == ["invoice.paid:a1", "invoice.paid:a2"]
    assert {row.status for row in await deliveries(db)} == {"sent"}


async def test_a_given_up_delivery_no_longer_holds_its_customer(
    db: Database, receiver: Receiver, settings: Settings, http: aiohttp.ClientSession
) -> None:
    await make_endpoint(db, receiver.url)
    a = await make_account(db)
    await publish(db, "invoice.paid:a1", account_id=a.id)
    await publish(db, "invoice.paid:a2", account_id=a.id)
    await execute(
        db,
        "UPDATE product_webhook_deliveries SET created_at = now() - interval '80 hours' "
        "WHERE event_id = 1",
    )
    receiver.answer(500)

    assert await deliver_all(db, settings, http) == 2

    first, second = await deliveries(db)
    assert (first.status, second.status) == ("failed", "sent")


async def test_a_slow_endpoint_is_given_up_on_at_the_time_limit(
    db: Database, receiver: Receiver
) -> None:
    settings = webhook_settings(product_webhook_timeout_seconds=0.5)
    await make_endpoint(db, receiver.url)
    await publish(db, "invoice.paid:in_slow")
    receiver.answer(HANG)

    async with product_webhooks.http_client(settings) as http:
        # The bound only keeps a broken limit from hanging the test run.
        assert await asyncio.wait_for(deliver_next(db, settings, http), 10) == 1

    [delivery] = await deliveries(db)
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("pending", 1, None)
    assert delivery.last_error == "timed out after 0.5 s"


async def test_only_the_start_of_a_huge_answer_is_read(
    db: Database, receiver: Receiver, settings: Settings, http: aiohttp.ClientSession
) -> None:
    # Given an endpoint that answers 500 with an endless body (64 MiB)
    await make_endpoint(db, receiver.url)
    await publish(db, "invoice.paid:in_huge")
    receiver.answer(HUGE)

    # When it is delivered within a time limit far shorter than reading it all would take
    assert await asyncio.wait_for(deliver_next(db, settings, http), 10) == 1

    # Then the failure is the status with the start of the body, not a timeout
    [delivery] = await deliveries(db)
    assert delivery.response_status == 500 and delivery.status == "pending"
    assert delivery.last_error.startswith("HTTP 500: xxxx")
    assert len(delivery.last_error) == MAX_ERROR_CHARS


async def test_redirects_are_not_followed(
    db: Database, receiver: Receiver, settings: Settings, http: aiohttp.ClientSession
) -> None:
    await make_endpoint(db, receiver.url)
    await publish(db, "invoice.paid:in_redirect")
    receiver.answer(302)

    await deliver_next(db, settings, http)

    [delivery] = await deliveries(db)
    assert delivery.status == "pending" and delivery.response_status == 302
    assert delivery.last_error.startswith("HTTP 302 (redirects are not followed)")
    assert len(receiver.requests) == 1


async def test_an_endpoint_that_refuses_connections_is_retried(
    db: Database, settings: Settings, http: aiohttp.ClientSession
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    await make_endpoint(db, f"http://127.0.0.1:{port}/hooks")
    await publish(db, "invoice.paid:in_closed")

    await deliver_next(db, settings, http)

    [delivery] = await deliveries(db)
    assert delivery.status == "pending" and delivery.response_status is None
    assert delivery.last_error.startswith("could not connect:")


async def test_a_delivery_published_as_its_endpoint_was_deleted_is_skipped(
    db: Database, receiver: Receiver, settings: Settings, http: aiohttp.ClientSession
) -> None:
    # Given a pending delivery whose endpoint was deleted by a concurrent transaction
    endpoint, _ = await make_endpoint(db, receiver.url)
    await publish(db, "invoice.paid:in_race")
    await execute(
        db,
        "UPDATE product_webhook_endpoints SET deleted_at = now(), enabled = false "
        f"WHERE id = {endpoint.id}",
    )

    assert await deliver_next(db, settings, http) == 1

    [delivery] = await deliveries(db)
    assert delivery.status == "skipped" and receiver.requests == []


async def test_concurrent_workers_send_each_delivery_once(
    db: Database, receiver: Receiver, settings: Settings, http: aiohttp.ClientSession
) -> None:
    await make_endpoint(db, receiver.url)
    for n in range(6):
        await publish(db, f"invoice.paid:in_c{n}")

    claimed = await asyncio.gather(*(deliver_all(db, settings, http) for _ in range(4)))

    assert sum(claimed) == 6
    ids = [request.headers["webhook-id"] for request in receiver.requests]
    assert len(ids) == len(set(ids)) == 6


# ---- crash safety ----


async def test_a_worker_killed_mid_delivery_leaves_it_to_be_sent_again_after_its_lease(
    db: Database, receiver: Receiver, settings: Settings, http: aiohttp.ClientSession
) -> None:
    # Given two events of one customer, the endpoint holding the first request
    _, secret = await make_endpoint(db, receiver.url)
    a = await make_account(db)
    await publish(db, "invoice.paid:a1", account_id=a.id)
    await publish(db, "invoice.paid:a2", account_id=a.id)
    receiver.answer(HANG)

    # When the worker dies while the endpoint has the first one
    worker = asyncio.create_task(deliver_next(db, settings, http))
    await receiver.arrived.wait()
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker

    # Then it is still pending, leased: nothing is due, the customer's second waits
    first, second = await deliveries(db)
    assert (first.status, first.attempts, second.attempts) == ("pending", 1, 0)
    lease = settings.product_webhook_timeout_seconds + product_webhooks.LEASE_MARGIN_SECONDS
    assert lease - 5 < float(first.due_in) <= lease
    assert await deliver_next(db, settings, http) == 0

    # and once the lease has run out it is sent again with the same webhook-id, then the second
    await make_due(db)
    assert await deliver_all(db, settings, http) == 2
    killed, again, following = receiver.requests
    assert again.headers["webhook-id"] == killed.headers["webhook-id"]
    assert again.body == killed.body
    Webhook(secret).verify(again.body, again.headers)
    assert json.loads(following.body)["data"]["cause"] == "invoice.paid:a2"
    first, second = await deliveries(db)
    assert (first.status, first.attempts, second.status) == ("sent", 2, "sent")
    assert len(await rows(db, "SELECT id FROM product_webhook_deliveries")) == 2


async def test_an_outcome_is_recorded_only_for_its_own_claim(
    db: Database, receiver: Receiver, settings: Settings, http: aiohttp.ClientSession
) -> None:
    # Given a delivery claimed twice (the first worker outlived its lease)
    await make_endpoint(db, receiver.url)
    await publish(db, "invoice.paid:in_stale")
    stale = await product_webhooks._claim(db, settings)
    await make_due(db)
    receiver.answer(500)
    await deliver_next(db, settings, http)

    # When the stale worker's success arrives
    await product_webhooks._record(db, settings, stale, product_webhooks.Attempt(200))

    # Then the later claim's outcome stands
    [delivery] = await deliveries(db)
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("pending", 2, 500)


# ---- where deliveries may go ----


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://127.0.0.1:9/hooks", "refused: loopback address 127.0.0.1"),
        ("https://10.1.2.3/hooks", "refused: private address 10.1.2.3"),
        ("https://[::ffff:169.254.169.254]/hooks", "refused: link-local address 169.254.169.254"),
        ("http://hooks.example.com/", "refused: only https URLs are allowed"),
        ("https://localhost:{port}/hooks", "refused: localhost resolves to a loopback address"),
    ],
)
async def test_production_never_delivers_to_a_private_address(
    db: Database, receiver: Receiver, url: str, reason: str
) -> None:
    # Given an endpoint made where private hosts were allowed
    port = receiver.url.split(":")[2].split("/")[0]
    endpoint, _ = await make_endpoint(db, url.format(port=port))
    await publish(db, "invoice.paid:in_ssrf")
    settings = production_like()
    failed_before = delivered_count(endpoint.id, "failed")

    # When a production worker delivers it
    async with product_webhooks.http_client(settings) as http:
        assert await deliver_next(db, settings, http) == 1

    # Then nothing was sent and the delivery is given up at once, saying why
    [delivery] = await deliveries(db)
    assert delivery.status == "failed" and delivery.attempts == 1
    assert delivery.last_error.startswith(reason)
    assert receiver.requests == []
    assert delivered_count(endpoint.id, "failed") == failed_before + 1


async def test_the_resolver_refuses_names_of_private_addresses() -> None:
    resolver = product_webhooks.PublicAddressResolver()
    try:
        with pytest.raises(product_webhooks.RefusedAddress, match="loopback address 127.0.0.1"):
            await resolver.resolve("localhost", 443)
    finally:
        await resolver.close()


@pytest.mark.parametrize(
    "address",
    [
        "0.0.0.0",
        "127.0.0.1",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:10.0.0.1",
        "2002:7f00:1::",
        "64:ff9b::7f00:1",
        "ff02::1",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert product_webhooks.address_refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700:4700::1111", "8.8.8.8"])
def test_public_addresses_are_not_refused(address: str) -> None:
    assert product_webhooks.address_refusal(ipaddress.ip_address(address)) is None


async def test_depth_counts_the_deliveries_still_owed(
    db: Database, receiver: Receiver, settings: Settings, http: aiohttp.ClientSession
) -> None:
    await make_endpoint(db, receiver.url)
    await make_endpoint(db, receiver.url + "/2")
    await publish(db, "invoice.paid:in_d1")
    await publish(db, "invoice.paid:in_d2")
    async with db.session() as session:
        assert await product_webhooks.depth(session) == 4

    await deliver_next(db, settings, http)

    async with db.read_session() as session:
        assert await product_webhooks.depth(session) == 3
        assert await session.scalar(text("SELECT count(*) FROM product_webhook_deliveries")) == 4
