"""Why a contact is in a segment or not: every clause with the value seen and whether it passed.

The answer comes from the same compiled SQL that counts the segment, run for
one contact, so an explanation can never disagree with a count. The lead
score is explained the same way: the points each line of the model gives.

`explain` answers in machine form (`hub segments explain --json`: the
rule's own operators, ISO times); `readable` adds the words a page shows
beside it (operators, group kinds, values as dates, moments and titles).
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from decimal import Decimal
from typing import Any

from sqlalchemy import case, select

from hub import consent, formats
from hub.i18n import N_
from hub.i18n import gettext as _
from hub.i18n import ngettext
from hub.models import Contact, LeadScore, SegmentMember
from hub.segments import lifecycle, scoring, store
from hub.segments.evaluate import Segments
from hub.segments.rules import AllOf, AnyOf, Condition, Node, Not, SegmentError, SegmentRef, span_words

contacts_t = Contact.__table__
members_t = SegmentMember.__table__
scores_t = LeadScore.__table__

# How a page names a group and an operator; the rule, the JSON and the page's title attributes keep the names.
GROUP_TITLES = {"all": N_("all of these"), "any": N_("any of these"), "not": N_("not")}
OPERATOR_TITLES = {
    "eq": N_("equals"), "ne": N_("does not equal"), "gt": ">", "gte": "≥", "lt": "<", "lte": "≤",
    "in": N_("is one of"), "not_in": N_("is none of"), "contains": N_("contains"), "is_null": N_("is empty"),
    "not_null": N_("is filled in"), "before": N_("before"), "after": N_("after"),
    "within_last": N_("within the last"), "birthday_within": N_("birthday within"), "matches": N_("matches"),
}
NO_ANSWER = N_("no answer")  # a consent field's "none": the person was never asked
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ISO_MOMENT = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
_SPAN = re.compile(r"^([+-]?)(\d+)([dwmy])$")  # -90d, +7d, 30d: a time relative to now, or a length of time


def _plain(value: Any) -> Any:
    """A value as JSON shows it."""
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


class _Plan:
    """Collects one labelled SQL column per thing to show, to fetch them all in one query."""

    def __init__(self, segments: Segments) -> None:
        self.segments = segments
        self.columns: list[Any] = []

    def add(self, expression: Any) -> int:
        self.columns.append(expression.label(f"c{len(self.columns)}"))
        return len(self.columns) - 1

    def passed(self, predicate: Any) -> int:
        return self.add(case((predicate, 1), else_=0))

    def node(self, node: Node, seen: tuple[str, ...] = ()) -> dict[str, Any]:
        compiler = self.segments.compiler
        out: dict[str, Any] = {"path": node.path, "passed": self.passed(compiler.where(node))}
        if isinstance(node, Condition):
            out.update(kind="condition", field=node.field.name, op=node.op, value=node.written,
                       seen=self.add(compiler.value(node.field)))
            if node.field.field.label:  # a CRM's custom field: its rule name is a code, people know its name
                out["label"] = node.field.field.label
        elif isinstance(node, (AllOf, AnyOf)):
            out.update(kind="all" if isinstance(node, AllOf) else "any",
                       items=[self.node(item, seen) for item in node.items])
        elif isinstance(node, Not):
            out.update(kind="not", items=[self.node(node.item, seen)])
        elif isinstance(node, SegmentRef):
            out.update(kind="segment", segment=node.name)
            if node.name not in seen:
                out["items"] = [self.node(self.segments.get(node.name).rule, seen + (node.name,))]
        return out


def _fill(tree: dict[str, Any], row: Any) -> dict[str, Any]:
    out = dict(tree)
    out["passed"] = bool(row[tree["passed"]])
    if "seen" in tree:
        out["seen"] = _plain(row[tree["seen"]])
    if "items" in tree:
        out["items"] = [_fill(item, row) for item in tree["items"]]
    return out


def explain(segments: Segments, name: str, contact_id: int) -> dict[str, Any]:
    """The rule of `name` as a tree, each node with `passed` (and for conditions `seen`), for one contact."""
    definition = segments.get(name)
    conn, c = segments.conn, contacts_t.c
    plan = _Plan(segments)
    tree = plan.node(definition.rule, (name,))
    model = scoring.load_model(segments.registry, segments.catalog.definitions)
    lines = [plan.add(scoring.line_sql(segments.compiler, line)) for line in model.lines]
    live = plan.passed(c.deleted_at.is_(None))
    row = conn.execute(select(*plan.columns).where(c.id == contact_id)).first()
    if row is None:
        raise SegmentError(_("no contact with id %(id)s", id=contact_id))
    recorded = conn.execute(
        select(members_t.c.entered_at).join(store.segments_t, store.segments_t.c.id == members_t.c.segment_id)
        .where(store.segments_t.c.name == name, members_t.c.contact_id == contact_id)).first()
    stored_score = conn.execute(select(scores_t.c.score).where(scores_t.c.contact_id == contact_id)).scalar()
    rule = _fill(tree, row)
    points = [{"title": line.title, "points": int(row[i] or 0)} for line, i in zip(model.lines, lines, strict=True)]
    return {
        "segment": name,
        "title": definition.title,
        "contact_id": contact_id,
        "member": rule["passed"] and bool(row[live]),
        "deleted": not row[live],
        "recorded": {"member": recorded is not None,
                     "entered_at": recorded.entered_at.isoformat() if recorded else None},
        "now": segments.now.isoformat(),
        "rule": rule,
        "lead_score": {"score": sum(p["points"] for p in points), "stored": stored_score, "lines": points,
                       "model": model.origin},
    }



def group_title(kind: str) -> str:
    """A group of conditions in the reader's words ("все условия"); an unknown kind as it is."""
    return _(GROUP_TITLES[kind]) if kind in GROUP_TITLES else kind


