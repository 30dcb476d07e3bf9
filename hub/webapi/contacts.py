"""POST and GET /api/v1/contacts: people pushed in by a website, a shop or a script, and read back.

A contact sent here goes through exactly what a CRM sync or an import goes
through (identity.prepare, then sync.write_contacts: normalization, the
identity rule, merges, the refuse_records hook), so "8 (916) 123-45-67"
from a form and +79161234567 from Bitrix24 are one person. A whole batch is
resolved at once, as one chunk of an import is.

A reference (`source` + `external_id`) is how a client updates the same
record later, whatever its phones say then; without one, an item is
matched by its phones and emails alone, and an item with no mobile or
personal email of its own makes a new contact each time it is sent.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from typing import Any

from sqlalchemy import Select, select

from hub import contacts, identity, normalize, sync
from hub.db import MAX_ROW_ID
from hub.hookspecs import hookimpl
from hub.i18n import gettext
from hub.plugins import sources
from hub.models import Contact, ContactIdentity, ExternalRef
from hub.records import ContactRecord
from hub.segments.evaluate import Segments
from hub.segments.lifecycle import Thresholds
from hub.spreadsheet import split_full_name
from hub.webapi import problems
from hub.webapi.endpoints import JSON, ApiError, Call, Endpoint, cursor_after, read_cursor
from hub.webapi.schemas import (
    COMPONENTS,
    CONTACT_REF,
    CURSOR_PARAMS,
    ITEM_PROBLEMS,
    SOURCE,
    TEXT_PATTERN,
    keyed,
    items_of,
    line,
    one_or_batch,
    page_of,
)

contacts_t = Contact.__table__
identities_t = ContactIdentity.__table__
refs_t = ExternalRef.__table__
DEFAULT_SOURCE = "api"
DEFAULT_LIMIT = 100
MAX_BATCH = 1000
NAME_FIELDS = ("first_name", "last_name", "middle_name")
FIELD_NAME_PATTERN = "^[^\\x00-\\x1f\\x7f]{1,64}$"  # a custom field's name: one line, 1 to 64 characters

CONTACT_IN: JSON = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "first_name": line(200), "last_name": line(200), "middle_name": line(200),
        "name": line(200, "The full name as one string («Иванова Мария», «Мария Иванова», «Иванов Иван "
                          "Иванович»), split as an import splits its ФИО column; first_name, last_name and "
                          "middle_name win over it"),
        "phones": {"type": "array", "maxItems": 20, "items": line(100),
                   "description": "As people write them («8 (916) 123-45-67»); normalized to E.164. One that "
                                  "cannot be read is kept as written and flagged in problems"},
        "emails": {"type": "array", "maxItems": 20, "items": line(320)},
        "birthday": {"type": "string", "format": "date", "pattern": "^\\d{4}-\\d{2}-\\d{2}$",
                     "examples": ["1990-05-17"]},
        "city": line(200), "company": line(300), "gender": {"enum": ["m", "f"]},
        "tags": {"type": "array", "maxItems": 50, "items": line(100, min_length=1)},
        "fields": keyed(FIELD_NAME_PATTERN, {"type": ["string", "number", "boolean"], "maxLength": 2000,
                                             "pattern": TEXT_PATTERN},
                        max_properties=50,
                        description="Custom fields, kept on the contact like an import's extra columns (usable "
                                    "in segment rules): names of 1 to 64 characters on one line; values are "
                                    "text (tabs and line breaks allowed, no other control character), numbers "
                                    "or true/false"),
        "source": {**SOURCE, "description": "The system the contact comes from (default: api)"},
        "external_id": line(200, "The contact's id in `source`: send it to update the same record later",
                            min_length=1),
    },
}
ITEM_ANSWER: JSON = {
    "type": "object", "required": ["index", "contact_id", "status", "problems"],
    "properties": {
        "index": {"type": "integer", "description": "The item's place in the batch (0 for a single contact)"},
        "contact_id": {"type": ["integer", "null"], "description": "null when refused"},
        "status": {"enum": ["created", "updated", "merged", "refused"]},
        "merged_ids": {"type": "array", "items": {"type": "integer"},
                       "description": "With merged: the contacts folded into contact_id"},
        "problems": ITEM_PROBLEMS,
    },
}
POST_DESCRIPTION = """\
Upsert one contact, or `{"contacts": [...]}` with up to 1,000, through the same normalization and
identity rules as CRM syncs and imports. Each item is answered in order with its `index`:

