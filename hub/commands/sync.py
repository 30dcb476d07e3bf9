"""`hub sync SOURCE`, and the `hub connect` and `hub sandbox` groups a CRM plugin adds its subcommands to."""

from __future__ import annotations

from typing import Any

import click

from hub import sync
from hub.cli import App, emit_json, pass_app, progress_bar


def crm_groups() -> list[click.Group]:
    """`hub connect` and `hub sandbox`, new for each command line: what a plugin adds to them stays in that one."""
    return [click.Group("connect", help="Connect a CRM (each CRM plugin adds its own subcommand)."),
            click.Group("sandbox", help="Run a local emulator of a CRM, for trying Hub without a real account.")]


@click.command("sync")
@click.argument("source")
@click.option("--full", is_flag=True, help="Read everything, not only what changed since the last run.")
@click.option("--reconcile", is_flag=True,
              help="Afterwards, list every id the source holds and mark what it no longer has as deleted.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def sync_cmd(app: App, source: str, full: bool, reconcile: bool, as_json: bool) -> None:
    """Sync contacts and orders from a source plugin (e.g. bitrix24, amocrm)."""
    engine = app.ready_engine()
    with progress_bar(enabled=not as_json) as bar:
        tasks: dict[str, Any] = {}

        def advance(entity: str, n: int) -> None:
            if entity not in tasks:
                tasks[entity] = bar.add_task(f"{source}: {entity}", total=None)
            bar.advance(tasks[entity], n)

        report = sync.run(engine, app.settings, source, full=full, progress=advance)
    data = report.as_dict()
    if reconcile:
        swept = sync.reconcile(engine, app.settings, source).as_dict()
        data["contacts"]["deleted"] += swept["contacts"]["deleted"]
        data["orders"]["deleted"] += swept["orders"]["deleted"]
        for key in ("requests", "rate_limited"):
            if key in swept:
                data[key] = swept[key]
        data["duration_s"] = round(data["duration_s"] + swept["duration_s"], 3)
    if as_json:
        emit_json(data)
        return
    c, o = data["contacts"], data["orders"]
    requests = (f"; {data['requests']} requests ({data.get('rate_limited', 0)} rate-limited)"
                if "requests" in data else "")
    refused = c.get("refused", 0) + o.get("refused", 0)
    kept_out = f"; {refused} records of people erased on request kept out" if refused else ""
    click.echo(f"{source} ({data['kind']}): contacts {c['created']} new, {c['updated']} updated, "
               f"{c['deleted']} deleted, {c['merged']} merged; orders {o['created']} new, {o['updated']} updated, "
               f"{o['deleted']} deleted; {data['errors']} errors{requests}{kept_out}; {data['duration_s']} s.")
    if data.get("interrupted"):
        runs = ", ".join(f"#{run_id}" for run_id in data["interrupted"])
        click.echo(f"Earlier run {runs} of {source} never finished (its process stopped or fell silent) "
                   "and is now marked interrupted; what it saved was kept.")
