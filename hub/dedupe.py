"""`hub dedupe`: apply the identity rule to the whole base, and show what only a person can decide.

Matching already happens on every write, so the base normally holds no two
contacts with a shared valid phone, email or reference. What can still change
is the reading of a value: a phone once unparsable becomes valid after the
default region is set right, and may then belong to someone already known.
Dedupe re-reads the flagged values, fixes them, and merges where the rule now
says so. Namesakes are never merged by rule; they are listed as suggestions
with what the two have in common, for a person to merge or keep apart.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, select

from hub import identity, normalize
from hub.config import Settings
from hub.i18n import N_
from hub.i18n import gettext as _
from hub.models import Contact, ContactIdentity

contacts_t = Contact.__table__
identities_t = ContactIdentity.__table__
# Why a pair is suggested, as people read it; `suggestions` and its JSON keep the English words.
EVIDENCE_TITLES = {"same full name": N_("same full name"), "same city": N_("same city"),
                   "same birthday": N_("same birthday")}


def evidence_title(reason: Any) -> str:
    """One reason in the reader's words ("то же ФИО"); an unknown one as it is."""
    return _(EVIDENCE_TITLES[reason]) if reason in EVIDENCE_TITLES else str(reason)


@dataclass
class DedupeReport:
    reparsed: int = 0
    merged: list[dict[str, Any]] = field(default_factory=list)
    suggestions: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"reparsed": self.reparsed, "merged": self.merged, "suggestions": self.suggestions}


def run(engine: Engine, settings: Settings, *, suggestion_limit: int | None = 200) -> DedupeReport:
    """Re-read flagged values and merge by rule; list look-alike groups (at most `suggestion_limit`, None: all)."""
    report = DedupeReport()
    with engine.begin() as conn:
        _reparse_invalid(conn, settings, report)
    with engine.connect() as conn:
        report.suggestions = suggestions(conn, limit=suggestion_limit)
    return report


def _reparse_invalid(conn: Connection, settings: Settings, report: DedupeReport) -> None:
    rows = conn.execute(select(identities_t).where(identities_t.c.valid.is_(False))).all()
    for row in rows:
        if row.kind == normalize.PHONE:
            found = [p for p in normalize.phones(row.raw, settings.default_region) if p.valid]
        else:
            ident = normalize.email(row.raw)
            found = [ident] if ident is not None and ident.valid else []
        if not found:
            continue
        report.reparsed += 1
        conn.execute(delete(identities_t).where(identities_t.c.id == row.id))
        contact_id = row.contact_id
        for ident in found:
            owner = identity.find_contact(conn, ident.kind, ident.value)
            if owner is None:
                conn.execute(identities_t.insert().values(
                    contact_id=contact_id, kind=ident.kind, value=ident.value, raw=row.raw, valid=True,
                    source=row.source, created_at=row.created_at))
            elif owner != contact_id:
                survivor, gone = sorted((owner, contact_id))
                reason = {"rule": "shared identifier", "keys": [f"{ident.kind}:{ident.value}"], "via": ["dedupe"]}
                identity.merge_contacts(conn, survivor, gone, reason=reason, settings=settings, actor="dedupe")
                report.merged.append({"survivor": survivor, "merged": gone, **reason})
                contact_id = survivor


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
    out = []
    for members in groups.values():
        if len(members) < 2:
            continue
        middles = {(m.middle_name or "").lower().replace("ё", "е") for m in members}
        if len(middles) > 1 and "" not in middles:
            continue  # different patronymics: different people
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
    the refusals of check_mergeable hold for every merge by hand.
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
        identity.merge_contacts(conn, survivor, other, reason=reason, settings=settings, actor=actor)
    return {"survivor": survivor, "merged": other, **reason}
