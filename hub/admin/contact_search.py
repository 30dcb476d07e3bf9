"""Finding a person the way people type: a name, an email, a phone in any format, or what plugins know.

A phone is read with the same rules as every import ("8 (916) 123-45-67",
"+7 916 1234567" and "9161234567" all find +79161234567); a fragment of a
number ("123-45-67") matches the end of stored numbers. A name is read word
by word in any order, so "Иванов Иван Петрович", "Иван Петрович", "иван петр"
and "иванов и.п." all find Иванов Иван Петрович: each word must begin a word
of the surname, first name or patronymic ("Иванов" also finds Иванова and
Ивановна; a double surname's halves are words of their own; case and ё/е make
no difference), initials match the first name's and the patronymic's first
letters. A name typed whole comes first. A piece of an
email ("ivanov", "mail.ru", "van@mail.ru") finds the addresses that contain
it; a whole address that someone holds finds its holders alone, as a whole
phone number does.
Plugins add their own matches (the workflows' promo codes) through
``AdminPage.contact_search``. What people type is a value, never a pattern:
"%" and "_" match themselves.

The answer says how many match and pages through them. Counting stops past
TOTAL_CAP (or past the page asked for, when that is deeper): a search that
matches more says "more than 1 000" (`Found.more`) instead of counting a
million rows nobody will page through. Up to the cap, the page and the total
come from one pass over the matches; past it, the page is read in its order
(exact matches first, then by name, as always): the exact matches alone when
they fill it, else the others too (`_sorted_page`).

What the indexes serve: "#id", a whole valid phone or email (the partial
unique index on contact_identities' kind and value), a promo code typed
whole (its unique index). A piece of a number or of an email is a LIKE with
a leading wildcard, which no b-tree serves, and so is the beginning of a word
inside a name: SQLite reads the names or the identities through (on 300 000
contacts under a second); PostgreSQL uses pg_trgm GIN indexes on
contact_identities' value (and a phone's raw text), and a GIN index on every
word beginning of the folded whole name (hub.models.NAME_PREFIXES: all the
words typed are one index condition, a few keys whose lists GIN intersects),
created by the migrations there, so a fragment finds its few matches among
millions in milliseconds. (lower() folds Cyrillic only under a UTF-8
LC_CTYPE, and pg_trgm makes trigrams only of what LC_CTYPE calls letters: a
database created with the C locale reads a name word by word in name_key and
middle_name, as SQLite does.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import permutations
from typing import Any, Callable, Iterable, Sequence

from sqlalchemy import ColumnElement, Connection, and_, case, func, literal, or_, select, union

from hub import normalize
from hub.config import Settings
from hub.contacts import iter_contacts
from hub.models import FOLDED_FULL_NAME, NAME_PREFIX_MAX, NAME_PREFIXES, Contact, ContactIdentity
from hub.segments.lifecycle import Thresholds

contacts_t = Contact.__table__
identities_t = ContactIdentity.__table__
_PHONE_CHARS = re.compile(r"^[\d\s()+\-.]+$")
_ID = re.compile(r"^#(\d{1,12})$")
# "и.п.", "И.", "и": initials, each a letter with or without its dot.
_INITIALS = re.compile(r"^(?:[^\W\d_]\.)+[^\W\d_]?$|^[^\W\d_]\.?$")
# A piece of an email: one word of the characters addresses are made of, with a letter or a dot in it.
_EMAIL_PIECE = re.compile(r"^[\w.+\-@]+$", re.ASCII)
MIN_PHONE_DIGITS = 5
MIN_EMAIL_PIECE = 3
MAX_QUERY = 200  # characters of the query read; a name, an address or a number is shorter
MAX_EXTRA = 1000  # ids a plugin's matches add to one search
MAX_WORDS = 6
TOTAL_CAP = 1000  # matches counted at most (past the page asked for, when that is deeper)
# Within exact and other matches: by name, the nameless last, then by id. Written so that no b-tree serves it:
# walking name_key's b-tree until a page of matches turns up reads most of the base when the matches sit late
# in the alphabet (all the Соловьёвы: 1.6 s at a million contacts); sorting the matches costs what they are.
_BY_NAME = (contacts_t.c.name_key.is_(None), contacts_t.c.name_key, contacts_t.c.id)

Matcher = Callable[[Connection, str], Sequence[int]]


@dataclass
class Found:
    """One page of matches and how many match in all, or (`more`) that more than `total` match."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0
    more: bool = False  # counting stopped: more than `total` match


