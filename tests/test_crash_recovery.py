"""Crash recovery of `billing-gateway serve`: killed outright again and again while customers
subscribe, renew and are refunded, under webhook chaos (deliveries duplicated and reordered),
once with its embedded PostgreSQL killed as well, and started again on the same data
directory, it converges with no manual step:

- every event the sandbox has (its /v1/events) is in the webhook inbox, settled;
- the mirror equals the sandbox for every subscription, invoice (with its lines) and payment;
- every wallet holds what its paid invoices and refunded payments imply (the plans' `credits`
  price metadata, reversed in proportion to what was refunded: services/credit_sources.py);
- `billing-gateway credits verify` passes.

A crash is SIGKILL right after the last answer of a round returned: whatever the gateway was
still doing (deliveries in flight, events being applied, write-through grants) is cut short.
The sandbox runs inside serve, so it is killed and restarted with it. Convergence is waited
for by polling with a generous patience; nothing here measures time."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
import stripe
from sqlalchemy import URL, select

from db.database import Database
from db.embedded import DATABASE_NAME, postmaster_pid
from db.models import (
    Account,
    CreditAccount,
    CreditEntry,
    Invoice,
    InvoiceLine,
    PaymentTransaction,
    Plan,
    StripeEvent,
    Subscription,
    WebhookEventStatus,
)
from sandbox.demo import recorded_sandbox_url, sdk_client
from schema.ids import to_global_id
from tests.served import CONSOLE_SCRIPT, REPO_ROOT, ServedGateway, served

# Guards against a gateway that never converges, never a measure of speed.
CONVERGENCE_PATIENCE_SECONDS = 120.0
POLL_SECONDS = 1.0
# A renewal: past the end of every monthly period started before it.
RENEWAL_SECONDS = 32 * 24 * 3600
CHAOS = {"duplicate": "0.3", "reorder": "true"}
SETTLED = {WebhookEventStatus.PROCESSED, WebhookEventStatus.SKIPPED}
PARTIAL_REFUND = 1000  # cents of a renewal's 2900

PLANS = "{ plans { id productName interval } }"
REFUND = """
mutation ($input: RefundPaymentInput!) {
  refundPayment(input: $input) {
    transaction { id amountRefunded { amount } }
    userErrors { code field message }
  }
}
"""

T = TypeVar("T")


# --- the scenario ---------------------------------------------------------------------------


async def test_serve_killed_repeatedly_converges_after_restarts() -> None:
    async with served() as gateway:
        crashes = Crashes(gateway)
        await crashes.apply_chaos()
        admin = await gateway.token("crash-admin", admin=True)
        pro = await pro_monthly_plan(gateway)

        # Round 1: five customers subscribe at once; serve dies right after the last answer.
        await subscribe_all(gateway, pro, [f"crash-c{n:02}" for n in range(1, 6)])
        await crashes.kill_and_restart()

        # Round 2: five more subscribe while the first payment is refunded in full; serve
        # and its PostgreSQL both die right after.
        first_payment = await eventually(lambda: payment_of(gateway, "crash-c01", "create"))
        await asyncio.gather(
            subscribe_all(gateway, pro, [f"crash-c{n:02}" for n in range(6, 11)]),
            refund(gateway, admin, first_payment, amount=None, key="crash-refund-1"),
        )
        await crashes.kill_and_restart(postgres_too=True)

        # Round 3: a month goes by (the ten subscriptions renew), serve dies right after; then
        # four more subscribe while a renewal is partly refunded, and serve dies again.
        await crashes.advance_clock(RENEWAL_SECONDS)
        await crashes.kill_and_restart()
        renewal = await eventually(lambda: payment_of(gateway, "crash-c02", "cycle"))
        await asyncio.gather(
            subscribe_all(gateway, pro, [f"crash-c{n:02}" for n in range(11, 15)]),
            refund(gateway, admin, renewal, amount=PARTIAL_REFUND, key="crash-refund-2"),
        )
        await crashes.kill_and_restart()

        sandbox, mirror, found = await converged(gateway, crashes.sandbox_url)

        # What happened at all (so that convergence is not vacuous).
        assert crashes.kills == 4 and crashes.postgres_kills == 1
        assert len(sandbox.subscriptions) == 14, sandbox.subscriptions.keys()
        reasons = sorted(invoice["billing_reason"] for invoice in sandbox.invoices.values())
        assert reasons.count("subscription_create") == 14, reasons
        assert reasons.count("subscription_cycle") == 10, reasons
        assert sorted(refund["amount"] for refund in sandbox.refunds) == [PARTIAL_REFUND, 2900]
        # What the crashes must not leave behind.
        assert found == [], "\n".join(found)
        # Two months' grants of 1000, less the refunded first; less 1000 × 1000 / 2900 of the
        # partly refunded renewal; one month's.
        balances = [mirror.balances.get(f"crash-c{n:02}") for n in (1, 2, 3, 11)]
        assert balances == [1000, 2000 - 1000 * PARTIAL_REFUND // 2900, 2000, 1000], balances
        verify = await credits_verify(gateway)
        assert verify.returncode == 0, verify.output


# --- crashes and the sandbox's controls ------------------------------------------------------


@dataclass
class Crashes:
    """Kills and restarts of one served gateway, and the sandbox it runs."""

    gateway: ServedGateway
    kills: int = 0
    postgres_kills: int = 0
    sandbox_url: str = ""

    def __post_init__(self) -> None:
        url = recorded_sandbox_url(self.gateway.data_dir)
        assert url is not None, "serve records its sandbox's address"
        self.sandbox_url = url

    async def kill_and_restart(self, *, postgres_too: bool = False) -> None:
        """SIGKILL serve (and with `postgres_too` its embedded PostgreSQL's postmaster, as a
        crash of the machine's services would), then `serve` again on the same data directory
        and port, and the chaos again (whether the sandbox kept it or not)."""
        if postgres_too:
            postmaster_process(self.gateway.data_dir).kill()
            # Restarted at once: the killed postmaster may still be a zombie whose pid
            # postmaster.pid names (start_embedded_postgres waits for it to go).
            await self.gateway.kill()
            self.postgres_kills += 1
        else:
            await self.gateway.kill()
        self.kills += 1
        await self.gateway.restart()
        url = recorded_sandbox_url(self.gateway.data_dir)
        assert url == self.sandbox_url, f"the sandbox moved from {self.sandbox_url} to {url}"
        await self.apply_chaos()

    async def apply_chaos(self) -> None:
        """Duplicated and reordered deliveries to the gateway's endpoint (seeded per run)."""
        webhook_url = f"{self.gateway.base_url}/webhooks/stripe"
        async with sdk_client(self.sandbox_url) as client:
            endpoints = (await client.v1.webhook_endpoints.list_async({"limit": 100})).data
        ours = [endpoint.id for endpoint in endpoints if endpoint.url == webhook_url]
        assert ours, f"no webhook endpoint for {webhook_url}: {endpoints}"
        async with httpx.AsyncClient(base_url=self.sandbox_url) as control:
            for endpoint_id in ours:
                form = CHAOS | {"seed": str(self.kills + 1)}
                answer = await control.post(
                    f"/_sandbox/webhook_endpoints/{endpoint_id}/chaos", data=form
                )
                assert answer.status_code == 200, answer.text

    async def advance_clock(self, seconds: int) -> None:
        """Move the sandbox-wide clock (the gateway's customers have no test clock)."""
        async with httpx.AsyncClient(base_url=self.sandbox_url, timeout=60) as control:
            answer = await control.post("/_sandbox/clock/advance", data={"seconds": str(seconds)})
        assert answer.status_code == 200, answer.text


def postmaster_process(data_dir: Path) -> psutil.Process:
    """The embedded PostgreSQL's postmaster (the pid its postmaster.pid names)."""
    pid = postmaster_pid(data_dir / "postgres")
    assert pid is not None, "serve's embedded PostgreSQL has no postmaster.pid"
    return psutil.Process(pid)


def postmaster_lines(data_dir: Path) -> list[str]:
    return (data_dir / "postgres" / "postmaster.pid").read_text().splitlines()


# --- customers and the admin, through the API -------------------------------------------------


async def pro_monthly_plan(gateway: ServedGateway) -> str:
    plans = (await gateway.execute(PLANS))["plans"]
    [pro] = [p["id"] for p in plans if p["productName"] == "Pro" and p["interval"] == "MONTH"]
    return pro


async def subscribe_all(gateway: ServedGateway, plan_id: str, users: list[str]) -> None:
    """Each user signs in, attaches a card and subscribes; all at once."""
    tokens = await asyncio.gather(*(gateway.token(user) for user in users))
    subscriptions = await asyncio.gather(
        *(gateway.subscribe_customer(token, plan_id) for token in tokens)
    )
    assert [s["status"] for s in subscriptions] == ["ACTIVE"] * len(users), subscriptions


async def refund(
    gateway: ServedGateway, admin: str, transaction_id: str, *, amount: int | None, key: str
) -> None:
    refund_input: dict[str, Any] = {
        "transactionId": transaction_id,
        "reason": "crash test",
        "idempotencyKey": key,
    }
    if amount is not None:
        refund_input["amount"] = str(amount)
    answer = await gateway.execute(REFUND, {"input": refund_input}, token=admin)
    assert answer["refundPayment"]["userErrors"] == [], answer


async def payment_of(gateway: ServedGateway, user: str, reason: str) -> str | None:
    """The global id of the mirrored payment of the user's `subscription_<reason>` invoice,
    once it is mirrored as succeeded."""
    async with mirror_database(gateway.data_dir) as database, database.session() as session:
        row_id = await session.scalar(
            select(PaymentTransaction.id)
            .join(Account, Account.id == PaymentTransaction.account_id)
            .join(Invoice, Invoice.stripe_invoice_id == PaymentTransaction.invoice_stripe_id)
            .where(
                Account.user_id == user,
                Invoice.billing_reason == f"subscription_{reason}",
                PaymentTransaction.status == "succeeded",
            )
        )
    return to_global_id("PaymentTransaction", row_id) if row_id is not None else None


async def eventually(probe: Callable[[], Awaitable[T | None]]) -> T:
    """The probe's first answer that is not None, polled with the convergence patience."""
    async with asyncio.timeout(CONVERGENCE_PATIENCE_SECONDS):
        while (found := await probe()) is None:
            await asyncio.sleep(POLL_SECONDS)
    return found


@dataclass
class Finished:
    returncode: int
    output: str


async def credits_verify(gateway: ServedGateway) -> Finished:
    """`billing-gateway credits verify` with serve's own settings."""
    process = await asyncio.create_subprocess_exec(
        str(CONSOLE_SCRIPT),
        "credits",
        "verify",
        env=gateway.env,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(60):
        out, _ = await process.communicate()
    assert process.returncode is not None
    return Finished(process.returncode, out.decode(errors="replace"))


# --- convergence ------------------------------------------------------------------------------


async def converged(
    gateway: ServedGateway, sandbox_url: str
) -> tuple["SandboxState", "MirrorState", list[str]]:
    """Both sides once nothing differs, with no differences; else, after the patience, the
    last look at both and what differed then."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CONVERGENCE_PATIENCE_SECONDS
    async with sdk_client(sandbox_url) as client, mirror_database(gateway.data_dir) as database:
        while True:
            sandbox = await read_sandbox(client)
            mirror = await read_mirror(database)
            found = differences(sandbox, mirror)
            if not found or loop.time() > deadline:
                return sandbox, mirror, found
            await asyncio.sleep(POLL_SECONDS)


@asynccontextmanager
async def mirror_database(data_dir: Path) -> AsyncIterator[Database]:
    """serve's database on its embedded PostgreSQL, as its postmaster.pid gives it now (the
    socket directory and port), without taking a handle on the server (which would stop it
    when this process exits)."""
    lines = postmaster_lines(data_dir)
    url = URL.create(
        "postgresql+asyncpg",
        username="postgres",
        database=DATABASE_NAME,
        query={"host": lines[4], "port": lines[3]},
    )
    database = Database(url, pool_size=2)
    try:
        yield database
    finally:
        await database.dispose()


@dataclass
class SandboxState:
    """What the sandbox (Stripe) has, read through the official SDK, as plain JSON dicts."""

    events: dict[str, str] = field(default_factory=dict)  # id: type
    customers: set[str] = field(default_factory=set)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: list[dict[str, Any]] = field(default_factory=list)  # newest first
    price_credits: dict[str, int] = field(default_factory=dict)


@dataclass
class MirrorState:
    """What the gateway's database holds."""

    events: dict[str, StripeEvent] = field(default_factory=dict)
    customers: dict[str, str] = field(default_factory=dict)  # Stripe customer: user
    users: dict[int, str] = field(default_factory=dict)  # account id: user
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    balances: dict[str, int] = field(default_factory=dict)  # user: balance
    entries: dict[str, dict[str, int]] = field(default_factory=dict)  # user: {key: amount}


async def listed(pages: Awaitable[Any]) -> list[dict[str, Any]]:
    """Every object of a list call, all its pages, as JSON dicts."""
    page = await pages
    return [item.to_dict() async for item in page.auto_paging_iter()]


async def read_sandbox(client: stripe.StripeClient) -> SandboxState:
    v1 = client.v1
    every = {"limit": 100}
    events = await listed(v1.events.list_async(every))
    customers = await listed(v1.customers.list_async(every))
    subscriptions = await listed(v1.subscriptions.list_async(every | {"status": "all"}))
    invoices = await listed(v1.invoices.list_async(every | {"expand": ["data.payments"]}))
    intents = await listed(
        v1.payment_intents.list_async(every | {"expand": ["data.latest_charge"]})
    )
    refunds = await listed(v1.refunds.list_async(every))
    prices = await listed(v1.prices.list_async(every))
    return SandboxState(
        events={event["id"]: event["type"] for event in events},
        customers={customer["id"] for customer in customers},
        subscriptions={s["id"]: s for s in subscriptions},
        invoices={invoice["id"]: invoice for invoice in invoices},
        payments={intent["id"]: intent for intent in intents},
        refunds=refunds,
        price_credits={price["id"]: int(price["metadata"].get("credits") or 0) for price in prices},
    )


async def read_mirror(database: Database) -> MirrorState:
    async with database.read_session() as session:
        events = (await session.scalars(select(StripeEvent))).all()
        accounts = (await session.scalars(select(Account))).all()
        prices = dict((await session.execute(select(Plan.id, Plan.stripe_price_id))).all())
        subscriptions = (await session.scalars(select(Subscription))).all()
        invoices = (await session.scalars(select(Invoice))).all()
        lines = (await session.scalars(select(InvoiceLine).order_by(InvoiceLine.position))).all()
        payments = (await session.scalars(select(PaymentTransaction))).all()
        wallets = (await session.execute(select(CreditAccount.id, CreditAccount.account_id))).all()
        balances = dict(
            (await session.execute(select(CreditAccount.account_id, CreditAccount.balance))).all()
        )
        entries = (await session.scalars(select(CreditEntry))).all()
    customer_of = {a.id: a.stripe_customer_id for a in accounts}
    users = {a.id: a.user_id for a in accounts}
    owner = {wallet_id: users[account_id] for wallet_id, account_id in wallets}
    lines_of: dict[int, list[dict[str, Any]]] = {}
    for line in lines:
        lines_of.setdefault(line.invoice_id, []).append(
            {
                "id": line.stripe_line_id,
                "amount": line.amount,
                "quantity": line.quantity,
                "price": line.price_stripe_id,
                "proration": line.proration,
            }
        )
    mirror = MirrorState(
        events={event.stripe_event_id: event for event in events},
        customers={a.stripe_customer_id: a.user_id for a in accounts if a.stripe_customer_id},
        users=users,
        balances={users[account_id]: balance for account_id, balance in balances.items()},
    )
    for s in subscriptions:
        mirror.subscriptions[s.stripe_subscription_id] = {
            "customer": customer_of[s.account_id],
            "status": s.status.value,
            "price": prices[s.plan_id],
            "quantity": s.quantity,
            "current_period_start": seconds(s.current_period_start),
            "current_period_end": seconds(s.current_period_end),
            "cancel_at_period_end": s.cancel_at_period_end,
            "cancel_at": seconds(s.cancel_at),
            "canceled_at": seconds(s.canceled_at),
            "ended_at": seconds(s.ended_at),
            "latest_invoice": s.latest_invoice_stripe_id,
            "default_payment_method": s.default_payment_method_stripe_id,
            "created": seconds(s.stripe_created_at),
        }
    for i in invoices:
        mirror.invoices[i.stripe_invoice_id] = {
            "customer": customer_of[i.account_id],
            "subscription": i.subscription_stripe_id,
            "status": i.status.value,
            "number": i.number,
            "billing_reason": i.billing_reason,
            "currency": i.currency,
            "subtotal": i.subtotal,
            "total": i.total,
            "amount_due": i.amount_due,
            "amount_paid": i.amount_paid,
            "amount_remaining": i.amount_remaining,
            "period_start": seconds(i.period_start),
            "period_end": seconds(i.period_end),
            "paid_at": seconds(i.paid_at),
            "created": seconds(i.stripe_created_at),
            "lines": lines_of.get(i.id, []),
        }
    for p in payments:
        mirror.payments[p.stripe_payment_intent_id] = {
            "customer": customer_of[p.account_id],
            "status": p.status.value,
            "amount": p.amount,
            "amount_received": p.amount_received,
            "amount_refunded": p.amount_refunded,
            "currency": p.currency,
            "payment_method": p.payment_method_stripe_id,
            "latest_charge": p.latest_charge_stripe_id,
            "invoice": p.invoice_stripe_id,
            "created": seconds(p.stripe_created_at),
        }
    for entry in entries:
        user = owner[entry.credit_account_id]
        mirror.entries.setdefault(user, {})[entry.idempotency_key] = entry.amount
    return mirror


def seconds(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


def expected_subscription(s: dict[str, Any]) -> dict[str, Any]:
    [item] = s["items"]["data"]
    return {
        "customer": s["customer"],
        "status": s["status"],
        "price": item["price"]["id"],
        "quantity": item.get("quantity") or 1,
        "current_period_start": item["current_period_start"],
        "current_period_end": item["current_period_end"],
        "cancel_at_period_end": bool(s.get("cancel_at_period_end")),
        "cancel_at": s.get("cancel_at"),
        "canceled_at": s.get("canceled_at"),
        "ended_at": s.get("ended_at"),
        "latest_invoice": s.get("latest_invoice"),
        "default_payment_method": s.get("default_payment_method"),
        "created": s["created"],
    }


def expected_invoice(i: dict[str, Any]) -> dict[str, Any]:
    subscription = ((i.get("parent") or {}).get("subscription_details") or {}).get("subscription")
    lines = []
    for line in i["lines"]["data"]:
        parent = line.get("parent") or {}
        details = parent.get("subscription_item_details") or parent.get("invoice_item_details")
        pricing = (line.get("pricing") or {}).get("price_details") or {}
        lines.append(
            {
                "id": line["id"],
                "amount": line["amount"],
                "quantity": line.get("quantity"),
                "price": pricing.get("price"),
                "proration": bool((details or {}).get("proration")),
            }
        )
    return {
        "customer": i["customer"],
        "subscription": subscription,
        "status": i["status"],
        "number": i.get("number"),
        "billing_reason": i.get("billing_reason"),
        "currency": i["currency"],
        "subtotal": i["subtotal"],
        "total": i["total"],
        "amount_due": i["amount_due"],
        "amount_paid": i["amount_paid"],
        "amount_remaining": i["amount_remaining"],
        "period_start": i.get("period_start"),
        "period_end": i.get("period_end"),
        "paid_at": (i.get("status_transitions") or {}).get("paid_at"),
        "created": i["created"],
        "lines": lines,
    }


def invoice_of_payment(sandbox: SandboxState) -> dict[str, str]:
    """PaymentIntent id: the invoice it paid (its invoice_payments)."""
    found = {}
    for invoice in sandbox.invoices.values():
        for payment in invoice["payments"]["data"]:
            intent = (payment.get("payment") or {}).get("payment_intent")
            if intent:
                found[intent] = invoice["id"]
    return found


def expected_payment(intent: dict[str, Any], invoice_id: str | None) -> dict[str, Any]:
    charge = intent.get("latest_charge") or {}
    return {
        "customer": intent["customer"],
        "status": intent["status"],
        "amount": intent["amount"],
        "amount_received": intent.get("amount_received") or 0,
        "amount_refunded": charge.get("amount_refunded") or 0,
        "currency": intent["currency"],
        "payment_method": intent.get("payment_method"),
        "latest_charge": charge.get("id"),
        "invoice": invoice_id,
        "created": intent["created"],
    }


def expected_entries(sandbox: SandboxState) -> dict[str, dict[str, int]]:
    """Stripe customer: the ledger entries its money implies, by key. A paid invoice grants
    its full-period lines' price credits × quantity (`grant:<invoice>`); each succeeded refund
    of its payment reverses its share, oldest first, so that the reversals of a payment add up
    to floor(grant × refunded / amount) (`refund:<re_…>`)."""
    entries: dict[str, dict[str, int]] = {}
    grants: dict[str, int] = {}
    for invoice in sandbox.invoices.values():
        if invoice["status"] != "paid":
            continue
        credits = sum(
            sandbox.price_credits.get(line["price"] or "", 0) * (line["quantity"] or 1)
            for line in expected_invoice(invoice)["lines"]
            if not line["proration"] and line["amount"] > 0
        )
        if credits > 0:
            grants[invoice["id"]] = credits
            entries.setdefault(invoice["customer"], {})[f"grant:{invoice['id']}"] = credits
    paid_by = invoice_of_payment(sandbox)
    for intent_id, intent in sandbox.payments.items():
        grant = grants.get(paid_by.get(intent_id, ""))
        if not grant or intent["amount"] <= 0:
            continue
        oldest_first = reversed([r for r in sandbox.refunds if r["payment_intent"] == intent_id])
        refunded = reversed_total = 0
        for made in oldest_first:
            if made["status"] != "succeeded":
                continue
            refunded += made["amount"]
            owed = grant * refunded // intent["amount"] - reversed_total
            if owed > 0:
                entries.setdefault(intent["customer"], {})[f"refund:{made['id']}"] = -owed
                reversed_total += owed
    return entries


def differences(sandbox: SandboxState, mirror: MirrorState) -> list[str]:
    """Everything in which the gateway's database does not (yet) agree with the sandbox."""
    found = []
    for event_id, event_type in sandbox.events.items():
        row = mirror.events.get(event_id)
        if row is None:
            found.append(f"event {event_id} ({event_type}) is not in the inbox")
        elif row.status not in SETTLED:
            found.append(
                f"event {event_id} ({event_type}) is {row.status.value} after "
                f"{row.attempts} attempts: {row.last_error}"
            )
    for event_id in mirror.events.keys() - sandbox.events.keys():
        found.append(f"inbox event {event_id} ({mirror.events[event_id].type}) is not Stripe's")
    for customer in sandbox.customers - mirror.customers.keys():
        found.append(f"customer {customer} has no account")
    paid_by = invoice_of_payment(sandbox)
    found += compare(
        "subscription",
        {key: expected_subscription(s) for key, s in sandbox.subscriptions.items()},
        mirror.subscriptions,
    )
    found += compare(
        "invoice",
        {key: expected_invoice(i) for key, i in sandbox.invoices.items()},
        mirror.invoices,
    )
    found += compare(
        "payment",
        {key: expected_payment(p, paid_by.get(key)) for key, p in sandbox.payments.items()},
        mirror.payments,
    )
    expected = expected_entries(sandbox)
    for user in sorted(set(mirror.users.values())):
        customer = next((c for c, u in mirror.customers.items() if u == user), None)
        wanted = expected.get(customer, {}) if customer else {}
        held = mirror.entries.get(user, {})
        if held != wanted:
            found.append(f"wallet of {user}: ledger {held}, the sandbox implies {wanted}")
        balance = mirror.balances.get(user, 0)
        if balance != sum(wanted.values()):
            found.append(f"wallet of {user}: balance {balance}, implied {sum(wanted.values())}")
    return found


def compare(
    kind: str, sandbox: dict[str, dict[str, Any]], mirror: dict[str, dict[str, Any]]
) -> list[str]:
    found = []
    for key in sorted(sandbox.keys() - mirror.keys()):
        found.append(f"{kind} {key} is not mirrored")
    for key in sorted(mirror.keys() - sandbox.keys()):
        found.append(f"mirrored {kind} {key} is not in the sandbox")
    for key in sorted(sandbox.keys() & mirror.keys()):
        for name, value in sandbox[key].items():
            if mirror[key].get(name) != value:
                found.append(f"{kind} {key}: {name} is {mirror[key].get(name)!r}, not {value!r}")
    return found
