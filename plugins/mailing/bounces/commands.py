"""`hub mail bounces`: read the bounce mailbox now, as the schedule does every few minutes."""

from __future__ import annotations

from typing import Any

import click

from hub.api import App, SettingsError, emit_json, format_number, gettext as _, ngettext, pass_app, progress_bar
from plugins.mailing.bounces import process
from plugins.mailing.bounces.imap import MailboxError

# Each count of a pass in words, in the order people read them; only counts above zero are said.
_PARTS: tuple[tuple[str, Any], ...] = (
    ("bounces", lambda n: ngettext("%(num)s bounce", "%(num)s bounces", n, num=format_number(n))),
    ("soft_bounces", lambda n: ngettext("%(num)s soft bounce", "%(num)s soft bounces", n, num=format_number(n))),
    ("complaints", lambda n: ngettext("%(num)s spam complaint", "%(num)s spam complaints", n,
                                      num=format_number(n))),
    ("auto_replies", lambda n: ngettext("%(num)s auto-reply", "%(num)s auto-replies", n, num=format_number(n))),
    ("delivery_notices", lambda n: ngettext("%(num)s delivery notice", "%(num)s delivery notices", n,
                                            num=format_number(n))),
    ("duplicates", lambda n: ngettext("%(num)s already handled before", "%(num)s already handled before", n,
                                      num=format_number(n))),
    ("unmatched", lambda n: ngettext("%(num)s about a letter Hub did not send", "%(num)s about letters Hub did "
                                     "not send", n, num=format_number(n))),
    ("refused", lambda n: ngettext("%(num)s letter refused by the receiving server (spam filter or sender checks)",
                                   "%(num)s letters refused by the receiving server (spam filter or sender checks)",
                                   n, num=format_number(n))),
    ("unreadable", lambda n: ngettext("%(num)s not understood", "%(num)s not understood", n,
                                      num=format_number(n))),
)


@click.command("bounces")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Read at most this many letters (the rest wait for the next run).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_app
def bounces_command(app: App, limit: int | None, as_json: bool) -> None:
    """Read bounces and spam complaints from the bounce mailbox now and act on them."""
    try:
        config = process.mailbox_settings(app.settings)
        engine = app.ready_engine()
        with progress_bar(enabled=not as_json) as bar:
            task = bar.add_task(_("Reading the bounce mailbox"), total=limit)
            summary = process.run(engine, app.settings, config, limit=limit,
                                  progress=lambda n: bar.advance(task, n))
    except (MailboxError, SettingsError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        emit_json(summary.as_dict())
        return
    click.echo(summary_text(summary))


def summary_text(summary: process.Summary) -> str:
    """«Прочитано 120 писем: 80 отказов, 3 жалобы; оставлено для проверки человеком: 5»."""
    counts = summary.as_dict()
    read = ngettext("Read %(num)s letter", "Read %(num)s letters", summary.read, num=format_number(summary.read))
    parts = [words(counts[key]) for key, words in _PARTS if counts[key]]
    text = f"{read}: {', '.join(parts)}" if parts else read
    if summary.left_for_person:
        text += "; " + _("left for a person to check: %(num)s", num=format_number(summary.left_for_person))
    return text + "."