def typed(query: str) -> str:
    """The query as it is searched for: one space between words, within MAX_QUERY characters.

    Control characters (a NUL, which PostgreSQL refuses in any text) are no
    part of what people look for: they read as spaces.
    """
    text = "".join(ch if ch.isprintable() else " " for ch in query[:MAX_QUERY * 4])
    return " ".join(text.split())[:MAX_QUERY]


def _folded(word: str) -> str:
    return word.lower().replace("ё", "е")


def _spellings(word: str) -> list[str]:
    """How a folded word may be written in a column that keeps the case people typed (Петрович, ПЕТРОВИЧ)."""
    return list(dict.fromkeys((word, word.capitalize(), word.upper())))


def _escaped(word: str) -> str:
    """`word` for a LIKE pattern escaped with "/": what people type is a value, never a pattern."""
    return word.replace("/", "//").replace("%", "/%").replace("_", "/_")


def _yo_pattern(word: str) -> str:
    """`word` as a LIKE pattern (escaped with "/") in which е and ё stand for either of the two.

    The patronymic and first name keep the letters people typed, and
    replace() on every row costs more than the LIKE itself; a one-character
    wildcard at the е/ё places costs nothing.
    """
    return "".join("_" if ch in "еёЕЁ" else ch for ch in _escaped(word))


def _begins_word(column: Any, pattern: str) -> ColumnElement[bool]:
    """A word of `column` (words split at spaces and hyphens) begins with the LIKE pattern `pattern`.

    Written as "contains, and begins a word": the first LIKE turns most rows away for the price of
    one, before the second builds the spaced text to look at (on SQLite half the cost of a name search).
    """
    return and_(column.like(f"%{pattern}%", escape="/"),
                (literal(" ") + func.replace(column, "-", " ")).like(f"% {pattern}%", escape="/"))


def _middle_begins(word: str) -> ColumnElement[bool]:
    # The patronymic keeps its case: SQLite's LIKE folds only Latin letters, so each spelling is asked for.
    return or_(*[_begins_word(contacts_t.c.middle_name, _yo_pattern(w)) for w in _spellings(word)])


def _middle_is(word: str) -> ColumnElement[bool]:
    return or_(*[contacts_t.c.middle_name.like(_yo_pattern(w), escape="/") for w in _spellings(word)])


_FOLDS: dict[str, bool] = {}


def _folds_cyrillic(conn: Connection) -> bool:
    """Whether the database's lower() folds Cyrillic case (PostgreSQL with a UTF-8 LC_CTYPE; not the C locale)."""
    if conn.dialect.name != "postgresql":
        return False
    key = conn.engine.url.render_as_string(hide_password=True)
    if key not in _FOLDS:
        _FOLDS[key] = conn.execute(select(func.lower(literal("ПЁТР")))).scalar() == "пётр"
    return _FOLDS[key]


def _starts(column: Any, letter: str) -> ColumnElement[bool]:
    return or_(*[column.like(f"{_yo_pattern(w)}%", escape="/") for w in _spellings(letter)])


def _words_begin(words: list[str], folds: bool) -> list[ColumnElement[bool]]:
    """Each folded word begins a word of the surname, the first name or the patronymic.

    On a PostgreSQL database whose lower() folds Cyrillic all the words are one condition on the
    beginnings of the folded whole name's words (NAME_PREFIXES, indexed by migration 0018): GIN
    intersects one list per word, however common each is. A word longer than the index keeps adds
    the whole word as a LIKE that the rows found are checked against.
    Elsewhere: a word of name_key, or of the patronymic as `_middle_begins` reads it, begins with it.
    """
    if folds:
        longer = [_begins_word(FOLDED_FULL_NAME, _escaped(w)) for w in words if len(w) > NAME_PREFIX_MAX]
        return [NAME_PREFIXES.contains(sorted({w[:NAME_PREFIX_MAX] for w in words})), *longer]
    return [or_(_begins_word(contacts_t.c.name_key, _escaped(w)), _middle_begins(w)) for w in words]


