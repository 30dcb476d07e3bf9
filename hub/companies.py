"""Companies from the CRMs (B2B): stored, linked to the people who work there and to their deals.

A company's phones and emails identify the company: they are kept on the
company row and never make two of its employees one person. Who works where
(contact_companies) is evidence the identity rules use: two people at one
company who share its switchboard are colleagues.

Links are made by the source's own ids, whichever arrives first: a contact
names its companies (kept in company_memberships), a deal or an activity
names its company (orders.company_external_id), and each is linked as soon
as both ends are in Hub. An activity is linked to its company when it is written
(a source syncs companies first). A person's links in a source are what
that person's references there say, so a merge unites them and an unmerge
hands each person back their own.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from sqlalchemy import Connection, and_, bindparam, case, delete, func, or_, select, update

from hub import custom_fields, normalize
from hub.config import Settings
from hub.db import among, bulk_insert, by_source_key, chunks, insert_for, utcnow
from hub.models import (Activity, Company, CompanyMembership, CompanyValue, Contact, ContactCompany, ContactIdentity,
                        ExternalRef, Order)
from hub.records import CompanyRecord, ContactRecord

if TYPE_CHECKING:
    from hub.sync import Counts

companies_t = Company.__table__
values_t = CompanyValue.__table__
members_t = CompanyMembership.__table__
links_t = ContactCompany.__table__
refs_t = ExternalRef.__table__
orders_t = Order.__table__
activities_t = Activity.__table__
contacts_t = Contact.__table__
identities_t = ContactIdentity.__table__
LOOKUP_CHUNK = 5000
MAX_VALUES = 50  # phones or emails a company keeps; a CRM cell listing more is a list of branches, not lines
COMPANY = "company"  # the reason a contact's value is shared (hub.identity.SHARED_REASONS) when it is a company's
_NON_DIGITS = re.compile(r"\D+")


def text(value: Any, size: int) -> str | None:
    """A CRM's text cut to the column: blank is None, an absurdly long name is kept in part, not refused."""
    if value is None:
        return None
    out = value if type(value) is str else str(value)
    if "\x00" in out:  # PostgreSQL refuses NUL in text
        out = out.replace("\x00", "")
    return out.strip()[:size] or None


class Cut(dict[Any, "str | None"]):
    """`text` at one size, for many values that repeat: `cut(value)`, each distinct text worked out once.

    Deals and activities of a first sync name a few funnels, stages,
    managers and companies over and over; a lookup costs less than the work.
    Only texts and None are kept: equal values of other types (1, 1.0, True)
    read differently, so those go to `text` each time.
    """

    def __init__(self, size: int) -> None:
        super().__init__({None: None})
        self.size = size

    def __call__(self, value: Any) -> str | None:
        return self[value] if type(value) is str or value is None else text(value, self.size)

    def __missing__(self, value: Any) -> str | None:
        out = self[value] = text(value, self.size)
        return out


def clean_inn(raw: Any) -> tuple[str | None, str | None]:
    """The INN as digits, and what is wrong with it: Russian INNs have 10 (a company) or 12 digits."""
    if raw is None or not str(raw).strip():
        return None, None
    digits = _NON_DIGITS.sub("", str(raw))
    if len(digits) not in (10, 12):
        return None, f"INN {str(raw)[:40]!r} has {len(digits)} digits, not 10 or 12"
    return digits, None


def _values(record: CompanyRecord, region: str) -> tuple[list[str], list[str], set[tuple[str, str]]]:
    """Phones (E.164 where they parse, raw otherwise) and emails (lowercased), and the valid ones as keys."""
    phones: list[str] = []
    emails: list[str] = []
    keys: set[tuple[str, str]] = set()
    for cell in record.phones or []:
        for ident in normalize.phones(cell, region):
            if ident.value not in phones:
                phones.append(ident.value[:64])
            if ident.valid:
                keys.add((normalize.PHONE, ident.value))
    for cell in record.emails or []:
        for ident in normalize.emails(cell):
            if ident.value not in emails:
                emails.append(ident.value[:normalize.MAX_VALUE])
            if ident.valid:
                keys.add((normalize.EMAIL, ident.value))
    return phones[:MAX_VALUES], emails[:MAX_VALUES], keys


