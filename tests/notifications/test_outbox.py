"""The mail outbox (services/notifications.py) on the real database and a real SMTP server:
one row per cause, preferences, retries with backoff, parking, a send cut off mid-way, and
the lists and retries admins use."""

import asyncio

import pytest
from sqlalchemy import text, update

from db.models import Account, DeliveryStatus, Notification, NotificationKind
from db.sealed import unseal
from services import notifications
from services.errors import DomainError, ErrorCode
from tests.notifications.conftest import (
    PATIENCE_SECONDS,
    PAYMENT_FAILED_CONTEXT,
    RECEIPT_CONTEXT,
    mail_settings,
    make_account,
    make_due,
    notify,
    outbox,
    sent_count,
    wait_for,
)
from tests.smtp_server import free_port

# ---- writing ----


async def test_notify_writes_the_mail_for_the_accounts_address(db):
    account = await make_account(db, email="ada@example.com")

    await notify(db, account.id, NotificationKind.RECEIPT, "receipt:in_1", RECEIPT_CONTEXT)

    (mail,) = await outbox(db)
    assert mail.kind == "receipt" and mail.status == "pending" and mail.attempts == 0
    assert unseal(mail.recipient) == "ada@example.com"
    assert unseal(mail.recipient_name) == "Ada Lovelace"
    assert mail.subject == "Receipt for invoice INV-0001"
    assert mail.context == RECEIPT_CONTEXT
    assert mail.last_error is None and mail.sent_at is None and mail.due_in <= 0


async def test_the_same_cause_twice_writes_one_mail(db):
    account = await make_account(db)

    await notify(db, account.id, cause="payment_failed:evt_1")
    await notify(
        db, account.id, cause="payment_failed:evt_1", context={"amount": "$1.00", "x": "y"}
    )

    (mail,) = await outbox(db)
    assert mail.context["amount"] == PAYMENT_FAILED_CONTEXT["amount"]


async def test_concurrent_notifies_of_one_cause_write_one_mail(db):
    account = await make_account(db)
    first_inserted, first_may_commit = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with db.session() as session, session.begin():
            await notifications.notify(
                session,
                account_id=account.id,
                kind=NotificationKind.PAYMENT_FAILED,
                cause="payment_failed:evt_race",
                context=PAYMENT_FAILED_CONTEXT,
            )
            first_inserted.set()
            await first_may_commit.wait()

    async def waiting_for_a_lock() -> bool:
        async with db.session() as session:
            waiting = await session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        return bool(waiting)

    async def second_while_first_is_open() -> None:
        await first_inserted.wait()
        second = asyncio.create_task(notify(db, account.id, cause="payment_failed:evt_race"))
        async with asyncio.timeout(PATIENCE_SECONDS):
            while not await waiting_for_a_lock():  # the second insert waits on the first's row
                await asyncio.sleep(0.01)
        first_may_commit.set()
        await second

    await asyncio.gather(first(), second_while_first_is_open())
    await asyncio.gather(
        *(notify(db, account.id, cause="payment_failed:evt_race") for _ in range(8))
    )

    assert len(await outbox(db)) == 1


async def test_a_rolled_back_cause_leaves_no_mail(db):
    account = await make_account(db)

    with pytest.raises(RuntimeError):
        async with db.session() as session, session.begin():
            await notifications.notify(
                session,
                account_id=account.id,
                kind=NotificationKind.PAYMENT_FAILED,
                cause="payment_failed:evt_1",
                context=PAYMENT_FAILED_CONTEXT,
            )
            raise RuntimeError("the cause failed")

    assert await outbox(db) == []


# ---- preferences ----


async def test_preferences_default_on_and_change_only_what_is_given(db):
    account = await make_account(db)
    async with db.session() as session:
        before = await notifications.preferences_of(session, account_id=account.id)
    async with db.session() as session, session.begin():
        changed = await notifications.update_preferences(
            session,
            account_id=account.id,
            receipts=False,
            payment_problems=None,
            trial_reminders=False,
        )
    async with db.session() as session:
        after = await notifications.preferences_of(session, account_id=account.id)

    assert before == notifications.Preferences(True, True, True)
    assert changed == after == notifications.Preferences(False, True, False)


async def test_a_kind_turned_off_is_kept_as_skipped_with_the_reason(db):
    account = await make_account(
        db, notify_receipts=False, notify_payment_problems=False, notify_trial_reminders=False
    )

    await notify(db, account.id, NotificationKind.RECEIPT, "receipt:in_1", RECEIPT_CONTEXT)
    await notify(db, account.id, NotificationKind.REFUND_ISSUED, "refund:1", {"amount": "$1.00"})
    await notify(db, account.id, NotificationKind.PAYMENT_FAILED, "payment_failed:evt_1")
    await notify(db, account.id, NotificationKind.TRIAL_ENDING, "trial:1", {"trial_end": "x"})
    # Neither of these can be turned off.
    await notify(db, account.id, NotificationKind.PAYMENT_ACTION_REQUIRED, "action:1", {})
    await notify(db, account.id, NotificationKind.SUBSCRIPTION_CANCELED, "canceled:1", {})

    found = {mail.kind: (mail.status, mail.last_error) for mail in await outbox(db)}
    skipped = ("skipped", notifications.TURNED_OFF)
    assert found == {
        "receipt": skipped,
        "refund_issued": skipped,
        "payment_failed": skipped,
        "trial_ending": skipped,
        "payment_action_required": ("pending", None),
        "subscription_canceled": ("pending", None),
    }
    assert notifications.PREFERENCE_OF[NotificationKind.PAYMENT_ACTION_REQUIRED] is None


