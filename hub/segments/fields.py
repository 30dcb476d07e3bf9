"""What a segment rule may ask about, and how each answer is found in SQL.

A rule names fields ("orders.last_at"); only names found in this registry ever
reach SQL, so a rule cannot smuggle in SQL of its own. The core's fields are
defined here; plugins add theirs through the `register_segment_fields` hook
(and operators through `register_segment_operators`).

A field is registered under a fixed name or as a family whose name has
placeholders, like `consent.<channel>.<purpose>` or `workflow.<name>.status`:
the parts a rule writes there reach the field's SQL builder as `ctx.params`,
and SQL sees them only as bound parameters.
"""

from __future__ import annotations

import datetime as dt
import difflib
import operator
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import pluggy
from sqlalchemy import Integer, Numeric, Table, and_, func, literal, not_, or_, select
from sqlalchemy.sql.elements import ColumnElement

from hub import consent
from hub.config import Settings
from hub.i18n import N_, gettext as _
from hub.models import ConsentState, Contact, LeadScore
from hub.segments import lifecycle
from hub.segments.portable import Dialect

contacts_t = Contact.__table__
states_t = ConsentState.__table__
scores_t = LeadScore.__table__

TYPES = ("text", "integer", "number", "money", "date", "datetime", "tags", "choice")

# The built-in operators and the field types each applies to.
OPERATORS: dict[str, tuple[str, ...]] = {
    "eq": ("text", "integer", "number", "money", "choice"),
    "ne": ("text", "integer", "number", "money", "choice"),
    "gt": ("integer", "number", "money"),
    "gte": ("integer", "number", "money"),
    "lt": ("integer", "number", "money"),
    "lte": ("integer", "number", "money"),
    "in": ("text", "integer", "number", "money", "choice"),
    "not_in": ("text", "integer", "number", "money", "choice"),
    "contains": ("tags",),
    "is_null": ("text", "integer", "number", "money", "date", "datetime", "choice"),
    "not_null": ("text", "integer", "number", "money", "date", "datetime", "choice"),
    "before": ("date", "datetime"),
    "after": ("date", "datetime"),
    "within_last": ("date", "datetime"),
    "birthday_within": ("date",),
    "matches": ("text",),
}
COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}
CONSENT_STATES = ("granted", "withdrawn", "pending", "none")
GENDER_TITLES = {"m": N_("male"), "f": N_("female")}
CONSENT_TITLES = {**consent.STATUS_TITLES, "none": N_("never asked")}
# Documented fields that plugins provide, so a rule using one without its plugin gets a useful hint.
PLUGIN_FIELDS = {"messages.last_sent_at": "mailing", "workflow.<name>.status": "workflows", "contact.nps": "workflows"}
_PLACEHOLDER = re.compile(r"^<([a-z_]+)>$")
_PARAM_VALUE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_SHOWN_NAME = 200  # a field name longer than this is not repeated whole in a message


# What each field type is called where people pick a field (the admin's field list, `hub segments fields`).
TYPE_TITLES = {"text": N_("text"), "integer": N_("whole number"), "number": N_("number"), "money": N_("money"),
               "date": N_("date"), "datetime": N_("date and time"), "tags": N_("tags"), "choice": N_("choice")}


def type_title(kind: str) -> str:
    """A field type in the reader's words; a plugin's own type as it is named."""
    return _(TYPE_TITLES[kind]) if kind in TYPE_TITLES else kind


@dataclass(frozen=True)
class FieldContext:
    """What a field's SQL builder gets: the contacts table to correlate with, and the moment."""

    contacts: Table
    now: dt.datetime
    settings: Settings
    dialect: Dialect
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def contact_id(self) -> ColumnElement[int]:
        """The id of the contact being tested: correlate subqueries with it."""
        return self.contacts.c.id

    @property
    def today(self) -> dt.date:
        """Today's date where the business is (HUB_TIMEZONE)."""
        return self.now.astimezone(self.settings.tz).date()


