"""Rules to SQL: one boolean expression over the contacts table.

Field names become the expressions the registry gives for them; every value a
rule holds becomes a bound parameter. Relative times are turned into instants
here, against the one "now" the caller passes, so a count, a refresh and the
plain-Python reference all agree on what "-90d" meant.

Comparisons are two-valued: a condition on a field that has no value (NULL)
is false, whatever the operator (is_null and not_null aside), so `not` turns
it into true. SQL's third truth value never reaches a user's `not`.
"""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Any, Iterator, Mapping

from sqlalchemy import BigInteger, Connection, Date, Numeric, Select, String, Table, and_, between, false, func, \
    literal, not_, or_, select
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeEngine

from hub.config import Settings
from hub.db import UTCDateTime
from hub.models import Contact
from hub.segments import portable
from hub.segments.fields import COMPARISONS, FieldContext, Registry, ResolvedField
from hub.segments.rules import (
    MOMENT_OPS,
    SPAN_OPS,
    AllOf,
    AnyOf,
    Condition,
    Moment,
    Node,
    Not,
    RuleError,
    SegmentDefinition,
    SegmentRef,
    Span,
    walk,
)

contacts_t = Contact.__table__

BIND_TYPES: dict[str, TypeEngine[Any]] = {
    "text": String(), "choice": String(), "integer": BigInteger(), "number": Numeric(),
    "money": Numeric(14, 2), "date": Date(), "datetime": UTCDateTime(),
}
# Every month-day a birthday can fall on, in calendar order (a leap year has them all).
MONTH_DAYS = [d.month * 100 + d.day for d in
              (dt.date(2000, 1, 1) + dt.timedelta(days=i) for i in range(366))]


class Compiler:
    """Compiles rules for one database connection, one set of segments and one moment."""

    def __init__(self, registry: Registry, dialect: portable.Dialect, *, now: dt.datetime,
                 segments: Mapping[str, SegmentDefinition], contacts: Table = contacts_t) -> None:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.registry = registry
        self.settings: Settings = registry.settings
        self.dialect = dialect
        self.now = now.astimezone(dt.timezone.utc)
        self.today = self.now.astimezone(self.settings.tz).date()
        self.segments = segments
        self.contacts = contacts
        self._expanding: list[str] = []

    # -- whole rules

    def members(self, node: Node) -> Select[Any]:
        """SELECT the ids of live contacts the rule holds for."""
        c = self.contacts.c
        return select(c.id).where(c.deleted_at.is_(None), self.where(node))

    def where(self, node: Node, negated: bool = False) -> ColumnElement[bool]:
        """The rule as a boolean expression; `negated` says an odd number of `not`s stand above it."""
        if isinstance(node, Condition):
            return self.condition(node, negated)
        if isinstance(node, AllOf):
            return and_(*(self.where(item, negated) for item in node.items))
        if isinstance(node, AnyOf):
            return or_(*(self.where(item, negated) for item in node.items))
        if isinstance(node, Not):
            return not_(self.where(node.item, not negated))
        return self.where(self.expand(node), negated)

    def expand(self, ref: SegmentRef) -> Node:
        """The rule a `segment: NAME` stands for; refuses a segment that would contain itself."""
        if ref.name in self._expanding:
            cycle = " → ".join(self._expanding + [ref.name])
            raise RuleError([f"{ref.path}: {cycle}: a segment cannot contain itself"])
        definition = self.segments.get(ref.name)
        if definition is None:
            raise RuleError([f"{ref.path}: {ref.name!r} is not a segment"])
        self._expanding.append(ref.name)
        try:
            # Compile eagerly while the name is on the stack, so cycles are caught.
            self.where(definition.rule)
        finally:
            self._expanding.pop()
        return definition.rule

    # -- conditions

    def context(self, field: ResolvedField) -> FieldContext:
        return FieldContext(self.contacts, self.now, self.settings, self.dialect, field.params)

    def value(self, field: ResolvedField) -> ColumnElement[Any]:
        """A field's value for the contact, as SQL (what explain shows as "seen")."""
        return field.field.sql(self.context(field))

    def condition(self, cond: Condition, negated: bool = False) -> ColumnElement[bool]:
        """One condition, never NULL where it matters.

        SQL's comparisons are NULL on a missing value. Outside any `not` that
        already reads as false; under a `not` it would stay NULL, so there the
        comparison is wrapped in coalesce(..., false). Doing it only there
        keeps each field's expression (possibly a subquery) evaluated once.
        """
        spec, op, value = cond.field.field, cond.op, cond.value
        ctx = self.context(cond.field)
        if spec.predicate is not None:
            special = spec.predicate(ctx, op, value)
            if special is not None:
                return special
        x = spec.sql(ctx)
        if op == "is_null":
            return x.is_(None)
        if op == "not_null":
            return x.is_not(None)
        test = self.compare(x, spec.type, op, value)
        return func.coalesce(test, false()) if negated else test

    def compare(self, x: ColumnElement[Any], ftype: str, op: str, value: Any) -> ColumnElement[bool]:
        if op == "contains":
            return self.dialect.has_tag(x, value)
        plugin_op = self.registry.operators.get(op)
        if plugin_op is not None:  # the plugin's SQL may not be NULL-strict; a missing value never passes
            return and_(x.is_not(None), plugin_op.sql(x, value))
        bind = BIND_TYPES[ftype]
        if ftype == "money":
            x = func.round(x, 2, type_=Numeric(14, 2))
        if op in COMPARISONS:
            return COMPARISONS[op](x, literal(value, bind))
        if op == "in":
            return x.in_([literal(v, bind) for v in value])
        if op == "not_in":
            return x.not_in([literal(v, bind) for v in value])
        if op == "matches":
            return self.dialect.casefold(x).contains(value.lower(), autoescape=True)
        if op in MOMENT_OPS:
            edge = literal(self.moment(value, ftype), bind)
            return x < edge if op == "before" else x > edge
        if op == "within_last":
            start, end = self.window(value, ftype)
            return between(x, literal(start, bind), literal(end, bind))
        if op == "birthday_within":
            md = self.dialect.month_day(x)
            return or_(*(between(md, lo, hi) for lo, hi in birthday_ranges(self.today, value)))
        raise AssertionError(f"operator {op!r} has no SQL")  # the parser admits only known operators

    def moment(self, value: Moment, ftype: str) -> dt.date:
        return value.at(self.now, self.settings.tz) if ftype == "datetime" else value.day(self.today)

    def window(self, span: Span, ftype: str) -> tuple[dt.date, dt.date]:
        """(start, end) of "within the last span": from span ago up to now (or today)."""
        end: dt.date = self.now if ftype == "datetime" else self.today
        return span.shift(end, -1), end


