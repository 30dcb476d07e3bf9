"""The segment rule language: read what a marketer wrote, check all of it, say exactly what is wrong.

A segment is a YAML or JSON document: a `name`, an optional `title` and a
`rule`. A rule is a condition `{field, op, value}` or a group: `all: [...]`,
`any: [...]`, `not: {...}`, or `segment: NAME` to reuse another segment.

Every problem is reported with the path to where it is, the way a person would
point at it in their file ("rule.all[1].op: 'befor' is not an operator for
orders.last_at; did you mean 'before'?"), and all problems are collected
before anything is refused, so one round of fixes is enough. Values are
checked and converted here, once; relative times like -90d stay relative until
a rule is evaluated against a given "now".
"""

from __future__ import annotations

import calendar
import datetime as dt
import difflib
import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Iterator, Mapping, Union
from zoneinfo import ZoneInfo

import yaml

from hub import formats
from hub.i18n import gettext as _, ngettext
from hub.problems import ProblemList
from hub.segments.fields import FieldError, Registry, ResolvedField

NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
SEGMENT_KEYS = ("name", "title", "description", "rule")
CONDITION_KEYS = ("field", "op", "value")
GROUP_KEYS = ("all", "any", "not", "segment")
NO_VALUE_OPS = ("is_null", "not_null")
LIST_OPS = ("in", "not_in")
SPAN_OPS = ("within_last", "birthday_within")
MOMENT_OPS = ("before", "after")
_RELATIVE = re.compile(r"^([+-]?)\s*(\d{1,5})\s*([dwmy])$")
UNITS = {"d": "days", "w": "weeks", "m": "months", "y": "years"}
# Groups inside groups: real rules use two or three levels. Deeper ones are
# refused with a clear problem, before the recursive checks, compilation and
# explanation meet Python's recursion limit (and answer with a 500).
MAX_DEPTH = 20
# The same, counting the rules of the segments a rule uses through `segment:`.
MAX_EXPANDED_DEPTH = 100
# More problems than this are summarised: nobody fixes forty things from one line.


class SegmentError(ValueError):
    """A segment a user asked for or wrote cannot be used; the message says where and why."""


class RuleError(ProblemList, SegmentError):
    """A segment or rule with problems; `problems` lists every one, each starting with its path."""


# --- time values --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Span:
    """A length of time as rules write it: 30d, 2w, 6m, 1y."""

    amount: int
    unit: str

    def shift(self, moment: dt.date, sign: int = 1) -> Any:
        """`moment` moved by this span; months and years keep the day, or take the month's last."""
        n = self.amount * sign
        if self.unit in ("d", "w"):
            return moment + dt.timedelta(days=n * (7 if self.unit == "w" else 1))
        months = moment.year * 12 + moment.month - 1 + (n if self.unit == "m" else 12 * n)
        year, month = divmod(months, 12)
        day = min(moment.day, calendar.monthrange(year, month + 1)[1])
        return moment.replace(year=year, month=month + 1, day=day)

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"


@dataclass(frozen=True, slots=True)
class Moment:
    """A point in time as a rule writes it: absolute (2024-01-31) or relative to now (-90d, +7d)."""

    absolute: dt.date | None = None
    offset: Span | None = None
    sign: int = -1

    def at(self, now: dt.datetime, tz: ZoneInfo) -> dt.datetime:
        """The instant, for datetime fields: a date alone means its midnight in HUB_TIMEZONE."""
        if self.offset is not None:
            return self.offset.shift(now.astimezone(dt.timezone.utc), self.sign)
        value = self.absolute
        if isinstance(value, dt.datetime):
            return (value if value.tzinfo else value.replace(tzinfo=tz)).astimezone(dt.timezone.utc)
        assert value is not None
        return dt.datetime.combine(value, dt.time(), tzinfo=tz).astimezone(dt.timezone.utc)

    def day(self, today: dt.date) -> dt.date:
        """The date, for date fields: relative to today in HUB_TIMEZONE."""
        if self.offset is not None:
            return self.offset.shift(today, self.sign)
        assert self.absolute is not None and not isinstance(self.absolute, dt.datetime)
        return self.absolute

    def __str__(self) -> str:
        if self.offset is not None:
            return f"{'-' if self.sign < 0 else '+'}{self.offset}"
        assert self.absolute is not None
        return self.absolute.isoformat()


