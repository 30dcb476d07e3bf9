"""Segment fields over what the CRMs hold beyond the person: companies, calls and meetings, deals in progress,
and the CRMs' own custom fields.

- `company.name`, `company.city`, `company.inn`, `company.won_deals`, `company.revenue`: a contact
  matches when ANY company they work at matches (`company.won_deals gte 3` is "works at a company
  with three or more won deals"); `company.name` also reads the contact's own company text when
  the contact is linked to no company.
- `calls.last_at`, `meetings.last_at`, `activities.last_at` (the last call, meeting, or interaction
  of any kind that took place: done, not in the future); `calls.count.<window>`,
  `meetings.count.<window>` (calls that got through, meetings held, within 30d, 2w, 3m…);
  `calls.missed_incoming.<window>` and `calls.unanswered.<window>` (missed incoming calls, and those
  not followed by any call that got through).
- `deals.open_stuck_days` (days the contact's longest-waiting open deal has been in its stage:
  `gte 14` is "stuck for two weeks"), `deals.open_stage`, `deals.open_pipeline`, `deals.open_count`.
- `crm.<source>.<entity>.<code>`: a custom field of a CRM (entity contact, company or deal), named in
  the rule by its code (stable when the field is renamed in the CRM) and shown everywhere else by
  its name there. Its type decides the operators: a list is a choice of its options, a multiple
  field holds tags (`contains`), yes/no is a choice of "true" and "false". A company or deal field
  matches when any of the contact's companies or deals does.

Tests on related rows are semi-joins (`contact.id IN (SELECT contact_id …)`) on the indexes of
contact_companies, activities (contact_id, kind, at) and orders (status, stage_entered_at): one pass
over the matching rows, not a subquery per contact. Codes reach SQL only as JSON paths of
[A-Za-z0-9_-] (others are not offered) or as bound parameters.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from sqlalchemy import (BigInteger, Connection, Date, Integer, Numeric, String, and_, case, cast, distinct, extract,
                        false, func, literal, not_, or_, select, type_coerce)
from sqlalchemy.sql.elements import ColumnElement

from hub.config import Settings
from hub.db import UTCDateTime
from hub.i18n import N_, gettext as _
from hub.models import Activity, Company, ContactCompany, CustomField, Order
from hub.segments.compile import Compiler
from hub.segments.db_cache import PerDatabase
from hub.segments.events import WINDOWS
from hub.segments.fields import OPERATORS, FieldContext, Registry, SegmentField
from hub.segments.rules import Span

companies_t = Company.__table__
links_t = ContactCompany.__table__
activities_t = Activity.__table__
orders_t = Order.__table__
custom_t = CustomField.__table__

# A field's code as the CRM keys it: UF_CRM_17…, or an amoCRM field's own name («Источник», «Дата визита»)
# where it has no code. It only ever reaches SQL as a bound value; a double quote or a backslash would not
# survive SQLite's JSON path, so such a code (and control characters) is not offered.
CODE = re.compile(r'^[^"\\\x00-\x1f\x7f]{1,100}$')
ENTITY_NAMES = {"contact": "contact", "company": "company", "order": "deal"}  # the table's word -> the rule's
SOURCE_TITLES = {"bitrix24": "Bitrix24", "amocrm": "amoCRM"}
ENTITY_TITLES = {"contact": N_("contact fields"), "company": N_("company fields"), "deal": N_("deal fields")}
BOOLEAN_TITLES = {"true": N_("yes"), "false": N_("no")}
# Fields of one family shown together in the builder; each group's title is a message.
GROUPS = {"company": "company", "calls": "activities", "meetings": "activities", "activities": "activities",
          "deals": "deals"}
GROUP_TITLES = {"company": N_("Company"), "activities": N_("Calls and meetings"), "deals": N_("Deals in progress")}
# Far enough in days that no deal can be further away; a larger number in a rule means the same.
MAX_DAYS = 36_500 * 3
DEFINITIONS_TTL = 5.0  # seconds the custom field definitions read from the database are reused


# --- related rows and "any of them matches" ----------------------------------------------------

@dataclass(frozen=True)
class _Rows:
    """Rows related to a contact: the table a value is read from, its FROM clause, the contact's id column."""

    table: Any
    source: Any
    contact_id: ColumnElement[Any]
    where: ColumnElement[bool]


def _companies() -> _Rows:
    co, cc = companies_t.alias("company"), links_t.alias("works_at")
    return _Rows(co, cc.join(co, co.c.id == cc.c.company_id), cc.c.contact_id, co.c.deleted_at.is_(None))


