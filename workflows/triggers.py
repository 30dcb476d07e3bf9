"""Starting runs: who enters a workflow, when, and whether they land in the control group.

Five kinds of trigger:

- `segment: NAME`: everyone in the segment who may (re)enter starts a run.
  The scheduler refreshes the segment on every tick and looks at its members
  (polling, rather than trusting that every entry was seen as it happened:
  a workflow switched on today also reaches those who entered last week, and
  a reentry period that ends while someone is still in the segment lets them
  in again). A refresh run by anything else starts runs at once through the
  segment_changed hook; both paths go through `start`, so nobody starts twice.
- `segment: NAME, on: exit`: everyone who leaves the segment starts a run.
  Leaving leaves no trace to poll, so these runs start in the segment_changed
  hook, in the transaction of the refresh that saw them leave, whoever ran
  it; the tick refreshes the segment, so leaving is noticed without anyone
  else refreshing it. Contacts who left by being merged away or erased start
  nothing. Switching such a workflow on refreshes its segment first, before
  it is on (`baseline_exits`): those who left while nobody refreshed it are
  not messaged for it. One refresh in which more people leave than
  `[workflows] confirm_admin_over` (a segment's rule made stricter) starts
  nobody: they are held in the workflow's state until an admin starts them
  from its page. Each workflow starts its runs in a savepoint, so one
  workflow failing never fails the refresh (nor the segment's save).
- `schedule: CRON` with a segment: the same, only at the scheduled times
  (in HUB_TIMEZONE).
- `date: contact.birthday, before: 7d, at: "10:00"`: once a local day, at or
  after `at`, everyone whose date comes round `before` days from today (the
  segment rule language's birthday_within, so 29 February is celebrated on
  28 February in other years). `at` is the shop's time (HUB_TIMEZONE). The
  day it fired is kept in the workflow's state; days the scheduler missed
  are caught up, at most DATE_CATCH_UP days back (each day's key keeps a
  date from starting twice).
- `event: …`: one run per event, found by reading what changed since the last
  look: order.created, order.won, contact.created (each only for what came
  after the workflow was switched on), promo.expiring (`before: 3d`),
  promo.expired, deal.stuck (`after: 14d`: an open deal that has stood in
  one stage that long; one run per deal each such period it stays there, for
  the contact the deal belongs to), and events other systems send (`event: cart_abandoned`,
  each received after the workflow was switched on, its properties in the
  run's context).

Reentry: a contact with a run in progress never starts another; after a run,
they may start again once `reentry` has passed since it started (`never`:
only once). The holdout is chosen by a stable hash of the workflow and the
contact, so the same people are the control group every time.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

from sqlalchemy import Connection, Engine, and_, case, func, or_, select
from sqlalchemy.exc import SQLAlchemyError

from hub.api import Contact, Event, Order, Settings, analyze, bulk_insert, chunks, parse_time_of_day
# not in hub.api on purpose: segment triggers read segments and their members
from hub.models import Segment, SegmentMember
from workflows import promo, store
from workflows.definition import Workflow, WorkflowError, is_api_event
from workflows.models import WorkflowRun

runs_t = WorkflowRun.__table__
members_t = SegmentMember.__table__
segments_t = Segment.__table__
orders_t = Order.__table__
contacts_t = Contact.__table__
events_t = Event.__table__

ACTIVE = ("running", "waiting")
EVENT_MARGIN = dt.timedelta(minutes=10)  # changes this long before the last look are read again
EVENT_PAGE = 2000  # events other systems sent, read per page (one transaction of starts each)
EVENT_PAGES = 20  # pages a workflow reads per tick at most
INSERT_CHUNK = 5000
ENTRY_PAGE = 5000  # segment members read and started at a time (within _history's per-id lookup)
# Runs one entry starts before PostgreSQL's statistics of workflow_runs are refreshed, and again each time
# they double (`start_members`).
ANALYZE_FROM = 5000
DATE_CATCH_UP = 7  # days back a date trigger looks again when the scheduler missed them
# Set while the workflows refresh a trigger segment themselves: they start the runs
# right after, and count them, so the segment_changed hook stands aside.
_own_refresh: contextvars.ContextVar[bool] = contextvars.ContextVar("workflows_own_refresh", default=False)


@dataclass(frozen=True)
class _Refreshing:
    """The tick's settings and moment while it refreshes a segment, and the exit runs the hook started."""

    settings: Settings
    now: dt.datetime
    started: dict[int, "StartReport"]


_refreshing: contextvars.ContextVar[_Refreshing | None] = contextvars.ContextVar("workflows_refreshing",
                                                                                 default=None)


@dataclass(frozen=True)
class Candidate:
    contact_id: int
    key: str | None = None  # the event's key: one run per event
    context: dict[str, Any] = field(default_factory=dict)


@dataclass
class StartReport:
    started: int = 0
    holdout: int = 0
    skipped: int = 0

    def add(self, other: "StartReport") -> None:
        self.started += other.started
        self.holdout += other.holdout
        self.skipped += other.skipped

    def as_dict(self) -> dict[str, int]:
        return {"started": self.started, "holdout": self.holdout, "skipped": self.skipped}


