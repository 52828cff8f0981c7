"""One mail as a MIME message, and its hand-over to the SMTP server of SMTP_URL.

smtp://user:pass@host:port connects in plain and upgrades with STARTTLS when the server offers
it; smtps://… connects over TLS. Credentials are URL-decoded. Neither the URL nor the password
is ever logged or put in an exception message here."""

import asyncio
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate
from urllib.parse import unquote, urlsplit

import aiosmtplib

from gateway.settings import Settings

# Each SMTP command's limit, and the whole conversation's: a server that answers every command
# just in time must not hold a mail (and its lease, services/notifications.py) for longer.
SEND_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class SmtpServer:
    """Where SMTP_URL says to send, parsed."""

    hostname: str
    port: int | None  # None: the scheme's usual port (25, or 465 with TLS)
    username: str | None
    password: str | None
    use_tls: bool


def build_message(
    *,
    settings: Settings,
    recipient: str,
    rendered: RenderedMail,
    message_id: str,
    attachment: tuple[str, bytes] | None,
) -> EmailMessage:
    """multipart/alternative (text, html), inside multipart/mixed when a PDF is attached."""
    message = EmailMessage()
    message["From"] = Address(display_name=settings.product_name, addr_spec=settings.mail_from)
    message["To"] = recipient
    message["Subject"] = rendered.subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    if attachment is not None:
        filename, content = attachment
        message.add_attachment(content, maintype="application", subtype="pdf", filename=filename)
    return message


def smtp_server(settings: Settings) -> SmtpServer:
    """SMTP_URL's parts (Settings has checked its shape)."""
    assert settings.smtp_url is not None, "only called with SMTP_URL set"
    url = urlsplit(settings.smtp_url.get_secret_value())
    return SmtpServer(
        hostname=url.hostname or "localhost",
        port=url.port,
        username=unquote(url.username) if url.username else None,
        password=unquote(url.password) if url.password is not None else None,
        use_tls=url.scheme == "smtps",
    )


async def send(settings: Settings, message: EmailMessage) -> None:
    """Hand `message` to the server; raises aiosmtplib's errors, OSError or TimeoutError."""
    server = smtp_server(settings)
    async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
        await aiosmtplib.send(
            message,
            hostname=server.hostname,
            port=server.port,
            username=server.username,
            password=server.password,
            use_tls=server.use_tls,
            # None: STARTTLS when the server offers it (never with implicit TLS).
            start_tls=False if server.use_tls else None,
            timeout=SEND_TIMEOUT_SECONDS,
        )
