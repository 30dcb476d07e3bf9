"""Undoing a merge: the merged-away contact comes back as it was, and the pair is kept apart.

Every merge keeps a snapshot of what the merged contact held (hub.identity
_snapshot): its fields, identities, references, and (in snapshots of newer
versions) the survivor's own values, the orders, the consent events and the
card's notes that moved. That is what an unmerge gives back, under the contact's old id, so
links, survey answers and log entries that kept the id act on that person again
(identity.current_contact_id answers for a contact that exists before any
merge is looked at).

A value both contacts held (usually the one that joined them) stays on both,
marked shared ("unmerged"): a valid value two contacts hold cannot be one
person's, and the unique index allows it only as shared. The pair goes to
contacts_apart with the values that joined them, so later syncs and imports
do not join the two again through a shared value or those values; a new
personal phone or email both of them turn out to hold still does (that is
new evidence, not the old one read again).

Consent stays append-only: events the merge moved go back, and where the
merge had written the stricter answer onto the survivor (and it is still the
survivor's current one), a new event gives the survivor back its own answer
from before the merge.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, and_, or_, select, update

from hub import activities, companies, consent, contact_notes, identity
from hub.config import Settings
from hub.db import among, utcnow
from hub.i18n import gettext as _
from hub.models import ContactsApart
from hub.segments import membership

contacts_t = identity.contacts_t
identities_t = identity.identities_t
refs_t = identity.refs_t
orders_t = identity.orders_t
merges_t = identity.merges_t
apart_t = ContactsApart.__table__
events_t = consent.events_t
notes_t = contact_notes.notes_t

SHARED = "unmerged"  # the reason a value both contacts held is shared after the unmerge
SOURCE = "unmerge"  # the source of consent events an unmerge appends
AUDIT_ACTION = "contact_unmerged"


class UnmergeRefused(ValueError):
    """A merge that cannot be undone; the message names the merge and why, in the reader's language."""


