"""What the visual rule builder needs from the server: the fields, values from the base, and hints.

The builder is driven by the field registry, plugins' fields included: the
catalog lists every field with its title and type, the operators that apply
(titled as people say them: «после», «за последние», «одно из»), what kind
of value each operator takes, and the choices of enumerated fields.
Suggestions read only fields that declare themselves fit to group by
(`SegmentField.suggest`); the field name is checked against the registry and
the prefix reaches SQL as a bound, escaped parameter.
"""

from __future__ import annotations

from typing import Any, Iterator

from sqlalchemy import Connection, String, cast, func, literal, select

from hub import consent, formats
from hub.config import Settings
from hub.db import utcnow
from hub.i18n import N_, gettext as _
from hub.models import Contact
from hub.segments import crm_fields, portable
from hub.segments.fields import FieldContext, FieldError, Registry, type_title
from hub.segments.rules import LIST_OPS, MOMENT_OPS, NO_VALUE_OPS, SPAN_OPS, parse_moment, parse_span, span_words

contacts_t = Contact.__table__
SUGGESTIONS = 20
MAX_PREFIX = 100
MAX_FIELD = 200

OPERATOR_TITLES = {
    "eq": N_("equals"), "ne": N_("does not equal"), "gt": N_("more than"), "gte": N_("at least"),
    "lt": N_("less than"), "lte": N_("at most"), "in": N_("one of"), "not_in": N_("none of"),
    "contains": N_("has the tag"), "is_null": N_("is empty"), "not_null": N_("is filled in"),
    "before": N_("before"), "after": N_("after"), "within_last": N_("within the last"),
    "birthday_within": N_("birthday within the next"), "matches": N_("contains the text"),
}
GROUP_TITLES = {"contact": N_("Contact"), "orders": N_("Orders"), "consent": N_("Consent"), "events": N_("Events"),
                "messages": N_("Messages"), "workflow": N_("Workflows")}
# The core's groups first, in this order (what the CRMs hold after consent); plugins' after, the CRMs' own fields last.
_ORDER = {key: i for i, key in enumerate(["contact", "orders", "consent", "company", "deals", "activities", "events",
                                          "messages", "workflow"])}
PARAM_TITLES = {"channel": N_("channel"), "purpose": N_("purpose"), "name": N_("the name"),
                "window": N_("period"), "property": N_("property")}
# What a placeholder's values are called, in the reader's words (the rule keeps the code: consent.email.marketing).
PARAM_OPTION_TITLES = {"channel": consent.channel_title, "purpose": consent.purpose_title}
# Words a marketer searches the field list by, beside each field's title: "число заказов" finds orders.count
# though its title says «число выигранных заказов». Messages: each language has its own words.
KEYWORDS = {
    "contact.city": N_("city, town, place, where they live"),
    "contact.gender": N_("gender, sex, men, women"),
    "orders.count": N_("number of orders, orders count, purchases, bought how many times"),
    "orders.last_at": N_("last order, last purchase, last bought, how long since they bought"),
    "orders.first_at": N_("first order, first purchase"),
    "orders.revenue": N_("revenue, total spent, sum of orders, money"),
    "consent.<channel>.<purpose>": N_("consent, agreed, subscribed, unsubscribed, mailing permission"),
    "company.won_deals": N_("company, B2B, employer, won deals, big client"),
    "deals.open_stuck_days": N_("stuck deal, stalled, stage, pipeline, deal in progress, days in stage"),
    "activities.last_at": N_("no contact, last contact, interaction, touch, went quiet"),
    "calls.unanswered.<window>": N_("missed call, call back, unanswered, did not call back"),
}


class SuggestError(ValueError):
    """A request for suggestions that cannot be answered; the message says why, for the person."""


def value_kind(op: str) -> str:
    """What an operator's value looks like: none, one, list, moment (-60d or a date) or span (30d)."""
    if op in NO_VALUE_OPS:
        return "none"
    if op in LIST_OPS:
        return "list"
    if op in MOMENT_OPS:
        return "moment"
    if op in SPAN_OPS:
        return "span"
    return "one"


def catalog(registry: Registry) -> dict[str, Any]:
    """Every field and operator for the builder, in the reader's language (names stay as rules write them)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for pattern, spec in sorted(registry.fields.items()):
        entry: dict[str, Any] = {
            "pattern": pattern,
            "title": spec.label or (_(spec.description) if spec.description else pattern),
            "type": spec.type, "type_title": type_title(spec.type), "operators": registry.operator_names(spec.type),
            "suggest": spec.suggest, "parts": list(_parts(registry, pattern)),
            "keywords": _(KEYWORDS[pattern]) if pattern in KEYWORDS else ""}
        if spec.type == "choice" or registry.choices(spec):  # a multiple list's options too (for `contains`)
            entry["choices"] = [{"value": c, "title": _(spec.choice_titles[c]) if c in spec.choice_titles else c}
                                for c in registry.choices(spec)]
        groups.setdefault(crm_fields.group_of(pattern), []).append(entry)
    operators = {op: {"title": _(OPERATOR_TITLES[op]), "value": value_kind(op)} for op in OPERATOR_TITLES}
    for op, added in registry.operators.items():
        operators[op] = {"title": _(added.description) if added.description else op, "value": "one"}
    return {
        "groups": [{"key": key, "fields": rows,
                    "title": _(GROUP_TITLES[key]) if key in GROUP_TITLES else crm_fields.group_title(key) or key}
                   for key, rows in sorted(groups.items(), key=lambda kv: (_ORDER.get(kv[0], len(_ORDER)), kv[0]))],
        "operators": operators,
    }


def _parts(registry: Registry, pattern: str) -> Iterator[dict[str, Any]]:
    """A field name's parts: fixed words, and placeholders with the values they may take (if listed)."""
    spec = registry.fields[pattern]
    for part in pattern.split("."):
        if part.startswith("<") and part.endswith(">"):
            key = part[1:-1]
            allowed = spec.params.get(key)
            options = list(allowed(registry.settings)) if allowed else None
            title_of = PARAM_OPTION_TITLES.get(key)
            yield {"param": key, "title": _(PARAM_TITLES[key]) if key in PARAM_TITLES else key, "options": options,
                   "option_titles": {o: title_of(o) for o in options} if options and title_of else {}}
        else:
            yield {"text": part}


