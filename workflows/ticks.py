"""The workflows' tick: what `hub scheduler` runs every 30 s for this plugin.

A tick (every 30 s by default, through the schedule this plugin registers;
once, `hub workflows tick`):

1. makes sure the shipped workflows are in the database;
2. for every switched-on workflow, looks at its trigger and starts runs
   (refreshing its segment, or reading the events since the last look, or
   finding whose date comes round);
   starts the one-off campaigns whose time came and marks finished ones
   done (workflows.campaigns);
3. redeems promo codes that synced orders carry;
4. hands out the work: with Redis, enqueues due runs in batches for
   `hub worker` (and the outbox sweep and the promo write-back, see
   workflows.jobs); without Redis, does all of it right here.

The database is the only record of what is due: a run whose job vanished
(Redis flushed) or whose worker died is due and unheld again, and the next
tick enqueues it again. A run already sitting in a live job is left alone.

Two schedulers started by mistake do no harm: only the one holding the
scheduler's lock (hub.schedule) runs schedules, and `hub workflows tick` takes
the same lock.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import pluggy
from sqlalchemy import Engine, or_, select, update

# not in hub.api on purpose: the campaign engine writes outbox rows and dispatches them
from hub import messaging
from hub.api import N_, Settings, chunks, enqueue, redis_connection, utcnow
from workflows import campaigns, config, jobs, nps, promo, runner, store, triggers
from workflows.definition import WorkflowError
from workflows.models import WorkflowRun

log = logging.getLogger(__name__)
runs_t = WorkflowRun.__table__

JOB_QUEUE = "default"
ALIVE = ("queued", "deferred", "scheduled")


@dataclass
class TickReport:
    started: dict[str, dict[str, int]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    campaigns: list[str] = field(default_factory=list)  # scheduled campaigns started by this tick
    redeemed: int = 0
    enqueued: int = 0
    jobs: int = 0
    advanced: dict[str, Any] = field(default_factory=dict)
    outbox: dict[str, Any] = field(default_factory=dict)
    promo_written_back: dict[str, int] = field(default_factory=dict)
    nps_written_back: dict[str, int] = field(default_factory=dict)  # survey answers retried as CRM comments
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["seconds"] = round(self.seconds, 3)
        return out


def tick(engine: Engine, settings: Settings, *, now: dt.datetime | None = None,
         pm: pluggy.PluginManager | None = None, keepalive: Callable[[], object] | None = None,
         progress: Callable[[int], None] | None = None) -> TickReport:
    """One tick: start what triggers call for, redeem codes, and run (or enqueue) what is due."""
    started = time.perf_counter()
    now = now or utcnow()
    keepalive = keepalive or (lambda: None)
    report = TickReport()
    with engine.begin() as conn:
        store.install_library(conn)
        enabled = [r for r in store.rows(conn) if r.enabled]
    refreshed: set[str] = set()
    exits: dict[int, triggers.StartReport] = {}  # runs exit triggers started while a segment refreshed
    for row in enabled:
        try:
            with engine.connect() as conn:
                workflow = store.definition(conn, settings, row.id, row.version, pm)
            report.started[row.name] = triggers.fire(engine, settings, row, workflow, now=now,
                                                     refreshed=refreshed, started=exits).as_dict()
        except WorkflowError as exc:
            report.errors[row.name] = str(exc)
            log.error("workflow %s: %s", row.name, exc)
        keepalive()
    try:  # each campaign's failure is caught inside; this keeps anything else from stopping the tick for all
        report.campaigns = campaigns.start_due(engine, settings, now=now, pm=pm, errors=report.errors)
    except Exception as exc:
        log.exception("campaigns: the scheduler's part failed")
        report.errors["campaigns"] = type(exc).__name__
    keepalive()
    report.redeemed = promo.redeem_from_orders(engine, now=now)
    if settings.redis_url:
        report.enqueued, report.jobs = enqueue_due(engine, settings, now=now)
        enqueue(settings, jobs.dispatch_outbox, queue=JOB_QUEUE, job_id="workflows-dispatch-outbox")
        enqueue(settings, jobs.write_back_promo_codes, queue="low", job_id="workflows-promo-write-back")
        enqueue(settings, jobs.write_back_nps_answers, queue="low", job_id="workflows-nps-write-back")
    else:
        report.advanced = advance_due(engine, settings, now=now, pm=pm, keepalive=keepalive, progress=progress)
        report.outbox = messaging.dispatch(engine, settings).as_dict()
        report.promo_written_back = promo.write_back_pending(engine, settings)
        report.nps_written_back = nps.write_back_pending(engine, settings)
    report.seconds = time.perf_counter() - started
    return report


def advance_due(engine: Engine, settings: Settings, *, now: dt.datetime, pm: pluggy.PluginManager | None = None,
            workflow_id: int | None = None, keepalive: Callable[[], object] | None = None,
            progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Without Redis: advance every due run in this process, a batch at a time."""
    options = config.load(settings)
    total: dict[str, Any] = {}
    while True:
        with engine.connect() as conn:
            ids = runner.due_ids(conn, now, options.batch_size, workflow_id=workflow_id)
        if not ids:
            break
        report = runner.advance(engine, settings, ids, now=now, pm=pm).as_dict()
        for key, value in report.items():
            if isinstance(value, int):
                total[key] = total.get(key, 0) + value
        if progress:
            progress(len(ids))
        if keepalive:
            keepalive()
        if not report["claimed"]:
            break  # every due run is held by someone else
    return total