def _deals(open_only: bool) -> _Rows:
    o = orders_t.alias("deal")
    where = o.c.contact_id.is_not(None)
    return _Rows(o, o, o.c.contact_id, and_(where, o.c.status == "open") if open_only else where)


def _compare(ctx: FieldContext, x: ColumnElement[Any], ftype: str, op: str, value: Any) -> ColumnElement[bool]:
    """The rule language's comparison, applied to a related row's value instead of the contact's."""
    return Compiler(Registry(ctx.settings, {}), ctx.dialect, now=ctx.now, segments={}).compare(x, ftype, op, value)


def _among(ctx: FieldContext, rows: _Rows, test: ColumnElement[bool]) -> ColumnElement[bool]:
    """Whether any related row passes `test`: a semi-join, never NULL (its ids are never NULL)."""
    return ctx.contact_id.in_(select(rows.contact_id).select_from(rows.source).where(rows.where, test))


@dataclass(frozen=True)
class _Any:
    """A field whose value lives on related rows: it holds for a contact when any of the rows holds.

    `sql` (what explain shows as seen) is one row's value: the largest for numbers, otherwise the
    first row's by `order`. `fallback` is the contact's own column, read when no row is related.
    """

    type: str
    rows: Callable[[], _Rows]
    value: Callable[[FieldContext, Any], ColumnElement[Any]]
    largest: bool = False
    order: Callable[[Any], Sequence[Any]] = lambda t: (t.c.id,)
    fallback: str | None = None

    def sql(self, ctx: FieldContext) -> ColumnElement[Any]:
        rows = self.rows()
        v = self.value(ctx, rows.table)
        q = select(func.max(v) if self.largest else v).select_from(rows.source).where(
            rows.where, rows.contact_id == ctx.contact_id, v.is_not(None))
        if not self.largest:
            q = q.order_by(*self.order(rows.table)).limit(1)
        seen: ColumnElement[Any] = q.scalar_subquery()
        if self.fallback is not None:
            linked = select(rows.contact_id).select_from(rows.source).where(rows.where,
                                                                           rows.contact_id == ctx.contact_id)
            seen = case((linked.exists(), seen), else_=ctx.contacts.c[self.fallback])
        return seen

    def predicate(self, ctx: FieldContext, op: str, value: Any) -> ColumnElement[bool] | None:
        if op not in OPERATORS:
            return None  # a plugin's operator: compared on `sql`, as any field
        rows = self.rows()
        v = self.value(ctx, rows.table)
        if op in ("is_null", "not_null"):
            hit = _among(ctx, rows, v.is_not(None))
        else:
            hit = _among(ctx, rows, _compare(ctx, v, self.type, op, value))
        if self.fallback is not None:
            own = ctx.contacts.c[self.fallback]
            test = own.is_not(None) if op in ("is_null", "not_null") else \
                func.coalesce(_compare(ctx, own, self.type, op, value), false())
            hit = or_(hit, and_(not_(_among(ctx, rows, literal(True))), test))
        return not_(hit) if op == "is_null" else hit

    def field(self, description: str, **kwargs: Any) -> SegmentField:
        return SegmentField(self.type, self.sql, description, predicate=self.predicate, **kwargs)


def _column(name: str) -> Callable[[FieldContext, Any], ColumnElement[Any]]:
    return lambda ctx, t: t.c[name]


# --- activities -----------------------------------------------------------------------------

def _start(ctx: FieldContext) -> dt.datetime:
    m = re.match(r"^(\d{1,3})([dwmy])$", ctx.params["window"])
    assert m is not None  # the registry admits only WINDOWS
    return Span(int(m.group(1)), m.group(2)).shift(ctx.now, -1)


def _windows(_settings: Settings) -> Sequence[str]:
    return WINDOWS


def _held(kinds: tuple[str, ...] | None) -> Callable[[FieldContext, Any], ColumnElement[bool]]:
    """Activities that took place: done, not deleted, not in the future; of these kinds (None: any)."""
    def where(ctx: FieldContext, a: Any) -> ColumnElement[bool]:
        test = and_(a.c.contact_id.is_not(None), a.c.deleted_at.is_(None), a.c.done.is_(True), a.c.at <= ctx.now)
        return and_(a.c.kind.in_(kinds), test) if kinds else test
    return where


def _calls_through(ctx: FieldContext, a: Any) -> ColumnElement[bool]:
    """Calls that got through (not missed)."""
    return and_(_held(("call",))(ctx, a), a.c.missed.is_(False))


