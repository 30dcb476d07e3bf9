"""Signed links that messages carry: unsubscribe, preference centre, consent confirmation.

A link names one contact and is signed with HUB_SECRET_KEY (itsdangerous), so
it needs no lookup table and cannot be changed to name someone else: whoever
holds the message can act for that contact only, and only for what the link
says. The GDPR plugin serves the routes; this module only makes and reads the
tokens, so both sides agree on one format.

URL shapes, under ``public_url`` (HUB_PUBLIC_URL):

    {public_url}/u/{token}            one-click unsubscribe (RFC 8058): GET shows a
                                      confirmation page, POST with the form field
                                      List-Unsubscribe=One-Click unsubscribes at once
    {public_url}/preferences/{token}  the preference centre of that contact
    {public_url}/confirm/{token}      double opt-in confirmation of one consent

Unsubscribe and preference tokens never expire: a message read a year later
must still let its reader leave. Confirmation tokens expire (CONFIRM_MAX_AGE).

A token keeps the contact id it was made for, and contacts get merged after
the letter went out. Every route therefore reads the person through
`current`, which follows the merge log to the survivor and answers None for
someone erased: an old link acts on the person as they are now, or on nobody.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode
from itsdangerous.signer import Signer
from itsdangerous.timed import TimestampSigner
from itsdangerous.url_safe import URLSafeSerializerMixin
from sqlalchemy import Connection

from hub.config import Settings, SettingsError
from hub.i18n import gettext as _
from hub.identity import current_contact_id

DEFAULT_PUBLIC_URL = "http://127.0.0.1:5000"
CONFIRM_MAX_AGE = 7 * 24 * 3600  # seconds a double opt-in link stays valid

# One salt per kind of link: a token made for one purpose is refused by the others.
_UNSUBSCRIBE = "hub.links.unsubscribe"
_PREFERENCES = "hub.links.preferences"
_CONFIRM = "hub.links.confirm"


class LinkError(ValueError):
    """A token that is not valid: tampered with, made for another kind of link, or expired."""


class LinkExpired(LinkError):
    """A genuine token past its age: the page can say so instead of calling it invalid."""


@dataclass(frozen=True, slots=True)
class LinkTarget:
    """What a valid token grants: one contact, and for unsubscribe/confirm one channel and purpose.

    `request` is set on confirmation links made for a signup (a consent
    request holding every topic the person chose).
    """

    contact_id: int
    channel: str | None = None
    purpose: str | None = None
    request: int | None = None


def public_url(settings: Settings) -> str:
    """Where customers reach Hub's public pages (HUB_PUBLIC_URL), without a trailing slash."""
    url = str(settings.extra.get("public_url") or DEFAULT_PUBLIC_URL).strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise SettingsError(_("HUB_PUBLIC_URL: %(url)r is not an http:// or https:// URL", url=url))
    return url


def _serializer(settings: Settings, salt: str) -> URLSafeTimedSerializer:
    return _serializer_for(settings.require_secret_key(), salt)


class _Signer(TimestampSigner):
    """itsdangerous's timestamp signer with its key derived once, not again for every signature."""

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        if secret_key is not None:  # an older key, tried when reading a token
            return super().derive_key(secret_key)
        key = self.__dict__.get("_derived")
        if key is None:
            key = self._derived = super().derive_key()
        return key


class _Serializer(URLSafeTimedSerializer):
    """itsdangerous's URL-safe serializer without its attempt to compress the payload.

    The payload is a contact id and two words, which zlib never makes
    shorter; itsdangerous tries on every token all the same, and the attempt
    was half of what signing a link costs (about 20 µs of 42, twice a
    letter). The tokens are the same as before, and read the same way: a
    compressed one ("." first) is still decompressed.
    """

    default_signer = _Signer

    def dump_payload(self, obj: Any) -> bytes:
        return base64_encode(super(URLSafeSerializerMixin, self).dump_payload(obj))

    def make_signer(self, salt: str | bytes | None = None) -> Signer:
        """One signer for this serializer's own salt, kept: itsdangerous builds a new one for every token."""
        if salt is not None:
            return super().make_signer(salt)
        signer = self.__dict__.get("_own_signer")
        if signer is None:
            signer = self._own_signer = super().make_signer()
        return signer


@lru_cache(maxsize=16)
def _serializer_for(secret: str, salt: str) -> URLSafeTimedSerializer:
    # One per key and kind: a campaign signs two links per letter, and building
    # the serializer (its key derivation) costs as much as a signature.
    return _Serializer(secret, salt=salt)


def unsubscribe_token(settings: Settings, contact_id: int, channel: str = "email", purpose: str = "marketing") -> str:
    return _serializer(settings, _UNSUBSCRIBE).dumps([contact_id, channel, purpose])


def unsubscribe_url(settings: Settings, contact_id: int, channel: str = "email", purpose: str = "marketing") -> str:
    """The one-click unsubscribe link for one contact, channel and purpose."""
    return f"{public_url(settings)}/u/{unsubscribe_token(settings, contact_id, channel, purpose)}"


def unsubscribe_mailto(address: str, unsubscribe_link: str) -> str:
    """The mailto: alternative for List-Unsubscribe: its subject carries the unsubscribe link's token."""
    token = unsubscribe_link.rstrip("/").rpartition("/")[2]
    return f"mailto:{address}?subject={quote('unsubscribe ' + token)}"


def preferences_url(settings: Settings, contact_id: int) -> str:
    """The preference centre of one contact: every channel and topic they may choose."""
    token = _serializer(settings, _PREFERENCES).dumps(contact_id)
    return f"{public_url(settings)}/preferences/{token}"


def confirm_url(settings: Settings, contact_id: int, channel: str = "email", purpose: str = "marketing",
                request: int | None = None) -> str:
    """The double opt-in link that turns a pending consent into granted; expires after a week.

    With `request`, the link confirms that consent request (every topic of one
    signup) instead of the single channel and purpose.
    """
    payload: list[object] = [contact_id, channel, purpose]
    if request is not None:
        payload.append(request)
    token = _serializer(settings, _CONFIRM).dumps(payload)
    return f"{public_url(settings)}/confirm/{token}"


def read_unsubscribe(settings: Settings, token: str) -> LinkTarget:
    contact_id, channel, purpose = _load(settings, _UNSUBSCRIBE, token, None)
    return LinkTarget(int(contact_id), channel, purpose)


def read_preferences(settings: Settings, token: str) -> LinkTarget:
    return LinkTarget(int(_load(settings, _PREFERENCES, token, None)))


def read_confirm(settings: Settings, token: str, max_age: int = CONFIRM_MAX_AGE) -> LinkTarget:
    contact_id, channel, purpose, *request = _load(settings, _CONFIRM, token, max_age)
    return LinkTarget(int(contact_id), channel, purpose, int(request[0]) if request else None)


def current(conn: Connection, target: LinkTarget) -> LinkTarget | None:
    """The link's target as the person is now: merged-away contacts become their survivor; None if erased or gone."""
    contact_id = current_contact_id(conn, target.contact_id)
    if contact_id is None:
        return None
    return target if contact_id == target.contact_id else replace(target, contact_id=contact_id)


def _load(settings: Settings, salt: str, token: str, max_age: int | None) -> Any:
    try:
        return _serializer(settings, salt).loads(token, max_age=max_age)
    except SignatureExpired:
        raise LinkExpired("this link has expired") from None
    except BadSignature:
        raise LinkError("this link is not valid") from None