@dataclass(frozen=True)
class SegmentField:
    """One field rules can use.

    - `type`: one of TYPES; it decides the operators and how values are checked.
    - `sql(ctx)`: the field's value for the contact `ctx.contact_id` as a SQL
      expression (a column, or a correlated scalar subquery).
    - `choices`: for `choice` fields, the allowed values (or a function of the settings).
    - `params`: for a family, the allowed values of each placeholder as a
      function of the settings; a placeholder left out accepts any simple name.
    - `predicate(ctx, op, value)`: optional; a faster boolean SQL expression for
      an operator (e.g. a semi-join instead of a subquery per contact), or None
      to compare `sql` as usual. It must never be NULL (`not` relies on that).
    - `tracked`: True only when every change to the value also bumps the
      contact's `updated_at` (or appends a consent event); then a refresh may look
      only at contacts changed since the last one. Leave it False otherwise.
    - `uses_now`: True when the value moves with time by itself.
    - `suggest`: True only when `sql(ctx)` is a column (or a cheap expression)
      of the contact's own row that is fine to GROUP BY over every contact: the
      admin's rule builder then offers the values the base holds, most
      frequent first. Leave it False for names and other personal details.
    - `choice_titles`: what each choice is called where people pick one
      (messages, shown translated); a choice left out is shown as it is.
    - `label`: the name people know the field by when its rule name is a
      code (a CRM's custom field: "Источник" for crm.bitrix24.contact.UF_CRM_17…);
      shown as it is, never translated.
    """

    type: str
    sql: Callable[[FieldContext], ColumnElement[Any]]
    description: str = ""
    choices: tuple[str, ...] | Callable[[Settings], Sequence[str]] = ()
    params: Mapping[str, Callable[[Settings], Sequence[str]]] = field(default_factory=dict)
    predicate: Callable[[FieldContext, str, Any], ColumnElement[bool] | None] | None = None
    tracked: bool = False
    uses_now: bool = False
    suggest: bool = False
    choice_titles: Mapping[str, str] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"segment field type {self.type!r} is not one of: {', '.join(TYPES)}")


@dataclass(frozen=True)
class SegmentOperator:
    """An operator a plugin adds.

    - `types`: the field types it applies to.
    - `sql(expr, value)`: a boolean SQL expression testing the field's value
      `expr` against the rule's `value`. A contact whose value is NULL never
      passes, whatever this returns.
    - `value(raw)`: checks and converts the value written in the rule; raise
      ValueError with a short reason to refuse it. Default: any single value.
    - `python(seen, value)`: the same test in Python, for `hub segments explain`
      checks and tests; optional.
    """

    types: tuple[str, ...]
    sql: Callable[[ColumnElement[Any], Any], ColumnElement[bool]]
    value: Callable[[Any], Any] | None = None
    description: str = ""
    python: Callable[[Any, Any], bool] | None = None


@dataclass(frozen=True)
class ResolvedField:
    """A field name as a rule wrote it, matched to its registration."""

    name: str
    pattern: str
    field: SegmentField
    params: Mapping[str, str]


class FieldError(LookupError):
    """A field name that is not in the registry; the message says what is."""