def unmerge(engine: Engine, settings: Settings, merge_id: int, *, actor: str) -> dict[str, Any]:
    """Undo merge `merge_id` in one transaction; returns what came back.

    -> {"merge_id", "survivor" (the contact the values were taken from now),
    "restored" (the merged id, alive again), "shared": [["phone", "+7…"], …]
    values now on both, "orders": n, "identities": n, "refs": n}

    The survivor is whoever holds the merged values today: the merge's
    survivor, or the contact it was merged into later. Refused
    (UnmergeRefused) for an unknown or already undone merge, for an erased
    person on either side, and for a confirmed signup (its placeholder held
    nothing of its own to give back).

    Merges recorded before their snapshot kept the survivor's own values,
    the orders and the consent events are undone as well as the log allows:
    the values that joined the two (from the merge reason) stay on both; the
    orders of the restored references go back; consent stays with the
    survivor, so the restored contact has no answer at all, which lets
    nothing be sent to it until it gives one.

    Order stats are recomputed for both at once, and the segments are
    refreshed after the transaction (both contacts are marked changed, so an
    incremental refresh looks at them): lists, counts and workflows see the
    two people at once.
    """
    from hub.admin import audit
    from hub.plugins import get_pm

    now = utcnow()
    with engine.begin() as conn:
        # The write comes first: a second unmerge of the same merge, running at once, waits here and is
        # refused; and on SQLite a transaction that reads before it writes may find it cannot write.
        claimed = conn.execute(update(merges_t).where(merges_t.c.id == merge_id, merges_t.c.undone_at.is_(None))
                               .values(undone_at=now, undone_by=actor))
        merge = conn.execute(select(merges_t).where(merges_t.c.id == merge_id)).first()
        if merge is None:
            raise UnmergeRefused(_("There is no merge №%(id)s.", id=merge_id))
        if claimed.rowcount != 1:
            raise UnmergeRefused(_("Merge №%(id)s was already undone.", id=merge_id))
        survivor = _check(conn, merge_id, merge)  # a refusal rolls the claim back
        restored = int(merge.merged_id)
        snapshot: dict[str, Any] = dict(merge.snapshot or {})

        _recreate(conn, restored, snapshot, now)
        shared, n_identities = _give_back_identities(conn, survivor, restored, snapshot, merge.reason)
        n_identities += _give_back_brought(conn, survivor, restored, merge, snapshot)
        n_refs = _give_back_refs(conn, survivor, restored, snapshot)
        n_orders = _give_back_orders(conn, survivor, restored, snapshot)
        activities.give_back(conn, survivor, restored, snapshot.get("activity_ids") or [], _restored_refs(snapshot))
        companies.give_back(conn, survivor, restored)
        _give_back_consent(conn, survivor, restored, merge_id, merge, snapshot, now)
        _give_back_notes(conn, survivor, restored, snapshot)
        _clear_fields_taken(conn, survivor, restored, snapshot, now)

        low, high = sorted((survivor, restored))
        # What joined them, read again later, is old evidence: it joins nothing (identity._kept_apart).
        # So are the values the joining rows brought with them (written in the merge's own moment).
        brought = conn.execute(select(identities_t.c.kind, identities_t.c.value)
                               .where(identities_t.c.contact_id == survivor, identities_t.c.valid,
                                      identities_t.c.created_at == merge.at)).all()
        joined_by = sorted({str(k) for k in (merge.reason or {}).get("keys") or [] if not str(k).startswith("ref:")}
                           | {f"{kind}:{value}" for kind, value in shared}
                           | {f"{kind}:{value}" for kind, value in brought})
        taken = conn.execute(select(apart_t.c.id).where(apart_t.c.low_id == low, apart_t.c.high_id == high)).first()
        if taken is None:
            conn.execute(apart_t.insert().values(low_id=low, high_id=high, merge_id=merge_id, keys=joined_by,
                                                 actor=actor, at=now))
        else:
            conn.execute(update(apart_t).where(apart_t.c.id == taken.id)
                         .values(merge_id=merge_id, keys=joined_by, actor=actor, at=now))
        identity.refresh_stats(conn, [survivor, restored])
        conn.execute(update(contacts_t).where(contacts_t.c.id.in_([survivor, restored])).values(updated_at=now))
        get_pm().hook.contact_unmerged(conn=conn, settings=settings, survivor_id=survivor, restored_id=restored,
                                       merge_id=merge_id, snapshot=snapshot)
        result = {"merge_id": merge_id, "survivor": survivor, "restored": restored,
                  "shared": [[kind, value] for kind, value in shared], "orders": n_orders,
                  "identities": n_identities, "refs": n_refs}
        audit.record(conn, actor, AUDIT_ACTION, contact_id=restored, merge=merge_id, survivor=survivor,
                     shared=result["shared"], orders=n_orders, identities=n_identities, refs=n_refs)
    # Segments right at once, as if the merge had never happened: an incremental refresh looks at the
    # two contacts just marked changed (and at whatever else changed since the last refresh).
    membership.refresh(engine, settings)
    return result


def _check(conn: Connection, merge_id: int, merge: Any) -> int:
    """The survivor today, or UnmergeRefused saying why this merge cannot be undone."""
    reason = merge.reason if isinstance(merge.reason, dict) else {}
    if reason.get("rule") == "signup confirmed":
        raise UnmergeRefused(_("Merge №%(id)s joined a confirmed signup to the person; such merges cannot be "
                               "undone.", id=merge_id))
    if identity.is_erased(conn, merge.merged_id):
        raise UnmergeRefused(_("Merge №%(id)s cannot be undone: contact #%(contact)s was erased.", id=merge_id,
                               contact=merge.merged_id))
    if conn.execute(select(contacts_t.c.id).where(contacts_t.c.id == merge.merged_id)).first() is not None:
        raise UnmergeRefused(_("Merge №%(id)s cannot be undone: contact #%(contact)s exists already.", id=merge_id,
                               contact=merge.merged_id))
    survivor = identity.current_contact_id(conn, merge.survivor_id)
    if survivor is None:
        raise UnmergeRefused(_("Merge №%(id)s cannot be undone: the contact it was merged into (#%(contact)s) "
                               "was erased.", id=merge_id, contact=merge.survivor_id))
    return survivor


