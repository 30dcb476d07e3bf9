"""Identity resolution: deciding which records are the same person.

The rule: the same valid phone, the same valid email, or the same external
reference means the same person, transitively (A shares a phone with B, B an
email with C: one person). A name alone never merges.

Records arrive in chunks (a page of a CRM sync, a slice of a spreadsheet) and
are resolved set-wise: the chunk's identifiers are looked up in one query per
kind, records and existing contacts are joined with a union-find, and the
result is written with bulk statements. That is what lets a million-row import
run at tens of thousands of rows a second while a webhook's single record goes
through exactly the same code.

Every merge is kept in contact_merges with the merged contact's values and
where each came from; on merge the stricter consent wins.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from sqlalchemy import Connection, and_, bindparam, delete, func, select, update

from hub import normalize
from hub.config import Settings
from hub.db import among, bulk_insert, chunks, insert_for, reserve_ids, utcnow
from hub.i18n import N_
from hub.i18n import gettext as _
from hub.models import Contact, ContactIdentity, ContactMerge, Erasure, ExternalRef, Order
from hub.normalize import Identifier
from hub.records import ContactRecord

contacts_t = Contact.__table__
identities_t = ContactIdentity.__table__
refs_t = ExternalRef.__table__
orders_t = Order.__table__
merges_t = ContactMerge.__table__
erasures_t = Erasure.__table__

# Contact fields a record can fill, in the order they are shown.
# An identity's kind as people call it; the value stays in the table, rules and JSON.
KIND_TITLES = {normalize.PHONE: N_("phone"), normalize.EMAIL: N_("email")}


def kind_title(kind: Any) -> str:
    """A phone or an email in the reader's words; an unknown kind as it is."""
    return _(KIND_TITLES[kind]) if kind in KIND_TITLES else str(kind)


FIELDS = ("first_name", "last_name", "middle_name", "birthday", "city", "gender", "company")
LOOKUP_CHUNK = 5000


@dataclass(slots=True)
class Prepared:
    """A record with its identifiers normalized, ready to resolve."""

    record: ContactRecord
    identifiers: list[Identifier]

    @property
    def keys(self) -> list[tuple[str, str]]:
        keys = [(i.kind, i.value) for i in self.identifiers if i.valid]
        if self.record.external_id:
            keys.append(("ref", f"{self.record.source}\x1f{self.record.external_id}"))
        return keys


@dataclass
class Resolution:
    """What one chunk did: which contacts it created, updated and merged."""

    created: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    merged: list[tuple[int, int]] = field(default_factory=list)  # (survivor, merged)
    contact_ids: list[int | None] = field(default_factory=list)  # per input record
    invalid_phones: int = 0
    invalid_emails: int = 0
    refused: int = 0  # records a plugin kept out (the refuse_records hook)


def prepare(record: ContactRecord, region: str) -> Prepared:
    """Normalize a record's phones and emails (pure; safe to run in another process)."""
    identifiers: list[Identifier] = []
    for cell in record.phones:
        identifiers.extend(normalize.phones(cell, region))
    for cell in record.emails:
        identifiers.extend(normalize.emails(cell))
    return Prepared(record, identifiers)


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[Any, Any] = {}

    def find(self, x: Any) -> Any:
        parent = self.parent
        root = x
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def union(self, a: Any, b: Any) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def resolve(
    conn: Connection,
    prepared: Sequence[Prepared],
    *,
    settings: Settings,
    now: dt.datetime | None = None,
) -> Resolution:
    """Attach each record to its contact, creating and merging contacts as the rule says.

    Runs inside the caller's transaction; the caller commits the chunk. A
    record a plugin refuses (the refuse_records hook) writes nothing, and its
    entry in `contact_ids` is None. Each merge tells plugins (contact_merged).
    """
    from hub.plugins import get_pm

    refused: set[int] = set()
    if prepared:
        for answer in get_pm().hook.refuse_records(conn=conn, settings=settings, records=list(prepared)):
            refused.update(answer or ())
    if not refused:
        return _resolve(conn, prepared, settings=settings, now=now)
    kept = [i for i in range(len(prepared)) if i not in refused]
    result = _resolve(conn, [prepared[i] for i in kept], settings=settings, now=now)
    placed = dict(zip(kept, result.contact_ids, strict=True))
    result.contact_ids = [placed.get(i) for i in range(len(prepared))]
    result.refused = len(refused)
    return result


