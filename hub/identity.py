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
import functools
import hashlib
import itertools
import operator
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import phonenumbers
from sqlalchemy import Connection, and_, bindparam, case, delete, func, select, update

from hub import activities, companies, custom_fields, names, normalize
from hub.config import Settings
from hub.db import MAX_ROW_ID, among, bound_values, bulk_insert, chunks, insert_for, reserve_ids, utcnow
from hub.i18n import N_
from hub.i18n import gettext as _
from hub.models import (Contact, ContactIdentity, ContactMerge, ContactsApart, Erasure, ExternalRef, Order,
                        text_length)
from hub.normalize import Identifier
from hub.records import ContactRecord

contacts_t = Contact.__table__
identities_t = ContactIdentity.__table__
refs_t = ExternalRef.__table__
orders_t = Order.__table__
merges_t = ContactMerge.__table__
erasures_t = Erasure.__table__
apart_t = ContactsApart.__table__

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
    """A record with its identifiers normalized, ready to resolve.

    `contact_id` names the contact the record is already known to be (a value
    re-read on an existing contact, an edit on its card): the record then
    joins that contact whatever its phones say.
    """

    record: ContactRecord
    identifiers: list[Identifier]
    contact_id: int | None = None

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
    shared: dict[tuple[str, str], str] = field(default_factory=dict)  # values this chunk found shared, and why


def prepare(record: ContactRecord, region: str) -> Prepared:
    """Normalize a record's phones and emails (pure; safe to run in another process)."""
    identifiers: list[Identifier] = []
    labels = record.labels
    for cell in record.phones:
        identifiers.extend(normalize.phones(cell, region, labels.get(cell) if labels else None))
    for cell in record.emails:
        identifiers.extend(normalize.emails(cell, labels.get(cell) if labels else None))
    return Prepared(record, identifiers)


# --- shared values ----------------------------------------------------------------------------
#
# A phone or email several clearly different people use stands for a place (a switchboard, a
# reception, a household, a hotline, an info@ mailbox), not for a person. Such a value is marked
# shared on every contact holding it and stops merging people; the reasons are kept in
# contact_identities.shared. Values that are shared for what they are (an 8-800 line, a role
# mailbox, a fax) never join anyone; values found shared by who holds them join two records only
# when the names agree (names.agree): "names never merge by themselves; they decide whether a
# shared value can join two records".

SHARED_REASONS = ("names", "common", "toll_free", "role_mailbox", "fax", "unmerged", "company")
NEVER_JOIN = frozenset({"toll_free", "role_mailbox", "fax"})
SHARED_TITLES = {
    "names": N_("used by people with different names"),
    "common": N_("a common number or mailbox"),
    "toll_free": N_("a toll-free line"),
    "role_mailbox": N_("a company mailbox"),
    "fax": N_("a fax"),
    "unmerged": N_("kept apart by hand"),
    # A company's own phone or email (a CRM's company card lists it): colleagues share it, it is nobody's.
    "company": N_("a company's phone or email"),
}
# Mailboxes of a role, not a person (the part before @, or its first word: info.msk@, sales-spb@).
ROLE_MAILBOXES = frozenset({
    "info", "sales", "office", "zakaz", "zakazy", "order", "orders", "admin", "administrator", "support",
    "help", "helpdesk", "hello", "mail", "post", "contact", "contacts", "reception", "priemnaya", "secretary",
    "sekretar", "buh", "bukh", "buhgalter", "buhgalteria", "accounting", "finance", "hr", "kadry", "job",
    "jobs", "manager", "marketing", "press", "noreply", "no-reply", "team", "service", "shop", "store",
    "magazin", "billing", "otdel", "sale", "prodazhi", "snab", "zakupki", "tender", "welcome", "feedback",
    "webmaster", "postmaster", "abuse", "security", "director", "dir", "ceo", "general",
})
_ROLE_SPLIT = re.compile(r"[.\-_+]")


def shared_title(reason: Any) -> str:
    """Why a value is shared, in the reader's words; an unknown reason as it is."""
    return _(SHARED_TITLES[reason]) if reason in SHARED_TITLES else str(reason)


# A phone's or email's type as the source gave it (hub.records.LABELS), in the reader's words.
LABEL_TITLES = {
    "work": N_("work"),
    "mobile": N_("mobile"),
    "home": N_("home"),
    "fax": N_("fax"),
    "mailing": N_("for mailings"),
    "private": N_("private"),
    "other": N_("other"),
}


def label_title(label: Any) -> str:
    """A value's type in the reader's words ("рабочий"); an unknown type as it is, none as ""."""
    if not label:
        return ""
    return _(LABEL_TITLES[label]) if label in LABEL_TITLES else str(label)


def is_role_mailbox(address: str) -> bool:
    """info@, sales@, zakaz@, office.msk@ …: a mailbox a company reads, not one person."""
    local = address.split("@", 1)[0]
    return local in ROLE_MAILBOXES or _ROLE_SPLIT.split(local, 1)[0] in ROLE_MAILBOXES


@functools.lru_cache(maxsize=65536)
def _phone_type(value: str) -> int:
    try:
        return phonenumbers.number_type(phonenumbers.parse(value, None))
    except phonenumbers.NumberParseException:
        return phonenumbers.PhoneNumberType.UNKNOWN


def is_toll_free(phone: str) -> bool:
    """8-800 and 8-804 in Russia, and every country's free-to-call numbers: a company's line."""
    if phone.startswith("+7"):
        return phone.startswith(("+7800", "+7804"))
    return _phone_type(phone) == phonenumbers.PhoneNumberType.TOLL_FREE


def is_landline(phone: str) -> bool:
    """A fixed line rings in an office or a flat, where several people answer it."""
    if phone.startswith(("+73", "+74", "+78")):
        return True  # Russian area codes; +79 is a Russian mobile
    if phone.startswith("+79"):
        return False
    return _phone_type(phone) == phonenumbers.PhoneNumberType.FIXED_LINE  # +76/+77 Kazakhstan, and the world


def intrinsic_reason(kind: str, value: str, labels: Iterable[str] = ()) -> str | None:
    """Why a value can never identify one person by itself, whoever holds it; None if it can."""
    if "fax" in labels and not value.startswith("+79"):
        return "fax"  # (a Russian mobile typed as a fax is somebody's mobile)
    if kind == normalize.PHONE and is_toll_free(value):
        return "toll_free"
    if kind == normalize.EMAIL and is_role_mailbox(value):
        return "role_mailbox"
    return None


def _weak(kind: str, value: str, labels: set[str], holders: int) -> bool:
    """Whether the value is too common to join people whose names do not positively agree.

    Record-linkage weighs a match on a common value less; so does this. A
    value starts with weight 1, halved when the source calls it a work or
    home number, cut to 0.4 for a landline, then divided among its other
    holders; under a half it is weak: a mobile two or three records hold
    joins them (a person written three ways), a landline does not without
    the names, nor a mobile that four differently written records hold.
    """
    weight = 1.0
    if labels & {"work", "home"}:
        weight *= 0.5
    if kind == normalize.PHONE and is_landline(value):
        weight *= 0.4
    return weight / max(1, holders - 1) < 0.5


