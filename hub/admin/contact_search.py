"""Finding a person the way people type: a name, an email, or a phone in any format.

A phone is read with the same rules as every import ("8 (916) 123-45-67",
"+7 916 1234567" and "9161234567" all find +79161234567); a fragment of a
number ("123-45-67") matches the end of stored numbers. Names are matched on
the stored name key, so case and ё/е make no difference.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select

from hub import normalize
from hub.config import Settings
from hub.contacts import iter_contacts
from hub.models import Contact, ContactIdentity
from hub.segments.lifecycle import Thresholds

contacts_t = Contact.__table__
identities_t = ContactIdentity.__table__
_PHONE_CHARS = re.compile(r"^[\d\s()+\-.]+$")
_ID = re.compile(r"^#(\d{1,12})$")
MIN_PHONE_DIGITS = 5


def _ids_by_identity(conn: Connection, kind: str, condition: Any) -> set[int]:
    q = select(identities_t.c.contact_id).where(identities_t.c.kind == kind, condition)
    return set(conn.execute(q.limit(500)).scalars())


def matching_ids(conn: Connection, settings: Settings, query: str, *, limit: int = 50) -> list[int]:
    """Ids of live contacts matching `query`, best kind of match first."""
    text = " ".join(query.split())
    if not text:
        return []
    found: set[int] = set()
    if m := _ID.match(text):
        found.add(int(m.group(1)))
    elif "@" in text:
        ident = normalize.email(text)
        if ident is not None and ident.valid:
            found |= _ids_by_identity(conn, normalize.EMAIL, identities_t.c.value == ident.value)
        found |= _ids_by_identity(conn, normalize.EMAIL, identities_t.c.value.contains(text.lower(),
                                                                                       autoescape=True))
    elif _PHONE_CHARS.match(text) and sum(ch.isdigit() for ch in text) >= MIN_PHONE_DIGITS:
        numbers = [p.value for p in normalize.phones(text, settings.default_region) if p.valid]
        if numbers:
            found |= _ids_by_identity(conn, normalize.PHONE, and_(identities_t.c.valid,
                                                                  identities_t.c.value.in_(numbers)))
        if not found:
            digits = "".join(ch for ch in text if ch.isdigit())
            found |= _ids_by_identity(conn, normalize.PHONE, or_(
                identities_t.c.value.endswith(digits, autoescape=True),
                identities_t.c.raw.contains(text, autoescape=True)))
    else:
        words = [w.lower().replace("ё", "е") for w in text.split()]
        q = select(contacts_t.c.id).where(*[contacts_t.c.name_key.contains(w, autoescape=True) for w in words])
        found |= set(conn.execute(q.limit(500)).scalars())
    if not found:
        return []
    live = select(contacts_t.c.id).where(contacts_t.c.id.in_(found), contacts_t.c.deleted_at.is_(None))
    return list(conn.execute(live.order_by(contacts_t.c.id).limit(limit)).scalars())


def search(conn: Connection, settings: Settings, query: str, *, limit: int = 50) -> list[dict[str, Any]]:
    """Matching contacts in the shape of `hub contacts list --json`."""
    ids = matching_ids(conn, settings, query, limit=limit)
    if not ids:
        return []
    return list(iter_contacts(conn, ids=ids, thresholds=Thresholds.from_settings(settings.extra)))


def live_count(conn: Connection) -> int:
    """How many contacts the base holds (the erased and merged-away are nobody any more)."""
    return int(conn.execute(select(func.count()).select_from(contacts_t)
                            .where(contacts_t.c.deleted_at.is_(None))).scalar_one())


def recent(conn: Connection, settings: Settings, *, limit: int = 20, offset: int = 0) -> list[dict[str, Any]]:
    """The newest contacts, a page at a time, for the search page before anything is typed."""
    ids = list(conn.execute(select(contacts_t.c.id).where(contacts_t.c.deleted_at.is_(None))
                            .order_by(contacts_t.c.id.desc()).limit(limit).offset(offset)).scalars())
    rows = list(iter_contacts(conn, ids=ids, thresholds=Thresholds.from_settings(settings.extra))) if ids else []
    return sorted(rows, key=lambda r: -r["id"])
