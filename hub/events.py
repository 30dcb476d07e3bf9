"""Events other systems send about people (`cart_abandoned`, `page_viewed`, …): stored, and following the person.

An event names its contact by Hub's id or by what the sender knows: a
phone, an email or its own reference (`{source, external_id}`). Those are
looked up for a whole batch at once; a person the base does not hold yet
is created through the ordinary identity path (hub.sync.write_contacts), so
a cart event from a new email is a new contact, and an erased person's
identifiers are refused there like in every sync (the refuse_records hook).

The sender's id (`uid`) makes an event idempotent: the same id again stores
nothing and is answered as a duplicate of the event already kept.

Events follow people, through the same hooks plugins use: a merge moves
them to the survivor, remembering in `origin_contact_id` whose they were, so
an unmerge gives them back; an erasure deletes them.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from sqlalchemy import Connection, delete, func, select, update

from hub import normalize
from hub.config import Settings
from hub.db import among, insert_for, reserve_ids, utcnow
from hub.hookspecs import hookimpl
from hub.i18n import gettext
from hub.models import Contact, ContactIdentity, ContactMerge, Erasure, Event, ExternalRef
from hub.records import ContactRecord

events_t = Event.__table__
contacts_t = Contact.__table__
identities_t = ContactIdentity.__table__
refs_t = ExternalRef.__table__
merges_t = ContactMerge.__table__
erasures_t = Erasure.__table__

# An event name: lowercase letters, digits, _ and -, starting with a letter; the same shape a
# segment field's part and a workflow trigger take, so every stored name can be used in both.
NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
NAME = re.compile(NAME_PATTERN)
# A property's name: what a segment rule can write as a field part (events.<name>.max.<property>.<window>).
PROPERTY_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MAX_PROPERTIES = 50
MAX_TEXT = 1000  # characters of a text property
MAX_LIST = 20  # items of a list property
MAX_NUMBER = 1e15  # a number property's magnitude (money in kopecks fits many times over)
FUTURE_SLACK = dt.timedelta(hours=1)  # a sender's clock may run this much ahead
SOURCE = "api"  # the source of contacts an event creates (without a reference of the sender's)


@dataclass
class Incoming:
    """One event as it came in (already checked against the endpoint's schema)."""

    name: str
    contact_id: int | None = None
    phone: str | None = None
    email: str | None = None
    ref: tuple[str, str] | None = None  # (source, external_id)
    properties: dict[str, Any] = field(default_factory=dict)
    occurred_at: str | None = None
    uid: str | None = None


@dataclass
class Outcome:
    """What became of one event: stored, duplicate (its id was seen before) or refused, and why."""

    index: int
    status: str = "refused"
    event_id: int | None = None
    problems: list[dict[str, str]] = field(default_factory=list)  # {"field": the item's key, "detail": why}

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "event_id": self.event_id, "status": self.status, "problems": self.problems}


def _problem(where: str, detail: str) -> dict[str, str]:
    return {"field": where, "detail": detail}


def record(conn: Connection, settings: Settings, items: Sequence[Incoming], *, source: str | None,
           now: dt.datetime | None = None) -> list[Outcome]:
    """Store a batch of events in the caller's transaction; one outcome per item, in order.

    Set-wise on purpose: one query finds the contacts for all ids, one for
    all identifiers, one finds ids already stored, one multi-row insert
    writes the rest (ON CONFLICT (uid) DO NOTHING, so two senders racing
    with the same id store it once).
    """
    now = now or utcnow()
    outcomes = [Outcome(i) for i in range(len(items))]
    when: list[dt.datetime | None] = [None] * len(items)
    for i, item in enumerate(items):
        when[i] = _check(item, outcomes[i], now)
    live = [i for i, o in enumerate(outcomes) if not o.problems]
    contact_of = _contacts(conn, settings, [(i, items[i]) for i in live], outcomes)
    live = [i for i in live if i in contact_of]
    _store(conn, [(i, items[i], contact_of[i], when[i]) for i in live], outcomes, source=source, now=now)
    from hub.segments.events import note_names  # a name new to this process is usable in rules at once

    note_names(settings, {items[i].name for i in live})
    return outcomes


