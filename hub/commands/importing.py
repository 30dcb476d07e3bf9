"""`hub import contacts`: spreadsheets into the base, with a report of what was fixed."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import click
from rich.console import Console
from rich.table import Table

from hub import importer
from hub.cli import App, emit_json, pass_app, progress_bar


@click.group("import")
def import_group() -> None:
    """Import contacts from CSV or XLSX files."""


def _parse_map(values: Iterable[str]) -> dict[str, str]:
    mapping = {}
    for item in values:
        if "=" not in item:
            raise click.BadParameter(f"{item!r} is not COLUMN=FIELD", param_hint="--map")
        column, field = item.split("=", 1)
        mapping[column.strip()] = field.strip()
    return mapping


@import_group.command("contacts")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", help="Name recorded as where these contacts came from (default: import:FILENAME).")
@click.option("--map", "maps", multiple=True, metavar="COLUMN=FIELD",
              help="Map a column to a field (first_name, last_name, middle_name, full_name, phone, email, "
                   "birthday, city, source, gender, company, tags, external_id) or to 'ignore'. Repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
def import_contacts(app: App, file: Path, source: str | None, maps: tuple[str, ...], as_json: bool) -> None:
    """Import a spreadsheet of contacts: phones and emails normalized, duplicates merged.

    CSV in UTF-8 (with or without BOM) or Windows-1251, ';' or ',' separated,
    or XLSX. Columns are recognised by their Russian or English names.
    """
    engine = app.ready_engine()
    with progress_bar(enabled=not as_json) as bar:
        task = bar.add_task(f"Importing {file.name}", total=None)
        report = importer.import_contacts(engine, app.settings, file, source=source, mapping=_parse_map(maps),
                                          progress=lambda n: bar.advance(task, n))
    if as_json:
        emit_json(report.as_dict())
        return
    _print_import(report)


def _print_import(report: importer.ImportReport) -> None:
    table = Table(title=f"Imported {report.file}", show_header=False)
    rows = [("rows read", report.rows), ("new contacts", report.created),
            ("rows matched to a contact already known", report.merged),
            ("existing contacts merged together", report.contacts_merged),
            ("invalid phones kept, flagged", report.invalid_phones),
            ("invalid emails kept, flagged", report.invalid_emails), ("rows skipped", report.skipped_count)]
    if report.refused:
        rows.append(("rows of people erased on request, kept out", report.refused))
    for label, value in rows:
        table.add_row(label, f"{value:,}")
    Console().print(table)
    for item in report.skipped[:20]:
        click.echo(f"  line {item['line']}: {item['reason']}")
    if report.skipped_count > 20:
        click.echo(f"  … and {report.skipped_count - 20} more (see --json)")
    for item in report.warnings[:10]:
        click.echo(f"  line {item['line']}: {item['warning']}")
    click.echo(f"Done in {report.duration_s:.1f} s.")