# --- the parsed rule ----------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Condition:
    path: str
    field: ResolvedField
    op: str
    value: Any
    written: Any  # the value exactly as the rule gave it, for explanations


@dataclass(frozen=True, eq=False)
class AllOf:
    path: str
    items: tuple["Node", ...]


@dataclass(frozen=True, eq=False)
class AnyOf:
    path: str
    items: tuple["Node", ...]


@dataclass(frozen=True, eq=False)
class Not:
    path: str
    item: "Node"


@dataclass(frozen=True, eq=False)
class SegmentRef:
    path: str
    name: str


Node = Union[Condition, AllOf, AnyOf, Not, SegmentRef]


@dataclass(frozen=True, eq=False)
class SegmentDefinition:
    """A checked segment: its rule parsed, and the document as written (what is stored)."""

    name: str
    title: str | None
    rule: Node
    document: dict[str, Any]
    builtin: bool = False

    @property
    def description(self) -> str | None:
        """What the segment is for, as its document says (shipped ones are translated where shown)."""
        value = self.document.get("description")
        return value if isinstance(value, str) else None


def walk(node: Node) -> Iterator[Node]:
    """Every node of a rule, parents before children; segment references are not followed."""
    yield node
    if isinstance(node, (AllOf, AnyOf)):
        for item in node.items:
            yield from walk(item)
    elif isinstance(node, Not):
        yield from walk(node.item)


def references(node: Node) -> list[SegmentRef]:
    return [n for n in walk(node) if isinstance(n, SegmentRef)]


# --- reading documents --------------------------------------------------------------------

def read_document(path: Path) -> Any:
    """A YAML or JSON file as data (JSON when the name ends in .json)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise SegmentError(_("%(file)s: not UTF-8 text", file=path.name)) from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except RecursionError:
            raise SegmentError(f"{path.name}: {too_deep()}") from None
        except json.JSONDecodeError as exc:
            raise SegmentError(_("%(file)s: not valid JSON (%(problem)s at line %(line)s, column %(column)s)",
                                 file=path.name, problem=exc.msg, line=exc.lineno, column=exc.colno)) from None
    try:
        return read_yaml(text)
    except SegmentError as exc:
        raise SegmentError(f"{path.name}: {exc}") from None


class AliasRefused(yaml.MarkedYAMLError):
    """An anchor (&) or alias (*) in a document a person or a file sent."""


class DocumentRefused(SegmentError):
    """A document refused before it is read at all (the editors answer it with 400, not a list of problems)."""


class PlainLoader(yaml.SafeLoader):
    """YAML without anchors and aliases.

    Aliases let a couple of hundred bytes stand for billions of nodes (each
    level repeats the one before), and everything that walks a document
    (`jsonable`, the checks, JSON storage) would expand them: one request
    would hold a worker for minutes. No definition needs them, so they are
    refused where they appear, before anything is built; the character cap
    of a document cannot see this blow-up.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise AliasRefused(problem=_("YAML anchors and aliases (& and *) are not supported"),
                               problem_mark=event.start_mark)
        return super().compose_node(parent, index)


class PlainDumper(yaml.SafeDumper):
    """yaml.safe_dump's dumper without anchors: what the hub writes, PlainLoader reads back."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def load_yaml(text: str) -> Any:
    """`yaml.safe_load` through PlainLoader: the one way the hub reads YAML people write."""
    return yaml.load(text, Loader=PlainLoader)  # a SafeLoader: no Python objects


def read_yaml(text: str) -> Any:
    """YAML a person wrote, or a SegmentError saying where it is broken."""
    try:
        return load_yaml(text)
    except RecursionError:
        raise SegmentError(too_deep()) from None
    except AliasRefused as exc:
        line, column = (exc.problem_mark.line, exc.problem_mark.column) if exc.problem_mark else (0, 0)
        raise DocumentRefused(_("YAML anchors and aliases (& and *) are not supported (line %(line)s, column "
                                "%(column)s)", line=line + 1, column=column + 1)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or _("cannot be read")
        if mark is None:
            raise SegmentError(_("not valid YAML (%(problem)s)", problem=problem)) from None
        raise SegmentError(_("not valid YAML (%(problem)s at line %(line)s, column %(column)s)", problem=problem,
                             line=mark.line + 1, column=mark.column + 1)) from None


def too_deep() -> str:
    return _("nested too deeply (more than %(levels)s levels of groups are refused)", levels=MAX_DEPTH)


def jsonable(value: Any) -> Any:
    """A document as YAML read it, made storable as JSON (dates become ISO text)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


