"""`hub gdpr export|erase|retention`: a person's data requests and the retention sweep."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import click

from hub.api import App, SettingsError, emit_json, pass_app, stderr
from plugins.gdpr import erasure, export, retention


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
@click.argument("contact_id", type=int)
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
        stderr.print(f"Wrote {len(written)} files to {csv_dir}")
    if as_json:
        emit_json(data)
        return
    click.echo(f"Export of contact #{contact_id}{' (erased)' if data['erased'] else ''}:")
    for name, section in data.items():
        if isinstance(section, list):
            click.echo(f"  {name:<18} {len(section)}")
    if csv_dir is None:
        click.echo("The whole export: hub gdpr export "
                   f"{contact_id} --json > contact-{contact_id}.json, or --csv FOLDER for spreadsheets.")


@gdpr_group.command("erase")
@click.argument("contact_id", type=int)
@click.option("--delete-in-crm", is_flag=True,
              help="Also ask every CRM holding the person to delete them (where the CRM plugin can).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
@user_errors
def erase_cmd(app: App, contact_id: int, delete_in_crm: bool, as_json: bool) -> None:
    """Erase one person's personal data everywhere in Hub, for good; they are never synced or mailed again."""
    report = erasure.erase(app.ready_engine(), app.settings, contact_id, actor="cli",
                           delete_in_sources=delete_in_crm)
    if as_json:
        emit_json(report.as_dict())
        return
    if report.already_erased and not any(report.removed.values()):
        click.echo(f"Contact #{contact_id} was already erased; nothing of theirs is left.")
    else:
        removed = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in report.removed.items() if n)
        click.echo(f"Erased contact #{contact_id}: {removed or 'nothing but the name'}.")
        click.echo(f"{report.suppressed} phones and emails suppressed; {report.tombstone_keys} keys keep later "
                   "syncs and imports from bringing them back.")
    for item in report.sources:
        click.echo(f"  {item['source']} {item['external_id']}: {item['result']}")
    if not report.storage_clean:
        click.echo("Another program was reading the database, so SQLite still keeps the old pages in its -wal "
                   "file; they go at its next checkpoint, or run this command again when it has stopped.")


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
    lines = [("messages", "messages anonymized"), ("sync_runs", "sync runs deleted"),
             ("merge_snapshots", "merge snapshots cleared"), ("consent_requests", "signup requests deleted"),
             ("inactive_contacts", "inactive contacts anonymized")]
    click.echo("Retention, dry run: nothing was changed." if dry_run else "Retention:")
    for key, text in lines:
        cutoff = report.cutoffs.get(key)
        if cutoff is None:
            click.echo(f"  {text + ':':<31} off")
        else:
            click.echo(f"  {text + ':':<31} {getattr(report, key):>6}  (older than {cutoff[:10]})")
