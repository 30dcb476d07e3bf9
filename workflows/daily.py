"""A workflow's (or a campaign's) results day by day: what it sent, what arrived, who left, who bought.

measure.py says where a workflow stands now; this module says how it got
there, one point per local day in Hub's time zone, for the charts on the
workflow and campaign pages. Each figure is one GROUP BY over the day a thing
happened, on SQLite and PostgreSQL alike: the days are cut into UTC instants
here (a Moscow day starts at 21:00 UTC the evening before; a zone with summer
time has a 23- or 25-hour day), and the database puts each row in its day by
comparing with those bounds, so no database needs to know the time zone.

What each series counts, per day:

- sent: messages written for the workflow's runs (``messages.origin`` is the
  workflow's name — a campaign's messages carry its workflow's — or a step
  result points at the message), by the day they were written, whatever
  happened to them next;
- delivered: those the channel took (status ``sent``), by the day it did;
- bounced: those the channel refused for good because the address is dead
  (the dispatcher fails them with an error starting "bounced:" and suppresses
  the address), by the day that was written;
- unsubscribed: people it messaged who withdrew their marketing consent (or
  the consent the message was sent under) within UNSUBSCRIBE_WINDOW after a
  message of it reached them; a withdrawal written by a bounce is a bounce,
  not a choice, and is not counted; one person once a day;
- redeemed: its promo codes redeemed that day;
- revenue: the same money measure.py's report calls the workflow's revenue,
  on the day it was made: with a goal, the won orders that reached the goal
  within the goal's window after a run started (for `promo.redeemed`, the
  orders that redeemed the run's code, on the day of redemption; for
  `order.won`, on the day the order was won; for `order.created`, won orders
  created in the window, on the day they were created), holdout runs
  included as in the report's total; without a goal, the won orders that
  redeemed one of its codes, on the day of redemption.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, case, func, literal, or_, select
from sqlalchemy.types import Interval

from hub.api import whole_number
from hub.api import Message, Order, Settings, format_date, gettext, utcnow
# not in hub.api on purpose: unsubscribes are read from the consent ledger's own table
from hub.models import ConsentEvent
from workflows import store
from workflows.definition import Goal, WorkflowError
from workflows.models import PromoCode, StepResult, WorkflowRow, WorkflowRun

messages_t = Message.__table__
orders_t = Order.__table__
codes_t = PromoCode.__table__
runs_t = WorkflowRun.__table__
results_t = StepResult.__table__
workflows_t = WorkflowRow.__table__
events_t = ConsentEvent.__table__

SERIES = ("sent", "delivered", "bounced", "unsubscribed", "redeemed")
UNSUBSCRIBE_WINDOW = dt.timedelta(days=7)
MAX_DAYS = 366
BOUNCED = "bounced:%"  # how the dispatcher words a permanent refusal of a dead address
MARKETING = "marketing"


def _row(conn: Connection, workflow: int | str) -> Any:
    """The workflow's row, by id or by name (names say which exist when none matches)."""
    number = workflow if isinstance(workflow, int) else whole_number(workflow)
    if number is None:
        return store.row(conn, str(workflow))
    found = conn.execute(select(workflows_t).where(workflows_t.c.id == number)).first()
    if found is None:
        raise WorkflowError([gettext("no workflow #%(id)s", id=workflow)])
    return found


def _bounds(settings: Settings, days: int, now: dt.datetime) -> tuple[list[dt.date], list[dt.datetime]]:
    """The local days, oldest first, and the UTC instant each starts at, with the end of the last one."""
    tz = settings.tz
    last = now.astimezone(tz).date()
    dates = [last - dt.timedelta(days=days - 1 - i) for i in range(days)]
    starts = [dt.datetime.combine(d, dt.time(), tzinfo=tz).astimezone(dt.timezone.utc)
              for d in [*dates, last + dt.timedelta(days=1)]]
    return dates, starts


def _day_of(column: Any, starts: list[dt.datetime]) -> Any:
    """Which day (0, 1, …) an instant falls on; rows outside the days are kept out by `_within`."""
    whens = [(column < start, index) for index, start in enumerate(starts[1:-1])]
    return case(*whens, else_=len(starts) - 2) if whens else literal(0)


def _within(column: Any, starts: list[dt.datetime]) -> ColumnElement[bool]:
    return and_(column >= starts[0], column < starts[-1])


def _plus(conn: Connection, column: Any, delta: dt.timedelta) -> Any:
    """`column + delta`, as each database adds time to a timestamp.

    SQLite keeps timestamps as text with microseconds; its datetime function
    answers to the millisecond, so the missing digits are filled with 999 to
    keep the window's last instant inside it.
    """
    if conn.dialect.name == "sqlite":
        return func.strftime("%Y-%m-%d %H:%M:%f", column, f"+{int(delta.total_seconds())} seconds").concat("999")
    return column + literal(delta, Interval())


