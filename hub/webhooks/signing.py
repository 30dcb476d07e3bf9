"""The signature a receiver checks: HMAC-SHA256 over the timestamp and the body, with the webhook's secret.

Signing the timestamp too means a captured delivery cannot be replayed later
with a fresh date: the receiver rejects timestamps older than a few minutes.
The scheme is documented in docs/webhooks.md; keep both in step.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as _secrets

HEADER = "Hub-Signature"
TOLERANCE_S = 300


def new_secret() -> str:
    """A secret for a webhook added without one: 32 random bytes, URL-safe, prefixed so people recognise it."""
    return "whsec_" + _secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `Hub-Signature` header value: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, now: int, tolerance: int = TOLERANCE_S) -> bool:
    """Whether `header` signs `body` with `secret` within `tolerance` seconds of `now` (used by tests and tools)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))
