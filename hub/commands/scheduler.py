"""`hub scheduler`: run recurring work (syncs, reconcile passes, workflow ticks, plugins' chores)."""

from __future__ import annotations

import datetime as dt
import signal
import threading
from typing import Any
from zoneinfo import ZoneInfo

import click

from hub import formats, queue, schedule
from hub.cli import App, emit_json, pass_app, stderr
from hub.config import SettingsError
from hub.db import utcnow
from hub.i18n import gettext as _
from hub.i18n import ngettext


def _line(report: schedule.Report, tz: ZoneInfo) -> str | None:
    """One line per pass: when (the shop's local time, its zone named), what ran and what failed.

    What each schedule did is said in the reader's language («sync (bitrix24: запущена)»);
    `--status` says what each schedule is for.
    """
    parts = []
    for name, result in report.ran.items():
        outcome = schedule.result_text(result, name)
        parts.append(_("%(name)s (%(outcome)s)", name=name, outcome=outcome) if outcome else name)
    parts += [_("%(name)s FAILED: %(error)s", name=name, error=why) for name, why in report.failed.items()]
    if not parts:
        return None
    now = utcnow().astimezone(tz)
    return _("%(time)s ran: %(what)s", time=now.strftime("%H:%M:%S ") + formats.zone_name(tz, now),
             what="; ".join(parts))


def _status(app: App) -> list[dict[str, Any]]:
    last = schedule.last_runs(app.ready_engine())
    rows = []
    for s in schedule.statuses(app.ready_engine(), app.settings):
        jobs = [{"name": job, "last_started_at": row["last_started_at"], "last_finished_at": row["last_finished_at"],
                 "last_error": row["last_error"], "last_result": row["last_result"]}
                for job, row in sorted(last.items()) if job.startswith(f"{s.name}:")]
        rows.append({"name": s.name, "every_s": s.every.total_seconds(), "description": s.description,
                     "last_started_at": s.last_started_at, "last_finished_at": s.last_finished_at,
                     "last_error": s.last_error, "last_result": s.last_result, "due": s.due,
                     "next_due": s.next_due, "overdue": s.overdue, "jobs": jobs})
    return rows


def _health(app: App) -> tuple[dict[str, Any], list[str]]:
    """Whether the scheduler ticks and, with Redis, how many workers listen: as JSON and as the lines people read.

    The words are the banner's on every admin page (hub.admin.health_banner), so
    the command line and the admin never say two different things.
    """
    from hub.admin import health_banner

    found = health_banner.read(app.settings)
    beat = found.heartbeat
    data: dict[str, Any] = {
        "ok": found.ok,
        "scheduler": {"alive": beat.alive if beat else None,
                      "last_started_at": beat.last_started_at if beat else None,
                      "window_s": beat.window.total_seconds() if beat else None,
                      "error": found.heartbeat_error},
        "workers": found.workers if app.settings.redis_url else None,
        "redis_error": found.redis_error,
    }
    tz = app.settings.tz
    said = dict(health_banner.messages(found, tz))
    lines = []
    if "scheduler" in said:
        lines.append(said["scheduler"])
    elif beat is not None and beat.last_started_at is not None:
        lines.append(_("The scheduler is running: last run %(when)s (%(ago)s).",
                       when=formats.moment(beat.last_started_at, tz, zone=True),
                       ago=health_banner.ago(beat.last_started_at, found.at)))
    else:
        lines.append(_("Every schedule is turned off: the scheduler has nothing to run."))
    if "workers" in said:
        lines.append(said["workers"])
    elif found.workers is not None:
        lines.append(ngettext("%(num)s queue worker (hub worker) is listening.",
                              "%(num)s queue workers (hub worker) are listening.", found.workers,
                              num=formats.number(found.workers)))
    return data, lines