def _exact_name(names: list[str], folds: bool) -> ColumnElement[bool] | None:
    """The name is exactly these folded names, in any order: name_key's b-tree finds it among millions.

    Two are the surname and the first name (name_key); of three, one is the patronymic, checked on the
    rows name_key's b-tree gives (on PostgreSQL written so that no other index looks better: the planner
    took the patronymic's trigram index for "Александрович" and read 450,000 rows for 178).
    """
    if len(names) in (1, 2):
        return contacts_t.c.name_key.in_(sorted({" ".join(names), " ".join(reversed(names))}))
    if len(names) != 3:
        return None
    orders = list(permutations(names))
    keys = contacts_t.c.name_key.in_(sorted({f"{a} {b}" for a, b, _ in orders}))
    if folds:
        return and_(keys, FOLDED_FULL_NAME.in_(sorted({" ".join(order) for order in orders})))
    return and_(keys, or_(*[and_(contacts_t.c.name_key == f"{a} {b}", _middle_is(middle)) for a, b, middle in orders]))


def _name_condition(text: str, folds: bool = False) -> tuple[ColumnElement[bool] | None, ColumnElement[bool] | None]:
    """(every word begins a word of the name, the name is exactly these words) for the letters typed.

    A double name typed whole ("Салтыков-Щедрин") is two words to find and one name to match exactly;
    a one-letter word is an initial or nothing to look for.
    """
    names: list[str] = []
    words: list[str] = []
    initials: list[str] = []
    for token in text.split()[:MAX_WORDS]:
        token = token.strip(",;")
        if not token:
            continue
        if _INITIALS.match(token):
            initials += [_folded(ch) for ch in token if ch != "."]
            continue
        name = _folded(token.strip("."))
        if name:
            names.append(name)
            words += [part for part in (p.strip(".") for p in name.split("-")) if len(part) > 1]
    if not words and not initials:
        return None, None
    parts: list[ColumnElement[bool]] = _words_begin(list(dict.fromkeys(words)), folds) if words else []
    # The first initial is the first name's, the second the patronymic's: "Иванов И.П.".
    for column, letter in zip((contacts_t.c.first_name, contacts_t.c.middle_name), initials, strict=False):
        parts.append(_starts(column, letter))
    exact = _exact_name(names, folds) if not initials else None
    return and_(*parts), exact


def _holders(condition: ColumnElement[bool], kind: str) -> ColumnElement[bool]:
    return contacts_t.c.id.in_(select(identities_t.c.contact_id).where(identities_t.c.kind == kind, condition))


def _whole(kind: str, value: ColumnElement[bool]) -> ColumnElement[bool]:
    """A valid whole value held as a person's own or as shared, written as the two partial indexes' conditions.

    A person's own values are in a unique index for valid, unshared ones, the shared ones in another; a
    condition that implies neither ("valid and this value") is served by neither, and PostgreSQL then
    answered it from the trigram index (70 ms for one address at five million contacts, against 0.03).
    """
    c = identities_t.c
    return or_(and_(c.kind == kind, c.valid, c.shared.is_(None), value),
               and_(c.kind == kind, c.valid, c.shared.is_not(None), value))


def _phone_conditions(conn: Connection, settings: Settings, text: str
                      ) -> tuple[list[ColumnElement[bool]], list[ColumnElement[bool]]]:
    numbers = sorted({p.value for p in normalize.phones(text, settings.default_region) if p.valid})
    if numbers:
        whole = _whole(normalize.PHONE, identities_t.c.value.in_(numbers))
        held = select(identities_t.c.contact_id).where(identities_t.c.kind == normalize.PHONE, whole).limit(1)
        if conn.execute(held).first() is not None:
            exact = _holders(whole, normalize.PHONE)
            return [exact], [exact]
    digits = "".join(ch for ch in text if ch.isdigit())
    return [_holders(or_(identities_t.c.value.endswith(digits, autoescape=True),
                         identities_t.c.raw.contains(text, autoescape=True)), normalize.PHONE)], []


def _email_conditions(conn: Connection, text: str) -> tuple[list[ColumnElement[bool]], list[ColumnElement[bool]]]:
    # A whole address someone holds finds its holders alone, as a whole phone number does: through the
    # unique index, where "contains" would read every address of the domain (a second at millions).
    ident = normalize.email(text) if "@" in text else None
    if ident is not None and ident.valid:
        whole = _whole(normalize.EMAIL, identities_t.c.value == ident.value)
        held = select(identities_t.c.contact_id).where(identities_t.c.kind == normalize.EMAIL, whole).limit(1)
        if conn.execute(held).first() is not None:
            exact = _holders(whole, normalize.EMAIL)
            return [exact], [exact]
    return [_holders(identities_t.c.value.contains(text.lower(), autoescape=True), normalize.EMAIL)], []


