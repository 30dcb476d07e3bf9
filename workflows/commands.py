"""`hub workflows …`, `hub scheduler` and `hub promo …`.

Commands that report take --json and then print one JSON document and nothing
else; progress goes to stderr; a mistake (a workflow file that does not
check, an unknown workflow or code) ends in one `Error:` line.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from pathlib import Path
from typing import Any, Callable

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy import func, select

# not in hub.api on purpose: `hub workflows` takes the scheduler's lock
from hub import schedule
from hub.api import (N_, ROW_ID, App, Message, SettingsError, TemplateError, emit_json, format_date, format_length,
                     format_moment, format_money, format_number, format_percent, gettext, ngettext, parse_duration,
                     pass_app, progress_bar, record_audit, stderr, translated_title, utcnow)
# not in hub.api on purpose: conditions and triggers are written in the segment rule language itself
from hub.segments.rules import SegmentError
from workflows import config, definition, engagement, forecast, measure, promo, runner, store, ticks, triggers
from workflows.definition import WorkflowError
from workflows.models import StepResult, WorkflowRun
from workflows.names import add_titles, counter_title, goal_title, state_title
from workflows.steps import kind_summary

runs_t = WorkflowRun.__table__


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Workflow, promo, segment and settings mistakes end in one `Error:` line."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from redis.exceptions import ConnectionError as RedisConnectionError

        try:
            return func(*args, **kwargs)
        except (WorkflowError, promo.PromoError, SegmentError, SettingsError, TemplateError) as exc:
            raise click.ClickException(str(exc)) from None
        except RedisConnectionError as exc:
            raise click.ClickException(gettext("cannot reach Redis at HUB_REDIS_URL: %(error)s",
                                               error=str(exc).splitlines()[0])) from None

    return wrapper


@click.group("workflows")
def workflows_group() -> None:
    """Automated campaigns: reactivation, birthdays, welcome, feedback. See docs/workflows.md."""


@workflows_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_app
@user_errors
def list_cmd(app: App, as_json: bool) -> None:
    """Every workflow: shipped and added, whether it is on, and its runs."""
    engine = app.ready_engine()
    with engine.begin() as conn:
        store.install_library(conn)
    out = []
    with engine.connect() as conn:
        counts: dict[int, dict[str, int]] = {}
        for workflow_id, status, n in conn.execute(select(runs_t.c.workflow_id, runs_t.c.status, func.count())
                                                   .group_by(runs_t.c.workflow_id, runs_t.c.status)):
            counts.setdefault(workflow_id, {})[status] = n
        kinds: dict[str, str] = {}  # each trigger as people read it (not in the JSON)
        for row in store.rows(conn):
            item: dict[str, Any] = {"name": row.name, "title": row.title, "origin": row.origin,
                                    "enabled": row.enabled, "version": row.version,
                                    "runs": counts.get(row.id, {})}
            try:
                parsed = store.definition(conn, app.settings, row.id, row.version)
                item.update(definition.summary(parsed))
                kinds[row.name] = triggers.trigger_text(conn, app.settings, parsed)
            except WorkflowError as exc:
                item["error"] = str(exc)
            out.append(item)
    if as_json:
        emit_json(out)
        return
    table = Table(gettext("workflow"), gettext("name"), gettext("switched on"), gettext("starts on"), gettext("runs"))
    for item in out:
        runs = ", ".join(f"{state_title(k)} {format_number(v)}" for k, v in sorted(item["runs"].items())) or "-"
        table.add_row(translated_title(item["title"]) or item["name"], item["name"],
                      gettext("yes") if item["enabled"] else gettext("no"),
                      kinds[item["name"]] if item["name"] in kinds else item.get("error", ""),
                      runs)
    Console().print(table)


ENTRY_WORDS = {"trigger": N_("the trigger"), "reentry": N_("entering again sooner"),
               "holdout": N_("a smaller control group")}  # store.entry_changed's keys, in words


def switch_on_again(app: App, name: str, entry: list[str], yes: bool, *, quiet: bool) -> Any:
    """After a save switched NAME off because who enters changed: the forecast, then on again unless refused.

    The same check as hub workflows enable (trial_commands.confirm_switch_on):
    past `[workflows] confirm_admin_over` it needs --yes; otherwise it stays
    off and says how to switch it on. Returns the row when switched on again.
    """
    from workflows.trial_commands import confirm_switch_on

    what = ", ".join(gettext(ENTRY_WORDS.get(key, key)) for key in entry)
    click.echo(gettext("Who enters %(name)s changed (%(what)s), so it was switched off; the new version's forecast:",
                       name=name, what=what), err=quiet)
    try:
        with contextlib.redirect_stdout(sys.stderr) if quiet else contextlib.nullcontext():
            confirm_switch_on(app, name, yes)
    except (click.ClickException, WorkflowError) as exc:
        reason = exc.message if isinstance(exc, click.ClickException) else "; ".join(exc.problems)
        click.echo(gettext("%(name)s is saved switched off: %(reason)s", name=name, reason=reason), err=quiet)
        click.echo(gettext("Switch it on when ready: hub workflows enable %(name)s", name=name), err=quiet)
        return None
    with app.ready_engine().begin() as conn:
        row = store.set_enabled(conn, name, True)
        record_audit(conn, "cli", "workflow_enabled", workflow=name, version=row.version, reason="entry_changed",
                     yes=yes)
    click.echo(gettext("%(name)s is on again with the new version.", name=name), err=quiet)
    return row


@workflows_group.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--enable", is_flag=True, help="Switch it on right away (after the same forecast as hub workflows "
                                             "enable).")
@click.option("--yes", is_flag=True, help="Switch it on with --enable, or keep it on when the changed file lets other "
                                          "people in, even when its first look would message more people than "
                                          "[workflows] confirm_admin_over.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
@user_errors
def add_cmd(app: App, file: Path, enable: bool, yes: bool, as_json: bool) -> None:
    """Check and save the workflow FILE defines (YAML or JSON); a changed file becomes a new version.

    When the workflow is on and the new version changes who enters it (its
    trigger, an earlier reentry, a smaller holdout), it is saved switched off
    and switched on again only after the same forecast as hub workflows enable.
    """
    engine = app.ready_engine()
    document = definition.read_file(file)
    with engine.begin() as conn:
        saved = store.save(conn, app.settings, document, origin=file.name, by="cli")
        if saved.stale:  # another save wrote the same version number first: this file is not saved
            raise WorkflowError([gettext("%(name)s was saved by someone else at the same moment (version %(num)s); "
                                         "this file was not saved: run the command again",
                                         name=repr(saved.workflow.name), num=saved.version)])
        if saved.switched_off:
            record_audit(conn, "cli", "workflow_disabled", workflow=saved.workflow.name, version=saved.version,
                         reason="entry_changed", entry_changed=saved.entry)
        workflow, created = saved.workflow, saved.created
        row = store.row(conn, workflow.name)
    if saved.switched_off:
        row = switch_on_again(app, workflow.name, saved.entry, yes, quiet=as_json) or row
    elif enable and not row.enabled:
        from workflows.trial_commands import confirm_switch_on

        if as_json:  # the forecast's words would break the one JSON document
            with contextlib.redirect_stdout(sys.stderr):
                confirm_switch_on(app, workflow.name, yes)
        else:
            confirm_switch_on(app, workflow.name, yes)
        with engine.begin() as conn:
            row = store.set_enabled(conn, workflow.name, True)
    if as_json:
        emit_json({"workflow": workflow.name, "created": created, "version": row.version, "enabled": row.enabled,
                   "written": saved.written, "entry_changed": saved.entry,
                   "switched_off": saved.switched_off and not row.enabled, **definition.summary(workflow)})
        return
    with engine.connect() as conn:
        trigger = triggers.trigger_text(conn, app.settings, workflow)
    facts = dict(name=workflow.name, version=row.version, trigger=trigger,
                 steps=ngettext("%(num)s step", "%(num)s steps", len(workflow.steps())))
    if created:
        click.echo(gettext("Added workflow %(name)s (version %(version)s, on): %(trigger)s, %(steps)s.", **facts)
                   if row.enabled else
                   gettext("Added workflow %(name)s (version %(version)s, off): %(trigger)s, %(steps)s.", **facts))
    elif not saved.written:
        click.echo(gettext("Workflow %(name)s is unchanged (version %(version)s, on): %(trigger)s, %(steps)s.",
                           **facts) if row.enabled else
                   gettext("Workflow %(name)s is unchanged (version %(version)s, off): %(trigger)s, %(steps)s.",
                           **facts))
    else:
        click.echo(gettext("Updated workflow %(name)s (version %(version)s, on): %(trigger)s, %(steps)s.", **facts)
                   if row.enabled else
                   gettext("Updated workflow %(name)s (version %(version)s, off): %(trigger)s, %(steps)s.", **facts))
    if not row.enabled:
        click.echo(gettext("Try it: hub workflows run %(name)s --dry-run; switch it on: hub workflows enable %(name)s",
                           name=workflow.name))


@workflows_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the workflow's definition as JSON.")
@pass_app
@user_errors
def show_workflow_cmd(app: App, name: str, as_json: bool) -> None:
    """What a workflow does: its trigger and its steps, named as people call them, with their technical names."""
    engine = app.ready_engine()
    with engine.begin() as conn:
        store.install_library(conn)
        row, workflow = store.current(conn, app.settings, name)
    if as_json:
        emit_json({"workflow": row.name, "title": row.title, "description": workflow.description,
                   "enabled": row.enabled, "version": row.version, **definition.summary(workflow),
                   "document": workflow.document})
        return
    with engine.connect() as conn:
        trigger = triggers.trigger_text(conn, app.settings, workflow)
    console = Console()
    title = translated_title(row.title)  # a marketer's own title may hold [brackets]: printed as written
    console.print(Text.assemble((title, "bold"), f" ({row.name})") if title else Text(row.name, style="bold"))
    if workflow.description:
        console.print(Text(translated_title(workflow.description)))
    console.print(gettext("State: %(state)s, version %(version)s", state=state_title("on" if row.enabled else "off"),
                          version=row.version), markup=False)
    console.print(gettext("Starts on: %(trigger)s. %(summary)s", trigger=trigger, summary=workflow.trigger.summary()),
                  markup=False)
    table = Table(gettext("step"), gettext("what"), gettext("technical name"), gettext("what it does"))
    for instruction in workflow.steps():
        table.add_row(str(workflow.number(instruction.index)), Text(instruction.step.phrase()),
                      Text(instruction.step.label()), kind_summary(instruction.step))
    console.print(table)


def _switch(app: App, name: str, enabled: bool) -> None:
    engine = app.ready_engine()
    with engine.begin() as conn:
        store.install_library(conn)
        _, workflow = store.current(conn, app.settings, name)
        store.set_enabled(conn, name, enabled)
        trigger = triggers.trigger_text(conn, app.settings, workflow)
    if enabled:
        click.echo(gettext("Workflow %(name)s is on: the scheduler starts runs by its trigger (%(trigger)s).",
                           name=name, trigger=trigger))
    else:
        click.echo(gettext("Workflow %(name)s is off: nobody new enters it; runs under way go on.", name=name))


# `hub workflows enable` asks first, with the forecast's numbers: workflows/trial_commands.py.


@workflows_group.command("disable")
@click.argument("name")
@pass_app
@user_errors
def disable_cmd(app: App, name: str) -> None:
    """Switch a workflow off: nobody new enters it (runs under way go on)."""
    _switch(app, name, False)


@workflows_group.command("run")
@click.argument("name")
@click.option("--dry-run", is_flag=True, help="Forecast who would get what and when; change nothing.")
@click.option("--days", type=click.IntRange(1, 365), default=14, show_default=True,
              help="How far ahead a dry run looks.")
@click.option("--sample", type=click.IntRange(0, 1000), default=10, show_default=True,
              help="Contacts a dry run shows one by one.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
@user_errors
def run_cmd(app: App, name: str, dry_run: bool, days: int, sample: int, as_json: bool) -> None:
    """Start runs for the workflow's current entrants now (and do their first steps without Redis)."""
    engine = app.ready_engine()
    if dry_run:
        report = forecast.forecast(engine, app.settings, name, days=days, sample=sample)
        if as_json:
            emit_json(report)
        else:
            _print_forecast(_titled(engine, app.settings, report), app.settings.tz)
        return
    result = start_now(engine, app.settings, name, show_progress=not as_json)
    if as_json:
        emit_json(result)
        return
    line = gettext("%(name)s: %(started)s runs started (%(holdout)s in the holdout), %(skipped)s skipped (already "
                   "running or not due to enter again); %(messages)s messages", name=name,
                   started=format_number(result["started"]), holdout=format_number(result["holdout"]),
                   skipped=format_number(result["skipped"]), messages=format_number(result["messages"]))
    if "queued_runs" in result:
        line += gettext("; %(queued)s runs handed to `hub worker`", queued=format_number(result["queued_runs"]))
    click.echo(line + ".")


