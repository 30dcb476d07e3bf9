"""`hub import contacts`: spreadsheets into the base, with a report of what was fixed."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import click
from babel.numbers import format_decimal
from rich.console import Console
from rich.table import Table

from hub import formats, importer
from hub.cli import App, emit_json, pass_app, progress_bar
from hub.i18n import current_language, ngettext
from hub.i18n import gettext as _


@click.group("import")
def import_group() -> None:
    """Import contacts from CSV or XLSX files."""


def _parse_map(values: Iterable[str]) -> dict[str, str]:
    mapping = {}
    for item in values:
        if "=" not in item:
            raise click.BadParameter(_("%(item)r is not COLUMN=FIELD", item=item), param_hint="--map")
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
        task = bar.add_task(_("Importing %(file)s", file=file.name), total=None)
        report = importer.import_contacts(engine, app.settings, file, source=source, mapping=_parse_map(maps),
                                          progress=lambda n: bar.advance(task, n))
    if as_json:
        emit_json(report.as_dict())
        return
    _print_import(report)


def _print_import(report: importer.ImportReport) -> None:
    table = Table(title=_("Imported %(file)s", file=report.file), show_header=False)
    rows = [(_("rows read"), report.rows), (_("new contacts"), report.created),
            (_("rows matched to a contact already known"), report.merged),
            (_("existing contacts merged together"), report.contacts_merged),
            (_("invalid phones kept, flagged"), report.invalid_phones),
            (_("invalid emails kept, flagged"), report.invalid_emails), (_("rows skipped"), report.skipped_count)]
    if report.refused:
        rows.append((_("rows of people erased on request, kept out"), report.refused))
    for label, value in rows:
        table.add_row(label, formats.number(value))
    Console().print(table)
    for item in report.skipped[:20]:
        click.echo("  " + _("line %(line)s: %(reason)s", line=item["line"], reason=item["reason"]))
    if report.skipped_count > 20:
        more = report.skipped_count - 20
        click.echo("  " + ngettext("… and %(num)s more (see --json)", "… and %(num)s more (see --json)", more,
                                   num=formats.number(more)))
    for item in report.warnings[:10]:
        click.echo("  " + _("line %(line)s: %(reason)s", line=item["line"], reason=item["warning"]))
    seconds = format_decimal(round(report.duration_s, 1), "#,##0.0", locale=current_language())
    click.echo(_("Done in %(seconds)s s.", seconds=seconds))
