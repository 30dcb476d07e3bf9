"""`hub segments`: add, list, show, fields, count, members, refresh, explain, remove.

Every command that reports takes --json and then prints one JSON document and
nothing else; refresh shows its progress on stderr. Mistakes in a rule end in
one "Error: ..." line naming the file, the path inside it and the problem.

`list` shows recorded members, and a list read right after a sync or an
import would show the members of before it (or none at all): so it first
refreshes the segments whose recorded members are stale (membership.stale),
with progress on stderr, unless told --no-refresh, and then marks them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, Task, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from sqlalchemy import func, select

from hub import formats, i18n
from hub.cli import App, emit_json, stderr
from hub.i18n import gettext as _
from hub.i18n import ngettext
from hub.models import Segment, SegmentMember
from hub.segments import explain, fields, membership, rules, store
from hub.segments.evaluate import Segments


def _app() -> App:
    """The command line's App (settings and engine, made on first use), as `pass_app` gives it."""
    return click.get_current_context().ensure_object(App)


@click.group("segments")
def segments_group() -> None:
    """Split the base into segments by rules, keep them current, say why someone is in.

    Rules are YAML or JSON files; see docs/segments.md for the language.
    """


@segments_group.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def add_cmd(file: Path, as_json: bool) -> None:
    """Save the segment FILE defines (YAML or JSON), replacing one of the same name."""
    app = _app()
    engine = app.ready_engine()
    document = rules.read_document(file)
    with engine.begin() as conn:
        definition, created = store.add(conn, fields.build(app.settings), document, origin=file.name)
    with engine.connect() as conn:
        count = Segments(conn, app.settings).count(definition.name)
    if as_json:
        emit_json({"segment": definition.name, "created": created, "count": count})
        return
    done = (_("Added segment %(name)s: %(contacts)s match it now.", name=definition.name,
              contacts=formats.contacts(count)) if created else
            _("Updated segment %(name)s: %(contacts)s match it now.", name=definition.name,
              contacts=formats.contacts(count)))
    click.echo(done + " " + _("`%(command)s` records them as members.",
                              command=f"hub segments refresh {definition.name}"))


# Why a segment is stale, for the list (membership.stale's reasons).
STALE = {membership.NEVER_REFRESHED: i18n.N_("never refreshed"),
         membership.DATA_CHANGED: i18n.N_("data changed since"),
         membership.TIME_PASSED: i18n.N_("a day has passed")}


