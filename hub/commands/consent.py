"""`hub consent set|import|show`: the consent ledger from the shell."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from hub import consent, contacts, formats, importer
from hub.cli import ROW_ID, App, emit_json, pass_app
from hub.i18n import ngettext
from hub.i18n import gettext as _
from hub.models import Contact


@click.group("consent")
def consent_group() -> None:
    """Record and show consent (an append-only ledger)."""


@consent_group.command("set")
@click.argument("contact_id", type=ROW_ID)
@click.argument("channel")
@click.argument("purpose")
@click.argument("status", type=click.Choice(consent.STATUSES))
@click.option("--source", default="cli", show_default=True, help="Where the consent was given.")
@pass_app
def consent_set(app: App, contact_id: int, channel: str, purpose: str, status: str, source: str) -> None:
    """Record CHANNEL/PURPOSE consent for a contact (e.g. email marketing granted), as a staff entry.

    The ledger names who ran the command; a double opt-in waiting for the
    person's click cannot be granted from here (only the person's link does).
    """
    import getpass

    try:
        who = f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name in this environment
        who = "cli"
    with app.ready_engine().begin() as conn:
        if conn.execute(select(Contact.id).where(Contact.id == contact_id)).first() is None:
            raise click.ClickException(_("no contact with id %(id)s", id=contact_id))
        if status == "pending":
            consent.record(conn, contact_id, channel, purpose, status, source=source, settings=app.settings,
                           evidence={"via": "hub consent set", "by": consent.STAFF, "staff_user": who})
        else:
            try:
                consent.record_staff(conn, app.settings, contact_id, channel, purpose, status, staff=who,
                                     source=source, note="hub consent set")
            except consent.ConsentError as exc:
                raise click.ClickException(str(exc)) from None
    click.echo(_("Recorded: contact #%(id)s %(channel)s/%(purpose)s %(status)s (source: %(source)s).", id=contact_id,
                 channel=channel, purpose=purpose, status=_status(status), source=source))


@consent_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
def consent_import(app: App, file: Path, as_json: bool) -> None:
    """Import consent collected elsewhere: CSV with email or phone, channel, purpose, status, source, date."""
    report = importer.import_consent(app.ready_engine(), app.settings, file)
    if as_json:
        emit_json(report.as_dict())
        return
    click.echo(_("%(rows)s: %(recorded)s recorded, %(created)s created, %(skipped)s skipped.",
                 rows=ngettext("%(num)s row", "%(num)s rows", report.rows, num=formats.number(report.rows)),
                 recorded=formats.number(report.recorded), created=formats.contacts(report.contacts_created),
                 skipped=formats.number(len(report.skipped))))
    for item in report.skipped[:20]:
        click.echo("  " + _("line %(line)s: %(reason)s", line=item["line"], reason=item["reason"]))


@consent_group.command("show")
@click.argument("contact_id", type=ROW_ID)
@click.option("--json", "as_json", is_flag=True, help="Print the consents as JSON.")
@pass_app
def consent_show(app: App, contact_id: int, as_json: bool) -> None:
    """Current consent per channel and purpose, and the full history behind it."""
    with app.ready_engine().connect() as conn:
        why = contacts.missing(conn, contact_id)
        if why is not None:
            raise click.ClickException(why)
        state = consent.current(conn, contact_id)
        events = consent.history(conn, contact_id)
    data: dict[str, Any] = {
        "contact_id": contact_id,
        "current": [{"channel": ch, "purpose": p, "status": s} for (ch, p), s in sorted(state.items())],
        "history": events}
    if as_json:
        emit_json(data)
        return
    if not events:
        click.echo(_("No consent recorded for contact #%(id)s.", id=contact_id))
    for row in data["current"]:
        click.echo(f"{row['channel']}/{row['purpose']}: {_status(row['status'])}")
    for e in events:
        click.echo("  " + _("%(at)s %(channel)s/%(purpose)s %(status)s via %(source)s",
                            at=formats.moment(e["at"], app.settings.tz, zone=True), channel=e["channel"],
                            purpose=e["purpose"], status=_status(e["status"]), source=e["source"]))


# A consent's status as people read it (consent.status_title); the ledger, --json and the arguments keep the word.
_status = consent.status_title