def _resolve(conn: Connection, prepared: Sequence[Prepared], *, settings: Settings,
             now: dt.datetime | None) -> Resolution:
    now = now or utcnow()
    result = Resolution()
    if not prepared:
        return result

    existing = _lookup(conn, prepared)  # key -> contact id
    uf = _UnionFind()
    for i, p in enumerate(prepared):
        node = ("rec", i)
        uf.find(node)
        for key in p.keys:
            uf.union(node, ("key",) + key)
            contact_id = existing.get(key)
            if contact_id is not None:
                uf.union(node, ("contact", contact_id))

    groups: dict[Any, list[int]] = defaultdict(list)
    group_contacts: dict[Any, set[int]] = defaultdict(set)
    for i in range(len(prepared)):
        groups[uf.find(("rec", i))].append(i)
    for node in list(uf.parent):
        if node[0] == "contact":
            group_contacts[uf.find(node)].add(node[1])

    contact_rows = _load_contacts(conn, {c for cs in group_contacts.values() for c in cs})
    new_groups: list[tuple[Any, dict[str, Any]]] = []
    updates: dict[int, dict[str, Any]] = {}
    group_target: dict[Any, int] = {}
    for root, members in groups.items():
        ids = sorted(group_contacts.get(root, ()))
        if len(ids) > 1:
            survivor = ids[0]
            for other in ids[1:]:
                reason = _merge_reason(prepared, members, existing, survivor, other)
                merge_contacts(conn, survivor, other, reason=reason, settings=settings, now=now)
                result.merged.append((survivor, other))
            contact_rows[survivor] = _load_contacts(conn, {survivor})[survivor]
        if ids:
            target = ids[0]
            row = contact_rows[target]
            changed = _apply_records(row, [prepared[i].record for i in members])
            if changed:
                updates[target] = row
            group_target[root] = target
        else:
            row = _empty_contact(now)
            _apply_records(row, [prepared[i].record for i in members])
            new_groups.append((root, row))

    if new_groups:
        new_ids = reserve_ids(conn, contacts_t, len(new_groups))
        rows = []
        for (root, row), new_id in zip(new_groups, new_ids, strict=True):
            row["id"] = new_id
            rows.append(row)
            group_target[root] = new_id
            result.created.append(new_id)
        bulk_insert(conn, contacts_t, rows)
    if updates:
        _update_contacts(conn, updates, now)
        result.updated.extend(sorted(updates))

    identity_rows: list[dict[str, Any]] = []
    ref_rows: list[dict[str, Any]] = []
    for i, p in enumerate(prepared):
        target = group_target[uf.find(("rec", i))]
        result.contact_ids.append(target)
        source = p.record.source
        for ident in p.identifiers:
            if not ident.valid:
                if ident.kind == normalize.PHONE:
                    result.invalid_phones += 1
                else:
                    result.invalid_emails += 1
            if ident.valid and existing.get((ident.kind, ident.value)) is not None:
                continue
            identity_rows.append(
                {"contact_id": target, "kind": ident.kind, "value": ident.value, "raw": ident.raw,
                 "valid": ident.valid, "source": source, "created_at": now}
            )
        if p.record.external_id:
            ref_rows.append({"source": source, "external_id": p.record.external_id, "contact_id": target,
                             "created_at": now, "deleted_at": None})
    if identity_rows:
        bulk_insert(conn, identities_t, identity_rows, ignore_conflicts=True)
    if ref_rows:
        ins = insert_for(conn, refs_t)
        stmt = ins.on_conflict_do_update(
            index_elements=["source", "external_id"],
            set_={"contact_id": ins.excluded.contact_id, "deleted_at": None},
        )
        conn.execute(stmt, _dedupe_refs(ref_rows))
        linkable: dict[str, set[str]] = defaultdict(set)
        for r in ref_rows:
            linkable[r["source"]].add(r["external_id"])
        link_orphan_orders(conn, linkable)
    return result


def _dedupe_refs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # One statement may not touch the same conflict key twice on PostgreSQL.
    unique: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        unique[(row["source"], row["external_id"])] = row
    return list(unique.values())


def _lookup(conn: Connection, prepared: Sequence[Prepared]) -> dict[tuple[str, str], int]:
    by_kind: dict[str, set[str]] = defaultdict(set)
    refs: dict[str, set[str]] = defaultdict(set)
    for p in prepared:
        for kind, value in p.keys:
            if kind == "ref":
                source, external_id = value.split("\x1f", 1)
                refs[source].add(external_id)
            else:
                by_kind[kind].add(value)
    found: dict[tuple[str, str], int] = {}
    for kind, values in by_kind.items():
        for part in chunks(sorted(values), LOOKUP_CHUNK):
            rows = conn.execute(
                select(identities_t.c.value, identities_t.c.contact_id).where(
                    identities_t.c.kind == kind, identities_t.c.valid, among(conn, identities_t.c.value, part)
                )
            )
            for value, contact_id in rows:
                found[(kind, value)] = contact_id
    for source, ids in refs.items():
        for part in chunks(sorted(ids), LOOKUP_CHUNK):
            rows = conn.execute(
                select(refs_t.c.external_id, refs_t.c.contact_id).where(
                    refs_t.c.source == source, among(conn, refs_t.c.external_id, part)
                )
            )
            for external_id, contact_id in rows:
                found[("ref", f"{source}\x1f{external_id}")] = contact_id
    return found


