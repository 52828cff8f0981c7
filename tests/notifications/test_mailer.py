"""Mails as the SMTP server receives them (services/mailer.py, through the outbox): headers,
both bodies, a receipt's PDF, SMTP AUTH with URL-encoded credentials, and the sandbox's
refusal to mail real addresses."""

import ipaddress
import re
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from db.models import NotificationKind
from gateway.settings import Settings
from services import mailer, notifications
from tests import factories
from tests.notifications.conftest import (
    MAIL_FROM,
    PAYMENT_FAILED_CONTEXT,
    PRODUCT,
    RECEIPT_CONTEXT,
    mail_settings,
    make_account,
    notify,
    outbox,
)
from tests.smtp_server import Inbox, serve

# The test servers take AUTH over plain TCP on loopback.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


async def test_a_receipt_arrives_with_both_bodies_and_its_invoice_pdf(db, settings, smtp):
    plan = await factories.add(db, factories.plan())
    account = await factories.customer_with_billing(
        db, user_id="ada", plans=[plan], subscriptions=1, invoices=1, lines=2, cards=1
    )
    context = RECEIPT_CONTEXT | {"invoice_number": "INV-ada-0000"}
    await notify(db, account.id, NotificationKind.RECEIPT, "receipt:in_ada_0", context, "in_ada_0")

    assert (
        await notifications.send_next(db, mail_settings(settings, f"smtp://127.0.0.1:{smtp.port}"))
        == 1
    )

    (received,) = smtp.inbox.messages
    (row,) = await outbox(db)
    message = received.message
    assert received.mail_from == MAIL_FROM and received.rcpt_tos == ["ada@example.com"]
    assert message["From"].addresses[0].display_name == PRODUCT
    assert message["From"].addresses[0].addr_spec == MAIL_FROM
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == row.subject == "Receipt for invoice INV-ada-0000"
    assert re.fullmatch(
        rf"<notification-{row.id}\.[0-9a-f]{{16}}@acme\.example>", message["Message-ID"]
    )
    assert message["Date"]
    plain = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    for body in (plain, html):
        assert PRODUCT in body and "Hello Ada," in body and "INV-ada-0000" in body
        assert "$29.00" in body and RECEIPT_CONTEXT["invoice_url"] in body
    assert "<html>" in html and "<html>" not in plain
    (pdf,) = list(message.iter_attachments())
    assert pdf.get_content_type() == "application/pdf"
    assert pdf.get_filename() == "INV-ada-0000.pdf"
    content = pdf.get_content()
    assert content.startswith(b"%PDF") and b"INV-ada-0000" in content
    assert (row.status, row.attempts, row.last_error) == ("sent", 1, None)


async def test_html_is_escaped_and_plain_text_is_not(db, settings, smtp):
    account = await make_account(db, name="Ada <b>&</b>")
    await notify(db, account.id)

    await notifications.send_next(db, mail_settings(settings, f"smtp://127.0.0.1:{smtp.port}"))

    (received,) = smtp.inbox.messages
    message = received.message
    plain = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Hello Ada <b>&</b>," in plain
    assert "Hello Ada &lt;b&gt;&amp;&lt;/b&gt;," in html
    assert 'href="https://invoice.example/pay?a=1&amp;b=2"' in html
    assert PAYMENT_FAILED_CONTEXT["decline_message"] in plain
    assert message["Subject"] == "Your payment of $29.00 failed"
    assert list(message.iter_attachments()) == []  # only receipts carry a PDF


async def test_a_customer_without_a_name_is_greeted_without_one(db, settings, smtp):
    account = await make_account(db, name=None)
    await notify(db, account.id)

    await notifications.send_next(db, mail_settings(settings, f"smtp://127.0.0.1:{smtp.port}"))

    (received,) = smtp.inbox.messages
    assert received.message.get_body(("plain",)).get_content().splitlines()[0] == "Hello,"


@pytest.mark.parametrize("kind", list(NotificationKind))
def test_every_kind_renders_its_product_greeting_and_facts(settings, kind):
    context = {
        "invoice_number": "INV-7",
        "amount": "$7.00",
        "paid_at": "7 December 2026",
        "pay_url": "https://pay.example/7",
        "plan_name": "Pro",
        "trial_end": "9 December 2026",
        "ended_at": "8 December 2026",
    }
    mail = notifications.Notification(
        kind=kind, subject="s", context=context, recipient_name="Ada", cause=f"{kind.value}:1"
    )

    rendered = notifications.render(mail, mail_settings(settings, None))

    facts = {
        NotificationKind.RECEIPT: "INV-7",
        NotificationKind.PAYMENT_FAILED: "https://pay.example/7",
        NotificationKind.PAYMENT_ACTION_REQUIRED: "https://pay.example/7",
        NotificationKind.TRIAL_ENDING: "9 December 2026",
        NotificationKind.SUBSCRIPTION_CANCELED: "8 December 2026",
        NotificationKind.REFUND_ISSUED: "$7.00",
    }
    for body in (rendered.text, rendered.html):
        assert PRODUCT in body and "Hello Ada," in body and facts[kind] in body
    assert rendered.subject == "s"