def suggestions(conn: Connection, registry: Registry, field: Any, prefix: Any) -> list[dict[str, Any]]:
    """The values of a field the base holds, most frequent first, with how many live contacts have each."""
    if not isinstance(field, str) or not field.strip():
        raise SuggestError(_("say which field to suggest values for"))
    if len(field) > MAX_FIELD:
        raise SuggestError(_("the field name is too long"))
    if not isinstance(prefix, str):
        prefix = ""
    if len(prefix) > MAX_PREFIX:
        raise SuggestError(_("the typed beginning is too long (more than %(limit)s characters)", limit=MAX_PREFIX))
    try:
        resolved = registry.resolve(field.strip())
    except FieldError as exc:
        raise SuggestError(str(exc)) from None
    if not resolved.field.suggest:
        raise SuggestError(_("values of %(field)s are not suggested; type the value", field=resolved.name))
    dialect = portable.prepare(conn)
    ctx = FieldContext(contacts_t, now=utcnow(), settings=registry.settings, dialect=dialect,
                       params=resolved.params)
    value = cast(resolved.field.sql(ctx), String())
    found = func.count().label("found")
    query = (select(value.label("value"), found)
             .where(contacts_t.c.deleted_at.is_(None), value.is_not(None), value != literal(""))
             .group_by(value).order_by(found.desc(), value).limit(SUGGESTIONS))
    typed = prefix.strip()
    if typed:
        query = query.where(dialect.casefold(value).startswith(typed.lower(), autoescape=True))
    return [{"value": row.value, "count": row.found, "count_text": formats.number(row.found)}
            for row in conn.execute(query)]


def hints(tree: Any, settings: Settings, path: str = "rule") -> dict[str, str]:
    """What each relative time or date in a builder tree means in words, by the path of its value.

    "-60d" reads «60 дней назад», "30d" under within_last «за последние 30 дней»,
    "2026-12-07" «7 дек. 2026 г.»; values that do not read are left to the check.
    """
    out: dict[str, str] = {}
    if not isinstance(tree, dict):
        return out
    kind = tree.get("kind")
    if kind in ("all", "any") and isinstance(tree.get("items"), list):
        for i, item in enumerate(tree["items"]):
            out.update(hints(item, settings, f"{path}.{kind}[{i}]"))
    elif kind == "not":
        out.update(hints(tree.get("item"), settings, f"{path}.not"))
    elif kind == "condition" and isinstance(tree.get("value"), str):
        hint = _hint(tree.get("op"), tree["value"])
        if hint:
            out[f"{path}.value"] = hint
    return out


def _hint(op: Any, value: str) -> str | None:
    try:
        if op in MOMENT_OPS:
            moment = parse_moment(value, "datetime")
            if moment.offset is None:
                return formats.date(moment.absolute)
            span = span_words(moment.offset.amount, moment.offset.unit)
            return _("%(span)s ago", span=span) if moment.sign < 0 else _("%(span)s from now", span=span)
        if op in SPAN_OPS:
            length = parse_span(value, op)
            span = span_words(length.amount, length.unit)
            if op == "within_last":
                return _("from %(span)s ago until now", span=span)
            return _("from today to %(span)s ahead", span=span)
    except ValueError:
        return None
    return None


def texts() -> dict[str, str]:
    """The builder's own words, in the reader's language (the script has no catalog of its own)."""
    return {
        "heading": _("Rule builder"), "name": _("Name (latin letters, digits and _)"), "title": _("Title"),
        "description": _("Description"), "all": _("all of these hold"), "any": _("any of these holds"),
        "not": _("NOT: the following does not hold"), "add_condition": _("Add a condition"),
        "add_group": _("Add a group"), "add_segment": _("Add a segment"), "remove": _("Remove"),
        "up": _("Move up"), "down": _("Move down"), "out": _("Move out of the group"), "wrap_not": _("Wrap in NOT"),
        "unwrap": _("Remove NOT"), "choose_field": _("Choose a field"), "search": _("Search the fields"),
        "no_fields": _("No field matches"), "pick": _("— choose —"), "in_segment": _("is in the segment"),
        "as_text": _("Written as text (the builder cannot show this part as a form); it is kept as written:"),
        "not_segment": _("The text is not a segment the builder can show yet; fix it in the text form."),
        "empty": _("The rule is empty: add a condition."), "add_value": _("Add"),
        "values_help": _("Type a value and press Enter; pick from the suggestions for the spellings in the base."),
        "moment_help": _("-60d is 60 days ago, +7d a week ahead; or a date like 2026-01-31"),
        "span_help": _("a length: 30d, 2w, 6m or 1y"), "unknown_field": _("unknown field"),
        "unknown_op": _("unknown operator"), "readonly": _("Read-only: you may look, not change."),
        "other": _("Other keys"), "operator": _("How to compare"), "value": _("Value"),
    }
