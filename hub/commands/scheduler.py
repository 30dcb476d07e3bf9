"""`hub scheduler`: run recurring work (syncs, reconcile passes, workflow ticks, plugins' chores)."""

from __future__ import annotations

import datetime as dt
import signal
import threading
from typing import Any

import click

from hub import queue, schedule
from hub.cli import App, emit_json, pass_app, stderr
from hub.config import SettingsError
from hub.db import utcnow


def _line(report: schedule.Report) -> str | None:
    parts = [f"{name} ({_short(result)})" if _short(result) else name for name, result in report.ran.items()]
    parts += [f"{name} FAILED: {why}" for name, why in report.failed.items()]
    return f"{utcnow():%H:%M:%S} ran: " + "; ".join(parts) if parts else None


def _short(result: Any) -> str:
    if isinstance(result, dict):
        return ", ".join(f"{k} {v}" for k, v in result.items() if isinstance(v, (str, int, float)) and v != 0)
    return "" if result is None else str(result)


def _status(app: App) -> list[dict[str, Any]]:
    found = schedule.schedules(app.settings)
    last = schedule.last_runs(app.ready_engine())
    now = utcnow()
    rows = []
    for name, sched in sorted(found.items()):
        seen = last.get(name) or {}
        started = seen.get("last_started_at")
        jobs = [{"name": job, "last_started_at": row["last_started_at"], "last_finished_at": row["last_finished_at"],
                 "last_error": row["last_error"], "last_result": row["last_result"]}
                for job, row in sorted(last.items()) if job.startswith(f"{name}:")]
        rows.append({"name": name, "every_s": sched.every.total_seconds(), "description": sched.description,
                     "last_started_at": started, "last_finished_at": seen.get("last_finished_at"),
                     "last_error": seen.get("last_error"), "last_result": seen.get("last_result"),
                     "due": started is None or now - started >= sched.every, "jobs": jobs})
    return rows


@click.command("scheduler")
@click.option("--interval", type=click.FloatRange(1, 3600), default=10, show_default=True,
              help="Seconds between looks at what is due.")
@click.option("--once", is_flag=True, help="Run what is due now, then stop (for cron).")
@click.option("--run", "names", multiple=True, metavar="NAME", help="Run this schedule now, due or not (repeatable).")
@click.option("--status", is_flag=True, help="List the schedules and when each last ran.")
@click.option("--json", "as_json", is_flag=True, help="With --once, --run or --status: print JSON.")
@pass_app
def scheduler_cmd(app: App, interval: float, once: bool, names: tuple[str, ...], status: bool, as_json: bool) -> None:
    """Run recurring work until stopped: syncs every 15 min, a daily reconcile, workflow ticks every 30 s.

    Only one scheduler runs at a time (others stand by and take over when it stops).
    """
    engine = app.ready_engine()
    try:
        if status:
            rows = _status(app)
            if as_json:
                emit_json(rows)
                return
            for r in rows:
                when = f"{r['last_started_at']:%Y-%m-%d %H:%M} UTC" if r["last_started_at"] else "never"
                error = f" — last run FAILED: {r['last_error']}" if r["last_error"] else ""
                click.echo(f"{r['name']:<20} every {r['every_s']:g} s, last run {when}{' (due)' if r['due'] else ''}"
                           f"{error}")
                for job in r["jobs"]:
                    if job["last_finished_at"] is None:
                        outcome = "running (or stopped without finishing)"
                    elif job["last_error"]:
                        outcome = f"FAILED: {job['last_error']}"
                    else:
                        outcome = "ok"
                    click.echo(f"  {job['name']:<18} {job['last_started_at']:%Y-%m-%d %H:%M} UTC: {outcome}")
            return
        if once or names:
            lock = schedule.lock_for(engine, app.settings, dt.timedelta(minutes=10))
            if not lock.acquire():
                raise click.ClickException(f"another scheduler is running ({lock.held_by() or 'unknown'}); "
                                           "nothing done")
            began = utcnow()
            try:
                report = schedule.run_due(engine, app.settings, keepalive=lock.renew, only=list(names) or None)
                queue.drain()  # work handed to this process's background thread finishes before we exit
            finally:
                lock.release()
            if not app.settings.redis_url:  # with Redis the jobs are on the workers; --status shows them later
                report.failed.update(schedule.failed_since(engine, began))
            if as_json:
                emit_json(report.as_dict())
            else:
                click.echo(_line(report) or "Nothing was due.")
            if report.failed:
                raise SystemExit(1)
            return
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    where = "enqueueing for `hub worker`" if app.settings.redis_url else "running the work in this process"
    found = schedule.schedules(app.settings)
    listing = ", ".join(f"{n} every {s.every.total_seconds():g} s" for n, s in sorted(found.items()))
    stderr.print(f"Scheduler: {listing}; {where}. Ctrl-C stops it.")

    def show(result: schedule.Report | None, note: str | None) -> None:
        line = note if note else (_line(result) if result is not None else None)
        if line:
            stderr.print(line, markup=False, highlight=False)

    schedule.serve(engine, app.settings, interval=interval, stop=stop, report=show)
    queue.drain(timeout=600)
    stderr.print("Scheduler stopped.")