def _by_day(conn: Connection, source: Any, when: Any, value: Any, where: list[Any], starts: list[dt.datetime],
            total: Any) -> list[Any]:
    """`total` of `value` over the rows of `source` (FROM) on each day, by when they happened.

    The day is computed in a subquery and grouped on outside it, so both
    databases group by one column rather than by an expression they must
    recognise as the same (PostgreSQL would not, with its parameters bound).
    """
    inner = (select(_day_of(when, starts).label("day"), value.label("value")).select_from(source)
             .where(_within(when, starts), *where).subquery())
    out: list[Any] = [None] * (len(starts) - 1)
    for index, amount in conn.execute(select(inner.c.day, total(inner.c.value)).group_by(inner.c.day)):
        out[int(index)] = amount
    return out


def _counted(values: list[Any]) -> list[int]:
    return [int(v or 0) for v in values]


def results_by_day(conn: Connection, workflow: int | str, *, settings: Settings, days: int = 30,
                   now: dt.datetime | None = None) -> dict[str, Any]:
    """The workflow's results for each of the last `days` local days up to today (see the module's notes).

    `workflow` is its id or its name. The answer is JSON as it is: days as
    ISO dates in Hub's time zone, counts as numbers, revenue as decimal text.
    """
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be from 1 to {MAX_DAYS}, not {days}")
    row = _row(conn, workflow)
    goal = store.definition(conn, settings, row.id, row.version).goal
    dates, starts = _bounds(settings, days, now or utcnow())
    m, r, s, c, e = messages_t.c, runs_t.c, results_t.c, codes_t.c, events_t.c
    by_step = (select(s.message_id).select_from(results_t.join(runs_t, r.id == s.run_id))
               .where(r.workflow_id == row.id, s.message_id.is_not(None)))
    mine = or_(m.origin == row.name, m.id.in_(by_step))

    def per_day(when: Any, *where: Any) -> list[int]:
        return _counted(_by_day(conn, messages_t, when, m.id, list(where), starts, func.count))

    out: dict[str, Any] = {"workflow": row.name, "days": [d.isoformat() for d in dates]}
    out["sent"] = per_day(m.created_at, mine)
    out["delivered"] = per_day(m.sent_at, mine, m.status == "sent")
    out["bounced"] = per_day(m.updated_at, mine, m.status == "failed", m.error.like(BOUNCED))
    left = [mine, m.sent_at.is_not(None), e.status == "withdrawn", e.source != "bounce",
            or_(e.purpose == MARKETING, e.purpose == m.purpose),
            e.at >= m.sent_at, e.at <= _plus(conn, m.sent_at, UNSUBSCRIBE_WINDOW)]
    out["unsubscribed"] = _counted(_by_day(conn, events_t.join(messages_t, m.contact_id == e.contact_id), e.at,
                                           e.contact_id, left, starts, lambda v: func.count(func.distinct(v))))
    out["redeemed"] = _counted(_by_day(conn, codes_t, c.redeemed_at, c.id, [c.workflow_id == row.id], starts,
                                       func.count))
    out["revenue"] = [str(v.quantize(Decimal("0.01"))) for v in _revenue(conn, row.id, goal, starts)]
    return out


def _revenue(conn: Connection, workflow_id: int, goal: Goal | None, starts: list[dt.datetime]) -> list[Decimal]:
    """Each day's revenue, counted as measure.py counts the report's (see the module's notes)."""
    r, c, o = runs_t.c, codes_t.c, orders_t.c
    if goal is None or goal.event == "promo.redeemed":
        when = c.redeemed_at
        joined: Any = codes_t.join(orders_t, o.id == c.order_id)
        where: list[Any] = [c.workflow_id == workflow_id, o.status == "won"]
        if goal is not None:
            joined = joined.join(runs_t, r.id == c.run_id)
            where += [when >= r.started_at, when <= _plus(conn, r.started_at, goal.within)]
        amount: Any = o.amount
    else:
        when = o.closed_at if goal.event == "order.won" else o.created_at
        joined = runs_t.join(orders_t, o.contact_id == r.contact_id)
        where = [r.workflow_id == workflow_id, when.is_not(None), when >= r.started_at,
                 when <= _plus(conn, r.started_at, goal.within)]
        where.append(o.status == "won" if goal.event == "order.won" else o.status != "lost")
        amount = case((o.status == "won", o.amount), else_=0)
    return [Decimal(str(v or 0)) for v in _by_day(conn, joined, when, amount, where, starts, func.sum)]


def chart(report: dict[str, Any]) -> dict[str, Any]:
    """Chart.js data for hub.js's charts(): "counts" (a line per series) and "revenue", both by local day."""
    labels = [format_date(d) for d in report["days"]]
    titles = {"sent": gettext("sent"), "delivered": gettext("delivered"), "bounced": gettext("bounced"),
              "unsubscribed": gettext("unsubscribed"), "redeemed": gettext("promo codes redeemed")}
    colours = {"sent": "#3b6ea5", "delivered": "#5b8c5a", "bounced": "#b3261e", "unsubscribed": "#c7a14a",
               "redeemed": "#7a4ea3"}
    counts = {"labels": labels,
              "datasets": [{"label": titles[k], "data": report[k], "borderColor": colours[k],
                            "backgroundColor": colours[k]} for k in SERIES]}
    revenue = {"labels": labels,
               "datasets": [{"label": gettext("revenue"), "data": [float(v) for v in report["revenue"]],
                             "borderColor": "#1f7a3f", "backgroundColor": "#1f7a3f"}]}
    return {"counts": counts, "revenue": revenue}