- `created`: a new contact was made for it;
- `updated`: it is a contact Hub already held (found by its reference, a phone or an email), or one an
  earlier item of the same batch created or matched; its fields are filled in, it may be unchanged;
- `merged`: it showed that contacts Hub held apart are one person; they were merged into `contact_id`
  (`merged_ids` lists the others, which now answer as `contact_id`), contacts made by earlier items of
  the same batch included. Every item answers the contact as it is after the whole batch: an earlier
  item whose contact a later item merged away answers the survivor's id (keep that one), and only the
  first item that answers a contact made by this batch says `created`;
- `refused`: nothing was written; `problems` says why (a person erased on request stays out).

`source` + `external_id` is the item's reference: send it to update the same record later. Without one
the item is matched by its phones and emails only; an item without a mobile or a personal email then
makes a new contact each time it is sent. A phone or email that cannot be read is kept as written and
flagged in `problems`, as everywhere in Hub. As with CRM syncs, an empty field takes the value sent, and a
field another source filled keeps that source's value (a source corrects only what it gave); tags and
`fields` are added to what the contact has.
"""


def reserved_source(name: str) -> bool:
    """Whether `name` is a system Hub itself reads (a CRM a plugin syncs, a file import).

    A key writing under such a name would speak for that system: attach its
    references (which merge people) or overwrite the deals its sync keeps.
    """
    folded = name.strip().casefold()
    return folded.startswith("import") or folded in {s.casefold() for s in sources()}


def reserved_detail(name: str) -> str:
    return gettext("%(source)s is a system Hub reads itself (a CRM sync or a file import); name your own system "
                   "(for example shop or site)", source=name[:100])


def _where(base: str, index: int) -> str:
    return f"{base}/{index}" if base else ""


def _problem(field: str, detail: str) -> JSON:
    return {"field": field or "/", "detail": detail}


def _record(item: JSON, where: str, region: str, found: list[JSON]) -> tuple[identity.Prepared, list[
        tuple[str, str, str]]] | None:
    """The item as a sync record, its identifiers, and (kind, value, pointer) for each valid one."""
    first = last = middle = None
    if item.get("name"):
        first, last, middle = split_full_name(item["name"])
    first = normalize.person_name(item.get("first_name")) or first
    last = normalize.person_name(item.get("last_name")) or last
    middle = normalize.person_name(item.get("middle_name")) or middle
    birthday = None
    if item.get("birthday"):
        try:
            birthday = dt.date.fromisoformat(item["birthday"])
        except ValueError:
            found.append(_problem(f"{where}/birthday", gettext("not a real date; not stored")))
    attributes: dict[str, object] = {}
    for name, value in (item.get("fields") or {}).items():
        if isinstance(value, float) and not math.isfinite(value):
            found.append(_problem(f"{where}/fields{problems.pointer([name])}",
                                  gettext("not a finite number; not stored")))
            continue
        attributes[name] = value
    identifiers: list[normalize.Identifier] = []
    keys: list[tuple[str, str, str]] = []
    for kind, cells in (("phone", item.get("phones") or []), ("email", item.get("emails") or [])):
        for j, cell in enumerate(cells):
            read = normalize.phones(cell, region) if kind == "phone" else normalize.emails(cell)
            identifiers.extend(read)
            for ident in read:
                if ident.valid:
                    keys.append((ident.kind, ident.value, f"{where}/{kind}s/{j}"))
            if any(not ident.valid for ident in read):
                found.append(_problem(f"{where}/{kind}s/{j}", gettext("not a valid phone number; kept as written "
                                                                      "and flagged") if kind == "phone" else
                                      gettext("not a valid email address; kept as written and flagged")))
    external_id = item.get("external_id")
    if item.get("source") is not None and reserved_source(item["source"]):
        found.append(_problem(f"{where}/source", reserved_detail(item["source"])))
        return None
    if not (first or last or middle or identifiers or external_id):
        found.append(_problem(where, gettext("no name, phone, email or external_id: nothing to keep")))
        return None
    record = ContactRecord(
        source=item.get("source") or DEFAULT_SOURCE, external_id=external_id, first_name=first, last_name=last,
        middle_name=middle, phones=list(item.get("phones") or []), emails=list(item.get("emails") or []),
        birthday=birthday, city=(item.get("city") or "").strip() or None, gender=item.get("gender"),
        company=(item.get("company") or "").strip() or None,
        tags=list(dict.fromkeys(t.strip() for t in item.get("tags") or [] if t.strip())), attributes=attributes)
    return identity.Prepared(record, identifiers), keys


def post_contacts(call: Call) -> JSON:
    """Upsert a contact or a batch; each item answered with its contact and what happened."""
    body = call.body
    items, base = (body["contacts"], "/contacts") if "contacts" in body else ([body], "")
    region = call.settings.default_region
    answers: list[JSON] = []
    keys_of: dict[int, list[tuple[str, str, str]]] = {}
    by_source: dict[str, list[tuple[int, identity.Prepared]]] = defaultdict(list)
    for index, item in enumerate(items):
        found: list[JSON] = []
        answers.append({"index": index, "contact_id": None, "status": "refused", "problems": found})
        made = _record(item, _where(base, index), region, found)
        if made is not None:
            by_source[made[0].record.source].append((index, made[0]))
            keys_of[index] = made[1]

    # One chunk per source (the contact_synced hook is told the source), in the order sources first appear.
    # The whole batch's people are locked in one sorted step before any chunk is written (PostgreSQL).
    identity.lock_keys(call.conn, [p for members in by_source.values() for _, p in members])
    placed: dict[int, int | None] = {}
    created: set[int] = set()
    survivor_of: dict[int, int] = {}
    shared: dict[tuple[str, str], str] = {}
    chunk_merges: list[list[tuple[int, int]]] = []  # each chunk's merges (survivor, merged), by chunk
    chunk_of: dict[int, int] = {}  # item index -> its chunk
    for members in by_source.values():
        prepared = [p for _, p in members]
        result = sync.write_contacts(call.conn, [p.record for p in prepared], call.settings, sync.Counts(),
                                     prepared=prepared)
        created.update(result.created)
        survivor_of.update({merged: survivor for survivor, merged in result.merged})
        shared.update(result.shared)
        placed.update({index: cid for (index, _), cid in zip(members, result.contact_ids, strict=True)})
        chunk_of.update({index: len(chunk_merges) for index, _ in members})
        chunk_merges.append(list(result.merged))

    def current(cid: int) -> int:
        hops = 0
        while cid in survivor_of and hops < len(survivor_of):
            cid, hops = survivor_of[cid], hops + 1
        return cid

    # A merge is told by the first item of the chunk that made it which lands on the survivor; every
    # item whose contact was folded away (earlier in the batch too) answers the survivor's id.
    folds: dict[tuple[int, int], list[int]] = defaultdict(list)  # (chunk, final survivor) -> merged ids
    for n, merges in enumerate(chunk_merges):
        for _survivor, merged in merges:
            folds[(n, current(merged))].append(merged)
    seen: set[int] = set()
    for index, answer in enumerate(answers):
        if index not in placed:
            continue
        raw = placed[index]
        if raw is None:
            answer["problems"].append(_problem(_where(base, index), gettext(
                "refused: Hub keeps this person out (they asked to be erased, or a plugin's rule refuses the "
                "record); nothing was written")))
            continue
        cid = current(raw)
        answer["contact_id"] = cid
        fold = folds.pop((chunk_of[index], cid), None)
        if fold:
            answer["status"] = "merged"
            answer["merged_ids"] = sorted(set(fold))
        elif cid in seen:
            answer["status"] = "updated"
        elif cid in created:
            answer["status"] = "created"
        else:
            answer["status"] = "updated"
        seen.add(cid)
        for kind, value, pointer in keys_of.get(index, ()):
            reason = shared.get((kind, value))
            if reason is not None:
                answer["problems"].append(_problem(pointer, gettext(
                    "several people use this value (%(reason)s): it is kept, but does not identify this person",
                    reason=identity.shared_title(reason))))
    return {"items": answers}


def _thresholds(call: Call) -> Thresholds:
    return Thresholds.from_settings(call.settings.extra)


def get_contact(call: Call) -> JSON:
    """One contact; an id merged into another answers the survivor."""
    asked = int(call.path["id"])
    cid = identity.find_contacts(call.conn, [asked])[0]
    found = list(contacts.iter_contacts(call.conn, ids=[cid], thresholds=_thresholds(call))) if cid else []
    if not found:
        raise problems.error(404, gettext("There is no contact %(id)s", id=asked),
                             errors=[{"field": "id", "detail": gettext("no such contact")}])
    return found[0]


def _bad_param(name: str, detail: str) -> ApiError:
    return problems.error(400, f"{name}: {detail}", errors=[{"field": name, "detail": detail}])


def _holding(kind: str, values: list[str]) -> Select[Any]:
    c = identities_t.c
    return select(c.contact_id).where(c.kind == kind, c.valid, c.value.in_(values))


def list_contacts(call: Call) -> JSON:
    """A page of contacts, filtered by phone, email, reference or segment, paged by id."""
    q = call.query
    c = contacts_t.c
    stmt = select(c.id).where(c.deleted_at.is_(None))
    if q.get("phone"):
        phones = sorted({i.value for i in normalize.phones(q["phone"], call.settings.default_region) if i.valid})
        if not phones:
            raise _bad_param("phone", gettext("not a phone number Hub can read"))
        stmt = stmt.where(c.id.in_(_holding(normalize.PHONE, phones)))
    if q.get("email"):
        email = normalize.email(q["email"])
        if email is None or not email.valid:
            raise _bad_param("email", gettext("not an email address Hub can read"))
        stmt = stmt.where(c.id.in_(_holding(normalize.EMAIL, [email.value])))
    if q.get("external_id") and not q.get("source"):
        raise _bad_param("external_id", gettext("needs source: a reference is source and external_id together"))
    if q.get("source"):
        refs = select(refs_t.c.contact_id).where(refs_t.c.source == q["source"], refs_t.c.deleted_at.is_(None))
        if q.get("external_id"):
            refs = refs.where(refs_t.c.external_id == q["external_id"])
        stmt = stmt.where(c.id.in_(refs))
    if q.get("segment"):
        chosen = Segments(call.conn, call.settings)
        name = q["segment"]
        if name not in chosen.catalog.definitions:
            raise problems.error(404, gettext("segment: there is no segment %(name)s; GET /api/v1/segments lists "
                                              "them", name=name[:64]), errors=[{"field": "segment",
                                                                                "detail": gettext("no such segment")}])
        members = chosen.compiler.members(chosen.get(name).rule).subquery()
        stmt = stmt.where(c.id.in_(select(members.c.id)))
    after = min(read_cursor(q.get("cursor")), MAX_ROW_ID)
    limit = int(q.get("limit") or DEFAULT_LIMIT)
    ids = list(call.conn.execute(stmt.where(c.id > after).order_by(c.id).limit(limit + 1)).scalars())
    more = len(ids) > limit
    ids = ids[:limit]
    items = list(contacts.iter_contacts(call.conn, ids=ids, thresholds=_thresholds(call))) if ids else []
    return {"items": items, "next_cursor": cursor_after(ids[-1]) if more else None}


def _filter(name: str, max_length: int, description: str) -> JSON:
    """A filter of the contact list: a query parameter holding one non-empty line."""
    return {"name": name, "in": "query", "required": False, "schema": line(max_length, min_length=1),
            "description": description}


LIST_PARAMS: tuple[JSON, ...] = (
    _filter("phone", 100, "Contacts holding this phone, written any way («8 (916) 123-45-67» finds +79161234567)"),
    _filter("email", 320, "Contacts holding this email (case does not matter)"),
    _filter("source", 100, "Contacts with a reference from this source"),
    _filter("external_id", 200, "With source: the contact with this reference"),
    _filter("segment", 64, "Contacts in this segment now"),
    *CURSOR_PARAMS,
)


@hookimpl
def register_api_endpoints(register: Any) -> None:
    register(Endpoint("POST", "/contacts", post_contacts, "contacts:write", "Upsert contacts", "contacts",
                      description=POST_DESCRIPTION, body=one_or_batch("contacts", CONTACT_IN, limit=MAX_BATCH),
                      answer=items_of(ITEM_ANSWER)))
    register(Endpoint("GET", "/contacts/{id}", get_contact, "contacts:read", "One contact", "contacts",
                      description="A contact in the shape of `hub contacts list --json`. An id merged into "
                                  "another contact answers the survivor (its `id` is the survivor's: keep that "
                                  "one). A deleted or erased contact is a 404 that says nothing about them.",
                      params=({"name": "id", "in": "path", "required": True,
                               "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ROW_ID}},),
                      answer=CONTACT_REF, errors=(404,), schemas=COMPONENTS))
    register(Endpoint("GET", "/contacts", list_contacts, "contacts:read", "Find contacts, a page at a time",
                      "contacts", description="Filters combine (all must hold). An empty filter (?phone=) or "
                                              "one given twice is a 400 naming it, never the whole base. Pages "
                                              "go by contact id: pass next_cursor as cursor until it is null.",
                      params=LIST_PARAMS, answer=page_of(CONTACT_REF), errors=(404,), schemas=COMPONENTS))
