"""`hub workflows …`, `hub scheduler` and `hub promo …`.

Commands that report take --json and then print one JSON document and nothing
else; progress goes to stderr; a mistake (a workflow file that does not
check, an unknown workflow or code) ends in one `Error:` line.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

# not in hub.api on purpose: `hub workflows` takes the scheduler's lock
from hub import schedule
from hub.api import App, Message, SettingsError, TemplateError, emit_json, pass_app, progress_bar, stderr, utcnow
# not in hub.api on purpose: conditions and triggers are written in the segment rule language itself
from hub.segments.rules import SegmentError
from workflows import config, definition, forecast, measure, promo, runner, store, ticks, triggers
from workflows.definition import WorkflowError
from workflows.models import StepResult, WorkflowRun

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
            raise click.ClickException(f"cannot reach Redis at HUB_REDIS_URL: {str(exc).splitlines()[0]}") from None

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
        for row in store.rows(conn):
            item: dict[str, Any] = {"name": row.name, "title": row.title, "origin": row.origin,
                                    "enabled": row.enabled, "version": row.version,
                                    "runs": counts.get(row.id, {})}
            try:
                item.update(definition.summary(store.definition(conn, app.settings, row.id, row.version)))
            except WorkflowError as exc:
                item["error"] = str(exc)
            out.append(item)
    if as_json:
        emit_json(out)
        return
    table = Table("name", "on", "trigger", "runs", "title")
    for item in out:
        runs = ", ".join(f"{k} {v}" for k, v in sorted(item["runs"].items())) or "-"
        table.add_row(item["name"], "yes" if item["enabled"] else "no", item.get("trigger") or item.get("error", ""),
                      runs, item["title"] or "")
    Console().print(table)


@workflows_group.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--enable", is_flag=True, help="Switch it on right away.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
@user_errors
def add_cmd(app: App, file: Path, enable: bool, as_json: bool) -> None:
    """Check and save the workflow FILE defines (YAML or JSON); a changed file becomes a new version."""
    engine = app.ready_engine()
    document = definition.read_file(file)
    with engine.begin() as conn:
        workflow, created = store.add(conn, app.settings, document, origin=file.name)
        row = store.set_enabled(conn, workflow.name, True) if enable else store.row(conn, workflow.name)
    if as_json:
        emit_json({"workflow": workflow.name, "created": created, "version": row.version, "enabled": row.enabled,
                   **definition.summary(workflow)})
        return
    click.echo(f"{'Added' if created else 'Updated'} workflow {workflow.name} (version {row.version}, "
               f"{'on' if row.enabled else 'off'}): {workflow.trigger.describe()}, {len(workflow.steps())} steps.")
    if not row.enabled:
        click.echo(f"Try it: hub workflows run {workflow.name} --dry-run; switch it on: "
                   f"hub workflows enable {workflow.name}")


def _switch(app: App, name: str, enabled: bool) -> None:
    engine = app.ready_engine()
    with engine.begin() as conn:
        store.install_library(conn)
        _, workflow = store.current(conn, app.settings, name)
        store.set_enabled(conn, name, enabled)
    if enabled:
        click.echo(f"Workflow {name} is on: the scheduler starts runs by its trigger ({workflow.trigger.describe()}).")
    else:
        click.echo(f"Workflow {name} is off: nobody new enters it; runs under way go on.")


@workflows_group.command("enable")
@click.argument("name")
@pass_app
@user_errors
def enable_cmd(app: App, name: str) -> None:
    """Switch a workflow on: the scheduler starts runs by its trigger."""
    _switch(app, name, True)


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
            _print_forecast(report)
        return
    result = start_now(engine, app.settings, name, show_progress=not as_json)
    if as_json:
        emit_json(result)
        return
    line = (f"{name}: {result['started']:,} runs started ({result['holdout']:,} in the holdout), "
            f"{result['skipped']:,} skipped (already running or not due to enter again); "
            f"{result['messages']:,} messages")
    if "queued_runs" in result:
        line += f"; {result['queued_runs']:,} runs handed to `hub worker`"
    click.echo(line + ".")


def start_now(engine: Any, settings: Any, name: str, *, show_progress: bool = False) -> dict[str, Any]:
    """What `hub workflows run NAME` does: start runs for current entrants, then do what is due."""
    now = utcnow()
    with engine.begin() as conn:
        store.install_library(conn)
    with engine.connect() as conn:
        row, workflow = store.current(conn, settings, name)
    if workflow.trigger.kind == "event" and not row.enabled:
        raise WorkflowError([f"{name} starts on an event ({workflow.trigger.event}); switch it on to start "
                             f"watching for them: hub workflows enable {name}"])
    report = triggers.fire(engine, settings, row, workflow, now=now, manual=True)
    result: dict[str, Any] = {"workflow": name, **report.as_dict(), "messages": 0}
    if settings.redis_url:
        queued, _ = ticks.enqueue_due(engine, settings, now=now, workflow_id=row.id)
        result["queued_runs"] = queued
        return result
    with progress_bar(enabled=show_progress) as bar:
        task = bar.add_task(f"Running {name}", total=report.started - report.holdout)
        done = ticks.advance_due(engine, settings, now=now, workflow_id=row.id,
                                 progress=lambda n: bar.advance(task, n))
    result["messages"] = done.get("messages", 0)
    m, s, r = Message.__table__.c, StepResult.__table__.c, runs_t.c
    with engine.connect() as conn:
        result["sent"] = conn.execute(select(func.count()).select_from(
            StepResult.__table__.join(runs_t, r.id == s.run_id).join(Message.__table__, m.id == s.message_id))
            .where(r.workflow_id == row.id, r.started_at == now, m.status == "sent")).scalar_one()
    return result


def _print_forecast(report: dict[str, Any]) -> None:
    console = Console()
    console.print(f"[bold]{report['workflow']}[/bold], the next {report['days']} days (nothing is changed):")
    console.print(f"  would start {report['would_start']:,} runs, {report['holdout']:,} more in the holdout, "
                  f"{report['skipped']:,} not due to enter; {report['already_running']:,} runs already under way")
    if report.get("note"):
        console.print(f"  {report['note']}")
    table = Table("step", "what", "count", "details")
    for step in report["steps"]:
        details = ", ".join(f"{k} {v:,}" for k, v in step.items() if k not in ("step", "label", "count"))
        table.add_row(str(step["step"]), step["label"], f"{step.get('count', 0):,}", details)
    console.print(table)
    if report["by_day"]:
        kinds = sorted({k for d in report["by_day"] for k in d if k != "date"})
        days = Table("day", *kinds)
        for day in report["by_day"]:
            days.add_row(day["date"], *[f"{day.get(k, 0):,}" for k in kinds])
        console.print(days)
    for contact in report["contacts"]:
        plan = "; ".join(f"{a['at'][:16].replace('T', ' ')} {a['what']}" for a in contact["actions"]) or "nothing"
        console.print(f"  #{contact['contact_id']} {contact['name']}: {plan}")


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
            _print_status(report)
        if not reports:
            click.echo("No workflow is on and none has runs yet (see `hub workflows list`).")
        return
    report = measure.status(engine, app.settings, name)
    if as_json:
        emit_json(report)
        return
    _print_status(report)


def _print_status(report: dict[str, Any]) -> None:
    console = Console()
    state = "on" if report["enabled"] else "off"
    console.print(f"[bold]{report['workflow']}[/bold] ({state}; {report['trigger']}): {report['entered']:,} entered, "
                  f"{report['in_holdout']:,} in the holdout; "
                  + ", ".join(f"{k} {v:,}" for k, v in report["runs"].items() if v))
    table = Table("step", "what", "done/sent", "deferred", "skipped", "failed")
    for step in report["steps"]:
        table.add_row(str(step["step"]), step["label"], f"{step.get('sent', step.get('done', 0)):,}",
                      f"{step['deferred']:,}", f"{step['skipped']:,}", f"{step['failed']:,}")
    console.print(table)
    codes = report["promo_codes"]
    if codes["issued"]:
        console.print(f"  promo codes: {codes['issued']:,} issued, {codes['redeemed']:,} redeemed, "
                      f"{codes['expired']:,} expired")
    if report.get("goal"):
        t, h = report["conversion"]["treated"], report["conversion"]["holdout"]
        points = report["uplift"]["rate_points"]
        goal = report["goal"]
        console.print(f"  goal {goal['event']} within {goal['within']}: {report['converted']:,} converted, "
                      f"revenue {report['revenue']}")
        console.print(f"  treated {t['converted']:,}/{t['runs']:,} ({_pct(t['rate'])}), "
                      f"holdout {h['converted']:,}/{h['runs']:,} ({_pct(h['rate'])}); "
                      f"uplift {points if points is not None else '-'} points")
    if report.get("nps"):
        console.print(f"  NPS {report['nps']['nps']} from {report['nps']['answers']:,} answers")


def _pct(rate: float | None) -> str:
    return f"{rate * 100:.1f}%" if rate is not None else "-"


@workflows_group.command("tick")
@click.option("--json", "as_json", is_flag=True, help="Print what the tick did as JSON.")
@pass_app
@user_errors
def tick_cmd(app: App, as_json: bool) -> None:
    """One scheduler tick now: start what triggers call for, then run (or enqueue) what is due."""
    engine = app.ready_engine()
    lock = schedule.lock_for(engine, app.settings, config.load(app.settings).lease * 5)
    if not lock.acquire():
        message = f"another scheduler is ticking ({lock.held_by() or 'unknown'}); nothing done"
        if as_json:
            emit_json({"ticked": False, "reason": message})
        else:
            click.echo(message)
        return
    try:
        with progress_bar(enabled=not as_json) as bar:
            task = bar.add_task("Advancing runs", total=None)
            report = ticks.tick(engine, app.settings, keepalive=lock.renew,
                                progress=lambda n: bar.advance(task, n))
    finally:
        lock.release()
    data = {"ticked": True, **report.as_dict()}
    if as_json:
        emit_json(data)
        return
    started = ", ".join(f"{k}: {v['started']} started" for k, v in report.started.items()) or "no workflow is on"
    click.echo(f"Tick: {started}; {report.redeemed} promo codes redeemed; "
               + (f"{report.enqueued} runs enqueued in {report.jobs} jobs" if app.settings.redis_url else
                  f"{report.advanced.get('steps', 0)} steps done, {report.advanced.get('messages', 0)} messages, "
                  f"{report.outbox.get('sent', 0)} sent")
               + f" ({report.seconds:.1f} s).")
    for name, error in report.errors.items():
        stderr.print(f"[red]{name}: {error}[/red]")


@workflows_group.command("parked")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_app
@user_errors
def parked_cmd(app: App, name: str | None, as_json: bool) -> None:
    """Runs that failed for good, with the reason; `hub workflows retry` puts them back."""
    with app.ready_engine().connect() as conn:
        rows = runner.parked(conn, name, limit=None)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("No parked runs.")
    for r in rows:
        click.echo(f"run {r['id']} ({r['workflow']}, contact #{r['contact_id']}, step {r['step']}): {r['error']}")


@workflows_group.command("retry")
@click.argument("run_ids", type=int, nargs=-1)
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
            ids += [r["id"] for r in runner.parked(conn, all_of, limit=None)]
    if not ids:
        raise click.UsageError("give run ids or --all NAME")
    n = runner.retry(engine, ids, skip=skip)
    click.echo(f"{n} of {len(ids)} runs put back to work{' past the step they stopped at' if skip else ''}."
               + ("" if n == len(ids) else " (The others are not parked.)"))


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
    found = promo.redeem(app.ready_engine(), code, by="cli", force=force)
    if as_json:
        emit_json(found)
        return
    click.echo(f"Promo code {found['code']} redeemed (contact #{found['contact_id']}, {found['discount']:g}%).")


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
        raise promo.PromoError(f"no promo code {code.strip()!r}")
    found = promo.describe(row)
    if as_json:
        emit_json(found)
        return
    click.echo(f"{found['code']}: {found['status']}, {found['discount']:g}% for contact #{found['contact_id']}, "
               f"valid until {found['expires_at'][:10]}"
               + (f", redeemed {found['redeemed_at'][:10]} by {found['redeemed_by']}" if found["redeemed_at"] else ""))
