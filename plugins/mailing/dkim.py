"""DKIM signatures (RFC 6376, relaxed/relaxed) for a shop that sends directly instead of through a relay.

A relay such as Yandex 360 or Mail.ru for business signs with its own key;
Hub sending straight to the recipients' servers must sign itself, or Gmail,
Yandex and Mail.ru treat the letters as unauthenticated bulk mail.

Settings:

    dkim_selector          HUB_DKIM_SELECTOR          the selector: the record lives at SELECTOR._domainkey.DOMAIN
    dkim_domain            HUB_DKIM_DOMAIN            the signing domain (default: the From address's)
    dkim_private_key_file  HUB_DKIM_PRIVATE_KEY_FILE  a PEM file: RSA (2048 bits advised) or ed25519

Signing is off until the selector and the key file are both set, and costs
nothing then. The key is read and checked once, when the channel opens;
each letter is signed relaxed/relaxed over the headers that identify it
(From, To, Subject, Date, Message-ID, MIME-Version, Content-Type, and
List-Unsubscribe, List-Unsubscribe-Post and Reply-To when present).

The signature is computed here with `cryptography` (OpenSSL): dkimpy's own
RSA arithmetic is pure Python and costs about 12 ms a letter, twenty times
OpenSSL's, which a 100,000-letter campaign would feel. dkimpy stays the
independent check: the tests verify every signature with it.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from hub.api import Settings, SettingsError, gettext

SIGNED = ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type",
          "List-Unsubscribe", "List-Unsubscribe-Post", "Reply-To")
OVERSIGNED = (b"from", b"to", b"subject", b"reply-to")
MIN_RSA_BITS = 1024  # receivers ignore shorter keys (RFC 8301)
MAX_KEY_FILE = 64 * 1024
_SELECTOR = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_WSP = re.compile(rb"[ \t]+")
_FOLDED = re.compile(rb"\r\n(?=[ \t])")
_TRAILING_WSP = re.compile(rb"[ \t]+\r\n")
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def _relaxed_header(name: bytes, value: bytes) -> bytes:
    """RFC 6376 3.4.2: lower-case name, unfolded value, runs of spaces as one, no spaces at the ends."""
    value = _WSP.sub(b" ", _FOLDED.sub(b"", value)).strip(b" \t\r\n")
    return name.strip().lower() + b":" + value


def _relaxed_body(body: bytes) -> bytes:
    """RFC 6376 3.4.4: spaces at line ends dropped, runs of spaces as one, empty lines at the end dropped."""
    body = _WSP.sub(b" ", body)
    body = _TRAILING_WSP.sub(b"\r\n", body)
    if body.endswith(b" ") or body.endswith(b"\t"):
        body = body.rstrip(b" \t")
    body = body.rstrip(b"\r\n")
    return body + b"\r\n" if body else b""


def _split(message: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The headers as (name, raw value with its folds) in order, and the body."""
    head, _, body = message.partition(b"\r\n\r\n")
    headers: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + b"\r\n" + line)
        else:
            name, _, value = line.partition(b":")
            headers.append((name, value))
    return headers, body


@dataclass(frozen=True)
class Signer:
    selector: str
    domain: str  # ASCII (IDNA)
    algorithm: str  # rsa-sha256 or ed25519-sha256
    key_type: str  # rsa or ed25519: the k= of the DNS record
    public_key: str  # the p= of the DNS record
    _key: PrivateKey

    def sign(self, data: bytes, headers: Iterable[str]) -> bytes:
        """The message with a DKIM-Signature header in front, over those of `headers` it carries.

        Instances are taken from the bottom up, as RFC 6376 5.4.2 says verifiers read them. The
        headers that say who and what (OVERSIGNED) are named once more than they occur, so a
        From or Subject added on the way breaks the signature instead of riding on it.
        """
        present, body = _split(data)
        instances: dict[bytes, list[bytes]] = {}
        for name, value in present:
            instances.setdefault(name.strip().lower(), []).append(value)
        names = [h.lower().encode("ascii") for h in headers]
        signed = [n for n in names if n in instances]
        signed += [n for n in OVERSIGNED if n in instances and n in names]
        body_hash = base64.b64encode(hashlib.sha256(_relaxed_body(body)).digest()).decode("ascii")
        tags = (f"v=1; a={self.algorithm}; c=relaxed/relaxed; d={self.domain}; s={self.selector}; "
                f"t={int(time.time())}; h={':'.join(n.decode('ascii') for n in signed)}; bh={body_hash}; b=")
        left = {n: list(values) for n, values in instances.items()}
        hashed = b"".join(_relaxed_header(n, left[n].pop()) + b"\r\n" for n in signed if left[n])
        hashed += _relaxed_header(b"dkim-signature", b" " + tags.encode("ascii"))
        if isinstance(self._key, rsa.RSAPrivateKey):
            signature = self._key.sign(hashed, padding.PKCS1v15(), hashes.SHA256())
        else:  # RFC 8463: ed25519 over the SHA-256 of the data
            signature = self._key.sign(hashlib.sha256(hashed).digest())
        b = base64.b64encode(signature).decode("ascii")
        folded = "\r\n\t".join(b[i:i + 72] for i in range(0, len(b), 72))
        return f"DKIM-Signature: {tags}\r\n\t{folded}\r\n".encode("ascii") + data

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def record(self) -> str:
        """The TXT record to publish at `record_name`."""
        return f"v=DKIM1; k={self.key_type}; p={self.public_key}"


