"""Managing endpoints and deliveries: create, rotate, delete, retry, list."""

import base64

import aiohttp
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from db.database import Database
from db.models import DeliveryStatus
from gateway.settings import Settings
from services import product_webhooks
from services.errors import DomainError, ErrorCode, InvalidInput, NotFound
from services.product_webhooks import deliver_next

from .conftest import (
    Receiver,
    deliver_all,
    deliveries,
    execute,
    make_due,
    make_endpoint,
    production_like,
    publish,
    rows,
)

# ---- create ----


async def test_an_endpoint_is_created_with_its_own_secret(db: Database) -> None:
    endpoint, secret = await make_endpoint(
        db, "https://hooks.example.com/billing", ["invoice.paid", "access.updated", "invoice.paid"]
    )
    other, other_secret = await make_endpoint(db, "https://hooks.example.com/all")

    assert endpoint.id is not None and endpoint.created_at is not None
    assert endpoint.url == "https://hooks.example.com/billing"
    assert endpoint.event_types == ["invoice.paid", "access.updated"]
    assert endpoint.enabled is True and endpoint.disabled_reason is None
    assert secret == endpoint.secret and secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == product_webhooks.SECRET_BYTES
    assert other.event_types == [] and other_secret != secret


@pytest.mark.parametrize(
    "url",
    [
        "hooks.example.com/billing",
        "/hooks",
        "ftp://hooks.example.com/",
        "https://",
        "https://" + "a" * 2048 + ".com/",
        "https://hooks.example.com:99999/",
    ],
)
async def test_a_url_that_is_not_an_absolute_http_url_is_refused(db: Database, url: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        await make_endpoint(db, url)
    assert refused.value.field == ["url"]


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/",
        "https://127.0.0.1/",
        "https://127.1/",
        "https://2130706433/",
        "https://10.0.0.8/hooks",
        "https://192.168.0.10/",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]:8443/",
        "https://[fd00::1]/",
        "https://0.0.0.0/",
        "https://localhost/hooks",
        "https://LOCALHOST./hooks",
        "https://api.localhost/hooks",
    ],
)
async def test_production_refuses_private_destinations_at_creation(db: Database, url: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        await make_endpoint(db, url, settings=production_like())
    assert refused.value.field == ["url"]
    assert await rows(db, "SELECT id FROM product_webhook_endpoints") == []


async def test_production_takes_a_public_https_url(db: Database) -> None:
    endpoint, _ = await make_endpoint(
        db, "https://hooks.example.com/billing", settings=production_like()
    )
    assert endpoint.url == "https://hooks.example.com/billing"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/hooks", "http://localhost:3000/"])
async def test_development_may_use_a_local_backend(db: Database, url: str) -> None:
    endpoint, _ = await make_endpoint(db, url)
    assert endpoint.url == url


async def test_unknown_event_types_are_refused(db: Database) -> None:
    with pytest.raises(InvalidInput) as refused:
        await make_endpoint(db, "https://hooks.example.com/", ["invoice.paid", "invoice.created"])
    assert refused.value.field == ["eventTypes"]
    assert "invoice.created" in refused.value.message


# ---- list, rotate, delete ----


async def test_endpoints_are_listed_oldest_first_without_the_deleted(db: Database) -> None:
    first, _ = await make_endpoint(db, "https://a.example.com/")
    deleted, _ = await make_endpoint(db, "https://b.example.com/")
    third, _ = await make_endpoint(db, "https://c.example.com/")
    async with db.session() as session:
        await product_webhooks.delete_endpoint(session, endpoint_id=deleted.id)

    async with db.session() as session:
        listed = await product_webhooks.list_endpoints(session)

    assert [endpoint.id for endpoint in listed] == [first.id, third.id]


async def test_a_rotated_secret_signs_the_next_attempt(
    db: Database, receiver: Receiver, settings: Settings, http: aiohttp.ClientSession
) -> None:
    # Given an endpoint whose delivery failed once
    endpoint, old = await make_endpoint(db, receiver.url)
    await publish(db, "invoice.paid:in_rot")
    receiver.answer(500)
    await deliver_next(db, settings, http)

    # When its secret is rotated and the delivery tried again
    async with db.session() as session:
        rotated, new = await product_webhooks.rotate_secret(session, endpoint_id=endpoint.id)
    await make_due(db)
    await deliver_next(db, settings, http)

    # Then the new secret verifies it and the old one does not
    assert rotated.secret == new != old and new.startswith("whsec_")
    request = receiver.requests[-1]
    Webhook(new).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(request.body, request.headers)


async def test_rotating_an_unknown_or_deleted_endpoint_is_not_found(db: Database) -> None:
    endpoint, _ = await make_endpoint(db, "https://a.example.com/")
    async with db.session() as session:
        await product_webhooks.delete_endpoint(session, endpoint_id=endpoint.id)

    for endpoint_id in (endpoint.id, 999):
        async with db.session() as session:
            with pytest.raises(NotFound) as missing:
                await product_webhooks.rotate_secret(session, endpoint_id=endpoint_id)
        assert missing.value.field == ["endpointId"]


async def test_deleting_an_endpoint_skips_what_it_was_owed(
    db: Database, receiver: Receiver, settings: Settings, http: aiohttp.ClientSession
) -> None:
    # Given an endpoint owed two events
    endpoint, _ = await make_endpoint(db, receiver.url)
    await publish(db, "invoice.paid:in_del1")
    await publish(db, "invoice.paid:in_del2")

    # When it is deleted
    async with db.session() as session:
        await product_webhooks.delete_endpoint(session, endpoint_id=endpoint.id)

    # Then its row is kept, marked, and nothing is sent to it, now or later
    [row] = await rows(db, "SELECT enabled, deleted_at FROM product_webhook_endpoints")
    assert row.enabled is False and row.deleted_at is not None
    assert {delivery.status for delivery in await deliveries(db)} == {"skipped"}
    await publish(db, "invoice.paid:in_del3")
    assert await deliver_all(db, settings, http) == 0
    assert receiver.requests == []
    # and it cannot be deleted twice
    async with db.session() as session:
        with pytest.raises(NotFound):
            await product_webhooks.delete_endpoint(session, endpoint_id=endpoint.id)
    async with db.session() as session:
        with pytest.raises(NotFound):
            await product_webhooks.delete_endpoint(session, endpoint_id=12345)


# ---- retry ----


async def test_a_failed_delivery_is_retried_once_more_by_hand(
    db: Database, receiver: Receiver, settings: Settings, http: aiohttp.ClientSession
) -> None:
    # Given a delivery given up after the retry window
    await make_endpoint(db, receiver.url)
    await publish(db, "invoice.paid:in_retry")
    await execute(
        db, "UPDATE product_webhook_deliveries SET created_at = now() - interval '100 hours'"
    )
    receiver.answer(500, 500)
    await deliver_next(db, settings, http)
    [failed] = await deliveries(db)
    assert failed.status == "failed"

    # When an admin retries it, it is due at once and tried once (still too old to retry)
    async with db.session() as session:
        retried = await product_webhooks.retry_delivery(session, delivery_id=failed.id)
    assert retried.status == DeliveryStatus.PENDING and retried.attempts == 1
    assert await deliver_all(db, settings, http) == 1
    [again] = await deliveries(db)
    assert (again.status, again.attempts) == ("failed", 2)

    # and retried again while the endpoint answers, it is sent with the same webhook-id
    async with db.session() as session:
        await product_webhooks.retry_delivery(session, delivery_id=failed.id)
    await deliver_next(db, settings, http)
    [sent] = await deliveries(db)
    assert (sent.status, sent.attempts) == ("sent", 3)
    assert len({request.headers["webhook-id"] for request in receiver.requests}) == 1


async def test_retrying_a_delivery_skipped_by_a_410_re_enables_its_endpoint(
    db: Database, receiver: Receiver, settings: Settings, http: aiohttp.ClientSession
) -> None:
    # Given an endpoint disabled by a 410, with two skipped deliveries
    await make_endpoint(db, receiver.url)
    await publish(db, "invoice.paid:in_410a")
    await publish(db, "invoice.paid:in_410b")
    receiver.answer(410)
    await deliver_all(db, settings, http)
    gone, other = await deliveries(db)

    # When the first is retried
    async with db.session() as session:
        await product_webhooks.retry_delivery(session, delivery_id=gone.id)

    # Then the endpoint is enabled again and that one delivered; the other stays skipped
    [row] = await rows(db, "SELECT enabled, disabled_reason FROM product_webhook_endpoints")
    assert row == (True, None)
    assert await deliver_all(db, settings, http) == 1
    gone, other = await deliveries(db)
    assert (gone.status, other.status) == ("sent", "skipped")
    await publish(db, "invoice.paid:in_410c")
    assert await deliver_all(db, settings, http) == 1


async def test_only_failed_or_skipped_deliveries_of_live_endpoints_are_retried(
    db: Database, receiver: Receiver, settings: Settings, http: aiohttp.ClientSession
) -> None:
    endpoint, _ = await make_endpoint(db, receiver.url)
    await publish(db, "invoice.paid:in_s1")
    await publish(db, "invoice.paid:in_s2")
    await deliver_next(db, settings, http)
    sent, pending = await deliveries(db)

    for delivery in (sent, pending):
        async with db.session() as session:
            with pytest.raises(DomainError) as refused:
                await product_webhooks.retry_delivery(session, delivery_id=delivery.id)
        assert refused.value.code == ErrorCode.INVALID_STATE
        assert refused.value.field == ["deliveryId"]

    async with db.session() as session:
        await product_webhooks.delete_endpoint(session, endpoint_id=endpoint.id)
    async with db.session() as session:
        with pytest.raises(DomainError) as refused:
            await product_webhooks.retry_delivery(session, delivery_id=pending.id)
    assert refused.value.code == ErrorCode.INVALID_STATE

    async with db.session() as session:
        with pytest.raises(NotFound) as missing:
            await product_webhooks.retry_delivery(session, delivery_id=4242)
    assert missing.value.field == ["deliveryId"]


# ---- list deliveries ----


async def test_deliveries_are_listed_newest_first_with_their_event(
    db: Database, receiver: Receiver, settings: Settings, http: aiohttp.ClientSession
) -> None:
    # Given three deliveries, the first sent
    await make_endpoint(db, receiver.url)
    await publish(db, "invoice.paid:in_l1")
    await publish(db, "payment.failed:pi_l2", type="payment.failed")
    await publish(db, "credits.updated:l3", type="credits.updated")
    await deliver_next(db, settings, http)
    events = {
        row.id: row for row in await rows(db, "SELECT id, message_id, type FROM product_events")
    }

    # When they are listed, two to a page
    first = await product_webhooks.list_deliveries(db, first=2)
    second = await product_webhooks.list_deliveries(db, first=2, after=first.cursors[-1])
    sent = await product_webhooks.list_deliveries(db, statuses=[DeliveryStatus.SENT])

    # Then they come newest first, each with its event's message id and type
    listed = first.rows + second.rows
    assert [row.event_type for row in listed] == [
        "credits.updated",
        "payment.failed",
        "invoice.paid",
    ]
    for row in listed:
        assert row.message_id == events[row.event_id].message_id
        assert row.event_type == events[row.event_id].type
    assert first.total_count == second.total_count == 3
    assert first.has_next_page and not second.has_next_page
    assert [(row.event_type, row.status) for row in sent.rows] == [("invoice.paid", "sent")]
    assert sent.total_count == 1


async def test_an_empty_list_of_deliveries(db: Database) -> None:
    page = await product_webhooks.list_deliveries(db)
    assert page.rows == [] and page.total_count == 0
    with pytest.raises(InvalidInput):
        await product_webhooks.list_deliveries(db, first=101)
