"""The `shop_telegram` channel: messages through the shop's Telegram bot (Bot API `sendMessage`).

Hub has its own `telegram` channel (plugins/telegram), where people link their
chat by a signed deep link. This one is for a shop whose site already knows
its customers' chats: it shows how a third-party plugin adds a channel, and
it takes its own name so both can be installed side by side.

Where a message goes. Hub gives every channel but email the contact's phone as
the message's address: consent, suppressions and bounces are kept per phone.
A bot cannot write to a phone number, only to a chat a person opened with it,
and the shop knows that chat: the source stores it in the contact attribute
`telegram_chat_id`. So the channel sends to the chat of the message's contact,
and `can_contact` (in this plugin's hooks) refuses the channel for a contact
without one, so such a message is marked suppressed with the reason instead
of failing at the bot.

How Telegram's answers map to Hub's delivery statuses:

- ok → sent (the provider id is Telegram's message id);
- 429 (too many requests) and 5xx → deferred, tried again with Hub's backoff;
- 403 (the person blocked the bot) and 400 (chat not found, text refused) →
  failed. Not "bounced": Hub would suppress the phone number, which is alive
  and may still get SMS and calls;
- 401/404 (the token is wrong) → ChannelUnavailable: nothing can be sent;
- no connection made → deferred; the connection broke after the request left
  → unknown, for a person to check (Telegram has no idempotency key to make a
  second try safe).

The bot token is in the URL Telegram wants, so it is kept out of every error
text, out of this object's repr, and out of urllib3's debug log lines.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import requests
import urllib3.exceptions
from sqlalchemy import select

from hub.api import ChannelUnavailable, Contact, Delivery, Outgoing, Settings, SettingsError, get_engine, limiter

API_URL = "https://api.telegram.org"
MAX_TEXT = 4096  # Telegram's limit for one message
DEFAULT_RATE = 25.0  # per second, under the Bot API's ~30 for broadcasts, when HUB_SHOP_TELEGRAM_RATE is unset
TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]{20,}$")
CHAT_ATTRIBUTE = "telegram_chat_id"
_DEBUG_LOGGERS = ("urllib3.connectionpool",)  # logs "POST /bot<token>/sendMessage" at debug level


def chat_attribute(settings: Settings) -> str:
    """The contact attribute holding the chat id (HUB_TELEGRAM_CHAT_ATTRIBUTE; the shop fills the default)."""
    return str(settings.extra.get("telegram_chat_attribute") or CHAT_ATTRIBUTE)


def chat_id_of(conn: Any, settings: Settings, contact_id: int | None) -> str | None:
    """The contact's Telegram chat id, or None when the bot has no chat with them."""
    if contact_id is None:
        return None
    attributes = conn.execute(select(Contact.attributes).where(Contact.id == contact_id)).scalar()
    value = (attributes or {}).get(chat_attribute(settings))
    return str(value).strip() if value not in (None, "") else None


