"""The floor of the segments benchmark: what Hub's segments do, written by hand in plain SQL.

Each shipped segment (and the benchmark's saved one) is a WHERE clause over
`contacts c` written directly against the tables, independently of Hub's
rule compiler, so the benchmark can time Hub against the SQL a person would
write for the same question on the same data: a COUNT for `hub segments
count`, and for a full refresh the lead scores and each segment's member ids
written with INSERT ... SELECT into a scratch table, each in its own
transaction as Hub's refresh runs them. No diff against recorded members, no
sizes, no hooks: the bare cost of computing and writing the answer.

The SQL here must select the same rows as Hub's (the benchmark checks it
and reports any difference as an error); it reads only the shop's settings
(lifecycle thresholds, time zone) from Hub, never its SQL.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, text
from sqlalchemy.sql.elements import TextClause

from hub.config import Settings
from hub.db import UTCDateTime
from hub.segments.lifecycle import Thresholds

# The saved segment the benchmark adds: two orders or more, in the capitals, email allowed.
CAPITALS = ("Москва", "Санкт-Петербург")
SCRATCH = "bench_floor_members"
SCORES = "bench_floor_scores"
ROWCOUNT: dict[str, Any] = {"execution_options": {"preserve_rowcount": True}}
TIMES = ("now", "d14", "d30", "d90", "d180", "inactive", "dead")


def _tag(dialect: str, tag: str) -> str:
    """`c.tags` (a JSON array) holds `tag`; the tags used here are fixed ASCII words."""
    if dialect == "postgresql":
        return f"c.tags @> CAST('[\"{tag}\"]' AS jsonb)"
    return f"EXISTS (SELECT 1 FROM json_each(c.tags) WHERE value = '{tag}')"


def _consent_is(channel: str, purpose: str, status: str) -> str:
    """The contact's current answer for a channel and purpose is `status`.

    Read from consent_states, the current answers the schema keeps beside the ledger (migration
    0017): one range of its (channel, purpose, status, contact_id) index.
    """
    return (f"c.id IN (SELECT s.contact_id FROM consent_states s WHERE s.channel = '{channel}' "
            f"AND s.purpose = '{purpose}' AND s.status = '{status}')")


def _month_days(today: dt.date, days: int, dialect: str) -> str:
    """Birthdays from today to today + days, as 'MM-DD' strings; 29 February counts on 28 February of a common year."""
    keys = []
    for i in range(days + 1):
        day = today + dt.timedelta(days=i)
        keys.append(day.strftime("%m-%d"))
        if (day.month, day.day) == (2, 28) and not (day.year % 4 == 0 and (day.year % 100 or day.year % 400 == 0)):
            keys.append("02-29")
    md = "to_char(c.birthday, 'MM-DD')" if dialect == "postgresql" else "strftime('%m-%d', c.birthday)"
    return f"{md} IN ({', '.join(repr(k) for k in sorted(set(keys)))})"


def where_clauses(dialect: str, thresholds: Thresholds, today: dt.date) -> dict[str, str]:
    """Each segment's test of one contact row `c`, as a person would write it for this schema."""
    revenue = "c.revenue" if dialect == "postgresql" else "round(c.revenue, 2)"  # SQLite keeps money as REAL
    # These ranges hold a large share of the base: a scan beats the last_order_at index. PostgreSQL's
    # planner knows it from its statistics; SQLite, without any, is told so (a unary + hides the index).
    last = "c.last_order_at" if dialect == "postgresql" else "+c.last_order_at"
    vip = (f"(c.orders_count >= {thresholds.vip_orders} OR {revenue} >= :vip_revenue "
           f"OR {_tag(dialect, thresholds.vip_tag)})")
    active = f"c.orders_count > 0 AND ({last} IS NULL OR {last} > :inactive)"
    granted = _consent_is("email", "marketing", "granted")
    return {
        "birthday_7d": _month_days(today, 7, dialect),
        "dead": f"c.orders_count > 0 AND {last} <= :dead",
        "deal_stuck_14d": "c.id IN (SELECT o.contact_id FROM orders o WHERE o.status = 'open' "
                          "AND o.stage_entered_at <= :d14)",
        "dormant_90d": f"c.orders_count >= 1 AND {last} < :d90 AND {granted}",
        "inactive": f"c.orders_count > 0 AND {last} <= :inactive AND {last} > :dead",
        "never_bought": "c.orders_count = 0",
        "new_30d": "c.created_at BETWEEN :d30 AND :now",
        "potential": "c.orders_count = 0",
        "regular": f"{active} AND c.orders_count >= {thresholds.regular_orders} AND NOT {vip}",
        "vip": f"{active} AND {vip}",
        "working": f"{active} AND c.orders_count < {thresholds.regular_orders} AND NOT {vip}",
        "moscow_buyers_emailable": f"c.orders_count >= 2 AND c.city IN ({', '.join(repr(c) for c in CAPITALS)}) "
                                   f"AND {granted}",
    }