def finds_a_person(ident: Identifier) -> bool:
    """Whether this value alone can find its holder again: a valid mobile or a personal mailbox.

    An office line, a landline at home or a company mailbox cannot: a row
    holding nothing better is found again by what the row itself is (the
    importer's row key), not by joining whoever else holds the value.
    """
    if not ident.valid:
        return False
    if ident.label is None and ident.value.startswith("+79"):
        return True  # a Russian mobile nobody called a fax: the common case, answered at once
    labels = {ident.label} if ident.label else set()
    return intrinsic_reason(ident.kind, ident.value, labels) is None and not _weak(ident.kind, ident.value,
                                                                                    labels, 2)


@functools.lru_cache(maxsize=65536)
def reading(name: names.Name) -> tuple[str, str, str]:
    """A name exactly as written, but for case, spaces and ё: two records that read the same."""
    return names.fold(name.first or ""), names.fold(name.last or ""), names.fold(name.middle or "")


class _Groups:
    """Records and contacts joined into groups (a union-find), each knowing its contacts and its names.

    A group's names are how its records and contacts are written. A join
    that would put contradicting names in one group is refused (`join`), so
    a nameless row listing two people's mobiles cannot make Анна and Мария
    one person. A record's name is read only when its group is compared: a
    million-row import compares few groups.

    Nodes are plain values, cheap to hash in a chunk of ten thousand rows: a
    record is its index (an int >= 0), a contact its id negated (_is_contact),
    a reference its "source\\x1fexternal id" text. A node never seen is a
    group of its own.
    """

    def __init__(self, prepared: Sequence[Prepared]) -> None:
        self.parent: dict[Any, Any] = {}
        self.contacts: dict[Any, set[int]] = {}  # root -> contact ids in its group (absent: none)
        self.named: dict[Any, list[Any]] = {}  # root -> its members' names: a Name, or a record's index
        self._prepared = prepared
        # root -> (names_of, their readings), until the group changes
        self._read: dict[Any, tuple[list[names.Name], list[tuple[str, str, str]]]] = {}
        self._record_names: dict[int, tuple[names.Name, tuple[str, str, str]]] = {}  # index -> (name, reading)

    def find(self, x: Any) -> Any:
        parent = self.parent
        root = parent.get(x, x)
        if root == x:
            return x
        up = parent.get(root, root)
        while up != root:
            root, up = up, parent.get(up, up)
        while x != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def add(self, node: Any, name: names.Name | int | None) -> None:
        """Know a node and its name: a Name, a record's index (read when needed), or None."""
        root = self.find(node)
        if _is_contact(node):
            self.contacts.setdefault(root, set()).add(-node)
        if name is not None:
            self.named.setdefault(root, []).append(name)
            self._read.pop(root, None)

    def names_of(self, node: Any) -> list[names.Name]:
        """The group's names, one per way of writing."""
        return self.written(node)[0]

    def written(self, node: Any) -> tuple[list[names.Name], list[tuple[str, str, str]]]:
        """The group's names, one per way of writing, and beside them how each reads (`reading`)."""
        root = self.parent.get(node, node)
        if root != node:
            root = self.find(node)
        cached = self._read.get(root)
        if cached is not None:
            return cached
        out: dict[tuple[str, str, str], names.Name] = {}
        record_names = self._record_names
        for item in self.named.get(root, ()):
            if type(item) is int:
                known = record_names.get(item)
                if known is None:
                    name = _record_name(self._prepared[item].record)
                    known = record_names[item] = (name, reading(name))
                item, written = known
            else:
                written = reading(item)
            if written != _UNNAMED and written not in out:
                out[written] = item
        self._read[root] = found = (list(out.values()), list(out))
        return found

    def name_of(self, node: Any) -> names.Name:
        found = self.names_of(node)
        return found[0] if found else _NO_NAME

    def reading_of(self, node: Any) -> tuple[str, str, str]:
        """How the group's first name reads (reading(name_of(node)))."""
        found = self.written(node)[1]
        return found[0] if found else _UNNAMED

    def fits(self, a: Any, b: Any) -> bool:
        """Nothing in the two groups' names says they are different people."""
        (ours, ours_read), (theirs, theirs_read) = self.written(a), self.written(b)
        if len(ours) == len(theirs) == 1 and ours_read[0] == theirs_read[0]:
            return True  # one way of writing on both sides: a re-read, the commonest join of all
        compatible = names.compatible
        return all(compatible(x, y) for x in ours for y in theirs)

    def agree(self, a: Any, b: Any) -> bool:
        """The two groups' names positively say one person."""
        ours, theirs = self.names_of(a), self.names_of(b)
        return (all(names.compatible(x, y) for x in ours for y in theirs)
                and any(names.agree(x, y) for x in ours for y in theirs))

    def union(self, a: Any, b: Any) -> None:
        contacts = self.contacts
        ra, rb = self.find(a), self.find(b)
        if _is_contact(a):
            contacts.setdefault(ra, set()).add(-a)
        if _is_contact(b):
            contacts.setdefault(rb, set()).add(-b)
        if ra == rb:
            return
        self.parent[rb] = ra
        self._read.pop(ra, None)
        self._read.pop(rb, None)
        moved_contacts = contacts.pop(rb, None)
        if moved_contacts:
            contacts.setdefault(ra, set()).update(moved_contacts)
        moved_names = self.named.pop(rb, None)
        if moved_names:
            self.named.setdefault(ra, []).extend(moved_names)

    def join(self, a: Any, b: Any, apart: dict[tuple[int, int], frozenset[str]], key: str | None) -> str | None:
        """Union the two groups unless names contradict ("names") or a person kept them apart ("apart")."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return None
        if self.named.get(ra) and self.named.get(rb) and not self.fits(ra, rb):
            return "names"
        if apart and _kept_apart(self, ra, rb, apart, key):
            return "apart"
        self.union(a, b)
        return None


def _is_contact(node: Any) -> bool:
    """A contact's node in _Groups: its id negated (ids start at 1), apart from records' indexes."""
    return type(node) is int and node < 0


def _is_record(node: Any) -> bool:
    return type(node) is int and node >= 0


_UNNAMED = ("", "", "")
_NO_NAME = names.Name()


def _record_name(record: ContactRecord) -> names.Name:
    """A record's name as names compares it."""
    return names.Name(record.first_name, record.last_name, record.middle_name)


