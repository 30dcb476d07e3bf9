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

from sqlalchemy import Connection, func, select

from hub import formats, identity, spreadsheet
from hub.i18n import N_
from hub.i18n import gettext as _
from hub.db import utcnow
from hub.models import (Activity, Company, Contact, ContactCompany, ContactIdentity, ContactMerge, CustomField,
                        ExternalRef, LeadScore, Order)
from hub.segments import lifecycle

contacts_t = Contact.__table__
identities_t = ContactIdentity.__table__
refs_t = ExternalRef.__table__
orders_t = Order.__table__
merges_t = ContactMerge.__table__
scores_t = LeadScore.__table__
companies_t = Company.__table__
members_t = ContactCompany.__table__
activities_t = Activity.__table__
fields_t = CustomField.__table__
PAGE = 2000
CARD_ACTIVITIES = 20  # the card's latest calls and meetings; counts cover the rest
ACTIVITY_WINDOW = dt.timedelta(days=30)  # "calls in 30 days", "missed incoming in 30 days"
FIELD_TEXT = 300  # characters of a custom field's value a card shows; a CRM's text field can hold a letter
# Attributes that are Hub's bookkeeping, not facts about the person: the CRM manager's internal id.
HIDDEN_ATTRIBUTES = frozenset({"responsible_id", "responsible_user_id"})
STAGE_SINCE = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)  # an earlier "entered the stage" is a CRM's blank


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
    """One contact with everything the card shows: identities with their sources, orders, merges.

    Also the companies the person works at, open deals with how long each has
    stood in its stage, the calls and meetings managers logged (the latest
    CARD_ACTIVITIES and the counts of 30 days) and what plugins add through
    the contact_card_facts hook (`nps`: the latest survey answer, or None).
    """
    found = list(iter_contacts(conn, ids=[contact_id], include_deleted=True, **kwargs))
    if not found:
        return None
    out = found[0]
    provenance = conn.execute(select(contacts_t.c.provenance, contacts_t.c.attributes)
                              .where(contacts_t.c.id == contact_id)).one()
    out["provenance"] = provenance.provenance
    out["attributes"] = provenance.attributes
    out["custom_fields"] = custom_fields_of(conn, provenance.attributes)
    out["identities"] = [
        {"kind": i.kind, "value": i.value, "raw": i.raw, "valid": i.valid, "source": i.source,
         "added_at": _iso(i.created_at), "label": i.label, "shared": i.shared}
        for i in conn.execute(select(identities_t).where(identities_t.c.contact_id == contact_id)
                              .order_by(identities_t.c.id))
    ]
    out["orders"] = [
        {"source": o.source, "id": o.external_id, "status": o.status, "amount": float(o.amount),
         "currency": o.currency, "closed_at": _iso(o.closed_at), "promo_code": o.promo_code, "title": o.title,
         "pipeline": o.pipeline, "stage": o.stage, "stage_entered_at": _iso(o.stage_entered_at),
         "responsible_id": o.responsible_id, "company_id": o.company_id}
        for o in conn.execute(select(orders_t).where(orders_t.c.contact_id == contact_id)
                              .order_by(orders_t.c.closed_at))
    ]
    now = utcnow()
    out["open_deals"] = [_open_deal(o, now) for o in out["orders"] if o["status"] == "open"]
    out["companies"] = companies_of(conn, contact_id)
    out["activities"] = activities_of(conn, contact_id, now=now)
    out["merges"] = [
        {"id": m.id, "merged_id": m.merged_id, "reason": m.reason, "snapshot": m.snapshot, "actor": m.actor,
         "at": _iso(m.at), "undone_at": _iso(m.undone_at), "undone_by": m.undone_by}
        for m in conn.execute(select(merges_t).where(merges_t.c.survivor_id == contact_id).order_by(merges_t.c.id))
    ]
    out["nps"] = None
    _plugin_facts(conn, contact_id, out)
    return out


def _plugin_facts(conn: Connection, contact_id: int, out: dict[str, Any]) -> None:
    """What plugins know about the person (the latest NPS answer, from the workflows' surveys).

    A plugin fills a key the core leaves empty or adds one of its own; it
    never replaces what the core read, so a card means the same whatever is
    installed.
    """
    from hub.plugins import get_pm

    for found in get_pm().hook.contact_card_facts(conn=conn, contact_id=contact_id):
        for key, value in (found or {}).items():
            if out.get(key) is None:
                out[key] = value