def _recreate(conn: Connection, restored: int, snapshot: dict[str, Any], now: dt.datetime) -> None:
    """The merged contact again, under its old id (ids are never reused, so the id is free)."""
    fields = dict(snapshot.get("fields") or {})
    row: dict[str, Any] = {name: fields.get(name) for name in identity.FIELDS}
    if isinstance(row["birthday"], str):
        row["birthday"] = dt.date.fromisoformat(row["birthday"][:10])
    # Known since when it was first known, not since the undo: "new contacts" segments must not take it in.
    since = dt.datetime.fromisoformat(snapshot["created_at"]) if snapshot.get("created_at") else now
    row.update(id=restored, name_key=identity.name_key(row["last_name"], row["first_name"]),
               tags=list(snapshot.get("tags") or []), attributes=dict(snapshot.get("attributes") or {}),
               provenance=dict(snapshot.get("provenance") or {}), orders_count=0, revenue=0,
               first_order_at=None, last_order_at=None, created_at=since, updated_at=now, deleted_at=None,
               timezone=snapshot.get("timezone"))
    conn.execute(contacts_t.insert().values(**row))


def _on_both(snapshot: dict[str, Any], reason: Any) -> set[tuple[str, str]]:
    """The values that stay on both contacts: those both held, and those that joined them.

    A value the survivor held too when the merge happened is on both. So is
    the value that joined them when one of the two says it holds it: the
    merge reason lists the values of the incoming records that either
    contact held; when the record's reference names one of the two, the
    values it brought that the other held are on both (a son's record
    bringing his father's phone: by the son's own record, he uses it too).
    A record with no reference, or with both, is nobody's own word: its
    values stay with whoever held them.
    """
    both = {(str(k), str(v)) for k, v in snapshot.get("survivor_identities") or []}
    merged_values = {(str(i["kind"]), str(i["value"])) for i in snapshot.get("identities") or []}
    both &= merged_values
    keys = [str(k) for k in (reason.get("keys") or [] if isinstance(reason, dict) else [])]
    if not keys:
        return both
    restored_refs = {f"ref:{source}/{external_id}" for source, external_id in _restored_refs(snapshot)}
    values: set[tuple[str, str]] = set()
    for key in keys:
        kind, _sep, value = key.partition(":")
        if kind != "ref" and value:
            values.add((kind, value))
    refs = {k for k in keys if k.startswith("ref:")}
    if refs and refs <= restored_refs:  # the restored contact's record brought the survivor's values
        return both | (values - merged_values)
    if refs and not refs & restored_refs:  # the survivor's record brought the restored contact's values
        return both | (values & merged_values)
    # A row of nobody's own (no reference, or both) listed one's values beside the other's: each value
    # stays with whoever held it, and the pair's record in contacts_apart keeps that row from joining
    # them again.
    return both


def _give_back_identities(conn: Connection, survivor: int, restored: int, snapshot: dict[str, Any],
                          reason: Any) -> tuple[list[tuple[str, str]], int]:
    """Move the restored contact's own values back; values on both stay on both, shared."""
    both = _on_both(snapshot, reason)
    c = identities_t.c
    shared: list[tuple[str, str]] = []
    count = 0
    theirs = {(str(i["kind"]), str(i["value"])): i for i in snapshot.get("identities") or []}
    for kind, value in sorted(both):
        kept = conn.execute(select(c.raw, c.valid, c.source, c.label, c.shared).where(
            c.contact_id == survivor, c.kind == kind, c.value == value)).first()
        ident = theirs.get((kind, value))
        if kept is None and ident is None:
            continue  # a value the survivor no longer holds, and never the restored contact's
        source_row: dict[str, Any] = dict(ident) if ident is not None else dict(kept._mapping)  # type: ignore[union-attr]
        valid = bool(source_row.get("valid"))
        why = None
        if valid:
            held = conn.execute(select(c.shared).where(c.kind == kind, c.value == value, c.valid,
                                                       c.shared.is_not(None)).limit(1)).scalar()
            # A value shared for what it is (an 8-800 line, info@) keeps its stronger reason.
            why = source_row.get("shared") or held or SHARED
            conn.execute(update(identities_t).where(c.kind == kind, c.value == value, c.valid,
                                                    c.shared.is_(None), c.contact_id == survivor)
                         .values(shared=SHARED))
            shared.append((kind, value))
        conn.execute(identities_t.insert().values(
            contact_id=restored, kind=kind, value=value, raw=source_row.get("raw") or value, valid=valid,
            source=source_row.get("source") or SOURCE, label=source_row.get("label"), shared=why))
        count += 1
    for (kind, value), ident in theirs.items():
        if (kind, value) in both:
            continue
        moved = conn.execute(update(identities_t).where(c.contact_id == survivor, c.kind == kind, c.value == value)
                             .values(contact_id=restored)).rowcount
        if moved:
            count += 1
            continue
        # The survivor no longer holds it (a value removed since): it comes back from the snapshot,
        # unless another contact holds it as their own now.
        valid = bool(ident.get("valid"))
        taken = valid and ident.get("shared") is None and identity.find_contact(conn, kind, value) is not None
        if not taken:
            conn.execute(identities_t.insert().values(
                contact_id=restored, kind=kind, value=value, raw=ident.get("raw") or value, valid=valid,
                source=ident.get("source") or SOURCE, label=ident.get("label"), shared=ident.get("shared")))
            count += 1
    return sorted(set(shared)), count