def resolve(
    conn: Connection,
    prepared: Sequence[Prepared],
    *,
    settings: Settings,
    now: dt.datetime | None = None,
    actor: str = "system",
) -> Resolution:
    """Attach each record to its contact, creating and merging contacts as the rule says.

    Runs inside the caller's transaction; the caller commits the chunk. A
    record a plugin refuses (the refuse_records hook) writes nothing, and its
    entry in `contact_ids` is None. Each merge tells plugins (contact_merged)
    and is logged as done by `actor` ("system" for syncs and imports).
    """
    from hub.plugins import get_pm

    refused: set[int] = set()
    if prepared:
        for answer in get_pm().hook.refuse_records(conn=conn, settings=settings, records=list(prepared)):
            refused.update(answer or ())
    if not refused:
        return _resolve(conn, prepared, settings=settings, now=now, actor=actor)
    kept = [i for i in range(len(prepared)) if i not in refused]
    result = _resolve(conn, [prepared[i] for i in kept], settings=settings, now=now, actor=actor)
    placed = dict(zip(kept, result.contact_ids, strict=True))
    result.contact_ids = [placed.get(i) for i in range(len(prepared))]
    result.refused = len(refused)
    return result


@dataclass
class _Found:
    """What the base already holds of a chunk's identifiers."""

    personal: dict[tuple[str, str], int] = field(default_factory=dict)  # value -> its one contact
    shared: dict[tuple[str, str], str] = field(default_factory=dict)  # value -> why it is shared
    holders: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # shared value -> contacts
    refs: dict[str, int] = field(default_factory=dict)  # "source\x1fexternal id" -> contact
    # (value, contact) -> the source that gave the contact the value: a row read again comes from it
    sources: dict[tuple[tuple[str, str], int], str] = field(default_factory=dict)
    # shared values more holders have than SHARED_JOIN_LIMIT: they join nobody, so their holders are not read
    saturated: set[tuple[str, str]] = field(default_factory=set)
    # values that are a company's own line or mailbox (hub.companies): shared, whoever holds them
    company: set[tuple[str, str]] = field(default_factory=set)
    # shared values that join nobody (NEVER_JOIN), whose holders were not read (_read_unread)
    unread: set[tuple[str, str]] = field(default_factory=set)