def start_now(engine: Any, settings: Any, name: str, *, show_progress: bool = False) -> dict[str, Any]:
    """What `hub workflows run NAME` does: start runs for current entrants, then do what is due."""
    now = utcnow()
    with engine.begin() as conn:
        store.install_library(conn)
    with engine.connect() as conn:
        row, workflow = store.current(conn, settings, name)
    if row.origin == store.CAMPAIGN_ORIGIN:
        raise WorkflowError([gettext("%(name)s carries a campaign; start, pause and resume it with hub campaigns",
                                     name=repr(name))])
    if workflow.trigger.kind == "exit" and not row.enabled:  # leaving is seen only by refreshes while it is on
        raise WorkflowError([gettext("%(name)s starts when a contact leaves the segment %(segment)s; switch it on to "
                                     "start watching: hub workflows enable %(name)s", name=name,
                                     segment=workflow.trigger.segment)])
    if workflow.trigger.kind == "event" and not row.enabled:
        raise WorkflowError([gettext("%(name)s starts on an event (%(event)s); switch it on to start watching for "
                                     "them: hub workflows enable %(name)s", name=name,
                                     event=workflow.trigger.event)])
    report = triggers.fire(engine, settings, row, workflow, now=now, manual=True)
    result: dict[str, Any] = {"workflow": name, **report.as_dict(), "messages": 0}
    if settings.redis_url:
        queued, _ = ticks.enqueue_due(engine, settings, now=now, workflow_id=row.id)
        result["queued_runs"] = queued
        return result
    with progress_bar(enabled=show_progress) as bar:
        task = bar.add_task(gettext("Running %(name)s", name=name), total=report.started - report.holdout)
        done = ticks.advance_due(engine, settings, now=now, workflow_id=row.id,
                                 progress=lambda n: bar.advance(task, n))
    result["messages"] = done.get("messages", 0)
    m, s, r = Message.__table__.c, StepResult.__table__.c, runs_t.c
    with engine.connect() as conn:
        result["sent"] = conn.execute(select(func.count()).select_from(
            StepResult.__table__.join(runs_t, r.id == s.run_id).join(Message.__table__, m.id == s.message_id))
            .where(r.workflow_id == row.id, r.started_at == now, m.status == "sent")).scalar_one()
    return result


