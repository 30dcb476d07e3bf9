"""Calls, meetings, e-mails, tasks and notes managers log in a CRM: interactions on the contact.

They arrive with the sync like orders (upserted by (source, external id),
linked by the source's contact id as soon as the contact is known) and feed
segment fields and lead-score inputs: last call, calls in 30 days, missed
incoming calls.

Most calls and tasks are logged on a deal (lead), not on the person: such an
activity names its order (`order_external_id`) and reaches the contact that
order belongs to, whichever of activity, order and contact arrives first, and
follows the order when it changes hands (`follow_orders`). A deleted deal takes
what was logged on it alone with it (`drop_with_order`), as the CRMs do.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from sqlalchemy import ColumnElement, Connection, and_, bindparam, delete, or_, select, update

from hub import companies
from hub.config import Settings
from hub.db import among, bulk_insert, by_source_key, chunks, insert_for, utcnow
from hub.models import Activity, ExternalRef, Order
from hub.plugins import get_pm
from hub.records import ACTIVITY_KINDS, ActivityRecord

if TYPE_CHECKING:
    from hub.sync import Counts

activities_t = Activity.__table__
refs_t = ExternalRef.__table__
orders_t = Order.__table__
LOOKUP_CHUNK = 5000
DIRECTIONS = ("in", "out")
MAX_DURATION_S = 7 * 24 * 3600  # a call logged as lasting longer than a week is a typo, not a call
_CHANGING = ("contact_external_id", "contact_id", "company_external_id", "company_id", "order_external_id", "kind",
             "direction", "missed", "done", "at", "duration_s", "subject", "responsible_id", "call_id")


def _problem(r: ActivityRecord) -> str | None:
    if not isinstance(r.source, str) or not r.source.strip():
        return "the activity has no source"
    if not str(r.external_id or "").strip():
        return "the activity has no id"
    if r.kind not in ACTIVITY_KINDS:
        return f"kind {str(r.kind)[:40]!r} is not one of {', '.join(ACTIVITY_KINDS)}"
    if not isinstance(r.at, dt.datetime):
        return "the activity has no time"
    if r.at.tzinfo is None:
        return "at has no time zone"
    if r.direction is not None and r.direction not in DIRECTIONS:
        return f"direction {str(r.direction)[:40]!r} is not in or out"
    return None


def _duration(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    seconds = int(value)
    return seconds if 0 <= seconds <= MAX_DURATION_S else None


def write_activities(conn: Connection, records: Sequence[ActivityRecord], counts: Counts,
                     settings: Settings | None = None) -> None:
    """Upsert activities by (source, external id) and link each to its contact and company.

    Set-wise like orders: one lookup a chunk for contacts, one for companies,
    one for the orders of those logged on a deal with no known contact of their
    own, one for what Hub already holds; new activities (all of a first sync) take
    the bulk path. A record Hub cannot place in time or kind is an error entry.
    """
    refused: set[int] = set()
    if records:
        for answer in get_pm().hook.refuse_activities(conn=conn, settings=settings, activities=list(records)):
            refused.update(answer or ())
    if refused:
        counts.activities["refused"] += len(refused)
        records = [r for i, r in enumerate(records) if i not in refused]
    now = utcnow()
    # A first sync writes hundreds of thousands of rows; companies, subjects and managers repeat (companies.Cut).
    text, firm, subject, manager = companies.text, companies.Cut(200), companies.Cut(300), companies.Cut(64)
    moment = dt.datetime
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        source, external_id, at, direction, seconds = r.source, r.external_id, r.at, r.direction, r.duration_s
        if not (type(source) is str and type(external_id) is str and r.kind in ACTIVITY_KINDS  # a mapping's own
                and type(at) is moment and at.tzinfo is not None
                and (direction is None or direction in DIRECTIONS) and source.strip() and external_id.strip()):
            problem = _problem(r)
            if problem:
                counts.errors.append({"entity": "activity", "id": str(r.external_id or "")[:200] or None,
                                      "error": problem})
                continue
        key = (source[:100], str(external_id).strip()[:200])
        rows[key] = {"source": key[0], "external_id": key[1],
                     "contact_external_id": text(r.contact_external_id, 200),
                     "company_external_id": firm(r.company_external_id),
                     "order_external_id": text(r.order_external_id, 200),
                     "kind": r.kind, "direction": direction, "missed": bool(r.missed), "done": bool(r.done),
                     "at": at, "duration_s": seconds if type(seconds) is int and 0 <= seconds <= MAX_DURATION_S
                     else _duration(seconds),
                     "subject": subject(r.subject), "responsible_id": manager(r.responsible_id),
                     "call_id": text(r.call_id, 200), "created_at": now, "deleted_at": None}
    if not rows:
        return
    contact_of = _contacts(conn, {(row["source"], row["contact_external_id"]) for row in rows.values()
                                  if row["contact_external_id"]})
    company_of = companies.ids_of(conn, {(row["source"], row["company_external_id"]) for row in rows.values()
                                         if row["company_external_id"]})
    # An activity of a deal with no contact of its own (or one Hub does not know) goes to the deal's contact.
    order_contact = _order_contacts(conn, {(row["source"], row["order_external_id"]) for row in rows.values()
                                           if row["order_external_id"]
                                           and (row["source"], row["contact_external_id"]) not in contact_of})
    existing: set[tuple[str, str]] = set()
    by_source: dict[str, list[str]] = defaultdict(list)
    for source, external_id in rows:
        by_source[source].append(external_id)
    a = activities_t.c
    for source, wanted in by_source.items():
        for part in chunks(sorted(wanted), LOOKUP_CHUNK):
            existing.update((source, ext) for ext in conn.execute(
                select(a.external_id).where(a.source == source, among(conn, a.external_id, part))).scalars().all())
    fresh: list[dict[str, Any]] = []
    known: list[dict[str, Any]] = []
    for key in sorted(rows):  # key order, as every upsert writes: no deadlock
        row = rows[key]
        source = row["source"]
        company_ext = row["company_external_id"]  # kept: a company synced later links it (companies.link_waiting)
        row["contact_id"] = (contact_of.get((source, row["contact_external_id"]))
                             or order_contact.get((source, row["order_external_id"])))
        row["company_id"] = company_of.get((source, company_ext)) if company_ext else None
        (known if key in existing else fresh).append(row)
    counts.activities["created"] += len(fresh)
    bulk_insert(conn, activities_t, fresh, ignore_conflicts=True)
    if known:
        # Only what changed is written, and counted: a full sync reads every activity again.
        ins = insert_for(conn, activities_t)
        changed = conn.execute(ins.on_conflict_do_update(
            index_elements=["source", "external_id"], set_={c: ins.excluded[c] for c in _CHANGING},
            where=or_(*[activities_t.c[c].is_distinct_from(ins.excluded[c]) for c in _CHANGING]),
        ).returning(activities_t.c.id), known).all()  # (a many-row rowcount is -1 on psycopg)
        counts.activities["updated"] += len(changed)


def _contacts(conn: Connection, keys: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The contact each (source, contact external id) names through its live reference."""
    r = refs_t.c
    return by_source_key(conn, keys, r.source, r.external_id, r.contact_id, r.deleted_at.is_(None),
                         chunk=LOOKUP_CHUNK)


