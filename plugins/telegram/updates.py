"""How the bot hears people: a webhook Telegram calls, or getUpdates read from a schedule.

Webhook (when Hub has a public address): POST {HUB_PUBLIC_URL}/hooks/telegram,
set with `hub telegram webhook set`. Telegram sends the secret given to
setWebhook in the X-Telegram-Bot-Api-Secret-Token header; an update without
it is refused, so nobody else can press Start or /stop for a chat. The update
is handled at once (a few rows) and the reply goes back in the answer itself
(the Bot API lets a webhook answer with one method call), so nothing waits.

Polling (no public address): the schedule `telegram-updates` reads getUpdates
every HUB_TELEGRAM_POLL_SECONDS (default 60; 0 turns it off) on a worker when
Redis is configured. The offset is kept in telegram_state, advanced in the
same transaction as the update's effects, so an update is acted on once
even when a run stops half way.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from flask import Blueprint, request
from sqlalchemy import Engine, select

from hub.api import (N_, Settings, SettingsError, current_settings, get_engine, insert_for, load_settings,
                     schedule_interval)
from plugins.telegram import config as bot_config
from plugins.telegram import linking
from plugins.telegram.bot import Bot, BotError
from plugins.telegram.channel import ChatPace, overall_pace
from plugins.telegram.models import TelegramState

log = logging.getLogger(__name__)
bp = Blueprint("telegram_updates", __name__)
state_t = TelegramState.__table__
OFFSET = "updates_offset"
MAX_BODY = 256 * 1024  # an update is a few kilobytes
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
DEFAULT_POLL_SECONDS = 60


@bp.post("/hooks/telegram")
def receive() -> Any:
    settings = current_settings()
    try:
        config = bot_config.load(settings)
    except SettingsError:
        return {"error": "the Telegram bot is not set up"}, 503
    given = request.headers.get(SECRET_HEADER, "")
    if not config.webhook_secret or not hmac.compare_digest(given.encode(), config.webhook_secret.encode()):
        log.warning("telegram: an update without the right secret token was refused")
        return {"error": "secret token does not match"}, 403
    if (request.content_length or 0) > MAX_BODY:
        return {"error": "too large"}, 413
    raw = request.get_data(cache=False)
    if len(raw) > MAX_BODY:
        return {"error": "too large"}, 413
    try:
        update = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: JSON nested thousands deep
        return {"error": "the body is not JSON"}, 400
    try:
        with get_engine(settings.database_url).begin() as conn:
            handled = linking.handle(conn, settings, config, update)
    except linking.BadUpdate as exc:
        return {"error": str(exc)}, 400
    if handled.reply is None:
        return {}, 200
    # The reply rides on the answer: one method call the Bot API makes for us. It is a message to
    # that chat like any other: the channel waits its second before the next one (in Redis when
    # configured; another process without Redis sees the chat's link time, see channel.send).
    ChatPace(settings).answered(handled.reply.chat_id)
    return {"method": "sendMessage", "chat_id": handled.reply.chat_id, "text": handled.reply.text}, 200


def _offset(conn: Any) -> int:
    value = conn.execute(select(state_t.c.value).where(state_t.c.key == OFFSET)).scalar()
    return int(value) if value and value.lstrip("-").isdigit() else 0


def _save_offset(conn: Any, offset: int) -> None:
    ins = insert_for(conn, state_t)
    conn.execute(ins.on_conflict_do_update(index_elements=["key"], set_={"value": str(offset)}),
                 {"key": OFFSET, "value": str(offset)})


def poll(engine: Engine, settings: Settings, *, limit: int = 100) -> dict[str, int]:
    """Read the waiting updates once and act on each; the counts by outcome."""
    config = bot_config.load(settings)
    counts: dict[str, int] = {"updates": 0}
    with engine.connect() as conn:
        offset = _offset(conn)
    pace, chats = overall_pace(settings), ChatPace(settings)
    with Bot(config) as bot:
        updates = bot.call("getUpdates", offset=offset, limit=limit, timeout=0, allowed_updates=["message"])
        for update in updates if isinstance(updates, list) else []:
            update_id = update.get("update_id") if isinstance(update, dict) else None
            if not isinstance(update_id, int) or update_id < offset:
                continue
            try:
                with engine.begin() as conn:
                    try:
                        handled = linking.handle(conn, settings, config, update)
                    except linking.BadUpdate:
                        handled = linking.Handled("ignored")
                    _save_offset(conn, update_id + 1)
            except Exception as exc:  # noqa: BLE001 - one update Hub cannot take must not stop every later one
                log.warning("telegram: update %s skipped: %s", update_id, type(exc).__name__)
                with engine.begin() as conn:
                    _save_offset(conn, update_id + 1)
                handled = linking.Handled("ignored")
            counts["updates"] += 1
            counts[handled.outcome] = counts.get(handled.outcome, 0) + 1
            if handled.reply is not None:
                chats.take(handled.reply.chat_id)
                pace.acquire()
                try:
                    bot.call("sendMessage", chat_id=handled.reply.chat_id, text=handled.reply.text)
                except BotError as exc:
                    log.info("telegram: the reply to update %s was not sent: %s", update_id, exc)
                finally:
                    chats.answered(handled.reply.chat_id)
    return counts


def poll_job() -> dict[str, int]:
    """Queue job: one getUpdates pass (settings read afresh, like every job)."""
    settings = load_settings()
    return poll(get_engine(settings.database_url), settings)


def poll_seconds(settings: Settings) -> int:
    """HUB_TELEGRAM_POLL_SECONDS between getUpdates passes (0 turns polling off)."""
    return int(schedule_interval(settings, "telegram_poll_seconds", DEFAULT_POLL_SECONDS).total_seconds())


def scheduled(run: Any) -> dict[str, Any]:
    """The schedule's run: one pass on a worker when Redis is configured, else here."""
    from hub.api import enqueue

    done = enqueue(run.settings, poll_job, queue="low", job_id="telegram-poll")
    if not done.inline:
        return {"telegram": "enqueued"}  # shown as «telegram: поставлена в очередь»
    counts = dict(done.result or {})
    return {N_("messages read"): counts.get("updates", 0), N_("chats linked"): counts.get("linked", 0),
            N_("chats unsubscribed"): counts.get("stopped", 0), N_("links refused"): counts.get("refused", 0)}