def score_select(dialect: str) -> str:
    """Every live contact's lead score under the shipped model (library/lead_score.yaml), line by line."""
    held = "a.contact_id = c.id AND a.deleted_at IS NULL AND a.done AND a.at <= :now"
    calls = f"(SELECT count(*) FROM activities a WHERE {held} AND a.kind = 'call' AND NOT a.missed AND a.at >= :d30)"
    later_call = ("SELECT 1 FROM activities b WHERE b.contact_id = a.contact_id AND b.at > a.at AND b.kind = 'call' "
                  "AND NOT b.missed AND b.done AND b.deleted_at IS NULL AND b.at <= :now")
    unanswered = ("SELECT 1 FROM activities a WHERE a.contact_id = c.id AND a.deleted_at IS NULL AND a.kind = 'call' "
                  "AND a.direction = 'in' AND a.missed AND a.at >= :d30 AND a.at <= :now "
                  f"AND NOT EXISTS ({later_call})")
    lines = [
        f"CASE WHEN {_tag(dialect, 'decision-maker')} THEN 20 ELSE 0 END",
        "CASE WHEN c.orders_count * 5 > 25 THEN 25 WHEN c.orders_count * 5 < -25 THEN -25 "
        "ELSE c.orders_count * 5 END",
        "CASE WHEN c.last_order_at BETWEEN :d30 AND :now THEN 10 ELSE 0 END",
        f"CASE WHEN {calls} * 5 > 15 THEN 15 ELSE {calls} * 5 END",
        f"CASE WHEN EXISTS (SELECT 1 FROM activities a WHERE {held} AND a.kind = 'meeting' AND a.at >= :d90) "
        "THEN 10 ELSE 0 END",
        "CASE WHEN c.created_at < :d180 "
        "AND NOT (c.last_order_at IS NOT NULL AND c.last_order_at BETWEEN :d180 AND :now) "
        f"AND NOT EXISTS (SELECT 1 FROM activities a WHERE {held} AND a.at >= :d180) THEN -15 ELSE 0 END",
        f"CASE WHEN EXISTS ({unanswered}) THEN -10 ELSE 0 END",
        f"CASE WHEN {_tag(dialect, 'email-bounced')} THEN -10 ELSE 0 END",
    ]
    return f"SELECT c.id, {' + '.join(lines)} FROM contacts c WHERE c.deleted_at IS NULL"


@dataclass
class FloorRefresh:
    """What the hand-written refresh wrote, and how long each part took."""

    seconds: float = 0.0
    lead_score: dict[str, Any] = field(default_factory=dict)
    segments: dict[str, dict[str, Any]] = field(default_factory=dict)