def holdout_bucket(workflow: str, contact_id: int) -> int:
    """0–9999, the same for a workflow and a contact every time."""
    digest = hashlib.sha256(f"{workflow}:{contact_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000


def in_holdout_name(workflow: str, contact_id: int, percent: Any) -> bool:
    """Whether the contact is in the workflow's control group of `percent` per cent."""
    return holdout_bucket(workflow, contact_id) < int(percent * 100)


def in_holdout(workflow: Workflow, contact_id: int) -> bool:
    return in_holdout_name(workflow.name, contact_id, workflow.holdout)


def _blocks(past: Sequence[Any], workflow: Workflow, now: dt.datetime) -> bool:
    """Whether the contact's past runs of the workflow keep it from starting another now."""
    return any(h.status in ACTIVE or workflow.reentry is None or h.started_at > now - workflow.reentry for h in past)


def _history(conn: Connection, workflow_id: int, contact_ids: Sequence[int]) -> dict[int, list[Any]]:
    """The workflow's past runs of these contacts.

    A few contacts are looked up by contact_id alone (their runs of every
    workflow, this one's kept): with the workflow in the condition too, a
    runs table whose statistics say it is empty (the first big entry, a
    million runs inserted in one transaction) was read through the
    (workflow_id, trigger_key) index, every run of the workflow for every
    thousand contacts.
    """
    r = runs_t.c
    out: dict[int, list[Any]] = {}
    q = select(r.workflow_id, r.contact_id, r.cycle, r.status, r.started_at)
    if len(contact_ids) > 5000:
        queries = [q.where(r.workflow_id == workflow_id)]
    else:
        queries = [q.where(r.contact_id.in_(part)) for part in chunks(list(contact_ids), 1000)]
    for query in queries:
        for row in conn.execute(query):
            if row.workflow_id == workflow_id:
                out.setdefault(row.contact_id, []).append(row)
    return out


def start(conn: Connection, row: Any, workflow: Workflow, candidates: Iterable[Candidate], *, trigger: str,
          now: dt.datetime, history: dict[int, list[Any]] | None = None) -> StartReport:
    """Start a run for every candidate who may enter; the rest are counted as skipped.

    `history` is the candidates' runs of the workflow (`_history`) when the caller has just read them.
    """
    candidates = list(candidates)
    report = StartReport()
    if not candidates:
        return report
    keys = [c.key for c in candidates if c.key]
    seen_keys: set[str] = set()
    for part in chunks(keys, 1000):
        seen_keys.update(conn.execute(select(runs_t.c.trigger_key).where(
            runs_t.c.workflow_id == row.id, runs_t.c.trigger_key.in_(part))).scalars())
    if history is None:
        history = _history(conn, row.id, sorted({c.contact_id for c in candidates}))
    chosen: set[int] = set()
    values = []
    for cand in candidates:
        if cand.key is not None and cand.key in seen_keys:
            continue  # this event already started a run (or was looked at and skipped)
        past = history.get(cand.contact_id, [])
        blocked = cand.contact_id in chosen or _blocks(past, workflow, now)
        if blocked:
            report.skipped += 1
            continue
        chosen.add(cand.contact_id)
        holdout = in_holdout(workflow, cand.contact_id)
        values.append({
            "workflow_id": row.id, "version": row.version, "contact_id": cand.contact_id,
            "cycle": max((h.cycle for h in past), default=0) + 1, "holdout": holdout,
            "status": "holdout" if holdout else "running", "step": 0, "next_at": None if holdout else now,
            "attempts": 0, "trigger": trigger, "trigger_key": cand.key, "context": cand.context,
            "started_at": now, "finished_at": now if holdout else None, "updated_at": now})
    if not values:
        return report

    # Counted over the contacts these rows are for (their id range, on the runs' unique index): a count over
    # every run of the workflow would cost each page of a million entering more than its insert.
    low, high = min(v["contact_id"] for v in values), max(v["contact_id"] for v in values)

    def started_now() -> tuple[int, int]:
        r = runs_t.c
        n, held = conn.execute(select(func.count(), func.coalesce(func.sum(case((r.holdout, 1), else_=0)), 0))
                               .where(r.workflow_id == row.id, r.contact_id.between(low, high),
                                      r.started_at == now)).one()
        return int(n), int(held)

    # A run that another process started meanwhile (the same workflow, contact and cycle) is left alone:
    # the insert skips it, and counting before and after tells how many were ours.
    before = started_now()
    for part in chunks(values, INSERT_CHUNK):
        bulk_insert(conn, runs_t, list(part), ignore_conflicts=True)
    after = started_now()
    report.started += after[0] - before[0]
    report.holdout += after[1] - before[1]
    report.skipped += len(values) - (after[0] - before[0])
    return report


def trigger_text(conn: Connection, settings: Settings, workflow: Workflow) -> str:
    """The workflow's trigger as people read it, its segment named by its title («Не покупали 90 дней»)."""
    from hub.api import translated_title
    # not in hub.api on purpose: the segment's title comes with its definition (built-in ones from the library)
    from hub.segments.evaluate import Segments

    name = workflow.trigger.segment
    title = None
    if name:
        catalog = Segments(conn, settings).catalog
        definition = catalog.definitions.get(name)
        row = catalog.rows.get(name)
        title = definition.title if definition else (row.title if row else None)
    return workflow.trigger.text(translated_title(title) or None)


def _members(segment: str) -> tuple[Any, Any]:
    """(the members joined to their segment and contact, the condition for the segment's live members)."""
    m, c = members_t.c, contacts_t.c
    joined = members_t.join(segments_t, segments_t.c.id == m.segment_id).join(contacts_t, c.id == m.contact_id)
    return joined, and_(segments_t.c.name == segment, c.deleted_at.is_(None))


def segment_candidates(conn: Connection, row: Any, workflow: Workflow, segment: str, *,
                       now: dt.datetime) -> tuple[list[Candidate], int]:
    """Members of the segment (as last refreshed) who may enter now, and how many members there are."""
    joined, member = _members(segment)
    total = conn.execute(select(func.count()).select_from(joined).where(member)).scalar_one()
    ids = [cid for page in candidate_pages(conn, row, workflow, segment, now=now) for cid in page]
    return [Candidate(cid) for cid in ids], total


def candidate_pages(conn: Connection, row: Any, workflow: Workflow, segment: str, *, now: dt.datetime,
                    size: int | None = None) -> Iterator[list[int]]:
    """The ids of the members who may enter now, at most `size` at a time in id order.

    A page is read after the previous one was started (keyset on contact_id),
    so what a caller holds at a time is one page, whatever the segment's size.
    Each is read in two steps that need no statistics of the runs: the next
    `size` members, then their runs of the workflow, looked up by their ids
    (`_history`). One anti-join of the members against the runs was planned
    from the runs' statistics, and while a million entered in one transaction
    those said the workflow had one run: PostgreSQL read every run of the
    workflow again for each page (hours for a million, growing with the
    square of those entered).
    """
    for page, _history_of_page in _pages(conn, row, workflow, segment, now=now, size=size):
        yield page


def _pages(conn: Connection, row: Any, workflow: Workflow, segment: str, *, now: dt.datetime,
           size: int | None = None) -> Iterator[tuple[list[int], dict[int, list[Any]]]]:
    """`candidate_pages` with each page's runs of the workflow (`_history`), which `start` reads again otherwise."""
    joined, member = _members(segment)
    m = members_t.c
    size = size or ENTRY_PAGE
    after = 0
    while True:
        members = list(conn.execute(select(m.contact_id).select_from(joined).where(member, m.contact_id > after)
                                    .order_by(m.contact_id).limit(size)).scalars())
        if not members:
            return
        history = _history(conn, row.id, members)
        page = [cid for cid in members if not _blocks(history.get(cid, ()), workflow, now)]
        if page:
            yield page, history
        if len(members) < size:
            return
        after = members[-1]


def exit_pending(conn: Connection, settings: Settings, segment: str, *, now: dt.datetime) -> list[int]:
    """Recorded members the segment's rule no longer holds for: who its next refresh sees leave.

    Those merged away or erased are left out: leaving that way starts nothing.
    """
    # not in hub.api on purpose: conditions and triggers are written in the segment rule language itself
    from hub.segments.evaluate import Segments

    m, c = members_t.c, contacts_t.c
    recorded = conn.execute(select(m.contact_id).select_from(
        members_t.join(segments_t, segments_t.c.id == m.segment_id).join(contacts_t, c.id == m.contact_id))
        .where(segments_t.c.name == segment, c.deleted_at.is_(None))).scalars().all()
    if not recorded:
        return []
    current = set(Segments(conn, settings, now=now).member_ids(segment))
    return sorted(cid for cid in recorded if cid not in current)


def start_members(conn: Connection, row: Any, workflow: Workflow, *, now: dt.datetime,
                  trigger: str | None = None) -> StartReport:
    """Start runs for the trigger segment's members who may enter (the segment refreshed before)."""
    segment = workflow.trigger.segment
    assert segment is not None
    joined, member = _members(segment)
    total = conn.execute(select(func.count()).select_from(joined).where(member)).scalar_one()
    report = StartReport()
    looked = 0
    analyze_at = ANALYZE_FROM
    # A page at a time: a segment of millions enters in memory of one page (ENTRY_PAGE runs).
    for page, history in _pages(conn, row, workflow, segment, now=now):
        report.add(start(conn, row, workflow, [Candidate(cid) for cid in page],
                         trigger=trigger or f"segment:{segment}", now=now, history=history))
        looked += len(page)
        if report.started >= analyze_at:
            # A million runs enter in one transaction, and autovacuum sees none of them until it commits:
            # planned from statistics taken while the table was empty, each page's lookup of its members'
            # runs (`_history`) read the whole table, which grows with every page (past 16 minutes for a
            # million). Refreshed each time the runs double, the plans follow the table.
            analyze(conn, runs_t)
            analyze_at = 2 * report.started
    report.skipped += total - looked
    return report


def schedule_due(workflow: Workflow, state: dict[str, Any], settings: Settings, now: dt.datetime,
                 enabled_at: dt.datetime | None) -> bool:
    """Whether a scheduled time passed since the schedule last fired (or since it was switched on)."""
    from croniter import croniter

    schedule = workflow.trigger.schedule
    assert schedule is not None, "asked of schedule triggers only"
    last = state.get("fired_at")
    base = dt.datetime.fromisoformat(last) if last else (enabled_at or now)
    upcoming = croniter(schedule, base.astimezone(settings.tz)).get_next(dt.datetime)
    return upcoming <= now


def date_day(settings: Settings, now: dt.datetime) -> dt.date:
    """The shop's calendar day at `now` (HUB_TIMEZONE): what a date trigger's cursor counts."""
    return now.astimezone(settings.tz).date()


def date_due(workflow: Workflow, state: dict[str, Any], settings: Settings, now: dt.datetime) -> bool:
    """Whether a date trigger is to look today: its time (`at`, local) has come and it has not looked today."""
    at = workflow.trigger.at
    assert at is not None, "asked of date triggers only"
    local = now.astimezone(settings.tz)
    return local.time() >= parse_time_of_day(at) and state.get("date_day") != local.date().isoformat()


def date_days(workflow: Workflow, state: dict[str, Any], settings: Settings, now: dt.datetime,
              enabled_at: dt.datetime | None = None) -> list[dt.date]:
    """The days a date trigger is to look at now, oldest first: those missed since its last look, then today.

    A day the scheduler missed (the server was down) is looked at late
    rather than never, at most DATE_CATCH_UP days back and never before the
    workflow was switched on; today only once `at` (the shop's time) came.
    """
    today = date_day(settings, now)
    last = state.get("date_day")
    first = dt.date.fromisoformat(last) + dt.timedelta(days=1) if last else (
        date_day(settings, enabled_at) if enabled_at else today)
    first = max(first, today - dt.timedelta(days=DATE_CATCH_UP))
    until = today if date_due(workflow, state, settings, now) else today - dt.timedelta(days=1)
    return [first + dt.timedelta(days=i) for i in range((until - first).days + 1)]


def date_candidates(conn: Connection, settings: Settings, workflow: Workflow, *, now: dt.datetime,
                    day: dt.date | None = None) -> list[Candidate]:
    """Contacts whose date comes round `before` days after `day` (today by default): one run each.

    The date is asked in the segment rule language ({op: birthday_within,
    value: 0d} on the day the date falls on), so an anniversary means here what
    it means in a segment: across the new year, and 29 February kept on
    28 February in other years. The key names the day the date comes round, so
    a contact gets one run for it however often the trigger looks.
    """
    # not in hub.api on purpose: conditions and triggers are written in the segment rule language itself
    from hub.segments.evaluate import Segments
    # not in hub.api on purpose: conditions and triggers are written in the segment rule language itself
    from hub.segments.rules import Parser, RuleError

    trigger = workflow.trigger
    assert trigger.date is not None, "asked of date triggers only"
    target = (day or date_day(settings, now)) + (trigger.before or dt.timedelta(0))
    segments = Segments(conn, settings, now=dt.datetime.combine(target, dt.time(12), settings.tz))
    parser = Parser(segments.registry)
    node = parser.rule({"field": trigger.date, "op": "birthday_within", "value": "0d"}, "trigger.date")
    if node is None:  # the field went away with its plugin since the workflow was checked
        raise WorkflowError(parser.problems or [f"trigger.date: {trigger.date}"])
    try:
        ids = conn.execute(segments.compiler.members(node).order_by(contacts_t.c.id)).scalars().all()
    except RuleError as exc:
        raise WorkflowError(exc.problems) from None
    return [Candidate(cid, f"date:{target.isoformat()}:{cid}", {"date": trigger.date, "day": target.isoformat()})
            for cid in ids]


def date_next(conn: Connection, settings: Settings, workflow: Workflow, contact_id: int, *,
              now: dt.datetime) -> dt.date | None:
    """The day (from today on) a date trigger would start this contact, or None when they have no such date.

    Asked in the same rule language as date_candidates, for the one contact:
    the smallest span `birthday_within` holds for from the target day, found
    by halving (a dozen small queries rather than one per day of the year).
    """
    # not in hub.api on purpose: conditions and triggers are written in the segment rule language itself
    from hub.segments.evaluate import Segments
    # not in hub.api on purpose: conditions and triggers are written in the segment rule language itself
    from hub.segments.rules import Parser

    trigger = workflow.trigger
    assert trigger.date is not None, "asked of date triggers only"
    today = date_day(settings, now)
    target = today + (trigger.before or dt.timedelta(0))
    segments = Segments(conn, settings, now=dt.datetime.combine(target, dt.time(12), settings.tz))
    parser = Parser(segments.registry)

    def within(days: int) -> bool:
        node = parser.rule({"field": trigger.date, "op": "birthday_within", "value": f"{days}d"}, "trigger.date")
        if node is None:
            raise WorkflowError(parser.problems or [f"trigger.date: {trigger.date}"])
        where = segments.compiler.where(node)
        return conn.execute(select(contacts_t.c.id).where(contacts_t.c.id == contact_id, where)).first() is not None

    low, high = 0, 366
    if not within(high):
        return None
    while low < high:
        middle = (low + high) // 2
        if within(middle):
            high = middle
        else:
            low = middle + 1
    return today + dt.timedelta(days=low)


def event_candidates(conn: Connection, row: Any, workflow: Workflow, *, now: dt.datetime,
                     tz: dt.tzinfo | None = None) -> list[Candidate]:
    """Events since the last look (with a margin; each event's key keeps it from starting twice).

    `tz` is the shop's time zone (HUB_TIMEZONE), in which a close date without a
    time may have been written as midnight (see `won_after`).
    """
    trigger, state = workflow.trigger, dict(row.state or {})
    since = dt.datetime.fromisoformat(state["since"]) - EVENT_MARGIN if state.get("since") else None
    enabled_at = row.enabled_at
    o, c = orders_t.c, contacts_t.c
    out: list[Candidate] = []
    if trigger.event in ("order.created", "order.won"):
        q = select(o.id, o.contact_id, o.amount, o.status).where(o.contact_id.is_not(None))
        if since is not None:
            q = q.where(o.updated_at >= since)
        if trigger.event == "order.created":
            q = q.where(o.id > int(state.get("order_floor", 0)))
        else:
            q = q.where(o.status == "won")
            if enabled_at:  # a day earlier: a close date without a time reads as that day's midnight
                q = q.add_columns(o.closed_at, o.created_at).where(or_(
                    o.closed_at >= enabled_at - dt.timedelta(days=1),
                    and_(o.closed_at.is_(None), o.created_at >= enabled_at)))
        for r in conn.execute(q.order_by(o.id)):
            if trigger.event == "order.won" and enabled_at and not won_after(r.closed_at or r.created_at, enabled_at,
                                                                              tz):
                continue
            out.append(Candidate(r.contact_id, f"{trigger.event}:{r.id}",
                                 {"event": trigger.event, "order_id": r.id, "amount": str(r.amount)}))
    elif trigger.event == "deal.stuck":
        out = stuck_deal_candidates(conn, trigger.after, now)
    elif trigger.event == "contact.created":
        q = select(c.id).where(c.id > int(state.get("contact_floor", 0)), c.deleted_at.is_(None))
        if since is not None:
            q = q.where(c.created_at >= since)
        out = [Candidate(cid, f"contact.created:{cid}", {"event": "contact.created"})
               for cid in conn.execute(q.order_by(c.id)).scalars()]
    elif is_api_event(trigger.event):
        after = state.get("event_after")
        out = api_event_candidates(conn, row, trigger.event, after=None if after is None else int(after))[0]
    else:
        expired = trigger.event == "promo.expired"
        workflow_id = None
        if trigger.workflow:
            workflow_id = conn.execute(select(store.workflows_t.c.id).where(
                store.workflows_t.c.name == trigger.workflow)).scalar()
            if workflow_id is None:
                return []
        floor = max(d for d in (since, enabled_at) if d is not None) if (since or enabled_at) else None
        for r in promo.expiring(conn, now=now, before=trigger.before, expired=expired, workflow_id=workflow_id,
                                since=floor if expired else None):
            out.append(Candidate(r.contact_id, f"{trigger.event}:{r.id}", {"event": trigger.event, "promo_id": r.id}))
    return out


def stuck_deal_candidates(conn: Connection, after: dt.timedelta, now: dt.datetime) -> list[Candidate]:
    """Open deals that have stood in one stage for `after` (or two, three … times it): one run per deal and period.

    The key names the deal, the moment it entered its stage and how many
    periods it has stood there, so a deal that moves on and gets stuck again
    starts a new run, one still stuck a period later starts one more (the
    manager is reminded again), and none starts twice for the same period. A
    contact with two stuck deals gets a run for each, one after the other
    (the workflow's reentry applies between them as between any runs).
    """
    o = orders_t.c
    rows = conn.execute(select(o.id, o.contact_id, o.stage_entered_at)
                        .where(o.status == "open", o.stage_entered_at.is_not(None), o.contact_id.is_not(None),
                               o.stage_entered_at <= now - after)
                        .order_by(o.stage_entered_at, o.id))
    out = []
    for r in rows:
        entered = _utc(r.stage_entered_at)
        periods = (_utc(now) - entered) // after
        out.append(Candidate(r.contact_id, f"deal.stuck:{r.id}:{entered.isoformat()}:{periods}",
                             {"event": "deal.stuck", "order_id": r.id}))
    return out


def won_after(closed_at: dt.datetime, enabled_at: dt.datetime, tz: dt.tzinfo | None = None) -> bool:
    """Whether a deal was won after the workflow was switched on.

    Many CRMs keep a deal's close date as a date (Bitrix24's CLOSEDATE
    "2026-12-01", given back as that day's midnight in UTC, or in the shop's
    zone when a plugin reads it there): such a deal, won in the afternoon of
    the day the workflow was switched on in the morning, would seem won
    before it and never be surveyed. A close time that is a midnight is
    therefore compared by its date. A won deal with no close date Hub could
    read counts from when it was created (a deal from before the workflow was
    switched on is never surveyed for it).
    """
    closed_at, enabled_at = _utc(closed_at), _utc(enabled_at)
    if closed_at >= enabled_at:
        return True
    for zone in (dt.timezone.utc, tz):
        if zone is None:
            continue
        local = closed_at.astimezone(zone)
        if local.time() == dt.time(0) and local.date() >= enabled_at.astimezone(zone).date():
            return True
    return False


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.timezone.utc)