def _print_forecast(report: dict[str, Any], tz: Any) -> None:
    console = Console()
    console.print(Text.assemble((report["workflow"], "bold"), ngettext(
        ", the next %(num)s day (nothing is changed):", ", the next %(num)s days (nothing is changed):",
        report["days"])))
    console.print("  " + gettext("would start %(start)s runs, %(holdout)s more in the holdout, %(skipped)s not due "
                                 "to enter; %(running)s runs already under way",
                                 start=format_number(report["would_start"]), holdout=format_number(report["holdout"]),
                                 skipped=format_number(report["skipped"]),
                                 running=format_number(report["already_running"])))
    if report.get("note"):
        console.print(f"  {report['note']}")
    if report.get("sms"):
        from workflows import sms_estimate

        console.print("  " + sms_estimate.text(report["sms"]), markup=False)
    table = Table(gettext("step"), gettext("what"), gettext("count"), gettext("details"))
    for step in report["steps"]:
        details = ", ".join(f"{counter_title(k)} {format_number(v)}" for k, v in step.items()
                            if k not in ("step", "label", "count", "title", "summary", "text", "kind"))
        table.add_row(str(step["step"]), Text(_what(step)), format_number(step.get("count", 0)), details)
    console.print(table)
    if report["by_day"]:
        kinds = sorted({k for d in report["by_day"] for k in d if k != "date"})
        titles = report.get("kind_titles", {})
        days = Table(gettext("day"), *[f"{titles[k]} ({k})" if k in titles else counter_title(k) for k in kinds])
        for day in report["by_day"]:
            days.add_row(format_date(day["date"]), *[format_number(day.get(k, 0)) for k in kinds])
        console.print(days)
    for contact in report["contacts"]:
        plan = "; ".join(f"{format_moment(a['at'], tz, zone=True)} {_what(a)}"
                         for a in contact["actions"]) or gettext("nothing")
        console.print(f"  #{contact['contact_id']} {contact['name']}: {plan}", markup=False, highlight=False)