def _give_back_brought(conn: Connection, survivor: int, restored: int, merge: Any, snapshot: dict[str, Any]) -> int:
    """Values the restored contact's own record brought in the moment of the merge go back to it.

    When the record that joined the two was the restored contact's (its
    reference is among the restored ones), what that record listed beside the
    joining value (a son's new mobile) is his, not the survivor's. Values
    written then are told by their time: the merge's own moment.
    """
    reason = merge.reason if isinstance(merge.reason, dict) else {}
    refs = {str(k) for k in reason.get("keys") or [] if str(k).startswith("ref:")}
    restored_refs = {f"ref:{source}/{external_id}" for source, external_id in _restored_refs(snapshot)}
    if not refs or not refs <= restored_refs:
        return 0
    survivor_own = {(str(k), str(v)) for k, v in snapshot.get("survivor_identities") or []}
    c = identities_t.c
    rows = conn.execute(select(c.id, c.kind, c.value).where(c.contact_id == survivor, c.shared.is_(None),
                                                            c.created_at == merge.at)).all()
    ids = [row.id for row in rows if (row.kind, row.value) not in survivor_own]
    if ids:
        conn.execute(update(identities_t).where(c.id.in_(ids)).values(contact_id=restored))
    return len(ids)


def _restored_refs(snapshot: dict[str, Any]) -> list[tuple[str, str]]:
    return [(str(r["source"]), str(r["external_id"])) for r in snapshot.get("external_refs") or []]


def _give_back_refs(conn: Connection, survivor: int, restored: int, snapshot: dict[str, Any]) -> int:
    n = 0
    for source, external_id in _restored_refs(snapshot):
        n += conn.execute(update(refs_t).where(refs_t.c.contact_id == survivor, refs_t.c.source == source,
                                               refs_t.c.external_id == external_id)
                          .values(contact_id=restored)).rowcount
    return n


def _give_back_orders(conn: Connection, survivor: int, restored: int, snapshot: dict[str, Any]) -> int:
    """The orders that moved with the merge, and those the restored references brought since."""
    o = orders_t.c
    mine: list[ColumnElement[bool]] = [o.id.in_([int(i) for i in snapshot["order_ids"]])] if snapshot.get(
        "order_ids") else []
    mine += [and_(o.source == source, o.contact_external_id == external_id)
             for source, external_id in _restored_refs(snapshot)]
    if not mine:
        return 0
    return conn.execute(update(orders_t).where(o.contact_id == survivor, or_(*mine))
                        .values(contact_id=restored)).rowcount