def api_event_candidates(conn: Connection, row: Any, name: str | None, *, after: int | None = None,
                         horizon: int | None = None, limit: int | None = None) -> tuple[list[Candidate], int]:
    """One page of the events of this name other systems sent (POST /api/v1/events): one run each.

    Read by event id after `after` (the workflow's state keeps the last id
    looked at), at most `limit` a page and not past `horizon`
    (hub.api.settled_event_id: nothing later commits below it), so a busy
    event costs a bounded read per look, and each event is looked at once.
    Only events received after the workflow was switched on, of contacts
    not deleted in every source. The run's context keeps the event's name,
    id and properties, so what the run did can be traced to the event that
    started it (an erasure clears them, with the person's events).

    Returns the candidates and the id to read after next time.
    """
    e, c = events_t.c, contacts_t.c
    limit = limit or EVENT_PAGE
    if after is None:
        after = _first_after(conn, row, name)
    q = (select(e.id, e.contact_id, e.properties, c.deleted_at).join(contacts_t, c.id == e.contact_id)
         .where(e.name == name, e.id > after))
    if horizon is not None:
        q = q.where(e.id <= horizon)
    if row.enabled_at is not None:
        q = q.where(e.received_at >= row.enabled_at)
    rows = conn.execute(q.order_by(e.id).limit(limit)).all()
    if len(rows) == limit:
        after = rows[-1].id
    elif horizon is not None:
        after = max(after, horizon)
    elif rows:
        after = rows[-1].id
    return [Candidate(r.contact_id, f"event:{r.id}", {"event": name, "event_id": r.id,
                                                      "properties": dict(r.properties or {})})
            for r in rows if r.deleted_at is None], after