class Floor:
    """Hand-written SQL for the segments of one database, at one moment."""

    def __init__(self, dialect: str, settings: Settings, now: dt.datetime) -> None:
        self.dialect = dialect
        thresholds = Thresholds.from_settings(settings.extra)
        today = now.astimezone(settings.tz).date()
        self.where = where_clauses(dialect, thresholds, today)
        day = dt.timedelta(days=1)
        self.params: dict[str, Any] = {
            "now": now, "d14": now - 14 * day, "d30": now - 30 * day, "d90": now - 90 * day,
            "d180": now - 180 * day, "inactive": now - thresholds.inactive_days * day,
            "dead": now - thresholds.dead_days * day, "vip_revenue": thresholds.vip_revenue}

    @property
    def names(self) -> list[str]:
        return sorted(self.where)

    def _statement(self, sql: str) -> TextClause:
        """The SQL with its parameters typed: moments bound as Hub stores them (naive UTC text on SQLite)."""
        statement = text(sql)
        used = [name for name in self.params if f":{name}" in sql]
        return statement.bindparams(*(bindparam(n, self.params[n], type_=UTCDateTime() if n in TIMES else None)
                                      for n in used))

    def count(self, conn: Connection, name: str) -> int:
        sql = f"SELECT count(*) FROM contacts c WHERE c.deleted_at IS NULL AND {self.where[name]}"
        return int(conn.execute(self._statement(sql)).scalar_one())

    def refresh(self, engine: Engine, names: list[str], members_of: dict[str, int]) -> tuple[FloorRefresh, list[str]]:
        """Lead scores, then every named segment's members into a scratch table, each in its own transaction.

        Untimed after each step: the rows written are compared with what Hub
        recorded (lead_scores; segment_members of the segment whose id is in
        `members_of`). Returns the timings and every difference found, worded.
        """
        report, problems = FloorRefresh(), []
        started = time.perf_counter()
        with engine.connect() as conn:
            t0 = time.perf_counter()
            with conn.begin():
                conn.execute(text(f"CREATE TEMPORARY TABLE {SCORES} (contact_id INTEGER NOT NULL, "
                                  "score INTEGER NOT NULL)"))
                written = conn.execute(self._statement(f"INSERT INTO {SCORES} (contact_id, score) "
                                                       + score_select(self.dialect)), **ROWCOUNT).rowcount
            seconds = time.perf_counter() - t0
            report.lead_score = {"contacts": written, "seconds": round(seconds, 3)}
            checked = time.perf_counter()
            for label, query in (("not in lead_scores", f"SELECT contact_id, score FROM {SCORES} EXCEPT "
                                                        "SELECT contact_id, score FROM lead_scores"),
                                 ("only in lead_scores", "SELECT contact_id, score FROM lead_scores EXCEPT "
                                                         f"SELECT contact_id, score FROM {SCORES}")):
                differ = conn.execute(text(f"SELECT count(*) FROM ({query}) d")).scalar_one()
                if differ:
                    problems.append(f"lead_score: {differ} (contact, score) pairs of the floor {label}")
            conn.execute(text(f"DROP TABLE {SCORES}"))
            conn.commit()
            untimed = time.perf_counter() - checked
            for name in names:
                t0 = time.perf_counter()
                with conn.begin():
                    conn.execute(text(f"CREATE TEMPORARY TABLE {SCRATCH} (contact_id INTEGER NOT NULL)"))
                    written = conn.execute(self._statement(
                        f"INSERT INTO {SCRATCH} (contact_id) SELECT c.id FROM contacts c "
                        f"WHERE c.deleted_at IS NULL AND {self.where[name]}"), **ROWCOUNT).rowcount
                seconds = time.perf_counter() - t0
                report.segments[name] = {"members": written, "seconds": round(seconds, 3)}
                checked = time.perf_counter()
                if name in members_of:
                    recorded = f"SELECT contact_id FROM segment_members WHERE segment_id = {int(members_of[name])}"
                    mine = f"SELECT contact_id FROM {SCRATCH}"
                    for label, query in (("not recorded by Hub", f"{mine} EXCEPT {recorded}"),
                                         ("recorded by Hub only", f"{recorded} EXCEPT {mine}")):
                        differ = conn.execute(text(f"SELECT count(*) FROM ({query}) d")).scalar_one()
                        if differ:
                            problems.append(f"{name}: {differ} members of the floor's refresh {label}")
                conn.execute(text(f"DROP TABLE {SCRATCH}"))
                conn.commit()
                untimed += time.perf_counter() - checked
        report.seconds = time.perf_counter() - started - untimed
        return report, problems