Ways = tuple[list[ColumnElement[bool]], list[ColumnElement[bool]]]


def conditions(conn: Connection, settings: Settings, query: str, extra_ids: Iterable[int] = ()
               ) -> tuple[ColumnElement[bool] | None, ColumnElement[bool] | None]:
    """(which contacts match `query`, which of them match it exactly), or (None, None) for nothing to look for."""
    found, exact = _ways(conn, settings, query, extra_ids)
    return (or_(*found) if found else None), (or_(*exact) if exact else None)


def _ways(conn: Connection, settings: Settings, query: str, extra_ids: Iterable[int] = ()) -> Ways:
    """(the ways a contact may match `query`, the ways it matches exactly): a contact matches by any of them."""
    text = typed(query)
    found: list[ColumnElement[bool]] = []
    exact: list[ColumnElement[bool]] = []
    extra = sorted({int(i) for i in extra_ids})[:MAX_EXTRA]
    if extra:
        found.append(contacts_t.c.id.in_(extra))
        exact.append(contacts_t.c.id.in_(extra))
    if not text:
        return found, exact
    if m := _ID.match(text):
        by_id = contacts_t.c.id == int(m.group(1))
        return [by_id, *found], [by_id, *exact]
    if _PHONE_CHARS.match(text) and sum(ch.isdigit() for ch in text) >= MIN_PHONE_DIGITS:
        more, sure = _phone_conditions(conn, settings, text)
        found += more
        exact += sure
    if " " not in text and _EMAIL_PIECE.match(text) and ("@" in text or (
            len(text) >= MIN_EMAIL_PIECE and any(ch.isalpha() or ch == "." for ch in text))):
        more, sure = _email_conditions(conn, text)
        found += more
        exact += sure
    if "@" not in text and any(ch.isalpha() for ch in text):
        by_name, name_exact = _name_condition(text, _folds_cyrillic(conn))
        if by_name is not None:
            found.append(by_name)
        if name_exact is not None:
            exact.append(name_exact)
    if not found:
        return [], []
    return found, exact


def _top_id(conn: Connection) -> int:
    # contacts.id is a 32-bit integer on PostgreSQL: a bigger "#id" names nobody (and cannot be compared).
    return 2**31 - 1 if conn.dialect.name == "postgresql" else 2**63 - 1


def matching(conn: Connection, settings: Settings, query: str, *, matchers: Iterable[Matcher] = ()
             ) -> tuple[ColumnElement[bool] | None, ColumnElement[bool] | None]:
    """`conditions` with the plugins' matches, for any list that searches people (the contacts, a segment's members).

    (None, None) when nobody can match: nothing typed, or a "#id" past any id.
    """
    found, exact = _matching_ways(conn, settings, query, matchers)
    return (or_(*found) if found else None), (or_(*exact) if exact else None)


def _matching_ways(conn: Connection, settings: Settings, query: str, matchers: Iterable[Matcher]) -> Ways:
    text = typed(query)
    if not text or ((m := _ID.match(text)) and int(m.group(1)) > _top_id(conn)):
        return [], []
    extra: list[int] = []
    for matcher in matchers:
        extra += [int(i) for i in matcher(conn, text) or () if 0 < int(i) <= _top_id(conn)]
    return _ways(conn, settings, text, extra)


def _any_of(conn: Connection, found: list[ColumnElement[bool]]) -> ColumnElement[bool]:
    """A contact matching any of the ways, written so each way can use its own index.

    PostgreSQL cannot make a join of `id IN (…) OR id IN (…) OR name LIKE …`:
    it reads every contact and tests each. The union of each way's ids is one
    semi-join, each part served by its index (a million contacts: milliseconds
    instead of seconds). SQLite reads the contacts once for the OR, which is
    what it does best without those indexes.
    """
    if conn.dialect.name != "postgresql" or len(found) == 1:
        return or_(*found)
    return contacts_t.c.id.in_(union(*[select(contacts_t.c.id).where(way) for way in found]))


