"""`hub sync SOURCE`, and the `hub connect` and `hub sandbox` groups a CRM plugin adds its subcommands to."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy import Engine

from hub import formats, sync
from hub.cli import App, emit_json, pass_app, progress_bar
from hub.i18n import gettext as _
from hub.i18n import N_, ngettext


def crm_groups() -> list[click.Group]:
    """`hub connect` and `hub sandbox`, new for each command line: what a plugin adds to them stays in that one."""
    return [click.Group("connect", help="Connect a CRM (each CRM plugin adds its own subcommand)."),
            click.Group("sandbox", help="Run a local emulator of a CRM, for trying Hub without a real account.")]


@click.command("sync")
@click.argument("source")
@click.option("--full", is_flag=True, help="Read everything, not only what changed since the last run.")
@click.option("--reconcile", is_flag=True,
              help="Afterwards, list every id the source holds and mark what it no longer has as deleted.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_app
def sync_cmd(app: App, source: str, full: bool, reconcile: bool, as_json: bool) -> None:
    """Sync contacts and orders from a source plugin (e.g. bitrix24, amocrm)."""
    engine = app.ready_engine()
    try:
        data = _run(app, engine, source, full, reconcile, as_json)
    except sync.SyncBusy as busy:  # another run of this source is live: refused before reading anything
        if not as_json:
            raise  # one line in the reader's language (hub.cli turns a SyncError into it)
        emit_json({**busy.as_dict(), "message": str(busy)})
        raise SystemExit(1) from None
    if as_json:
        emit_json(data)
        return
    click.echo(summary(source, data))
    if data.get("interrupted"):
        runs = ", ".join(f"#{run_id}" for run_id in data["interrupted"])
        click.echo(ngettext("Earlier run %(runs)s of %(source)s never finished (its process stopped or fell silent) "
                            "and is now marked interrupted; what it saved was kept.",
                            "Earlier runs %(runs)s of %(source)s never finished (their process stopped or fell "
                            "silent) and are now marked interrupted; what they saved was kept.",
                            len(data["interrupted"]), runs=runs, source=source))


def _run(app: App, engine: Engine, source: str, full: bool, reconcile: bool, as_json: bool) -> dict[str, Any]:
    """The sync (and the reconcile pass if asked) with a progress bar; the summary --json prints."""
    with progress_bar(enabled=not as_json) as bar:
        tasks: dict[str, Any] = {}

        def advance(entity: str, n: int) -> None:
            if entity not in tasks:
                tasks[entity] = bar.add_task(progress_label(source, entity), total=None)
            bar.advance(tasks[entity], n)

        report = sync.run(engine, app.settings, source, full=full, progress=advance)
    data = report.as_dict()
    if reconcile:
        swept = sync.reconcile(engine, app.settings, source).as_dict()
        data["contacts"]["deleted"] += swept["contacts"]["deleted"]
        data["orders"]["deleted"] += swept["orders"]["deleted"]
        for entity in ("companies", "activities"):
            data[entity]["deleted"] += swept[entity]["deleted"]
        for key in ("requests", "rate_limited"):
            if key in swept:
                data[key] = swept[key]
        data["duration_s"] = round(data["duration_s"] + swept["duration_s"], 3)
    return data


LABELS = {"contacts": N_("%(source)s: contacts"), "orders": N_("%(source)s: orders"),
          "companies": N_("%(source)s: companies"), "activities": N_("%(source)s: calls and meetings"),
          "fields": N_("%(source)s: custom fields")}
HEADERS = {
    "full": N_("%(source)s (full): contacts %(created)s new, %(updated)s updated, %(deleted)s deleted, "
               "%(merged)s merged"),
    "incremental": N_("%(source)s (incremental): contacts %(created)s new, %(updated)s updated, "
                      "%(deleted)s deleted, %(merged)s merged"),
}


def progress_label(source: str, entity: str) -> str:
    """What a progress line says; a source's own entities show as it names them."""
    return _(LABELS.get(entity, "%(source)s: %(entity)s"), source=source, entity=entity)


def summary(source: str, data: dict[str, Any]) -> str:
    """One line on what a sync did, from its JSON summary (whose keys stay as they are)."""
    c, o = data["contacts"], data["orders"]
    n = formats.number
    parts = [
        _(HEADERS.get(data["kind"], HEADERS["incremental"]), source=source, created=n(c["created"]),
          updated=n(c["updated"]), deleted=n(c["deleted"]), merged=n(c["merged"])),
        _("orders %(created)s new, %(updated)s updated, %(deleted)s deleted", created=n(o["created"]),
          updated=n(o["updated"]), deleted=n(o["deleted"])),
    ]
    firms, logged = data.get("companies") or {}, data.get("activities") or {}
    if any(firms.values()):
        parts.append(_("companies %(created)s new, %(updated)s updated, %(deleted)s deleted",
                       created=n(firms["created"]), updated=n(firms["updated"]), deleted=n(firms["deleted"])))
    if any(logged.values()):
        parts.append(_("calls, meetings and notes %(created)s new, %(updated)s updated, %(deleted)s deleted",
                       created=n(logged["created"]), updated=n(logged["updated"]), deleted=n(logged["deleted"])))
    parts.append(ngettext("%(num)s error", "%(num)s errors", data["errors"], num=n(data["errors"])))
    if "requests" in data:
        parts.append(ngettext("%(num)s request (%(limited)s rate-limited)",
                              "%(num)s requests (%(limited)s rate-limited)", data["requests"],
                              num=n(data["requests"]), limited=n(data.get("rate_limited", 0))))
    refused = c.get("refused", 0) + o.get("refused", 0)
    if refused:
        parts.append(ngettext("%(num)s record of a person erased on request kept out",
                              "%(num)s records of people erased on request kept out", refused, num=n(refused)))
    shared = data.get("shared_values", 0)
    if shared:
        parts.append(ngettext("%(num)s phone or email found to be several people's (it joins people only when "
                              "names agree)",
                              "%(num)s phones and emails found to be several people's (they join people only when "
                              "names agree)", shared, num=n(shared)))
    parts.append(_("%(seconds)s s.", seconds=n(data["duration_s"])))
    return "; ".join(parts)
