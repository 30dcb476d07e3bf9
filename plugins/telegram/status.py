"""What the command and the admin page tell about the bot: connected or not, chats linked, a link to share."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from sqlalchemy import Engine, func, select

from hub.api import Settings, SettingsError
from plugins.telegram import config as bot_config
from plugins.telegram import payload
from plugins.telegram.bot import Bot, BotError
from plugins.telegram.models import TelegramChat

_bot_names: dict[tuple[str, str], str] = {}  # (api url, token) → username, read once with getMe


@dataclass
class Status:
    configured: bool
    connected: bool
    bot_name: str | None
    problem: str | None
    linked_chats: int
    webhook_url: str | None
    mode: str  # webhook | polling | off

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bot_name(config: bot_config.BotSettings) -> str:
    """The bot's username: HUB_TELEGRAM_BOT_NAME, or asked once with getMe (BotError when that fails)."""
    if config.bot_name:
        return config.bot_name
    key = (config.api_url, config.token)
    if key not in _bot_names:
        with Bot(config) as bot:
            me = bot.call("getMe")
        name = me.get("username") if isinstance(me, dict) else None
        if not isinstance(name, str) or not bot_config.BOT_NAME.match(name):
            raise BotError(500, "getMe did not say the bot's username")
        _bot_names[key] = name
    return _bot_names[key]


def deep_link(settings: Settings, contact_id: int, *, timeout: float | None = None) -> str:
    """t.me/BOT?start=PAYLOAD for one contact."""
    config = bot_config.load(settings)
    if timeout is not None:
        config = replace(config, timeout=min(config.timeout, timeout))
    return payload.deep_link(bot_name(config), payload.make(settings, contact_id))


def linked_chats(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(TelegramChat.__table__)).scalar() or 0)


def read(engine: Engine, settings: Settings, *, timeout: float | None = None) -> Status:
    """`timeout` caps the wait for Telegram (a page must not hang on a slow network)."""
    chats = linked_chats(engine)
    try:
        config = bot_config.load(settings)
        if timeout is not None:
            config = replace(config, timeout=min(config.timeout, timeout))
    except SettingsError as exc:
        configured = bot_config.configured(settings)
        return Status(configured, False, None, str(exc) if configured else None, chats, None, "off")
    mode = "webhook" if config.webhook_secret else "polling"
    try:
        with Bot(config) as bot:
            me = bot.call("getMe")
            hook = bot.call("getWebhookInfo")
    except BotError as exc:
        return Status(True, False, config.bot_name, str(exc), chats, None, mode)
    name = me.get("username") if isinstance(me, dict) else None
    url = hook.get("url") if isinstance(hook, dict) else None
    return Status(True, True, config.bot_name or name, None, chats, url or None, mode)


def ready(settings: Settings) -> bool:
    """The bot is set up well enough to hand out links."""
    try:
        bot_config.load(settings)
    except SettingsError:
        return False
    return True
