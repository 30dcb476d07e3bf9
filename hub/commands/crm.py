"""`hub crm push`: write changed lead scores and lifecycle stages to the CRMs' fields now."""

from __future__ import annotations

import click

from hub import crm_push, formats, plugins
from hub.cli import App, emit_json, pass_app
from hub.i18n import gettext as _
from hub.i18n import ngettext


@click.group("crm")
def crm_group() -> None:
    """What Hub writes back to the CRMs (Bitrix24, amoCRM) on its own."""


@crm_group.command("push")
@click.option("--source", "only", multiple=True, metavar="NAME",
              help="Only this source (e.g. bitrix24); may be given more than once.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_app
def push_cmd(app: App, only: tuple[str, ...], as_json: bool) -> None:
    """Write lead scores and lifecycle stages that changed since the last push to the CRMs' fields.

    Which CRM field takes each is the connection's setting ([bitrix24] fields, [amocrm] fields: lead_score,
    lifecycle); the scheduler does the same every HUB_CRM_PUSH_INTERVAL_S seconds.
    """
    unknown = sorted(set(only) - set(plugins.sources()))
    if unknown:
        raise click.ClickException(_("no source named %(names)s; the sources are: %(known)s",
                                     names=", ".join(unknown), known=", ".join(sorted(plugins.sources())) or "—"))
    report = crm_push.push(app.ready_engine(), app.settings, sources=list(only) or None)
    failed = any(part.error for part in report.sources.values())
    if as_json:
        emit_json(report.as_dict())
        if failed:
            raise SystemExit(1)
        return
    if not report.sources:
        click.echo(_("No connected CRM takes lead scores or lifecycle stages: map lead_score or lifecycle to a "
                     "field in the CRM's settings ([bitrix24] fields, [amocrm] fields)."))
        return
    n = formats.number
    for name, part in report.sources.items():
        if not part.changed:
            click.echo(_("%(source)s: nothing changed since the last push.", source=name))
            continue
        line = ngettext("%(source)s: %(num)s record changed, %(written)s written",
                        "%(source)s: %(num)s records changed, %(written)s written", part.changed, source=name,
                        num=n(part.changed), written=n(part.written))
        if part.failed:
            line += "; " + ngettext("%(num)s not written (sent again next time)",
                                    "%(num)s not written (sent again next time)", part.failed, num=n(part.failed))
        if part.error:
            line += "; " + _("the CRM answered: %(error)s", error=part.error)
        click.echo(line)
    if failed:
        raise SystemExit(1)
