"""The floors of the scale benchmark: hand-written PostgreSQL doing the same logical work as Hub.

Each shipped segment's rule written by hand as one WHERE clause over contacts
(the lifecycle CASE, the current consent answer from consent_states, an open deal
stuck in its stage), and the shipped lead-score model as one expression over
contacts joined to the activities it reads. Counting with them, and writing
every segment's members (or every score) into a scratch table, is what no
implementation can do much faster on this database at this moment; Hub's
figures are reported as ratios to these.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, text

from hub.segments.compile import birthday_ranges
from hub.segments.lifecycle import Thresholds
from hub.segments.rules import Span

# The current answers as the schema keeps them beside the ledger (consent_states, migration 0017).
LATEST_EMAIL_GRANTED = """id IN (SELECT contact_id FROM consent_states
  WHERE channel = 'email' AND purpose = 'marketing' AND status = 'granted')"""


def _stage(t: Thresholds) -> str:
    return f"""CASE WHEN coalesce(orders_count, 0) = 0 THEN 'potential'
  WHEN last_order_at <= :now - interval '{t.dead_days} days' THEN 'dead'
  WHEN last_order_at <= :now - interval '{t.inactive_days} days' THEN 'inactive'
  WHEN orders_count >= {t.vip_orders} OR round(revenue, 2) >= {t.vip_revenue} OR tags @> '["{t.vip_tag}"]'
    THEN 'vip'
  WHEN orders_count >= {t.regular_orders} THEN 'regular' ELSE 'working' END"""


def segment_where(now: dt.datetime, tz: Any, thresholds: Thresholds) -> dict[str, str]:
    """Each shipped segment's rule, by hand (bound parameter :now)."""
    today = now.astimezone(tz).date()
    md = "(extract(month FROM birthday) * 100 + extract(day FROM birthday))"
    birthdays = " OR ".join(f"{md} BETWEEN {lo} AND {hi}" for lo, hi in birthday_ranges(today, Span(7, "d")))
    stage = _stage(thresholds)
    return {
        "birthday_7d": f"({birthdays})",
        "dead": f"{stage} = 'dead'",
        "deal_stuck_14d": "id IN (SELECT contact_id FROM orders WHERE status = 'open' "
                          "AND stage_entered_at <= :now - interval '14 days')",
        "dormant_90d": f"orders_count >= 1 AND last_order_at < :now - interval '90 days' AND {LATEST_EMAIL_GRANTED}",
        "inactive": f"{stage} = 'inactive'",
        "never_bought": "orders_count = 0",
        "new_30d": "created_at BETWEEN :now - interval '30 days' AND :now",
        "potential": f"{stage} = 'potential'",
        "regular": f"{stage} = 'regular'",
        "vip": f"{stage} = 'vip'",
        "working": f"{stage} = 'working'",
    }


def count(conn: Connection, where: str, now: dt.datetime) -> int:
    return int(conn.execute(text(f"SELECT count(*) FROM contacts WHERE deleted_at IS NULL AND {where}"),
                            {"now": now}).scalar_one())


def write_members(conn: Connection, wheres: dict[str, str], now: dt.datetime) -> int:
    """Every segment's members into one scratch table (segment, contact, when): a first refresh's least work."""
    conn.execute(text("CREATE TEMPORARY TABLE floor_members (segment_id int NOT NULL, contact_id int NOT NULL, "
                      "entered_at timestamptz NOT NULL, PRIMARY KEY (segment_id, contact_id))"))
    total = 0
    for i, where in enumerate(wheres.values(), 1):
        total += conn.execute(text(f"INSERT INTO floor_members SELECT {i}, id, :now FROM contacts "
                                   f"WHERE deleted_at IS NULL AND {where}"), {"now": now}).rowcount
    conn.execute(text("DROP TABLE floor_members"))
    return total


SCORE = """
  (CASE WHEN c.tags @> '["decision-maker"]' THEN 20 ELSE 0 END)
  + least(coalesce(c.orders_count, 0) * 5, 25)
  + (CASE WHEN c.last_order_at BETWEEN :now - interval '30 days' AND :now THEN 10 ELSE 0 END)
  + least(coalesce(a.calls_30d, 0) * 5, 15)
  + (CASE WHEN coalesce(a.meetings_90d, 0) >= 1 THEN 10 ELSE 0 END)
  - (CASE WHEN c.created_at < :now - interval '180 days'
          AND NOT coalesce(c.last_order_at BETWEEN :now - interval '180 days' AND :now, false)
          AND a.last_at IS NULL THEN 15 ELSE 0 END)
  - (CASE WHEN coalesce(a.missed_30d, 0) >= 1 THEN 10 ELSE 0 END)
  - (CASE WHEN c.tags @> '["email-bounced"]' THEN 10 ELSE 0 END)"""


def write_scores(conn: Connection, now: dt.datetime) -> int:
    """Every live contact's score under the shipped model into a scratch table.

    The activities are aggregated once per contact (the last 180 days: what
    any line reads); an unreturned missed call is approximated as any missed
    call, which costs the same to find.
    """
    conn.execute(text("CREATE TEMPORARY TABLE floor_scores (contact_id int NOT NULL, score int NOT NULL)"))
    written = conn.execute(text(f"""
        INSERT INTO floor_scores
        SELECT c.id, {SCORE}
        FROM contacts c LEFT JOIN (
          SELECT contact_id,
                 count(*) FILTER (WHERE kind = 'call' AND at > :now - interval '30 days') AS calls_30d,
                 count(*) FILTER (WHERE kind = 'meeting' AND at > :now - interval '90 days') AS meetings_90d,
                 count(*) FILTER (WHERE kind = 'call' AND at > :now - interval '30 days'
                                  AND missed) AS missed_30d,
                 max(at) AS last_at
          FROM activities WHERE deleted_at IS NULL AND at BETWEEN :now - interval '180 days' AND :now
          GROUP BY contact_id) a
          ON a.contact_id = c.id
        WHERE c.deleted_at IS NULL"""), {"now": now}).rowcount
    conn.execute(text("DROP TABLE floor_scores"))
    return int(written)
