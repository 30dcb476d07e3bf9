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


# What a Hub record is called in the account's addresses (an order is a lead; Customers purchases have no page).
_RECORD_PATHS = {"contact": "contacts", "order": "leads"}


@hookimpl
def record_url(conn: Any, settings: Any, source: str, kind: str, external_id: str) -> str | None:
    """A contact's or lead's page in the connected account: https://SUBDOMAIN.amocrm.ru/contacts/detail/ID."""
    from urllib.parse import urlsplit

    from hub.api import CredentialError, SettingsError, load_credentials
    from plugins.amocrm.tokens import NAME

    if source != NAME or kind not in _RECORD_PATHS or not (external_id.isdigit() and len(external_id) <= 20):
        return None
    try:
        found = load_credentials(conn, NAME, settings.require_secret_key())
    except (CredentialError, SettingsError):
        return None
    if found is None:
        return None
    parts = urlsplit(str(found[0].get("base_url") or ""))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}/{_RECORD_PATHS[kind]}/detail/{external_id}"
