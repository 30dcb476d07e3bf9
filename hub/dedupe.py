"""`hub dedupe`: apply the identity rule to the whole base, and show what only a person can decide.

Matching already happens on every write, so the base normally holds no two
contacts with a shared valid phone, email or reference. What can still change
is the reading of a value: a phone once unparsable becomes valid after the
default region is set right, and may then belong to someone already known.
Dedupe re-reads the flagged values, fixes them, and merges where the rule now
says so. Namesakes are never merged by rule; they are listed as suggestions
with what the two have in common, for a person to merge or keep apart.

It also brings a base stored before shared values existed up to the rules
(an 8-800 line, info@, a fax is marked shared wherever it is), and lists the
merges a person should look at again (`review`): those made through a value
now known to be shared, and those that gave one contact someone else's first
name. Hub never splits a contact by itself; the person undoes a wrong merge
(`hub contacts unmerge`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterator

from sqlalchemy import Connection, Engine, and_, delete, func, not_, or_, select, update

from hub import identity, names, normalize
from hub.config import Settings
from hub.i18n import N_
from hub.i18n import gettext as _
from hub.db import among, chunks
from hub.models import Contact, ContactIdentity, ContactMerge, ContactsApart
from hub.records import ContactRecord

contacts_t = Contact.__table__
identities_t = ContactIdentity.__table__
merges_t = ContactMerge.__table__
apart_t = ContactsApart.__table__
# Why a pair is suggested, as people read it; `suggestions` and its JSON keep the English words.
EVIDENCE_TITLES = {"same full name": N_("same full name"), "same city": N_("same city"),
                   "same birthday": N_("same birthday")}


def evidence_title(reason: Any) -> str:
    """One reason in the reader's words ("то же ФИО"); an unknown one as it is."""
    return _(EVIDENCE_TITLES[reason]) if reason in EVIDENCE_TITLES else str(reason)


# Why a merge is listed for review, as people read it; `review` and its JSON keep the English words.
VALUE_NOW_SHARED = "value now shared"
SEVERAL_FIRST_NAMES = "several first names"
REVIEW_TITLES = {VALUE_NOW_SHARED: N_("a value it was joined through is now shared"),
                 SEVERAL_FIRST_NAMES: N_("several first names")}


def review_title(why: Any) -> str:
    """Why a merge is worth a second look, in the reader's words; an unknown reason as it is."""
    return _(REVIEW_TITLES[why]) if why in REVIEW_TITLES else str(why)


@dataclass
class DedupeReport:
    reparsed: int = 0
    merged: list[dict[str, Any]] = field(default_factory=list)
    suggestions: list[dict[str, Any]] = field(default_factory=list)
    marked_shared: int = 0
    review: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"reparsed": self.reparsed, "merged": self.merged, "suggestions": self.suggestions,
                "marked_shared": self.marked_shared, "review": self.review}


def run(engine: Engine, settings: Settings, *, suggestion_limit: int | None = 200,
        review_limit: int | None = 200) -> DedupeReport:
    """Bring the base up to the rules, then list look-alikes and merges to check (None: all of them)."""
    report = DedupeReport()
    with engine.begin() as conn:
        report.marked_shared = mark_intrinsic_shared(conn)
        _reparse_invalid(conn, settings, report)
    with engine.connect() as conn:
        report.suggestions = suggestions(conn, limit=suggestion_limit)
        report.review = review(conn, limit=review_limit)
    return report


def mark_intrinsic_shared(conn: Connection) -> int:
    """Mark shared the values stored before the rules knew them: 8-800 lines, company mailboxes, faxes.

    Such a value never identifies a person, whoever holds it; a base written
    by an older Hub holds them as personal values, and merges made through
    them then come up for review. Returns how many values were marked.
    """
    c = identities_t.c
    phone_hint = and_(c.kind == normalize.PHONE,
                      or_(c.value.like("+7800%"), c.value.like("+7804%"), not_(c.value.like("+7%"))))
    candidates = (select(c.id, c.kind, c.value, c.label)
                  .where(c.valid.is_(True), c.shared.is_(None),
                         or_(c.label == "fax", c.kind == normalize.EMAIL, phone_hint))
                  .execution_options(yield_per=10000))
    by_reason: dict[str, list[int]] = defaultdict(list)
    for row in conn.execute(candidates):
        reason = identity.intrinsic_reason(row.kind, row.value, [row.label] if row.label else [])
        if reason is not None:
            by_reason[reason].append(row.id)
    for reason, ids in by_reason.items():
        for part in chunks(ids, 5000):
            conn.execute(update(identities_t).where(among(conn, c.id, part)).values(shared=reason))
    return sum(len(ids) for ids in by_reason.values())


