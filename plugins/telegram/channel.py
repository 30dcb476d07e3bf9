"""The `telegram` channel: a message to the chat its contact linked, as Telegram wants it sent.

Limits. Telegram takes about 30 messages a second from a bot and one a second
in one chat. The overall pace is a shared bucket (hub.api.limiter, in Redis
when HUB_REDIS_URL is set, so every worker counts against it) at
HUB_TELEGRAM_RATE, default 25/s (at most 28). A chat is free again one second after
Telegram answered the last message to it (not after it was sent): the
answer comes after the message arrived, so two messages never arrive within
a second however slow the network or the machine.

Answers. ok → sent (provider id: Telegram's message_id); 429 → deferred for
at least the retry_after Telegram gave; 5xx → deferred; 403 (the person
blocked the bot, or deleted their account) → failed, the chat unlinked and
telegram consent withdrawn with Telegram's answer as evidence; 400 "chat not
found" → failed and unlinked; other 400 (text refused) → failed; 401/404 (the
token is wrong) → ChannelUnavailable. No connection made → deferred; the
connection broke after the request left → unknown (Telegram has no
idempotency key that would make a second try safe).

The text is the message's plain text body, sent without parse mode, so
nothing in it (a name with < or *) is read as markup.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from hub.api import (OWN_ADDRESS, ChannelUnavailable, Delivery, Limiter, Outgoing, Settings, SettingsError, get_engine,
                     limiter, redis_connection, utcnow)
from plugins.telegram import config as bot_config
from plugins.telegram import linking
from plugins.telegram.bot import Bot, BotError

MAX_TEXT = 4096  # Telegram's limit for one message
DEFAULT_RATE = 25.0
MAX_RATE = 28.0
CHAT_GAP = 1.0  # seconds between the answer to one message to a chat and the next message to it
LINK_REPLY_GAP = 2 * CHAT_GAP  # after a chat was linked: the bot's reply left a moment after the link was written
_IN_FLIGHT = 30_000  # ms a chat stays taken while its message is on the way (a crashed worker frees it then)


def overall_pace(settings: Settings) -> Limiter:
    """The bot's bucket, shared by the channel and the replies to people, by every worker when Redis is set.

    Paced one by one (no burst) and at most 28/s: a message is sent only after
    the answer to the one before, so at most rate + 2 arrive within any second
    however the network bunches them, under Telegram's 30.
    """
    try:
        rate = float(settings.extra.get("telegram_rate") or DEFAULT_RATE)
    except (TypeError, ValueError):
        raise SettingsError("HUB_TELEGRAM_RATE: messages per second, e.g. 25") from None
    if not 0 < rate <= MAX_RATE:
        raise SettingsError(f"HUB_TELEGRAM_RATE: more than 0 and at most {MAX_RATE:g} messages per second "
                            "(Telegram's own limit is about 30)")
    return limiter(settings, "telegram:bot", rate, 1)


class ChatPace:
    """One message at a time per chat, the next one a second after Telegram answered the last.

    In Redis (SET NX with an expiry) when configured, so workers on other hosts
    wait too; else in this process.
    """

    _free_at: dict[int, float] = {}  # without Redis: one per process, shared by every channel and poll in it
    _lock = threading.Lock()

    def __init__(self, settings: Settings) -> None:
        self.redis = redis_connection(settings) if settings.redis_url else None

    def take(self, chat_id: int) -> None:
        while (wait := self._try(chat_id)) > 0:
            time.sleep(wait)

    def _try(self, chat_id: int) -> float:
        if self.redis is not None:
            key = f"hub:telegram:chat:{chat_id}"
            if self.redis.set(key, "1", nx=True, px=_IN_FLIGHT):
                return 0.0
            left = self.redis.pttl(key)
            return max(float(left), 10.0) / 1000 if left and left > 0 else 0.01
        with self._lock:
            now = time.monotonic()
            free_at = self._free_at.get(chat_id, 0.0)
            if free_at > now:
                return free_at - now
            self._free_at[chat_id] = now + _IN_FLIGHT / 1000
            if len(self._free_at) > 10_000:  # forget chats long free
                for chat in [c for c, t in self._free_at.items() if t <= now]:
                    del self._free_at[chat]
            return 0.0

    def answered(self, chat_id: int) -> None:
        if self.redis is not None:
            self.redis.set(f"hub:telegram:chat:{chat_id}", "1", px=int(CHAT_GAP * 1000))
            return
        with self._lock:
            self._free_at[chat_id] = time.monotonic() + CHAT_GAP


class TelegramChannel:
    """`factory(settings)` of the channel `telegram`."""

    name = "telegram"
    # A message goes to the chat linked to its contact, not to one of their phones or emails:
    # no address of theirs is suppressed or needed (can_contact refuses a contact without a chat).
    address_kind = OWN_ADDRESS

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.config = bot_config.load(settings)
        self.pace = overall_pace(settings)
        self.chats = ChatPace(settings)
        self.engine = get_engine(settings.database_url)
        self.bot: Bot | None = None

    def __repr__(self) -> str:
        return f"TelegramChannel({self.config.api_url!r})"

    def open(self) -> None:
        if self.bot is None:
            self.bot = Bot(self.config)

    def close(self) -> None:
        if self.bot is not None:
            self.bot.close()
            self.bot = None

    def send(self, message: Outgoing) -> Delivery:
        with self.engine.connect() as conn:
            linked = linking.linked_chat(conn, message.contact_id)
        if linked is None:
            return Delivery("failed", error="no linked Telegram chat")
        chat_id, linked_at = linked
        # The bot answered the /start that linked the chat just after linked_at (the answer rides on
        # the webhook's reply, which leaves once the link is written), maybe from another process.
        since = (utcnow() - linked_at).total_seconds()
        if 0 <= since < LINK_REPLY_GAP:
            time.sleep(LINK_REPLY_GAP - since)
        text = message.text.strip()
        if not text:
            return Delivery("failed", error="the message has no text")
        if len(text) > MAX_TEXT:
            return Delivery("failed", error=f"the text has {len(text)} characters; Telegram takes at most {MAX_TEXT}")
        self.open()
        assert self.bot is not None
        self.chats.take(chat_id)
        try:
            self.pace.acquire()
            result = self.bot.call("sendMessage", chat_id=chat_id, text=text,
                                   link_preview_options={"is_disabled": True})
        except BotError as exc:
            return self._refused(message, chat_id, exc)
        finally:
            self.chats.answered(chat_id)
        message_id = result.get("message_id") if isinstance(result, dict) else None
        if message_id is None:
            return Delivery("unknown", error="Telegram said ok without a message id")
        return Delivery("sent", provider_id=str(message_id))

    def _refused(self, message: Outgoing, chat_id: int, exc: BotError) -> Delivery:
        said = f"Telegram: {exc}"
        if exc.code == 0:
            if exc.never_sent:
                return Delivery("deferred", error=said)
            return Delivery("unknown", error=f"{said}; the connection broke after the message was handed over: "
                                             "check the chat before sending again")
        if exc.code in (401, 404):
            raise ChannelUnavailable(f"Telegram refused the bot token (HUB_TELEGRAM_BOT_TOKEN): {exc.description}")
        if exc.code == 429:
            return Delivery("deferred", error=said, retry_after=exc.retry_after if exc.retry_after else 1.0)
        if exc.code >= 500:
            return Delivery("deferred", error=said, retry_after=exc.retry_after)
        if exc.code == 403 or (exc.code == 400 and "chat not found" in exc.description.lower()):
            self._unlink(message, chat_id, exc)
        return Delivery("failed", error=said)

    def _unlink(self, message: Outgoing, chat_id: int, exc: BotError) -> None:
        """The person blocked the bot (or the chat is gone): forget the chat and withdraw consent, with the answer."""
        evidence: dict[str, Any] = {"chat_id": chat_id, "message_id": message.id, "error_code": exc.code,
                                    "description": exc.description, "how": "Bot API answer"}
        with self.engine.begin() as conn:
            linking.unlink_chat(conn, chat_id, reason="blocked" if exc.code == 403 else "chat not found",
                                evidence=evidence)