def find(conn: Connection, settings: Settings, query: str, *, limit: int = 50, offset: int = 0,
         matchers: Iterable[Matcher] = ()) -> Found:
    """One page of the live contacts matching `query`, exact matches first, and how many match in total.

    `matchers` are plugins' searches (``AdminPage.contact_search``): each is
    given the text as typed and answers with contact ids.
    """
    found, exact_ways = _matching_ways(conn, settings, query, matchers)
    if not found:
        return Found()
    condition = _any_of(conn, found)
    exact = or_(*exact_ways) if exact_ways else None
    live = and_(contacts_t.c.deleted_at.is_(None), condition)
    rank = case((exact, 0), else_=1) if exact is not None else literal(1)
    limit, offset = max(1, limit), max(0, offset)
    counted = max(TOTAL_CAP, offset + limit)
    # One pass over at most `counted` + 1 matches gives the page and the total beside each row.
    first = select(contacts_t.c.id, contacts_t.c.name_key, rank.label("rank")).where(live).limit(counted + 1)
    sub = first.subquery()
    page = conn.execute(select(sub.c.id, func.count().over().label("total"))
                        .order_by(sub.c.rank, sub.c.name_key.is_(None), sub.c.name_key, sub.c.id)
                        .limit(limit).offset(offset)).all()
    if page:
        total = int(page[0].total)
    else:  # past the last match: the total alone
        total = int(conn.execute(select(func.count()).select_from(first.subquery())).scalar_one())
    more = total > counted
    ids = [int(r.id) for r in page][:limit]
    if more:  # the first pass saw only some: the page comes from all the matches, in their order
        total = counted
        ids = _sorted_page(conn, condition, exact, limit, offset)
    if not ids:
        return Found(total=total, more=more)
    by_id = {r["id"]: r for r in iter_contacts(conn, ids=ids, thresholds=Thresholds.from_settings(settings.extra))}
    return Found(rows=[by_id[i] for i in ids if i in by_id], total=total, more=more)


def _sorted_page(conn: Connection, condition: ColumnElement[bool], exact: ColumnElement[bool] | None,
                 limit: int, offset: int) -> list[int]:
    """The page at `offset` of all the live matches in their order: exact matches first, then by name and id.

    The exact matches are read alone, through their own index (name_key's b-tree for a name typed
    whole: a few thousand namesakes at millions); every way of matching exactly is also a way of
    matching (a name typed whole holds each of its words), so they need not be tested against
    `condition`. When they fill the page the other matches ("Петров Пётр": every Петров and every
    Петрович) are not read at all; else the others are sorted for the rest of the page.
    """
    alive = contacts_t.c.deleted_at.is_(None)
    if exact is None:
        return _ids_by_name(conn, and_(alive, condition), limit, offset)
    first = _ids_by_name(conn, and_(alive, exact), limit, offset)
    if len(first) == limit:
        return first
    exact_before = offset + len(first) if first else int(conn.execute(select(func.count()).select_from(
        select(contacts_t.c.id).where(alive, exact).limit(offset).subquery())).scalar_one())
    inexact = case((exact, 0), else_=1) == 1  # NULL-safe: a contact without name_key is no exact match
    return first + _ids_by_name(conn, and_(alive, condition, inexact), limit - len(first),
                                offset + len(first) - exact_before)


def _ids_by_name(conn: Connection, where: ColumnElement[bool], limit: int, offset: int) -> list[int]:
    return [int(i) for i in conn.execute(select(contacts_t.c.id).where(where).order_by(*_BY_NAME)
                                         .limit(limit).offset(offset)).scalars()]


def search(conn: Connection, settings: Settings, query: str, *, limit: int = 50) -> list[dict[str, Any]]:
    """The first matching contacts in the shape of `hub contacts list --json`."""
    return find(conn, settings, query, limit=limit).rows


def live_count(conn: Connection) -> int:
    """How many contacts the base holds (the erased and merged-away are nobody any more)."""
    return int(conn.execute(select(func.count()).select_from(contacts_t)
                            .where(contacts_t.c.deleted_at.is_(None))).scalar_one())


def recent(conn: Connection, settings: Settings, *, limit: int = 20, offset: int = 0) -> list[dict[str, Any]]:
    """The newest contacts, a page at a time, for the search page before anything is typed."""
    ids = list(conn.execute(select(contacts_t.c.id).where(contacts_t.c.deleted_at.is_(None))
                            .order_by(contacts_t.c.id.desc()).limit(limit).offset(offset)).scalars())
    rows = list(iter_contacts(conn, ids=ids, thresholds=Thresholds.from_settings(settings.extra))) if ids else []
    return sorted(rows, key=lambda r: -r["id"])
