"""Per-message return paths (VERP): a bounce says which message it is about.

With HUB_MAIL_RETURN_PATH = "bounces@shop.ru", the message with id 1234 is
sent with the envelope sender (Return-Path) ``bounces+1234-3f9a0c21b7@shop.ru``.
A server that cannot deliver it mails its report there, and the address
alone names the message, however the report is worded. The tail is a keyed
hash of the id (HUB_SECRET_KEY), so a forged report naming another message's
id is not believed: nobody can suppress an address by guessing ids.

Mailboxes deliver ``local+anything@domain`` to ``local@domain`` (subaddressing,
RFC 5233: Yandex 360, Mail.ru for business, Gmail and dovecot all do), so one
bounce mailbox receives them all.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from hub.api import Settings, SettingsError, gettext

SIGNATURE_CHARS = 10
_LOCAL = re.compile(r"^(?P<base>[^+@]+)\+(?P<id>\d{1,18})-(?P<sig>[0-9a-f]{%d})$" % SIGNATURE_CHARS, re.I)


def base_address(settings: Settings) -> str | None:
    """The bounce mailbox's own address (HUB_MAIL_RETURN_PATH), or None when bounces are not collected."""
    raw = str(settings.extra.get("mail_return_path") or "").strip()
    if not raw:
        return None
    local, at, domain = raw.rpartition("@")
    if not at or not local or not domain or "+" in local or any(c.isspace() for c in raw):
        raise SettingsError(gettext("HUB_MAIL_RETURN_PATH: %(value)r is not a plain address like "
                                    "bounces@shop.ru", value=raw))
    return raw


def _signature(settings: Settings, message_id: int) -> str:
    key = settings.require_secret_key().encode("utf-8")
    return hmac.new(key, f"verp:{message_id}".encode("ascii"), hashlib.sha256).hexdigest()[:SIGNATURE_CHARS]


def return_path(settings: Settings, message_id: int) -> str | None:
    """The envelope sender for one message, or None when HUB_MAIL_RETURN_PATH is not set."""
    base = base_address(settings)
    if base is None:
        return None
    local, _, domain = base.rpartition("@")
    return f"{local}+{message_id}-{_signature(settings, message_id)}@{domain}"


def message_id_of(settings: Settings, address: str) -> int | None:
    """The message a return path was made for, or None: not one of ours, or its signature is wrong."""
    local, at, _domain = _unwrapped(address.strip().strip("<>")).rpartition("@")
    found = _LOCAL.match(local) if at else None
    if found is None:
        return None
    message_id = int(found["id"])
    if not hmac.compare_digest(found["sig"].lower(), _signature(settings, message_id)):
        return None
    return message_id


_SRS0 = re.compile(r"^SRS0[=+-][^=]*=[^=]*=(?P<domain>[^=@]+)=(?P<local>[^@]+)@[^@]+$", re.I)
_SRS1 = re.compile(r"^SRS1[=+-][^=]*=[^=@]+==[^=]*=[^=]*=(?P<domain>[^=@]+)=(?P<local>[^@]+)@[^@]+$", re.I)


def _unwrapped(address: str) -> str:
    """The return path inside an SRS address, or the address as it is.

    A forwarder that re-sends a letter under its own domain (postsrsd, Exim's
    and Microsoft 365's SRS) rewrites the envelope sender
    ``bounces+1234-sig@shop.ru`` to ``SRS0=HHH=TT=shop.ru=bounces+1234-sig@fwd.example``
    (SRS1 when forwarded twice). Its bounce names that address; the signed
    tail inside it still says which message it is about, and it is checked
    exactly as before, so a made-up SRS address names nothing.
    """
    found = _SRS0.match(address) or _SRS1.match(address)
    return f"{found['local']}@{found['domain']}" if found else address
