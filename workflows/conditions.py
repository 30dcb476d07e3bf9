"""`if:` in a workflow: a segment rule asked about one contact at the moment the run gets there.

The rule language is the segments' own (hub.segments.rules), compiled to the
same SQL, so "has bought since" means in a workflow exactly what it means in a
segment. One thing is added: a date value may be `run.started_at`, the day this
run began, so "bought since we wrote to them" is
`{field: orders.last_at, op: after, value: run.started_at}`. It stands for the
start of that day in HUB_TIMEZONE, not the minute: many CRMs record when a
deal closed as a date only, and a purchase made a few hours after the letter
must still count.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Iterable

from sqlalchemy import Connection, select

from hub.api import Contact, Settings
# not in hub.api on purpose: conditions and triggers are written in the segment rule language itself
from hub.segments.evaluate import Segments
# not in hub.api on purpose: conditions and triggers are written in the segment rule language itself
from hub.segments.fields import Registry
# not in hub.api on purpose: conditions and triggers are written in the segment rule language itself
from hub.segments.rules import (MOMENT_OPS, AllOf, AnyOf, Condition, Moment, Node, Not, Parser, RuleError, SegmentRef,
                                walk)

contacts_t = Contact.__table__
RUN_STARTED = "run.started_at"
# What run.started_at stands for while the rule is checked; replaced by the real moment per run.
_PLACEHOLDER = "2000-01-01"


class RunRule:
    """A checked rule, with the conditions whose value is the run's start remembered by path."""

    def __init__(self, node: Node, run_paths: frozenset[str], document: Any) -> None:
        self.node = node
        self.run_paths = run_paths
        self.document = document

    def bind(self, started_at: dt.datetime, zone: dt.tzinfo = dt.timezone.utc) -> Node:
        """The rule for one run: `run.started_at` replaced by the day that run started (in `zone`)."""
        if not self.run_paths:
            return self.node
        return _bind(self.node, self.run_paths, started_at.astimezone(zone).date())

    def holds_for(self, conn: Connection, settings: Settings, runs: Iterable[tuple[int, dt.datetime]], *,
                  now: dt.datetime) -> set[int]:
        """Which of these (contact id, run start) pairs the rule holds for now; contact ids out."""
        by_start: dict[dt.datetime, list[int]] = {}
        for contact_id, started in runs:
            by_start.setdefault(started if self.run_paths else now, []).append(contact_id)
        segments = Segments(conn, settings, now=now)
        holds: set[int] = set()
        for started, ids in by_start.items():
            rule = segments.compiler.where(self.bind(started, settings.tz))
            for start in range(0, len(ids), 1000):
                part = ids[start:start + 1000]
                holds.update(conn.execute(select(contacts_t.c.id).where(contacts_t.c.id.in_(part), rule)).scalars())
        return holds


def parse(data: Any, path: str, registry: Registry) -> RunRule:
    """Check a rule written under `if:`; raises RuleError with every problem and its path."""
    run_paths: set[str] = set()
    prepared = _placeholders(data, path, run_paths)
    parser = Parser(registry)
    node = parser.rule(prepared, path)
    problems = list(parser.problems)
    for cond in (n for n in walk(node) if isinstance(n, Condition)) if node is not None else []:
        if cond.path in run_paths and cond.op not in MOMENT_OPS:
            problems.append(f"{cond.path}.value: {RUN_STARTED} can only be compared with before or after")
    if problems or node is None:
        raise RuleError(problems or [f"{path}: not a rule"])
    return RunRule(node, frozenset(run_paths), data)


def _placeholders(data: Any, path: str, found: set[str]) -> Any:
    """A copy of the rule with run.started_at replaced by a date the parser accepts; paths noted."""
    if isinstance(data, dict):
        if data.get("value") == RUN_STARTED and "field" in data:
            found.add(path)
            return {**data, "value": _PLACEHOLDER}
        out = {}
        for key, value in data.items():
            if key in ("all", "any") and isinstance(value, list):
                out[key] = [_placeholders(v, f"{path}.{key}[{i}]", found) for i, v in enumerate(value)]
            elif key == "not":
                out[key] = _placeholders(value, f"{path}.not", found)
            else:
                out[key] = value
        return out
    return data


def _bind(node: Node, paths: frozenset[str], started_on: dt.date) -> Node:
    if isinstance(node, Condition):
        if node.path not in paths:
            return node
        return dataclasses.replace(node, value=Moment(absolute=started_on))  # a date: its midnight, HUB_TIMEZONE
    if isinstance(node, AllOf):
        return AllOf(node.path, tuple(_bind(i, paths, started_on) for i in node.items))
    if isinstance(node, AnyOf):
        return AnyOf(node.path, tuple(_bind(i, paths, started_on) for i in node.items))
    if isinstance(node, Not):
        return Not(node.path, _bind(node.item, paths, started_on))
    assert isinstance(node, SegmentRef)
    return node
