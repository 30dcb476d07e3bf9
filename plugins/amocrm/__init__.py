"""amoCRM: sync contacts and leads, receive webhooks, write back; and a local emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from hub.api import hookimpl


@hookimpl
def register_translations(register: Callable[[Path], None]) -> None:
    """Its messages in Russian (translations/ru/LC_MESSAGES)."""
    register(Path(__file__).parent / "translations")


@hookimpl
def register_sources(register: Any) -> None:
    from plugins.amocrm.source import AmoSource

    register("amocrm", lambda settings: AmoSource(settings))


@hookimpl
def register_sandboxes(register: Any) -> None:
    from plugins.amocrm.sandbox import start_connected

    register("amocrm", start_connected)


@hookimpl
def register_commands(cli: Any) -> None:
    from plugins.amocrm.commands import connect_amocrm, sandbox_amocrm

    if "connect" in cli.commands:
        cli.commands["connect"].add_command(connect_amocrm, "amocrm")
    if "sandbox" in cli.commands:
        cli.commands["sandbox"].add_command(sandbox_amocrm, "amocrm")


@hookimpl
def register_schedules(register: Any, settings: Any) -> None:
    """An idle connection's refresh token dies after three months: refresh it in time, daily check."""
    import datetime as dt

    from hub.api import N_, Schedule
    from plugins.amocrm.tokens import scheduled_keep_alive

    register("amocrm-keep-alive", Schedule(dt.timedelta(days=1), scheduled_keep_alive,
                                           N_("refresh the amoCRM token pair once it is 75 days old")))


@hookimpl
def register_routes(app: Any) -> None:
    from plugins.amocrm.webhooks import bp, install_log_filter

    app.register_blueprint(bp)
    install_log_filter()


@hookimpl
def register_admin_pages(register: Callable[[Any], None]) -> None:
    """Its page in the admin: whether the account is connected, and connecting it."""
    from plugins.amocrm.admin import PAGE

    register(PAGE)