def _what(step: dict[str, Any]) -> str:
    """A step as people read it, its kind's technical name after it: «Промокод 15 % на 14 дней (promo_code)»."""
    if step.get("text"):
        return f"{step['text']} ({step['kind']})"
    return step.get("label") or step.get("what") or ""


@workflows_group.command("status")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
@user_errors
def status_cmd(app: App, name: str | None, as_json: bool) -> None:
    """Entered, holdout, each step's sends and skips, conversions, revenue and uplift (all workflows with runs)."""
    engine = app.ready_engine()
    if name is None:
        with engine.begin() as conn:
            store.install_library(conn)
            names = [r.name for r in store.rows(conn) if r.enabled] + sorted(
                set(conn.execute(select(store.workflows_t.c.name).join(
                    runs_t, runs_t.c.workflow_id == store.workflows_t.c.id)).scalars()))
        names = list(dict.fromkeys(names))
        reports = [measure.status(engine, app.settings, n) for n in names]
        if as_json:
            emit_json(reports)
            return
        for report in reports:
            _print_status(_titled(engine, app.settings, report))
        if not reports:
            click.echo(gettext("No workflow is on and none has runs yet (see `hub workflows list`)."))
        return
    report = measure.status(engine, app.settings, name)
    if as_json:
        emit_json(report)
        return
    _print_status(_titled(engine, app.settings, report))