def _first_after(conn: Connection, row: Any, name: str | None) -> int:
    """Where a workflow's first look starts: just before the first event received since it was switched on."""
    e = events_t.c
    q = select(func.min(e.id)).where(e.name == name)
    if row.enabled_at is not None:
        q = q.where(e.received_at >= row.enabled_at)
    first = conn.execute(q).scalar()
    return int(first) - 1 if first is not None else int(conn.execute(select(func.coalesce(func.max(e.id), 0))
                                                                     .where(e.name == name)).scalar_one())


def fire_api_events(engine: Engine, row: Any, workflow: Workflow, state: dict[str, Any], *,
                    now: dt.datetime) -> StartReport:
    """Start one run per new event, a page at a time; each page's runs and the id read up to commit together."""
    from hub.api import settled_event_id

    report = StartReport()
    horizon = settled_event_id(engine)
    after = state.get("event_after")
    for _page in range(EVENT_PAGES):  # a bigger backlog is caught up over the following ticks
        with engine.connect() as conn:
            candidates, next_after = api_event_candidates(conn, row, workflow.trigger.event,
                                                          after=None if after is None else int(after),
                                                          horizon=horizon)
        with engine.begin() as conn:
            report.add(start(conn, row, workflow, candidates, trigger=f"event:{workflow.trigger.event}", now=now))
            state = {**state, "since": now.isoformat(), "event_after": next_after}
            store.save_state(conn, row.id, state)
        if next_after >= horizon or next_after == after:
            break
        after = next_after
    return report


