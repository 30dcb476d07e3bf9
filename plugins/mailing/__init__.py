"""Mailing: the email, SMS and file channels, the shipped templates, and `hub templates`/`hub messages`.

Registered like any third-party plugin, through the "hub" entry point group.
The modules side by side: email (SMTP), sms (HTTP gateways), file (the
embedded default that writes messages to a folder), commands (CLI), and
message_templates/ (the Russian templates the workflow library uses).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from hub.api import Settings, hookimpl

# Imported with the plugin: the reasons they hold letters for read in Russian wherever the log is shown.
from plugins.mailing import domain_rates, warmup

MESSAGE_TEMPLATES = Path(__file__).parent / "message_templates"


def email_channel(settings: Settings) -> Any:
    """SMTP when HUB_SMTP_URL is set, else the file channel: workflows run unchanged on a bare machine."""
    if settings.extra.get("smtp_url"):
        from plugins.mailing.email import EmailChannel

        return EmailChannel(settings)
    from plugins.mailing.file import FileChannel

    return FileChannel(settings, "email")


def sms_channel(settings: Settings) -> Any:
    from plugins.mailing import sms

    return sms.channel(settings)


@hookimpl
def register_translations(register: Callable[[Path], None]) -> None:
    """The plugin's messages in Russian (translations/ru), found like any plugin's."""
    register(Path(__file__).parent / "translations")


@hookimpl
def register_channels(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register("email", email_channel)
    register("sms", sms_channel)


@hookimpl(tryfirst=True)
def contact_erased(conn: Any, settings: Settings, contact_id: int) -> None:
    """The files the file channel wrote to an erased person go with them (their rows are Hub's to blank).

    First of all implementations: the files are found through message rows and
    addresses that other plugins' erasure steps may blank.
    """
    from plugins.mailing import file

    file.forget_contact(conn, settings, contact_id)


@hookimpl
def register_template_dirs(register: Callable[[Any], None]) -> None:
    register(MESSAGE_TEMPLATES)


def _last_sent_at(ctx: Any) -> Any:
    from sqlalchemy import func, select

    from hub.api import Message

    m = Message.__table__
    return (select(func.max(m.c.sent_at))
            .where(m.c.contact_id == ctx.contact_id, m.c.status == "sent").scalar_subquery())


@hookimpl
def register_segment_fields(register: Callable[[str, Any], None]) -> None:
    from hub.api import N_, SegmentField

    register("messages.last_sent_at", SegmentField(
        "datetime", _last_sent_at, N_("when the contact was last sent a message, on any channel")))
    from plugins.mailing import tracking_fields

    for name, spec in tracking_fields.fields().items():
        register(name, spec)


@hookimpl
def register_commands(cli: Any) -> None:
    from plugins.mailing import commands

    cli.add_command(commands.templates_group)
    cli.add_command(commands.messages_group)
    from plugins.mailing.mail_commands import mail_group

    cli.add_command(mail_group)
    if "sandbox" in cli.commands:
        from plugins.mailing.sms_sandbox import sandbox_command

        cli.commands["sandbox"].add_command(sandbox_command, "sms")


# The hooks below gather the plugin's parts; each part adds its own lines.

@hookimpl
def register_routes(app: Any) -> None:
    """Public routes of the mailing plugin (link redirects, provider callbacks)."""
    from plugins.mailing import tracking_routes

    tracking_routes.register(app)
    from plugins.mailing.sms_reports import bp as sms_reports

    app.register_blueprint(sms_reports)


@hookimpl
def register_schedules(register: Callable[[str, Any], None], settings: Settings) -> None:
    """Recurring mail work (reading the bounce mailbox, polling SMS delivery reports)."""
    from plugins.mailing import sms_reports

    register("sms-status", sms_reports.schedule(settings))
    from plugins.mailing.bounces import schedule as bounce_schedule

    every = bounce_schedule(settings)
    if every is not None:
        register("mail-bounces", every)


@hookimpl
def check_send(conn: Any, settings: Settings, message: Any, now: Any) -> Any:
    """Warm-up of a new sending domain first (a letter it holds takes no slot), then the pace per destination domain."""
    return warmup.warmup_rule(conn, settings, message, now) or domain_rates.rate_rule(settings, message, now)
