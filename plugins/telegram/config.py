"""The bot's settings, read once per use from ``settings.extra`` (HUB_TELEGRAM_* or [telegram] in hub.toml).

The token is the bot's password: whoever holds it can write to every person
who linked a chat. It lives only in `Bot` (repr without it) and is cut out of
every text an error carries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hub.api import Settings, SettingsError, gettext as _

API_URL = "https://api.telegram.org"
TOKEN = re.compile(r"^\d{3,20}:[A-Za-z0-9_-]{20,100}$")
BOT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{3,31}$")
# How long a deep link from a letter stays good; a letter read a year later asks again.
DEFAULT_LINK_DAYS = 365


@dataclass(frozen=True)
class BotSettings:
    token: str = field(repr=False)
    api_url: str
    bot_name: str | None
    webhook_secret: str | None = field(repr=False)
    timeout: float
    link_days: int

    def redact(self, text: str) -> str:
        """`text` without the token: errors, logs and reasons never carry it."""
        return text.replace(self.token, "<token>") if self.token else text


def _text(settings: Settings, key: str) -> str:
    return str(settings.extra.get(key) or "").strip()


def configured(settings: Settings) -> bool:
    return bool(_text(settings, "telegram_bot_token"))


def load(settings: Settings) -> BotSettings:
    """The settings, checked; SettingsError names the variable that is wrong (never its value)."""
    token = _text(settings, "telegram_bot_token")
    if not token:
        raise SettingsError(_("HUB_TELEGRAM_BOT_TOKEN is not set: give the token @BotFather issued for your bot"))
    if not TOKEN.match(token):
        raise SettingsError(_("HUB_TELEGRAM_BOT_TOKEN does not look like a bot token (digits, a colon, then "
                              "letters and digits)"))
    name = _text(settings, "telegram_bot_name").removeprefix("@") or None
    if name is not None and not BOT_NAME.match(name):
        raise SettingsError(_("HUB_TELEGRAM_BOT_NAME: %(name)r is not a bot username (Latin letters, digits "
                              "and _, 4 to 32 characters)", name=name[:40]))
    secret = _text(settings, "telegram_webhook_secret") or None
    if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
        raise SettingsError(_("HUB_TELEGRAM_WEBHOOK_SECRET: use 1 to 256 characters A-Z, a-z, 0-9, _ and -"))
    try:
        timeout = float(settings.extra.get("telegram_timeout") or 10)
        days = int(settings.extra.get("telegram_link_days") or DEFAULT_LINK_DAYS)
    except (TypeError, ValueError):
        raise SettingsError(_("HUB_TELEGRAM_TIMEOUT and HUB_TELEGRAM_LINK_DAYS are numbers")) from None
    if not 0 < timeout <= 120 or not 1 <= days <= 3650:
        raise SettingsError(_("HUB_TELEGRAM_TIMEOUT is 1 to 120 seconds, HUB_TELEGRAM_LINK_DAYS 1 to 3650 days"))
    api_url = (_text(settings, "telegram_api_url") or API_URL).rstrip("/")
    return BotSettings(token=token, api_url=api_url, bot_name=name, webhook_secret=secret, timeout=timeout,
                       link_days=days)