def _reparse_invalid(conn: Connection, settings: Settings, report: DedupeReport) -> None:
    """Values once unparsable that read as valid now go through the identity rule like any new value.

    Each is handed to identity.resolve as a record known to be its contact,
    so a value another contact holds joins them only as a sync would: not
    when it is shared, not when the names say two people.
    """
    rows = conn.execute(select(identities_t).where(identities_t.c.valid.is_(False))).all()
    for row in rows:
        if row.kind == normalize.PHONE:
            found = [p for p in normalize.phones(row.raw, settings.default_region) if p.valid]
        else:
            ident = normalize.email(row.raw)
            found = [ident] if ident is not None and ident.valid else []
        if not found:
            continue
        contact = conn.execute(select(contacts_t.c.first_name, contacts_t.c.last_name, contacts_t.c.middle_name)
                               .where(contacts_t.c.id == row.contact_id)).first()
        if contact is None:
            continue
        report.reparsed += 1
        conn.execute(delete(identities_t).where(identities_t.c.id == row.id))
        record = ContactRecord(source=row.source, first_name=contact.first_name, last_name=contact.last_name,
                               middle_name=contact.middle_name)
        found = [ident._replace(raw=row.raw, label=row.label) for ident in found]
        prepared = identity.Prepared(record, found, contact_id=row.contact_id)
        result = identity.resolve(conn, [prepared], settings=settings, actor="dedupe")
        for survivor, gone in result.merged:
            keys = [f"{i.kind}:{i.value}" for i in found]
            report.merged.append({"survivor": survivor, "merged": gone, "rule": "shared identifier",
                                  "keys": keys, "via": ["dedupe"]})


def suggestions(conn: Connection, *, limit: int | None = 200) -> list[dict[str, Any]]:
    """Groups of contacts with the same full name: possible duplicates, never merged automatically.

    With a limit, the first groups by name (the likeliest of them first); with
    None, every group, the likeliest of all first, so a person paging through
    them (`hub dedupe --offset`) meets the strongest cases at once.
    """
    dup_keys = (
        select(contacts_t.c.name_key)
        .where(contacts_t.c.deleted_at.is_(None), contacts_t.c.name_key.is_not(None),
               contacts_t.c.first_name.is_not(None), contacts_t.c.last_name.is_not(None))
        .group_by(contacts_t.c.name_key)
        .having(func.count() > 1)
        .order_by(contacts_t.c.name_key)
    )
    if limit is not None:
        dup_keys = dup_keys.limit(limit * 4)
    rows = conn.execute(
        select(contacts_t.c.id, contacts_t.c.first_name, contacts_t.c.last_name, contacts_t.c.middle_name,
               contacts_t.c.city, contacts_t.c.birthday)
        .where(contacts_t.c.deleted_at.is_(None), contacts_t.c.name_key.in_(dup_keys.scalar_subquery()))
        .order_by(contacts_t.c.name_key, contacts_t.c.id)
    ).all()
    groups: dict[str | None, list[Any]] = defaultdict(list)
    for r in rows:
        groups[identity.name_key(r.last_name, r.first_name)].append(r)
    apart = _apart_pairs(conn, [r.id for r in rows])
    out = []
    for members in (part for group in groups.values() for named in _by_patronymic(group)
                    for part in _without_apart(named, apart)):
        if len(members) < 2:
            continue
        cities = {m.city for m in members if m.city}
        birthdays = {m.birthday for m in members if m.birthday}
        evidence = ["same full name"]
        if len(cities) == 1 and all(m.city for m in members):
            evidence.append("same city")
        if len(birthdays) == 1 and all(m.birthday for m in members):
            evidence.append("same birthday")
        out.append({
            "name": " ".join(p for p in (members[0].last_name, members[0].first_name, members[0].middle_name) if p),
            "contact_ids": [m.id for m in members],
            "evidence": evidence,
            "likely": len(evidence) > 2,
        })
        if limit is not None and len(out) >= limit:
            break
    out.sort(key=lambda s: (not s["likely"], s["name"]))
    return out