def enqueue_due(engine: Engine, settings: Settings, *, now: dt.datetime, workflow_id: int | None = None
                ) -> tuple[int, int]:
    """With Redis: put due, unheld runs into jobs of a batch each, unless a live job holds them already.

    Returns (runs enqueued, jobs enqueued).
    """
    from rq import Queue, Retry
    from rq.job import Job

    options = config.load(settings)
    r = runs_t.c
    due = [r.status.in_(runner.ACTIVE), r.next_at <= now, (r.lease_until.is_(None)) | (r.lease_until < now),
           runner.not_paused()]
    if workflow_id is not None:
        due.append(r.workflow_id == workflow_id)
    with engine.connect() as conn:  # the jobs that hold due runs: a few hundred at most, however many runs
        holders = list(conn.execute(select(r.job_id).where(*due).group_by(r.job_id)).scalars())
    if not holders:
        return 0, 0
    redis = redis_connection(settings)
    alive: set[str] = set()
    real_now = utcnow()
    for part in chunks([j for j in holders if j], 500):
        for job in Job.fetch_many(list(part), connection=redis):
            if job is None:
                continue
            status = job.get_status(refresh=False)
            if status in ALIVE or (status == "started" and job.started_at is not None
                                   and job.started_at.replace(tzinfo=dt.timezone.utc) > real_now - options.lease):
                alive.add(job.id)
    dead = [j for j in holders if j not in alive]
    if not dead:
        return 0, 0
    with engine.connect() as conn:
        held_by_dead = [r.job_id.in_([j for j in dead if j])] if any(dead) else []
        if None in dead:
            held_by_dead.append(r.job_id.is_(None))
        todo = list(conn.execute(select(r.id).where(*due, or_(*held_by_dead)).order_by(r.next_at, r.id)).scalars())
    rq_queue = Queue(JOB_QUEUE, connection=redis)
    count = 0
    for part in chunks(todo, options.batch_size):
        job_id = f"workflows-{uuid.uuid4().hex}"
        with engine.begin() as conn:  # recorded first: if the enqueue fails, the next tick sees no live job
            conn.execute(update(runs_t).where(r.id.in_(list(part))).values(job_id=job_id, enqueued_at=real_now))
        rq_queue.enqueue(jobs.advance_runs, list(part), job_id=job_id, retry=Retry(max=2),
                         description=f"workflows: advance {len(part)} runs")
        count += 1
    return len(todo), count


def scheduled_tick(run: Any) -> dict[str, Any]:
    """The tick as `hub scheduler` runs it (a ``hub.schedule.ScheduledRun``); returns the one-line summary's numbers.

    The keys stay English in the JSON; they are marked so `hub scheduler` shows them in the reader's language.
    """
    report = tick(run.engine, run.settings, now=run.now, keepalive=run.keepalive)
    summary: dict[str, Any] = {N_("runs started"): sum(v.get("started", 0) for v in report.started.values()),
                               N_("codes redeemed"): report.redeemed}
    if report.campaigns:
        summary[N_("campaigns started")] = ", ".join(report.campaigns)
    if run.settings.redis_url:
        summary[N_("runs enqueued")] = report.enqueued
    else:
        summary[N_("steps")] = report.advanced.get("steps", 0)
        summary[N_("sent")] = report.outbox.get("sent", 0)
    if report.errors:
        summary[N_("errors")] = "; ".join(f"{k}: {v}" for k, v in report.errors.items())
    return summary