class Registry:
    """Every field and operator rules can use, for one set of settings and plugins."""

    def __init__(self, settings: Settings, fields: Mapping[str, SegmentField],
                 operators: Mapping[str, SegmentOperator] | None = None) -> None:
        self.settings = settings
        self.fields = dict(fields)
        self.operators = dict(operators or {})
        self._families = [(name, name.split(".")) for name in self.fields if "<" in name]

    def resolve(self, name: str) -> ResolvedField:
        """The registration a field name refers to, with its placeholder values."""
        if name in self.fields and "<" not in name:
            return ResolvedField(name, name, self.fields[name], {})
        parts = name.split(".")
        for pattern, pattern_parts in self._families:
            if len(parts) != len(pattern_parts):
                continue
            params: dict[str, str] = {}
            for part, expected in zip(parts, pattern_parts, strict=True):
                m = _PLACEHOLDER.match(expected)
                if m:
                    params[m.group(1)] = part
                elif part != expected:
                    break
            else:
                spec = self.fields[pattern]
                for key, value in params.items():
                    allowed = spec.params.get(key)
                    if allowed is not None and value not in (options := list(allowed(self.settings))):
                        close = difflib.get_close_matches(value, options, n=1, cutoff=0.6)
                        hint = _("did you mean '%(option)s'?", option=close[0]) if close else \
                            _("one of: %(options)s", options=", ".join(options))
                        raise FieldError(_("'%(value)s' is not a %(part)s of %(field)s; %(hint)s", value=value,
                                           part=key, field=pattern, hint=hint))
                    if not _PARAM_VALUE.match(value):
                        raise FieldError(_("'%(value)s' is not a valid %(part)s in %(field)s", value=value, part=key,
                                           field=pattern))
                return ResolvedField(name, pattern, spec, params)
        raise FieldError(self._unknown(name))

    def _unknown(self, name: str) -> str:
        if len(name) > MAX_SHOWN_NAME:  # a name this long is no typo: say so without echoing all of it
            return _("'%(name)s…' is not a field: %(length)s characters, no field name is that long",
                     name=name[:40], length=len(name))
        for known, plugin in PLUGIN_FIELDS.items():
            if known not in self.fields and _same_shape(name, known):
                return _("'%(name)s' is not a field; %(field)s comes from the %(plugin)s plugin, which is not loaded",
                         name=name, field=known, plugin=plugin)
        labelled = [(n, spec.label) for n, spec in self.fields.items() if spec.label]
        folded = name.casefold().strip().strip('"').replace("ё", "е")
        for known, label in labelled:  # a CRM field written by its name instead of its code
            wanted = label.casefold().replace("ё", "е")
            if folded == wanted or folded.endswith("." + wanted) or folded.endswith('."' + wanted):
                return _("'%(name)s' is not a field; the field «%(label)s» is written %(field)s", name=name,
                         label=label, field=known)
        close = difflib.get_close_matches(name, self.examples(), n=1, cutoff=0.6)
        if close:
            return _("'%(name)s' is not a field; did you mean '%(option)s'?", name=name, option=close[0])
        return _("'%(name)s' is not a field (see `hub segments fields`)", name=name)

    def examples(self) -> list[str]:
        """Every fixed name, and each family written out for its known placeholder values."""
        out = []
        for name, spec in self.fields.items():
            if "<" not in name:
                out.append(name)
                continue
            names = [""]
            for part in name.split("."):
                m = _PLACEHOLDER.match(part)
                values = list(spec.params[m.group(1)](self.settings)) if m and m.group(1) in spec.params else [part]
                names = [f"{prefix}.{v}" if prefix else v for prefix in names for v in values]
            out.extend(names)
        return out

    def operator_names(self, type_: str) -> list[str]:
        """Operators that apply to a field type, built-in ones first."""
        names = [op for op, types in OPERATORS.items() if type_ in types]
        return names + [op for op, spec in self.operators.items() if type_ in spec.types]

    def choices(self, spec: SegmentField) -> tuple[str, ...]:
        return tuple(spec.choices(self.settings)) if callable(spec.choices) else tuple(spec.choices)

    def describe(self) -> list[dict[str, Any]]:
        """The registry as data, for `hub segments fields`."""
        rows = []
        for name, spec in sorted(self.fields.items()):
            row: dict[str, Any] = {"field": name, "type": spec.type, "operators": self.operator_names(spec.type),
                                   "description": spec.description}
            if spec.type == "choice" or self.choices(spec):
                row["choices"] = list(self.choices(spec))
            if spec.label:
                row["label"] = spec.label
            rows.append(row)
        return rows