@segments_group.command("list")
@click.option("--no-refresh", is_flag=True,
              help="Do not refresh stale segments first; mark them instead.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_cmd(no_refresh: bool, as_json: bool) -> None:
    """Every segment: built-in and saved, with its members (stale ones are refreshed first)."""
    app = _app()
    engine = app.ready_engine()
    with engine.connect() as conn:
        stale = membership.stale(conn, Segments(conn, app.settings))
    if stale and not no_refresh:
        if not as_json:
            stderr.print(ngettext("Refreshing %(num)s segment whose members are out of date…",
                                  "Refreshing %(num)s segments whose members are out of date…", len(stale),
                                  num=formats.number(len(stale))))
        _refresh_with_progress(engine, app, sorted(stale), full=False, quiet=as_json)
        with engine.connect() as conn:
            stale = membership.stale(conn, Segments(conn, app.settings))
    with engine.connect() as conn:
        segments = Segments(conn, app.settings)
        recorded = dict(conn.execute(
            select(Segment.name, func.count()).join(SegmentMember, SegmentMember.segment_id == Segment.id)
            .group_by(Segment.name)).all())
    catalog = segments.catalog
    rows: list[dict[str, Any]] = []
    for name in sorted(set(catalog.definitions) | set(catalog.broken)):
        definition = catalog.definitions.get(name)
        row = catalog.rows.get(name)
        rows.append({
            "name": name,
            "title": definition.title if definition else (row.title if row else None),
            "builtin": bool(definition and definition.builtin),
            "members": recorded.get(name, 0),
            "refreshed_at": row.refreshed_at.isoformat() if row is not None and row.refreshed_at else None,
            "stale": name in stale,
            "error": catalog.broken.get(name),
        })
    if as_json:
        emit_json(rows)
        return
    tz = app.settings.tz
    table = Table(_("Segment"), _("Technical name"), _("Kind"), _("Members"), _("Refreshed"))
    for r in rows:
        kind = _("built-in") if r["builtin"] else (_("BROKEN") if r["error"] else _("saved"))
        refreshed = formats.moment(r["refreshed_at"], tz, zone=True) if r["refreshed_at"] else _("never")
        members = formats.number(r["members"])
        if r["stale"]:
            members = _("%(members)s (stale)", members=members)
            if r["refreshed_at"]:
                refreshed = f"{refreshed} ({_(STALE[stale[r['name']]])})"
        table.add_row(i18n.title(r["title"]) or r["name"], r["name"], kind, members, refreshed)
    Console().print(table)
    for r in rows:
        if r["error"]:
            click.echo(f"  {r['name']}: {r['error']}")
    if stale:
        click.echo(ngettext("%(num)s segment is stale: its recorded members are not what its rule says now. "
                            "`hub segments refresh` (or `hub segments list` without --no-refresh) records them.",
                            "%(num)s segments are stale: their recorded members are not what their rules say now. "
                            "`hub segments refresh` (or `hub segments list` without --no-refresh) records them.",
                            len(stale), num=formats.number(len(stale))))


class SegmentsColumn(ProgressColumn):
    """"3 сегмента": the segments refreshed so far, with the plural and digit grouping of the reader's language.

    Rich redraws from a thread of its own, where the command's language is not
    set, so the language is taken when the column is made (as hub.cli.RowsColumn does).
    """

    def __init__(self) -> None:
        super().__init__()
        self.language = i18n.current_language()

    def render(self, task: Task) -> Text:
        count = int(task.completed)
        with i18n.use_language(self.language):
            return Text(ngettext("%(num)s segment", "%(num)s segments", count, num=formats.number(count)))


def _refresh_with_progress(engine: Any, app: App, names: list[str] | None, *, full: bool,
                           quiet: bool) -> membership.RefreshReport:
    """membership.refresh with a progress bar on stderr (none for --json or when stderr is not a terminal)."""
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), SegmentsColumn(),
               TimeElapsedColumn()]
    with Progress(*columns, console=stderr, disable=quiet or not stderr.is_terminal) as bar:
        task = bar.add_task(_("Refreshing segments"), total=len(names) if names else None)

        def advance(result: membership.SegmentRefresh) -> None:
            bar.update(task, advance=1, description=_("Refreshed %(segment)s", segment=result.segment))

        return membership.refresh(engine, app.settings, names, full=full, progress=advance)


@segments_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the definition as JSON.")
def show_cmd(name: str, as_json: bool) -> None:
    """Print a segment's definition (as YAML, ready to copy into a file of your own)."""
    app = _app()
    with app.ready_engine().connect() as conn:
        definition = Segments(conn, app.settings).get(name)
    if as_json:
        emit_json(definition.document)
        return
    click.echo(store.shown_yaml(definition), nl=False)


@segments_group.command("fields")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def fields_cmd(as_json: bool) -> None:
    """The fields rules can use (with plugins' fields), their types and operators."""
    app = _app()
    described = fields.build(app.settings).describe()
    if as_json:
        emit_json(described)
        return
    table = Table(_("Field"), _("Type"), _("Operators"), _("About"))
    for f in described:
        about = i18n.title(f["description"]) + (f" ({', '.join(f['choices'])})" if f.get("choices") else "")
        table.add_row(f["field"], fields.type_title(f["type"]), ", ".join(f["operators"]), about)
    Console().print(table)


@segments_group.command("count")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help='Print {"segment": NAME, "count": N}.')
def count_cmd(name: str, as_json: bool) -> None:
    """How many contacts are in segment NAME right now (the rule evaluated on the current data)."""
    app = _app()
    with app.ready_engine().connect() as conn:
        count = Segments(conn, app.settings).count(name)
    if as_json:
        emit_json({"segment": name, "count": count})
        return
    click.echo(f"{name}: {formats.contacts(count)}")


@segments_group.command("members")
@click.argument("name")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="At most this many contacts.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def members_cmd(name: str, limit: int | None, as_json: bool) -> None:
    """Who is in segment NAME right now, with when the last refresh recorded them entering."""
    app = _app()
    with app.ready_engine().connect() as conn:
        rows = Segments(conn, app.settings).members(name, limit)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo(_("Nobody is in %(segment)s right now.", segment=name))
        return
    tz = app.settings.tz
    table = Table(_("ID"), _("Name"), _("Entered on"))
    for r in rows:
        full_name = " ".join(p for p in (r["last_name"], r["first_name"]) if p)
        entered = formats.moment(r["entered_at"], tz, zone=True) if r["entered_at"] else _("not recorded yet")
        table.add_row(str(r["id"]), full_name, entered)
    Console().print(table)


