"""The deep-link start payload: who a person is, signed, in at most 64 characters Telegram allows.

t.me/BOT?start=PAYLOAD takes only A-Z, a-z, 0-9, _ and - and at most 64
characters, so the payload is short: the contact id and the day the link was
made (both base 36), then 22 characters of an HMAC-SHA256 over them keyed
with HUB_SECRET_KEY (132 bits: not to be guessed). A signed token of
itsdangerous would not fit. The day lets an old link expire
(HUB_TELEGRAM_LINK_DAYS); the key keeps links of another Hub worthless here.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re

from hub.api import Settings, utcnow

MAX_LENGTH = 64
_SIGNATURE = 22
_SHAPE = re.compile(rf"\A([0-9a-z]{{1,13}})-([0-9a-z]{{1,6}})-([A-Za-z0-9_-]{{{_SIGNATURE}}})\Z")
_EPOCH = dt.date(2020, 1, 1)


class PayloadError(ValueError):
    """Not a payload Hub made, or too old; the message is for logs, never shown to the person."""


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out


def _signature(secret: str, body: str) -> str:
    digest = hmac.new(secret.encode(), f"hub.telegram.start:{body}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:_SIGNATURE]


def _today(now: dt.datetime | None) -> int:
    return ((now or utcnow()).date() - _EPOCH).days


def make(settings: Settings, contact_id: int, *, now: dt.datetime | None = None) -> str:
    """The payload that links a chat to `contact_id`."""
    if contact_id < 1:
        raise ValueError("contact ids are positive")
    body = f"{_base36(contact_id)}-{_base36(max(_today(now), 0))}"
    return f"{body}-{_signature(settings.require_secret_key(), body)}"


def read(settings: Settings, payload: str, *, max_days: int, now: dt.datetime | None = None) -> int:
    """The contact id a payload names; PayloadError when it is forged, malformed or older than `max_days`."""
    return read_dated(settings, payload, max_days=max_days, now=now)[0]


def read_dated(settings: Settings, payload: str, *, max_days: int, now: dt.datetime | None = None
               ) -> tuple[int, dt.date]:
    """The contact id a payload names and the day (UTC) its link was made; PayloadError as for `read`."""
    if not isinstance(payload, str) or len(payload) > MAX_LENGTH:
        raise PayloadError("not a payload: too long")
    found = _SHAPE.match(payload)
    if found is None:
        raise PayloadError("not a payload: wrong shape")
    contact, day, signature = found.groups()
    expected = _signature(settings.require_secret_key(), f"{contact}-{day}")
    if not hmac.compare_digest(expected, signature):
        raise PayloadError("not a payload: wrong signature")
    age = _today(now) - int(day, 36)
    if age > max_days or age < -1:
        raise PayloadError("the link is too old")
    return int(contact, 36), _EPOCH + dt.timedelta(days=int(day, 36))


def deep_link(bot_name: str, payload: str) -> str:
    return f"https://t.me/{bot_name}?start={payload}"