def _resolve(conn: Connection, prepared: Sequence[Prepared], *, settings: Settings,
             now: dt.datetime | None, actor: str) -> Resolution:
    """The identity rule for one chunk, in four steps.

    1. A record is the contact its reference names (or the caller says it is).
    2. What the base already says of each value is read, and which values
       several holders have (only those are weighed).
    3. Records and contacts are joined in a union-find that refuses to put
       contradicting names together: strong personal values first, weak ones
       among the groups those made, shared ones where names agree. A value a
       join was refused on becomes shared. Groups holding several contacts
       merge into the oldest.
    4. Contacts, identities and references are written with bulk statements.
    """
    now = now or utcnow()
    result = Resolution()
    if not prepared:
        return result

    lock_keys(conn, prepared)  # before anything is read: a concurrent writer of the same person goes first
    found = _lookup(conn, prepared)
    uf = _Groups(prepared)
    named = uf.named
    refs_found = found.refs
    # A reference one record alone names joins nothing: only repeated ones go into the union-find.
    ref_of = [f"{p.record.source}\x1f{p.record.external_id}" if p.record.external_id else None for p in prepared]
    repeated = {ref for ref, n in Counter(ref_of).items() if n > 1 and ref is not None}
    by_value: dict[tuple[str, str], list[int]] = {}
    labels: dict[tuple[str, str], set[str]] = {}
    for i, p in enumerate(prepared):
        rec = p.record
        if rec.first_name or rec.last_name or rec.middle_name:
            named[i] = [i]  # a record's own group until step 3 joins it (nothing joined it yet)
        if p.contact_id is not None:
            uf.union(i, -p.contact_id)
        ref = ref_of[i]
        if ref is not None:
            if ref in repeated:
                uf.union(i, ref)
            if ref in refs_found:
                uf.union(i, -refs_found[ref])
        for ident in p.identifiers:
            if ident[3]:  # valid
                key = ident[:2]  # (kind, value)
                holders = by_value.get(key)
                if holders is None:
                    by_value[key] = [i]
                elif holders[-1] != i:
                    holders.append(i)
                if ident[4]:  # label
                    labels.setdefault(key, set()).add(ident[4])

    # Step 2: what the base already says of each value, and who holds it. Most values of a chunk
    # have one holder and pass straight through; only contested ones are weighed.
    decided: dict[tuple[str, str], str | None] = {}
    held: dict[tuple[str, str], list[Any]] = {}  # contested value -> the nodes holding it
    shared_found, personal_found, holders_found = found.shared, found.personal, found.holders
    for key, recs in by_value.items():
        reason = shared_found.get(key)
        if reason is None:
            if not (key[0] == normalize.PHONE and key[1].startswith("+79")):
                # (a Russian mobile is never a hotline nor a fax: the common case, answered at once)
                reason = intrinsic_reason(key[0], key[1], labels[key] if key in labels else ())
            if reason is None and key in found.company:
                # two colleagues at one switchboard are two people (a small firm's main line is often a mobile)
                reason = companies.COMPANY
            if reason is not None:
                result.shared[key] = reason
        decided[key] = reason
        holder = personal_found.get(key)
        if (len(recs) == 1 and holder is None and key not in holders_found) or reason in NEVER_JOIN \
                or key in found.saturated:
            continue
        nodes: list[Any] = list(recs)
        if holder is not None:
            nodes.append(-holder)
        nodes.extend(-cid for cid in found.holders.get(key, ()))
        held[key] = nodes
    contacts_named: set[int] = set().union(*uf.contacts.values())
    contacts_named.update(-node for nodes in held.values() for node in nodes if _is_contact(node))
    for cid, name in _load_names(conn, contacts_named).items():
        uf.add(-cid, name)
    apart = _apart_pairs(conn, contacts_named) if contacts_named else {}

    # Step 3: join. A person's own strong values first (a mobile, a personal email), then the weak
    # ones (an office or home line) among the groups those made, then shared values between
    # holders whose names agree. No join puts contradicting names in one group: the value that
    # would is several people's.
    weak: list[tuple[str, str]] = []
    dropped: set[tuple[int, tuple[str, str]]] = set()  # (record, value) a kept-apart pair's old evidence
    for key, nodes in held.items():
        if decided[key] is not None:
            continue
        if _weak_among(uf, key, labels.get(key, set()), nodes):
            weak.append(key)
            continue
        refused = _join_all(uf, nodes, apart, key)
        if refused == "names":
            decided[key] = result.shared[key] = "names"
        elif refused == "apart":
            # The old evidence of a pair kept apart: a record's own word (it has a reference) makes the
            # value both people's; a row of nobody's own is not heard on it.
            if any(prepared[n].record.external_id for n in nodes if _is_record(n)):
                decided[key] = result.shared[key] = "unmerged"
            else:
                owner = uf.find(-found.personal[key] if key in found.personal else nodes[0])
                dropped.update((n, key) for n in nodes if _is_record(n) and uf.find(n) != owner)
    for key in weak:
        holding = {uf.find(n) for n in held[key]}
        pairs = list(itertools.combinations(holding, 2))
        if not all(uf.fits(a, b) for a, b in pairs):
            decided[key] = result.shared[key] = "names"
        elif sum(1 for g in holding if uf.contacts.get(g)) > 1 or not all(uf.agree(a, b) for a, b in pairs):
            decided[key] = result.shared[key] = "common"  # an office line attaches; it never merges people
        elif _join_all(uf, held[key], apart, key):
            decided[key] = result.shared[key] = "common"
    for key, nodes in held.items():
        if decided[key] is not None and decided[key] not in NEVER_JOIN:
            _join_agreeing(uf, key, nodes, prepared, apart, found)

    groups: dict[Any, list[int]] = {}
    parent, find = uf.parent, uf.find
    roots: list[Any] = []
    for i in range(len(prepared)):
        root = parent.get(i, i)
        if root != i:
            root = find(i)
        roots.append(root)
        members = groups.get(root)
        if members is None:
            groups[root] = [i]
        else:
            members.append(i)

    if found.unread:
        _read_unread(conn, found, prepared, [i for root, members in groups.items()
                                             if len(uf.contacts.get(root, ())) > 1 for i in members])

    # Values found shared are marked on the contact that held them alone until now (also where a
    # concurrent writer left one personal row beside shared ones), in one statement.
    marks = [{"_kind": key[0], "_value": key[1], "_why": reason} for key, reason in decided.items()
             if reason is not None and key in found.personal]
    if marks:
        c = identities_t.c
        conn.execute(update(identities_t).where(c.kind == bindparam("_kind"), c.value == bindparam("_value"), c.valid,
                                                c.shared.is_(None)).values(shared=bindparam("_why")), marks)

    target_ids = {c for root, held_ids in uf.contacts.items() if root in groups for c in held_ids}
    contact_rows = _load_contacts(conn, target_ids)
    new_groups: list[tuple[Any, dict[str, Any]]] = []
    alike: dict[Any, Any] = {}  # the JSON payloads new contacts share (_fresh_contact)
    updates: dict[int, dict[str, Any]] = {}
    group_target: dict[Any, int] = {}
    contacts_of = uf.contacts.get
    for root, members in groups.items():
        held_ids = contacts_of(root)
        if not held_ids:  # a new person: the commonest case
            if len(members) == 1:
                new_groups.append((root, _fresh_contact(prepared[members[0]].record, now, alike)))
            else:
                row = _empty_contact(now)
                _apply_records(row, [prepared[i].record for i in members])
                new_groups.append((root, row))
            continue
        ids = sorted(held_ids)
        if len(ids) > 1:
            survivor = ids[0]
            for other in ids[1:]:
                reason_ = _merge_reason(prepared, members, survivor, other, found)
                if actor != "system":
                    reason_["via"] = [actor]
                merge_contacts(conn, survivor, other, reason=reason_, settings=settings, now=now, actor=actor)
                result.merged.append((survivor, other))
            contact_rows[survivor] = _load_contacts(conn, {survivor})[survivor]
        target = ids[0]
        row = contact_rows[target]
        if _apply_records(row, [prepared[i].record for i in members]):
            updates[target] = row
        group_target[root] = target

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
    targets = [group_target[root] for root in roots]
    result.contact_ids = list(targets)
    personal = found.personal
    add_identity = identity_rows.append
    written: set[tuple[int, str, str]] = set()  # (contact, kind, value) of the rows above
    for i, p in enumerate(prepared):
        target = targets[i]
        source = p.record.source
        for kind, value, raw, valid, label in p.identifiers:
            shared = None
            if not valid:
                if kind == normalize.PHONE:
                    result.invalid_phones += 1
                else:
                    result.invalid_emails += 1
            else:
                key = (kind, value)
                shared = decided[key]
                if dropped and (i, key) in dropped:
                    continue  # old evidence of a pair kept apart, from a row of nobody's own
                if shared is None and key in personal:
                    continue  # already the target's: the record joined the contact holding it
            if (target, kind, value) in written:
                continue  # the contact's row is in already: INSERT OR IGNORE would keep that first one too
            written.add((target, kind, value))
            add_identity({"contact_id": target, "kind": kind, "value": value, "raw": raw, "valid": valid,
                          "source": source, "created_at": now, "label": label, "shared": shared})
        if p.record.external_id:
            ref_rows.append({"source": source, "external_id": p.record.external_id, "contact_id": target,
                             "created_at": now, "deleted_at": None,
                             "responsible_id": companies.text(p.record.responsible_id, 64)})
    if identity_rows:
        bulk_insert(conn, identities_t, identity_rows, ignore_conflicts=True)
    if ref_rows:
        # References the lookup did not find are new (their keys are locked, or SQLite has one writer):
        # they take the bulk path, as a full sync's all do; known ones are upserted.
        unique = _dedupe_refs(ref_rows)
        known = [r for r in unique if f"{r['source']}\x1f{r['external_id']}" in found.refs]
        if len(known) < len(unique):
            bulk_insert(conn, refs_t, [dict(r, pushed={}) for r in unique
                                       if f"{r['source']}\x1f{r['external_id']}" not in found.refs])
        if known:
            ins = insert_for(conn, refs_t)
            stmt = ins.on_conflict_do_update(
                index_elements=["source", "external_id"],
                # The record's manager as the source says now; a record that does not say keeps the last known.
                set_={"contact_id": ins.excluded.contact_id, "deleted_at": None,
                      "responsible_id": func.coalesce(ins.excluded.responsible_id, refs_t.c.responsible_id)},
            )
            conn.execute(stmt, known)
        linkable: dict[str, set[str]] = defaultdict(set)
        for r in ref_rows:
            linkable[r["source"]].add(r["external_id"])
        link_orphan_orders(conn, linkable)
        activities.link_orphans(conn, linkable)
        companies.remember_members(conn, [p.record for p in prepared], result.contact_ids)
    return result


# A shared value more holders than this have (a big company's switchboard, a placeholder number a shop
# types for everyone) carries too little evidence to join anyone, names or not.
SHARED_JOIN_LIMIT = 20


# Holders of one value whose names are compared pairwise to count the people among them; beyond this
# many ways of writing, each counts as one (a switchboard's holders are colleagues, not re-readings).
PEOPLE_COMPARED = 6