def _give_back_consent(conn: Connection, survivor: int, restored: int, merge_id: int, merge: Any,
                       snapshot: dict[str, Any], now: dt.datetime) -> None:
    """The restored contact's own events go back; the survivor gets its own answers back where the merge changed them.

    The merge wrote "the stricter answer" onto the survivor (consent.record_merge_outcome)
    with source "merge", the merged contact in its evidence and the merge's own time.
    """
    ids = [int(i) for i in snapshot.get("consent_event_ids") or []]
    if ids:
        conn.execute(update(events_t).where(events_t.c.contact_id == survivor, among(conn, events_t.c.id, ids))
                     .values(contact_id=restored))
        consent.restate(conn, [survivor, restored])
    e = events_t.c
    rows = conn.execute(select(e.id, e.channel, e.purpose, e.status, e.source, e.evidence, e.at)
                        .where(e.contact_id == survivor).order_by(e.at, e.id)).all()

    def by_this_merge(row: Any) -> bool:
        evidence = row.evidence if isinstance(row.evidence, dict) else {}
        if row.source != "merge" or evidence.get("merged_contact") != merge.merged_id:
            return False
        return evidence["merge_id"] == merge_id if "merge_id" in evidence else row.at == merge.at

    latest: dict[tuple[str, str], Any] = {}
    own: dict[tuple[str, str], Any] = {}
    for row in rows:  # oldest first: the last one seen per topic is the current answer
        key = (row.channel, row.purpose)
        latest[key] = row
        if not by_this_merge(row):
            own[key] = row
    for key, row in sorted(latest.items()):
        before = own.get(key)
        if by_this_merge(row) and before is not None and before.status != row.status:
            consent.record(conn, survivor, key[0], key[1], before.status, source=SOURCE,
                           evidence={"merge_id": merge_id, "restored_contact": restored,
                                     "rule": "the survivor's own answer before the merge"}, at=now)
    # A "no" the joined contact gave after the merge may have been either person's: the restored one
    # keeps it too, so an undo never brings back a yes that somebody took away.
    restored_now = consent.current(conn, restored)
    for key, row in sorted(latest.items()):
        if (row.at > merge.at and not by_this_merge(row) and row.status != "granted"
                and restored_now.get(key) == "granted"):
            consent.record(conn, restored, key[0], key[1], row.status, source=SOURCE,
                           evidence={"merge_id": merge_id, "answered_after_merge": row.id,
                                     "rule": "an answer given after the merge, when the two were one contact"},
                           at=now)


def _give_back_notes(conn: Connection, survivor: int, restored: int, snapshot: dict[str, Any]) -> None:
    """Notes written on the restored contact's card before the merge go back to it.

    Notes written on the joined card after the merge were about the two as one
    person: they stay with the survivor (nobody can tell whose they were).
    """
    ids = [int(i) for i in snapshot.get("note_ids") or []]
    if ids:
        conn.execute(update(notes_t).where(notes_t.c.contact_id == survivor, among(conn, notes_t.c.id, ids))
                     .values(contact_id=restored))


def _clear_fields_taken(conn: Connection, survivor: int, restored: int, snapshot: dict[str, Any],
                        now: dt.datetime) -> None:
    """Empty the survivor's fields the merge filled from the restored contact.

    A merge fills the survivor's empty fields from the merged contact and
    keeps where each value came from. A field that still holds the restored
    contact's value and that the merge filled (the snapshot lists those), or
    that came from a source the survivor has no value or reference of its own
    from, was the restored contact's: it goes (the survivor's next sync fills
    it again from its own record if it has one).
    """
    row = conn.execute(select(contacts_t).where(contacts_t.c.id == survivor)).first()
    if row is None:
        return
    fields = dict(snapshot.get("fields") or {})
    filled = set(snapshot.get("filled") or ())
    provenance = dict(row.provenance or {})
    own_sources = set(conn.execute(select(identities_t.c.source).where(identities_t.c.contact_id == survivor))
                      .scalars())
    own_sources.update(conn.execute(select(refs_t.c.source).where(refs_t.c.contact_id == survivor)).scalars())
    if provenance.get("created_from"):
        own_sources.add(provenance["created_from"])
    changes: dict[str, Any] = {}
    for name in identity.FIELDS:
        value, theirs = getattr(row, name), fields.get(name)
        if value in (None, "") or theirs in (None, ""):
            continue
        shown = value.isoformat() if isinstance(value, dt.date) else value
        came_from = provenance.get(name)
        if shown == theirs and (name in filled or came_from == f"merge:{restored}" or came_from not in own_sources):
            changes[name] = None
            provenance.pop(name, None)
    if changes:
        first = None if "first_name" in changes else row.first_name
        last = None if "last_name" in changes else row.last_name
        conn.execute(update(contacts_t).where(contacts_t.c.id == survivor)
                     .values(**changes, provenance=provenance, name_key=identity.name_key(last, first),
                             updated_at=now))