_CONTACT_COLUMNS = FIELDS + ("tags", "attributes", "provenance", "name_key")


def name_key(last_name: str | None, first_name: str | None) -> str | None:
    """The key namesakes share: case and ё/е do not make two names different."""
    parts = [p.strip().lower().replace("ё", "е") for p in (last_name, first_name) if p and p.strip()]
    return " ".join(parts) or None


def _load_contacts(conn: Connection, ids: set[int]) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    cols = [contacts_t.c.id] + [contacts_t.c[name] for name in _CONTACT_COLUMNS]
    for part in chunks(sorted(ids), LOOKUP_CHUNK):
        for row in conn.execute(select(*cols).where(among(conn, contacts_t.c.id, part))):
            data = dict(row._mapping)
            data["tags"] = list(data["tags"] or [])
            data["attributes"] = dict(data["attributes"] or {})
            data["provenance"] = dict(data["provenance"] or {})
            out[data.pop("id")] = data
    return out


def _empty_contact(now: dt.datetime) -> dict[str, Any]:
    row: dict[str, Any] = {name: None for name in FIELDS}
    row.update(name_key=None, tags=[], attributes={}, provenance={}, orders_count=0, revenue=0,
               first_order_at=None, last_order_at=None, created_at=now, updated_at=now,
               deleted_at=None, timezone=None)
    return row


def _apply_records(row: dict[str, Any], records: Iterable[ContactRecord]) -> bool:
    """Fill the contact from records; returns whether it ends up different.

    An empty field takes the first value offered. A filled field changes only
    when the source that gave the value now gives another (the source corrected
    it); another source's different value does not overwrite, so two systems
    disagreeing about a name cannot flip it back and forth on every sync.
    Within one batch the last record of a source wins; the result is compared
    with the starting state, so re-reading the same data changes nothing.
    """
    provenance = row["provenance"]
    before = ({name: row[name] for name in FIELDS}, list(row["tags"]), dict(row["attributes"]), dict(provenance))
    for record in records:
        source = record.source
        for name in FIELDS:
            value = getattr(record, name)
            if value is None or value == "":
                continue
            current = row[name]
            if current is None or current == "" or (current != value and provenance.get(name) == source):
                row[name] = value
                provenance[name] = source
        if record.tags:
            row["tags"] = list(dict.fromkeys(row["tags"] + list(record.tags)))
        if record.attributes:
            row["attributes"].update(record.attributes)
        if "created_from" not in provenance:
            provenance["created_from"] = source
    row["name_key"] = name_key(row["last_name"], row["first_name"])
    after = ({name: row[name] for name in FIELDS}, row["tags"], row["attributes"], provenance)
    return after != before


def _update_contacts(conn: Connection, updates: dict[int, dict[str, Any]], now: dt.datetime) -> None:
    stmt = (
        update(contacts_t)
        .where(contacts_t.c.id == bindparam("_id"))
        .values({name: bindparam(name) for name in _CONTACT_COLUMNS} | {"updated_at": bindparam("_now")})
    )
    params = [{"_id": cid, "_now": now, **{name: row[name] for name in _CONTACT_COLUMNS}}
              for cid, row in updates.items()]
    conn.execute(stmt, params)


def _merge_reason(prepared: Sequence[Prepared], members: list[int], existing: dict[tuple[str, str], int],
                  survivor: int, other: int) -> dict[str, Any]:
    """Which identifiers of the incoming records tied the two contacts together."""
    keys = sorted({f"{k[0]}:{k[1]}".replace("\x1f", "/") for i in members for k in prepared[i].keys
                   if existing.get(k) in (survivor, other)})
    sources = sorted({prepared[i].record.source for i in members})
    return {"rule": "shared identifier", "keys": keys, "via": sources}