def write_companies(conn: Connection, records: Sequence[CompanyRecord], settings: Settings, counts: Counts) -> None:
    """Upsert companies by (source, external id); link the contacts and orders already waiting for them.

    A first sync writes tens of thousands of companies: new ones take the
    bulk path, known ones one upsert statement, and every lookup is one
    query a chunk. A bad INN or timestamp is an error entry and the company
    is written without it.
    """
    now = utcnow()
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    keys_of: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for r in records:
        external_id = text(r.external_id, 200)
        if not external_id or not r.source:
            counts.errors.append({"entity": "company", "id": external_id, "error": "the company has no id"})
            continue
        inn, problem = clean_inn(r.inn)
        if problem:
            counts.errors.append({"entity": "company", "id": external_id, "error": problem})
        created = r.created_at
        if created is not None and (not isinstance(created, dt.datetime) or created.tzinfo is None):
            counts.errors.append({"entity": "company", "id": external_id, "error": "created_at has no time zone"})
            created = None
        phones, emails, keys = _values(r, settings.default_region)
        key = (r.source[:100], external_id)
        keys_of[key] = keys
        rows[key] = {"source": key[0], "external_id": external_id, "name": text(r.name, 300), "inn": inn,
                     "city": text(r.city, 200), "phones": phones, "emails": emails,
                     "responsible_id": text(r.responsible_id, 64),
                     "attributes": custom_fields.plain(r.attributes), "created_at": created or now,
                     "updated_at": now, "deleted_at": None}
    if not rows:
        return
    ordered = [rows[key] for key in sorted(rows)]  # key order, as every upsert writes: no deadlock
    existing = set(_ids(conn, list(rows)))
    fresh = [row for row in ordered if (row["source"], row["external_id"]) not in existing]
    known = [row for row in ordered if (row["source"], row["external_id"]) in existing]
    counts.companies["created"] += len(fresh)
    bulk_insert(conn, companies_t, fresh, ignore_conflicts=True)
    if known:
        # Only a company that changed is written (and its updated_at moved), and counted: a full sync reads
        # every company again.
        ins = insert_for(conn, companies_t)
        compared = ("name", "inn", "city", "phones", "emails", "responsible_id", "attributes", "deleted_at")
        changed = conn.execute(ins.on_conflict_do_update(
            index_elements=["source", "external_id"], set_={c: ins.excluded[c] for c in (*compared, "updated_at")},
            where=or_(*[companies_t.c[c].is_distinct_from(ins.excluded[c]) for c in compared]),
        ).returning(companies_t.c.id), known).all()  # (a many-row rowcount is -1 on psycopg)
        counts.companies["updated"] += len(changed)
    ids = _ids(conn, list(rows))
    _write_values(conn, ids, keys_of, {ids[k] for k in existing if k in ids})
    link_waiting(conn, ids)