def _check(item: Incoming, outcome: Outcome, now: dt.datetime) -> dt.datetime | None:
    """What the schema cannot say: the time's meaning, finite numbers, and that someone is named."""
    if not NAME.match(item.name):
        outcome.problems.append(_problem("name", gettext(
            "use lowercase letters, digits, _ and - (at most 64), starting with a letter")))
    if item.contact_id is None and not (item.phone or item.email or item.ref):
        outcome.problems.append(_problem("contact_id", gettext(
            "name the contact with contact_id, phone, email or reference")))
    for key, value in item.properties.items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            outcome.problems.append(_problem(f"properties/{key}", gettext("not a finite number")))
    at = now
    if item.occurred_at is not None:
        try:
            parsed = dt.datetime.fromisoformat(item.occurred_at)
        except ValueError:
            outcome.problems.append(_problem("occurred_at", gettext(
                "not a date and time; write it like 2025-03-01T14:05:00+03:00")))
            return None
        if parsed.tzinfo is None:
            outcome.problems.append(_problem("occurred_at", gettext("add the offset from UTC, like +03:00 or Z")))
            return None
        try:
            at = parsed.astimezone(dt.timezone.utc)
        except OverflowError:  # 0001-01-01T00:00:00+05:00 is before the first representable instant
            outcome.problems.append(_problem("occurred_at", gettext(
                "not a date and time; write it like 2025-03-01T14:05:00+03:00")))
            return None
        if at > now + FUTURE_SLACK:
            outcome.problems.append(_problem("occurred_at", gettext(
                "in the future; an event is told after it happened")))
            return None
    return at


def _contacts(conn: Connection, settings: Settings, items: list[tuple[int, Incoming]],
              outcomes: list[Outcome]) -> dict[int, int]:
    """Each item's contact id: by id, else by reference, email or phone, else a new contact."""
    found: dict[int, int] = {}
    by_id = [(i, it) for i, it in items if it.contact_id is not None]
    if by_id:
        wanted = sorted({it.contact_id for _, it in by_id if it.contact_id is not None})
        alive = set(conn.execute(select(contacts_t.c.id).where(among(conn, contacts_t.c.id, wanted),
                                                               contacts_t.c.deleted_at.is_(None))).scalars())
        erased = set(conn.execute(select(erasures_t.c.contact_id)
                                  .where(among(conn, erasures_t.c.contact_id, wanted))).scalars())
        for i, it in by_id:
            assert it.contact_id is not None
            cid: int | None = it.contact_id if it.contact_id in alive and it.contact_id not in erased else None
            if cid is None and it.contact_id not in erased:
                from hub.identity import current_contact_id  # a merged-away id names its survivor

                cid = current_contact_id(conn, it.contact_id)
            if cid is None:
                outcomes[i].problems.append(_problem("contact_id", gettext("there is no contact %(id)s",
                                                                           id=it.contact_id)))
            else:
                found[i] = cid
    rest = [(i, it) for i, it in items if it.contact_id is None]
    if not rest:
        return found
    keys = {i: _keys(it, settings.default_region) for i, it in rest}
    for i, it in rest:
        if not keys[i]:  # only an invalid phone or email: nobody to record it for (and no junk contact)
            outcomes[i].problems.append(_problem("email" if it.email else "phone", gettext(
                "not a valid phone number or email address, and no contact_id or reference")))
    rest = [(i, it) for i, it in rest if keys[i]]
    held = _held(conn, [k for ks in keys.values() for k in ks])
    unknown: list[tuple[int, Incoming]] = []
    for i, it in rest:
        hit = next((held[k] for k in keys[i] if k in held), None)
        if hit is None:
            unknown.append((i, it))
        else:
            found[i] = hit
    if unknown:
        found.update(_create(conn, settings, unknown, outcomes))
    return found


def _keys(item: Incoming, region: str) -> list[tuple[str, str]]:
    """The item's identifiers in lookup order (reference, email, phone), normalized."""
    out: list[tuple[str, str]] = []
    if item.ref is not None:
        out.append(("ref", f"{item.ref[0]}\x1f{item.ref[1]}"))
    if item.email:
        found = normalize.email(item.email)
        if found is not None and found.valid:
            out.append(("email", found.value))
    if item.phone:
        out.extend(("phone", p.value) for p in normalize.phones(item.phone, region) if p.valid)
    return out