def _titled(engine: Any, settings: Any, report: dict[str, Any]) -> dict[str, Any]:
    """The report with the names people read beside the technical ones (not for --json)."""
    with engine.connect() as conn:
        add_titles(report, forecast._workflow(conn, settings, report["workflow"], None)[1], conn, settings)
    return report


def _print_status(report: dict[str, Any]) -> None:
    console = Console()
    runs = [f"{state_title(k)} {format_number(v)}" for k, v in report["runs"].items() if v]
    title = translated_title(report.get("title"))
    head = (Text.assemble((title, "bold"), f" ({report['workflow']})") if title else
            Text(report["workflow"], style="bold"))
    console.print(head + Text(" — " + gettext(
        "%(state)s; %(trigger)s: %(entered)s entered, %(holdout)s in the holdout", state=state_title(
            "on" if report["enabled"] else "off"), trigger=report.get("trigger_text") or report["trigger"],
        entered=format_number(report["entered"]), holdout=format_number(report["in_holdout"]))
        + ("; " + ", ".join(runs) if runs else "")))
    table = Table(gettext("step"), gettext("what"), gettext("done/sent"), gettext("deferred"), gettext("skipped"),
                  gettext("failed"))
    for step in report["steps"]:
        table.add_row(str(step["step"]), Text(_what(step)),
                      format_number(step.get("sent", step.get("done", 0))), format_number(step["deferred"]),
                      format_number(step["skipped"]), format_number(step["failed"]))
    console.print(table)
    for line in engagement.describe(report.get("engagement")):
        console.print("  " + line, markup=False, highlight=False)
    codes = report["promo_codes"]
    if codes["issued"]:
        console.print("  " + gettext("promo codes: %(issued)s issued, %(redeemed)s redeemed, %(expired)s expired",
                                     issued=format_number(codes["issued"]), redeemed=format_number(codes["redeemed"]),
                                     expired=format_number(codes["expired"])))
    if report.get("goal"):
        t, h = report["conversion"]["treated"], report["conversion"]["holdout"]
        points = report["uplift"]["rate_points"]
        goal = report["goal"]
        console.print("  " + gettext("goal: %(goal)s within %(within)s: %(converted)s converted, revenue %(revenue)s",
                                     goal=goal_title(goal["event"]), within=_within(goal["within"]),
                                     converted=format_number(report["converted"]),
                                     revenue=format_money(report["revenue"])))
        counts = {"treated": format_number(t["converted"]), "treated_runs": format_number(t["runs"]),
                  "treated_rate": _pct(t["rate"]), "holdout": format_number(h["converted"]),
                  "holdout_runs": format_number(h["runs"]), "holdout_rate": _pct(h["rate"])}
        console.print("  " + (gettext(
            "reached the goal after the campaign: %(treated)s of %(treated_runs)s (%(treated_rate)s); in the holdout, "
            "who got nothing: %(holdout)s of %(holdout_runs)s (%(holdout_rate)s); uplift %(points)s percentage points",
            points=format_number(points), **counts) if points is not None else gettext(
            "reached the goal after the campaign: %(treated)s of %(treated_runs)s (%(treated_rate)s); in the holdout, "
            "who got nothing: %(holdout)s of %(holdout_runs)s (%(holdout_rate)s); the uplift cannot be counted yet",
            **counts)))
    if report.get("nps"):
        console.print("  " + ngettext("NPS %(nps)s from %(num)s answer", "NPS %(nps)s from %(num)s answers",
                                      report["nps"]["answers"], nps=report["nps"]["nps"],
                                      num=format_number(report["nps"]["answers"])))


