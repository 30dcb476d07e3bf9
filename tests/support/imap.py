"""A bounce mailbox on the test IMAP server: put reports in, look at what Hub left behind.

The `bounce_mailbox` fixture (tests/conftest.py) gives each test a user of
its own on the worker's dovecot (tests/servers.py), so its mailbox starts
empty. Tests drop real-shaped reports in with `append` (IMAP APPEND, as a
mail server delivering them would leave them) and check the outcome with
`list` and `flags`, over a connection of their own, not Hub's reader.
"""

from __future__ import annotations

import imaplib
import re
import uuid
from typing import Any
from urllib.parse import unquote, urlsplit

from plugins.mailing.bounces.imap import encode_folder

_FETCHED = re.compile(rb"UID (\d+)")
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")


class BounceMailboxHelper:
    """One fresh IMAP user: its HUB_BOUNCE_IMAP_* settings, and APPEND / list / flags for the test."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 143
        # Any user name logs in on the test server: a new one is an empty mailbox.
        self.user = f"{unquote(parts.username or 'hub')}-{uuid.uuid4().hex[:12]}"
        self.password = unquote(parts.password or "")

    @property
    def settings_extra(self) -> dict[str, Any]:
        """settings.extra for Hub's reader: plain IMAP on loopback, reports in INBOX."""
        return {
            "bounce_imap_host": self.host,
            "bounce_imap_port": str(self.port),
            "bounce_imap_user": self.user,
            "bounce_imap_password": self.password,
            "bounce_imap_security": "none",
        }

    def _connect(self) -> imaplib.IMAP4:
        imap = imaplib.IMAP4(self.host, self.port, timeout=60)
        imap.login(self.user, self.password)
        return imap

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        """Deliver one message into `folder` (created when missing), as it arrived: no flags."""
        imap = self._connect()
        try:
            name = encode_folder(folder)
            if folder.upper() != "INBOX":
                imap.create(name)  # NO when it exists already: fine
            status, data = imap.append(name, "", None, raw)  # "" = no flags
            assert status == "OK", data
        finally:
            imap.logout()

    def _fetch(self, folder: str, what: str) -> list[tuple[bytes, bytes | None]]:
        imap = self._connect()
        try:
            status, data = imap.select(encode_folder(folder), readonly=True)
            assert status == "OK", f"no folder {folder!r}: {data}"
            if int(data[0] or 0) == 0:
                return []
            status, data = imap.uid("FETCH", "1:*", what)
            assert status == "OK", data
        finally:
            imap.logout()
        found: list[tuple[bytes, bytes | None]] = []
        for item in data:
            if isinstance(item, tuple):
                found.append((item[0], item[1]))
            elif isinstance(item, bytes) and item != b")":
                found.append((item, None))
        return found

    def list(self, folder: str = "INBOX") -> list[bytes]:
        """The raw messages in `folder`, oldest first (read-only: flags and \\Seen untouched)."""
        return [body for _head, body in self._fetch(folder, "(UID BODY.PEEK[])") if body is not None]

    def flags(self, folder: str = "INBOX") -> dict[str, set[str]]:
        """UID -> flags and keywords of every message in `folder`."""
        found: dict[str, set[str]] = {}
        for head, _body in self._fetch(folder, "(UID FLAGS)"):
            uid, flags = _FETCHED.search(head), _FLAGS.search(head)
            if uid is not None:
                found[uid[1].decode()] = set(flags[1].decode().split()) if flags else set()
        return found