def _held(conn: Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Identifiers that name one live contact; a shared value names nobody here (identity decides)."""
    out: dict[tuple[str, str], int] = {}
    by_kind: dict[str, set[str]] = {}
    for kind, value in keys:
        by_kind.setdefault(kind, set()).add(value)
    c, r = identities_t.c, refs_t.c
    for kind, values in sorted(by_kind.items()):
        if kind == "ref":
            by_source: dict[str, list[str]] = {}
            for v in sorted(values):
                source, external_id = v.split("\x1f", 1)
                by_source.setdefault(source, []).append(external_id)
            for source, ids in by_source.items():  # one query per sender system (usually one)
                for external_id, contact_id in conn.execute(select(r.external_id, r.contact_id).where(
                        r.source == source, among(conn, r.external_id, ids))):
                    out[("ref", f"{source}\x1f{external_id}")] = contact_id
            continue
        # Matches the partial unique index on personal values exactly (as hub.identity._lookup does).
        for value, contact_id in conn.execute(select(c.value, c.contact_id).where(
                c.kind == kind, c.valid, c.shared.is_(None), among(conn, c.value, sorted(values)))):
            out[(kind, value)] = contact_id
    return out


def _create(conn: Connection, settings: Settings, items: list[tuple[int, Incoming]],
            outcomes: list[Outcome]) -> dict[int, int]:
    """People the base does not hold (or holds ambiguously): resolved and created like any sync's records."""
    from hub import sync

    records = [ContactRecord(source=it.ref[0] if it.ref else SOURCE, external_id=it.ref[1] if it.ref else None,
                             phones=[it.phone] if it.phone else [], emails=[it.email] if it.email else [])
               for _, it in items]
    result = sync.write_contacts(conn, records, settings, sync.Counts())
    out: dict[int, int] = {}
    for (i, _), cid in zip(items, result.contact_ids, strict=True):
        if cid is None:
            outcomes[i].problems.append(_problem("contact_id", gettext(
                "this person's data was erased on request, or a plugin keeps them out of the base")))
        else:
            out[i] = cid
    return out


def _store(conn: Connection, rows: list[tuple[int, Incoming, int, dt.datetime | None]], outcomes: list[Outcome],
           *, source: str | None, now: dt.datetime) -> None:
    """Insert what is new; an id already kept (or twice in this batch) is a duplicate of the first."""
    if not rows:
        return
    uids = sorted({it.uid for _, it, _, _ in rows if it.uid is not None})
    known = _ids_of(conn, uids)
    first: dict[str, int] = {}  # uid -> index of its first item in this batch
    new: list[tuple[int, dict[str, Any]]] = []
    for i, it, contact_id, at in rows:
        if it.uid is not None and (it.uid in known or it.uid in first):
            continue
        if it.uid is not None:
            first[it.uid] = i
        new.append((i, {"id": 0, "uid": it.uid, "contact_id": contact_id, "name": it.name,
                        "properties": it.properties, "occurred_at": at, "received_at": now, "source": source}))
    for (_, row), eid in zip(new, reserve_ids(conn, events_t, len(new)), strict=True):
        row["id"] = eid
    inserted = _insert(conn, [row for _, row in new])
    stored = {row["id"] for _, row in new}
    if inserted != len(new):  # another request stored some of these ids meanwhile: theirs are the events
        raced = _ids_of(conn, [row["uid"] for _, row in new if row["uid"] is not None])
        stored = {row["id"] for _, row in new if row["uid"] is None or raced.get(row["uid"]) == row["id"]}
        known.update({uid: eid for uid, eid in raced.items() if eid not in stored})
    mine = {i: row["id"] for i, row in new}
    for i, it, _, _ in rows:
        o = outcomes[i]
        if i in mine and mine[i] in stored:
            o.status, o.event_id = "stored", mine[i]
        else:
            assert it.uid is not None
            o.status, o.event_id = "duplicate", known.get(it.uid) or mine.get(first[it.uid])


def _insert(conn: Connection, rows: list[dict[str, Any]]) -> int:
    """One INSERT of every row, skipping a uid already stored (ON CONFLICT (uid) DO NOTHING); rows written.

    On SQLite the statement is prepared once and run for every row by the
    driver (what a multi-row VALUES costs SQLite, without SQLAlchemy's
    compiling a statement per batch length); elsewhere the dialect's INSERT.
    """
    if not rows:
        return 0
    if conn.dialect.name != "sqlite":
        stmt = insert_for(conn, events_t).on_conflict_do_nothing(index_elements=["uid"]).returning(events_t.c.id)
        return len(conn.execute(stmt, rows).all())
    names = list(rows[0])
    sql = (f"INSERT INTO events ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "
           "ON CONFLICT (uid) DO NOTHING")
    columns = []
    for name in names:
        values = [row[name] for row in rows]
        processor = events_t.c[name].type._cached_bind_processor(conn.dialect)
        if processor is not None:
            bound: dict[int, Any] = {}  # each distinct object once (a batch shares its received_at)
            values = [None if v is None else bound[id(v)] if id(v) in bound else bound.setdefault(id(v), processor(v))
                      for v in values]
        columns.append(values)
    result = conn.exec_driver_sql(sql, list(zip(*columns, strict=True)))
    return int(result.rowcount)


def _ids_of(conn: Connection, uids: Sequence[str]) -> dict[str, int]:
    if not uids:
        return {}
    e = events_t.c
    return {uid: eid for uid, eid in conn.execute(select(e.uid, e.id).where(among(conn, e.uid, list(uids))))}


def incoming(raw: dict[str, Any]) -> Incoming:
    """An event body (one item of POST /api/v1/events) as an Incoming."""
    ref = raw.get("reference")
    contact_id = raw.get("contact_id")
    # JSON Schema calls 619402.0 an integer; the database must be handed 619402.
    return Incoming(name=raw["name"], contact_id=None if contact_id is None else int(contact_id),
                    phone=raw.get("phone"), email=raw.get("email"),
                    ref=(ref["source"], ref["external_id"]) if ref else None,
                    properties=dict(raw.get("properties") or {}), occurred_at=raw.get("occurred_at"), uid=raw.get("id"))


def names(conn: Connection) -> list[str]:
    """The event names stored so far (for hints and pickers)."""
    return list(conn.execute(select(events_t.c.name).distinct().order_by(events_t.c.name)).scalars())


def count(conn: Connection, contact_id: int | None = None) -> int:
    q = select(func.count()).select_from(events_t)
    if contact_id is not None:
        q = q.where(events_t.c.contact_id == contact_id)
    return int(conn.execute(q).scalar_one())


# --- events follow people ------------------------------------------------------------------

@hookimpl
def contact_merged(conn: Connection, survivor_id: int, merged_id: int) -> None:
    """The merged contact's events are the survivor's; each remembers whose it was first, for an unmerge."""
    e = events_t.c
    conn.execute(update(events_t).where(e.contact_id == merged_id)
                 .values(origin_contact_id=func.coalesce(e.origin_contact_id, e.contact_id), contact_id=survivor_id))


@hookimpl
def contact_unmerged(conn: Connection, survivor_id: int, restored_id: int) -> None:
    """Events first recorded on the restored contact, or on contacts still merged into it, go back to it.

    Events the survivor gained since the merge (recorded on the survivor) stay.
    """
    e = events_t.c
    owners = sorted(_merged_into(conn, restored_id))
    conn.execute(update(events_t).where(e.contact_id == survivor_id, among(conn, e.origin_contact_id, owners))
                 .values(contact_id=restored_id))
    conn.execute(update(events_t).where(e.contact_id == restored_id, e.origin_contact_id == restored_id)
                 .values(origin_contact_id=None))


def _merged_into(conn: Connection, contact_id: int) -> set[int]:
    """The contact and every contact merged into it (through chains of merges) and not given back."""
    m = merges_t.c
    out, todo = {contact_id}, [contact_id]
    while todo:
        found = set(conn.execute(select(m.merged_id).where(among(conn, m.survivor_id, todo),
                                                           m.undone_at.is_(None))).scalars()) - out
        out |= found
        todo = sorted(found)
    return out


@hookimpl
def contact_erased(conn: Connection, contact_id: int) -> None:
    """An erased person's events are deleted: what they did is personal data too."""
    e = events_t.c
    conn.execute(delete(events_t).where(e.contact_id == contact_id))
