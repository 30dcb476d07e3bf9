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

from sqlalchemy import Connection, Engine, delete, func, select, update

from hub import identity, normalize
from hub.config import Settings
from hub.db import among, insert_for, reserve_ids, utcnow
from hub.hookspecs import hookimpl
from hub.i18n import gettext
from hub.models import ContactMerge, Event
from hub.records import ContactRecord

events_t = Event.__table__
merges_t = ContactMerge.__table__

# An event name: lowercase letters, digits, _ and -, starting with a letter; the same shape a
# segment field's part and a workflow trigger take, so every stored name can be used in both.
NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
NAME = re.compile(NAME_PATTERN)
# A property's name: what a segment rule can write as a field part (events.<name>.max.<property>.<window>).
PROPERTY_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MAX_PROPERTIES = 50
MAX_TEXT = 1000  # characters of a text property
MAX_LIST = 20  # items of a list property
MAX_ITEM_KEYS = 10  # values of a record in a list (a cart's item: name, qty, price, …)
MAX_NUMBER = 1e15  # a number property's magnitude (money in kopecks fits many times over)
FUTURE_SLACK = dt.timedelta(hours=1)  # a sender's clock may run this much ahead
SOURCE = "api"  # the source of contacts an event creates (without a reference of the sender's)
WRITING_LOCK = 0x48554232_00000001  # the advisory lock event writers share until they commit (settled_event_id)


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
    contact_id: int | None = None  # whose event it is (a duplicate: the contact the kept event is on now)
    problems: list[dict[str, str]] = field(default_factory=list)  # {"field": the item's key, "detail": why}

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "event_id": self.event_id, "contact_id": self.contact_id,
                "status": self.status, "problems": self.problems}


def _problem(where: str, detail: str) -> dict[str, str]:
    return {"field": where, "detail": detail}


def record(conn: Connection, settings: Settings, items: Sequence[Incoming], *, api_key: str | None,
           now: dt.datetime | None = None) -> list[Outcome]:
    """Store a batch of events in the caller's transaction; one outcome per item, in order.

    Set-wise on purpose: hub.identity.find_contacts names the contacts of
    the whole batch in a few queries, one query finds ids already stored,
    one multi-row insert writes the rest in uid order (ON CONFLICT (uid) DO
    NOTHING, so two senders racing with the same id store it once, and two
    overlapping batches never wait on each other in a circle).
    """
    now = now or utcnow()
    outcomes = [Outcome(i) for i in range(len(items))]
    when: list[dt.datetime | None] = [None] * len(items)
    for i, item in enumerate(items):
        when[i] = _check(item, outcomes[i], now)
    live = [i for i, o in enumerate(outcomes) if not o.problems]
    contact_of = _contacts(conn, settings, [(i, items[i]) for i in live], outcomes)
    live = [i for i in live if i in contact_of]
    _store(conn, [(i, items[i], contact_of[i], when[i]) for i in live], outcomes, api_key=api_key, now=now)
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
        values = [v for item in values for v in (item.values() if isinstance(item, dict) else [item])]
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
    """Each item's live contact: by id, else by reference, email or phone, else a new contact.

    Which live contact a key names is hub.identity.find_contacts, as for
    every other part of the API. Only a phone or email nobody holds at all
    makes a new contact: a reference names a record in the sender's system,
    which tells Hub nothing of who the person is, and a phone or email
    several people share (an office switchboard) names nobody, so an event
    named only by those is refused rather than given a new, empty contact
    each time. A key that finds somebody not to act on (deleted in every
    source, erased, a signup placeholder) refuses the event, as orders do.
    """
    found: dict[int, int] = {}
    fields: dict[int, list[tuple[str, identity.ContactKey]]] = {}
    for i, it in items:
        if it.contact_id is not None:
            fields[i] = [("contact_id", it.contact_id)]
            continue
        fields[i] = _keys(it, settings.default_region)
        if not fields[i]:  # only an invalid phone or email: nobody to record it for (and no junk contact)
            outcomes[i].problems.append(_problem("email" if it.email else "phone", gettext(
                "not a valid phone number or email address, and no contact_id or reference")))
    keys = {i: [k for _, k in named_keys] for i, named_keys in fields.items()}
    flat = sorted({k for ks in keys.values() for k in ks}, key=repr)
    named = dict(zip(flat, identity.find_contacts(conn, flat), strict=True))
    unknown: list[tuple[int, Incoming]] = []
    for i, it in items:
        hit = next((named[k] for k in keys[i] if named[k] is not None), None)
        if hit is not None:
            found[i] = hit
        elif it.contact_id is not None:
            outcomes[i].problems.append(_problem("contact_id", gettext("there is no contact %(id)s",
                                                                       id=it.contact_id)))
        elif keys[i]:
            unknown.append((i, it))
    if unknown:
        asked = sorted({k for i, _ in unknown for k in keys[i]}, key=repr)
        taken = {k for k, is_held in zip(asked, identity.held(conn, asked), strict=True) if is_held}
        shared = {k for k, is_shared in zip(asked, identity.shared_keys(conn, asked), strict=True) if is_shared}
        # Held now but not found a moment ago: a concurrent request made that contact and committed in
        # between (each statement sees what was committed before it). Look once more before calling it gone.
        late = sorted(taken, key=repr)
        named.update((k, c) for k, c in zip(late, identity.find_contacts(conn, late), strict=True) if c is not None)
        fresh = []
        for i, it in unknown:
            hit = next((named[k] for k in keys[i] if named.get(k) is not None), None)
            if hit is not None:
                found[i] = hit
                continue
            field_ = next((f for f, k in fields[i] if k in taken), None)
            if field_ is not None:
                outcomes[i].problems.append(_problem(field_, gettext(
                    "this contact is deleted in every source (or erased); events are not kept for them")))
            elif any(isinstance(k, str) and k not in shared for _, k in fields[i]):
                fresh.append((i, it))  # a phone or email nobody has: a new person
            elif any(k in shared for _, k in fields[i]):
                field_ = next(f for f, k in fields[i] if k in shared)
                outcomes[i].problems.append(_problem(field_, shared_detail(field_)))
            else:
                outcomes[i].problems.append(_problem("reference", gettext(
                    "no contact has this reference, and a reference alone does not tell who the person is: send "
                    "the contact first (POST /api/v1/contacts), or name them by contact_id, phone or email")))
        if fresh:
            found.update(_create(conn, settings, fresh, outcomes))
    return found


