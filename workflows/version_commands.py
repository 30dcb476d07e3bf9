"""`hub workflows versions|diff|restore|move-runs`: a workflow's saved versions from the command line.

What the admin's versions pages do (workflows.versions_admin), for people
who keep workflows in files: the list with who saved each version and the
runs on it, two versions compared, an old version saved again as a new one,
and runs in progress moved onto the newest version.
"""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from hub.api import whole_number
from hub.api import App, emit_json, format_moment, format_number, gettext, ngettext, pass_app
from workflows import store, versions
from workflows.commands import switch_on_again, user_errors, workflows_group
from workflows.definition import WorkflowError


@workflows_group.command("versions")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_app
@user_errors
def versions_cmd(app: App, name: str, as_json: bool) -> None:
    """Every saved version of workflow NAME, newest first: when, who, and the runs that follow it."""
    engine = app.ready_engine()
    with engine.begin() as conn:
        store.install_library(conn)  # the shipped workflows have versions too, from the first look
    with engine.connect() as conn:
        found = versions.history(conn, name)
    if as_json:
        emit_json([{"version": v["version"], "created_at": v["created_at"].isoformat(), "created_by": v["created_by"],
                    "runs_in_progress": v["runs_in_progress"], "runs": v["runs"], "current": v["current"]}
                   for v in found])
        return
    table = Table(gettext("version"), gettext("saved at"), gettext("by"), gettext("runs in progress"),
                  gettext("runs in all"), "")
    for v in found:
        table.add_row(str(v["version"]), format_moment(v["created_at"], app.settings.tz, zone=True), Text(v["who"]),
                      format_number(v["runs_in_progress"]), format_number(v["runs"]),
                      gettext("current") if v["current"] else "")
    Console().print(table)


def _version(raw: str, what: str) -> int:
    number = whole_number(raw, most=2 ** 31 - 1)
    if number is None:
        raise WorkflowError([gettext("%(what)s: %(value)s is not a version number", what=what,
                                     value=repr(raw[:40]))])
    return number


@workflows_group.command("diff")
@click.argument("name")
@click.argument("old", required=False)
@click.argument("new", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@pass_app
@user_errors
def diff_cmd(app: App, name: str, old: str | None, new: str | None, as_json: bool) -> None:
    """Compare versions OLD and NEW of workflow NAME (by default: the one before the current, and the current)."""
    engine = app.ready_engine()
    with engine.begin() as conn:
        store.install_library(conn)
    with engine.connect() as conn:
        found = versions.history(conn, name)
        current = found[0]["version"]
        new_version = _version(new, "NEW") if new is not None else current
        old_version = _version(old, "OLD") if old is not None else current - 1
        if old_version < 1:
            raise WorkflowError([gettext("%(name)s has only one version: nothing to compare", name=repr(name))])
        report = versions.diff(conn, name, old_version, new_version, settings=app.settings)
    if as_json:
        emit_json({k: report[k] for k in ("workflow", "old", "new", "changes", "lines", "problems")})
        return
    console = Console(highlight=False)
    console.print(gettext("Version %(old)s → version %(new)s of %(name)s", old=old_version, new=new_version,
                          name=name), markup=False)
    for version, problems in sorted(report["problems"].items()):
        console.print(gettext("Version %(num)s no longer checks against this Hub:", num=version) + " " +
                      "; ".join(problems), markup=False)
    for change in report["changes"]:
        console.print(Text(("+ " if change["kind"] == "added" else "- " if change["kind"] == "removed" else "* ")
                           + change["text"]))
    if not report["lines"]:
        console.print(gettext("The two versions are the same."), markup=False)
        return
    console.print()
    for line in report["lines"]:
        sign = {"added": "+", "removed": "-", "same": " "}.get(line["kind"])
        style = {"added": "green", "removed": "red"}.get(line["kind"], "")
        console.print(Text(line["text"] if sign is None else f"{sign} {line['text']}", style=style))


@workflows_group.command("restore")
@click.argument("name")
@click.argument("version", type=click.IntRange(1, 2 ** 31 - 1))
@click.option("--yes", is_flag=True, help="Keep it on even when the restored version lets other people in and its "
                                          "first look would message more people than [workflows] confirm_admin_over.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
@user_errors
def restore_cmd(app: App, name: str, version: int, yes: bool, as_json: bool) -> None:
    """Save VERSION of workflow NAME again as its newest version; history is kept, runs stay where they are.

    When the workflow is on and the restored version changes who enters it,
    it is switched off and switched on again only after the forecast, as by
    hub workflows enable.
    """
    with app.ready_engine().begin() as conn:
        store.install_library(conn)
        before = store.row(conn, name)
        new = versions.restore(conn, app.settings, name, version, "cli")
        after = store.row(conn, name)
    entry = store.entry_changed(before.definition, after.definition)
    switched_off = bool(before.enabled and not after.enabled)
    if switched_off:
        after = switch_on_again(app, name, entry, yes, quiet=as_json) or after
    if as_json:
        emit_json({"workflow": name, "restored": version, "version": new, "changed": new != before.version,
                   "entry_changed": entry if new != before.version else [], "enabled": bool(after.enabled),
                   "switched_off": switched_off and not after.enabled})
        return
    if new == before.version:
        click.echo(gettext("Version %(num)s is what the workflow already is; nothing to restore.", num=version))
    else:
        click.echo(gettext("Version %(old)s is restored as version %(new)s. Runs in progress stay on their "
                           "versions until you move them.", old=version, new=new))


@workflows_group.command("move-runs")
@click.argument("name")
@click.option("--to", "to_version", type=click.IntRange(1, 2 ** 31 - 1),
              help="The version to move runs to (by default the newest).")
@click.option("--json", "as_json", is_flag=True, help="Print what moved and what stayed as JSON.")
@pass_app
@user_errors
def move_runs_cmd(app: App, name: str, to_version: int | None, as_json: bool) -> None:
    """Move runs in progress of workflow NAME from older versions to the newest, where their place exists."""
    with app.ready_engine().begin() as conn:
        store.install_library(conn)
        report = versions.move_runs(conn, app.settings, name, to_version=to_version, by="cli")
    if as_json:
        emit_json(report.as_dict())
        return
    click.echo(ngettext("%(num)s run moved to version %(version)s.", "%(num)s runs moved to version %(version)s.",
                        report.moved_total, version=report.to_version))
    for kept in report.kept:
        click.echo(ngettext("%(num)s run stays on version %(version)s: %(reason)s",
                            "%(num)s runs stay on version %(version)s: %(reason)s", kept["count"],
                            version=kept["version"], reason=kept["reason"]))
