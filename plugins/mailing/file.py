"""The file channel: each message becomes a file in HUB_OUTBOX_DIR.

The embedded default. Email is written as the exact .eml the SMTP channel
would send (open it in any mail program), an SMS as a .txt, so the demo and a
new installation show real messages without any server. With HUB_SMTP_URL
unset, the email channel is this one; with no SMS gateway set, so is sms.
"""

from __future__ import annotations

import os
from pathlib import Path

from hub.config import Settings
from hub.messaging import Delivery, Outgoing

DEFAULT_DIR = "outbox"


def outbox_dir(settings: Settings) -> Path:
    return Path(str(settings.extra.get("outbox_dir") or DEFAULT_DIR))


class FileChannel:
    """Writes messages as files; a file appears whole or not at all."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.settings = settings
        self.name = name
        self.directory = outbox_dir(settings)
        self._sender = None

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.name == "email":
            from plugins.mailing.email import Sender

            self._sender = Sender.from_settings(self.settings, required=False)

    def close(self) -> None:
        pass

    def send(self, message: Outgoing) -> Delivery:
        if not message.address:
            return Delivery("failed", error=f"no address for {self.name}")
        if self.name == "email":
            from plugins.mailing.email import compose

            data, _ = compose(message, self._sender, eight_bit=True)
            path = self.directory / f"{message.id:08d}-email.eml"
        else:
            lines = [f"To: {message.address}", f"Channel: {self.name}"]
            if message.subject:
                lines.append(f"Subject: {message.subject}")
            data = ("\n".join(lines) + "\n\n" + message.text).encode("utf-8")
            path = self.directory / f"{message.id:08d}-{self.name}.txt"
        temporary = path.with_name(path.name + ".part")
        temporary.write_bytes(data)
        os.replace(temporary, path)
        return Delivery("sent", provider_id=f"file:{path}")