@pytest.mark.parametrize("address", [None, ""])
async def test_an_account_without_an_address_gets_a_skipped_mail(db, address):
    account = await make_account(db, email=address)

    await notify(db, account.id, NotificationKind.PAYMENT_ACTION_REQUIRED, "action:1", {})

    (mail,) = await outbox(db)
    assert (mail.status, mail.last_error, mail.recipient) == ("skipped", "no email address", "")


# ---- sending, retrying, parking ----


async def test_without_smtp_url_mails_wait_in_the_outbox(db, settings):
    account = await make_account(db)
    await notify(db, account.id)

    assert await notifications.send_next(db, mail_settings(settings, None)) == 0

    (mail,) = await outbox(db)
    assert (mail.status, mail.attempts, mail.last_error) == ("pending", 0, None)


async def test_send_next_sends_one_due_mail_at_a_time(db, settings, smtp):
    account = await make_account(db)
    await notify(db, account.id, cause="payment_failed:evt_1")
    await notify(db, account.id, cause="payment_failed:evt_2")
    mail = mail_settings(settings, f"smtp://127.0.0.1:{smtp.port}")
    before = sent_count("payment_failed", "sent")

    claimed = [await notifications.send_next(db, mail) for _ in range(3)]

    assert claimed == [1, 1, 0]
    assert [row.status for row in await outbox(db)] == ["sent", "sent"]
    assert all(row.attempts == 1 and row.sent_at is not None for row in await outbox(db))
    assert len(smtp.inbox.messages) == 2
    assert sent_count("payment_failed", "sent") == before + 2


async def test_smtp_down_is_retried_with_backoff_then_parked_then_retried(db, settings, smtp):
    account = await make_account(db)
    await notify(db, account.id)
    password = "s3cret-Pa55"
    down = mail_settings(
        settings,
        f"smtp://mailer:{password}@127.0.0.1:{free_port()}",
        notification_max_attempts=3,
        notification_retry_base_seconds=30.0,
        notification_retry_max_seconds=45.0,
    )
    before = (sent_count("payment_failed", "retry"), sent_count("payment_failed", "failed"))

    assert await notifications.send_next(db, down) == 1
    (first,) = await outbox(db)
    assert await notifications.send_next(db, down) == 0  # not due before its backoff
    await make_due(db)
    await notifications.send_next(db, down)
    (second,) = await outbox(db)
    await make_due(db)
    await notifications.send_next(db, down)
    (parked,) = await outbox(db)

    assert (first.status, first.attempts) == ("pending", 1)
    assert 25 < first.due_in <= 30  # the base delay
    assert first.last_error and password not in first.last_error
    assert (second.status, second.attempts) == ("pending", 2)
    assert 40 < second.due_in <= 45  # doubled to 60, capped at 45
    assert (parked.status, parked.attempts) == ("failed", 3)
    assert sent_count("payment_failed", "retry") == before[0] + 2
    assert sent_count("payment_failed", "failed") == before[1] + 1
    await make_due(db)
    assert await notifications.send_next(db, down) == 0  # parked: never claimed again

    async with db.session() as session, session.begin():
        retried = await notifications.retry_notification(session, notification_id=parked.id)
    assert (retried.status, retried.attempts, retried.last_error) == (
        DeliveryStatus.PENDING,
        0,
        None,
    )
    up = mail_settings(settings, f"smtp://127.0.0.1:{smtp.port}")
    assert await notifications.send_next(db, up) == 1
    (sent,) = await outbox(db)
    assert (sent.status, sent.attempts) == ("sent", 1)
    assert len(smtp.inbox.messages) == 1


async def test_a_send_cut_off_mid_way_is_sent_again_as_the_same_mail(db, settings, smtp):
    account = await make_account(db)
    await notify(db, account.id)
    smtp.inbox.hold = True
    mail = mail_settings(settings, f"smtp://127.0.0.1:{smtp.port}")

    # The worker dies while the server holds the message's DATA unanswered.
    sending = asyncio.create_task(notifications.send_next(db, mail))
    await wait_for(smtp.inbox.held)
    sending.cancel()
    smtp.inbox.release.set()  # so the client's parting QUIT is answered at once
    with pytest.raises(asyncio.CancelledError):
        await sending
    (leased,) = await outbox(db)
    nothing_due = await notifications.send_next(db, mail)
    smtp.inbox.hold = False
    await make_due(db)  # the lease ends
    resent = await notifications.send_next(db, mail)

    assert (leased.status, leased.attempts, leased.last_error) == ("pending", 1, None)
    assert leased.due_in > 30  # leased past any send's time limit
    assert nothing_due == 0
    assert resent == 1
    (row,) = await outbox(db)
    assert (row.status, row.attempts) == ("sent", 2)
    (interrupted,) = smtp.inbox.arrived
    (delivered,) = smtp.inbox.messages
    assert delivered.message["Message-ID"] == interrupted["Message-ID"]
    assert delivered.message["Message-ID"].startswith(f"<notification-{row.id}.")


