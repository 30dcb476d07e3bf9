"""The figures the dashboard and the monitoring status show, each one query.

Segment sizes are the members recorded by the last refresh, not a live count:
counting every segment on every page view would cost a scan per segment on a
large base, and `hub segments refresh` runs on a schedule anyway.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, func, select

from hub import plugins, queue
from hub.config import Settings
from hub.db import utcnow
from hub.i18n import gettext as _
from hub.models import Contact, Message, Segment, SegmentMember, SyncRun
from hub.segments import lifecycle, portable

contacts_t = Contact.__table__
runs_t = SyncRun.__table__
messages_t = Message.__table__
segments_t = Segment.__table__
members_t = SegmentMember.__table__


def base_size(conn: Connection) -> int:
    return conn.execute(select(func.count()).select_from(contacts_t)
                        .where(contacts_t.c.deleted_at.is_(None))).scalar_one()


def lifecycle_counts(conn: Connection, settings: Settings) -> dict[str, int]:
    """Live contacts per lifecycle stage, in the stages' own order."""
    stage = lifecycle.stage_sql(contacts_t, now=utcnow(), thresholds=lifecycle.Thresholds.from_settings(
        settings.extra), has_tag=portable.prepare(conn).has_tag).label("stage")
    rows = conn.execute(select(stage, func.count()).where(contacts_t.c.deleted_at.is_(None)).group_by(stage))
    found = {s: n for s, n in rows}
    return {s: found.get(s, 0) for s in lifecycle.STAGES}


def segment_sizes(conn: Connection) -> list[dict[str, Any]]:
    """Each segment with a row (refreshed at least once, or saved) and its recorded members."""
    counts = (select(members_t.c.segment_id, func.count().label("n")).group_by(members_t.c.segment_id)
              .subquery())
    rows = conn.execute(select(segments_t.c.name, segments_t.c.title, segments_t.c.refreshed_at, counts.c.n)
                        .outerjoin(counts, counts.c.segment_id == segments_t.c.id).order_by(segments_t.c.name))
    return [{"name": r.name, "title": r.title, "members": r.n or 0, "refreshed_at": r.refreshed_at} for r in rows]


def source_names() -> list[str]:
    try:
        return sorted(plugins.sources())
    except Exception:  # noqa: BLE001 - a broken plugin must not take the dashboard down with it
        return []


def last_syncs(conn: Connection) -> list[dict[str, Any]]:
    """Per source: its latest run, and its latest failed run if that came after the last good one."""
    names = set(source_names())
    latest = dict(conn.execute(select(runs_t.c.source, func.max(runs_t.c.id)).group_by(runs_t.c.source)).all())
    ok = dict(conn.execute(select(runs_t.c.source, func.max(runs_t.c.id)).where(runs_t.c.status == "ok")
                           .group_by(runs_t.c.source)).all())
    ids = list(latest.values())
    runs = {r.id: dict(r._mapping) for r in conn.execute(select(runs_t).where(runs_t.c.id.in_(ids)))} if ids else {}
    out = []
    for source in sorted(names | set(latest)):
        run = runs.get(latest.get(source, -1))
        out.append({"source": source, "installed": source in names, "run": run,
                    "last_ok_id": ok.get(source), "failing": bool(run and run["status"] == "failed")})
    return out


def queue_health(settings: Settings) -> dict[str, Any]:
    try:
        return queue.health(settings)
    except Exception as exc:  # noqa: BLE001 - Redis down: say so on the page instead of failing it
        return {"mode": "rq", "error": _("Redis is not reachable (%(error)s)", error=type(exc).__name__), "queues": {}}


def week_start(settings: Settings, now: dt.datetime | None = None) -> dt.datetime:
    """Monday 00:00 of this week in the company's time zone, as UTC."""
    local = (now or utcnow()).astimezone(settings.tz)
    monday = dt.datetime.combine(local.date() - dt.timedelta(days=local.weekday()), dt.time(), tzinfo=settings.tz)
    return monday.astimezone(dt.timezone.utc)


def campaigns_since(conn: Connection, since: dt.datetime) -> list[dict[str, Any]]:
    """Messages created since `since`, per campaign (or template when sent outside a campaign) and status."""
    campaign = func.coalesce(Message.meta["campaign"].as_string(), messages_t.c.template, "—").label("campaign")
    rows = conn.execute(select(campaign, messages_t.c.channel, messages_t.c.status, func.count())
                        .where(messages_t.c.created_at >= since)
                        .group_by(campaign, messages_t.c.channel, messages_t.c.status))
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for name, channel, status, n in rows:
        entry = found.setdefault((name, channel), {"campaign": name, "channel": channel, "total": 0,
                                                   "statuses": {}})
        entry["statuses"][status] = n
        entry["total"] += n
    return sorted(found.values(), key=lambda e: (-e["total"], e["campaign"]))
