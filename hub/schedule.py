"""Work that recurs, run by `hub scheduler`: keeping every source current, and plugins' own chores.

Webhooks are fast but not reliable: Bitrix24 never retries an event, amoCRM
drops some and repeats others. What guarantees that the base matches the
CRMs is a sync that comes back on its own. So the core registers two
schedules through the same hook plugins use (``register_schedules``):

- ``sync``: every 15 minutes (``sync_interval_s``), an incremental sync of each
  source that has been synced before (a source you never synced is not
  connected yet);
- ``reconcile``: daily (``reconcile_interval_s``), an id-only pass over each
  such source that can list its ids, to mark what was deleted without an event.

Both only hand the work out (``hub.queue.enqueue``: to ``hub worker`` with
Redis, else to one background thread of the scheduler), so a long sync never
holds up the workflows' 30-second tick. Setting an interval to 0 turns that
schedule off.

Only one scheduler runs the schedules at a time: it holds a lock (a Redis key
with an expiry when Redis is configured, else a row in ``schedule_state``)
and renews it while it works; a scheduler that dies loses it when it
expires, and another takes over. When each schedule last ran, and how it
went, is kept in ``schedule_state``, so a restarted scheduler neither repeats
nor forgets anything.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy
from sqlalchemy import Engine, func, or_, select, update

from hub import plugins, queue
from hub.config import Settings, SettingsError
from hub.db import insert_for, utcnow
from hub.hookspecs import hookimpl
from hub import formats, i18n
from hub.i18n import N_, ngettext
from hub.i18n import gettext as _
from hub.models import ScheduleState, SyncState

log = logging.getLogger(__name__)
state_t = ScheduleState.__table__
LOCK_NAME = "scheduler"
REDIS_LOCK_KEY = "hub:scheduler"
SYNC_INTERVAL_S = 15 * 60
RECONCILE_INTERVAL_S = 24 * 3600


@dataclass(frozen=True)
class ScheduledRun:
    """What a schedule's job gets: the settings, the database, the moment, and a way to keep the lock."""

    settings: Settings
    engine: Engine
    now: dt.datetime
    keepalive: Callable[[], Any] = field(default_factory=lambda: lambda: None)


@dataclass(frozen=True)
class Schedule:
    """A job to run every `every`, in the scheduler's own process.

    `job(run)` should be quick: anything long is handed to ``hub.queue.enqueue``
    (a worker with Redis, a background thread without), or calls
    ``run.keepalive()`` now and then. What it returns (a dict, a number) is
    kept as the schedule's last result and shown by ``hub scheduler --status``.

    `description` says what it does for whoever looks after Hub (it may name
    settings); `title`, when given, names it in plain words for everybody else
    (the dashboard shows marketers the title, or the description without the
    setting names in brackets). Both are English, marked with N_.
    """

    every: dt.timedelta
    job: Callable[[ScheduledRun], Any]
    description: str = ""  # in English, marked with N_ and translated in the plugin's catalog: shown translated
    title: str = ""


# --- how a person reads a schedule ---------------------------------------------------------

# What hand_out says happened to a job, as people read it (the JSON keeps the English word).
JOB_OUTCOMES = {"started": N_("started"), "enqueued": N_("handed to a queue worker (hub worker)"),
                "still running": N_("still running")}
# The keys of what the core's schedules (and the jobs they hand out, "segment_sizes:today") return, in words.
# A plugin marks its own keys with N_ (its catalog translates them); a key nobody translates is shown as it is.
RESULT_WORDS: dict[str, dict[str, str]] = {
    "segment_sizes": {"refreshed": N_("segments recounted"), "measured": N_("segments measured")},
    "webhooks": {"enqueued": N_("deliveries queued"), "given_up": N_("deliveries given up"),
                 "switched_off": N_("webhooks switched off"), "pruned": N_("old deliveries deleted")},
    "api_idempotency": {"forgotten": N_("kept answers forgotten")},
    "crm_push": {"changed": N_("records changed"), "sent": N_("values sent"), "written": N_("records written"),
                 "failed": N_("records not written"), "error": N_("error")},
}
# The lengths that have a word of their own ("раз в сутки", not "каждые 86 400 с").
_EVERY_ONE = {86400 * 7: N_("once a week"), 86400: N_("once a day"), 3600: N_("every hour"),
              60: N_("every minute"), 1: N_("every second")}


