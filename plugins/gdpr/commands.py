"""`hub gdpr export|erase|retention`: a person's data requests and the retention sweep."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable

import click
from sqlalchemy import select

from hub.api import (ROW_ID, App, SettingsError, emit_json, format_date, format_number, gettext as _, ngettext,
                     pass_app, stderr)
from plugins.gdpr import audit_details, erasure, export, retention


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Mistakes a user can fix end in one `Error:` line, like every other Hub command."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (export.ExportError, erasure.ErasureError, SettingsError) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


@click.group("gdpr")
def gdpr_group() -> None:
    """Data subject requests (export, erasure) and retention (GDPR, 152-FZ)."""


@gdpr_group.command("export")
@click.argument("contact_id", type=ROW_ID)
@click.option("--json", "as_json", is_flag=True, help="Print the whole export as one JSON document.")
@click.option("--csv", "csv_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also write a CSV bundle (one file per section, and export.json) into this folder.")
@pass_app
@user_errors
def export_cmd(app: App, contact_id: int, as_json: bool, csv_dir: Path | None) -> None:
    """Everything Hub holds about one person: contact, identities, orders, consent, messages, audit …"""
    data = export.export(app.ready_engine(), app.settings, contact_id)
    if csv_dir is not None:
        written = export.write_csv_bundle(data, csv_dir)
        stderr.print(ngettext("Wrote %(num)s file to %(folder)s", "Wrote %(num)s files to %(folder)s", len(written),
                              num=format_number(len(written)), folder=csv_dir), markup=False, highlight=False)
    if as_json:
        emit_json(data)
        return
    click.echo(_("Export of contact #%(id)s (erased):", id=contact_id) if data["erased"]
               else _("Export of contact #%(id)s:", id=contact_id))
    sections = [(export.section_title(name), section) for name, section in data.items() if isinstance(section, list)]
    width = max((len(title) for title, _rows in sections), default=0)
    for title, section in sections:
        click.echo(f"  {title:<{width}}  {format_number(len(section))}")
    if csv_dir is None:
        click.echo(_("The whole export: hub gdpr export %(id)s --json > contact-%(id)s.json, or --csv FOLDER for "
                     "spreadsheets.", id=contact_id))


@gdpr_group.command("erase")
@click.argument("contact_id", type=ROW_ID)
@click.option("--delete-in-crm", is_flag=True,
              help="Also erase the person in every CRM holding them: Bitrix24 deletes the contact, amoCRM (whose "
                   "API cannot delete) anonymises it. Run it again for an erased contact to ask the CRMs that have "
                   "not confirmed; the exit code is 1 while one of them fails.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--yes", is_flag=True, help="Erase without asking (for scripts); without it you type the id or ERASE.")
@pass_app
@user_errors
def erase_cmd(app: App, contact_id: int, delete_in_crm: bool, as_json: bool, yes: bool) -> None:
    """Erase one person's personal data everywhere in Hub, for good; they are never synced or mailed again."""
    if not yes:
        _confirm_erase(app, contact_id)
    report = erasure.erase(app.ready_engine(), app.settings, contact_id, actor="cli",
                           delete_in_sources=delete_in_crm)
    if as_json:
        emit_json(report.as_dict())
    else:
        _say_erased(report)
    if report.crm_failed:  # scripts see it too: the person is still in a CRM, and a rerun asks it again
        raise SystemExit(1)


