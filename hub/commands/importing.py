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
from hub.spreadsheet import is_company_column
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
@click.option("--header-row", type=click.IntRange(min=1), metavar="N",
              help="The row the column headers are on, as Excel numbers it (default: found among the top rows, "
                   "skipping title rows above the table).")
@click.option("--sheet", metavar="NAME", help="The workbook sheet to read (default: the active one).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
def import_contacts(app: App, file: Path, source: str | None, maps: tuple[str, ...], header_row: int | None,
                    sheet: str | None, as_json: bool) -> None:
    """Import a spreadsheet of contacts: phones and emails normalized, duplicates merged.

    CSV in UTF-8 (with or without BOM) or Windows-1251, ';' or ',' separated,
    or XLSX. Columns are recognised by their Russian or English names,
    including those of Bitrix24's and amoCRM's contact exports; the report
    names every column that was not used.
    """
    engine = app.ready_engine()
    with progress_bar(enabled=not as_json) as bar:
        task = bar.add_task(_("Importing %(file)s", file=file.name), total=None)
        report = importer.import_contacts(engine, app.settings, file, source=source, mapping=_parse_map(maps),
                                          progress=lambda n: bar.advance(task, n), header_row=header_row,
                                          sheet=sheet)
    if as_json:
        emit_json(report.as_dict())
        return
    _print_import(report)


def _quoted(columns: Iterable[str]) -> str:
    """Column headers as the summary names them: «Рабочий телефон», «Web»."""
    return ", ".join(f"«{column}»" for column in columns)


def _print_import(report: importer.ImportReport) -> None:
    table = Table(title=_("Imported %(file)s", file=report.file), show_header=False)
    rows = [(_("rows read"), report.rows), (_("new contacts"), report.created),
            (_("rows matched to a contact already known"), report.merged),
            (_("existing contacts merged together"), report.contacts_merged),
            (_("invalid phones kept, flagged"), report.invalid_phones),
            (_("invalid emails kept, flagged"), report.invalid_emails), (_("rows skipped"), report.skipped_count)]
    if report.shared_values:
        rows.append((_("shared phones and emails (switchboards, 8-800, info@…)"), report.shared_values))
    if report.refused:
        rows.append((_("rows of people erased on request, kept out"), report.refused))
    for label, value in rows:
        table.add_row(label, formats.number(value))
    Console().print(table)
    if report.header_row is not None and report.header_row != 1:
        click.echo(_("Column headers read from row %(row)s.", row=report.header_row))
    if report.attribute_columns:
        click.echo(_("Kept as contact attributes: %(columns)s.", columns=", ".join(
            f"«{column}» → {key}" for column, key in report.attribute_columns.items())))
    company_columns = [column for column in report.unused_columns if is_company_column(column)]
    unused = [column for column in report.unused_columns if column not in company_columns]
    if company_columns:
        click.echo(ngettext("%(num)s column of the deals' companies is kept as a text attribute and not read as the "
                            "person's (a company's switchboard is not a person's phone): %(columns)s.",
                            "%(num)s columns of the deals' companies are kept as text attributes and not read as "
                            "the person's (a company's switchboard is not a person's phone): %(columns)s.",
                            len(company_columns), num=formats.number(len(company_columns)),
                            columns=_quoted(company_columns)))
    if unused:
        click.echo(ngettext("%(num)s column not used (its values are kept as text attributes; name it with "
                            "--map if it holds phones, emails or names): %(columns)s.",
                            "%(num)s columns not used (their values are kept as text attributes; name them with "
                            "--map if they hold phones, emails or names): %(columns)s.",
                            len(unused), num=formats.number(len(unused)), columns=_quoted(unused)))
    if report.ignored_columns:
        click.echo(_("Dropped as asked (--map …=ignore): %(columns)s.", columns=_quoted(report.ignored_columns)))
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
