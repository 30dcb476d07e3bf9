"""A real SMTP server on loopback (aiosmtpd) that keeps what it accepts and answers as a test scripts it.

Shared by every test that sends mail; the `mailbox` fixture in tests/conftest.py starts one per test.
"""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from aiosmtpd.controller import Controller

from tests.servers import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    session: Any  # the client's (host, port): one per connection

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]


class Mailbox:
    """An aiosmtpd handler that keeps what it accepts and answers as a test scripts it."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.rcpt_replies: dict[str, str] = {}
        self.data_replies: dict[str, str] = {}
        self.lose_after_data: set[str] = set()
        self.mail_commands = 0
        self.drop_at_mail: set[int] = set()  # close the connection silently at these MAIL commands (1, 2, ...)
        self.reply_421_at_mail: set[int] = set()
        self.sessions: set[Any] = set()
        self.wait_for_sessions = 0  # hold every delivery until this many connections delivered
        self._enough: asyncio.Event | None = None

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.mail_commands += 1
        if self.mail_commands in self.drop_at_mail:
            server.transport.close()
            return "250 OK"
        if self.mail_commands in self.reply_421_at_mail:
            return "421 4.7.0 Too many messages on one connection"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        to = envelope.rcpt_tos[0]
        if self.wait_for_sessions:
            if self._enough is None:
                self._enough = asyncio.Event()
            self.sessions.add(session.peer)
            if len(self.sessions) >= self.wait_for_sessions:
                self._enough.set()
            try:
                await asyncio.wait_for(self._enough.wait(), 60)
            except asyncio.TimeoutError:
                pass
        if to in self.data_replies:
            return self.data_replies[to]
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, session.peer))
        if to in self.lose_after_data:
            server.transport.close()
        return "250 2.0.0 Accepted"

    def by_tracking_id(self) -> dict[int, list[Received]]:
        out: dict[int, list[Received]] = {}
        for r in self.received:
            out.setdefault(int(r.message["X-Hub-Message-Id"]), []).append(r)
        return out


@contextmanager
def smtp_server(handler: Mailbox, **kwargs: Any) -> Iterator[int]:
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()
