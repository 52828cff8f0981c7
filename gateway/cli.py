"""The `billing-gateway` command line."""

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop
from pydantic import ValidationError

from db import migrate as migrations
from db import sealed
from db.database import Database, open_database
from db.embedded import DatabaseStartError
from db.models import WebhookEventStatus
from gateway.auth import AuthError, mint_token
from gateway.logs import configure_logging
from gateway.settings import ConfigurationError, Settings


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
        configure_logging(settings)
        return args.run(settings, args)
    except (ConfigurationError, DatabaseStartError, AuthError) as exc:
        print(f"billing-gateway: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"billing-gateway: invalid configuration:\n{exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="billing-gateway", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="bind address (default HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default PORT or 8000)")
    serve.add_argument("--no-migrate", action="store_true", help="do not migrate at start")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="HTTP processes on the one port (default 1; see docs/architecture.md)",
    )
    # A replica of `serve --workers N`: the socket its supervisor bound (gateway/serving.py).
    serve.add_argument("--socket-fd", type=int, help=argparse.SUPPRESS)
    serve.set_defaults(run=_serve)

    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("--to", default="head", help="upgrade to this revision (default head)")
    migrate.add_argument("--down-to", help="downgrade to this revision instead ('base': empty)")
    migrate.set_defaults(run=_migrate)

    worker = commands.add_parser("worker", help="apply received webhook events (no HTTP)")
    worker.add_argument(
        "--concurrency",
        type=int,
        help="events applied at once (default: WEBHOOK_WORKER_CONCURRENCY)",
    )
    worker.set_defaults(run=_worker)

    _add_events_commands(commands)

    sync = commands.add_parser("sync", help="re-read Stripe into the mirror")
    sync.add_argument(
        "what",
        nargs="?",
        choices=["accounts", "plans"],
        default="accounts",
        help="accounts (default): every known customer's objects; plans: prices and products",
    )
    sync.add_argument(
        "--events", action="store_true", help="store Stripe events missing from the inbox"
    )
    sync.set_defaults(run=_sync)

    credits = commands.add_parser("credits", help="check the credits ledger")
    credit_actions = credits.add_subparsers(required=True, metavar="ACTION")
    verify = credit_actions.add_parser(
        "verify", help="recompute every balance from its ledger; exit 1 listing mismatches"
    )
    verify.set_defaults(run=_credits_verify)

    retention = commands.add_parser(
        "retention", help="strip and anonymise what is past its retention period"
    )
    retention.add_argument(
        "--dry-run", action="store_true", help="only count what a pass would change"
    )
    retention.set_defaults(run=_retention)

    keys = commands.add_parser("keys", help="the data keys personal data is sealed with")
    key_actions = keys.add_subparsers(required=True, metavar="ACTION")
    rotate = key_actions.add_parser(
        "rotate", help="re-seal every value under DATA_ENCRYPTION_KEYS' first key, online"
    )
    rotate.add_argument("--batch-size", type=int, default=500, help="rows per transaction")
    rotate.set_defaults(run=_keys_rotate)
    generate = key_actions.add_parser("generate", help="print a new key for DATA_ENCRYPTION_KEYS")
    generate.add_argument("--id", default=None, help="its key id (default: today's date)")
    generate.set_defaults(run=_keys_generate)

    sandbox = commands.add_parser("sandbox", help="run the offline Stripe sandbox on its own")
    sandbox.add_argument("--port", type=int, default=12111, help="port (default 12111)")
    sandbox.add_argument("--state-file", type=Path, help="keep the sandbox's state in this file")
    sandbox.set_defaults(run=_sandbox)

    token = commands.add_parser("token", help="print a development bearer token")
    token.add_argument("--user", required=True, help="the user id (the token's `sub`)")
    token.add_argument("--admin", action="store_true", help="grant the billing admin role")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    token.add_argument("--email", help="an email claim")
    token.set_defaults(run=_token)
    return parser