def merge_contacts(conn: Connection, survivor: int, merged: int, *, reason: dict[str, Any], settings: Settings,
                   actor: str = "system", now: dt.datetime | None = None) -> int:
    """Fold `merged` into `survivor`, keeping a full record of what `merged` held; returns the merge's log id.

    Everything that points at the merged contact moves; the survivor keeps its
    own values and fills its gaps from the merged one; consent takes the
    stricter answer for every channel and purpose; order stats are recomputed.
    Every merge comes through here, so this is where plugins hear of it
    (contact_merged, once) and move their own rows, before the merged contact
    is deleted and its foreign keys would take those rows with it.
    """
    from hub import consent  # consent imports identity for lookups
    from hub.plugins import get_pm

    now = now or utcnow()
    rows = _load_contacts(conn, {survivor, merged})
    keep, gone = rows[survivor], rows[merged]
    snapshot = _snapshot(conn, merged, gone)
    for name in FIELDS:
        if keep[name] in (None, "") and gone[name] not in (None, ""):
            keep[name] = gone[name]
            keep["provenance"][name] = gone["provenance"].get(name, f"merge:{merged}")
    keep["name_key"] = name_key(keep["last_name"], keep["first_name"])
    keep["tags"] = list(dict.fromkeys(keep["tags"] + gone["tags"]))
    keep["attributes"] = gone["attributes"] | keep["attributes"]

    stricter = consent.stricter_states(conn, survivor, merged)
    # The survivor already has these identifiers' valid twins: drop the duplicates first.
    dup = select(identities_t.c.value).where(identities_t.c.contact_id == survivor)
    conn.execute(delete(identities_t).where(and_(identities_t.c.contact_id == merged,
                                                  identities_t.c.value.in_(dup.scalar_subquery()))))
    for table in (identities_t, refs_t, orders_t, consent.events_t):
        conn.execute(update(table).where(table.c.contact_id == merged).values(contact_id=survivor))
    _update_contacts(conn, {survivor: keep}, now)
    merge_id = conn.execute(merges_t.insert().values(survivor_id=survivor, merged_id=merged, reason=reason,
                                                     snapshot=snapshot, actor=actor, at=now)
                            .returning(merges_t.c.id)).scalar_one()
    consent.record_merge_outcome(conn, survivor, merged, stricter, now=now)
    refresh_stats(conn, [survivor])
    get_pm().hook.contact_merged(conn=conn, settings=settings, survivor_id=survivor, merged_id=merged,
                                 merge_id=merge_id, reason=reason)
    conn.execute(delete(contacts_t).where(contacts_t.c.id == merged))
    return merge_id


def _snapshot(conn: Connection, contact_id: int, row: dict[str, Any]) -> dict[str, Any]:
    idents = conn.execute(
        select(identities_t.c.kind, identities_t.c.value, identities_t.c.raw, identities_t.c.valid,
               identities_t.c.source).where(identities_t.c.contact_id == contact_id)
    )
    refs = conn.execute(select(refs_t.c.source, refs_t.c.external_id).where(refs_t.c.contact_id == contact_id))
    fields = {name: (row[name].isoformat() if isinstance(row[name], dt.date) else row[name]) for name in FIELDS}
    return {
        "fields": fields,
        "provenance": row["provenance"],
        "tags": row["tags"],
        "identities": [dict(r._mapping) for r in idents],
        "external_refs": [dict(r._mapping) for r in refs],
    }


def refresh_stats(conn: Connection, contact_ids: Iterable[int]) -> None:
    """Recompute orders_count, revenue, first and last order from won orders.

    Set-based, two statements a chunk: the grouped won orders written through
    UPDATE … FROM, then zeros for contacts left with no won order. A sync
    touches thousands of contacts a page; four correlated subqueries per
    contact cost more than the rest of writing the page.
    """
    ids = sorted(set(contact_ids))
    for part in chunks(ids, LOOKUP_CHUNK):
        won = (select(orders_t.c.contact_id, func.count().label("n"), func.sum(orders_t.c.amount).label("total"),
                      func.min(orders_t.c.closed_at).label("first"), func.max(orders_t.c.closed_at).label("last"))
               .where(among(conn, orders_t.c.contact_id, part), orders_t.c.status == "won")
               .group_by(orders_t.c.contact_id).subquery())
        conn.execute(update(contacts_t).where(contacts_t.c.id == won.c.contact_id)
                     .values(orders_count=won.c.n, revenue=won.c.total, first_order_at=won.c.first,
                             last_order_at=won.c.last))
        any_won = select(orders_t.c.id).where(orders_t.c.contact_id == contacts_t.c.id, orders_t.c.status == "won")
        conn.execute(update(contacts_t).where(among(conn, contacts_t.c.id, part), ~any_won.exists())
                     .values(orders_count=0, revenue=0, first_order_at=None, last_order_at=None))