def _refresh(engine: Engine, settings: Settings, segment: str, *, now: dt.datetime, refreshed: set[str] | None,
             started: dict[int, StartReport]) -> None:
    """Refresh a trigger segment for the tick (once per tick): entries are polled after, exits start in the hook."""
    # not in hub.api on purpose: conditions and triggers are written in the segment rule language itself
    from hub.segments import membership

    if refreshed is not None and segment in refreshed:
        return
    token = _own_refresh.set(True)
    context = _refreshing.set(_Refreshing(settings, now, started))
    try:
        membership.refresh(engine, settings, [segment], now=now)
    finally:
        _refreshing.reset(context)
        _own_refresh.reset(token)
    if refreshed is not None:
        refreshed.add(segment)


def fire(engine: Engine, settings: Settings, row: Any, workflow: Workflow, *, now: dt.datetime,
         refreshed: set[str] | None = None, manual: bool = False,
         started: dict[int, StartReport] | None = None) -> StartReport:
    """One look at a workflow's trigger: start the runs it calls for now.

    `refreshed` names the segments already refreshed in this tick, and
    `started` collects, by workflow id, the runs the segment_changed hook
    started for exit triggers during those refreshes (an exit workflow whose
    segment another one refreshed earlier in the tick finds its own there);
    `manual` (hub workflows run) ignores the schedule (and a date trigger's
    time) and starts the runs due today now.
    """
    trigger = workflow.trigger
    state = dict(row.state or {})
    started = {} if started is None else started
    if trigger.kind == "schedule" and not manual and not schedule_due(workflow, state, settings, now, row.enabled_at):
        return StartReport()
    if trigger.kind == "exit":
        assert trigger.segment is not None
        _refresh(engine, settings, trigger.segment, now=now, refreshed=refreshed, started=started)
        return started.pop(row.id, StartReport())
    if trigger.kind == "date":
        days = [date_day(settings, now)] if manual else date_days(workflow, state, settings, now, row.enabled_at)
        report = StartReport()
        for day in days:
            with engine.connect() as conn:
                candidates = date_candidates(conn, settings, workflow, now=now, day=day)
            with engine.begin() as conn:
                report.add(start(conn, row, workflow, candidates,
                                 trigger="manual" if manual else f"date:{trigger.date}", now=now))
                if not manual:
                    state = {**state, "date_day": day.isoformat()}
                    store.save_state(conn, row.id, state)
        return report
    if trigger.kind in ("segment", "schedule"):
        assert trigger.segment is not None
        _refresh(engine, settings, trigger.segment, now=now, refreshed=refreshed, started=started)
        with engine.begin() as conn:
            report = start_members(conn, row, workflow, now=now, trigger="manual" if manual else None)
            if trigger.kind == "schedule" and not manual:
                store.save_state(conn, row.id, {**state, "fired_at": now.isoformat()})
        return report
    if is_api_event(trigger.event):
        return fire_api_events(engine, row, workflow, state, now=now)
    with engine.connect() as conn:
        candidates = event_candidates(conn, row, workflow, now=now, tz=settings.tz)
    with engine.begin() as conn:
        report = start(conn, row, workflow, candidates, trigger=f"event:{trigger.event}", now=now)
        store.save_state(conn, row.id, {**state, "since": now.isoformat()})
    return report