def _order_contacts(conn: Connection, keys: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The contact each (source, order external id) belongs to, for the orders Hub holds with one."""
    o = orders_t.c
    return by_source_key(conn, keys, o.source, o.external_id, o.contact_id, o.contact_id.is_not(None),
                         chunk=LOOKUP_CHUNK)


def _relink(conn: Connection, pairs: Sequence[Any]) -> int:
    """Set each activity's contact ((activity id, contact id) pairs) in one statement; how many."""
    if pairs:
        a = activities_t.c
        conn.execute(update(activities_t).where(a.id == bindparam("_aid")).values(contact_id=bindparam("_cid")),
                     [{"_aid": aid, "_cid": cid} for aid, cid in pairs])
    return len(pairs)


def link_orphans(conn: Connection, refs: dict[str, set[str]]) -> int:
    """Attach activities that arrived before their contact (as hub.identity does for orders); how many.

    `refs` maps a source to the contact external ids just written. Activities of a deal
    without a contact of their own wait for the deal's contact the same way (hub.identity
    has just linked the deal to it).
    """
    linked = 0
    a, r, o = activities_t.c, refs_t.c, orders_t.c
    for source, external_ids in refs.items():
        for part in chunks(sorted(external_ids), LOOKUP_CHUNK):
            linked += _relink(conn, conn.execute(
                select(a.id, r.contact_id)
                .join(refs_t, and_(r.source == a.source, r.external_id == a.contact_external_id))
                .where(a.source == source, among(conn, a.contact_external_id, part), a.contact_id.is_(None),
                       r.deleted_at.is_(None))).all())
            linked += _follow(conn, source, among(conn, o.contact_external_id, part), a.contact_id.is_(None))
    return linked


def follow_orders(conn: Connection, keys: Iterable[tuple[str, str]]) -> int:
    """After orders were written: their activities go to the order's contact; how many moved.

    `keys` are the (source, order external id) just written. An activity that came
    before its deal is linked now; one that reaches its contact only through the deal
    (no contact of its own) follows the deal to another contact. One query per chunk
    of orders, through the (source, order_external_id) index; a first full sync, which
    reads orders before activities, finds nothing to do.
    """
    by_source: dict[str, set[str]] = defaultdict(set)
    for source, external_id in keys:
        by_source[source].add(external_id)
    moved = 0
    a, o = activities_t.c, orders_t.c
    for source, wanted in by_source.items():
        for part in chunks(sorted(wanted), LOOKUP_CHUNK):
            moved += _follow(conn, source, among(conn, a.order_external_id, part),
                             or_(a.contact_id.is_(None), a.contact_external_id.is_(None)),
                             a.contact_id.is_distinct_from(o.contact_id))
    return moved


def _follow(conn: Connection, source: str, *where: ColumnElement[bool]) -> int:
    """Give the activities of `source` logged on a deal, and matching `where`, the deal's contact; how many."""
    a, o = activities_t.c, orders_t.c
    return _relink(conn, conn.execute(
        select(a.id, o.contact_id)
        .join(orders_t, and_(o.source == a.source, o.external_id == a.order_external_id))
        .where(a.source == source, o.source == source, o.contact_id.is_not(None), *where)).all())


def delete_activity(conn: Connection, source: str, external_id: str) -> bool:
    """The source deleted the activity: the row goes (it is the CRM's log, not Hub's history)."""
    a = activities_t.c
    return bool(conn.execute(delete(activities_t).where(a.source == source, a.external_id == external_id)).rowcount)


def drop_with_order(conn: Connection, source: str, order_external_id: str) -> int:
    """The source deleted a deal (lead): what was logged on it alone goes with it; how many went.

    The CRMs delete an object's activities with it unless something else holds them:
    Bitrix24 deletes a deal's activities bound to nothing else and only unbinds those
    also bound to a contact or company (crm.deal.delete); an amoCRM note or task
    belongs to one lead and goes with it. Hub can tell the two apart only by what it
    read: an activity with a contact or company of its own (from its owner or its
    BINDINGS) stays with them, its deal link cleared and its contact its own one's
    (none while Hub does not know that contact, or for one held by a company alone:
    link_orphans attaches it later). One that reached its contact only through the
    deal goes. The segment fields and lead-score inputs count the rows left, so the
    contact's figures are right as soon as this commits.
    """
    a, r = activities_t.c, refs_t.c
    on_deal = and_(a.source == source, a.order_external_id == order_external_id)
    gone = conn.execute(delete(activities_t).where(
        on_deal, a.contact_external_id.is_(None), a.company_external_id.is_(None))).rowcount
    own = (select(r.contact_id).where(r.source == a.source, r.external_id == a.contact_external_id,
                                      r.deleted_at.is_(None)).limit(1).scalar_subquery())
    conn.execute(update(activities_t).where(on_deal).values(order_external_id=None, contact_id=own))
    return int(gone or 0)


def held_ids(conn: Connection, source: str) -> set[str]:
    """The ids of the activities Hub holds from a source (reconcile compares them with the source's)."""
    a = activities_t.c
    return set(conn.execute(select(a.external_id).where(a.source == source)).scalars())


def move_on_merge(conn: Connection, survivor: int, merged: int) -> list[int]:
    """The merged contact's activities go to the survivor; their ids, for the merge's snapshot."""
    a = activities_t.c
    ids = list(conn.execute(select(a.id).where(a.contact_id == merged).order_by(a.id)).scalars())
    conn.execute(update(activities_t).where(a.contact_id == merged).values(contact_id=survivor))
    return ids


def give_back(conn: Connection, survivor: int, restored: int, ids: Sequence[int],
              refs: Sequence[tuple[str, str]]) -> int:
    """After an unmerge: the activities that moved with the merge and those the restored references brought."""
    a = activities_t.c
    mine: list[ColumnElement[bool]] = [a.id.in_([int(i) for i in ids])] if ids else []
    mine += [and_(a.source == source, a.contact_external_id == external_id) for source, external_id in refs]
    if not mine:
        return 0
    return conn.execute(update(activities_t).where(a.contact_id == survivor, or_(*mine))
                        .values(contact_id=restored)).rowcount