async def test_smtp_auth_with_url_encoded_credentials(db, settings, smtp_with_auth, credentials):
    account = await make_account(db)
    await notify(db, account.id)
    url = (
        f"smtp://{quote(credentials.login, safe='')}:{quote(credentials.password, safe='')}"
        f"@127.0.0.1:{smtp_with_auth.port}"
    )

    assert await notifications.send_next(db, mail_settings(settings, url)) == 1

    assert credentials.seen == [(credentials.login, credentials.password)]
    assert len(smtp_with_auth.inbox.messages) == 1
    assert [row.status for row in await outbox(db)] == ["sent"]


async def test_a_wrong_password_is_retried_and_never_stored(
    db, settings, smtp_with_auth, credentials
):
    account = await make_account(db)
    await notify(db, account.id)
    wrong = "n0t/the:p@ss"
    url = (
        f"smtp://{quote(credentials.login)}:{quote(wrong, safe='')}@127.0.0.1:{smtp_with_auth.port}"
    )

    await notifications.send_next(db, mail_settings(settings, url))

    (row,) = await outbox(db)
    # Each mechanism the server offers was tried; its refusals echoed the password back.
    assert credentials.seen and set(credentials.seen) == {(credentials.login, wrong)}
    assert (row.status, row.attempts) == ("pending", 1)
    assert "535" in row.last_error and "is not the password" in row.last_error
    assert wrong not in row.last_error and quote(wrong, safe="") not in row.last_error
    assert smtp_with_auth.inbox.messages == []


def test_smtp_url_parts():
    def server(url: str) -> mailer.SmtpServer:
        return mailer.smtp_server(Settings(smtp_url=url))

    assert server("smtps://a%40b.c:p%2Fw%3A@mail.example:465") == mailer.SmtpServer(
        hostname="mail.example", port=465, username="a@b.c", password="p/w:", use_tls=True
    )
    assert server("smtp://relay.example") == mailer.SmtpServer(
        hostname="relay.example", port=None, username=None, password=None, use_tls=False
    )


async def test_the_sandbox_never_mails_a_real_address(db, settings, smtp):
    account = await make_account(db, email="someone@gmail.com")
    await notify(db, account.id)
    sandbox = mail_settings(settings, f"smtp://127.0.0.1:{smtp.port}")
    assert sandbox.uses_sandbox

    assert await notifications.send_next(db, sandbox) == 1

    (row,) = await outbox(db)
    assert (row.status, row.last_error) == ("skipped", notifications.REAL_ADDRESS)
    assert smtp.inbox.messages == []


async def test_with_real_stripe_real_addresses_are_mailed(db, settings, smtp):
    account = await make_account(db, email="someone@gmail.com")
    await notify(db, account.id)
    live = mail_settings(
        settings, f"smtp://127.0.0.1:{smtp.port}", stripe_api_key="sk_test_not_the_sandbox"
    )
    assert not live.uses_sandbox

    await notifications.send_next(db, live)

    (received,) = smtp.inbox.messages  # the test server relays nothing further
    assert received.rcpt_tos == ["someone@gmail.com"]


@pytest.mark.parametrize(
    ("address", "reserved"),
    [
        ("a@example.com", True),
        ("a@mail.example.org", True),
        ("a@EXAMPLE.NET", True),
        ("a@shop.example", True),
        ("a@ci.test", True),
        ("a@nowhere.invalid", True),
        ("a@localhost", True),
        ("a@app.localhost", True),
        ("a@gmail.com", False),
        ("a@example.com.evil.io", False),
        ("a@notexample.com", False),
        ("a@test.com", False),
    ],
)
def test_which_addresses_are_reserved_for_tests(address, reserved):
    assert notifications.is_test_address(address) is reserved


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and its key), signed by itself."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize("scheme", ["smtps", "smtp"])
async def test_mail_goes_over_tls_to_a_server_the_machine_trusts(
    db, settings, tmp_path, monkeypatch, scheme
):
    cert, key = self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    # The machine's trust store holds the server's certificate, as a real CA's would be.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    # smtps: TLS from the first byte; smtp: STARTTLS, which the server offers.
    options: dict[str, Any] = (
        {"ssl_context": server_tls}
        if scheme == "smtps"
        else {"tls_context": server_tls, "require_starttls": True}
    )
    account = await make_account(db)
    await notify(db, account.id)
    with serve(Inbox(), **options) as server:
        sending = mail_settings(settings, f"{scheme}://127.0.0.1:{server.port}")
        assert await notifications.send_next(db, sending) == 1
    (mail,) = await outbox(db)
    assert mail.status == "sent", mail.last_error
    (received,) = server.inbox.messages
    assert received.message["Subject"] == mail.subject


async def test_a_certificate_nobody_trusts_is_refused(db, settings, tmp_path):
    cert, key = self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    account = await make_account(db)
    await notify(db, account.id)
    with serve(Inbox(), ssl_context=server_tls) as server:
        sending = mail_settings(settings, f"smtps://127.0.0.1:{server.port}")
        await notifications.send_next(db, sending)
    (mail,) = await outbox(db)
    assert mail.status == "pending" and "CERTIFICATE_VERIFY_FAILED" in mail.last_error
    assert server.inbox.messages == []
