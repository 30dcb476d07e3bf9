"""The scheduler's tick, and the lock that lets only one scheduler tick at a time.

A tick (every 30 s by default, `hub scheduler`; once, `hub workflows tick`):

1. makes sure the shipped workflows are in the database;
2. for every switched-on workflow, looks at its trigger and starts runs
   (refreshing its segment, or reading the events since the last look);
3. redeems promo codes that synced orders carry;
4. hands out the work: with Redis, enqueues due runs in batches for
   `hub worker` (and the outbox sweep and the promo write-back); without
   Redis, does all of it right here.

The database is the only record of what is due: a run whose job vanished
(Redis flushed) or whose worker died is due and unheld again, and the next
tick enqueues it again. A run already sitting in a live job is left alone.

Two schedulers started by mistake do no harm: each tick needs the lock, a
Redis key with an expiry when Redis is configured, else a row in the
database with an expiry. The holder renews it while it works; a scheduler
that dies loses it when it expires, and the other takes over.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import pluggy
from sqlalchemy import Engine, or_, select, update

from hub import messaging, queue
from hub.config import Settings
from hub.db import chunks, insert_for, utcnow
from hub.models import WorkflowRun, WorkflowState
from workflows import config, engine as runs_engine, jobs, policy, promo, store, triggers
from workflows.definition import WorkflowError

log = logging.getLogger(__name__)
runs_t = WorkflowRun.__table__
state_t = WorkflowState.__table__

LOCK_NAME = "scheduler"
REDIS_LOCK_KEY = "hub:workflows:scheduler"
JOB_QUEUE = "default"
ALIVE = ("queued", "deferred", "scheduled")


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class DatabaseLock:
    """The scheduler lock as a row in workflow_state: held by `holder` until `expires_at`."""

    def __init__(self, engine: Engine, ttl: dt.timedelta, holder: str | None = None) -> None:
        self.engine, self.ttl, self.holder = engine, ttl, holder or holder_name()

    def acquire(self) -> bool:
        """Take or renew the lock; False while another scheduler holds it."""
        now = utcnow()
        s = state_t.c
        with self.engine.begin() as conn:
            conn.execute(insert_for(conn, state_t).values(name=LOCK_NAME, value={}, updated_at=now)
                         .on_conflict_do_nothing(index_elements=["name"]))
            taken = conn.execute(update(state_t).where(
                s.name == LOCK_NAME, or_(s.holder.is_(None), s.expires_at < now, s.holder == self.holder))
                .values(holder=self.holder, expires_at=now + self.ttl, updated_at=now)).rowcount
        return taken == 1

    renew = acquire

    def release(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(state_t).where(state_t.c.name == LOCK_NAME, state_t.c.holder == self.holder)
                         .values(holder=None, expires_at=None, updated_at=utcnow()))

    def held_by(self) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(state_t.c.holder, state_t.c.expires_at)
                               .where(state_t.c.name == LOCK_NAME)).first()
        return row.holder if row is not None and row.expires_at and row.expires_at > utcnow() else None


class RedisLock:
    """The scheduler lock as a Redis key with an expiry (redis-py's Lock, with a token of its own)."""

    def __init__(self, settings: Settings, ttl: dt.timedelta) -> None:
        self.redis = queue.redis_connection(settings)
        self.lock = self.redis.lock(REDIS_LOCK_KEY, timeout=ttl.total_seconds(), thread_local=False)

    def acquire(self) -> bool:
        if self.lock.owned():
            return self.renew()
        return bool(self.lock.acquire(blocking=False))

    def renew(self) -> bool:
        from redis.exceptions import LockError

        try:
            self.lock.reacquire()
            return True
        except LockError:
            return False

    def release(self) -> None:
        from redis.exceptions import LockError

        try:
            self.lock.release()
        except LockError:
            pass

    def held_by(self) -> str | None:
        value = self.redis.get(REDIS_LOCK_KEY)
        return value.decode() if isinstance(value, bytes) else value


def lock_for(engine: Engine, settings: Settings, ttl: dt.timedelta) -> DatabaseLock | RedisLock:
    return RedisLock(settings, ttl) if settings.redis_url else DatabaseLock(engine, ttl)


@dataclass
class TickReport:
    started: dict[str, dict[str, int]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    redeemed: int = 0
    enqueued: int = 0
    jobs: int = 0
    advanced: dict[str, Any] = field(default_factory=dict)
    outbox: dict[str, Any] = field(default_factory=dict)
    promo_written_back: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["seconds"] = round(self.seconds, 3)
        return out


def tick(engine: Engine, settings: Settings, *, now: dt.datetime | None = None,
         pm: pluggy.PluginManager | None = None, keepalive: Callable[[], None] | None = None,
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
    for row in enabled:
        try:
            with engine.connect() as conn:
                workflow = store.definition(conn, settings, row.id, row.version, pm)
            report.started[row.name] = triggers.fire(engine, settings, row, workflow, now=now,
                                                     refreshed=refreshed).as_dict()
        except WorkflowError as exc:
            report.errors[row.name] = str(exc)
            log.error("workflow %s: %s", row.name, exc)
        keepalive()
    report.redeemed = promo.redeem_from_orders(engine, now=now)
    if settings.redis_url:
        report.enqueued, report.jobs = enqueue_due(engine, settings, now=now)
        queue.enqueue(settings, jobs.dispatch_outbox, queue=JOB_QUEUE, job_id="workflows-dispatch-outbox")
        queue.enqueue(settings, jobs.write_back_promo_codes, queue="low", job_id="workflows-promo-write-back")
    else:
        report.advanced = run_due(engine, settings, now=now, pm=pm, keepalive=keepalive, progress=progress)
        report.outbox = messaging.dispatch(engine, settings, policies=policy.send_policies(settings)).as_dict()
        report.promo_written_back = promo.write_back_pending(engine, settings)
    report.seconds = time.perf_counter() - started
    return report


def run_due(engine: Engine, settings: Settings, *, now: dt.datetime, pm: pluggy.PluginManager | None = None,
            workflow_id: int | None = None, keepalive: Callable[[], None] | None = None,
            progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Without Redis: advance every due run in this process, a batch at a time."""
    options = config.load(settings)
    total: dict[str, Any] = {}
    while True:
        with engine.connect() as conn:
            ids = runs_engine.due_ids(conn, now, options.batch_size, workflow_id=workflow_id)
        if not ids:
            break
        report = runs_engine.advance(engine, settings, ids, now=now, pm=pm).as_dict()
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
    due = [r.status.in_(runs_engine.ACTIVE), r.next_at <= now, (r.lease_until.is_(None)) | (r.lease_until < now)]
    if workflow_id is not None:
        due.append(r.workflow_id == workflow_id)
    with engine.connect() as conn:  # the jobs that hold due runs: a few hundred at most, however many runs
        holders = list(conn.execute(select(r.job_id).where(*due).group_by(r.job_id)).scalars())
    if not holders:
        return 0, 0
    redis = queue.redis_connection(settings)
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
        held_by_dead = r.job_id.in_([j for j in dead if j]) if any(dead) else None
        if None in dead:
            held_by_dead = r.job_id.is_(None) if held_by_dead is None else held_by_dead | r.job_id.is_(None)
        todo = list(conn.execute(select(r.id).where(*due, held_by_dead).order_by(r.next_at, r.id)).scalars())
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


def serve(engine: Engine, settings: Settings, *, interval: float, stop: threading.Event,
          report: Callable[[TickReport | None, str | None], None]) -> None:
    """Tick every `interval` seconds while holding the lock, until `stop` is set; then let the lock go."""
    ttl = dt.timedelta(seconds=max(60.0, interval * 3))
    lock = lock_for(engine, settings, ttl)
    try:
        while not stop.is_set():
            began = time.monotonic()
            try:
                held = lock.acquire()
            except Exception as exc:  # noqa: BLE001 - Redis or the database away for a moment: keep trying
                report(None, f"cannot take the scheduler lock: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                stop.wait(interval)
                continue
            if held:
                try:
                    report(tick(engine, settings, keepalive=lock.renew), None)
                except Exception as exc:  # noqa: BLE001 - one bad tick must not stop the scheduler
                    log.exception("tick failed")
                    report(None, f"tick failed: {type(exc).__name__}: {exc}")
            else:
                report(None, f"standing by: another scheduler holds the lock ({lock.held_by() or 'unknown'})")
            stop.wait(max(0.0, interval - (time.monotonic() - began)))
    finally:
        try:
            lock.release()
        except Exception:  # noqa: BLE001 - nothing to release if the lock's store is gone
            pass