def _is_exit(row: Any) -> bool:
    trigger = row.definition.get("trigger") if isinstance(row.definition, dict) else None
    return isinstance(trigger, dict) and trigger.get("on") == "exit" and isinstance(trigger.get("segment"), str)


def baseline_exits(conn: Connection, row: Any, *, now: dt.datetime | None = None) -> None:
    """Before an exit workflow is switched on: bring its segment's members up to date, starting nothing for it.

    Members recorded at the last refresh who no longer fit the rule left
    while the workflow was off (or before anyone refreshed the segment);
    left in place, the first refresh after switching on would message them
    all at once as if they had just left. Refreshed here, in the switch-on's
    transaction and while the workflow is still off, they are not its exits;
    from then on only those who leave are. Other exit workflows on the same
    segment, already on, start for them as they would at any refresh.
    """
    if not _is_exit(row):
        return
    from hub.api import load_settings
    # not in hub.api on purpose: conditions and triggers are written in the segment rule language itself
    from hub.segments import membership, portable
    # not in hub.api on purpose: conditions and triggers are written in the segment rule language itself
    from hub.segments.evaluate import Segments
    # not in hub.api on purpose: conditions and triggers are written in the segment rule language itself
    from hub.segments.rules import RuleError, SegmentError

    settings = load_settings()
    try:
        segments = Segments(conn, settings, now=now)
        definition = segments.get(row.definition["trigger"]["segment"])
    except (SegmentError, RuleError):  # switching on refuses a workflow that no longer checks, with the reason
        return
    token = _own_refresh.set(True)
    try:
        portable.serialize(conn, membership.REFRESH_LOCK)
        membership.refresh_segment(conn, segments.compiler, definition)
    finally:
        _own_refresh.reset(token)