def _within(window: Any) -> str:
    """The goal's window after «в течение» / "within" («21 дня»); as written when it is not a length."""
    try:
        return format_length(parse_duration(window), within=True)
    except (TypeError, ValueError):
        return str(window)


def _pct(rate: float | None) -> str:
    return format_percent(rate) if rate is not None else "-"


@workflows_group.command("tick")
@click.option("--json", "as_json", is_flag=True, help="Print what the tick did as JSON.")
@pass_app
@user_errors
def tick_cmd(app: App, as_json: bool) -> None:
    """One scheduler tick now: start what triggers call for, then run (or enqueue) what is due."""
    engine = app.ready_engine()
    lock = schedule.lock_for(engine, app.settings, config.load(app.settings).lease * 5)
    if not lock.acquire():
        if as_json:  # the JSON's words stay English, for scripts
            emit_json({"ticked": False, "reason": f"another scheduler is ticking ({lock.held_by() or 'unknown'}); "
                                                  "nothing done"})
        else:
            click.echo(gettext("another scheduler is ticking (%(holder)s); nothing done",
                               holder=lock.held_by() or gettext("unknown")))
        return
    try:
        with progress_bar(enabled=not as_json) as bar:
            task = bar.add_task(gettext("Advancing runs"), total=None)
            report = ticks.tick(engine, app.settings, keepalive=lock.renew,
                                progress=lambda n: bar.advance(task, n))
    finally:
        lock.release()
    data = {"ticked": True, **report.as_dict()}
    if as_json:
        emit_json(data)
        return
    started = ", ".join(gettext("%(name)s: %(started)s started", name=k, started=format_number(v["started"]))
                        for k, v in report.started.items()) or gettext("no workflow is on")
    work = (gettext("%(runs)s runs enqueued in %(jobs)s jobs", runs=format_number(report.enqueued),
                    jobs=format_number(report.jobs)) if app.settings.redis_url else
            gettext("%(steps)s steps done, %(messages)s messages, %(sent)s sent",
                    steps=format_number(report.advanced.get("steps", 0)),
                    messages=format_number(report.advanced.get("messages", 0)),
                    sent=format_number(report.outbox.get("sent", 0))))
    click.echo(gettext("Tick: %(started)s; %(redeemed)s promo codes redeemed; %(work)s (%(seconds)s s).",
                       started=started, redeemed=format_number(report.redeemed), work=work,
                       seconds=format_number(round(report.seconds, 1))))
    for name, error in report.errors.items():
        stderr.print(Text(f"{name}: {error}", style="red"))  # an error may quote a marketer's [brackets]


