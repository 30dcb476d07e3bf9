"""Finding a person the way people type: a name, an email, a phone in any format, or what plugins know.

A phone is read with the same rules as every import ("8 (916) 123-45-67",
"+7 916 1234567" and "9161234567" all find +79161234567); a fragment of a
number ("123-45-67") matches the end of stored numbers. A name is read word
by word in any order, so "Иванов Иван Петрович", "Иван Петрович" and
"иванов и.п." all find Иванов Иван Петрович: each word must be part of the
surname, first name or patronymic (case and ё/е make no difference), initials
match the first name's and the patronymic's first letters. A piece of an
email without "@" ("ivanov", "mail.ru") finds the addresses that contain it.
Plugins add their own matches (the workflows' promo codes) through
``AdminPage.contact_search``. What people type is a value, never a pattern:
"%" and "_" match themselves.

The answer is one query over the contacts, so it says how many match in
total and pages through them. What the indexes serve: "#id", a whole valid
phone or email (the partial unique index on contact_identities' kind and
value), a promo code typed whole (its unique index). A piece of a name, of a
number or of an email reads the names or the identities through (LIKE with
a leading wildcard can use no b-tree index); on 300 000 contacts in SQLite
that takes under a second, the page and the total counted in one pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from sqlalchemy import ColumnElement, Connection, and_, case, func, literal, or_, select

from hub import normalize
from hub.config import Settings
from hub.contacts import iter_contacts
from hub.models import Contact, ContactIdentity
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

Matcher = Callable[[Connection, str], Sequence[int]]


@dataclass
class Found:
    """One page of matches and how many match in all."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0


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


def _yo_pattern(word: str) -> str:
    """`word` as a LIKE pattern (escaped with "/") in which е and ё stand for either of the two.

    The patronymic and first name keep the letters people typed, and
    replace() on every row costs more than the LIKE itself; a one-character
    wildcard at the е/ё places costs nothing.
    """
    escaped = word.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return "".join("_" if ch in "еёЕЁ" else ch for ch in escaped)


def _middle_contains(word: str) -> ColumnElement[bool]:
    # The patronymic keeps its case: SQLite's LIKE folds only Latin letters, so each spelling is asked for.
    return or_(*[contacts_t.c.middle_name.like(f"%{_yo_pattern(w)}%", escape="/") for w in _spellings(word)])


def _starts(column: Any, letter: str) -> ColumnElement[bool]:
    return or_(*[column.like(f"{_yo_pattern(w)}%", escape="/") for w in _spellings(letter)])


def _name_condition(text: str) -> tuple[ColumnElement[bool] | None, ColumnElement[bool] | None]:
    """(every word is part of the name, the name is exactly these words) for the letters typed."""
    words: list[str] = []
    initials: list[str] = []
    for token in text.split()[:MAX_WORDS]:
        token = token.strip(",;")
        if not token:
            continue
        if _INITIALS.match(token):
            initials += [_folded(ch) for ch in token if ch != "."]
        else:
            word = _folded(token.strip("."))
            if word:
                words.append(word)
    if not words and not initials:
        return None, None
    parts: list[ColumnElement[bool]] = [or_(contacts_t.c.name_key.contains(w, autoescape=True), _middle_contains(w))
                                        for w in words]
    # The first initial is the first name's, the second the patronymic's: "Иванов И.П.".
    for column, letter in zip((contacts_t.c.first_name, contacts_t.c.middle_name), initials, strict=False):
        parts.append(_starts(column, letter))
    exact = None
    if len(words) in (1, 2) and not initials:
        keys = {" ".join(words), " ".join(reversed(words))}
        exact = contacts_t.c.name_key.in_(sorted(keys))
    return and_(*parts), exact


def _holders(condition: ColumnElement[bool], kind: str) -> ColumnElement[bool]:
    return contacts_t.c.id.in_(select(identities_t.c.contact_id).where(identities_t.c.kind == kind, condition))


def _phone_conditions(conn: Connection, settings: Settings, text: str
                      ) -> tuple[list[ColumnElement[bool]], list[ColumnElement[bool]]]:
    numbers = sorted({p.value for p in normalize.phones(text, settings.default_region) if p.valid})
    if numbers:
        whole = and_(identities_t.c.valid, identities_t.c.value.in_(numbers))
        held = select(identities_t.c.contact_id).where(identities_t.c.kind == normalize.PHONE, whole).limit(1)
        if conn.execute(held).first() is not None:
            exact = _holders(whole, normalize.PHONE)
            return [exact], [exact]
    digits = "".join(ch for ch in text if ch.isdigit())
    return [_holders(or_(identities_t.c.value.endswith(digits, autoescape=True),
                         identities_t.c.raw.contains(text, autoescape=True)), normalize.PHONE)], []