# --- checking -----------------------------------------------------------------------------

def close_match(word: str, options: list[str] | tuple[str, ...]) -> str | None:
    """The option a typo most likely meant, if any is close."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return close[0] if close else None


def _suggest(word: str, options: list[str] | tuple[str, ...]) -> str:
    close = close_match(word, options)
    return _("; did you mean '%(option)s'?", option=close) if close else \
        _("; use one of: %(options)s", options=", ".join(options))


def _kind(value: Any) -> str:
    if value is None:
        return _("nothing")
    kinds = {dict: _("a mapping"), list: _("a list"), str: _("text"), bool: _("true/false")}
    return kinds.get(type(value), repr(value))


class Parser:
    """Checks rules against a field registry, collecting every problem before refusing."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def raise_problems(self, origin: str | None = None) -> None:
        if self.problems:
            raise RuleError(self.problems, origin)

    # -- documents

    def segment(self, data: Any) -> SegmentDefinition | None:
        """A segment document checked; None (with problems recorded) when it cannot be used."""
        if not isinstance(data, dict):
            self.problems.append(_("expected a segment with name, title and rule, found %(found)s", found=_kind(data)))
            return None
        for key in data:
            if key not in SEGMENT_KEYS:
                self.problem(str(key), _("unknown key") + _suggest(str(key), SEGMENT_KEYS))
        name = data.get("name")
        if name is None:
            self.problem("name", _("missing"))
        elif not isinstance(name, str) or not NAME.match(name):
            self.problem("name", _("%(value)s is not a segment name: use lower-case latin letters, digits and _, "
                                   "starting with a letter (e.g. dormant_90d)", value=repr(name)))
        for key in ("title", "description"):
            text = data.get(key)
            if text is not None and not isinstance(text, str):
                self.problem(key, _("expected text, found %(found)s", found=_kind(text)))
        if "rule" not in data:
            self.problem("rule", _("missing"))
            return None
        rule = self.rule(data["rule"], "rule")
        if self.problems or rule is None or not isinstance(name, str):
            return None
        title = data.get("title")
        return SegmentDefinition(name=name, title=title, rule=rule, document=jsonable(data))

    def rule(self, data: Any, path: str, depth: int = 1) -> Node | None:
        if depth > MAX_DEPTH:
            self.problem(path, _("groups nested more than %(levels)s levels deep; flatten the rule "
                                 "(all/any of all/any can usually be merged) or reuse a segment", levels=MAX_DEPTH))
            return None
        if not isinstance(data, dict):
            self.problem(path, _("expected a rule like {field: ..., op: ..., value: ...} or {all: [...]}, "
                                 "found %(found)s", found=_kind(data)))
            return None
        groups = [k for k in GROUP_KEYS if k in data]
        if groups:
            if len(data) > 1:
                extra = [str(k) for k in data if k != groups[0]]
                self.problem(path, _("a '%(group)s' group stands alone; found also %(extra)s "
                                     "(put conditions inside the group)", group=groups[0], extra=", ".join(extra)))
                return None
            return self._group(groups[0], data[groups[0]], path, depth)
        return self._condition(data, path)

    def _group(self, kind: str, body: Any, path: str, depth: int = 1) -> Node | None:
        if kind == "segment":
            if not isinstance(body, str) or not NAME.match(body):
                self.problem(f"{path}.segment", _("%(value)s is not a segment name", value=repr(body)))
                return None
            return SegmentRef(f"{path}.segment", body)
        if kind == "not":
            item = self.rule(body, f"{path}.not", depth + 1)
            return Not(f"{path}.not", item) if item is not None else None
        if isinstance(body, list) and not body:
            self.problem(f"{path}.{kind}", _("the group is empty: add at least one condition"))
            return None
        if not isinstance(body, list):
            self.problem(f"{path}.{kind}", _("expected a list of at least one rule, found %(found)s",
                                             found=_kind(body)))
            return None
        items = [self.rule(item, f"{path}.{kind}[{i}]", depth + 1) for i, item in enumerate(body)]
        if any(item is None for item in items):
            return None
        return (AllOf if kind == "all" else AnyOf)(f"{path}.{kind}", tuple(items))  # type: ignore[arg-type]

    def _condition(self, data: dict[str, Any], path: str) -> Condition | None:
        ok = True
        for key in data:
            if key not in CONDITION_KEYS:
                self.problem(path, _("unknown key '%(key)s'", key=str(key))
                             + _suggest(str(key), CONDITION_KEYS + GROUP_KEYS))
                ok = False
        name, op = data.get("field"), data.get("op")
        if not isinstance(name, str) or not name:
            self.problem(f"{path}.field", _("missing") if name is None else
                         _("expected a field name, found %(found)s", found=_kind(name)))
            return None
        try:
            resolved = self.registry.resolve(name)
        except FieldError as exc:
            self.problem(f"{path}.field", str(exc))
            return None
        ftype = resolved.field.type
        allowed = self.registry.operator_names(ftype)
        if op is None:
            self.problem(f"{path}.op", _("missing; for %(field)s use one of: %(options)s", field=name,
                                         options=", ".join(allowed)))
            return None
        if not isinstance(op, str) or op not in allowed:
            self.problem(f"{path}.op", _("%(value)s is not an operator for %(field)s", value=repr(op), field=name)
                         + _suggest(str(op), allowed))
            return None
        if not ok:  # a misspelt key is the problem; a "missing value" on top would only confuse
            return None
        value = self._value(path, resolved, op, data)
        if value is _INVALID:
            return None
        return Condition(path, resolved, op, value, data.get("value"))

    # -- values

    def _value(self, path: str, resolved: ResolvedField, op: str, data: dict[str, Any]) -> Any:
        where, raw, spec = f"{path}.value", data.get("value"), resolved.field
        if op in NO_VALUE_OPS:
            if raw is not None:
                self.problem(where, _("'%(op)s' takes no value", op=op))
                return _INVALID
            return None
        if "value" not in data or raw is None:
            self.problem(where, _("missing; '%(op)s' needs a value", op=op))
            return _INVALID
        plugin_op = self.registry.operators.get(op)
        if plugin_op is not None:
            try:
                return plugin_op.value(raw) if plugin_op.value else raw
            except (ValueError, TypeError) as exc:
                self.problem(where, str(exc))
                return _INVALID
        try:
            if op in LIST_OPS:
                if not isinstance(raw, list) or not raw:
                    raise ValueError(_("'%(op)s' needs a list of values, like [a, b]; found %(found)s", op=op,
                                       found=_kind(raw)))
                return tuple(self._scalar(resolved, item) for item in raw)
            if op in MOMENT_OPS:
                return parse_moment(raw, spec.type)
            if op in SPAN_OPS:
                return parse_span(raw, op)
            if op in ("contains", "matches"):
                if not isinstance(raw, (str, int)) or isinstance(raw, bool) or str(raw) == "":
                    raise ValueError(_("expected text, found %(found)s", found=_kind(raw)))
                return str(raw)
            return self._scalar(resolved, raw)
        except ValueError as exc:
            self.problem(where, str(exc))
            return _INVALID

    def _scalar(self, resolved: ResolvedField, raw: Any) -> Any:
        ftype = resolved.field.type
        if isinstance(raw, (dict, list)) or isinstance(raw, bool):
            raise ValueError(_("expected one value, found %(found)s", found=_kind(raw)))
        if ftype == "text":
            if not isinstance(raw, (str, int, float, Decimal)):
                raise ValueError(_("expected text, found %(found)s", found=_kind(raw)))
            return str(raw)
        if ftype == "choice":
            choices = self.registry.choices(resolved.field)
            if not isinstance(raw, str) or raw not in choices:
                raise ValueError(_("%(value)s is not a value of %(field)s", value=repr(raw), field=resolved.name)
                                 + _suggest(str(raw), choices))
            return raw
        if ftype in ("integer", "number", "money"):
            return parse_number(raw, ftype)
        raise ValueError(_("%(field)s cannot be compared with a single value", field=resolved.name))