def birthday_ranges(today: dt.date, span: Span) -> list[tuple[int, int]]:
    """Month-day ranges (month * 100 + day) of the birthdays from today to today + span.

    Someone born on 29 February celebrates on 28 February in a non-leap year,
    so a window that holds that day holds 229 too. A window crossing the new
    year becomes two ranges.
    """
    end = span.shift(today)
    keys: set[int] = set()
    day = today
    while day <= end and len(keys) < len(MONTH_DAYS):
        keys.add(day.month * 100 + day.day)
        if day.month == 2 and day.day == 28 and not calendar.isleap(day.year):
            keys.add(229)
        day += dt.timedelta(days=1)
    ranges: list[tuple[int, int]] = []
    for i, key in enumerate(MONTH_DAYS):
        if key not in keys:
            continue
        if ranges and MONTH_DAYS[i - 1] == ranges[-1][1]:
            ranges[-1] = (ranges[-1][0], key)
        else:
            ranges.append((key, key))
    return ranges


def compiler_for(conn: Connection, registry: Registry, *, now: dt.datetime,
                 segments: Mapping[str, SegmentDefinition]) -> Compiler:
    """A compiler for rules that will run on this connection (which it prepares for them)."""
    return Compiler(registry, portable.prepare(conn), now=now, segments=segments)


def conditions(node: Node, segments: Mapping[str, SegmentDefinition],
               _seen: frozenset[str] = frozenset()) -> Iterator[Condition]:
    """Every condition a rule depends on, following segment references."""
    for n in walk(node):
        if isinstance(n, Condition):
            yield n
        elif isinstance(n, SegmentRef) and n.name not in _seen and n.name in segments:
            yield from conditions(segments[n.name].rule, segments, _seen | {n.name})


def uses_now(node: Node, segments: Mapping[str, SegmentDefinition]) -> bool:
    """Whether the rule's answer can change with time alone (relative dates, lifecycle)."""
    return any(c.field.field.uses_now or c.op in SPAN_OPS or (c.op in MOMENT_OPS and c.value.offset is not None)
               for c in conditions(node, segments))


def tracked(node: Node, segments: Mapping[str, SegmentDefinition]) -> bool:
    """Whether every field the rule reads changes only together with contacts.updated_at or consent."""
    return all(c.field.field.tracked for c in conditions(node, segments))
