"""The few SQL expressions segments need that SQLite and PostgreSQL spell differently.

Tag containment, Unicode case folding and the month-and-day of a date: rules
compile to the same tree on both databases, and only these leaves differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, exists, extract, func, text, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

# The ICU root collation lowers every script; PostgreSQL's "C" locale lowers ASCII only.
ICU_COLLATION = "und-x-icu"
# A SQLite function of Hub's own: SQLite's lower() knows only ASCII, and Russian names are not.
SQLITE_CASEFOLD = "hub_casefold"
_icu_available: dict[str, bool] = {}


@dataclass(frozen=True, slots=True)
class Dialect:
    """What a compiled rule needs to know about the database it runs on."""

    name: str
    icu: bool = False

    def has_tag(self, tags: ColumnElement[Any], tag: str) -> ColumnElement[bool]:
        """Whether a JSON array of tags holds this exact tag."""
        if self.name == "postgresql":
            return type_coerce(tags, JSONB).contains([tag])
        each = func.json_each(tags).table_valued("value")
        return exists().where(each.c.value == tag)

    def casefold(self, value: ColumnElement[Any]) -> ColumnElement[str]:
        """Lower-cased text in every script, to compare case-insensitively."""
        if self.name == "postgresql":
            return func.lower(value.collate(ICU_COLLATION) if self.icu else value)
        return getattr(func, SQLITE_CASEFOLD)(value)

    @staticmethod
    def month_day(date: ColumnElement[Any]) -> ColumnElement[int]:
        """A date as month * 100 + day (29 February is 229), the same on both databases."""
        return extract("month", date) * 100 + extract("day", date)


def _casefold(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def prepare(conn: Connection) -> Dialect:
    """Make the connection ready for compiled rules and say how to write them for it.

    On SQLite this installs the case-folding function on the connection (cheap,
    and needed on every pooled connection); on PostgreSQL it checks once per
    server whether the ICU collation is there to lower non-ASCII text.
    """
    name = conn.dialect.name
    if name == "sqlite":
        conn.connection.dbapi_connection.create_function(  # type: ignore[union-attr]
            SQLITE_CASEFOLD, 1, _casefold, deterministic=True)
        return Dialect(name)
    key = conn.engine.url.render_as_string(hide_password=True)
    if key not in _icu_available:
        _icu_available[key] = bool(conn.execute(
            text("SELECT EXISTS (SELECT 1 FROM pg_collation WHERE collname = :name)"),
            {"name": ICU_COLLATION}).scalar())
    return Dialect(name, icu=_icu_available[key])


# Rows a refresh may change in a table before it refreshes the table's statistics itself (autovacuum
# would, but only after the next refresh has been planned from the old ones).
ANALYZE_AFTER = 10_000


def serialize(conn: Connection, name: str) -> None:
    """Hold a lock called `name` until the transaction ends, so such transactions run one at a time.

    PostgreSQL has advisory locks for this. SQLite allows one writer at a
    time, so a write at the start (one that changes nothing) takes the write
    lock before anything is read, instead of failing on a later write when
    another writer got in between.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})
    else:
        conn.execute(text("UPDATE segments SET id = id WHERE 0 = 1"))