def _weak_among(uf: _Groups, key: tuple[str, str], labels: set[str], nodes: list[Any]) -> bool:
    """Whether a value is weak (_weak) among these holders, counted as the people they may be.

    Holders written the same way are one person read twice, and so are
    holders whose names positively agree (Шестаков Юрий Андреевич and
    Шестаков Юрий): a work mailbox on those two rows and on a third that says
    only "Юрий" is held by two people at most, not three, and joins all three
    when their names fit, as a mobile two people hold would. A holder counts
    with a group only when its name agrees with every name in it (Ю. Ким
    agrees with Юрий Ким and with Юлия Ким, who are two people). Names are
    compared only where the count decides the answer.
    """
    kind, value = key
    if len(nodes) <= 2 or _weak(kind, value, labels, 1) or not _weak(kind, value, labels, len(nodes)):
        return _weak(kind, value, labels, len(nodes))  # (the names cannot change the answer)
    ways = list({uf.reading_of(n): n for n in nodes}.values())
    if not _weak(kind, value, labels, len(ways)) or len(ways) > PEOPLE_COMPARED:
        return _weak(kind, value, labels, len(ways))
    people: list[list[Any]] = []
    for node in ways:
        same = next((person for person in people if all(uf.agree(node, other) for other in person)), None)
        if same is None:
            people.append([node])
        else:
            same.append(node)
    return _weak(kind, value, labels, len(people))


def _join_all(uf: _Groups, nodes: list[Any], apart: dict[tuple[int, int], frozenset[str]],
              key: tuple[str, str]) -> str | None:
    """Join every holder of a personal value; the first refusal, if any ("names" or "apart")."""
    refused = None
    for node in nodes[1:]:
        refused = uf.join(nodes[0], node, apart, f"{key[0]}:{key[1]}") or refused
    return refused


def _join_agreeing(uf: _Groups, key: tuple[str, str], nodes: list[Any], prepared: Sequence[Prepared],
                   apart: dict[tuple[int, int], frozenset[str]], found: _Found) -> None:
    """Join a record of this chunk to another holder of a shared value when their names agree.

    A record also joins the contact it is a re-reading of: a holder whose
    name reads exactly the same and who got the value from the record's own
    source (a spreadsheet imported again). Names and a shared value attach a
    record; they never merge two contacts already known (only a person's own
    value does). A record that would join two contacts is ambiguous (a son
    and his father, both Николай Григорьев, at one home phone) and joins
    neither; a pair kept apart stays apart; a value more than
    SHARED_JOIN_LIMIT groups hold joins nobody.
    """
    find = uf.find
    roots = {find(node) for node in nodes}
    if len(roots) > SHARED_JOIN_LIMIT or len(roots) < 2:
        return  # (one group: nobody left to join)
    # Names that agree always share one of names.keys: only groups in a common bucket are compared.
    buckets: dict[Any, set[Any]] = defaultdict(set)
    keys_of = names.keys
    for root in roots:
        for name, written in zip(*uf.written(root), strict=True):
            for bucket in keys_of(name):
                buckets[bucket].add(root)
            buckets[written].add(root)  # a re-read row is found by how it is written
    for rec in nodes:
        if not _is_record(rec):
            continue
        mine = find(rec)
        known = bool(uf.contacts.get(mine))
        source = prepared[rec].record.source
        own_names, own_read = uf.written(mine)
        written = own_read[0] if own_read else _UNNAMED
        near = {find(r) for name, read in zip(own_names, own_read, strict=True) for bucket in (*keys_of(name), read)
                for r in buckets.get(bucket, ())}
        partners = []
        for other in near:
            theirs = uf.contacts.get(other)
            if other == mine or (known and theirs):
                continue
            if uf.agree(mine, other) or (
                    theirs and written == uf.reading_of(other)
                    and any(found.sources.get((key, cid)) == source for cid in theirs)):
                partners.append(other)
        if sum(1 for p in partners if uf.contacts.get(p)) > 1:
            partners = [p for p in partners if not uf.contacts.get(p)]  # ambiguous between people
        for other in partners:
            uf.join(mine, other, apart, None)


def _dedupe_refs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # One statement may not touch the same conflict key twice on PostgreSQL.
    unique: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        unique[(row["source"], row["external_id"])] = row
    return list(unique.values())


def _lookup(conn: Connection, prepared: Sequence[Prepared]) -> _Found:
    by_kind: dict[str, set[str]] = defaultdict(set)
    refs: dict[str, set[str]] = defaultdict(set)
    for p in prepared:  # Prepared.keys, read without building each record's list
        for ident in p.identifiers:
            if ident[3]:  # valid
                by_kind[ident[0]].add(ident[1])
        if p.record.external_id:
            refs[p.record.source].add(p.record.external_id)
    found = _Found()
    c = identities_t.c
    for kind, values in by_kind.items():
        for part in chunks(sorted(values), LOOKUP_CHUNK):
            # Two statements, each matching one partial index exactly (SQLite uses a partial
            # index only for a WHERE that implies the index's own).
            for value, contact_id in conn.execute(
                select(c.value, c.contact_id).where(c.kind == kind, c.valid, c.shared.is_(None),
                                                    among(conn, c.value, part))
            ):
                found.personal[(kind, value)] = contact_id
            # A shared value's holders are read only where they can join someone: a hotline or an
            # info@ mailbox that joins nobody (NEVER_JOIN) is held by ever more contacts as the base
            # grows, and reading them all for every chunk made an import's lookups grow with the
            # square of its size. Its latest row's reason, all that is used of it, is one row.
            joinable = []
            for value, reason in conn.execute(_latest_reasons(conn, kind, part)):
                found.shared[(kind, value)] = reason
                if reason in NEVER_JOIN:
                    found.unread.add((kind, value))
                else:
                    joinable.append(value)
            if joinable:
                for value, contact_id, reason, source in conn.execute(
                    select(c.value, c.contact_id, c.shared, c.source).where(c.kind == kind, c.shared.is_not(None),
                                                                            among(conn, c.value, joinable))
                    .order_by(c.id)  # (_held_by takes them in order: the latest row's reason stays)
                ):
                    _held_by(found, (kind, value), contact_id, reason, source)
    found.company = companies.company_values(conn, [(kind, value) for kind, values in by_kind.items()
                                                    for value in values])
    for source, ids in refs.items():
        for part in chunks(sorted(ids), LOOKUP_CHUNK):
            rows = conn.execute(
                select(refs_t.c.external_id, refs_t.c.contact_id).where(
                    refs_t.c.source == source, among(conn, refs_t.c.external_id, part)
                )
            )
            for external_id, contact_id in rows:
                found.refs[f"{source}\x1f{external_id}"] = contact_id
    return found


def _held_by(found: _Found, key: tuple[str, str], contact_id: int, reason: str, source: str) -> None:
    """Take in one row of a shared value (in the order of its rows), as _lookup reads them."""
    found.shared[key] = reason
    if reason not in NEVER_JOIN and key not in found.saturated:
        holders = found.holders.setdefault(key, [])
        holders.append(contact_id)
        found.sources[(key, contact_id)] = source
        if len(holders) > SHARED_JOIN_LIMIT:
            found.saturated.add(key)
            for cid in found.holders.pop(key):
                found.sources.pop((key, cid), None)


