"""Segment fields over events other systems send (POST /api/v1/events): occurred, how often, when, with what.

A family of fields per event name, in the rule language as it is (a field,
an operator, a value); the window is a part of the field's name, checked
against a fixed list so a typo gets "did you mean":

- `events.<name>.last_at` / `first_at` (date and time): `within_last: 7d`
  is "had it within 7 days", `before: -2d` "last time more than 2 days ago",
  `is_null` "never".
- `events.<name>.count` and `events.<name>.count.<window>` (whole number).
- `events.<name>.max.<property>.<window>` / `min.…` (number): the largest
  (smallest) numeric value of a property among the events in the window, so
  `gte: 5000` reads "had one with property ≥ 5000".
- `events.<name>.last.<property>` (text): the property in the latest event.

Each is a correlated subquery on the (contact_id, name, occurred_at) index;
the name, the property and the window reach SQL only as bound parameters.
A name must be one Hub has received (a typo gets "did you mean"); the names
are read from the events table, at most every few seconds.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Callable, Sequence

from sqlalchemy import Connection, Numeric, String, and_, case, cast, func, literal, select, text
from sqlalchemy.sql.elements import ColumnElement

from hub.config import Settings
from hub.hookspecs import hookimpl
from hub.i18n import N_
from hub.models import Event
from hub.segments.db_cache import PerDatabase
from hub.segments.fields import FieldContext, SegmentField
from hub.segments.rules import Span

events_t = Event.__table__

# The windows a field name may hold: every day up to a month, then the usual longer ones.
WINDOWS = tuple([f"{d}d" for d in range(1, 32)] + ["45d", "60d", "90d", "120d", "180d", "365d"]
                + [f"{w}w" for w in range(1, 9)] + [f"{m}m" for m in range(1, 13)] + ["1y", "2y"])
_WINDOW = re.compile(r"^(\d{1,3})([dwmy])$")
NAMES_TTL = 5.0  # seconds the list of received names is reused
# The distinct names by skipping through the (name, received_at) index: one probe per name, not a scan.
_DISTINCT_NAMES = text("WITH RECURSIVE n(name) AS (SELECT MIN(name) FROM events UNION ALL "
                       "SELECT (SELECT MIN(name) FROM events WHERE name > n.name) FROM n WHERE n.name IS NOT NULL) "
                       "SELECT name FROM n WHERE name IS NOT NULL")


def _read_names(conn: Connection) -> list[str]:
    return [str(n) for n in conn.execute(_DISTINCT_NAMES).scalars()]


_names = PerDatabase(_read_names, NAMES_TTL)


def received_names(settings: Settings) -> list[str]:
    """The event names stored so far (what a rule may name), cached for NAMES_TTL seconds."""
    return _names.get(settings)


def note_names(settings: Settings, stored: set[str]) -> None:
    """Events with these names were stored: a name not in the cached list makes it read afresh next time."""
    _names.forget(settings, unless=lambda kept: stored <= set(kept))


def _windows(_settings: Settings) -> Sequence[str]:
    return WINDOWS


def _start(ctx: FieldContext) -> dt.datetime:
    m = _WINDOW.match(ctx.params["window"])
    assert m is not None  # the registry admits only WINDOWS
    return Span(int(m.group(1)), m.group(2)).shift(ctx.now, -1)


def _of_contact(ctx: FieldContext, windowed: bool) -> ColumnElement[bool]:
    e = events_t.c
    where = and_(e.contact_id == ctx.contact_id, e.name == ctx.params["name"])
    if windowed:
        where = and_(where, e.occurred_at >= _start(ctx), e.occurred_at <= ctx.now)
    return where


def _number(ctx: FieldContext) -> ColumnElement[Any]:
    """A property's value when it is a JSON number, else NULL (text never reaches a numeric comparison)."""
    key, props = ctx.params["property"], events_t.c.properties
    if ctx.dialect.name == "postgresql":
        return case((func.jsonb_typeof(props.op("->")(key)) == "number",
                     cast(props.op("->>")(key), Numeric())), else_=None)
    path = '$."' + key + '"'  # the property name is [A-Za-z0-9_-] only (the registry's part check)
    return case((func.json_type(props, path).in_(["integer", "real"]), func.json_extract(props, path)), else_=None)


def _text(ctx: FieldContext) -> ColumnElement[Any]:
    """A property's value as text, spelled the same on both databases (true, false, 5000, 12.5)."""
    key, props = ctx.params["property"], events_t.c.properties
    if ctx.dialect.name == "postgresql":
        return props.op("->>")(key)
    path = '$."' + key + '"'
    kind = func.json_type(props, path)
    return case((kind == "true", literal("true")), (kind == "false", literal("false")),
                (kind == "null", None), else_=cast(func.json_extract(props, path), String()))


def _aggregate(build: Callable[[FieldContext], ColumnElement[Any]], *, windowed: bool,
               order_last: bool = False) -> Callable[[FieldContext], ColumnElement[Any]]:
    def sql(ctx: FieldContext) -> ColumnElement[Any]:
        q = select(build(ctx)).where(_of_contact(ctx, windowed))
        if order_last:
            q = q.order_by(events_t.c.occurred_at.desc(), events_t.c.id.desc()).limit(1)
        return q.scalar_subquery()
    return sql


def fields() -> dict[str, SegmentField]:
    e = events_t.c
    name = {"name": received_names}
    windowed = {**name, "window": _windows}
    return {
        "events.<name>.last_at": SegmentField(
            "datetime", _aggregate(lambda ctx: func.max(e.occurred_at), windowed=False),
            N_("when the contact last had the event (empty: never)"), params=name),
        "events.<name>.first_at": SegmentField(
            "datetime", _aggregate(lambda ctx: func.min(e.occurred_at), windowed=False),
            N_("when the contact first had the event"), params=name),
        "events.<name>.count": SegmentField(
            "integer", _aggregate(lambda ctx: func.count(e.id), windowed=False),
            N_("how many times the contact had the event"), params=name),
        "events.<name>.count.<window>": SegmentField(
            "integer", _aggregate(lambda ctx: func.count(e.id), windowed=True),
            N_("how many times the contact had the event within the window (7d, 30d, 2w, 3m)"),
            params=windowed, uses_now=True),
        "events.<name>.max.<property>.<window>": SegmentField(
            "number", _aggregate(lambda ctx: func.max(_number(ctx)), windowed=True),
            N_("the largest number a property had in the event within the window (gte: had one at least that)"),
            params=windowed, uses_now=True),
        "events.<name>.min.<property>.<window>": SegmentField(
            "number", _aggregate(lambda ctx: func.min(_number(ctx)), windowed=True),
            N_("the smallest number a property had in the event within the window (lte: had one at most that)"),
            params=windowed, uses_now=True),
        "events.<name>.last.<property>": SegmentField(
            "text", _aggregate(_text, windowed=False, order_last=True),
            N_("a property's value in the contact's latest such event"), params=name),
    }


@hookimpl
def register_segment_fields(register: Callable[[str, SegmentField], None]) -> None:
    for field_name, spec in fields().items():
        register(field_name, spec)
