"""Failed events are listed and replayed by an admin: from the CLI or through GraphQL."""

import os
import subprocess
import sys
from pathlib import Path

from db.models import WebhookEventStatus
from schema.ids import to_global_id
from tests.conftest import graphql
from tests.webhooks.support import (
    TEST_POLICY,
    Calls,
    handler_for,
    make_due_now,
    make_event,
    post_event,
    stored_event,
    worker_on,
)

COMMAND = str(Path(sys.executable).parent / "billing-gateway")
EVENT_TYPE = "test.inbox_replay"

WEBHOOK_EVENTS = """
query Events($first: Int, $after: String, $status: [WebhookEventStatus!], $type: String) {
  admin {
    webhookEvents(first: $first, after: $after, status: $status, type: $type) {
      totalCount
      pageInfo { hasNextPage endCursor }
      edges { cursor node { id stripeEventId type status attempts lastError receivedAt processedAt } }
    }
  }
}
"""

REPLAY = """
mutation Replay($eventId: ID!) {
  replayWebhookEvent(input: {eventId: $eventId}) {
    event { id stripeEventId status attempts lastError }
    userErrors { field code message }
  }
}
"""

NODE = """
query Node($id: ID!) { node(id: $id) { ... on WebhookEvent { stripeEventId status } } }
"""


def run_cli(db, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "BILLING_ENV": "test",
        "DATABASE_URL": db.url.render_as_string(hide_password=False),
    }
    return subprocess.run(
        [COMMAND, *args], check=False, capture_output=True, text=True, timeout=120, env=env
    )


async def park_as_failed(client, db, settings, event) -> None:
    """Given an event whose handler fails on every attempt until it is parked."""
    worker = worker_on(db, settings)
    with handler_for(event["type"], Calls(failures=100)):
        await post_event(client, event)
        for _ in range(TEST_POLICY.max_attempts):
            await worker.drain()
            await make_due_now(db)
    assert (await stored_event(db, event["id"])).status is WebhookEventStatus.FAILED


async def apply_fixed(db, settings) -> Calls:
    """The handler, fixed, applies whatever was queued again."""
    calls = Calls()
    with handler_for(EVENT_TYPE, calls):
        await worker_on(db, settings).drain()
    return calls


async def test_a_parked_event_is_replayed_from_the_cli_after_the_fix(client, db, settings):
    event = make_event(EVENT_TYPE)
    await park_as_failed(client, db, settings, event)

    listed = run_cli(db, "events", "list", "--status", "failed")
    assert listed.returncode == 0, listed.stderr
    assert event["id"] in listed.stdout and "RuntimeError" in listed.stdout

    shown = run_cli(db, "events", "show", event["id"])
    assert shown.returncode == 0 and '"status": "failed"' in shown.stdout

    replayed = run_cli(db, "events", "replay", event["id"])
    assert replayed.returncode == 0, replayed.stderr
    queued = await stored_event(db, event["id"])
    assert queued.status is WebhookEventStatus.PENDING and queued.attempts == 0

    calls = await apply_fixed(db, settings)
    assert calls.event_ids == [event["id"]]
    assert (await stored_event(db, event["id"])).status is WebhookEventStatus.PROCESSED


async def test_every_failed_event_is_replayed_with_failed(client, db, settings):
    events = [make_event(EVENT_TYPE) for _ in range(2)]
    for event in events:
        await park_as_failed(client, db, settings, event)

    replayed = run_cli(db, "events", "replay", "--failed")
    assert replayed.returncode == 0 and "queued 2 failed event(s)" in replayed.stdout

    calls = await apply_fixed(db, settings)
    assert sorted(calls.event_ids) == sorted(event["id"] for event in events)


def test_the_cli_reports_an_unknown_event(db):
    result = run_cli(db, "events", "replay", "evt_nobody")
    assert result.returncode == 1 and "evt_nobody" in result.stderr