def held_exits(row: Any) -> dict[str, Any] | None:
    """The exits a workflow holds for an admin (one refresh let too many leave at once), or None."""
    held = (row.state or {}).get("held_exits")
    return held if isinstance(held, dict) and held.get("ids") else None


def _hold(conn: Connection, row: Any, segment: str, ids: list[int], now: dt.datetime) -> None:
    """Keep these exits for an admin to start; a refresh's chunks (same moment) add to one batch."""
    state = dict(store.row(conn, row.name).state or {})
    held = dict(state.get("held_exits") or {})
    ids = sorted(set(held.get("ids") or []) | set(ids))
    state["held_exits"] = {"segment": segment, "at": now.isoformat(), "count": len(ids), "ids": ids}
    store.save_state(conn, row.id, state)


def start_held_exits(conn: Connection, settings: Settings, name: str, *, now: dt.datetime) -> StartReport:
    """An admin starts the held exits: each who may still enter (not erased, not blocked by reentry) starts."""
    row = store.row(conn, name)
    held = held_exits(row)
    state = dict(row.state or {})
    state.pop("held_exits", None)
    report = StartReport()
    if held is not None and row.enabled:
        workflow = store.definition(conn, settings, row.id, row.version)
        alive = [cid for part in chunks([int(i) for i in held["ids"]], 1000) for cid in conn.execute(
            select(contacts_t.c.id).where(contacts_t.c.id.in_(list(part)), contacts_t.c.deleted_at.is_(None))
        ).scalars()]
        report = start(conn, row, workflow, [Candidate(cid) for cid in sorted(alive)],
                       trigger=f"exit:{held['segment']}", now=now)
    store.save_state(conn, row.id, state)
    return report


