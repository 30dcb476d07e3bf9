"""The file channel: each message becomes a file in HUB_OUTBOX_DIR.

The embedded default. Email is written as the exact .eml the SMTP channel
would send (open it in any mail program), an SMS as a .txt, so the demo and a
new installation show real messages without any server. With HUB_SMTP_URL
unset, the email channel is this one; with no SMS gateway set, so is sms.

A file is named by its message's id, so the files of a person being erased
are found through their messages (theirs, or sent to their addresses) and
deleted (`forget_contact`). A test letter has no message (id 0): its file is
named by the moment and a random part, so one test never overwrites another.
The answer's provider id is ``file:<path>``, so whoever sent it can say where
the letter went instead of letting someone wait for mail that never comes.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select

from hub.api import ContactIdentity, Delivery, Message, Outgoing, Settings

if TYPE_CHECKING:
    from plugins.mailing.email import Sender

DEFAULT_DIR = "outbox"


def outbox_dir(settings: Settings) -> Path:
    return Path(str(settings.extra.get("outbox_dir") or DEFAULT_DIR))


def file_name(message_id: int, channel: str) -> str:
    """The name of a message's file: its id first, so a person's files can be found from their messages."""
    return f"{message_id:08d}-email.eml" if channel == "email" else f"{message_id:08d}-{channel}.txt"


def one_off_name(channel: str) -> str:
    """The name of a test letter's file: no message id, so the moment and a random part keep each one apart."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    kind = "email.eml" if channel == "email" else f"{channel}.txt"
    return f"test-{stamp}-{secrets.token_hex(4)}-{kind}"


def forget_contact(conn: Any, settings: Settings, contact_id: int) -> int:
    """Delete the files written for a contact's messages; how many there were.

    Each holds the address, the name and the whole text, so an erasure must not
    leave them behind. A half-written ``.part`` goes too, and the file a message
    records as written (`provider_id`) wherever the outbox folder was then.
    Messages are found by contact and by address: a letter sent before the
    person was known (a pending signup's confirmation belongs to a hidden
    placeholder contact) still went to one of their phones or emails, which
    the erasure reads here before Hub removes them.
    """
    m = Message.__table__
    i = ContactIdentity.__table__
    addresses = select(i.c.value).where(i.c.contact_id == contact_id, i.c.valid).scalar_subquery()
    directory = outbox_dir(settings)
    removed = 0
    for message_id, channel, provider_id in conn.execute(
            select(m.c.id, m.c.channel, m.c.provider_id)
            .where(or_(m.c.contact_id == contact_id, m.c.address.in_(addresses)))):
        name = file_name(message_id, channel)
        paths = {directory / name, directory / (name + ".part")}
        if provider_id and provider_id.startswith("file:") and Path(provider_id[5:]).name == name:
            paths.add(Path(provider_id[5:]))
        for path in paths:
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            removed += 1
    return removed


class FileChannel:
    """Writes messages as files; a file appears whole or not at all."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.settings = settings
        self.name = name
        self.directory = outbox_dir(settings)
        self._sender: Sender | None = None

    def open(self) -> None:
        # Letters hold people's addresses and names: readable by the owner only, like hub.db.
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.name == "email":
            from plugins.mailing.email import Sender

            self._sender = Sender.from_settings(self.settings, required=False)

    def close(self) -> None:
        pass

    def send(self, message: Outgoing) -> Delivery:
        if not message.address:
            return Delivery("failed", error=f"no address for {self.name}")
        if self.name == "email":
            from plugins.mailing.email import compose, envelope_sender

            assert self._sender is not None, "open() comes before send()"
            from plugins.mailing.tracking import track

            data, _ = compose(track(self.settings, message), self._sender, eight_bit=True,
                              return_path=envelope_sender(self.settings, self._sender, message.id))
        else:
            lines = [f"To: {message.address}", f"Channel: {self.name}"]
            if message.subject:
                lines.append(f"Subject: {message.subject}")
            data = ("\n".join(lines) + "\n\n" + message.text).encode("utf-8")
        name = file_name(message.id, self.name) if message.id else one_off_name(self.name)
        path = self.directory / name
        temporary = path.with_name(path.name + ".part")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
        return Delivery("sent", provider_id=f"file:{path}")
