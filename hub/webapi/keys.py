"""API keys: made once and shown once, kept only as a SHA-256, checked on every request.

A key is 32 random bytes, so a plain SHA-256 is as good as a slow password
hash here (nobody can guess their way to a preimage) and lets each request
find its key by one indexed lookup. The first characters are kept in the
clear so lists can tell keys apart without showing them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, Iterable

from sqlalchemy import Connection, select, update

from hub.db import insert_for, utcnow, whole_number
from hub.i18n import N_
from hub.models import ApiKey
from hub.webapi.endpoints import SCOPES, ApiKeyInfo, collect

keys_t = ApiKey.__table__

PREFIX = "hub_"
DEFAULT_RATE = 20  # requests per second per key, bursts of twice that
LAST_USED_EVERY = dt.timedelta(minutes=1)  # last_used_at is written at most this often (it is a write per request)


class ApiKeyError(ValueError):
    """A key cannot be made or changed as asked; the message says why."""


@dataclass
class NewKey:
    id: int
    name: str
    key: str  # shown once; only its hash is kept
    scopes: list[str]


def digest(key: str) -> str:
    """The key as kept and looked up: a lost database must not give working keys away."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def parse_scopes(text: str | Iterable[str], known: Iterable[str] = SCOPES) -> list[str]:
    """`contacts:write,orders:write` → the scopes in order; an unknown one is an error naming it."""
    from hub.i18n import gettext

    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text)]
    items = [s for s in items if s]
    allowed = list(dict.fromkeys([*SCOPES, *known]))
    unknown = [s for s in items if s not in allowed]
    if unknown:
        raise ApiKeyError(gettext("unknown scope %(scope)s; the scopes are: %(scopes)s", scope=unknown[0],
                                scopes=", ".join(allowed)))
    if not items:
        raise ApiKeyError(gettext("a key needs at least one scope; the scopes are: %(scopes)s",
                                scopes=", ".join(allowed)))
    return list(dict.fromkeys(items))


def create(conn: Connection, name: str, scopes: list[str], *, actor: str, rate: int = DEFAULT_RATE) -> NewKey:
    """Make a key and hand it back in the clear this once; afterwards only its hash exists."""
    from hub.i18n import gettext

    name = name.strip()
    if not name or len(name) > 100:
        raise ApiKeyError(gettext("a key's name is 1 to 100 characters"))
    if conn.execute(select(keys_t.c.id).where(keys_t.c.name == name)).first() is not None:
        raise ApiKeyError(gettext("a key named %(name)s already exists; revoke it or choose another name", name=name))
    if rate < 1:
        raise ApiKeyError(gettext("the rate limit is at least 1 request per second"))
    key = PREFIX + secrets.token_urlsafe(32)
    row = conn.execute(insert_for(conn, keys_t).values(
        name=name, prefix=key[:12], key_hash=digest(key), scopes=scopes, rate=rate, created_at=utcnow(),
        created_by=actor).returning(keys_t.c.id)).one()
    return NewKey(row.id, name, key, scopes)


def listing(conn: Connection, *, revoked: bool = False) -> list[dict[str, Any]]:
    """The keys as people tell them apart (name, prefix, scopes), never the hash: for the CLI and the admin."""
    q = select(keys_t).order_by(keys_t.c.id)
    if not revoked:
        q = q.where(keys_t.c.revoked_at.is_(None))
    return [{"id": r.id, "name": r.name, "prefix": r.prefix, "scopes": list(r.scopes), "rate": r.rate,
             "created_at": r.created_at, "created_by": r.created_by, "last_used_at": r.last_used_at,
             "revoked_at": r.revoked_at} for r in conn.execute(q)]


def find(conn: Connection, name_or_id: str) -> Any:
    """The key named `name_or_id` (or with that id), revoked or not; None if there is none."""
    row = conn.execute(select(keys_t).where(keys_t.c.name == name_or_id)).first()
    key_id = whole_number(name_or_id, most=2**31 - 1)
    if row is None and key_id is not None:
        row = conn.execute(select(keys_t).where(keys_t.c.id == key_id)).first()
    return row


def revoke(conn: Connection, key_id: int) -> bool:
    """Revoke a key: every request with it is refused from now on. False if it was already revoked."""
    return bool(conn.execute(update(keys_t).where(keys_t.c.id == key_id, keys_t.c.revoked_at.is_(None))
                             .values(revoked_at=utcnow())).rowcount)


def lookup(conn: Connection, key: str) -> tuple[ApiKeyInfo, int, bool] | None:
    """The live key `key` is, its rate limit, and whether last_used_at is due (at most once a minute a key).

    Only reads, so that a request's key check never waits behind a writer; `mark_used` writes
    last_used_at when it is due. None for a wrong or revoked key.
    """
    if not key.startswith(PREFIX) or len(key) > 200:
        return None
    row = conn.execute(select(keys_t.c.id, keys_t.c.name, keys_t.c.scopes, keys_t.c.rate, keys_t.c.last_used_at)
                       .where(keys_t.c.key_hash == digest(key), keys_t.c.revoked_at.is_(None))).first()
    if row is None:
        return None
    due = row.last_used_at is None or utcnow() - row.last_used_at > LAST_USED_EVERY
    return ApiKeyInfo(row.id, row.name, tuple(row.scopes or ())), int(row.rate), due


def mark_used(conn: Connection, key_id: int) -> None:
    """Write last_used_at now, unless another request of this key just did (it is a write: kept rare)."""
    now = utcnow()
    conn.execute(update(keys_t).where(keys_t.c.id == key_id, (keys_t.c.last_used_at.is_(None))
                                      | (keys_t.c.last_used_at < now - LAST_USED_EVERY))
                 .values(last_used_at=now))


def known_scopes(pm: Any = None) -> list[str]:
    """Every scope a key may hold: the core's and those plugins' endpoints ask for (`register_api_endpoints`)."""
    from hub.plugins import get_pm

    found = [e.scope for e in collect(pm or get_pm()) if e.scope]
    return list(dict.fromkeys([*SCOPES, *found]))


# What each of the core's scopes lets a key do, for people choosing them (a plugin's scope shows its endpoints).
SCOPE_TITLES = {
    "contacts:read": N_("read contacts"),
    "contacts:write": N_("add and update contacts"),
    "orders:write": N_("add and update orders"),
    "events:write": N_("send events (cart abandoned, page viewed, …)"),
    "segments:read": N_("read segments and their members"),
    "workflows:write": N_("enroll contacts into workflows"),
    "consent:write": N_("send signups for double opt-in and record withdrawals"),
}


def scope_titles(pm: Any = None) -> dict[str, str]:
    """Each known scope with what it allows, in the reader's language."""
    from hub.i18n import gettext
    from hub.plugins import get_pm

    routes: dict[str, list[str]] = {}
    for e in collect(pm or get_pm()):
        if e.scope:
            routes.setdefault(e.scope, []).append(f"{e.method.upper()} /api/v1{e.path}")
    return {scope: gettext(SCOPE_TITLES[scope]) if scope in SCOPE_TITLES else ", ".join(routes.get(scope, []))
            for scope in known_scopes(pm)}


ANONYMOUS = ApiKeyInfo(0, "", ())  # the caller of an endpoint that needs no key (the OpenAPI document)