def every_text(every: dt.timedelta) -> str:
    """How often a schedule runs, as people say it: «каждые 15 минут», «раз в сутки», «каждые 30 секунд»."""
    seconds = int(every.total_seconds())
    if seconds in _EVERY_ONE:
        return _(_EVERY_ONE[seconds])
    if seconds and seconds % 86400 == 0:
        n = seconds // 86400
        return ngettext("every %(num)s day", "every %(num)s days", n, num=formats.number(n))
    if seconds and seconds % 3600 == 0:
        n = seconds // 3600
        return ngettext("every %(num)s hour", "every %(num)s hours", n, num=formats.number(n))
    if seconds and seconds % 60 == 0:
        n = seconds // 60
        return ngettext("every %(num)s minute", "every %(num)s minutes", n, num=formats.number(n))
    return ngettext("every %(num)s second", "every %(num)s seconds", seconds, num=formats.number(seconds))


def description_text(description: str) -> str:
    """What a schedule does (its `description`), in the reader's language when its plugin marked and translated it."""
    return i18n.title(description)


def handed_out(result: Any) -> bool:
    """Whether a run only handed work out (every value is what `hand_out` said): it did not do the work itself,
    so "ok" would say nothing of how the work went."""
    return isinstance(result, dict) and bool(result) and all(
        isinstance(v, str) and v in JOB_OUTCOMES for v in result.values())


def result_text(result: Any, schedule: str = "") -> str:
    """What a schedule's run returned, for people: «bitrix24: запущена», «запущено сценариев: 1, шагов: 3».

    The core's keys are worded by RESULT_WORDS for the schedule named (or the
    job it handed out, "segment_sizes:today"); a plugin's keys and words are
    shown through its catalog (mark them with N_ where the job builds its
    result); numbers are grouped as the reader writes them. A key whose value
    is what `hand_out` said is the name of what was handed out (a source),
    shown as it is.
    """
    words = RESULT_WORDS.get(schedule.partition(":")[0], {})
    if isinstance(result, dict):
        parts = []
        for key, value in result.items():
            if isinstance(value, bool) or not isinstance(value, (str, int, float)) or value == 0:
                continue
            if isinstance(value, str) and value in JOB_OUTCOMES:
                parts.append(f"{key}: {_(JOB_OUTCOMES[value])}")
                continue
            shown = i18n.title(value) if isinstance(value, str) else formats.number(value)
            parts.append(f"{_(words[key]) if key in words else i18n.title(str(key))}: {shown}")
        return ", ".join(parts)
    if result is None:
        return ""
    return formats.number(result) if isinstance(result, (int, float)) and not isinstance(result, bool) else str(result)


# --- what is due, and running it -----------------------------------------------------------

def schedules(settings: Settings, pm: pluggy.PluginManager | None = None) -> dict[str, Schedule]:
    """Every schedule that is on (its interval above 0): name → Schedule (names are unique across plugins)."""
    found = plugins.registry("register_schedules", pm, settings=settings)
    for name, item in found.items():
        if not isinstance(item, Schedule):
            raise SettingsError(_("schedule %(name)r must be a hub.schedule.Schedule, not %(type)s", name=name,
                                  type=type(item).__name__))
    return {n: s for n, s in found.items() if s.every > dt.timedelta(0)}


def last_runs(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(state_t).where(state_t.c.name != LOCK_NAME)).mappings().all()
    return {r["name"]: dict(r) for r in rows}


def due(engine: Engine, found: dict[str, Schedule], now: dt.datetime) -> list[str]:
    """Schedules never run, or last started at least `every` ago, in name order."""
    last = last_runs(engine)
    out = []
    for name, sched in sorted(found.items()):
        started = (last.get(name) or {}).get("last_started_at")
        if started is None or now - started >= sched.every:
            out.append(name)
    return out


@dataclass
class Report:
    """What one pass did: the schedules run, with what each returned or why it failed."""

    ran: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"ran": self.ran, "failed": self.failed, "seconds": round(self.seconds, 3)}