def shared_detail(field_: str) -> str:
    """Why a phone or email several people use (an office switchboard, a family's email) names nobody."""
    if field_ == "phone":
        return gettext("several people share this phone, so it names nobody; name the contact by contact_id or "
                       "reference")
    return gettext("several people share this email, so it names nobody; name the contact by contact_id or "
                   "reference")


def _keys(item: Incoming, region: str) -> list[tuple[str, identity.ContactKey]]:
    """The item's identifiers in lookup order (reference, email, phone), normalized, with their fields."""
    out: list[tuple[str, identity.ContactKey]] = []
    if item.ref is not None:
        out.append(("reference", (item.ref[0], item.ref[1])))
    if item.email:
        found = normalize.email(item.email)
        if found is not None and found.valid:
            out.append(("email", found.value))
    if item.phone:
        out.extend(("phone", p.value) for p in normalize.phones(item.phone, region) if p.valid)
    return out


def _create(conn: Connection, settings: Settings, items: list[tuple[int, Incoming]],
            outcomes: list[Outcome]) -> dict[int, int]:
    """People the base does not hold (or holds ambiguously): resolved and created like any sync's records."""
    from hub import sync

    # Without the sender's reference: it named nobody, and is not known to be this person's.
    records = [ContactRecord(source=SOURCE, phones=[it.phone] if it.phone else [],
                             emails=[it.email] if it.email else []) for _, it in items]
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
           *, api_key: str | None, now: dt.datetime) -> None:
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
                        "properties": it.properties, "occurred_at": at, "received_at": now, "api_key": api_key}))
    if new and conn.dialect.name == "postgresql":  # held to commit: settled_event_id waits for these ids
        conn.execute(select(func.pg_advisory_xact_lock_shared(WRITING_LOCK)))
    for (_, row), eid in zip(new, reserve_ids(conn, events_t, len(new)), strict=True):
        row["id"] = eid
    # In uid order: two batches sharing ids then wait on each other's rows in one order, never in a circle.
    inserted = _insert(conn, sorted((row for _, row in new), key=lambda row: (row["uid"] is None, row["uid"] or "")))
    stored = {row["id"] for _, row in new}
    if inserted != len(new):  # another request stored some of these ids meanwhile: theirs are the events
        raced = _ids_of(conn, [row["uid"] for _, row in new if row["uid"] is not None])
        stored = {row["id"] for _, row in new if row["uid"] is None or raced.get(row["uid"]) == row["id"]}
        known.update({uid: eid for uid, eid in raced.items() if eid not in stored})
    mine = {i: row["id"] for i, row in new}
    for i, it, contact_id, _ in rows:
        o = outcomes[i]
        if i in mine and mine[i] in stored:
            o.status, o.event_id, o.contact_id = "stored", mine[i], contact_id
        else:
            assert it.uid is not None
            o.status, o.event_id = "duplicate", known.get(it.uid) or mine.get(first[it.uid])
    duplicates = [outcomes[i] for i, _, _, _ in rows if outcomes[i].status == "duplicate"]
    kept = sorted({o.event_id for o in duplicates if o.event_id is not None})
    owner: dict[int, int] = {}
    if kept:
        for eid, cid in conn.execute(select(events_t.c.id, events_t.c.contact_id)
                                     .where(among(conn, events_t.c.id, kept))):
            owner[eid] = cid
    for o in duplicates:
        o.contact_id = owner.get(o.event_id) if o.event_id is not None else None


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


def settled_event_id(engine: Engine) -> int:
    """The highest event id below which every event is committed (or never will be): a safe reading horizon.

    Event ids come from a sequence, so on PostgreSQL a request may commit
    event 10 after another committed event 11; a reader paging by id that
    went past 11 would never see 10. Writers hold a shared advisory lock
    from taking their ids to their commit; taking it exclusively (a moment:
    it waits for the writers under way, and new ones wait for it) and
    reading the highest id then gives an id that no later commit goes
    below. SQLite has one writer at a time: what is committed is all there is.
    """
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(WRITING_LOCK)))
        return int(conn.execute(select(func.coalesce(func.max(events_t.c.id), 0))).scalar_one())


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