def _missed_incoming(ctx: FieldContext, a: Any) -> ColumnElement[bool]:
    return and_(a.c.contact_id.is_not(None), a.c.deleted_at.is_(None), a.c.kind == "call", a.c.direction == "in",
                a.c.missed.is_(True), a.c.at <= ctx.now)


def _unanswered(ctx: FieldContext, a: Any) -> ColumnElement[bool]:
    """A missed incoming call that no call getting through followed (the manager never called back)."""
    later = activities_t.alias("later_call")
    answered = select(later.c.id).where(
        later.c.contact_id == a.c.contact_id, later.c.at > a.c.at, _calls_through(ctx, later)).exists()
    return and_(_missed_incoming(ctx, a), ~answered)


@dataclass(frozen=True)
class _Last:
    """When the last activity of some kinds took place (datetime)."""

    which: Callable[[FieldContext, Any], ColumnElement[bool]]

    def sql(self, ctx: FieldContext) -> ColumnElement[Any]:
        a = activities_t.alias("activity")
        return select(func.max(a.c.at)).where(a.c.contact_id == ctx.contact_id, self.which(ctx, a)) \
            .scalar_subquery()

    def predicate(self, ctx: FieldContext, op: str, value: Any) -> ColumnElement[bool] | None:
        """The last one is after X (within the last N) when any one is; before X when none is at or after X."""
        a = activities_t.alias("activity")
        rows = _Rows(a, a, a.c.contact_id, self.which(ctx, a))
        if op == "not_null":
            return _among(ctx, rows, literal(True))
        if op == "is_null":
            return not_(_among(ctx, rows, literal(True)))
        if op in ("after", "within_last"):
            return _among(ctx, rows, _compare(ctx, a.c.at, "datetime", op, value))
        if op == "before":
            return and_(_among(ctx, rows, _compare(ctx, a.c.at, "datetime", op, value)),
                        not_(_among(ctx, rows, not_(_compare(ctx, a.c.at, "datetime", op, value)))))
        return None


@dataclass(frozen=True)
class _Count:
    """How many activities of some kind a contact had within the window of the field's name (integer)."""

    which: Callable[[FieldContext, Any], ColumnElement[bool]]

    def where(self, ctx: FieldContext, a: Any) -> ColumnElement[bool]:
        return and_(self.which(ctx, a), a.c.at >= _start(ctx))

    def sql(self, ctx: FieldContext) -> ColumnElement[Any]:
        a = activities_t.alias("activity")
        return select(_each_call_once(a)).where(a.c.contact_id == ctx.contact_id, self.where(ctx, a)) \
            .scalar_subquery()

    def predicate(self, ctx: FieldContext, op: str, value: Any) -> ColumnElement[bool] | None:
        """At least N (gte N, gt N-1) as one grouped semi-join; other comparisons count per contact."""
        least = {"gte": value, "gt": value + 1}.get(op) if isinstance(value, int) else None
        if least is None or not 1 <= least < 2 ** 63:  # past a BIGINT: the plain comparison answers it
            return None
        a = activities_t.alias("activity")
        ids = select(a.c.contact_id).where(self.where(ctx, a)).group_by(a.c.contact_id)
        at_least = literal(least, BigInteger())  # a rule may say up to 2^63 - 1; an INTEGER bind would overflow
        return ctx.contact_id.in_(ids.having(_each_call_once(a) >= at_least) if least > 1 else ids)


def _each_call_once(a: Any) -> ColumnElement[Any]:
    """How many activities, a call noted twice (amoCRM: on the contact and on its lead, one `call_id`) once."""
    return func.count(a.c.id) - func.count(a.c.call_id) + func.count(distinct(a.c.call_id))


# --- deals in progress ------------------------------------------------------------------------

def _stuck_days(ctx: FieldContext) -> ColumnElement[Any]:
    """Whole days the longest-waiting open deal has been in its stage (for explain's "seen")."""
    o = orders_t.alias("deal")
    entered = select(func.min(o.c.stage_entered_at)).where(
        o.c.contact_id == ctx.contact_id, o.c.status == "open").scalar_subquery()
    if ctx.dialect.name == "postgresql":
        return cast(func.floor(extract("epoch", literal(ctx.now, UTCDateTime()) - entered) / 86400), Integer())
    now = ctx.now.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
    return cast(func.julianday(now) - func.julianday(entered), Integer())  # a cast truncates: whole days