@segments_group.command("refresh")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--full", is_flag=True, help="Re-evaluate every contact, even where an incremental refresh would do.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def refresh_cmd(names: tuple[str, ...], full: bool, as_json: bool) -> None:
    """Record who is in each segment now (all of them, or those named) and tell plugins who entered and left.

    Lead scores are recomputed first. Run it on a schedule: segments that
    depend on time (dormant_90d, birthdays, lifecycle) change without any new data.
    """
    app = _app()
    report = _refresh_with_progress(app.ready_engine(), app, list(names) or None, full=full, quiet=as_json)
    if as_json:
        emit_json(report.as_dict())
        return
    modes = {"full": _("full"), "incremental": _("incremental")}
    table = Table(_("Segment"), _("Mode"), _("Members"), _("Entered"), _("Left"), _("Seconds"),
                  title=_("Segments refreshed"))
    for s in report.segments:
        table.add_row(s.segment, modes.get(s.mode, s.mode), formats.number(s.members), formats.number(s.entered),
                      formats.number(s.exited), formats.number(round(s.seconds, 2)))
    Console().print(table)
    if report.lead_score:
        click.echo(_("Lead scores: %(contacts)s, %(changed)s changed.",
                     contacts=formats.contacts(report.lead_score.contacts),
                     changed=formats.number(report.lead_score.changed)))
    for name, error in sorted(report.broken.items()):
        click.echo(_("Skipped %(segment)s: %(error)s", segment=name, error=error))
    click.echo(_("Done in %(seconds)s s.", seconds=formats.number(round(report.seconds, 1))))


@segments_group.command("explain")
@click.argument("name")
@click.argument("contact_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON.")
def explain_cmd(name: str, contact_id: int, as_json: bool) -> None:
    """Why contact CONTACT_ID is in segment NAME or not: each clause, the value seen, passed or failed.

    Also shows the points each line of the lead-score model gives the contact.
    """
    app = _app()
    with app.ready_engine().connect() as conn:
        data = explain.explain(Segments(conn, app.settings), name, contact_id)
    if as_json:
        emit_json(data)
        return
    tz = app.settings.tz
    click.echo(f"{i18n.title(data['title'])} ({name})" if data["title"] else name)
    verdict = _("is in the segment") if data["member"] else _("is not in the segment")
    if data["deleted"]:
        verdict += " " + _("(the contact is deleted)")
    recorded = data["recorded"]
    since = (_("recorded since %(at)s", at=formats.moment(recorded["entered_at"], tz, zone=True))
             if recorded["member"] and recorded["entered_at"] else
             _("recorded as a member") if recorded["member"] else _("not recorded as a member"))
    click.echo(_("Contact #%(id)s %(verdict)s at %(at)s (%(since)s).", id=contact_id, verdict=verdict,
                 at=formats.moment(data["now"], tz, zone=True), since=since))
    _print_node(explain.readable(data, tz)["rule"], 0)
    score = data["lead_score"]
    stored = (", " + _("stored at the last refresh: %(score)s", score=score["stored"])
              if score["stored"] is not None else "")
    click.echo(_("Lead score %(score)s%(stored)s (%(model)s):", score=score["score"], stored=stored,
                 model=score["model"]))
    for line in score["lines"]:
        title = i18n.title(line["title"])
        click.echo(f"  {line['points']:+4d}  {title}" if line["points"] else f"     0  {title}")


def _print_node(node: dict[str, Any], depth: int) -> None:
    mark = "✓" if node["passed"] else "✗"
    pad = "  " * depth
    if node["kind"] == "condition":
        # the field keeps its rule name; the operator and the values are worded as the admin words them
        field = f"{node['field']} «{node['label']}»" if node.get("label") else node["field"]
        click.echo(f"{pad}{mark} {field} {node['op_title']} {node['value_text']}".rstrip()
                   + " — " + _("seen: %(value)s", value=node["seen_text"]))
        return
    labels = {"all": _("all of"), "any": _("any of"), "not": _("not")}
    label = (_("segment %(name)s", name=node.get("segment")) if node["kind"] == "segment"
             else labels[node["kind"]])
    click.echo(f"{pad}{mark} {label}")
    for item in node.get("items", []):
        _print_node(item, depth + 1)


@segments_group.command("remove")
@click.argument("name")
def remove_cmd(name: str) -> None:
    """Delete saved segment NAME and its recorded members."""
    app = _app()
    with app.ready_engine().begin() as conn:
        store.remove(conn, fields.build(app.settings), name)
    click.echo(_("Removed segment %(segment)s.", segment=name))