def _show_status(app: App, rows: list[dict[str, Any]], health: list[str]) -> None:
    tz = app.settings.tz
    for line in health:
        click.echo(line)
    click.echo()
    for r in rows:
        when = formats.moment(r["last_started_at"], tz, zone=True) if r["last_started_at"] else _("never")
        line = _("%(name)s %(every)s, last run %(when)s", name=r["name"].ljust(20),
                 every=schedule.every_text(dt.timedelta(seconds=r["every_s"])), when=when)
        if r["overdue"]:
            line += " " + _("(overdue)")
        elif r["due"]:
            line += " " + _("(due)")
        if r["last_error"]:
            line += " — " + _("last run FAILED: %(error)s", error=r["last_error"])
        click.echo(line)
        if r["description"]:
            click.echo("  " + schedule.description_text(r["description"]))
        for job in r["jobs"]:
            if job["last_finished_at"] is None:
                outcome = _("running (or stopped without finishing)")
            elif job["last_error"]:
                outcome = _("FAILED: %(error)s", error=job["last_error"])
            else:
                outcome = _("ok")
            started = formats.moment(job["last_started_at"], tz, zone=True)
            click.echo(f"  {job['name']:<18} {started}: {outcome}")


@click.group("scheduler", invoke_without_command=True)
@click.option("--interval", type=click.FloatRange(1, 3600), default=10, show_default=True,
              help="Seconds between looks at what is due.")
@click.option("--once", is_flag=True, help="Run what is due now, then stop (for cron).")
@click.option("--run", "names", multiple=True, metavar="NAME", help="Run this schedule now, due or not (repeatable).")
@click.option("--status", is_flag=True, help="List the schedules and when each last ran (as `hub scheduler status`).")
@click.option("--json", "as_json", is_flag=True, help="With --once, --run or --status: print JSON.")
@pass_app
def scheduler_cmd(app: App, interval: float, once: bool, names: tuple[str, ...], status: bool, as_json: bool) -> None:
    """Run recurring work until stopped: syncs every 15 min, a daily reconcile, workflow ticks every 30 s.

    Only one scheduler runs at a time (others stand by and take over when it stops).
    """
    if click.get_current_context().invoked_subcommand is not None:
        return
    engine = app.ready_engine()
    try:
        if status:
            rows = _status(app)
            if as_json:
                emit_json(rows)
                return
            _show_status(app, rows, _health(app)[1])
            return
        if once or names:
            lock = schedule.lock_for(engine, app.settings, dt.timedelta(minutes=10))
            if not lock.acquire():
                raise click.ClickException(_("another scheduler is running (%(holder)s); nothing done",
                                             holder=lock.held_by() or _("unknown")))
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
                click.echo(_line(report, app.settings.tz) or _("Nothing was due."))
            if report.failed:
                raise SystemExit(1)
            return
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_args: stop.set())
    where = _("enqueueing for `hub worker`") if app.settings.redis_url else _("running the work in this process")
    found = schedule.schedules(app.settings)
    listing = ", ".join(_("%(name)s %(every)s", name=n, every=schedule.every_text(s.every))
                        for n, s in sorted(found.items()))
    stderr.print(_("Scheduler: %(schedules)s; %(where)s. Ctrl-C stops it.", schedules=listing, where=where),
                 markup=False, highlight=False)

    def show(result: schedule.Report | None, note: str | None) -> None:
        line = note if note else (_line(result, app.settings.tz) if result is not None else None)
        if line:
            stderr.print(line, markup=False, highlight=False)

    schedule.serve(engine, app.settings, interval=interval, stop=stop, report=show)
    queue.drain(timeout=600)
    stderr.print(_("Scheduler stopped."))


@scheduler_cmd.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")
@pass_app
def status_cmd(app: App, as_json: bool) -> None:
    """Whether the scheduler is running (and, with Redis, whether a worker listens), and each schedule's last run.

    Exits with 1 when the scheduler is not running or, with Redis, no worker
    listens or Redis cannot be reached: the same as the banner in the admin.
    """
    try:
        rows = _status(app)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    data, lines = _health(app)
    if as_json:
        emit_json({**data, "schedules": rows})
    else:
        _show_status(app, rows, lines)
    if not data["ok"]:
        raise SystemExit(1)
