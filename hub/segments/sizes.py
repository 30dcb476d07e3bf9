"""How many members each segment had, day by day: one point per segment per day, for the size chart.

A refresh writes the point (membership.refresh_segment calls `record`), so
the chart shows exactly what the member list showed that day; the last
refresh of a day wins. The day is the shop's calendar day (settings.tz): a
refresh at 01:00 Moscow time on the 8th belongs to the 8th, not to the 7th
as UTC would have it. A day without a refresh has no point, and the chart
leaves a gap there rather than drawing a zero nobody measured.

`hub scheduler` keeps the days from going blank: the `segment_sizes`
schedule looks each hour whether some segment still lacks today's point,
and if so refreshes those whose recorded members may be out of date
(membership.stale) and writes the point of the others from their recorded
members, which are then the rule's answer.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Connection, Engine, Select, func, select

from hub.config import Settings
from hub.db import insert_for, utcnow
from hub.models import Contact, Segment, SegmentMember, SegmentSize

sizes_t = SegmentSize.__table__
segments_t = Segment.__table__
members_t = SegmentMember.__table__
contacts_t = Contact.__table__
DAYS = 90


def day_of(moment: dt.datetime, tz: ZoneInfo) -> dt.date:
    """The shop's calendar day of an instant."""
    return moment.astimezone(tz).date()


def live_members(segment_id: int) -> Select[Any]:
    """The segment's recorded members who are still someone: not erased, merged away or deleted at the source.

    Their rows stay in segment_members until the segment's next refresh; the
    member list, its export and the size chart all read this one select, so
    the chart's point and the list's total never disagree about them.
    """
    c, m = contacts_t.c, members_t.c
    return (select(m.contact_id).select_from(members_t.join(contacts_t, c.id == m.contact_id))
            .where(m.segment_id == segment_id, c.deleted_at.is_(None)))


def live_count(conn: Connection, segment_id: int, condition: ColumnElement[bool] | None = None) -> int:
    """How many of `live_members` there are (those meeting `condition`, when given: a search of the list)."""
    query = live_members(segment_id)
    if condition is not None:
        query = query.where(condition)
    return int(conn.execute(select(func.count()).select_from(query.subquery())).scalar_one())


def record(conn: Connection, segment_id: int, members: int, now: dt.datetime, tz: ZoneInfo) -> None:
    """Keep `members` as the segment's size on the day of `now`, unless a later measurement of that day is kept."""
    table = sizes_t
    statement = insert_for(conn, table).values(segment_id=segment_id, day=day_of(now, tz), members=members,
                                               measured_at=now)
    conn.execute(statement.on_conflict_do_update(
        index_elements=[table.c.segment_id, table.c.day],
        set_={"members": statement.excluded.members, "measured_at": statement.excluded.measured_at},
        where=table.c.measured_at <= statement.excluded.measured_at))


def history(conn: Connection, segment_id: int, days: int = DAYS, *,
            today: dt.date | None = None) -> list[tuple[dt.date, int]]:
    """The kept points of the last `days` days up to `today` (by default the last day with a point), oldest first."""
    if today is None:
        today = conn.execute(select(func.max(sizes_t.c.day)).where(sizes_t.c.segment_id == segment_id)).scalar()
        if today is None:
            return []
    since = today - dt.timedelta(days=max(days, 1) - 1)
    rows = conn.execute(select(sizes_t.c.day, sizes_t.c.members)
                        .where(sizes_t.c.segment_id == segment_id, sizes_t.c.day >= since, sizes_t.c.day <= today)
                        .order_by(sizes_t.c.day))
    return [(r.day, int(r.members)) for r in rows]


def series(points: list[tuple[dt.date, int]], until: dt.date) -> tuple[list[dt.date], list[int | None]]:
    """Every day from the first point to `until`, with None on the days nobody measured (a gap, not a zero)."""
    if not points:
        return [], []
    kept = dict(points)
    first = points[0][0]
    days = [first + dt.timedelta(days=i) for i in range((max(until, points[-1][0]) - first).days + 1)]
    return days, [kept.get(d) for d in days]


# --- the scheduler's daily point ---------------------------------------------------------------

def lacking_today(conn: Connection, names: list[str], today: dt.date) -> list[str]:
    """Of these segments, those without a point for `today` (one never refreshed has none)."""
    measured = set(conn.execute(select(segments_t.c.name).join(sizes_t, sizes_t.c.segment_id == segments_t.c.id)
                                .where(sizes_t.c.day == today)).scalars())
    return [n for n in names if n not in measured]


def keep_today(engine: Engine, settings: Settings, *, now: dt.datetime | None = None) -> dict[str, int]:
    """Give every segment a point for today: refresh those that may be out of date, measure the others as kept."""
    from hub.segments import membership
    from hub.segments.evaluate import Segments

    now = now or utcnow()
    today = day_of(now, settings.tz)
    with engine.connect() as conn:
        segments = Segments(conn, settings, now=now)
        lacking = lacking_today(conn, sorted(segments.catalog.definitions), today)
        stale = membership.stale(conn, segments, today=today)
    refresh = [n for n in lacking if n in stale]
    measure = [n for n in lacking if n not in stale]
    with engine.begin() as conn:
        for name in measure:
            segment_id = conn.execute(select(segments_t.c.id).where(segments_t.c.name == name)).scalar()
            if segment_id is None:
                continue
            record(conn, segment_id, live_count(conn, segment_id), now, settings.tz)
    if refresh:
        membership.refresh(engine, settings, refresh, now=now)
    return {"refreshed": len(refresh), "measured": len(measure)}


def keep_today_job() -> dict[str, int]:
    """keep_today as a queue job (a worker or the scheduler's background thread), with its own settings."""
    from hub.config import load_settings
    from hub.db import get_engine

    settings = load_settings()
    return keep_today(get_engine(settings.database_url), settings)


def scheduled(run: Any) -> dict[str, Any]:
    """The `segment_sizes` schedule: quick when every segment has today's point, else the work is handed out."""
    from hub.schedule import hand_out
    from hub.segments.evaluate import Segments

    today = day_of(run.now, run.settings.tz)
    with run.engine.connect() as conn:
        names = sorted(Segments(conn, run.settings, now=run.now).catalog.definitions)
        lacking = lacking_today(conn, names, today)
    if not lacking:
        return {}
    # The job is recorded under a name of its own: under the schedule's, a worker's start would pass for
    # the scheduler's heartbeat and its counts for what the schedule did.
    return {"segment_sizes": hand_out(run.settings, "segment_sizes:today", keep_today_job)}