def refresh_source_stats(conn: Connection, source: str) -> None:
    """Recompute the stats of every contact with an order from `source`, after a full sync.

    Also zeroes contacts whose won orders all moved to someone else, which
    no longer have an order to be found by.
    """
    ids = conn.execute(select(orders_t.c.contact_id).where(orders_t.c.source == source,
                                                           orders_t.c.contact_id.is_not(None)).distinct()).scalars()
    refresh_stats(conn, list(ids))
    any_won = select(orders_t.c.id).where(orders_t.c.contact_id == contacts_t.c.id, orders_t.c.status == "won")
    conn.execute(update(contacts_t).where(contacts_t.c.orders_count > 0, ~any_won.exists())
                 .values(orders_count=0, revenue=0, first_order_at=None, last_order_at=None))


def link_orphan_orders(conn: Connection, refs: dict[str, set[str]]) -> list[int]:
    """Attach orders that arrived before their contact; returns the contacts touched.

    `refs` maps a source to the contact external ids just written, so only
    orders that can have become linkable are looked at.
    """
    touched: list[int] = []
    for source, external_ids in refs.items():
        for part in chunks(sorted(external_ids), LOOKUP_CHUNK):
            rows = conn.execute(
                select(orders_t.c.id, refs_t.c.contact_id)
                .join(refs_t, and_(refs_t.c.source == orders_t.c.source,
                                   refs_t.c.external_id == orders_t.c.contact_external_id))
                .where(orders_t.c.source == source, among(conn, orders_t.c.contact_external_id, part),
                       orders_t.c.contact_id.is_(None))
            ).all()
            if rows:
                conn.execute(
                    update(orders_t).where(orders_t.c.id == bindparam("_oid")).values(contact_id=bindparam("_cid")),
                    [{"_oid": oid, "_cid": cid} for oid, cid in rows],
                )
                touched.extend(cid for _, cid in rows)
    if touched:
        refresh_stats(conn, touched)
    return touched


# The provenance of a pending signup's placeholder contact (plugins.gdpr.capture makes them): hidden
# everywhere, holding no phone or email, merged only into the person who confirmed the signup.
PLACEHOLDER = "signup:pending"
MAX_MERGE_HOPS = 1000  # a chain longer than this is a broken log, not a person


def current_contact_id(conn: Connection, contact_id: int) -> int | None:
    """Who a contact id names today: itself, or the survivor it was merged into (through any chain of merges).

    Signed links, survey answers and anything else that kept an id from
    before a merge must act on the person as they are now, so they all ask
    here. None means nothing is held about the person any more: no such
    contact, or erased (an erased person's tombstone is not a person to act on).
    A contact that exists answers for itself before any merge is looked at,
    so one brought back by an unmerge is itself again.
    """
    seen: set[int] = set()
    current = contact_id
    while current not in seen and len(seen) < MAX_MERGE_HOPS:
        seen.add(current)
        # An erased id answers "nothing held" before any merge is followed: a merge log written
        # from an erased id (which no merge may do now) must not hand its old links to a stranger.
        if is_erased(conn, current):
            return None
        if conn.execute(select(contacts_t.c.id).where(contacts_t.c.id == current)).first() is not None:
            return current
        survivor = conn.execute(select(merges_t.c.survivor_id).where(merges_t.c.merged_id == current)
                                .order_by(merges_t.c.id.desc()).limit(1)).scalar()
        if survivor is None:
            return None
        current = survivor
    return None


def is_erased(conn: Connection, contact_id: int) -> bool:
    """Whether the person behind this id was erased (on request or by retention): their id acts on nobody."""
    return conn.execute(select(erasures_t.c.id).where(erasures_t.c.contact_id == contact_id)).first() is not None


def is_placeholder(conn: Connection, contact_id: int) -> bool:
    """Whether the contact is a pending signup's hidden placeholder (it stands for an unproven address)."""
    row = conn.execute(select(contacts_t.c.provenance, contacts_t.c.deleted_at)
                       .where(contacts_t.c.id == contact_id)).first()
    return (row is not None and row.deleted_at is not None and isinstance(row.provenance, dict)
            and row.provenance.get("created_from") == PLACEHOLDER)


def find_contact(conn: Connection, kind: str, value: str) -> int | None:
    """The contact holding a valid normalized phone or email, if any."""
    return conn.execute(
        select(identities_t.c.contact_id).where(
            identities_t.c.kind == kind, identities_t.c.value == value, identities_t.c.valid
        )
    ).scalar()
