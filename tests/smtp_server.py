"""A real SMTP server for tests: aiosmtpd in its own thread on loopback, collecting what it
accepts; it can hold messages unanswered (a sender mid-send) and require a login."""

import asyncio
import contextlib
import email
import email.policy
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class Inbox:
    """What the server accepted; with `hold` set, each DATA is recorded in `arrived` and left
    unanswered (the sender is mid-send) until `release` is set."""

    messages: list[Received] = field(default_factory=list)
    arrived: list[EmailMessage] = field(default_factory=list)
    hold: bool = False
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        if self.hold:
            self.arrived.append(message)  # type: ignore[arg-type]
            self.held.set()
            while not self.release.is_set():
                await asyncio.sleep(0.01)
            return "451 4.3.0 try again later"
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))  # type: ignore[arg-type]
        return "250 OK"


@dataclass
class Credentials:
    """An authenticator accepting one login; its refusal echoes the password it was given,
    as a careless server might, so the outbox must keep it out of what it stores."""

    login: str
    password: str
    seen: list[tuple[str, str]] = field(default_factory=list)

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.seen.append((login, password))
        if (login, password) == (self.login, self.password):
            return AuthResult(success=True)
        return AuthResult(
            success=False, handled=False, message=f"535 5.7.8 {password} is not the password"
        )


@dataclass
class SmtpServer:
    port: int
    inbox: Inbox


def free_port() -> int:
    """A loopback port nothing listens on (until someone binds it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serve(inbox: Inbox, **options: Any) -> Iterator[SmtpServer]:
    """An aiosmtpd server on a free loopback port, in its own thread, delivering to `inbox`."""
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield SmtpServer(port, inbox)
    finally:
        inbox.release.set()
        controller.stop()