def stripe_api_base(settings: Settings) -> str | None:
    """Where a command calls Stripe: STRIPE_API_BASE; in sandbox mode, the sandbox `serve`
    runs (its address recorded under BILLING_DATA_DIR); else Stripe itself."""
    if settings.stripe_api_base or not settings.uses_sandbox:
        return settings.stripe_api_base
    from sandbox.demo import recorded_sandbox_url

    return recorded_sandbox_url(settings.billing_data_dir)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from gateway import serving

    if args.workers < 1:
        raise ConfigurationError("--workers must be at least 1")
    host, port = args.host or settings.host, args.port or settings.port
    settings = settings.model_copy(update={"host": host, "port": port})
    migrate, banner = not args.no_migrate, _banner(settings, host, port)
    if args.socket_fd is not None:
        serving.serve_replica(settings, args.socket_fd)
    elif args.workers > 1:
        serving.serve_replicas(settings, workers=args.workers, migrate=migrate, banner=banner)
    else:
        serving.serve_one(settings, migrate=migrate, banner=banner)
    return 0


def _banner(settings: Settings, host: str, port: int) -> str:
    url = f"http://{host}:{port}/graphql"
    lines = [
        "",
        f"  billing-gateway ({settings.billing_env.value})",
        f"  GraphQL:  {url}" + ("" if settings.is_production else "  (GraphiQL in a browser)"),
        f"  App:      http://{host}:{port}/app/  (the reference billing app)",
        "  Token:    billing-gateway token --user alice [--admin]",
        "            then send the header  Authorization: Bearer <token>",
    ]
    if settings.uses_sandbox:
        lines.append("  Stripe:   no STRIPE_API_KEY: the OFFLINE SANDBOX stands in for Stripe")
    return "\n".join(lines) + "\n"


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    async def run() -> None:
        database: Database = await open_database(settings)
        try:
            if args.down_to:
                await migrations.downgrade(database.engine, args.down_to)
            else:
                await migrations.upgrade(database.engine, args.to)
            async with database.engine.connect() as conn:
                print(f"database at revision {await migrations.current_revision(conn)}")
        finally:
            await database.dispose()

    asyncio.run(run())
    return 0


def _sync(settings: Settings, args: argparse.Namespace) -> int:
    from services import catalog
    from services.errors import DomainError
    from services.stripe.client import StripeApi
    from services.webhooks import reconcile, sync

    async def run() -> int:
        database = await open_database(settings)
        stripe = StripeApi(settings, stripe_api_base(settings))
        try:
            async with database.session() as session:
                if args.events:
                    passed = await reconcile.reconcile_events(database=database, stripe=stripe)
                    if passed is None:
                        print("billing-gateway: another process is reconciling", file=sys.stderr)
                        return 1
                    message = f"stored {passed.added} missing events in the inbox"
                elif args.what == "plans":
                    count = await catalog.sync_plans(session=session, stripe=stripe)
                    message = f"synced {count} prices into plans"
                else:
                    count = await sync.resync_accounts(database=database, stripe=stripe)
                    message = f"resynced {count} accounts from Stripe"
        except DomainError as error:
            print(f"billing-gateway: {error.message}", file=sys.stderr)
            return 1
        finally:
            await stripe.close()
            await database.dispose()
        print(message)
        return 0

    return asyncio.run(run())