def _latest_reasons(conn: Connection, kind: str, values: Sequence[str]) -> Any:
    """(value, why its latest row is shared) for each of the values held as shared: one row each.

    Each value's latest row is found in the partial index on shared values,
    read backwards, and only that row is read: a value a thousand contacts
    hold costs no more than one.
    """
    wanted = bound_values(conn, values, identities_t.c.value.type)
    row = identities_t.alias("latest")
    latest = (select(row.c.id).where(row.c.kind == kind, row.c.shared.is_not(None), row.c.value == wanted.c.value)
              .order_by(row.c.id.desc()).limit(1).correlate(wanted).scalar_subquery())
    c = identities_t.c
    return select(c.value, c.shared).where(c.id.in_(select(latest).select_from(wanted)))


def _read_unread(conn: Connection, found: _Found, prepared: Sequence[Prepared], records: Iterable[int]) -> None:
    """Read the holders _lookup left unread (found.unread) of these records' values, as it would have.

    Only a merge's log names them (_merge_reason): called for the records of
    merging groups, before anything of the chunk is written.
    """
    c = identities_t.c
    for key in sorted({k for i in records for k in prepared[i].keys if k in found.unread}):
        found.unread.discard(key)
        for contact_id, reason, source in conn.execute(
                select(c.contact_id, c.shared, c.source).where(c.kind == key[0], c.shared.is_not(None),
                                                               c.value == key[1]).order_by(c.id)):
            _held_by(found, key, contact_id, reason, source)


def _load_names(conn: Connection, ids: set[int]) -> dict[int, names.Name]:
    out: dict[int, names.Name] = {}
    c = contacts_t.c
    for part in chunks(sorted(ids), LOOKUP_CHUNK):
        for cid, first, last, middle in conn.execute(
                select(c.id, c.first_name, c.last_name, c.middle_name).where(among(conn, c.id, part))):
            out[cid] = names.Name(first, last, middle)
    return out


def _apart_pairs(conn: Connection, ids: set[int]) -> dict[tuple[int, int], frozenset[str]]:
    """Pairs among these contacts a person said are two people, with the values that had joined them."""
    out: dict[tuple[int, int], frozenset[str]] = {}
    c = apart_t.c
    for part in chunks(sorted(ids), LOOKUP_CHUNK):
        for low, high, keys in conn.execute(select(c.low_id, c.high_id, c["keys"]).where(among(conn, c.high_id, part))):
            if low in ids:
                out[(low, high)] = frozenset(keys or ())
    return out


def _kept_apart(uf: _Groups, a: Any, b: Any, apart: dict[tuple[int, int], frozenset[str]],
                key: str | None) -> bool:
    """Whether joining these two groups would join a pair kept apart, on evidence that does not count.

    Through a shared value (key None) nothing joins them again; through a
    personal value, only one that did not join them before.
    """
    for x in uf.contacts.get(uf.find(a), ()):
        for y in uf.contacts.get(uf.find(b), ()):
            old = apart.get((min(x, y), max(x, y)))
            if old is not None and (key is None or key in old):
                return True
    return False


_CONTACT_COLUMNS = FIELDS + ("tags", "attributes", "provenance", "name_key")


def name_key(last_name: str | None, first_name: str | None) -> str | None:
    """The key namesakes share: case and ё/е do not make two names different."""
    last = last_name.strip() if last_name else ""
    first = first_name.strip() if first_name else ""
    text = f"{last} {first}" if last and first else last or first
    return text.lower().replace("ё", "е")[:NAME_KEY_MAX] or None


NAME_KEY_MAX = text_length(Contact.__table__.c.name_key)  # two names of 200 and the space between would be 401


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


_fields_of = operator.attrgetter(*FIELDS)


def _fresh_contact(record: ContactRecord, now: dt.datetime, alike: dict[Any, Any]) -> dict[str, Any]:
    """A new contact made of one record: _empty_contact filled by _apply_records, in one pass.

    Most rows of an import are a person seen once; this is their row without
    the before-and-after comparison an existing contact needs. Rows made
    alike share one provenance and one attributes object from `alike` (a
    chunk's rows differ in a few patterns), which the bulk insert then
    encodes as JSON once: the rows are written, never changed afterwards.
    """
    source = record.source
    values = _fields_of(record)
    # A field is text, a date or None: "" and None are what _apply_records skips, and all that is false.
    filled = tuple(map(bool, values))
    row = dict(zip(FIELDS, [v or None for v in values], strict=True))
    provenance = alike.get(("provenance", source, filled))
    if provenance is None:
        provenance = {name: source for name, has in zip(FIELDS, filled, strict=True) if has}
        provenance["created_from"] = source
        alike[("provenance", source, filled)] = provenance
    attributes = record.attributes
    if attributes:
        try:
            key: Any = ("attributes", tuple(attributes.items()), tuple(map(type, attributes.values())))  # 1 is not True
            hash(key)
        except TypeError:  # a list or a dict among the values: this record's own object
            key = None
        plain = alike.get(key) if key is not None else None
        if plain is None:
            plain = custom_fields.plain(attributes)
            if key is not None:
                alike[key] = plain
    else:
        plain = {}
    row.update(name_key=name_key(row["last_name"], row["first_name"]),
               tags=list(dict.fromkeys(record.tags)) if record.tags else [], attributes=plain,
               provenance=provenance, orders_count=0, revenue=0, first_order_at=None, last_order_at=None,
               created_at=now, updated_at=now, deleted_at=None, timezone=None)
    return row


_INITIAL_FIELDS = frozenset({"first_name", "middle_name"})


def _spells_out(current: Any, value: Any) -> bool:
    """Whether the value is the whole word of an initial the contact holds: «Д.» and then «Дмитрий».

    An initial is all one source knew; a letter greets «Дмитрий», not «Д.», once any source says it.
    """
    return (isinstance(current, str) and isinstance(value, str) and len(current.rstrip(".")) == 1
            and len(value) > 1 and value[-1] != "." and value[0].casefold() == current[0].casefold())