def _same_shape(name: str, pattern: str) -> bool:
    parts, expected = name.split("."), pattern.split(".")
    return len(parts) == len(expected) and all(
        _PLACEHOLDER.match(e) or p == e for p, e in zip(parts, expected, strict=True))


# --- the core's fields ----------------------------------------------------------------------

def _column(name: str) -> Callable[[FieldContext], ColumnElement[Any]]:
    return lambda ctx: ctx.contacts.c[name]


def _text(name: str, description: str, *, suggest: bool = False) -> SegmentField:
    return SegmentField("text", _column(name), description, tracked=True, suggest=suggest)


def _lead_score(ctx: FieldContext) -> ColumnElement[int]:
    stored = select(scores_t.c.score).where(scores_t.c.contact_id == ctx.contact_id).scalar_subquery()
    return func.coalesce(stored, literal(0, Integer()))


def _lifecycle(ctx: FieldContext) -> ColumnElement[str]:
    return lifecycle.stage_sql(ctx.contacts, now=ctx.now, thresholds=lifecycle.Thresholds.from_settings(
        ctx.settings.extra), has_tag=ctx.dialect.has_tag)


def _orders_avg(ctx: FieldContext) -> ColumnElement[Any]:
    c = ctx.contacts.c
    return func.round(c.revenue / func.nullif(c.orders_count, 0), 2)


def _orders_avg_predicate(ctx: FieldContext, op: str, value: Any) -> ColumnElement[bool] | None:
    """Compare the average exactly: revenue - value * count, in kopecks, against zero.

    Dividing first would compare a rounded quotient (and SQLite's floats) with
    the value; multiplying keeps every term a whole number of kopecks.
    """
    c = ctx.contacts.c

    def test(v: Any, compare: Callable[[Any, Any], ColumnElement[bool]]) -> ColumnElement[bool]:
        difference = func.round(c.revenue - literal(v, Numeric(14, 2)) * c.orders_count, 2, type_=Numeric(14, 2))
        return and_(c.orders_count > 0, compare(difference, 0))

    if op in COMPARISONS:
        return test(value, COMPARISONS[op])
    if op == "in":
        return or_(*(test(v, operator.eq) for v in value))
    if op == "not_in":
        return and_(*(test(v, operator.ne) for v in value))
    return None


def _consent_status(ctx: FieldContext) -> ColumnElement[str]:
    s = states_t.alias("current_consent")
    status = (select(s.c.status)
              .where(s.c.contact_id == ctx.contact_id, s.c.channel == ctx.params["channel"],
                     s.c.purpose == ctx.params["purpose"]).scalar_subquery())
    return func.coalesce(status, "none")


def _consent_predicate(ctx: FieldContext, op: str, value: Any) -> ColumnElement[bool] | None:
    """Status tests as one semi-join over the current answers (consent_states), not a subquery per contact.

    The current answer is the ledger's latest, as hub.consent.current decides; hub.consent keeps
    consent_states equal to it, so a segment reads one index range instead of comparing every
    answer with the later ones.
    """
    if op not in ("eq", "ne", "in", "not_in"):
        return None
    wanted = {value} if op in ("eq", "ne") else set(value)
    if op in ("ne", "not_in"):
        wanted = set(CONSENT_STATES) - wanted
    if "none" in wanted:  # absent or one of the others: nobody's latest answer is outside the set
        return not_(ctx.contact_id.in_(_current_with(ctx, sorted(set(CONSENT_STATES) - wanted))))
    return ctx.contact_id.in_(_current_with(ctx, sorted(wanted)))


def _current_with(ctx: FieldContext, statuses: list[str]) -> Any:
    """Contacts whose current answer for the field's channel and purpose has one of `statuses`."""
    s = states_t.alias("consent_state")
    return select(s.c.contact_id).where(s.c.channel == ctx.params["channel"], s.c.purpose == ctx.params["purpose"],
                                        s.c.status.in_(statuses))