def _stuck_predicate(ctx: FieldContext, op: str, value: Any) -> ColumnElement[bool] | None:
    """Days in the stage compared without arithmetic on dates: "at least N days" is "entered N days ago or
    earlier", which the (status, stage_entered_at) index answers; every comparison is made of those."""
    rows = _deals(open_only=True)
    entered = rows.table.c.stage_entered_at
    waiting = _among(ctx, rows, entered.is_not(None))

    def at_least(days: int) -> ColumnElement[bool]:
        days = max(-MAX_DAYS, min(MAX_DAYS, days))
        return _among(ctx, rows, entered <= ctx.now - dt.timedelta(days=days))

    def exactly(days: int) -> ColumnElement[bool]:
        return and_(at_least(days), not_(at_least(days + 1)))

    if op == "is_null":
        return not_(waiting)
    if op == "not_null":
        return waiting
    if op in ("in", "not_in") and isinstance(value, tuple) and all(isinstance(v, int) for v in value):
        if op == "in":
            return or_(*(exactly(v) for v in value))
        return and_(waiting, *(not_(exactly(v)) for v in value))
    if not isinstance(value, int):
        return None  # a plugin's operator: compared on the days as `sql` gives them
    n: int = value
    tests: dict[str, Callable[[], ColumnElement[bool]]] = {
        "gte": lambda: at_least(n), "gt": lambda: at_least(n + 1),
        "lt": lambda: and_(waiting, not_(at_least(n))), "lte": lambda: and_(waiting, not_(at_least(n + 1))),
        "eq": lambda: exactly(n), "ne": lambda: and_(waiting, not_(exactly(n))),
    }
    return tests[op]() if op in tests else None


def _open_order(t: Any) -> tuple[Any, ...]:
    """The longest-waiting open deal first (deals with no stage date last)."""
    return (t.c.stage_entered_at.is_(None), t.c.stage_entered_at, t.c.id)


def _open_count(ctx: FieldContext) -> ColumnElement[Any]:
    o = orders_t.alias("deal")
    return select(func.count(o.c.id)).where(o.c.contact_id == ctx.contact_id, o.c.status == "open") \
        .scalar_subquery()


# --- custom fields ----------------------------------------------------------------------------

def _sqlite_path(attributes: Any, code: str) -> Any:
    """The JSON path to a code on SQLite, which finds a key whatever way the JSON spells it.

    Python writes JSON with non-ASCII escaped ("\\u0418…"), and SQLite before 3.45 compares a path's
    label with the key as written, escapes and all: an amoCRM field keyed «Источник» is then found
    only by the escaped label. Both are bound values; the code holds no double quote or backslash.
    """
    plain = '$."' + code + '"'
    if code.isascii():
        return plain
    escaped = '$."' + json.dumps(code)[1:-1] + '"'
    return case((func.json_type(attributes, plain).is_not(None), literal(plain)), else_=literal(escaped))


def _json_text(ctx: FieldContext, attributes: Any, code: str) -> ColumnElement[Any]:
    """A custom field's value as text, the same on both databases (true, false, 5000, 12.5, Выставка)."""
    if ctx.dialect.name == "postgresql":
        return case((func.jsonb_typeof(attributes.op("->")(code)).in_(["string", "number", "boolean"]),
                     type_coerce(attributes.op("->>")(code), String())), else_=None)
    path = _sqlite_path(attributes, code)
    kind = func.json_type(attributes, path)
    return case((kind == "true", literal("true")), (kind == "false", literal("false")),
                (kind.in_(["text", "integer", "real"]), cast(func.json_extract(attributes, path), String())),
                else_=None)


def _json_number(ctx: FieldContext, attributes: Any, code: str) -> ColumnElement[Any]:
    """A number, or text that spells one (a Decimal is stored as text); anything else is NULL."""
    number = r"^-?[0-9]+(\.[0-9]+)?$"
    if ctx.dialect.name == "postgresql":
        raw = attributes.op("->>")(code)
        return case((func.jsonb_typeof(attributes.op("->")(code)) == "number", cast(raw, Numeric())),
                    (and_(func.jsonb_typeof(attributes.op("->")(code)) == "string", raw.op("~")(number)),
                     cast(raw, Numeric())), else_=None)
    path = _sqlite_path(attributes, code)
    kind, raw = func.json_type(attributes, path), func.json_extract(attributes, path)
    return case((kind.in_(["integer", "real"]), raw),
                (and_(kind == "text", raw.op("GLOB")("*[0-9]*"), not_(raw.op("GLOB")("*[^0-9.-]*"))),
                 cast(raw, Numeric())), else_=None)