def _say_erased(report: erasure.ErasureReport) -> None:
    contact_id = report.contact_id
    if report.already_erased and not any(report.removed.values()):
        click.echo(_("Contact #%(id)s was already erased; nothing of theirs is left.", id=contact_id))
    else:
        click.echo(_("Erased contact #%(id)s: %(removed)s.", id=contact_id,
                     removed=audit_details.removed(report.removed)))
        suppressed = ngettext("%(num)s phone or email suppressed", "%(num)s phones and emails suppressed",
                              report.suppressed, num=format_number(report.suppressed))
        keys = ngettext("%(num)s key keeps later syncs and imports from bringing them back.",
                        "%(num)s keys keep later syncs and imports from bringing them back.",
                        report.tombstone_keys, num=format_number(report.tombstone_keys))
        click.echo(f"{suppressed}; {keys}")
    for item in report.sources:
        click.echo(f"  {item['source']} {item['external_id']}: {erasure.describe(item)}")
    said = erasure.describe_crm(report)
    if said:
        click.echo(said)
    if report.crm_failed:
        click.echo(_("A CRM did not erase the person: run this command again with --delete-in-crm to ask it "
                     "again."), err=True)
    if not report.storage_clean:
        click.echo(_("Another program was reading the database, so SQLite still keeps the old pages in its -wal "
                     "file; they go at its next checkpoint, or run this command again when it has stopped."))


def at_a_terminal() -> bool:
    """Whether someone can answer the question (a script's closed or piped stdin cannot)."""
    return sys.stdin is not None and sys.stdin.isatty()


def _to_erase(app: App, contact_id: int) -> tuple[bool, str]:
    """Whether there is anyone left to erase, and their name as staff know it.

    A contact that does not exist, was merged away or is already erased loses
    nothing more, so the erasure runs at once and says why (or that it is done).
    """
    with app.ready_engine().connect() as conn:
        row = conn.execute(select(erasure.contacts_t.c.first_name, erasure.contacts_t.c.last_name,
                                  erasure.erasures_t.c.id.label("erasure"))
                           .outerjoin(erasure.erasures_t, erasure.erasures_t.c.contact_id == erasure.contacts_t.c.id)
                           .where(erasure.contacts_t.c.id == contact_id)).first()
    if row is None or row.erasure is not None:
        return False, ""
    return True, " ".join(p for p in (row.first_name, row.last_name) if p)


def _confirm_erase(app: App, contact_id: int) -> None:
    """Ask before erasing, as the admin does: it cannot be undone, and a mistyped id erases someone else."""
    pending, name = _to_erase(app, contact_id)
    if not pending:
        return
    if not at_a_terminal():
        raise click.ClickException(_("erasing contact #%(id)s cannot be undone: run the command in a terminal to "
                                     "confirm it, or add --yes", id=contact_id))
    click.echo(_("This erases contact #%(id)s (%(name)s) for good; it cannot be undone.", id=contact_id, name=name)
               if name else _("This erases contact #%(id)s for good; it cannot be undone.", id=contact_id), err=True)
    answer = click.prompt(_("Type %(id)s or ERASE to erase", id=contact_id), default="", show_default=False,
                          err=True)
    if answer.strip() not in (str(contact_id), "ERASE"):
        raise click.ClickException(_("nothing was erased: the answer was not %(id)s or ERASE", id=contact_id))


@gdpr_group.command("retention")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted or anonymized; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
@user_errors
def retention_cmd(app: App, dry_run: bool, as_json: bool) -> None:
    """Delete or anonymize what is past its age ([gdpr.retention] in hub.toml)."""
    report = retention.run(app.ready_engine(), app.settings, dry_run=dry_run)
    if as_json:
        emit_json(report.as_dict())
        return
    lines = [("messages", _("messages anonymized")), ("sync_runs", _("sync runs deleted")),
             ("merge_snapshots", _("merge snapshots cleared")), ("consent_requests", _("signup requests deleted")),
             ("inactive_contacts", _("inactive contacts anonymized"))]
    click.echo(_("Retention, dry run: nothing was changed.") if dry_run else _("Retention:"))
    width = max(len(text) for _key, text in lines) + 2
    for key, text in lines:
        cutoff = report.cutoffs.get(key)
        if cutoff is None:
            off = _("off")
            click.echo(f"  {text + ':':<{width}} {off:>6}")
        else:
            click.echo(f"  {text + ':':<{width}} {format_number(getattr(report, key)):>6}  "
                       + _("(older than %(date)s)", date=format_date(cutoff[:10])))
