"""`hub segments`: add, list, show, fields, count, members, refresh, explain, remove.

Every command that reports takes --json and then prints one JSON document and
nothing else; refresh shows its progress on stderr. Mistakes in a rule end in
one "Error: ..." line naming the file, the path inside it and the problem.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func, select

from hub.cli import App, emit_json, stderr
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
    click.echo(f"{'Added' if created else 'Updated'} segment {definition.name}: {count:,} contacts match it now. "
               f"`hub segments refresh {definition.name}` records them as members.")


@segments_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_cmd(as_json: bool) -> None:
    """Every segment: built-in and saved, with the members recorded by the last refresh."""
    app = _app()
    with app.ready_engine().connect() as conn:
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
            "error": catalog.broken.get(name),
        })
    if as_json:
        emit_json(rows)
        return
    table = Table("name", "title", "kind", "members", "refreshed")
    for r in rows:
        kind = "built-in" if r["builtin"] else ("BROKEN" if r["error"] else "saved")
        table.add_row(r["name"], r["title"] or "", kind, f"{r['members']:,}", (r["refreshed_at"] or "never")[:19])
    Console().print(table)
    for r in rows:
        if r["error"]:
            click.echo(f"  {r['name']}: {r['error']}")


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
    click.echo(yaml.safe_dump(definition.document, allow_unicode=True, sort_keys=False), nl=False)


@segments_group.command("fields")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def fields_cmd(as_json: bool) -> None:
    """The fields rules can use (with plugins' fields), their types and operators."""
    app = _app()
    described = fields.build(app.settings).describe()
    if as_json:
        emit_json(described)
        return
    table = Table("field", "type", "operators", "about")
    for f in described:
        about = f["description"] + (f" ({', '.join(f['choices'])})" if f.get("choices") else "")
        table.add_row(f["field"], f["type"], ", ".join(f["operators"]), about)
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
    click.echo(f"{name}: {count:,}")


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
        click.echo(f"Nobody is in {name} right now.")
        return
    table = Table("id", "name", "entered")
    for r in rows:
        full_name = " ".join(p for p in (r["last_name"], r["first_name"]) if p)
        table.add_row(str(r["id"]), full_name, (r["entered_at"] or "not recorded yet")[:19])
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
    engine = app.ready_engine()
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.completed:,.0f} segments"), TimeElapsedColumn()]
    with Progress(*columns, console=stderr, disable=as_json or not stderr.is_terminal) as bar:
        task = bar.add_task("Refreshing segments", total=len(names) or None)

        def advance(result: membership.SegmentRefresh) -> None:
            bar.update(task, advance=1, description=f"Refreshed {result.segment}")

        report = membership.refresh(engine, app.settings, list(names) or None, full=full, progress=advance)
    if as_json:
        emit_json(report.as_dict())
        return
    table = Table("segment", "mode", "members", "entered", "left", "seconds", title="Segments refreshed")
    for s in report.segments:
        table.add_row(s.segment, s.mode, f"{s.members:,}", f"{s.entered:,}", f"{s.exited:,}", f"{s.seconds:.2f}")
    Console().print(table)
    if report.lead_score:
        click.echo(f"Lead scores: {report.lead_score.contacts:,} contacts, {report.lead_score.changed:,} changed.")
    for name, error in sorted(report.broken.items()):
        click.echo(f"Skipped {name}: {error}")
    click.echo(f"Done in {report.seconds:.1f} s.")


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
    click.echo(f"{name}" + (f" — {data['title']}" if data["title"] else ""))
    verdict = "is in the segment" if data["member"] else "is not in the segment"
    if data["deleted"]:
        verdict += " (the contact is deleted)"
    recorded = data["recorded"]
    since = f"recorded since {recorded['entered_at'][:19]}" if recorded["member"] else "not recorded as a member"
    click.echo(f"Contact #{contact_id} {verdict} at {data['now'][:19]} UTC ({since}).")
    _print_node(data["rule"], 0)
    score = data["lead_score"]
    stored = f", stored at the last refresh: {score['stored']}" if score["stored"] is not None else ""
    click.echo(f"Lead score {score['score']}{stored} ({score['model']}):")
    for line in score["lines"]:
        click.echo(f"  {line['points']:+4d}  {line['title']}" if line["points"] else f"     0  {line['title']}")


def _print_node(node: dict[str, Any], depth: int) -> None:
    mark = "✓" if node["passed"] else "✗"
    pad = "  " * depth
    if node["kind"] == "condition":
        value = json.dumps(node["value"], ensure_ascii=False, default=str) if node["value"] is not None else ""
        click.echo(f"{pad}{mark} {node['field']} {node['op']} {value}".rstrip()
                   + f" — seen: {json.dumps(node['seen'], ensure_ascii=False, default=str)}")
        return
    label = {"all": "all of", "any": "any of", "not": "not", "segment": f"segment {node.get('segment')}"}[node["kind"]]
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
    click.echo(f"Removed segment {name}.")