def _email_conditions(text: str) -> tuple[list[ColumnElement[bool]], list[ColumnElement[bool]]]:
    found: list[ColumnElement[bool]] = []
    exact: list[ColumnElement[bool]] = []
    ident = normalize.email(text) if "@" in text else None
    if ident is not None and ident.valid:
        whole = _holders(identities_t.c.value == ident.value, normalize.EMAIL)
        found.append(whole)
        exact.append(whole)
    found.append(_holders(identities_t.c.value.contains(text.lower(), autoescape=True), normalize.EMAIL))
    return found, exact


def conditions(conn: Connection, settings: Settings, query: str, extra_ids: Iterable[int] = ()
               ) -> tuple[ColumnElement[bool] | None, ColumnElement[bool] | None]:
    """(which contacts match `query`, which of them match it exactly), or (None, None) for nothing to look for."""
    text = typed(query)
    found: list[ColumnElement[bool]] = []
    exact: list[ColumnElement[bool]] = []
    extra = sorted({int(i) for i in extra_ids})[:MAX_EXTRA]
    if extra:
        found.append(contacts_t.c.id.in_(extra))
        exact.append(contacts_t.c.id.in_(extra))
    if not text:
        return (or_(*found) if found else None), (or_(*exact) if exact else None)
    if m := _ID.match(text):
        by_id = contacts_t.c.id == int(m.group(1))
        return or_(by_id, *found), or_(by_id, *exact)
    if _PHONE_CHARS.match(text) and sum(ch.isdigit() for ch in text) >= MIN_PHONE_DIGITS:
        more, sure = _phone_conditions(conn, settings, text)
        found += more
        exact += sure
    if " " not in text and _EMAIL_PIECE.match(text) and ("@" in text or (
            len(text) >= MIN_EMAIL_PIECE and any(ch.isalpha() or ch == "." for ch in text))):
        more, sure = _email_conditions(text)
        found += more
        exact += sure
    if "@" not in text and any(ch.isalpha() for ch in text):
        by_name, name_exact = _name_condition(text)
        if by_name is not None:
            found.append(by_name)
        if name_exact is not None:
            exact.append(name_exact)
    if not found:
        return None, None
    return or_(*found), (or_(*exact) if exact else None)


def _top_id(conn: Connection) -> int:
    # contacts.id is a 32-bit integer on PostgreSQL: a bigger "#id" names nobody (and cannot be compared).
    return 2**31 - 1 if conn.dialect.name == "postgresql" else 2**63 - 1


def matching(conn: Connection, settings: Settings, query: str, *, matchers: Iterable[Matcher] = ()
             ) -> tuple[ColumnElement[bool] | None, ColumnElement[bool] | None]:
    """`conditions` with the plugins' matches, for any list that searches people (the contacts, a segment's members).

    (None, None) when nobody can match: nothing typed, or a "#id" past any id.
    """
    text = typed(query)
    if not text or ((m := _ID.match(text)) and int(m.group(1)) > _top_id(conn)):
        return None, None
    extra: list[int] = []
    for matcher in matchers:
        extra += [int(i) for i in matcher(conn, text) or () if 0 < int(i) <= _top_id(conn)]
    return conditions(conn, settings, text, extra)


def find(conn: Connection, settings: Settings, query: str, *, limit: int = 50, offset: int = 0,
         matchers: Iterable[Matcher] = ()) -> Found:
    """One page of the live contacts matching `query`, exact matches first, and how many match in total.

    `matchers` are plugins' searches (``AdminPage.contact_search``): each is
    given the text as typed and answers with contact ids.
    """
    condition, exact = matching(conn, settings, query, matchers=matchers)
    if condition is None:
        return Found()
    live = and_(contacts_t.c.deleted_at.is_(None), condition)
    rank = case((exact, 0), else_=1) if exact is not None else literal(1)
    # One pass over the matches gives the page and the total beside each row.
    page = conn.execute(select(contacts_t.c.id, func.count().over().label("total")).where(live)
                        .order_by(rank, contacts_t.c.name_key.is_(None), contacts_t.c.name_key, contacts_t.c.id)
                        .limit(max(1, limit)).offset(max(0, offset))).all()
    if page:
        total = int(page[0].total)
    else:  # past the last match: the total alone
        total = int(conn.execute(select(func.count()).select_from(contacts_t).where(live)).scalar_one())
    ids = [int(r.id) for r in page][:limit]
    if not ids:
        return Found(total=total)
    by_id = {r["id"]: r for r in iter_contacts(conn, ids=ids, thresholds=Thresholds.from_settings(settings.extra))}
    return Found(rows=[by_id[i] for i in ids if i in by_id], total=total)


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