def _by_patronymic(members: list[Any]) -> list[list[Any]]:
    """One name's group split by patronymic: different patronymics are different people.

    Сергей Петрович and Сергей Сергеевич are never offered together; a
    Сергей without one may be either, so he is offered with each of them.
    """
    def folded(m: Any) -> str:
        return (m.middle_name or "").strip().lower().replace("ё", "е")

    patronymics = sorted({folded(m) for m in members} - {""})
    if len(patronymics) < 2:
        return [members]
    return [[m for m in members if folded(m) in ("", p)] for p in patronymics]


def _apart_pairs(conn: Connection, ids: list[int]) -> set[tuple[int, int]]:
    """Pairs among `ids` a person said are two people (an undone merge): never suggested again."""
    if not ids:
        return set()
    found: set[tuple[int, int]] = set()
    for part in chunks(sorted(set(ids)), 5000):
        rows = conn.execute(select(apart_t.c.low_id, apart_t.c.high_id).where(among(conn, apart_t.c.low_id, part)))
        found.update((r.low_id, r.high_id) for r in rows)
    return found


def _without_apart(members: list[Any], apart: set[tuple[int, int]]) -> list[list[Any]]:
    """One name's group split so that no two contacts kept apart are offered for merging together."""
    if not apart:
        return [members]
    parts: list[list[Any]] = []
    for m in members:
        for part in parts:
            if all((min(m.id, o.id), max(m.id, o.id)) not in apart for o in part):
                part.append(m)
                break
        else:
            parts.append([m])
    return parts


def review(conn: Connection, *, limit: int | None = 200) -> list[dict[str, Any]]:
    """Merges a person should check, oldest first: each with why, and the values or names that raise it.

    * "value now shared": the merge went through a phone or email that was
      one person's then and is shared now (several people were found to use
      it, or it is an 8-800 line, a company mailbox, a fax). The merge may
      have joined two people; only a person can tell.
    * "several first names": the merged contact's first name cannot be the
      survivor's (hub.names.compatible): Анна and Мария, not Саша and
      Александр.

    Undone merges and merges into contacts that no longer exist are left out.
    """
    c = identities_t.c
    shared = {(r.kind, r.value) for r in conn.execute(select(c.kind, c.value).where(c.shared.is_not(None))
                                                      .distinct())}
    later: dict[int, Any] = {}  # survivors merged on into another contact since: who holds their values now
    out: list[dict[str, Any]] = []
    for row in _merges_in_pages(conn):
        holder = row
        if row.holder is None:
            if row.survivor_id not in later:
                later[row.survivor_id] = _holder(conn, row.survivor_id)
            holder = later[row.survivor_id]
        if holder is None or holder.deleted_at is not None:
            continue
        item = _suspicion(row, holder, shared)
        if item is not None:
            out.append(item)
            if limit is not None and len(out) >= limit:
                break
    return out


def _merges_in_pages(conn: Connection, page: int = 2000) -> Iterator[Any]:
    """Merges not undone with their survivor's name, oldest first, a page at a time (snapshots can be big)."""
    m = merges_t.c
    last = 0
    while True:
        rows = conn.execute(
            select(m.id, m.survivor_id, m.merged_id, m.reason, m.snapshot, m.actor, m.at,
                   contacts_t.c.id.label("holder"), contacts_t.c.first_name, contacts_t.c.last_name,
                   contacts_t.c.deleted_at)
            .outerjoin(contacts_t, contacts_t.c.id == m.survivor_id)
            .where(m.undone_at.is_(None), m.id > last)
            .order_by(m.id).limit(page)).all()
        yield from rows
        if len(rows) < page:
            return
        last = rows[-1].id