def check_selector(value: str) -> str:
    if not _SELECTOR.match(value):
        raise SettingsError(gettext("HUB_DKIM_SELECTOR: %(value)r is not a selector; use letters, digits and "
                                    "hyphens, e.g. hub or mail2026", value=value))
    return value


def check_domain(value: str, setting: str = "HUB_DKIM_DOMAIN") -> str:
    """A domain name in its ASCII form, or SettingsError naming the setting."""
    text = value.strip().rstrip(".")
    try:
        ascii_name = text.encode("idna").decode("ascii").lower() if not text.isascii() else text.lower()
    except UnicodeError:
        ascii_name = ""
    labels = ascii_name.split(".")
    if len(labels) < 2 or len(ascii_name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise SettingsError(gettext("%(setting)s: %(value)r is not a domain name like shop.ru", setting=setting,
                                    value=value))
    return ascii_name


def load_key(path: Path) -> tuple[str, str, str, PrivateKey]:
    """(algorithm, key type, public key, private key) from a PEM file; errors name the file only."""
    try:
        if path.stat().st_size > MAX_KEY_FILE:
            raise SettingsError(gettext("HUB_DKIM_PRIVATE_KEY_FILE: %(path)s is too large for a private key",
                                        path=str(path)))
        data = path.read_bytes()
    except SettingsError:
        raise
    except OSError as exc:
        raise SettingsError(gettext("HUB_DKIM_PRIVATE_KEY_FILE: cannot read %(path)s (%(reason)s)", path=str(path),
                                    reason=exc.strerror or type(exc).__name__)) from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # The library's message may quote the file; say only what and where.
        raise SettingsError(gettext("HUB_DKIM_PRIVATE_KEY_FILE: %(path)s is not an unencrypted PEM private key "
                                    "(RSA or ed25519)", path=str(path))) from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise SettingsError(gettext("HUB_DKIM_PRIVATE_KEY_FILE: %(path)s holds a %(bits)s-bit RSA key; "
                                        "receivers ignore keys under 1024 bits, use 2048", path=str(path),
                                        bits=key.key_size))
        public = key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
        return "rsa-sha256", "rsa", base64.b64encode(public).decode("ascii"), key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return "ed25519-sha256", "ed25519", base64.b64encode(public).decode("ascii"), key
    raise SettingsError(gettext("HUB_DKIM_PRIVATE_KEY_FILE: %(path)s holds neither an RSA nor an ed25519 key",
                                path=str(path)))


def configured(settings: Settings) -> bool:
    return bool(str(settings.extra.get("dkim_selector") or "").strip()
                or str(settings.extra.get("dkim_private_key_file") or "").strip())


def from_settings(settings: Settings, from_domain: str) -> Signer | None:
    """The signer, or None when DKIM is not set; half a setting is an error, not silence."""
    selector = str(settings.extra.get("dkim_selector") or "").strip()
    key_file = str(settings.extra.get("dkim_private_key_file") or "").strip()
    if not selector and not key_file:
        return None
    if not selector:
        raise SettingsError(gettext("HUB_DKIM_SELECTOR: not set, but HUB_DKIM_PRIVATE_KEY_FILE is; "
                                    "both are needed to sign"))
    if not key_file:
        raise SettingsError(gettext("HUB_DKIM_PRIVATE_KEY_FILE: not set, but HUB_DKIM_SELECTOR is; "
                                    "both are needed to sign"))
    check_selector(selector)
    raw_domain = str(settings.extra.get("dkim_domain") or "").strip()
    domain = check_domain(raw_domain) if raw_domain else check_domain(from_domain, "HUB_MAIL_FROM")
    algorithm, key_type, public, private = load_key(Path(key_file))
    return Signer(selector=selector, domain=domain, algorithm=algorithm, key_type=key_type, public_key=public,
                  _key=private)