def _open_deal(order: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """An open deal with how long it has stood in its stage: a deal stuck for weeks wants a call."""
    entered = order["stage_entered_at"]
    days = None
    if entered:
        since = dt.datetime.fromisoformat(entered)
        since = since if since.tzinfo is not None else since.replace(tzinfo=dt.timezone.utc)
        days = max(0, (now - since).days) if since >= STAGE_SINCE else None
    keys = ("source", "id", "title", "pipeline", "stage", "stage_entered_at", "amount", "currency", "responsible_id")
    return {**{k: order.get(k) for k in keys}, "days_in_stage": days}


def custom_fields_of(conn: Connection, attributes: Any) -> list[dict[str, Any]]:
    """The person's CRM custom fields and kept columns, each under the name the CRM's users know it by.

    Attributes are keyed by the CRM's code (UF_CRM_1712…); the custom_fields
    table names it («Откуда узнал»). A key no CRM defines is a column kept
    from an import and reads as its header. `text` is the value as the card
    shows it: a list joined, yes/no, a date in the reader's words, clipped.
    """
    if not isinstance(attributes, dict) or not attributes:
        return []
    keys = [str(k) for k in attributes if str(k) not in HIDDEN_ATTRIBUTES]
    known: dict[str, Any] = {}
    for start in range(0, len(keys), 500):
        for r in conn.execute(select(fields_t.c.source, fields_t.c.code, fields_t.c.name, fields_t.c.type)
                              .where(fields_t.c.entity == "contact", fields_t.c.code.in_(keys[start:start + 500]))
                              .order_by(fields_t.c.source)):
            known.setdefault(r.code, r)
    out = []
    for key in keys:
        d = known.get(key)
        value = attributes.get(key)
        out.append({"source": d.source if d else None, "code": key,
                    "name": (d.name if d and d.name else spreadsheet.attribute_title(key)), "value": value,
                    "text": field_text(value, d.type if d else None)})
    return sorted(out, key=lambda f: (str(f["name"]).casefold(), f["code"]))


def field_text(value: Any, ftype: str | None = None, limit: int = FIELD_TEXT) -> str:
    """A custom field's value as a person reads it: «опт, розница», «да», «1 марта 2024», cut with «…»."""
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        text = _("yes") if value else _("no")
    elif isinstance(value, (list, tuple)):
        text = ", ".join(field_text(v, ftype, limit) for v in value[:100] if v is not None and v != "")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        text = formats.number(value) if value == value and abs(value) != float("inf") else str(value)
    elif isinstance(value, str) and ftype in ("date", "datetime"):
        text = _when(value, ftype)
    elif isinstance(value, dict):
        text = ", ".join(f"{k}: {field_text(v, None, limit)}" for k, v in list(value.items())[:100])
    else:
        text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _when(value: str, ftype: str) -> str:
    """A date field in the reader's words; text that is no date (a CRM allows it) shows as written."""
    try:
        if ftype == "date":
            return formats.date(dt.date.fromisoformat(value[:10]))
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    return f"{formats.date(moment)}, {moment:%H:%M}"  # at the clock the CRM wrote it with


def companies_of(conn: Connection, contact_id: int) -> list[dict[str, Any]]:
    """The companies the person works at, as the CRMs link them (a deleted company is gone from the card)."""
    c = companies_t.c
    rows = conn.execute(select(c.id, c.source, c.external_id, c.name, c.inn, c.city, c.orders_count, c.revenue)
                        .join(members_t, members_t.c.company_id == c.id)
                        .where(members_t.c.contact_id == contact_id, c.deleted_at.is_(None))
                        .order_by(c.name, c.id))
    return [{"id": r.id, "source": r.source, "external_id": r.external_id, "name": r.name, "inn": r.inn,
             "city": r.city, "orders_count": r.orders_count or 0, "revenue": float(r.revenue or 0)} for r in rows]


def activities_of(conn: Connection, contact_id: int, *, now: dt.datetime,
                  limit: int = CARD_ACTIVITIES) -> dict[str, Any]:
    """The calls and meetings managers logged with the person: the latest few and the counts segments use."""
    a = activities_t.c
    live = (a.contact_id == contact_id, a.deleted_at.is_(None))
    since = now - ACTIVITY_WINDOW
    calls = (a.kind == "call",)
    last_call, calls_30d, missed_30d = conn.execute(select(
        func.max(a.at),
        func.count().filter(a.at >= since),
        func.count().filter(a.at >= since, a.direction == "in", a.missed.is_(True)),
    ).where(*live, *calls)).one()
    recent = [{"source": r.source, "external_id": r.external_id, "kind": r.kind, "direction": r.direction,
               "missed": bool(r.missed), "done": bool(r.done), "at": _iso(r.at), "duration_s": r.duration_s,
               "subject": r.subject, "responsible_id": r.responsible_id}
              for r in conn.execute(select(activities_t).where(*live).order_by(a.at.desc(), a.id.desc())
                                    .limit(limit))]
    return {"last_call_at": _iso(last_call), "calls_30d": int(calls_30d or 0),
            "missed_incoming_30d": int(missed_30d or 0), "recent": recent}


# What a manager logged, in the card's words; an unknown kind (a newer CRM's) shows as the CRM wrote it.
ACTIVITY_TITLES = {"call": N_("Call"), "meeting": N_("Meeting"), "email": N_("Letter"), "task": N_("Task"),
                   "note": N_("Note")}
ACTIVITY_ICONS = {"call": "☎", "meeting": "◎", "email": "✉", "task": "✓", "note": "✎"}
DIRECTION_TITLES = {"in": N_("incoming"), "out": N_("outgoing")}


def activity_title(kind: str | None) -> str:
    return _(ACTIVITY_TITLES[kind]) if kind in ACTIVITY_TITLES else str(kind or "")


def direction_title(direction: str | None) -> str:
    return _(DIRECTION_TITLES[direction]) if direction in DIRECTION_TITLES else ""


def call_length(seconds: int | None) -> str:
    """How long a call lasted, as a manager says it: «3 мин 12 с», «1 ч 5 мин», «45 с»."""
    if seconds is None or seconds < 0:
        return ""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return _("%(hours)s h %(minutes)s min", hours=formats.number(hours), minutes=minutes)
    if minutes:
        return _("%(minutes)s min %(seconds)s s", minutes=minutes, seconds=secs)
    return _("%(seconds)s s", seconds=secs)


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