def core_fields() -> dict[str, SegmentField]:
    """The fields every Hub has, whatever plugins are loaded (descriptions are messages: shown translated)."""
    from hub.segments import crm_fields  # it builds on the compiler, which builds on this module

    return {
        "contact.first_name": _text("first_name", N_("first name")),
        "contact.last_name": _text("last_name", N_("surname")),
        "contact.middle_name": _text("middle_name", N_("patronymic")),
        "contact.city": _text("city", N_("city as written"), suggest=True),
        "contact.company": _text("company", N_("company"), suggest=True),
        "contact.gender": SegmentField("choice", _column("gender"), N_("gender"), choices=("m", "f"), tracked=True,
                                       choice_titles=GENDER_TITLES),
        "contact.timezone": _text("timezone", N_("the contact's own time zone, e.g. Asia/Yekaterinburg"),
                                  suggest=True),
        "contact.source": SegmentField(
            "text", lambda ctx: ctx.contacts.c.attributes["lead_source"].as_string(),
            N_("where the customer came from (the lead_source attribute, from a spreadsheet's source column)"),
            tracked=True, suggest=True),
        "contact.birthday": SegmentField("date", _column("birthday"), N_("date of birth"), tracked=True),
        "contact.created_at": SegmentField("datetime", _column("created_at"), N_("when Hub first saw the contact"),
                                           tracked=True),
        "contact.tags": SegmentField("tags", _column("tags"), N_("tags from sources and imports"), tracked=True),
        "contact.lead_score": SegmentField("integer", _lead_score,
                                           N_("points of the lead-score model, as of the last refresh")),
        "contact.lifecycle": SegmentField("choice", _lifecycle, N_("customer-base stage"), choices=lifecycle.STAGES,
                                          uses_now=True, tracked=True, choice_titles=lifecycle.TITLES),
        "orders.count": SegmentField("integer", _column("orders_count"), N_("number of won orders"), tracked=True),
        "orders.revenue": SegmentField("money", _column("revenue"), N_("sum of won orders"), tracked=True),
        "orders.avg": SegmentField("money", _orders_avg, N_("average won order (revenue / count)"),
                                   predicate=_orders_avg_predicate, tracked=True),
        "orders.first_at": SegmentField("datetime", _column("first_order_at"), N_("first won order closed"),
                                        tracked=True),
        "orders.last_at": SegmentField("datetime", _column("last_order_at"), N_("last won order closed"),
                                       tracked=True),
        "consent.<channel>.<purpose>": SegmentField(
            "choice", _consent_status, N_("consent: the latest answer for a channel and purpose"),
            choices=CONSENT_STATES, params={"channel": consent.channels, "purpose": consent.purposes},
            predicate=_consent_predicate, tracked=True, choice_titles=CONSENT_TITLES),
        **crm_fields.fields(),
    }


def build(settings: Settings, pm: pluggy.PluginManager | None = None) -> Registry:
    """The registry for these settings: the core's fields plus every plugin's."""
    from hub import plugins

    from hub.segments import crm_fields

    pm = pm or plugins.get_pm()
    fields = core_fields() | crm_fields.custom_fields(settings)  # the CRMs' own fields, as the last sync read them
    for name, spec in plugins.registry("register_segment_fields", pm).items():
        if name in fields:
            raise ValueError(f"a plugin registers segment field {name!r}, which Hub already has")
        if not isinstance(spec, SegmentField):
            raise ValueError(f"segment field {name!r} must be registered as a hub.segments.fields.SegmentField")
        fields[name] = spec
    operators = {}
    for name, op in plugins.registry("register_segment_operators", pm).items():
        if name in OPERATORS:
            raise ValueError(f"a plugin registers segment operator {name!r}, which Hub already has")
        if not isinstance(op, SegmentOperator):
            raise ValueError(f"segment operator {name!r} must be registered as a hub.segments.fields.SegmentOperator")
        operators[name] = op
    return Registry(settings, fields, operators)
