"""Bitrix24: contacts and deals in (full, incremental, events), fields, comments and to-dos out.

Registered like any third-party plugin, through the "hub" entry point group.
The modules side by side: client (HTTP, limits, batches), connection (stored
credentials, OAuth refresh), mapping (portal rows → Hub records), source (the
sync and write-back), webhooks (the event receiver), commands (CLI) and
sandbox (a local portal emulator).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from hub.api import hookimpl


@hookimpl
def register_translations(register: Callable[[Path], None]) -> None:
    """Its messages in Russian (translations/ru/LC_MESSAGES)."""
    register(Path(__file__).parent / "translations")


@hookimpl
def register_sources(register: Callable[[str, Callable[..., Any]], None]) -> None:
    from plugins.bitrix24.source import Bitrix24Source

    register("bitrix24", Bitrix24Source)


@hookimpl
def register_sandboxes(register: Callable[[str, Callable[..., Any]], None]) -> None:
    from plugins.bitrix24.sandbox import start_connected

    register("bitrix24", start_connected)


@hookimpl
def register_commands(cli: Any) -> None:
    from plugins.bitrix24 import commands

    cli.commands["connect"].add_command(commands.connect, "bitrix24")
    cli.commands["sandbox"].add_command(commands.sandbox, "bitrix24")


@hookimpl
def register_routes(app: Any) -> None:
    from plugins.bitrix24.webhooks import bp

    app.register_blueprint(bp)


@hookimpl
def register_admin_pages(register: Callable[[Any], None]) -> None:
    """Its page in the admin: whether the portal is connected, and connecting it."""
    from plugins.bitrix24.admin import PAGE

    register(PAGE)


# What a Hub record is called in the portal's addresses.
_RECORD_PATHS = {"contact": "contact", "order": "deal"}


@hookimpl
def record_url(conn: Any, settings: Any, source: str, kind: str, external_id: str) -> str | None:
    """A contact's or deal's page on the connected portal: https://PORTAL/crm/contact/details/ID/."""
    from urllib.parse import urlsplit

    from hub.api import CredentialError, SettingsError, load_credentials
    from plugins.bitrix24.connection import NAME

    if source != NAME or kind not in _RECORD_PATHS or not (external_id.isdigit() and len(external_id) <= 20):
        return None
    try:
        found = load_credentials(conn, NAME, settings.require_secret_key())
    except (CredentialError, SettingsError):
        return None
    if found is None:
        return None
    data = found[0]
    # A webhook's URL or an app's REST endpoint names the portal: https://portal.bitrix24.ru/rest/...
    parts = urlsplit(str(data.get("url") or data.get("client_endpoint") or ""))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}/crm/{_RECORD_PATHS[kind]}/details/{external_id}/"