_INVALID = object()


# The largest value a rule may compare a field with: what the database's column or bind holds (a
# BIGINT; Numeric(14, 2) for money; a number also binds as a double on SQLite, exact below 10^15).
# Past it SQLite overflows and PostgreSQL refuses the query: the rule checker says so first.
NUMBER_LIMITS: dict[str, Decimal] = {"integer": Decimal(2 ** 63 - 1), "money": Decimal("999999999999.99"),
                                     "number": Decimal(10 ** 15 - 1)}
NUMBER_PLACES = 15  # digits after the point a number may have; PostgreSQL refuses a 1e-999999


def parse_number(raw: Any, ftype: str) -> Decimal | int:
    """A typed number of a rule, refused in words when it is not one or no column could hold it."""
    try:
        number = Decimal(str(raw).strip().replace(",", ".")) if not isinstance(raw, Decimal) else raw
    except InvalidOperation:
        raise ValueError(_("%(value)s is not a number", value=_shown(raw))) from None
    if not number.is_finite():
        raise ValueError(_("%(value)s is not a number", value=_shown(raw)))
    limit = NUMBER_LIMITS.get(ftype, NUMBER_LIMITS["number"])
    # adjusted() is the power of ten of the first digit and needs no arithmetic: 1e999999999 cannot overflow
    if not number.is_zero() and (number.adjusted() > limit.adjusted() or number.copy_abs() > limit):
        raise ValueError(_("the number is too large: %(value)s (at most %(limit)s here)", value=_shown(raw),
                           limit=formats.number(limit)))
    if ftype == "integer":
        if number != number.to_integral_value():
            raise ValueError(_("%(value)s is not a whole number", value=_shown(raw)))
        return int(number)
    if ftype == "money" and number != number.quantize(Decimal("0.01")):
        raise ValueError(_("%(value)s has more than two decimal places (money is counted in kopecks)",
                           value=_shown(raw)))
    if _places(number) > NUMBER_PLACES:
        raise ValueError(_("%(value)s has more than %(places)s digits after the point", value=_shown(raw),
                           places=NUMBER_PLACES))
    return number


