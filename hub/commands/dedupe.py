"""`hub dedupe`: merge what the identity rules say, list look-alikes and merges to check, merge a pair by hand."""

from __future__ import annotations

import shlex
from typing import Any

import click

from hub import contacts, dedupe, formats
from hub.cli import ROW_ID, App, emit_json, pass_app
from hub.i18n import ngettext
from hub.i18n import gettext as _

PAGE_SIZE = 30  # look-alike groups shown when no --limit is given
JSON_LIMIT = 200  # groups --json gives without --limit or --all, as it always has


@click.command("dedupe")
@click.option("--merge", "merge_pair", nargs=2, type=ROW_ID, metavar="SURVIVOR OTHER",
              help="Merge OTHER into SURVIVOR (a look-alike you have checked).")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Show at most this many look-alike groups (30 by default; 200 with --json).")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many look-alike groups first.")
@click.option("--all", "show_all", is_flag=True, help="Show every look-alike group.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
def dedupe_cmd(app: App, merge_pair: tuple[int, int] | None, limit: int | None, offset: int, show_all: bool,
               as_json: bool) -> None:
    """Merge what the identity rules say; list same-name look-alikes and merges to check, the likeliest first."""
    engine = app.ready_engine()
    if merge_pair:
        try:
            result = dedupe.merge_by_hand(engine, *merge_pair, actor="cli", settings=app.settings)
        except ValueError as exc:  # a refused merge (dedupe.MergeRefused) or a wrong id: one line
            raise click.ClickException(str(exc)) from None
        if as_json:
            emit_json(result)
        else:
            click.echo(_("Merged #%(merged)s into #%(survivor)s.", merged=result["merged"],
                         survivor=result["survivor"]))
            if result["kept_apart_before"]:
                click.echo(_("These two had been kept apart by an undone merge; your merge now wins."))
        return
    report = dedupe.run(engine, app.settings, suggestion_limit=None, review_limit=None)
    groups = report.suggestions
    total = len(groups)
    if limit is None and not show_all:
        limit = JSON_LIMIT if as_json else PAGE_SIZE
    report.suggestions = groups[offset:None if show_all or limit is None else offset + limit]
    if as_json:
        emit_json(report.as_dict())
        return
    click.echo(_("Re-read %(reparsed)s flagged values; merged %(merged)s by rule.",
                 reparsed=formats.number(report.reparsed), merged=formats.contacts(len(report.merged))))
    if report.marked_shared:
        click.echo(ngettext("Marked %(num)s value shared: a toll-free line, a company mailbox or a fax "
                            "never identifies one person.",
                            "Marked %(num)s values shared: a toll-free line, a company mailbox or a fax "
                            "never identifies one person.",
                            report.marked_shared, num=formats.number(report.marked_shared)))
    _echo_review(report.review)
    if not total:
        click.echo(_("No look-alikes: no two contacts share a full name."))
        return
    click.echo(ngettext("%(num)s group of contacts shares a name only (never merged automatically).",
                        "%(num)s groups of contacts share a name only (never merged automatically).",
                        total, num=formats.number(total)))
    for s in report.suggestions:
        ids = ", ".join(f"#{i}" for i in s["contact_ids"])
        evidence = ", ".join(dedupe.evidence_title(e) for e in s["evidence"])
        click.echo(f"  {s['name']}: {ids} — {evidence}")
    shown = len(report.suggestions)
    if shown and shown < total:
        click.echo(_("Shown groups %(first)s–%(last)s of %(total)s.", first=formats.number(offset + 1),
                     last=formats.number(offset + shown), total=formats.number(total)))
    elif not shown:
        click.echo(_("Nothing from group %(first)s: there are %(total)s.", first=formats.number(offset + 1),
                     total=formats.number(total)))
    if offset + shown < total:
        following = ["hub", "dedupe", "--offset", str(offset + shown)] + ([] if limit == PAGE_SIZE
                                                                          else ["--limit", str(limit)])
        click.echo(_("The rest: %(next)s (next page) or %(all)s (every group).", next=shlex.join(following),
                     all="hub dedupe --all"))
    first = report.suggestions[0]["contact_ids"] if shown else groups[0]["contact_ids"]
    click.echo(_("Check both cards (hub contacts show %(a)s, hub contacts show %(b)s); if they are one person: "
                 "hub dedupe --merge %(a)s %(b)s", a=first[0], b=first[1]))


def _echo_review(items: list[dict[str, Any]]) -> None:
    """Merges a person should check, each with why and the command that undoes it."""
    if not items:
        return
    click.echo(ngettext("%(num)s merge to check (Hub never splits a contact by itself):",
                        "%(num)s merges to check (Hub never splits a contact by itself):",
                        len(items), num=formats.number(len(items))))
    for item in items[:PAGE_SIZE]:
        if item["values"]:
            detail = ", ".join(contacts.key_title(k) for k in item["values"])
        else:
            detail = " / ".join(item["names"])
        click.echo("  " + _("merge №%(id)s: #%(merged)s into #%(survivor)s — %(why)s (%(detail)s); "
                            "to undo: %(command)s", id=item["merge_id"], merged=item["merged"],
                            survivor=item["survivor"], why=dedupe.review_title(item["why"]), detail=detail,
                            command=f"hub contacts unmerge {item['merge_id']}"))
    rest = len(items) - PAGE_SIZE
    if rest > 0:
        click.echo("  " + ngettext("…and %(num)s more merge: %(command)s lists every one.",
                                   "…and %(num)s more merges: %(command)s lists every one.",
                                   rest, num=formats.number(rest), command="hub dedupe --json"))
