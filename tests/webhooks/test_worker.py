"""Workers apply each stored event once, in order, retry failures with backoff, park poison."""

import asyncio
import time
from datetime import UTC, datetime

from db.models import WebhookEventStatus
from tests.webhooks.support import (
    TEST_POLICY,
    Calls,
    handler_for,
    make_due_now,
    make_event,
    post_event,
    stored_event,
    stored_events,
    worker_on,
    workers,  # noqa: F401  (fixture)
)

EVENT_TYPE = "test.inbox_worker"


async def wait_until_settled(db, count: int, *, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = await stored_events(db)
        settled = [row for row in rows if row.status is not WebhookEventStatus.PENDING]
        if len(settled) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {count} events settled within {timeout} s")


async def test_an_event_is_applied_and_marked_processed(client, db, settings):
    calls = Calls()
    event = make_event(EVENT_TYPE)
    with handler_for(EVENT_TYPE, calls):
        await post_event(client, event)
        assert await worker_on(db, settings).drain() == 1

    row = await stored_event(db, event["id"])
    assert calls.event_ids == [event["id"]]
    assert row.status is WebhookEventStatus.PROCESSED and row.processed_at is not None


async def test_an_unknown_type_is_skipped(client, db, settings):
    event = make_event("test.nobody_handles_this")
    await post_event(client, event)
    await worker_on(db, settings).drain()
    row = await stored_event(db, event["id"])
    assert row.status is WebhookEventStatus.SKIPPED and row.attempts == 0


async def test_events_are_applied_in_stripe_created_order(client, db, settings):
    """Claimed oldest first; one claim loop, as concurrent loops apply different objects'
    events side by side (one object's events are ordered by its lock)."""
    calls = Calls()
    now = int(time.time())
    events = [make_event(EVENT_TYPE, created=now - age) for age in (5, 30, 10)]
    with handler_for(EVENT_TYPE, calls):
        for event in events:
            await post_event(client, event)
        await worker_on(db, settings, concurrency=1).drain()
    assert calls.event_ids == [events[1]["id"], events[2]["id"], events[0]["id"]]


async def test_a_failing_handler_is_retried_after_a_backoff_then_succeeds(client, db, settings):
    calls = Calls(failures=1)
    event = make_event(EVENT_TYPE)
    worker = worker_on(db, settings)
    with handler_for(EVENT_TYPE, calls):
        await post_event(client, event)
        await worker.drain()

        failed_once = await stored_event(db, event["id"])
        assert failed_once.status is WebhookEventStatus.PENDING and failed_once.attempts == 1
        assert failed_once.last_error == "RuntimeError: the mirror is not ready yet"
        assert failed_once.next_attempt_at > datetime.now(UTC)  # the backoff is honoured:
        assert await worker.drain() == 0  # not due yet

        await make_due_now(db)
        assert await worker.drain() == 1

    row = await stored_event(db, event["id"])
    assert row.status is WebhookEventStatus.PROCESSED and row.last_error is None
    assert calls.event_ids == [event["id"]]


async def test_an_objects_due_events_are_applied_as_one_by_a_coalescing_handler(
    client, db, settings
):
    calls = Calls()
    now = int(time.time())
    same = [make_event(EVENT_TYPE, object_id="obj_a", created=now - age) for age in (9, 5, 5)]
    other = make_event(EVENT_TYPE, object_id="obj_b", created=now - 7)
    with handler_for(EVENT_TYPE, calls, coalesce=True):
        for event in [*same, other]:
            await post_event(client, event)
        assert await worker_on(db, settings, concurrency=1).drain() == 4

    # obj_a's three as one (its newest, to be re-read), then obj_b's on its own.
    assert calls.event_ids == [same[2]["id"], other["id"]]
    assert calls.coalesced == [True, False]
    rows = await stored_events(db)
    assert {row.status for row in rows} == {WebhookEventStatus.PROCESSED}


async def test_a_handler_that_does_not_coalesce_gets_each_event(client, db, settings):
    calls = Calls()
    events = [make_event(EVENT_TYPE, object_id="obj_a") for _ in range(3)]
    with handler_for(EVENT_TYPE, calls):
        for event in events:
            await post_event(client, event)
        assert await worker_on(db, settings, concurrency=1).drain() == 3
    assert sorted(calls.event_ids) == sorted(event["id"] for event in events)
    assert calls.coalesced == [False, False, False]


async def test_events_applied_as_one_fail_and_are_retried_together(client, db, settings):
    calls = Calls(failures=1)
    events = [make_event(EVENT_TYPE, object_id="obj_a") for _ in range(2)]
    worker = worker_on(db, settings, concurrency=1)
    with handler_for(EVENT_TYPE, calls, coalesce=True):
        for event in events:
            await post_event(client, event)
        assert await worker.drain() == 2
        rows = await stored_events(db)
        assert [(row.status, row.attempts) for row in rows] == [
            (WebhookEventStatus.PENDING, 1),
            (WebhookEventStatus.PENDING, 1),
        ]
        await make_due_now(db)
        assert await worker.drain() == 2
    assert calls.event_ids == [events[1]["id"]]
    rows = await stored_events(db)
    assert {row.status for row in rows} == {WebhookEventStatus.PROCESSED}


async def test_the_backoff_grows_and_is_capped():
    delays = [TEST_POLICY.delay(attempt).total_seconds() for attempt in range(1, 8)]
    assert 30 <= delays[0] <= 60 and 60 <= delays[1] <= 120
    assert all(delay <= TEST_POLICY.max_seconds for delay in delays)


async def test_a_poison_event_is_parked_as_failed_after_the_last_attempt(client, db, settings):
    event = make_event(EVENT_TYPE)
    worker = worker_on(db, settings)
    with handler_for(EVENT_TYPE, Calls(failures=100)):
        await post_event(client, event)
        for _ in range(TEST_POLICY.max_attempts):
            await worker.drain()
            await make_due_now(db)
        assert await worker.drain() == 0  # parked: never claimed again

    row = await stored_event(db, event["id"])
    assert row.status is WebhookEventStatus.FAILED
    assert row.attempts == TEST_POLICY.max_attempts and "RuntimeError" in row.last_error


async def test_the_handlers_work_is_rolled_back_when_it_fails(client, db, settings):
    from sqlalchemy import text

    async def writes_then_fails(session, stripe, event):
        await session.execute(text("UPDATE stripe_events SET object_id = 'changed'"))
        raise ValueError("half done")

    event = make_event(EVENT_TYPE, object_id="obj_original")
    with handler_for(EVENT_TYPE, writes_then_fails):
        await post_event(client, event)
        await worker_on(db, settings).drain()
    row = await stored_event(db, event["id"])
    assert row.object_id == "obj_original" and row.last_error == "ValueError: half done"


async def test_twenty_concurrent_deliveries_and_three_workers_apply_an_event_once(
    client,
    db,
    workers,  # noqa: F811
):
    calls = Calls(delay=0.05)  # a slow handler gives the other workers time to collide
    event = make_event(EVENT_TYPE)
    with handler_for(EVENT_TYPE, calls):
        workers(3)
        responses = await asyncio.gather(*(post_event(client, event) for _ in range(20)))
        await wait_until_settled(db, 1)
        await asyncio.sleep(0.3)  # a second application would show up by now
    assert all(response.status_code == 200 for response in responses)
    assert calls.event_ids == [event["id"]]
    assert len(await stored_events(db)) == 1


async def test_three_workers_share_many_events_without_overlap(client, db, workers):  # noqa: F811
    calls = Calls(delay=0.01)
    events = [make_event(EVENT_TYPE) for _ in range(30)]
    with handler_for(EVENT_TYPE, calls):
        workers(3)
        await asyncio.gather(*(post_event(client, event) for event in events))
        await wait_until_settled(db, len(events))
    assert sorted(calls.event_ids) == sorted(event["id"] for event in events)


async def test_a_worker_wakes_on_notify_without_waiting_for_the_poll(client, db, workers):  # noqa: F811
    calls = Calls()
    event = make_event(EVENT_TYPE)
    with handler_for(EVENT_TYPE, calls):
        workers(1, poll_seconds=30)
        await asyncio.sleep(0.2)  # the worker has drained the empty inbox and sleeps
        started = time.monotonic()
        await post_event(client, event)
        await wait_until_settled(db, 1, timeout=1.0)
    assert time.monotonic() - started < 1.0
    assert calls.event_ids == [event["id"]]


async def test_a_new_event_is_applied_while_a_slow_one_still_runs(client, db, workers):  # noqa: F811
    """Each claim loop waits for work on its own: a NOTIFY finds an idle loop even while
    another loop is still applying an earlier event."""
    slow_started, release = asyncio.Event(), asyncio.Event()
    applied: list[str] = []

    async def handler(session, stripe, event) -> None:
        if event["data"]["object"]["id"] == "obj_slow":
            slow_started.set()
            await release.wait()
        applied.append(event["id"])

    slow = make_event(EVENT_TYPE, object_id="obj_slow")
    fast = make_event(EVENT_TYPE, object_id="obj_fast")
    with handler_for(EVENT_TYPE, handler):
        workers(1, poll_seconds=30)  # NOTIFY only: the poll comes too late to matter
        await post_event(client, slow)
        await asyncio.wait_for(slow_started.wait(), timeout=5)
        await post_event(client, fast)
        deadline = time.monotonic() + 2
        while not applied and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert applied == [fast["id"]], "the new event waited for the slow one"
        release.set()
        await wait_until_settled(db, 2)
    assert applied == [fast["id"], slow["id"]]


async def test_a_worker_without_listen_finds_events_by_polling(client, db, workers):  # noqa: F811
    calls = Calls()
    with handler_for(EVENT_TYPE, calls):
        workers(1, poll_seconds=0.1, listen=False)
        await asyncio.sleep(0.15)
        await post_event(client, make_event(EVENT_TYPE))
        await wait_until_settled(db, 1, timeout=2.0)
    assert len(calls.event_ids) == 1


async def test_the_app_runs_a_worker_in_process_when_asked(settings, db):
    import httpx

    from gateway.app import create_app

    app = create_app(settings, database=db, start_worker=True)
    calls = Calls()
    with handler_for(EVENT_TYPE, calls):
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
                await post_event(client, make_event(EVENT_TYPE))
                await wait_until_settled(db, 1, timeout=2.0)
    assert len(calls.event_ids) == 1