class _Redact(logging.Filter):
    """Replaces the token in log records of the HTTP library while the channel is open."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secret in record.getMessage():
            record.msg, record.args = record.getMessage().replace(self.secret, "<token>"), None
        return True


class TelegramChannel:
    """`factory(settings)` of the `shop_telegram` channel: HUB_TELEGRAM_TOKEN is the bot's token from @BotFather."""

    name = "shop_telegram"

    def __init__(self, settings: Settings) -> None:
        token = str(settings.extra.get("telegram_token") or "").strip()
        if not token:
            raise SettingsError("HUB_TELEGRAM_TOKEN: not set; give the token @BotFather issued for the shop's bot")
        if not TOKEN.match(token):
            raise SettingsError("HUB_TELEGRAM_TOKEN: does not look like a bot token (digits, a colon, then letters)")
        self._token = token
        self.settings = settings
        self.api_url = str(settings.extra.get("telegram_api_url") or API_URL).rstrip("/")
        try:
            self.timeout = float(settings.extra.get("telegram_timeout") or 10)
        except (TypeError, ValueError):
            raise SettingsError("HUB_TELEGRAM_TIMEOUT: expected seconds, e.g. 10") from None
        # Hub paces a channel itself when HUB_SHOP_TELEGRAM_RATE is set; otherwise stay under Telegram's limit here.
        self.pace = None if settings.extra.get("shop_telegram_rate") else limiter(settings, "telegram", DEFAULT_RATE,
                                                                              int(DEFAULT_RATE))
        self.engine = get_engine(settings.database_url)
        self.session: requests.Session | None = None
        self._redact = _Redact(token)

    def __repr__(self) -> str:
        return f"TelegramChannel({self.api_url!r})"

    def open(self) -> None:
        self.session = requests.Session()
        for name in _DEBUG_LOGGERS:
            logging.getLogger(name).addFilter(self._redact)

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None
        for name in _DEBUG_LOGGERS:
            logging.getLogger(name).removeFilter(self._redact)

    def send(self, message: Outgoing) -> Delivery:
        with self.engine.connect() as conn:
            chat = chat_id_of(conn, self.settings, message.contact_id)
        if chat is None:
            return Delivery("failed", error=f"no Telegram chat with this contact (attribute "
                                            f"{chat_attribute(self.settings)} is empty)")
        if len(message.text) > MAX_TEXT:
            return Delivery("failed", error=f"the text has {len(message.text)} characters; Telegram takes "
                                            f"at most {MAX_TEXT}")
        if self.session is None:
            self.open()
        assert self.session is not None
        if self.pace is not None:
            self.pace.acquire()
        try:
            answer = self.session.post(f"{self.api_url}/bot{self._token}/sendMessage",
                                       json={"chat_id": chat, "text": message.text}, timeout=self.timeout)
        except requests.RequestException as exc:
            if _never_sent(exc):
                return Delivery("deferred", error=f"Telegram could not be reached ({type(exc).__name__})")
            return Delivery("unknown", error=f"the connection to Telegram broke after the message was handed "
                                             f"over ({type(exc).__name__}); check the chat before sending again")
        return self._delivery(answer)

    def _delivery(self, answer: requests.Response) -> Delivery:
        try:
            data = answer.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            if answer.status_code >= 500:
                return Delivery("deferred", error=f"Telegram answered HTTP {answer.status_code}")
            return Delivery("unknown", error=f"Telegram answered HTTP {answer.status_code} without a JSON body; "
                                             "whether the message went out is not known")
        if data.get("ok") is True:
            message_id = (data.get("result") or {}).get("message_id") if isinstance(data.get("result"), dict) else None
            if message_id is None:
                return Delivery("unknown", error="Telegram said ok without a message id")
            return Delivery("sent", provider_id=str(message_id))
        code = data.get("error_code") if isinstance(data.get("error_code"), int) else answer.status_code
        description = self._clean(str(data.get("description") or f"HTTP {answer.status_code}"))
        if code in (401, 404):
            raise ChannelUnavailable(f"Telegram refused the bot token (HUB_TELEGRAM_TOKEN): {description}")
        if code == 429:
            retry_after = (data.get("parameters") or {}).get("retry_after") \
                if isinstance(data.get("parameters"), dict) else None
            wait = f"retry after {retry_after} s" if retry_after is not None else "try later"
            return Delivery("deferred", error=f"Telegram: too many requests ({wait})")
        if code >= 500:
            return Delivery("deferred", error=f"Telegram: {description}")
        if code == 403:
            return Delivery("failed", error=f"Telegram: {description} (the person blocked the bot or left the chat)")
        return Delivery("failed", error=f"Telegram: {description}")

    def _clean(self, text: str) -> str:
        return text.replace(self._token, "<token>")[:300]


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request certainly did not reach Telegram: no connection was ever made."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError) or isinstance(exc, requests.ReadTimeout):
        return False
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # urllib3 wraps the cause in MaxRetryError
    return isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError))