def _apply_records(row: dict[str, Any], records: Iterable[ContactRecord]) -> bool:
    """Fill the contact from records; returns whether it ends up different.

    An empty field takes the first value offered. A filled field changes only
    when the source that gave the value now gives another (the source corrected
    it), or when it is an initial the value spells out (_spells_out); another
    source's different value does not overwrite, so two systems
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
            if current is None or current == "" or (current != value and provenance.get(name) == source) \
                    or (name in _INITIAL_FIELDS and _spells_out(current, value)):
                row[name] = value
                provenance[name] = source
        if record.tags:
            row["tags"] = list(dict.fromkeys(row["tags"] + list(record.tags)))
        if record.attributes:
            row["attributes"].update(custom_fields.plain(record.attributes))
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


def _merge_reason(prepared: Sequence[Prepared], members: list[int], survivor: int, other: int,
                  found: _Found) -> dict[str, Any]:
    """Which identifiers of the incoming records tied the two contacts together."""
    def held(key: tuple[str, str]) -> bool:
        if key[0] == "ref":
            return found.refs.get(key[1]) in (survivor, other)
        return (found.personal.get(key) in (survivor, other)
                or bool({survivor, other} & set(found.holders.get(key, ()))))
    keys = sorted({f"{k[0]}:{k[1]}".replace("\x1f", "/") for i in members for k in prepared[i].keys if held(k)})
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
    from hub import consent, contact_notes  # consent imports identity for lookups
    from hub.plugins import get_pm

    now = now or utcnow()
    rows = _load_contacts(conn, {survivor, merged})
    keep, gone = rows[survivor], rows[merged]
    snapshot = _snapshot(conn, merged, gone, survivor)
    # The fields the survivor takes from the merged contact: an unmerge empties them again, even when both
    # contacts came from one source (two rows of one export), where provenance cannot tell them apart.
    snapshot["filled"] = []
    for name in FIELDS:
        if keep[name] in (None, "") and gone[name] not in (None, ""):
            keep[name] = gone[name]
            keep["provenance"][name] = gone["provenance"].get(name, f"merge:{merged}")
            snapshot["filled"].append(name)
    keep["name_key"] = name_key(keep["last_name"], keep["first_name"])
    keep["tags"] = list(dict.fromkeys(keep["tags"] + gone["tags"]))
    keep["attributes"] = gone["attributes"] | keep["attributes"]

    stricter = consent.stricter_states(conn, survivor, merged)
    # The survivor already has these identifiers' valid twins: drop the duplicates first.
    dup = select(identities_t.c.value).where(identities_t.c.contact_id == survivor)
    conn.execute(delete(identities_t).where(and_(identities_t.c.contact_id == merged,
                                                  identities_t.c.value.in_(dup.scalar_subquery()))))
    for table in (identities_t, refs_t, orders_t, consent.events_t, contact_notes.notes_t):
        conn.execute(update(table).where(table.c.contact_id == merged).values(contact_id=survivor))
    consent.restate(conn, [survivor])  # the merged contact's answers are the survivor's now
    activities.move_on_merge(conn, survivor, merged)
    companies.move_on_merge(conn, survivor, merged)
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


def _snapshot(conn: Connection, contact_id: int, row: dict[str, Any], survivor: int) -> dict[str, Any]:
    """What the merged contact held, and which values the survivor already had: enough to undo the merge."""
    from hub import consent, contact_notes  # consent imports identity for lookups

    c = identities_t.c
    idents = conn.execute(select(c.kind, c.value, c.raw, c.valid, c.source, c.label, c.shared)
                          .where(c.contact_id == contact_id))
    survivor_idents = conn.execute(select(c.kind, c.value).where(c.contact_id == survivor))
    refs = conn.execute(select(refs_t.c.source, refs_t.c.external_id).where(refs_t.c.contact_id == contact_id))
    orders = conn.execute(select(orders_t.c.id).where(orders_t.c.contact_id == contact_id)).scalars()
    logged = conn.execute(select(activities.activities_t.c.id).where(activities.activities_t.c.contact_id == contact_id)
                          .order_by(activities.activities_t.c.id)).scalars()
    events = conn.execute(select(consent.events_t.c.id).where(consent.events_t.c.contact_id == contact_id))
    notes = contact_notes.ids_of(conn, contact_id)
    fields = {name: (row[name].isoformat() if isinstance(row[name], dt.date) else row[name]) for name in FIELDS}
    since = conn.execute(select(contacts_t.c.created_at, contacts_t.c.timezone)
                         .where(contacts_t.c.id == contact_id)).first()
    return {
        "fields": fields,
        "created_at": since.created_at.isoformat() if since is not None and since.created_at else None,
        "timezone": since.timezone if since is not None else None,
        "provenance": row["provenance"],
        "tags": row["tags"],
        "attributes": row["attributes"],
        "identities": [dict(r._mapping) for r in idents],
        "external_refs": [dict(r._mapping) for r in refs],
        "survivor_identities": [[kind, value] for kind, value in survivor_idents],
        "order_ids": list(orders),
        "activity_ids": list(logged),
        "consent_event_ids": list(events.scalars()),
        "note_ids": notes,
    }


def refresh_stats(conn: Connection, contact_ids: Iterable[int]) -> None:
    """Recompute orders_count, revenue, first and last order from won orders.

    Set-based, two statements a chunk: the grouped won orders written through
    UPDATE … FROM, then zeros for contacts left with no won order. A sync
    touches thousands of contacts a page; four correlated subqueries per
    contact cost more than the rest of writing the page.

    The orders are found by contact alone and "won" is decided in the
    aggregates: with `status = 'won'` in the WHERE, SQLite (which has no
    planner statistics in Hub's databases) read them through the status
    index, every won order of the base for every chunk, so a full sync's
    stats grew with the square of its size and an incremental page with a
    few orders read them all.
    """
    ids = sorted(set(contact_ids))
    o = orders_t.c
    won = o.status == "won"
    count_won = func.count(case((won, 1)))
    for part in chunks(ids, LOOKUP_CHUNK):
        stats = (select(o.contact_id, count_won.label("n"), func.sum(case((won, o.amount))).label("total"),
                        func.min(case((won, o.closed_at))).label("first"),
                        func.max(case((won, o.closed_at))).label("last"))
                 .where(among(conn, o.contact_id, part)).group_by(o.contact_id).having(count_won > 0).subquery())
        conn.execute(update(contacts_t).where(contacts_t.c.id == stats.c.contact_id)
                     .values(orders_count=stats.c.n, revenue=stats.c.total, first_order_at=stats.c.first,
                             last_order_at=stats.c.last))
        any_won = select(o.id).where(o.contact_id == contacts_t.c.id, won)
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
    """The one contact holding a valid normalized phone or email as their own, if any.

    A shared value (info@, a switchboard) names no one person, so it finds nobody here.
    """
    return conn.execute(
        select(identities_t.c.contact_id).where(
            identities_t.c.kind == kind, identities_t.c.value == value, identities_t.c.valid,
            identities_t.c.shared.is_(None)
        )
    ).scalar()


# --- which live contact a key names -----------------------------------------------------------
#
# One answer for everything outside that names a person (the HTTP API, plugins): a contact id, a
# reference (source, external_id) or a normalized phone or email. A live contact exists (an id
# merged away names its survivor), is not deleted in every source, not erased, and not a signup's
# placeholder (placeholders are kept deleted); a deleted reference and a shared value name nobody.

ContactKey = int | tuple[str, str] | str


def find_contacts(conn: Connection, keys: Sequence[ContactKey]) -> list[int | None]:
    """The live contact each key names, or None; a handful of queries for any number of keys.

    A key is a contact id, a (source, external_id) reference, or a
    normalized phone (E.164) or email (anything with an @ is an email).
    """
    holders = _holders(conn, keys)
    current = _current_ids(conn, {cid for cid in holders if cid is not None})
    live = _live_ids(conn, {cid for cid in current.values() if cid is not None})
    out: list[int | None] = []
    for cid in holders:
        now = current.get(cid) if cid is not None else None
        out.append(now if now in live else None)
    return out


def held(conn: Connection, keys: Sequence[ContactKey]) -> list[bool]:
    """Whether the base holds each key at all, live or not (a deleted contact's phone is held).

    What tells "nobody has it, make a new contact" from "somebody not to act on has it, refuse".
    """
    holders = _holders(conn, keys, deleted_refs=True)
    return [cid is not None for cid in holders]


def shared_keys(conn: Connection, keys: Sequence[ContactKey]) -> list[bool]:
    """Whether each key is a phone or email the base holds as several people's (an office switchboard).

    Such a value names nobody (find_contacts answers None), yet it is not
    unknown either: a caller says "shared, name the person another way"
    rather than "nobody has it", and never makes a new contact from it.
    """
    values: dict[str, set[str]] = defaultdict(set)
    for key in keys:
        if isinstance(key, str):
            values[normalize.EMAIL if "@" in key else normalize.PHONE].add(key)
    found: set[str] = set()
    c = identities_t.c
    for kind, wanted in sorted(values.items()):
        for part in chunks(sorted(wanted), LOOKUP_CHUNK):
            found.update(conn.execute(select(c.value).where(c.kind == kind, c.valid, c.shared.is_not(None),
                                                            among(conn, c.value, part))).scalars())
    return [isinstance(key, str) and key in found for key in keys]


def _holders(conn: Connection, keys: Sequence[ContactKey], *, deleted_refs: bool = False) -> list[int | None]:
    """The contact id each key points at as stored (before merges and liveness are looked at)."""
    refs: dict[str, set[str]] = defaultdict(set)
    values: dict[str, set[str]] = defaultdict(set)
    for key in keys:
        if isinstance(key, tuple):
            refs[key[0]].add(key[1])
        elif isinstance(key, str):
            values[normalize.EMAIL if "@" in key else normalize.PHONE].add(key)
    by_ref: dict[tuple[str, str], int] = {}
    r = refs_t.c
    for source, wanted in sorted(refs.items()):
        for part in chunks(sorted(wanted), LOOKUP_CHUNK):
            q = select(r.external_id, r.contact_id).where(r.source == source, among(conn, r.external_id, part))
            if not deleted_refs:
                q = q.where(r.deleted_at.is_(None))
            by_ref.update(((source, ext), cid) for ext, cid in conn.execute(q))
    by_value: dict[str, int] = {}
    c = identities_t.c
    for kind, wanted in sorted(values.items()):
        for part in chunks(sorted(wanted), LOOKUP_CHUNK):
            # The partial unique index on personal values, exactly: a shared value names nobody.
            by_value.update((value, cid) for value, cid in conn.execute(select(c.value, c.contact_id).where(
                c.kind == kind, c.valid, c.shared.is_(None), among(conn, c.value, part))))
    # contacts.id is a 32-bit integer on PostgreSQL: a bigger id names nobody there (and cannot be compared).
    top = 2**31 - 1 if conn.dialect.name == "postgresql" else MAX_ROW_ID
    out: list[int | None] = []
    for key in keys:
        if isinstance(key, bool):
            out.append(None)
        elif isinstance(key, int):
            out.append(key if 0 < key <= top else None)
        elif isinstance(key, tuple):
            out.append(by_ref.get((key[0], key[1])))
        else:
            out.append(by_value.get(key))
    return out


def _current_ids(conn: Connection, ids: set[int]) -> dict[int, int | None]:
    """current_contact_id for many ids at once: a few queries per hop of the merge chains, not per id."""
    out: dict[int, int | None] = {}
    at: dict[int, int] = {cid: cid for cid in ids}  # asked id -> where its chain is now
    seen: dict[int, set[int]] = {cid: set() for cid in ids}
    for _hop in range(MAX_MERGE_HOPS):
        if not at:
            break
        here = sorted(set(at.values()))
        erased: set[int] = set()
        existing: set[int] = set()
        for part in chunks(here, LOOKUP_CHUNK):
            erased.update(conn.execute(select(erasures_t.c.contact_id)
                                       .where(among(conn, erasures_t.c.contact_id, part))).scalars())
            existing.update(conn.execute(select(contacts_t.c.id).where(among(conn, contacts_t.c.id, part))).scalars())
        missing = sorted(set(here) - erased - existing)
        survivor: dict[int, int] = {}
        m = merges_t.c
        for part in chunks(missing, LOOKUP_CHUNK):
            for merged, surv in conn.execute(select(m.merged_id, m.survivor_id).where(among(conn, m.merged_id, part))
                                             .order_by(m.id)):
                survivor[merged] = surv  # the latest merge of an id wins, as current_contact_id reads it
        for asked, now in list(at.items()):
            if now in erased or now in seen[asked] or now not in existing and now not in survivor:
                out[asked] = None
            elif now in existing:
                out[asked] = now
            else:
                seen[asked].add(now)
                at[asked] = survivor[now]
                continue
            del at[asked]
    out.update({asked: None for asked in at})
    return out


def _live_ids(conn: Connection, ids: set[int]) -> set[int]:
    """Those of `ids` that are contacts to act on: not deleted in every source (placeholders are deleted too)."""
    out: set[int] = set()
    for part in chunks(sorted(ids), LOOKUP_CHUNK):
        out.update(conn.execute(select(contacts_t.c.id).where(among(conn, contacts_t.c.id, part),
                                                              contacts_t.c.deleted_at.is_(None))).scalars())
    return out


# --- one writer at a time per person (PostgreSQL) -----------------------------------------------

LOCK_BUCKETS = 256  # at most this many advisory locks a transaction takes: the shared lock table never fills
_LOCK_SPACE = 0x48554231  # the high half of the lock keys ("HUB1"), apart from other advisory locks


def lock_keys(conn: Connection, prepared: Sequence[Prepared]) -> None:
    """Take the transaction's advisory locks on the records' identifiers and references (PostgreSQL).

    Two requests for the same new person would otherwise both find nobody,
    both create a contact, and the second's identifier insert would be
    skipped on conflict, leaving an empty contact. Under the lock the second
    waits, then (READ COMMITTED: every statement sees what committed) finds
    the first's contact. Keys are hashed into LOCK_BUCKETS buckets, taken
    distinct and sorted in one statement, so two batches never wait on each
    other in a circle. SQLite needs none: its writers are already one at a
    time (BEGIN IMMEDIATE). A caller writing several chunks in one
    transaction locks them all first (locks already held are taken again
    for free), so its locks, too, are taken in one sorted step.
    """
    if conn.dialect.name != "postgresql":
        return
    buckets: set[int] = set()
    for p in prepared:
        for key in p.keys:
            digest = hashlib.blake2b(f"{key[0]}\x1e{key[1]}".encode(), digest_size=8).digest()
            buckets.add((_LOCK_SPACE << 32) | int.from_bytes(digest, "big") % LOCK_BUCKETS)
    if buckets:
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(k) FROM unnest(%(keys)s::bigint[]) AS k ORDER BY k",
                             {"keys": sorted(buckets)})