def _json_moment(ctx: FieldContext, attributes: Any, code: str, ftype: str) -> ColumnElement[Any]:
    """An ISO date (or date and time) as one: NULL when the text is not one, never an error."""
    if ctx.dialect.name == "postgresql":
        raw = attributes.op("->>")(code)
        pattern = r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])" + ("$" if ftype == "date" else r"([T ]|$)")
        target = Date() if ftype == "date" else UTCDateTime()
        return case((and_(func.jsonb_typeof(attributes.op("->")(code)) == "string", raw.op("~")(pattern)),
                     cast(raw, target)), else_=None)
    path = _sqlite_path(attributes, code)
    raw = func.json_extract(attributes, path)
    if ftype == "date":
        return type_coerce(func.date(raw), Date())
    return type_coerce(func.strftime("%Y-%m-%d %H:%M:%f", raw), UTCDateTime())


def _json_list(ctx: FieldContext, attributes: Any, code: str) -> ColumnElement[Any]:
    """A multiple field's values as a JSON array (NULL when it holds something else)."""
    if ctx.dialect.name == "postgresql":
        value = attributes.op("->")(code)
        return case((func.jsonb_typeof(value) == "array", value), else_=None)
    path = _sqlite_path(attributes, code)
    return case((func.json_type(attributes, path) == "array", func.json_extract(attributes, path)), else_=None)


def _reader(ftype: str, code: str, *, multiple: bool) -> Callable[[FieldContext, Any], ColumnElement[Any]]:
    def value(ctx: FieldContext, t: Any) -> ColumnElement[Any]:
        if multiple:
            return _json_list(ctx, t.c.attributes, code)
        if ftype == "number":
            return _json_number(ctx, t.c.attributes, code)
        if ftype in ("date", "datetime"):
            return _json_moment(ctx, t.c.attributes, code, ftype)
        return _json_text(ctx, t.c.attributes, code)
    return value


def _rule_type(definition: Mapping[str, Any]) -> str:
    if definition["multiple"]:
        return "tags"
    return {"string": "text", "number": "number", "date": "date", "datetime": "datetime", "list": "choice",
            "boolean": "choice"}.get(definition["type"], "text")


def _choices(definition: Mapping[str, Any]) -> tuple[str, ...]:
    if definition["type"] == "boolean":
        return tuple(BOOLEAN_TITLES)
    if definition["type"] != "list":
        return ()
    values = [str(o.get("value")) for o in definition["options"] or () if isinstance(o, dict) and o.get("value")]
    return tuple(dict.fromkeys(values))


def field_name(source: str, entity: str, code: str) -> str:
    """The name a rule uses for a custom field: crm.bitrix24.contact.UF_CRM_17…, crm.amocrm.deal.512…"""
    return f"crm.{source}.{ENTITY_NAMES.get(entity, entity)}.{code}"


def custom_field(definition: Mapping[str, Any]) -> SegmentField:
    """The segment field for one definition (a row of custom_fields)."""
    ftype = _rule_type(definition)
    reader = _reader(definition["type"], definition["code"], multiple=bool(definition["multiple"]))
    name = definition["name"] or definition["code"]
    boolean = definition["type"] == "boolean" and not definition["multiple"]
    if definition["entity"] == "contact":
        return SegmentField(ftype, lambda ctx: reader(ctx, ctx.contacts), name, choices=_choices(definition),
                            tracked=True, label=name, choice_titles=BOOLEAN_TITLES if boolean else {})
    rows = _companies if definition["entity"] == "company" else (lambda: _deals(open_only=False))
    return _Any(ftype, rows, reader).field(name, choices=_choices(definition), label=name,
                                           choice_titles=BOOLEAN_TITLES if boolean else {})


def _read_definitions(conn: Connection) -> list[dict[str, Any]]:
    c = custom_t.c
    return [dict(r._mapping) for r in conn.execute(
        select(c.source, c.entity, c.code, c.name, c.type, c.multiple, c.options)
        .order_by(c.source, c.entity, c.name, c.code))]


_definitions = PerDatabase(_read_definitions, DEFINITIONS_TTL)


def definitions(settings: Settings) -> list[dict[str, Any]]:
    """The custom fields the CRMs define (rows of custom_fields), cached for DEFINITIONS_TTL seconds."""
    return _definitions.get(settings)


def forget(settings: Settings) -> None:
    """Field definitions were written: the next registry reads them afresh."""
    _definitions.forget(settings)


