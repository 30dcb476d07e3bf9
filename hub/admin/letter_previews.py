"""Rendered letters kept for a few minutes, so a preview's frame can load what was typed but not saved.

The editor posts the form, the letter is rendered and kept under a random
token for the person who asked, and the frame loads it from its own URL
(hub.admin.letter_frame serves it with a policy of its own). Nobody else can
read it: a token is long enough not to be guessed, and it answers only its
owner, for FRAME_SECONDS.

With Redis configured (HUB_REDIS_URL) they are kept there, so every process
serving the admin (`gunicorn --workers 2`) finds them; without it, in the
memory of the process, which is right for `hub admin` (one process, many
threads). Either way their number is bounded.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import OrderedDict
from typing import Any

from hub.config import Settings

FRAME_SECONDS = 600
KEPT = 200  # in memory, for everyone together
PER_PERSON = 10  # in memory: the newest ones of each person
_PREFIX = "hub:letter-preview:"
_memory: OrderedDict[str, tuple[str, float, str]] = OrderedDict()  # token -> (owner, expires, html)
_lock = threading.Lock()


def _redis(settings: Settings) -> Any:
    if not settings.redis_url:
        return None
    from hub import queue

    return queue.redis_connection(settings)


def keep(settings: Settings, owner: str, html: str) -> str:
    """Keep `html` for `owner`; the token that reads it back."""
    token = secrets.token_urlsafe(24)
    redis = _redis(settings)
    if redis is not None:
        redis.setex(_PREFIX + token, FRAME_SECONDS, json.dumps({"owner": owner, "html": html}))
        return token
    now = time.monotonic()
    with _lock:
        for key in [k for k, (_who, expires, _html) in _memory.items() if expires < now]:
            del _memory[key]
        mine = [k for k, (who, _expires, _html) in _memory.items() if who == owner]
        for key in mine[:max(len(mine) - PER_PERSON + 1, 0)]:
            del _memory[key]
        while len(_memory) >= KEPT:
            _memory.popitem(last=False)
        _memory[token] = (owner, now + FRAME_SECONDS, html)
    return token


def read(settings: Settings, token: str, owner: str) -> str | None:
    """The letter kept under `token`, if `owner` kept it and it has not expired."""
    if not owner or len(token) > 64:
        return None
    redis = _redis(settings)
    if redis is not None:
        raw = redis.get(_PREFIX + token)
        if raw is None:
            return None
        kept = json.loads(raw)
        return str(kept["html"]) if kept.get("owner") == owner else None
    with _lock:
        found = _memory.get(token)
    if found is None or found[0] != owner or found[1] < time.monotonic():
        return None
    return found[2]
