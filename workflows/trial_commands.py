"""`hub workflows try NAME --contact ID` and `hub workflows enable NAME` (asks first, with the forecast's numbers).

A trace writes nothing, so anyone may run one. Switching on prints what the
forecast says the workflow would do in its first 14 days; when its first
look would message more people than `[workflows] confirm_admin_over`, it
needs `--yes`, so a script cannot message a whole base by a slip.
"""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.text import Text

from hub.api import App, emit_json, format_number, gettext, pass_app
from workflows import campaigns, config, forecast, store, trial, triggers
from workflows.commands import user_errors, workflows_group
from workflows.definition import WorkflowError



@workflows_group.command("try")
@click.argument("name")
@click.option("--contact", "contact", required=True, metavar="ID", help="The contact to try it on (its number).")
@click.option("--days", type=click.IntRange(1, trial.MAX_DAYS), default=trial.DEFAULT_DAYS, show_default=True,
              help="How far ahead the trace looks.")
@click.option("--json", "as_json", is_flag=True, help="Print the trace as JSON.")
@pass_app
@user_errors
def try_cmd(app: App, name: str, contact: str, days: int, as_json: bool) -> None:
    """What the workflow would do to one contact, step by step, and why; nothing is sent or written."""
    try:
        report = trial.trial(app.ready_engine(), app.settings, name, contact, days=days)
    except trial.TrialError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        emit_json(report)
        return
    print_trace(report)


def print_trace(report: dict[str, Any]) -> None:
    console = Console()
    title = report.get("title") or report["workflow"]
    console.print(Text.assemble((title, "bold"), f" ({report['workflow']}) — ",
                                (report.get("name") or f"#{report['contact_id']}", "bold"),
                                f" #{report['contact_id']}, {report['zone']}"))
    if report.get("merged"):
        console.print(Text(report["merged"]))
    console.print(Text(gettext("Entering: %(text)s", text=report["entry"]["text"])))
    if report["entry"].get("holdout"):
        console.print(Text(gettext("In the holdout: gets nothing.")))
    for step in report["steps"]:
        head = f"{trial.ICONS.get(step['outcome'], '·')} {step['when']}"
        if step.get("step"):
            head += f" — {step['step']}. {step['phrase']}"
        console.print(Text(head, style="bold"))
        console.print(Text("    " + step["text"]))
        if step.get("quote"):
            console.print(Text("    «" + step["quote"] + "»"))
        if step.get("subject"):
            console.print(Text("    " + gettext("Subject: %(subject)s", subject=step["subject"])))
        if step.get("body"):
            for line in step["body"].strip().splitlines():
                console.print(Text("    | " + line))


def confirm_switch_on(app: App, name: str, yes: bool) -> None:
    """Print what switching on would bring in 14 days; refuse past confirm_admin_over unless `yes`."""
    report = forecast.forecast(app.ready_engine(), app.settings, name, days=forecast.SWITCH_ON_DAYS, overlap=True)
    numbers = forecast.switch_on_numbers(report)
    click.echo(forecast.switch_on_text(numbers))
    if numbers.get("note"):
        click.echo(numbers["note"])
    warning = forecast.overlap_text(numbers)
    if warning:
        click.secho(warning, fg="yellow", bold=True)
        for line in forecast.overlap_lines(numbers):
            click.echo("  - " + line)
    limit = config.load(app.settings).confirm_admin_over
    if numbers["first_tick"] > limit and not yes:
        raise click.ClickException(gettext(
            "its first look would message %(num)s people, more than [workflows] confirm_admin_over (%(limit)s); "
            "to switch it on anyway, run it again with --yes", num=format_number(numbers["first_tick"]),
            limit=format_number(limit)))


@workflows_group.command("enable")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Switch it on even when its first look would message more people than "
                                          "[workflows] confirm_admin_over.")
@pass_app
@user_errors
def enable_cmd(app: App, name: str, yes: bool) -> None:
    """Switch a workflow on, after showing what the next 14 days would bring; the scheduler starts its runs."""
    engine = app.ready_engine()
    with engine.begin() as conn:
        store.install_library(conn)
        row, _ = store.current(conn, app.settings, name)  # an unknown name ends here, with a suggestion
    if row.origin == store.CAMPAIGN_ORIGIN:  # its members entered once, when it started
        raise WorkflowError([gettext("%(name)s carries a campaign; start, pause and resume it with hub campaigns",
                                     name=repr(name))])
    confirm_switch_on(app, name, yes)
    with engine.begin() as conn:
        _, workflow = store.current(conn, app.settings, name)
        store.set_enabled(conn, name, True)
        trigger = triggers.trigger_text(conn, app.settings, workflow)
    click.echo(gettext("Workflow %(name)s is on: the scheduler starts runs by its trigger (%(trigger)s).",
                       name=name, trigger=trigger))
    if not campaigns.scheduler_health(engine, app.settings)["running"]:
        click.secho(gettext("The scheduler is not running: no runs start until hub scheduler is started."),
                    fg="yellow", bold=True)