def custom_fields(settings: Settings) -> dict[str, SegmentField]:
    """A field per custom field the CRMs define; a code with a double quote or a backslash is not offered."""
    return {field_name(d["source"], d["entity"], d["code"]): custom_field(d) for d in definitions(settings)
            if CODE.match(d["code"] or "") and re.match(r"^[a-z0-9_]{1,64}$", d["source"] or "")
            and d["entity"] in ENTITY_NAMES}


# --- where the builder shows them -------------------------------------------------------------

def group_of(pattern: str) -> str:
    """The builder's group of a field: custom fields by CRM and entity, activities together."""
    parts = pattern.split(".")
    if parts[0] == "crm" and len(parts) >= 4:
        return ".".join(parts[:3])
    return GROUPS.get(parts[0], parts[0])


def group_title(key: str) -> str | None:
    """A group's title in the reader's words, or None when the group is not one of these."""
    parts = key.split(".")
    if parts[0] == "crm" and len(parts) == 3:
        entity = _(ENTITY_TITLES[parts[2]]) if parts[2] in ENTITY_TITLES else parts[2]
        return f"{SOURCE_TITLES.get(parts[1], parts[1])}: {entity}"
    return _(GROUP_TITLES[key]) if key in GROUP_TITLES else None


# --- the fields -------------------------------------------------------------------------------

def fields() -> dict[str, SegmentField]:
    """The fields over companies, activities and deals in progress (descriptions are messages)."""
    window = {"window": _windows}
    company = lambda ftype, column, **kw: _Any(ftype, _companies, _column(column), **kw)  # noqa: E731
    calls_last, meetings_last, any_last = _Last(_held(("call",))), _Last(_held(("meeting",))), _Last(_held(None))
    calls, meetings = _Count(_calls_through), _Count(_held(("meeting",)))
    missed, unanswered = _Count(_missed_incoming), _Count(_unanswered)
    stage, pipeline = (_Any("text", lambda: _deals(open_only=True), _column(c), order=_open_order)
                       for c in ("stage", "pipeline"))
    return {
        "company.name": company("text", "name", fallback="company").field(
            N_("company the contact works at (the contact's own company text when no company is linked)")),
        "company.city": company("text", "city").field(N_("city of a company the contact works at")),
        "company.inn": company("text", "inn").field(N_("INN of a company the contact works at")),
        "company.won_deals": company("integer", "orders_count", largest=True).field(
            N_("won deals of a company the contact works at")),
        "company.revenue": company("money", "revenue", largest=True).field(
            N_("sum of won deals of a company the contact works at")),
        "calls.last_at": SegmentField("datetime", calls_last.sql, N_("when the last call took place"),
                                      predicate=calls_last.predicate, uses_now=True),
        "meetings.last_at": SegmentField("datetime", meetings_last.sql, N_("when the last meeting took place"),
                                         predicate=meetings_last.predicate, uses_now=True),
        "activities.last_at": SegmentField(
            "datetime", any_last.sql, N_("the last interaction in a CRM: call, meeting, e-mail, task or note "
                                         "(before -3m: no contact for three months)"),
            predicate=any_last.predicate, uses_now=True),
        "calls.count.<window>": SegmentField(
            "integer", calls.sql, N_("calls that got through within the window (7d, 30d, 2w, 3m)"),
            params=window, predicate=calls.predicate, uses_now=True),
        "meetings.count.<window>": SegmentField(
            "integer", meetings.sql, N_("meetings held within the window (7d, 30d, 2w, 3m)"),
            params=window, predicate=meetings.predicate, uses_now=True),
        "calls.missed_incoming.<window>": SegmentField(
            "integer", missed.sql, N_("missed incoming calls within the window"),
            params=window, predicate=missed.predicate, uses_now=True),
        "calls.unanswered.<window>": SegmentField(
            "integer", unanswered.sql, N_("missed incoming calls within the window never called back"),
            params=window, predicate=unanswered.predicate, uses_now=True),
        "deals.open_stuck_days": SegmentField(
            "integer", _stuck_days, N_("days the longest-waiting open deal has been in its stage "
                                       "(gte 14: stuck for two weeks)"),
            predicate=_stuck_predicate, uses_now=True),
        "deals.open_stage": stage.field(N_("stage of an open deal")),
        "deals.open_pipeline": pipeline.field(N_("pipeline of an open deal")),
        "deals.open_count": SegmentField("integer", _open_count, N_("number of open deals")),
    }