def _places(number: Decimal) -> int:
    """Digits after the point that matter: 0.50 has one, 1e-20 has twenty."""
    _sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite: checked before
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0")) if any(digits) else len(digits)
    return max(0, -(exponent + trailing))


def _shown(raw: Any) -> str:
    """A typed value as a message quotes it: a pasted page of digits is cut, not echoed whole."""
    text = repr(raw)
    return text if len(text) <= 60 else text[:59] + "…"


def parse_span(raw: Any, op: str) -> Span:
    """30d, 2w, 6m or 1y: how far back (within_last) or ahead (birthday_within)."""
    m = _RELATIVE.match(raw.strip()) if isinstance(raw, str) else None
    if m is None:
        hint = _("write it with a unit, like %(value)sd", value=raw) \
            if isinstance(raw, int) and not isinstance(raw, bool) else _("write a length like 7d, 2w, 6m or 1y")
        raise ValueError(_("%(value)s is not a length of time; %(hint)s", value=repr(raw), hint=hint))
    sign, amount, unit = m.groups()
    if sign:
        raise ValueError(_("%(value)s: '%(op)s' takes a length without a sign, like %(length)s", value=repr(raw),
                           op=op, length=f"{amount}{unit}"))
    return Span(int(amount), unit)


def parse_moment(raw: Any, ftype: str) -> Moment:
    """A date (2024-01-31), a date and time with an offset, or a signed relative time (-90d, +7d)."""
    if isinstance(raw, dt.datetime):
        if ftype == "date":
            raise ValueError(_("'%(value)s': this field is a date; write a date like %(date)s",
                               value=raw.isoformat(), date=raw.date().isoformat()))
        return Moment(absolute=raw)
    if isinstance(raw, dt.date):
        return Moment(absolute=raw)
    if not isinstance(raw, str):
        raise ValueError(_("expected a date like 2024-01-31 or a relative time like -90d, found %(found)s",
                           found=_kind(raw)))
    text = raw.strip()
    m = _RELATIVE.match(text)
    if m:
        sign, amount, unit = m.groups()
        if not sign:
            raise ValueError(_("%(value)s needs a sign: -%(length)s for %(span)s ago, +%(length)s for %(span)s ahead",
                               value=repr(raw), length=f"{amount}{unit}", span=span_words(int(amount), unit)))
        return Moment(offset=Span(int(amount), unit), sign=-1 if sign == "-" else 1)
    try:
        return Moment(absolute=dt.date.fromisoformat(text))
    except ValueError:
        pass
    if ftype == "datetime":
        try:
            return Moment(absolute=dt.datetime.fromisoformat(text))
        except ValueError:
            pass
    raise ValueError(_("%(value)s is not a date (2024-01-31) or a relative time like -90d, -6m, +7d",
                       value=repr(raw)))