async def test_an_attempt_outlived_by_its_lease_records_nothing(db, settings, smtp):
    """A worker whose lease ended (another claimed the mail) must not overwrite that claim."""
    account = await make_account(db)
    await notify(db, account.id)
    smtp.inbox.hold = True
    mail = mail_settings(settings, f"smtp://127.0.0.1:{smtp.port}")

    slow = asyncio.create_task(notifications.send_next(db, mail))
    await wait_for(smtp.inbox.held)
    await make_due(db)  # its lease ends while it is still talking to the server
    async with db.session() as session, session.begin():
        await session.execute(
            update(Notification).values(attempts=Notification.attempts + 1)
        )  # another worker claimed it
    smtp.inbox.release.set()
    await slow  # the server answered 451: a failure, for a claim that is no longer its own

    (row,) = await outbox(db)
    assert (row.status, row.attempts, row.last_error) == ("pending", 2, None)


# ---- lists and retries for admins ----


async def test_list_notifications_by_account_status_and_kind_newest_first(db):
    ada, bob = await make_account(db), await make_account(db)
    for n in range(3):
        await notify(db, ada.id, cause=f"payment_failed:ada_{n}")
    await notify(db, ada.id, NotificationKind.RECEIPT, "receipt:ada", RECEIPT_CONTEXT)
    await notify(db, bob.id, cause="payment_failed:bob")
    async with db.session() as session, session.begin():
        await session.execute(
            update(Notification)
            .where(Notification.cause == "payment_failed:ada_0")
            .values(status=DeliveryStatus.FAILED)
        )

    adas = await notifications.list_notifications(db, account_id=ada.id)
    everyone = await notifications.list_notifications(db, account_id=None)
    failed = await notifications.list_notifications(
        db, account_id=None, statuses=[DeliveryStatus.FAILED]
    )
    receipts = await notifications.list_notifications(
        db, account_id=ada.id, kinds=[NotificationKind.RECEIPT]
    )
    bobs_receipts = await notifications.list_notifications(
        db, account_id=bob.id, kinds=[NotificationKind.RECEIPT]
    )
    page_one = await notifications.list_notifications(db, account_id=ada.id, first=2)
    page_two = await notifications.list_notifications(
        db, account_id=ada.id, first=2, after=page_one.cursors[-1]
    )

    assert [row.cause for row in adas.rows] == [
        "receipt:ada",
        "payment_failed:ada_2",
        "payment_failed:ada_1",
        "payment_failed:ada_0",
    ]
    assert adas.total_count == 4 and everyone.total_count == 5
    assert [row.cause for row in failed.rows] == ["payment_failed:ada_0"]
    assert [row.cause for row in receipts.rows] == ["receipt:ada"]
    assert bobs_receipts.rows == [] and bobs_receipts.total_count == 0
    assert page_one.has_next_page and not page_two.has_next_page
    assert [row.cause for row in page_one.rows + page_two.rows] == [row.cause for row in adas.rows]


async def test_retry_refuses_sent_and_pending_mails_and_unknown_ids(db, settings, smtp):
    account = await make_account(db)
    await notify(db, account.id, cause="payment_failed:evt_sent")
    await notifications.send_next(db, mail_settings(settings, f"smtp://127.0.0.1:{smtp.port}"))
    await notify(db, account.id, cause="payment_failed:evt_pending")
    sent, pending = await outbox(db)

    refusals = (
        (sent.id, ErrorCode.INVALID_STATE),
        (pending.id, ErrorCode.INVALID_STATE),
        (999, ErrorCode.NOT_FOUND),
    )
    for mail_id, code in refusals:
        async with db.session() as session, session.begin():
            with pytest.raises(DomainError) as refused:
                await notifications.retry_notification(session, notification_id=mail_id)
        assert refused.value.field == ["notificationId"] and refused.value.code is code
    assert [row.status for row in await outbox(db)] == ["sent", "pending"]


async def test_a_mail_skipped_for_no_address_is_retried_to_the_new_one(db, settings, smtp):
    account = await make_account(db, email=None)
    await notify(db, account.id)
    async with db.session() as session, session.begin():
        await session.execute(
            update(Account).where(Account.id == account.id).values(email="ada@example.com")
        )
    (skipped,) = await outbox(db)

    async with db.session() as session, session.begin():
        retried = await notifications.retry_notification(session, notification_id=skipped.id)
    await notifications.send_next(db, mail_settings(settings, f"smtp://127.0.0.1:{smtp.port}"))

    assert retried.recipient == "ada@example.com" and retried.status is DeliveryStatus.PENDING
    (received,) = smtp.inbox.messages
    assert received.rcpt_tos == ["ada@example.com"]
    assert [row.status for row in await outbox(db)] == ["sent"]