def _holder(conn: Connection, contact_id: int) -> Any:
    """The contact a merged-away survivor's values went to (through any chain of merges), or None."""
    current = identity.current_contact_id(conn, contact_id)
    if current is None:
        return None
    return conn.execute(select(contacts_t.c.id.label("holder"), contacts_t.c.first_name, contacts_t.c.last_name,
                               contacts_t.c.deleted_at).where(contacts_t.c.id == current)).first()


def _suspicion(row: Any, holder: Any, shared: set[tuple[str, str]]) -> dict[str, Any] | None:
    reason = row.reason if isinstance(row.reason, dict) else {}
    snapshot = row.snapshot if isinstance(row.snapshot, dict) else {}
    # A value already shared when the merge happened joined two records whose names agree: not new.
    shared_then = {(i.get("kind"), i.get("value")) for i in snapshot.get("identities") or []
                   if isinstance(i, dict) and i.get("shared")}
    values = []
    for key in reason.get("keys") or []:
        kind, _sep, value = str(key).partition(":")
        if (kind, value) in shared and (kind, value) not in shared_then:
            values.append(str(key))
    fields = snapshot.get("fields") or {}
    own = names.Name(first=holder.first_name, last=holder.last_name)
    theirs = names.Name(first=fields.get("first_name"), last=fields.get("last_name"))
    other_name = bool(holder.first_name and fields.get("first_name")) and not names.compatible(own, theirs)
    if not values and not other_name:
        return None
    return {
        "merge_id": row.id,
        "survivor": holder.holder,
        "merged": row.merged_id,
        "why": VALUE_NOW_SHARED if values else SEVERAL_FIRST_NAMES,
        "values": values,
        "names": [_full_name(holder.last_name, holder.first_name), _full_name(fields.get("last_name"),
                                                                          fields.get("first_name"))]
        if other_name else [],
        "rule": reason.get("rule"),
        "actor": row.actor,
        "at": row.at.isoformat() if row.at is not None else None,
    }


def _full_name(last: Any, first: Any) -> str:
    return " ".join(str(p) for p in (last, first) if p)


class MergeRefused(ValueError):
    """A merge that must not happen; the message names the contact and why, in one line."""


def check_mergeable(conn: Connection, contact_ids: list[int]) -> None:
    """Refuse a merge by hand that involves an erased person or a pending signup's hidden placeholder.

    A merge is logged, and links follow the log (identity.current_contact_id):
    merging an erased id into a live one would hand the erased person's old
    letters power over a stranger; merging a live person into an erased or
    hidden contact would bury them where nobody sees them. A placeholder joins
    the person only through the confirmation click, which merges it itself.
    """
    for cid in contact_ids:
        if identity.is_erased(conn, cid):
            raise MergeRefused(_("contact #%(id)s was erased on request: it cannot be merged with anyone", id=cid))
        if identity.is_placeholder(conn, cid):
            raise MergeRefused(_("contact #%(id)s is a hidden unconfirmed signup: it cannot be merged by hand",
                                 id=cid))


def merge_by_hand(engine: Engine, survivor: int, other: int, *, actor: str, settings: Settings) -> dict[str, Any]:
    """A person decided two contacts are one; the merge is logged with who decided.

    Both doors (`hub dedupe --merge`, the admin's merge) come through here, so
    the refusals of check_mergeable hold for every merge by hand. A pair a
    person once kept apart (by undoing their merge) may be merged again: the
    later decision wins, the pair is no longer kept apart, and the result
    says so (`kept_apart_before`), so the person is told.
    """
    if survivor == other:
        raise ValueError(_("a contact cannot be merged with itself"))
    with engine.begin() as conn:
        check_mergeable(conn, [survivor, other])
        found = set(conn.execute(select(contacts_t.c.id).where(contacts_t.c.id.in_([survivor, other]))).scalars())
        for cid in (survivor, other):
            if cid not in found:
                raise ValueError(_("no contact with id %(id)s", id=cid))
        reason = {"rule": "merged by hand", "by": actor}
        low, high = sorted((survivor, other))
        kept_apart = conn.execute(delete(apart_t).where(apart_t.c.low_id == low, apart_t.c.high_id == high)).rowcount
        identity.merge_contacts(conn, survivor, other, reason=reason, settings=settings, actor=actor)
    return {"survivor": survivor, "merged": other, **reason, "kept_apart_before": bool(kept_apart)}
