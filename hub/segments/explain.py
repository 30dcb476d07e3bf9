"""Why a contact is in a segment or not: every clause with the value seen and whether it passed.

The answer comes from the same compiled SQL that counts the segment, run for
one contact, so an explanation can never disagree with a count. The lead
score is explained the same way: the points each line of the model gives.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import case, select

from hub.i18n import gettext as _
from hub.models import Contact, LeadScore, SegmentMember
from hub.segments import scoring, store
from hub.segments.evaluate import Segments
from hub.segments.rules import AllOf, AnyOf, Condition, Node, Not, SegmentError, SegmentRef

contacts_t = Contact.__table__
members_t = SegmentMember.__table__
scores_t = LeadScore.__table__


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

