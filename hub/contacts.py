"""Reading contacts back out, in the shape the CLI contract promises.

`hub contacts list --json` is what scripts build on: an array of
{id, first_name, last_name, phones (E.164), emails, external_refs
[{source, id}], orders_count (won), revenue, last_order_at, lifecycle}, plus a
few more keys. `identities` gives each phone and email with its type as the
source gave it (`label`) and, for a value several people use, why it is
shared (`shared`, null for a person's own); `phones` and `emails` list a
person's own values before shared ones. Rows stream in pages so a million
contacts never sit in memory.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any, Iterator

from sqlalchemy import Connection, select

from hub import formats, identity
from hub.i18n import gettext as _
from hub.db import utcnow
from hub.models import Contact, ContactIdentity, ContactMerge, ExternalRef, LeadScore, Order
from hub.segments import lifecycle

contacts_t = Contact.__table__
identities_t = ContactIdentity.__table__
refs_t = ExternalRef.__table__
orders_t = Order.__table__
merges_t = ContactMerge.__table__
scores_t = LeadScore.__table__
PAGE = 2000


def iter_contacts(conn: Connection, *, ids: list[int] | None = None, include_deleted: bool = False,
                  thresholds: lifecycle.Thresholds = lifecycle.Thresholds()) -> Iterator[dict[str, Any]]:
    """Contacts as JSON-ready dicts, in id order, a page at a time."""
    now = utcnow()
    last_id = 0
    while True:
        q = (select(contacts_t, scores_t.c.score.label("lead_score"))
             .outerjoin(scores_t, scores_t.c.contact_id == contacts_t.c.id)
             .where(contacts_t.c.id > last_id).order_by(contacts_t.c.id).limit(PAGE))
        if ids is not None:
            q = q.where(contacts_t.c.id.in_(ids))
        if not include_deleted:
            q = q.where(contacts_t.c.deleted_at.is_(None))
        rows = conn.execute(q).all()
        if not rows:
            return
        page_ids = [r.id for r in rows]
        idents: dict[int, list[Any]] = defaultdict(list)
        for row in conn.execute(select(identities_t).where(identities_t.c.contact_id.in_(page_ids))
                                .order_by(identities_t.c.id)):
            idents[row.contact_id].append(row)
        refs: dict[int, list[Any]] = defaultdict(list)
        for row in conn.execute(select(refs_t).where(refs_t.c.contact_id.in_(page_ids)).order_by(refs_t.c.id)):
            refs[row.contact_id].append(row)
        for r in rows:
            yield _shape(r, idents[r.id], refs[r.id], now, thresholds)
        last_id = rows[-1].id
        if ids is not None and len(rows) < PAGE:
            return


def _iso(value: dt.date | dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _shape(r: Any, idents: list[Any], refs: list[Any], now: dt.datetime,
           thresholds: lifecycle.Thresholds) -> dict[str, Any]:
    def values(kind: str, valid: bool) -> list[str]:
        # A person's own addresses first: a letter picks the first one it may use, and a
        # switchboard or info@ (shared) reaches the person only through somebody else.
        held = [i for i in idents if i.kind == kind and i.valid == valid]
        return [i.value if valid else i.raw for i in sorted(held, key=lambda i: i.shared is not None)]

    return {
        "id": r.id,
        "first_name": r.first_name,
        "last_name": r.last_name,
        "middle_name": r.middle_name,
        "phones": values("phone", True),
        "emails": values("email", True),
        "invalid_phones": values("phone", False),
        "invalid_emails": values("email", False),
        "identities": [{"kind": i.kind, "value": i.value if i.valid else i.raw, "valid": i.valid, "label": i.label,
                        "shared": i.shared} for i in idents],
        "external_refs": [{"source": x.source, "id": x.external_id} for x in refs if x.deleted_at is None],
        "orders_count": r.orders_count,
        "revenue": float(r.revenue or 0),
        "first_order_at": _iso(r.first_order_at),
        "last_order_at": _iso(r.last_order_at),
        "lifecycle": lifecycle.stage(r.orders_count, r.revenue or 0, r.last_order_at, r.tags or [], now=now,
                                     thresholds=thresholds),
        "lead_score": r.lead_score or 0,
        "birthday": _iso(r.birthday),
        "city": r.city,
        "gender": r.gender,
        "company": r.company,
        "tags": list(r.tags or []),
        "created_at": _iso(r.created_at),
        "deleted_at": _iso(r.deleted_at),
    }


def missing(conn: Connection, contact_id: int) -> str | None:
    """Why an id names no contact to show, in one line, or None when it does.

    An id merged away names its survivor, so the line says where the person
    went; a pending signup's hidden placeholder is nobody's contact yet.
    """
    exists = conn.execute(select(contacts_t.c.id).where(contacts_t.c.id == contact_id)).first() is not None
    if exists:
        return _("no contact with id %(id)s", id=contact_id) if identity.is_placeholder(conn, contact_id) else None
    survivor = identity.current_contact_id(conn, contact_id)
    if survivor is not None and survivor != contact_id:
        return _("contact #%(id)s was merged into #%(survivor)s; see #%(survivor)s", id=contact_id, survivor=survivor)
    return _("no contact with id %(id)s", id=contact_id)


def card(conn: Connection, contact_id: int, **kwargs: Any) -> dict[str, Any] | None:
    """One contact with everything the card shows: identities with their sources, orders, merges."""
    found = list(iter_contacts(conn, ids=[contact_id], include_deleted=True, **kwargs))
    if not found:
        return None
    out = found[0]
    provenance = conn.execute(select(contacts_t.c.provenance, contacts_t.c.attributes)
                              .where(contacts_t.c.id == contact_id)).one()
    out["provenance"] = provenance.provenance
    out["attributes"] = provenance.attributes
    out["identities"] = [
        {"kind": i.kind, "value": i.value, "raw": i.raw, "valid": i.valid, "source": i.source,
         "added_at": _iso(i.created_at), "label": i.label, "shared": i.shared}
        for i in conn.execute(select(identities_t).where(identities_t.c.contact_id == contact_id)
                              .order_by(identities_t.c.id))
    ]
    out["orders"] = [
        {"source": o.source, "id": o.external_id, "status": o.status, "amount": float(o.amount),
         "currency": o.currency, "closed_at": _iso(o.closed_at), "promo_code": o.promo_code, "title": o.title}
        for o in conn.execute(select(orders_t).where(orders_t.c.contact_id == contact_id)
                              .order_by(orders_t.c.closed_at))
    ]
    out["merges"] = [
        {"id": m.id, "merged_id": m.merged_id, "reason": m.reason, "snapshot": m.snapshot, "actor": m.actor,
         "at": _iso(m.at), "undone_at": _iso(m.undone_at), "undone_by": m.undone_by}
        for m in conn.execute(select(merges_t).where(merges_t.c.survivor_id == contact_id).order_by(merges_t.c.id))
    ]
    return out


def value_note(label: str | None, shared: str | None) -> str:
    """What a person should know about one phone or email: its type, and why it is shared if it is.

    "рабочий, общий: у людей с разными именами": a shared value is a place
    (a switchboard, info@), so whoever reads the card knows not to take it
    for this person's own.
    """
    parts = [identity.label_title(label)] if label else []
    if shared:
        parts.append(_("shared: %(reason)s", reason=identity.shared_title(shared)))
    return ", ".join(parts)


def key_title(key: Any) -> str:
    """A merge key ("phone:+74951112233") as the card shows that value: +7 495 111-22-33."""
    kind, _sep, value = str(key).partition(":")
    if kind == "phone" and value:
        return formats.phone(value)
    if kind == "email" and value:
        return value
    if kind == "ref" and value:
        source, _sep, external_id = value.partition("/")
        return f"{source}:{external_id}" if external_id else value
    return str(key)