def _sandbox(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.settings import SANDBOX_API_KEY
    from sandbox.app import create_sandbox_app
    from sandbox.spec import API_VERSION
    from sandbox.store import Store

    store = Store(webhook_secret=settings.webhook_secrets[0])
    app = create_sandbox_app(store, state_file=args.state_file)
    print(
        f"\n  OFFLINE STRIPE SANDBOX on http://127.0.0.1:{args.port} (API {API_VERSION})\n"
        f"  Use STRIPE_API_BASE=http://127.0.0.1:{args.port} and any sk_test_ key, e.g. "
        f"{SANDBOX_API_KEY}\n",
        flush=True,
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_config=None)
    return 0


def _add_events_commands(commands: "argparse._SubParsersAction[Any]") -> None:
    events = commands.add_parser("events", help="inspect and replay received webhook events")
    actions = events.add_subparsers(required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the newest events first")
    listing.add_argument("--status", choices=[status.value for status in WebhookEventStatus])
    listing.add_argument("--type", help="only this event type, e.g. invoice.paid")
    listing.add_argument("--limit", type=int, default=20, help="at most this many (max 100)")
    listing.set_defaults(run=_events_list)
    show = actions.add_parser("show", help="one event with its payload")
    show.add_argument("event_id", help="row id or Stripe event id (evt_...)")
    show.set_defaults(run=_events_show)
    replay = actions.add_parser("replay", help="apply an event again (or every failed one)")
    replay.add_argument("event_id", nargs="?", help="row id or Stripe event id (evt_...)")
    replay.add_argument("--failed", action="store_true", help="replay every failed event")
    replay.set_defaults(run=_events_replay)


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from services import retention
    from services.outbox_worker import OutboxWorker
    from services.stripe.client import StripeApi
    from services.webhooks.worker import worker_for

    if args.concurrency is not None:
        settings = settings.model_copy(update={"webhook_worker_concurrency": args.concurrency})
    if settings.webhook_worker_concurrency < 1:
        raise ConfigurationError("--concurrency must be at least 1")

    async def run() -> None:
        database = await open_database(settings)
        stripe = StripeApi(settings, stripe_api_base(settings))
        try:
            async with asyncio.TaskGroup() as workers:
                workers.create_task(
                    worker_for(database=database, stripe=stripe, settings=settings).run()
                )
                workers.create_task(OutboxWorker(database=database, settings=settings).run())
                workers.create_task(retention.keep_running(database, settings))
        finally:
            await stripe.close()
            await database.dispose()

    print(
        f"billing-gateway worker: applying webhook events, "
        f"{settings.webhook_worker_concurrency} at a time, sending the outbox's mails and "
        "webhooks, and running retention passes",
        flush=True,
    )
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        uvloop.run(run())
    except KeyboardInterrupt:
        pass
    return 0


def _event_key(value: str) -> int | str:
    """A row id (digits) or a Stripe event id."""
    return int(value) if value.isdigit() else value


def _with_session(settings: Settings, action: Callable[[Any], Awaitable[int]]) -> int:
    """Run `action(session)` on a fresh database connection; a DomainError exits 1."""

    async def in_session(database: Database) -> int:
        async with database.session() as session:
            return await action(session)

    return _with_database(settings, in_session)


def _with_database(settings: Settings, action: Callable[[Database], Awaitable[int]]) -> int:
    """Run `action(database)` on the database opened for it; a DomainError exits 1."""
    from services.errors import DomainError

    async def run() -> int:
        database = await open_database(settings)
        try:
            return await action(database)
        except DomainError as error:
            print(f"billing-gateway: {error.message}", file=sys.stderr)
            return 1
        finally:
            await database.dispose()

    return asyncio.run(run())


def _events_list(settings: Settings, args: argparse.Namespace) -> int:
    from services.webhooks import inbox

    async def run(database: Database) -> int:
        statuses = [WebhookEventStatus(args.status)] if args.status else None
        page = await inbox.list_events(
            database, statuses=statuses, event_type=args.type, first=args.limit
        )
        for row in page.rows:
            error = f"  {row.last_error}" if row.last_error else ""
            print(
                f"{row.id}\t{row.stripe_event_id}\t{row.type}\t{row.status.value}\t"
                f"attempts={row.attempts}\treceived={row.received_at.isoformat()}{error}"
            )
        print(f"{len(page.rows)} of {page.total_count} event(s)", file=sys.stderr)
        return 0

    return _with_database(settings, run)


def _events_show(settings: Settings, args: argparse.Namespace) -> int:
    from services.webhooks import inbox

    async def run(session: Any) -> int:
        row = await inbox.get_event(session=session, event_id=_event_key(args.event_id))
        print(json.dumps(_event_json(row), indent=2, default=str))
        return 0

    return _with_session(settings, run)


def _credits_verify(settings: Settings, args: argparse.Namespace) -> int:
    from services import credits

    async def run(session: Any) -> int:
        mismatches = await credits.find_mismatches(session=session)
        for found in mismatches:
            print(
                f"account {found.account_id}\tuser={found.user_id}\tbalance={found.balance}\t"
                f"ledger={found.ledger_sum}"
            )
        if mismatches:
            print(f"{len(mismatches)} wallet(s) differ from their ledger", file=sys.stderr)
            return 1
        print("every wallet's balance is the sum of its ledger", file=sys.stderr)
        return 0

    return _with_session(settings, run)


def _retention(settings: Settings, args: argparse.Namespace) -> int:
    from services import retention

    async def run() -> int:
        database = await open_database(settings)
        try:
            report = await retention.run(database, settings, dry_run=args.dry_run)
        finally:
            await database.dispose()
        if report is None:
            print("billing-gateway: another process is running retention", file=sys.stderr)
            return 1
        for line in _retention_lines(report):
            print(line)
        return 0

    return asyncio.run(run())


def _keys_rotate(settings: Settings, args: argparse.Namespace) -> int:
    from services import key_rotation

    async def run() -> int:
        database = await open_database(settings)
        try:
            counts = await key_rotation.rotate(database, batch_size=args.batch_size)
        finally:
            await database.dispose()
        for field, count in counts.items():
            print(f"re-sealed {count} {field}")
        print(f"every sealed value is under key {sealed.keyring().primary.id}", file=sys.stderr)
        return 0

    return asyncio.run(run())


def _keys_generate(settings: Settings, args: argparse.Namespace) -> int:
    print(sealed.new_key_text(args.id or datetime.now(UTC).strftime("%Y-%m-%d")))
    return 0


def _retention_lines(report: Any) -> list[str]:
    """One line per action: "would strip 3 event payloads" or "stripped 3 event payloads"."""
    done = {
        "event_payloads_stripped": ("strip", "stripped", "webhook event payloads"),
        "product_payloads_stripped": ("strip", "stripped", "product event payloads"),
        "notifications_stripped": ("strip", "stripped", "notifications"),
        "idempotency_keys_deleted": ("delete", "deleted", "idempotency keys"),
        "invoices_anonymised": ("anonymise", "anonymised", "invoices"),
        "payments_anonymised": ("anonymise", "anonymised", "payments"),
        "cost_budgets_deleted": ("delete", "deleted", "refilled query cost budgets"),
    }
    lines = []
    for action, count in report.counts().items():
        verb, past, what = done[action]
        lines.append(f"would {verb} {count} {what}" if report.dry_run else f"{past} {count} {what}")
    return lines


def _event_json(row: Any) -> dict[str, Any]:
    names = [
        "id", "stripe_event_id", "type", "status", "attempts", "last_error", "livemode",
        "api_version", "object_id", "stripe_created_at", "received_at", "next_attempt_at",
        "processed_at",
    ]  # fmt: skip
    from services.webhooks.inbox import event_of

    # The event as received (its personal data opened for the operator), or the stub kept.
    return {name: getattr(row, name) for name in names} | {
        "payload": event_of(row.payload) or row.payload
    }


def _events_replay(settings: Settings, args: argparse.Namespace) -> int:
    from services.webhooks import inbox

    if bool(args.failed) == bool(args.event_id):
        raise ConfigurationError("events replay takes an event id or --failed (not both)")

    async def run(session: Any) -> int:
        if args.failed:
            count = await inbox.replay_failed_events(session=session)
            print(f"queued {count} failed event(s) again")
        else:
            row = await inbox.replay_event(session=session, event_id=_event_key(args.event_id))
            print(f"queued {row.stripe_event_id} ({row.type}) again")
        return 0

    return _with_session(settings, run)


def _token(settings: Settings, args: argparse.Namespace) -> int:
    if settings.is_production:
        raise ConfigurationError("`token` mints development tokens and is refused in production")
    if args.ttl <= 0:
        raise ConfigurationError("--ttl must be a positive number of seconds")
    print(
        mint_token(
            settings, user_id=args.user, admin=args.admin, ttl_seconds=args.ttl, email=args.email
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