def span_words(amount: int, unit: str) -> str:
    """"90 days", "6 months" in the reader's language (1 день, 2 дня, 5 дней)."""
    if unit == "d":
        return ngettext("%(num)s day", "%(num)s days", amount)
    if unit == "w":
        return ngettext("%(num)s week", "%(num)s weeks", amount)
    if unit == "m":
        return ngettext("%(num)s month", "%(num)s months", amount)
    return ngettext("%(num)s year", "%(num)s years", amount)


# --- segment references -------------------------------------------------------------------

def check_references(segment: SegmentDefinition, known: Mapping[str, SegmentDefinition]) -> None:
    """Every `segment: NAME` names a known segment, and no segment ends up containing itself."""
    problems = []
    graph = {name: [r.name for r in references(d.rule)] for name, d in known.items()}
    graph[segment.name] = [r.name for r in references(segment.rule)]
    for ref in references(segment.rule):
        if ref.name not in graph:
            problems.append(f"{ref.path}: " + _("'%(name)s' is not a segment", name=ref.name)
                            + (_suggest(ref.name, sorted(graph)) if graph else ""))
            continue
        cycle = _cycle_through(segment.name, ref.name, graph)
        if cycle:
            problems.append(f"{ref.path}: {' → '.join(cycle)}: " + _("a segment cannot contain itself"))
    if not problems:
        rules = {name: d.rule for name, d in known.items()} | {segment.name: segment.rule}
        deepest = expanded_depth(segment.rule, rules)
        if deepest > MAX_EXPANDED_DEPTH:
            problems.append("rule: " + _("%(levels)s levels deep counting the segments it uses (at most "
                                         "%(limit)s); use fewer segments inside segments", levels=deepest,
                                         limit=MAX_EXPANDED_DEPTH))
    if problems:
        raise RuleError(problems)


def depth(node: Node) -> int:
    """Levels of a rule: 1 for a condition, one more for each group around it."""
    if isinstance(node, (AllOf, AnyOf)):
        return 1 + max(depth(item) for item in node.items)
    if isinstance(node, Not):
        return 1 + depth(node.item)
    return 1


def expanded_depth(node: Node, rules: Mapping[str, Node], _known: dict[str, int] | None = None) -> int:
    """Levels of a rule with every `segment: NAME` replaced by that segment's rule (no cycles: checked first)."""
    known = {} if _known is None else _known
    if isinstance(node, (AllOf, AnyOf)):
        return 1 + max(expanded_depth(item, rules, known) for item in node.items)
    if isinstance(node, Not):
        return 1 + expanded_depth(node.item, rules, known)
    if isinstance(node, SegmentRef) and node.name in rules:
        if node.name not in known:
            known[node.name] = 0  # a guard against a cycle slipping through
            known[node.name] = expanded_depth(rules[node.name], rules, known)
        return known[node.name]
    return 1


def _cycle_through(start: str, first: str, graph: Mapping[str, list[str]]) -> list[str] | None:
    """The path start → first → … → start, if there is one."""
    stack: list[tuple[str, list[str]]] = [(first, [start, first])]
    seen = set()
    while stack:
        name, trail = stack.pop()
        if name == start:
            return trail
        if name in seen:
            continue
        seen.add(name)
        for nxt in graph.get(name, []):
            stack.append((nxt, trail + [nxt]))
    return None