def _failed(conn: Connection, row: Any, segment: str, error: Exception, now: dt.datetime) -> None:
    """Mark in the workflow's state that starting its exit runs failed (the health banner and its page say so)."""
    import logging

    logging.getLogger(__name__).error("workflow %s: starting runs for leaving %s failed: %s", row.name, segment,
                                      type(error).__name__)
    try:
        with conn.begin_nested():
            state = dict(store.row(conn, row.name).state or {})
            failed = dict(state.get("exit_failed") or {})
            state["exit_failed"] = {"segment": segment, "at": now.isoformat(), "error": type(error).__name__,
                                    "count": int(failed.get("count") or 0) + 1}
            store.save_state(conn, row.id, state)
    except SQLAlchemyError:  # the refresh goes on whatever happens to the mark
        logging.getLogger(__name__).exception("workflow %s: could not mark the failure", row.name)


def on_segment_changed(conn: Connection, segment: str, entered: list[int], exited: list[int]) -> None:
    """segment_changed: start runs at once for those who entered (or left) a segment that triggers a workflow.

    Entries the workflows' own refresh saw are left to the tick, which polls
    the members right after; exits are started here whoever refreshed, as
    nothing else would see them.
    """
    own = _own_refresh.get()
    if not exited and (own or not entered):
        return
    import logging

    from hub.api import load_settings, utcnow

    def watches(row: Any) -> bool:
        trigger = row.definition.get("trigger") or {}
        return (isinstance(trigger, dict) and trigger.get("segment") == segment and "schedule" not in trigger
                and "event" not in trigger and "date" not in trigger)

    rows = [r for r in store.rows(conn) if r.enabled and watches(r)]
    if not rows:
        return
    context = _refreshing.get()
    settings, now = (context.settings, context.now) if context else (load_settings(), utcnow())
    from workflows import config

    limit = config.load(settings).confirm_admin_over
    still_here: list[int] | None = None
    for row in rows:
        try:
            workflow = store.definition(conn, settings, row.id, row.version)
        except WorkflowError as exc:  # the tick reports it; the refresh itself must not fail for it
            logging.getLogger(__name__).error("workflow %s: %s", row.name, exc)
            continue
        if workflow.trigger.kind == "exit" and exited:
            if still_here is None:  # merged away or erased: they left, but there is nobody to write to
                still_here = [cid for part in chunks(exited, 1000) for cid in conn.execute(
                    select(contacts_t.c.id).where(contacts_t.c.id.in_(list(part)), contacts_t.c.deleted_at.is_(None))
                ).scalars()]
            held = held_exits(row)
            same_refresh = held is not None and held.get("at") == now.isoformat() and held.get("segment") == segment
            if len(still_here) > limit or (same_refresh and still_here):
                # so many at once is a changed rule more often than people leaving: an admin decides
                try:
                    with conn.begin_nested():
                        _hold(conn, row, segment, still_here, now)
                except (SQLAlchemyError, WorkflowError, ValueError) as exc:  # one workflow must not fail the refresh
                    _failed(conn, row, segment, exc, now)
                continue
            try:
                with conn.begin_nested():
                    report = start(conn, row, workflow, [Candidate(cid) for cid in still_here],
                                   trigger=f"exit:{segment}", now=now)
            except (SQLAlchemyError, WorkflowError, ValueError) as exc:  # one workflow must not fail the refresh
                _failed(conn, row, segment, exc, now)
                continue
            if context is not None:
                context.started.setdefault(row.id, StartReport()).add(report)
        elif workflow.trigger.kind == "segment" and entered and not own:
            try:
                with conn.begin_nested():
                    start(conn, row, workflow, [Candidate(cid) for cid in entered], trigger=f"segment:{segment}",
                          now=now)
            except (SQLAlchemyError, WorkflowError, ValueError) as exc:  # one workflow must not fail the refresh
                _failed(conn, row, segment, exc, now)

