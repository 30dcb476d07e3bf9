"""Telegram: the shop's bot as a channel, and people linking their chat to it with a signed deep link.

The modules side by side: config (the HUB_TELEGRAM_* settings), payload (the
signed start payload of t.me/BOT?start=…), bot (a small Bot API client),
models (linked chats, the getUpdates offset), linking (what /start and /stop
do: link, consent with evidence, unlink), updates (the webhook route and
polling), channel (the `telegram` channel with Telegram's limits and
errors), status, admin and commands, and sandbox (a local Bot API for the
demo and tests).

A chat is not one of a contact's phones or emails: a person links it by
opening their own link and pressing Start, and it is kept here. Consent is
the core ledger's, for channel ``telegram`` (add it to HUB_CONSENT_CHANNELS
to show it on the preference centre and in consent reports).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from hub.api import ReasonShape, SettingsError, hookimpl

# Kept in English with the message; people read it in their language (hub.api.reason_text).
NO_CHAT = ReasonShape("no linked Telegram chat")


@hookimpl
def register_translations(register: Callable[[Path], None]) -> None:
    register(Path(__file__).parent / "translations")


@hookimpl
def register_migrations(register: Any) -> None:
    """Linked chats and the getUpdates offset live in the plugin's own tables."""
    register("telegram", Path(__file__).parent / "migrations" / "versions")


@hookimpl
def register_channels(register: Callable[[str, Callable[..., Any]], None]) -> None:
    from plugins.telegram.channel import TelegramChannel

    register(TelegramChannel.name, TelegramChannel)


@hookimpl
def can_contact(conn: Any, contact_id: int, channel: str) -> str | None:
    """A bot can write only to a chat the person opened with it: no linked chat, no message."""
    if channel != "telegram":
        return None
    from plugins.telegram.linking import chat_of

    return NO_CHAT() if chat_of(conn, contact_id) is None else None


@hookimpl
def register_routes(app: Any) -> None:
    from plugins.telegram.updates import bp

    app.register_blueprint(bp)


@hookimpl
def register_admin_pages(register: Any) -> None:
    from plugins.telegram.admin import PAGE

    register(PAGE)


@hookimpl
def register_commands(cli: Any) -> None:
    from plugins.telegram.commands import sandbox_telegram, telegram_group

    cli.add_command(telegram_group)
    if "sandbox" in cli.commands:
        cli.commands["sandbox"].add_command(sandbox_telegram, "telegram")


@hookimpl
def register_schedules(register: Any, settings: Any) -> None:
    """Without a webhook, updates (people pressing Start) are read with getUpdates on a schedule."""
    import datetime as dt

    from hub.api import N_, Schedule
    from plugins.telegram import config, updates

    if not config.configured(settings) or settings.extra.get("telegram_webhook_secret"):
        return
    seconds = updates.poll_seconds(settings)
    if seconds:
        register("telegram-updates", Schedule(dt.timedelta(seconds=seconds), updates.scheduled,
                                              N_("read what people wrote to the Telegram bot (getUpdates)"),
                                              N_("Telegram bot")))


@hookimpl
def contact_merged(conn: Any, survivor_id: int, merged_id: int, merge_id: int) -> None:
    """The merged contact's chat follows the person into the survivor."""
    from plugins.telegram import linking

    linking.follow_merge(conn, survivor_id, merged_id, merge_id)


@hookimpl
def contact_unmerged(conn: Any, survivor_id: int, restored_id: int, merge_id: int) -> None:
    from plugins.telegram import linking

    linking.follow_unmerge(conn, survivor_id, restored_id, merge_id)


@hookimpl
def contact_erased(conn: Any, contact_id: int) -> None:
    """An erased person's chat is forgotten: the bot never writes to them again."""
    from plugins.telegram import linking

    linking.forget(conn, contact_id)


@hookimpl
def preference_links(conn: Any, settings: Any, contact_id: int) -> list[dict[str, str]] | None:
    """«Подключить Telegram» on the preference centre: the person's own deep link, unless the chat is linked."""
    from plugins.telegram import linking, status
    from plugins.telegram.bot import BotError

    if not status.ready(settings) or linking.chat_of(conn, contact_id) is not None:
        return None
    from hub.api import gettext as _

    try:
        url = status.deep_link(settings, contact_id, timeout=2.0)
    except (BotError, SettingsError):  # the page shows without the link rather than fail
        return None
    return [{"title": _("Subscribe in Telegram"),
             "url": url, "text": _("Open the link and press Start: our news will come to you in Telegram.")}]


def _link_for(settings: Any, contact_id: int) -> str:
    """The person's own t.me link, or "" when the bot is not set up (a template shows it with {% if %})."""
    from plugins.telegram import status
    from plugins.telegram.bot import BotError

    if not status.ready(settings):
        return ""
    try:
        return status.deep_link(settings, contact_id, timeout=2.0)
    except (BotError, SettingsError):
        return ""


@hookimpl
def register_template_variables(register: Callable[..., None], settings: Any) -> None:
    """`{{ telegram_link }}` in any letter or SMS: the reader's own link to the shop's bot."""
    from hub.api import N_

    register("telegram_link", "https://t.me/shop_bot?start=2s-8f3k2a9d0b1c4e5f6a7b8c9d0e",
             {"telegram_link": N_("the contact's own link to subscribe in Telegram (empty without a bot)")},
             title=N_("Telegram"), per_contact=_link_for)