def op_title(op: str) -> str:
    """An operator in the reader's words ("≥", "до"); a plugin's own operator by its name."""
    return _(OPERATOR_TITLES[op]) if op in OPERATOR_TITLES else op


def value_text(value: Any, tz: Any) -> str:
    """A value of a rule or of a contact as people read it: dates, moments with the zone, numbers, titles."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    if isinstance(value, (list, tuple)):
        return ", ".join(value_text(v, tz) for v in value)
    if isinstance(value, (int, float, Decimal)):
        return formats.number(value)
    text = str(value)
    try:
        if _ISO_DATE.match(text):
            return formats.date(dt.date.fromisoformat(text))
        if _ISO_MOMENT.match(text):
            return formats.moment(dt.datetime.fromisoformat(text), tz, zone=True)
    except ValueError:
        return text
    if span := _SPAN.match(text):
        amount, unit = int(span.group(2)), span.group(3)
        if unit == "w" and span.group(1):  # «1 неделю назад», «через 1 неделю»: a week takes its accusative
            num = formats.number(amount)
            if span.group(1) == "-":
                return ngettext("%(num)s week ago", "%(num)s weeks ago", amount, num=num)
            return ngettext("in %(num)s week", "in %(num)s weeks", amount, num=num)
        words = span_words(amount, unit)
        if span.group(1) == "-":
            return _("%(span)s ago", span=words)
        return _("in %(span)s", span=words) if span.group(1) == "+" else words
    if text == "none":
        return _(NO_ANSWER)
    if text in consent.STATUS_TITLES:
        return consent.status_title(text)
    if text in lifecycle.STAGES:
        return lifecycle.title(text)
    return text


def readable(result: dict[str, Any], tz: Any) -> dict[str, Any]:
    """`result` (from `explain`) with the words a page shows added: each node's `title`, each condition's
    `op_title`, `value_text` and `seen_text`, and the membership date as a moment with its zone."""
    out = copy.deepcopy(result)

    def walk(node: dict[str, Any]) -> None:
        if node.get("kind") == "condition":
            node["op_title"] = op_title(node["op"])
            node["value_text"] = "" if node.get("value") is None else value_text(node["value"], tz)
            node["seen_text"] = value_text(node.get("seen"), tz)
        elif node.get("kind") in GROUP_TITLES:
            node["title"] = group_title(node["kind"])
        for item in node.get("items") or ():
            walk(item)

    walk(out["rule"])
    entered = out["recorded"].get("entered_at")
    out["recorded"]["entered_text"] = value_text(entered, tz) if entered else ""
    return out
