"""The rule language evaluated in plain Python, one contact at a time.

It is the yardstick for the compiled SQL: the property test runs random rules
on random data through both and expects the same contacts, and the benchmark
reports how much faster SQL is. To check more than the comparisons, it works
every field out from raw rows itself: order statistics from the orders (not
the stats kept on contacts), consent from the latest event in the ledger.
Plugin fields are not known to it; pass their values in `Snapshot.extra`.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any, Callable, Mapping, Sequence

from sqlalchemy import Connection, select

from hub.config import Settings
from hub.models import Activity, ConsentEvent, Contact, LeadScore, Order
from hub.segments import lifecycle
from hub.segments.fields import Registry, ResolvedField
from hub.segments.rules import AllOf, AnyOf, Condition, Node, Not, SegmentDefinition, SegmentRef, Span
from hub.segments.scoring import ScoreModel

ACTIVITY_FIELDS = ("calls.last_at", "meetings.last_at", "activities.last_at", "calls.count.<window>",
                   "meetings.count.<window>", "calls.missed_incoming.<window>", "calls.unanswered.<window>")
CONTACT_COLUMNS = {"contact.first_name": "first_name", "contact.last_name": "last_name",
                   "contact.middle_name": "middle_name", "contact.city": "city", "contact.company": "company",
                   "contact.gender": "gender", "contact.timezone": "timezone", "contact.birthday": "birthday",
                   "contact.created_at": "created_at", "contact.tags": "tags"}


@dataclass
class Snapshot:
    """Raw rows: contacts by id, each contact's orders and consent events, stored lead scores."""

    contacts: dict[int, dict[str, Any]]
    orders: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    consent: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    scores: dict[int, int] = field(default_factory=dict)
    activities: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    # field pattern -> fn(contact_id, params) for fields plugins register
    extra: dict[str, Callable[[int, Mapping[str, str]], Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, conn: Connection, contact_columns: Sequence[str] | None = None) -> "Snapshot":
        """Everything the reference needs, read from a Hub database (only some contact columns, if named)."""
        table = Contact.__table__
        columns = [table.c[name] for name in ["id", *contact_columns]] if contact_columns else [table]
        contacts = {r.id: dict(r._mapping) for r in conn.execute(select(*columns))}
        orders: dict[int, list[dict[str, Any]]] = defaultdict(list)
        o = Order.__table__.c
        for row in conn.execute(select(o.contact_id, o.status, o.amount, o.closed_at).where(o.contact_id.is_not(None))):
            orders[row.contact_id].append({"status": row.status, "amount": row.amount, "closed_at": row.closed_at})
        consent: dict[int, list[dict[str, Any]]] = defaultdict(list)
        e = ConsentEvent.__table__.c
        for event in conn.execute(select(e.id, e.contact_id, e.channel, e.purpose, e.status, e.at)):
            consent[event.contact_id].append(dict(event._mapping))
        scores = dict(conn.execute(select(LeadScore.__table__.c.contact_id, LeadScore.__table__.c.score)).all())
        activities: dict[int, list[dict[str, Any]]] = defaultdict(list)
        a = Activity.__table__.c
        for act in conn.execute(select(a.contact_id, a.kind, a.direction, a.missed, a.done, a.at, a.call_id)
                                .where(a.contact_id.is_not(None), a.deleted_at.is_(None))):
            activities[act.contact_id].append(dict(act._mapping))
        return cls(contacts, dict(orders), dict(consent), scores, dict(activities))


class Reference:
    """Evaluates rules against a snapshot at one moment, the way the SQL is meant to."""

    def __init__(self, snapshot: Snapshot, registry: Registry, *, now: dt.datetime,
                 segments: Mapping[str, SegmentDefinition]) -> None:
        self.data = snapshot
        self.registry = registry
        self.settings: Settings = registry.settings
        self.now = now.astimezone(dt.timezone.utc)
        self.today = self.now.astimezone(self.settings.tz).date()
        self.segments = segments
        self.thresholds = lifecycle.Thresholds.from_settings(self.settings.extra)

    def members(self, node: Node) -> set[int]:
        """Ids of the live contacts the rule holds for."""
        return {cid for cid, c in self.data.contacts.items() if c.get("deleted_at") is None and self.holds(node, cid)}

    def holds(self, node: Node, cid: int) -> bool:
        if isinstance(node, Condition):
            return self.passes(node, self.value(node.field, cid))
        if isinstance(node, AllOf):
            return all(self.holds(item, cid) for item in node.items)
        if isinstance(node, AnyOf):
            return any(self.holds(item, cid) for item in node.items)
        if isinstance(node, Not):
            return not self.holds(node.item, cid)
        assert isinstance(node, SegmentRef)
        return self.holds(self.segments[node.name].rule, cid)

    # -- fields

    def won(self, cid: int) -> list[dict[str, Any]]:
        return [o for o in self.data.orders.get(cid, []) if o["status"] == "won"]

    def value(self, resolved: ResolvedField, cid: int) -> Any:
        contact, name = self.data.contacts[cid], resolved.pattern
        if name in CONTACT_COLUMNS:
            return contact.get(CONTACT_COLUMNS[name])
        if name == "contact.source":
            return (contact.get("attributes") or {}).get("lead_source")
        if name == "contact.lead_score":
            return self.data.scores.get(cid, 0)
        won = self.won(cid)
        closed = [o["closed_at"] for o in won if o["closed_at"] is not None]
        revenue = sum((Decimal(o["amount"]) for o in won), Decimal(0))
        if name == "contact.lifecycle":
            return lifecycle.stage(len(won), revenue, max(closed, default=None), contact.get("tags") or [],
                                   now=self.now, thresholds=self.thresholds)
        if name == "orders.count":
            return len(won)
        if name == "orders.revenue":
            return revenue
        if name == "orders.avg":
            return Fraction(revenue) / len(won) if won else None
        if name == "orders.first_at":
            return min(closed, default=None)
        if name == "orders.last_at":
            return max(closed, default=None)
        if name == "consent.<channel>.<purpose>":
            events = [e for e in self.data.consent.get(cid, [])
                      if e["channel"] == resolved.params["channel"] and e["purpose"] == resolved.params["purpose"]]
            return max(events, key=lambda e: (e["at"], e["id"]))["status"] if events else "none"
        if name in ACTIVITY_FIELDS:
            return self.activity(name, resolved.params, cid)
        if name in self.data.extra:
            return self.data.extra[name](cid, resolved.params)
        raise NotImplementedError(f"the reference evaluator does not know field {name}")

    def activity(self, name: str, params: Mapping[str, str], cid: int) -> Any:
        """The activity fields (hub.segments.crm_fields) worked out from the contact's activities."""
        rows = [a for a in self.data.activities.get(cid, []) if a["at"] <= self.now]
        held = [a for a in rows if a["done"]]
        through = [a for a in held if a["kind"] == "call" and not a["missed"]]
        missed = [a for a in rows if a["kind"] == "call" and a["direction"] == "in" and a["missed"]]
        if name.endswith(".last_at"):
            kind = {"calls.last_at": "call", "meetings.last_at": "meeting"}.get(name)
            return max((a["at"] for a in held if kind is None or a["kind"] == kind), default=None)
        m = re.match(r"^(\d+)([dwmy])$", params["window"])
        assert m is not None
        start = Span(int(m.group(1)), m.group(2)).shift(self.now, -1)
        chosen = {"calls.count.<window>": through,
                  "meetings.count.<window>": [a for a in held if a["kind"] == "meeting"],
                  "calls.missed_incoming.<window>": missed,
                  "calls.unanswered.<window>": [a for a in missed if not any(b["at"] > a["at"] for b in through)]}
        calls = [a["call_id"] for a in chosen[name] if a["at"] >= start]
        return calls.count(None) + len(set(calls) - {None})  # a call noted twice (one call_id) is one call

    # -- operators

    def passes(self, cond: Condition, seen: Any) -> bool:
        op, value, ftype = cond.op, cond.value, cond.field.field.type
        if op == "is_null":
            return seen is None
        if op == "not_null":
            return seen is not None
        if seen is None:
            return False
        if op == "contains":
            return value in seen
        plugin_op = self.registry.operators.get(op)
        if plugin_op is not None:
            if plugin_op.python is None:
                raise NotImplementedError(f"operator {op} has no Python form")
            return plugin_op.python(seen, value)
        if ftype in ("number", "money"):
            seen = Fraction(seen)
            value = tuple(Fraction(v) for v in value) if op in ("in", "not_in") else value
            value = Fraction(value) if not isinstance(value, tuple) else value
        compare: dict[str, Callable[[Any, Any], bool]] = {
            "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "gt": lambda a, b: a > b,
            "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b,
            "in": lambda a, b: a in b, "not_in": lambda a, b: a not in b}
        if op in compare:
            return compare[op](seen, value)
        if op == "matches":
            return value.lower() in seen.lower()
        is_date = ftype == "date"
        if op in ("before", "after"):
            edge = value.day(self.today) if is_date else value.at(self.now, self.settings.tz)
            return seen < edge if op == "before" else seen > edge
        if op == "within_last":
            end = self.today if is_date else self.now
            return value.shift(end, -1) <= seen <= end
        if op == "birthday_within":
            day, end = self.today, value.shift(self.today)
            while day <= end:
                if (day.month, day.day) == (seen.month, seen.day):
                    return True
                if (seen.month, seen.day) == (2, 29) and (day.month, day.day) == (2, 28) \
                        and not calendar.isleap(day.year):
                    return True
                day += dt.timedelta(days=1)
            return False
        raise NotImplementedError(f"operator {op}")

    # -- lead score

    def score(self, model: ScoreModel, cid: int) -> int:
        total = 0
        for line in model.lines:
            if line.rule is not None and not self.holds(line.rule, cid):
                continue
            points = line.points
            if line.per is not None:
                points *= self.value(line.per, cid) or 0
                if line.max is not None:
                    points = max(-line.max, min(line.max, points))
            total += points
        return total