async def test_an_admin_replays_a_parked_event_through_graphql(client, db, settings, token_for):
    event = make_event(EVENT_TYPE)
    await park_as_failed(client, db, settings, event)
    row = await stored_event(db, event["id"])
    admin = token_for("ops", admin=True)

    result = await graphql(
        client, REPLAY, {"eventId": to_global_id("WebhookEvent", row.id)}, token=admin
    )

    payload = result["data"]["replayWebhookEvent"]
    assert payload["userErrors"] == []
    assert payload["event"]["status"] == "PENDING" and payload["event"]["attempts"] == 0
    calls = await apply_fixed(db, settings)
    assert calls.event_ids == [event["id"]]


async def test_replaying_an_unknown_event_is_not_found(client, db, token_for):
    result = await graphql(
        client,
        REPLAY,
        {"eventId": to_global_id("WebhookEvent", 999999)},
        token=token_for("ops", admin=True),
    )
    payload = result["data"]["replayWebhookEvent"]
    assert payload["event"] is None
    assert payload["userErrors"][0]["code"] == "NOT_FOUND"
    assert payload["userErrors"][0]["field"] == ["eventId"]


async def test_replay_is_for_admins_only(client, db, token_for):
    event_id = to_global_id("WebhookEvent", 1)
    result = await graphql(client, REPLAY, {"eventId": event_id}, token=token_for("alice"))
    assert result["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert (await graphql(client, WEBHOOK_EVENTS, token=token_for("alice")))["errors"][0][
        "extensions"
    ]["code"] == "FORBIDDEN"


async def test_admins_page_through_events_filtered_by_status_and_type(
    client, db, settings, token_for
):
    admin = token_for("ops", admin=True)
    for _ in range(3):
        await post_event(client, make_event(EVENT_TYPE))
    await post_event(client, make_event("test.nobody_handles_this"))
    with handler_for(EVENT_TYPE, Calls(failures=100)):  # these fail once and stay pending
        await worker_on(db, settings).drain()  # the unknown type is skipped

    pending = {"status": ["PENDING"], "first": 2}
    first = (await graphql(client, WEBHOOK_EVENTS, pending, token=admin))["data"]["admin"]
    page = first["webhookEvents"]
    assert page["totalCount"] == 3 and page["pageInfo"]["hasNextPage"]
    after = pending | {"after": page["pageInfo"]["endCursor"]}
    second = (await graphql(client, WEBHOOK_EVENTS, after, token=admin))["data"]["admin"]
    rest = second["webhookEvents"]
    assert len(rest["edges"]) == 1 and not rest["pageInfo"]["hasNextPage"]
    assert rest["edges"][0]["node"]["lastError"].startswith("RuntimeError")

    by_type = {"type": "test.nobody_handles_this"}
    skipped = (await graphql(client, WEBHOOK_EVENTS, by_type, token=admin))["data"]["admin"]
    [edge] = skipped["webhookEvents"]["edges"]
    assert edge["node"]["status"] == "SKIPPED" and edge["node"]["processedAt"] is not None

    node = await graphql(client, NODE, {"id": edge["node"]["id"]}, token=admin)
    assert node["data"]["node"]["status"] == "SKIPPED"
    hidden = await graphql(client, NODE, {"id": edge["node"]["id"]}, token=token_for("alice"))
    assert hidden["data"]["node"] is None


async def test_the_worker_command_applies_events_in_a_separate_process(client, db):
    import asyncio
    import signal

    event = make_event("test.nobody_handles_this")
    await post_event(client, event)
    env = os.environ | {
        "BILLING_ENV": "test",
        "DATABASE_URL": db.url.render_as_string(hide_password=False),
    }
    process = await asyncio.create_subprocess_exec(
        COMMAND,
        "worker",
        "--concurrency",
        "2",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        for _ in range(200):
            if (await stored_event(db, event["id"])).status is not WebhookEventStatus.PENDING:
                break
            await asyncio.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert (await stored_event(db, event["id"])).status is WebhookEventStatus.SKIPPED
    assert process.returncode == 0, err
    assert b"2 at a time" in out