def _ids(conn: Connection, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The company ids of (source, external id) keys Hub holds (deleted ones too)."""
    c = companies_t.c
    return by_source_key(conn, keys, c.source, c.external_id, c.id, chunk=LOOKUP_CHUNK)


def ids_of(conn: Connection, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The live company each (source, external id) names: how a deal or an activity finds its company.

    One query a source and chunk: a page of deals names a few hundred companies, each many times.
    """
    c = companies_t.c
    return by_source_key(conn, keys, c.source, c.external_id, c.id, c.deleted_at.is_(None), chunk=LOOKUP_CHUNK)


def _write_values(conn: Connection, ids: dict[tuple[str, str], int],
                  keys_of: dict[tuple[str, str], set[tuple[str, str]]], rewritten: set[int]) -> None:
    """Keep company_values as the companies' valid values say, and mark contacts holding them as sharing them."""
    for part in chunks(sorted(rewritten), LOOKUP_CHUNK):
        conn.execute(delete(values_t).where(among(conn, values_t.c.company_id, part)))
    rows = [{"company_id": ids[key], "kind": kind, "value": value}
            for key, keys in keys_of.items() if key in ids for kind, value in sorted(keys)]
    by_kind: dict[str, set[str]] = defaultdict(set)
    for kind, value in {pair for keys in keys_of.values() for pair in keys}:
        by_kind[kind].add(value)
    bulk_insert(conn, values_t, rows, ignore_conflicts=True)
    # A contact who already holds a company's line as their own (synced before the company) holds a
    # shared value from now on: it joins nobody by itself, exactly as if it had been known all along.
    c = identities_t.c
    for kind, values in sorted(by_kind.items()):
        for part in chunks(sorted(values), LOOKUP_CHUNK):
            conn.execute(update(identities_t).where(c.kind == kind, c.valid, c.shared.is_(None),
                                                                 among(conn, c.value, part)).values(shared=COMPANY))


def company_values(conn: Connection, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Those of these (kind, value) pairs that are some company's phone or email; one query a kind and chunk.

    A base no company was synced into (after a spreadsheet import, say) holds none: one probe answers.
    """
    c = values_t.c
    if conn.execute(select(c.id).limit(1)).first() is None:
        return set()
    by_kind: dict[str, set[str]] = defaultdict(set)
    for kind, value in keys:
        by_kind[kind].add(value)
    found: set[tuple[str, str]] = set()
    for kind, values in sorted(by_kind.items()):
        for part in chunks(sorted(values), LOOKUP_CHUNK):
            found.update((kind, v) for v in conn.execute(select(c.value).where(c.kind == kind,
                                                                              among(conn, c.value, part))).scalars())
    return found


def link_waiting(conn: Connection, ids: dict[tuple[str, str], int]) -> None:
    """Link the deals, activities and people that named these companies before they were synced (or while deleted)."""
    by_source: dict[str, list[str]] = defaultdict(list)
    for (source, external_id) in ids:
        by_source[source].append(external_id)
    c = companies_t.c
    touched: set[int] = set()
    people: dict[str, set[int]] = defaultdict(set)
    for source, external_ids in by_source.items():
        for part in chunks(sorted(external_ids), LOOKUP_CHUNK):
            live = and_(c.source == source, among(conn, c.external_id, part), c.deleted_at.is_(None))
            o = orders_t.c
            pairs = conn.execute(select(o.id, c.id).join(companies_t, and_(
                c.source == o.source, c.external_id == o.company_external_id))
                .where(live, o.source == source, o.company_id.is_(None))).all()
            if pairs:
                conn.execute(update(orders_t).where(o.id == bindparam("_rid")).values(company_id=bindparam("_cid")),
                             [{"_rid": rid, "_cid": cid} for rid, cid in pairs])
                touched.update(cid for _rid, cid in pairs)
            a = activities_t.c
            logged = conn.execute(select(a.id, c.id).join(companies_t, and_(
                c.source == a.source, c.external_id == a.company_external_id))
                .where(live, a.source == source, a.company_id.is_(None))).all()
            if logged:
                conn.execute(update(activities_t).where(a.id == bindparam("_aid"))
                             .values(company_id=bindparam("_cid")),
                             [{"_aid": aid, "_cid": cid} for aid, cid in logged])
            m = members_t.c
            people[source].update(conn.execute(
                select(refs_t.c.contact_id).join(members_t, and_(
                    m.source == refs_t.c.source, m.contact_external_id == refs_t.c.external_id))
                .where(m.source == source, among(conn, m.company_external_id, part),
                       refs_t.c.deleted_at.is_(None)).distinct()).scalars())
    refresh_stats(conn, touched)
    for source, contact_ids in people.items():
        relink(conn, contact_ids, sources=[source])


def remember_members(conn: Connection, records: Sequence[ContactRecord], contact_ids: Sequence[int | None]) -> None:
    """Keep which companies each contact record names, and link its contact to those Hub holds.

    A contact no longer naming a company in a source loses that source's
    link. An import that never names companies (and a source that never did)
    costs one query a chunk. Only the contacts of records that name a company
    now or named one until now are relinked: a record that names none, and
    never did, changes no link (in a first sync, most people's records).
    """
    named: dict[str, dict[str, list[str]]] = defaultdict(dict)  # source -> contact external id -> companies
    contact_of: dict[str, dict[str, int]] = defaultdict(dict)  # source -> contact external id -> contact
    for record, cid in zip(records, contact_ids, strict=True):
        if cid is None or not record.external_id:
            continue
        firms = [str(x)[:200] for x in (record.company_external_ids or []) if x is not None and str(x).strip()]
        named[record.source][str(record.external_id)] = list(dict.fromkeys(firms))
        contact_of[record.source][str(record.external_id)] = cid
    m = members_t.c
    for source, by_contact in named.items():
        if not any(by_contact.values()) and conn.execute(
                select(m.id).where(m.source == source).limit(1)).first() is None:
            continue
        had: set[str] = set()  # the records that named a company until now
        for part in chunks(sorted(by_contact), LOOKUP_CHUNK):
            gone = delete(members_t).where(m.source == source, among(conn, m.contact_external_id, part))
            had.update(conn.execute(gone.returning(m.contact_external_id)).scalars())
        rows = [{"source": source, "contact_external_id": ext, "company_external_id": firm}
                for ext, firms in sorted(by_contact.items()) for firm in firms]
        bulk_insert(conn, members_t, rows, ignore_conflicts=True)
        relink(conn, {cid for ext, cid in contact_of[source].items() if by_contact[ext] or ext in had},
               sources=[source])


def relink(conn: Connection, contact_ids: Iterable[int], *, sources: Sequence[str] | None = None) -> None:
    """Make these contacts' company links what their live references' memberships say, set-wise.

    `sources` limits the work to links from those sources (a sync chunk
    touches one); None recomputes every link (after an unmerge).
    """
    ids = sorted(set(contact_ids))
    if not ids:
        return
    m, r, c, lk = members_t.c, refs_t.c, companies_t.c, links_t.c
    now = utcnow()
    for part in chunks(ids, LOOKUP_CHUNK):
        want_q = (select(r.contact_id, c.id, c.source)
                  .join(members_t, and_(m.source == r.source, m.contact_external_id == r.external_id))
                  .join(companies_t, and_(c.source == m.source, c.external_id == m.company_external_id))
                  .where(among(conn, r.contact_id, part), r.deleted_at.is_(None), c.deleted_at.is_(None)))
        have_q = select(lk.id, lk.contact_id, lk.company_id, lk.source).where(among(conn, lk.contact_id, part))
        if sources is not None:
            have_q = have_q.where(lk.source.in_(list(sources)))
        # The source is kept out of want_q's WHERE: there SQLite (no planner statistics) started from
        # it, reading every membership of the source for each chunk. The contacts' own refs are few.
        wanted = {(cid, company, source) for cid, company, source in conn.execute(want_q)
                  if sources is None or source in sources}
        have = {(row.contact_id, row.company_id, row.source): row.id for row in conn.execute(have_q)}
        gone = [link_id for key, link_id in have.items() if key not in wanted]
        if gone:
            conn.execute(delete(links_t).where(among(conn, lk.id, gone)))
        new = [{"contact_id": cid, "company_id": company, "source": source, "created_at": now}
               for cid, company, source in sorted(wanted) if (cid, company, source) not in have]
        bulk_insert(conn, links_t, new, ignore_conflicts=True)
        fill_company_names(conn, {cid for cid, _company, _source in wanted})


def fill_company_names(conn: Connection, contact_ids: Iterable[int]) -> None:
    """A person working at exactly one company whose card has no company gets that company's name.

    The card and the old `company` segment field keep working for people a
    CRM links to a company instead of typing its name; a name already there
    is never overwritten. The name is recorded as the company's source's, so
    that source's own later word on it wins (hub.identity._apply_records).
    One UPDATE … FROM a chunk.
    """
    ids = sorted(set(contact_ids))
    lk, c, k = links_t.c, companies_t.c, contacts_t.c
    if conn.dialect.name == "postgresql":
        provenance: Any = k.provenance.op("||")(func.jsonb_build_object("company", c.source))
    else:
        provenance = func.json_set(k.provenance, "$.company", c.source)
    now = utcnow()
    for part in chunks(ids, LOOKUP_CHUNK):
        one = (select(lk.contact_id, func.min(lk.company_id).label("company_id"))
               .where(among(conn, lk.contact_id, part)).group_by(lk.contact_id).having(func.count() == 1).subquery())
        conn.execute(update(contacts_t)
                     .where(k.id == one.c.contact_id, c.id == one.c.company_id, c.name.is_not(None),
                            func.coalesce(k.company, "") == "")
                     .values(company=c.name, provenance=provenance, updated_at=now))


def refresh_stats(conn: Connection, company_ids: Iterable[int]) -> None:
    """Won deals and revenue of these companies, recomputed set-wise (two statements a chunk).

    The orders are found by company alone and "won" decided in the aggregates, as
    hub.identity.refresh_stats does and for the same reason (SQLite would otherwise
    read every won order of the base for each chunk).
    """
    ids = sorted({cid for cid in company_ids if cid is not None})
    o = orders_t.c
    won = o.status == "won"
    count_won = func.count(case((won, 1)))
    for part in chunks(ids, LOOKUP_CHUNK):
        stats = (select(o.company_id, count_won.label("n"), func.sum(case((won, o.amount))).label("total"))
                 .where(among(conn, o.company_id, part)).group_by(o.company_id).having(count_won > 0).subquery())
        conn.execute(update(companies_t).where(companies_t.c.id == stats.c.company_id)
                     .values(orders_count=stats.c.n, revenue=stats.c.total))
        any_won = select(o.id).where(o.company_id == companies_t.c.id, won)
        conn.execute(update(companies_t).where(among(conn, companies_t.c.id, part), ~any_won.exists())
                     .values(orders_count=0, revenue=0))


def refresh_source_stats(conn: Connection, source: str) -> None:
    """Every company of `source` recomputed, after a full sync (deals that moved away included)."""
    ids = conn.execute(select(companies_t.c.id).where(companies_t.c.source == source)).scalars().all()
    refresh_stats(conn, ids)


def delete_company(conn: Connection, source: str, external_id: str, now: dt.datetime) -> bool:
    """The source deleted the company: it is marked, its people lose the link; False if Hub never had it."""
    c = companies_t.c
    cid = conn.execute(select(c.id).where(c.source == source, c.external_id == external_id,
                                          c.deleted_at.is_(None))).scalar()
    if cid is None:
        return False
    conn.execute(update(companies_t).where(c.id == cid).values(deleted_at=now, updated_at=now))
    conn.execute(delete(links_t).where(links_t.c.company_id == cid))
    return True


def held_ids(conn: Connection, source: str) -> set[str]:
    """The ids of the live companies Hub holds from a source (reconcile compares them with the source's)."""
    c = companies_t.c
    return set(conn.execute(select(c.external_id).where(c.source == source, c.deleted_at.is_(None))).scalars())


# --- merges ----------------------------------------------------------------------------------

def move_on_merge(conn: Connection, survivor: int, merged: int) -> None:
    """The merged contact's company links go to the survivor, one link a company.

    Nothing needs keeping for an unmerge: the links are what each person's
    references say (company_memberships), so give_back recomputes them.
    """
    lk = links_t.c
    theirs = select(lk.company_id).where(lk.contact_id == survivor).scalar_subquery()
    conn.execute(delete(links_t).where(lk.contact_id == merged, lk.company_id.in_(theirs)))
    conn.execute(update(links_t).where(lk.contact_id == merged).values(contact_id=survivor))


def give_back(conn: Connection, survivor: int, restored: int) -> None:
    """After an unmerge: each of the two keeps the links its own references bring (see relink)."""
    relink(conn, [survivor, restored])