@workflows_group.command("parked")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_app
@user_errors
def parked_cmd(app: App, name: str | None, as_json: bool) -> None:
    """Runs that failed for good, with the reason; `hub workflows retry` puts them back."""
    with app.ready_engine().connect() as conn:
        rows = runner.parked(conn, app.settings, name, limit=None)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo(gettext("No parked runs."))
    for r in rows:
        click.echo(gettext("run %(run)s (%(workflow)s, contact #%(contact)s, step %(step)s): %(error)s", run=r["id"],
                           workflow=r["workflow"], contact=r["contact_id"], step=r["step"], error=r["error"]))


@workflows_group.command("retry")
@click.argument("run_ids", type=ROW_ID, nargs=-1)
@click.option("--all", "all_of", metavar="NAME", help="Every parked run of this workflow.")
@click.option("--skip", is_flag=True, help="Pass over the step the run was parked at.")
@pass_app
@user_errors
def retry_cmd(app: App, run_ids: tuple[int, ...], all_of: str | None, skip: bool) -> None:
    """Put parked runs back to work (the next tick, or `hub workflows tick`, takes them on)."""
    engine = app.ready_engine()
    ids = list(run_ids)
    if all_of:
        with engine.connect() as conn:
            store.row(conn, all_of)
            ids += [r["id"] for r in runner.parked(conn, app.settings, all_of, limit=None)]
    if not ids:
        raise click.UsageError(gettext("give run ids or --all NAME"))
    n = runner.retry(engine, ids, skip=skip)
    line = (gettext("%(done)s of %(total)s runs put back to work past the step they stopped at.", done=n,
                    total=len(ids)) if skip else
            gettext("%(done)s of %(total)s runs put back to work.", done=n, total=len(ids)))
    click.echo(line + ("" if n == len(ids) else " " + gettext("(The others are not parked.)")))


# --- hub promo ----------------------------------------------------------------------------

@click.group("promo")
def promo_group() -> None:
    """Promo codes the workflows issued."""


@promo_group.command("redeem")
@click.argument("code")
@click.option("--force", is_flag=True, help="Redeem an expired code too.")
@click.option("--json", "as_json", is_flag=True, help="Print the code as JSON.")
@pass_app
@user_errors
def redeem_cmd(app: App, code: str, force: bool, as_json: bool) -> None:
    """Mark CODE used (a purchase in a shop the CRMs do not see)."""
    found = promo.redeem(app.ready_engine(), code, by="cli", force=force, tz=app.settings.tz)
    if as_json:
        emit_json(found)
        return
    click.echo(gettext("Promo code %(code)s redeemed (contact #%(contact)s, %(discount)s%%).", code=found["code"],
                       contact=found["contact_id"], discount=format_number(found["discount"])))


@promo_group.command("show")
@click.argument("code")
@click.option("--json", "as_json", is_flag=True, help="Print the code as JSON.")
@pass_app
@user_errors
def show_cmd(app: App, code: str, as_json: bool) -> None:
    """Whose code it is, its discount, expiry and whether it was used."""
    with app.ready_engine().connect() as conn:
        row = conn.execute(select(promo.codes_t).where(promo.codes_t.c.code == promo.normalize(code))).first()
    if row is None:
        raise promo.PromoError(gettext("no promo code %(code)s", code=repr(code.strip())))
    found = promo.describe(row)
    if as_json:
        emit_json(found)
        return
    line = gettext("%(code)s: %(status)s, %(discount)s%% for contact #%(contact)s, valid until %(until)s",
                   code=found["code"], status=_code_status(found["status"]),
                   discount=format_number(found["discount"]), contact=found["contact_id"],
                   until=format_moment(found["expires_at"], app.settings.tz, zone=True))
    if found["redeemed_at"]:
        line += gettext(", redeemed %(date)s by %(by)s",
                        date=format_moment(found["redeemed_at"], app.settings.tz, zone=True), by=found["redeemed_by"])
    click.echo(line)


def _code_status(status: str) -> str:
    """A promo code's state as people call it; the JSON keeps the key."""
    titles = {"active": gettext("active"), "redeemed": gettext("redeemed"), "expired": gettext("expired")}
    return titles.get(status, status)