def _record(engine: Engine, name: str, **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(insert_for(conn, state_t).values(name=name, updated_at=utcnow())
                     .on_conflict_do_nothing(index_elements=["name"]))
        conn.execute(update(state_t).where(state_t.c.name == name).values(updated_at=utcnow(), **values))


def run_due(engine: Engine, settings: Settings, *, now: dt.datetime | None = None,
            pm: pluggy.PluginManager | None = None, keepalive: Callable[[], Any] | None = None,
            only: list[str] | None = None) -> Report:
    """Run every schedule that is due (or the ones named in `only`, due or not); one failing stops no other."""
    began = time.perf_counter()
    now = now or utcnow()
    found = schedules(settings, pm)
    unknown = sorted(set(only or ()) - set(found))
    if unknown:
        raise SettingsError(_("no schedule called %(names)s (schedules: %(known)s)", names=", ".join(unknown),
                              known=", ".join(sorted(found))))
    names = sorted(only) if only else due(engine, found, now)
    report = Report()
    for name in names:
        _record(engine, name, last_started_at=now)
        try:
            result = found[name].job(ScheduledRun(settings, engine, now, keepalive or (lambda: None)))
        except Exception as exc:  # one failing schedule must not stop the others
            log.exception("schedule %s failed", name)
            report.failed[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            _record(engine, name, last_finished_at=utcnow(), last_error=report.failed[name])
        else:
            report.ran[name] = result
            _record(engine, name, last_finished_at=utcnow(), last_error=None,
                    last_result=result if isinstance(result, dict) else {"result": result})
        if keepalive is not None:
            keepalive()
    report.seconds = time.perf_counter() - began
    return report


def failed_since(engine: Engine, since: dt.datetime) -> dict[str, str]:
    """Handed-out jobs ("sync:bitrix24") started at or after `since` that failed, with why."""
    return {name: row["last_error"] for name, row in last_runs(engine).items()
            if ":" in name and row.get("last_error") and row.get("last_started_at") and row["last_started_at"] >= since}


# --- whether it runs -----------------------------------------------------------------------

# A scheduler looks at what is due every 10 s by default: one that started nothing for this long is not
# ticking, however long the registered intervals are.
ALIVE_AT_LEAST = dt.timedelta(minutes=2)


@dataclass(frozen=True)
class Heartbeat:
    """Whether `hub scheduler` is ticking, judged from the starts it records in schedule_state.

    `window`: how recent the last start must be (twice the shortest registered
    interval, at least ALIVE_AT_LEAST); `last_started_at`: the latest start of
    any registered schedule (None: none ever started on this database).
    """

    alive: bool
    last_started_at: dt.datetime | None
    window: dt.timedelta
    schedules: int


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    return value.replace(tzinfo=dt.timezone.utc) if value is not None and value.tzinfo is None else value


def alive_window(found: dict[str, Schedule]) -> dt.timedelta:
    """How recently a ticking scheduler has started something: twice the shortest interval, at least 2 minutes."""
    shortest = min((s.every for s in found.values()), default=ALIVE_AT_LEAST)
    return max(2 * shortest, ALIVE_AT_LEAST)


def scheduler_alive(engine: Engine, settings: Settings, *, now: dt.datetime | None = None,
                    pm: pluggy.PluginManager | None = None,
                    found: dict[str, Schedule] | None = None) -> Heartbeat:
    """Whether a scheduler is ticking on this database: one query, for every admin page and for monitoring.

    Without it no automation advances and no scheduled campaign starts, and
    nothing else says so: the processes are separate from the admin. Only the
    registered schedules count (a job a schedule handed out, "sync:bitrix24",
    is recorded by whoever ran it, a worker included). With every schedule
    turned off there is nothing to tick, and that counts as alive.
    """
    found = schedules(settings, pm) if found is None else found
    window = alive_window(found)
    if not found:
        return Heartbeat(True, None, window, 0)
    with engine.connect() as conn:
        last = conn.execute(select(func.max(state_t.c.last_started_at))
                            .where(state_t.c.name.in_(sorted(found)))).scalar()
    last = _aware(last)
    now = now or utcnow()
    return Heartbeat(last is not None and now - last <= window, last, window, len(found))


@dataclass(frozen=True)
class ScheduleStatus:
    """One registered schedule as people check it: when it last ran, how that ended, and when it runs next.

    `next_due` is None when it never ran (it is due at once); `overdue`: never
    ran, or still not started one scheduler window after it fell due.
    """

    name: str
    every: dt.timedelta
    description: str
    last_started_at: dt.datetime | None
    last_finished_at: dt.datetime | None
    last_error: str | None
    last_result: Any
    next_due: dt.datetime | None
    due: bool
    overdue: bool
    title: str = ""

    @property
    def running(self) -> bool:
        """Started and not finished since (or stopped without finishing)."""
        return self.last_started_at is not None and (
            self.last_finished_at is None or self.last_finished_at < self.last_started_at)


def statuses(engine: Engine, settings: Settings, *, now: dt.datetime | None = None,
             pm: pluggy.PluginManager | None = None,
             found: dict[str, Schedule] | None = None) -> list[ScheduleStatus]:
    """Every registered schedule (the core's and plugins'), by name, with its last run and its next."""
    found = schedules(settings, pm) if found is None else found
    window = alive_window(found)
    last = last_runs(engine)
    now = now or utcnow()
    out = []
    for name, sched in sorted(found.items()):
        seen = last.get(name) or {}
        started = _aware(seen.get("last_started_at"))
        next_due = started + sched.every if started is not None else None
        out.append(ScheduleStatus(
            name=name, every=sched.every, description=sched.description, title=sched.title, last_started_at=started,
            last_finished_at=_aware(seen.get("last_finished_at")), last_error=seen.get("last_error"),
            last_result=seen.get("last_result"), next_due=next_due,
            due=next_due is None or now >= next_due, overdue=next_due is None or now - next_due > window))
    return out


# --- the lock ------------------------------------------------------------------------------

def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class DatabaseLock:
    """The scheduler lock as a row in schedule_state: held by `holder` until `expires_at`."""

    def __init__(self, engine: Engine, ttl: dt.timedelta, holder: str | None = None) -> None:
        self.engine, self.ttl, self.holder = engine, ttl, holder or holder_name()

    def acquire(self) -> bool:
        """Take or renew the lock; False while another scheduler holds it."""
        now = utcnow()
        s = state_t.c
        with self.engine.begin() as conn:
            conn.execute(insert_for(conn, state_t).values(name=LOCK_NAME, updated_at=now)
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


def serve(engine: Engine, settings: Settings, *, interval: float, stop: threading.Event,
          report: Callable[[Report | None, str | None], None]) -> None:
    """Every `interval` seconds, run what is due while holding the lock, until `stop` is set."""
    ttl = dt.timedelta(seconds=max(60.0, interval * 3))
    lock = lock_for(engine, settings, ttl)
    try:
        while not stop.is_set():
            began = time.monotonic()
            try:
                held = lock.acquire()
            except Exception as exc:  # noqa: BLE001 - Redis or the database away for a moment: keep trying
                report(None, _("cannot take the scheduler lock: %(error)s",
                               error=f"{type(exc).__name__}: {str(exc).splitlines()[0]}"))
                stop.wait(interval)
                continue
            if held:
                try:
                    report(run_due(engine, settings, keepalive=lock.renew), None)
                except Exception as exc:  # one bad pass must not stop the scheduler
                    log.exception("scheduler pass failed")
                    report(None, _("pass failed: %(error)s", error=f"{type(exc).__name__}: {exc}"))
            else:
                report(None, _("standing by: another scheduler holds the lock (%(holder)s)",
                               holder=lock.held_by() or _("unknown")))
            stop.wait(max(0.0, interval - (time.monotonic() - began)))
    finally:
        try:
            lock.release()
        except Exception:  # noqa: BLE001 - nothing to release if the lock's store is gone
            pass


# --- the core's own schedules --------------------------------------------------------------

_running: dict[str, Future[Any]] = {}
_running_lock = threading.Lock()


def hand_out(settings: Settings, name: str, func: Callable[..., Any], *args: Any) -> str:
    """Start `func(*args)` as the job `name` ("sync:bitrix24") unless it is still waiting or running.

    The job goes to ``hub worker`` with Redis, else to this process's background
    thread. How it ends is recorded under `name` in schedule_state (see
    `run_tracked`), so ``hub scheduler --status`` shows a sync that failed.
    Returns what happened: "started", "enqueued" or "still running".
    """
    job_id = "schedule-" + name.replace(":", "-")
    with _running_lock:
        pending = _running.get(job_id)
        if pending is not None and not pending.done():
            return "still running"
        done = queue.enqueue(settings, run_tracked, name, func, *args, job_id=job_id, queue="low", background=True)
        if isinstance(done.job, Future):
            _running[job_id] = done.job
    return "started" if done.inline else "enqueued"


def run_tracked(name: str, func: Callable[..., Any], *args: Any) -> Any:
    """Run a job a schedule handed out, keeping its start, end and outcome under `name`.

    A failure is recorded and logged in one line (a sync error already says
    what to fix), not raised: the next pass tries again.
    """
    from hub.config import load_settings
    from hub.db import get_engine

    engine = get_engine(load_settings().database_url)
    _record(engine, name, last_started_at=utcnow(), last_finished_at=None)
    try:
        result = func(*args)
    except Exception as exc:  # noqa: BLE001 - recorded for --status; the schedule tries again next time
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.error("%s failed: %s", name, message)
        _record(engine, name, last_finished_at=utcnow(), last_error=message)
        return {"error": message}
    _record(engine, name, last_finished_at=utcnow(), last_error=None,
            last_result=_summary(result))
    return result


def _summary(result: Any) -> dict[str, Any] | None:
    """What to keep of a job's result: a sync's counts, not its whole report."""
    if not isinstance(result, dict):
        return None if result is None else {"result": result}
    return {k: v for k, v in result.items() if isinstance(v, (int, float, str, dict)) and k != "errors_detail"}


def synced_sources(engine: Engine, pm: pluggy.PluginManager | None = None) -> list[str]:
    """Registered sources that have been synced at least once: the connected ones."""
    with engine.connect() as conn:
        names = set(conn.execute(select(SyncState.source).distinct()).scalars())
    return sorted(names & set(plugins.sources(pm)))


def interval(settings: Settings, key: str, default: float) -> dt.timedelta:
    """A schedule's interval from settings.extra[key] (HUB_<KEY>), in seconds; 0 turns the schedule off.

    Every schedule reads its interval this way, so a wrong value is refused
    in the same words, naming the variable a person sets.
    """
    raw = settings.extra.get(key)
    if raw is None or str(raw).strip() == "":
        raw = default
    setting = f"HUB_{key.upper()}"
    try:
        seconds = float(str(raw).strip())
    except (TypeError, ValueError):
        raise SettingsError(_("%(key)s must be a number of seconds (0 turns it off), not %(value)r", key=setting,
                              value=raw)) from None
    if not seconds >= 0 or seconds == float("inf"):
        raise SettingsError(_("%(key)s must be 0 or more seconds, not %(value)r", key=setting, value=raw))
    return dt.timedelta(seconds=seconds)


def sync_all(run: ScheduledRun) -> dict[str, str]:
    """Start an incremental sync of every connected source."""
    from hub import jobs

    return {name: hand_out(run.settings, f"sync:{name}", jobs.sync_source, name)
            for name in synced_sources(run.engine)}


def reconcile_all(run: ScheduledRun) -> dict[str, str]:
    """Start an id-only pass over every connected source that can list its ids."""
    from hub import jobs

    out = {}
    for name in synced_sources(run.engine):
        source = plugins.sources()[name](run.settings)
        if hasattr(source, "live_ids"):
            out[name] = hand_out(run.settings, f"reconcile:{name}", jobs.reconcile_source, name)
    return out


@hookimpl
def register_schedules(register: Callable[[str, Schedule], None], settings: Settings) -> None:
    register("sync", Schedule(interval(settings, "sync_interval_s", SYNC_INTERVAL_S), sync_all,
                              N_("an incremental sync of every connected source"), N_("Sync with the CRMs")))
    register("reconcile", Schedule(interval(settings, "reconcile_interval_s", RECONCILE_INTERVAL_S),
                                   reconcile_all, N_("find records deleted in a source without an event"),
                                   N_("Find records deleted in the CRMs")))
    register("segment_sizes", Schedule(interval(settings, "segment_sizes_interval_s", 3600), segment_sizes,
                                       N_("give every segment today's point on its size chart"),
                                       N_("Segment size charts")))
    from hub import crm_push

    register("crm_push", Schedule(interval(settings, "crm_push_interval_s", crm_push.INTERVAL_S), crm_push.push_all,
                                  N_("write changed lead scores and lifecycle stages to the CRMs' fields "
                                     "(HUB_CRM_PUSH_INTERVAL_S)"),
                                  N_("Scores and stages to the CRMs")))


def segment_sizes(run: ScheduledRun) -> dict[str, Any]:
    """A point per segment per day even where nothing else refreshes segments (hub.segments.sizes)."""
    from hub.segments import sizes

    return sizes.scheduled(run)
