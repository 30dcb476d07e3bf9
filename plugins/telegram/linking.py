"""What a person's messages to the bot do: /start with a signed payload links their chat, /stop unlinks it.

Linking records consent for channel ``telegram``, purpose marketing, with the
evidence a regulator asks for: which chat and Telegram user pressed Start on
which signed link, in which update, when. The contact is the one the link
names as it is today (after merges); an erased person's link links nothing.
One chat belongs to one contact and one contact has one chat: the latest
link wins and the earlier link is removed (a shared family phone, a new
Telegram account). A link is a bearer token, though, and gets forwarded: so
another Telegram account cannot take a contact's chat over with a link made
before (or on the day) the contact's chat was linked — a forwarded letter or
SMS, a screenshot of the link — only with a link made after it, such as the
one the preference centre gives that day. Anything else a person writes gets
a short hint; a forged or old link gets a polite answer and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, select, update

from hub.api import (Settings, current_contact_id, gettext as _, record_audit, record_consent, use_language, utcnow)
from plugins.telegram import payload
from plugins.telegram.config import BotSettings
from plugins.telegram.models import TelegramChat

log = logging.getLogger(__name__)
chats_t = TelegramChat.__table__
CHANNEL = "telegram"
PURPOSE = "marketing"
SOURCE = "telegram"
MAX_ID = 2**53  # Telegram's ids fit in 52 bits; anything larger is not from Telegram


@dataclass(frozen=True)
class Reply:
    chat_id: int
    text: str


@dataclass(frozen=True)
class Handled:
    """What one update did: `outcome` for reports and tests, `reply` for the bot to send (or None)."""

    outcome: str  # linked | stopped | refused | hint | ignored
    contact_id: int | None = None
    reply: Reply | None = None


class BadUpdate(ValueError):
    """Not an Update in the Bot API's shape."""


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and abs(value) < MAX_ID else None


def parse(update: Any) -> tuple[int, dict[str, Any] | None]:
    """(update_id, the message if it is a private text message, else None); BadUpdate when malformed."""
    if not isinstance(update, dict) or _int(update.get("update_id")) is None:
        raise BadUpdate("an update is a JSON object with an integer update_id")
    message = update.get("message")
    if not isinstance(message, dict):
        return update["update_id"], None
    chat = message.get("chat")
    if not isinstance(chat, dict) or _int(chat.get("id")) is None or not isinstance(message.get("text"), str):
        return update["update_id"], None
    if chat.get("type", "private") != "private":
        return update["update_id"], None
    return update["update_id"], message


def _command(text: str) -> tuple[str, str]:
    """("/start", "PAYLOAD") from "/start PAYLOAD" or "/start@ShopBot PAYLOAD"."""
    head, _sep, rest = text.strip().partition(" ")
    return head.split("@", 1)[0].lower(), rest.strip()


def handle(conn: Connection, settings: Settings, config: BotSettings, update: Any,
           *, now: dt.datetime | None = None) -> Handled:
    """Act on one update, in the caller's transaction; the reply is in the shop's language."""
    update_id, message = parse(update)
    if message is None:
        return Handled("ignored")
    chat_id = message["chat"]["id"]
    with use_language(settings.language):
        command, argument = _command(message["text"])
        if command == "/start" and argument:
            return _start(conn, settings, config, update_id, message, argument, now or utcnow())
        if command == "/stop":
            contact_id = unlink_chat(conn, chat_id, reason="/stop", evidence=_evidence(update_id, message, now))
            if contact_id is None:
                return Handled("stopped", None, Reply(chat_id, _("This chat was not subscribed to anything.")))
            return Handled("stopped", contact_id, Reply(chat_id, _("Done: we will not write to you here any more. "
                                                                   "To subscribe again, open the link from our "
                                                                   "letter or SMS.")))
        return Handled("hint", None, Reply(chat_id, _("To receive our news here, open the Telegram link from our "
                                                      "letter, SMS or subscription settings page. To stop: /stop")))


def _evidence(update_id: int, message: dict[str, Any], now: dt.datetime | None) -> dict[str, Any]:
    sender: dict[str, Any] = message["from"] if isinstance(message.get("from"), dict) else {}
    username = sender.get("username")
    return {"chat_id": message["chat"]["id"], "telegram_user_id": _int(sender.get("id")),
            "username": str(username)[:64] if isinstance(username, str) else None, "update_id": update_id,
            "message_date": _int(message.get("date")), "at": (now or utcnow()).isoformat(), "how": "deep link"}


def _start(conn: Connection, settings: Settings, config: BotSettings, update_id: int, message: dict[str, Any],
           argument: str, now: dt.datetime) -> Handled:
    chat_id = message["chat"]["id"]
    sorry = Reply(chat_id, _("Sorry, this link does not work any more. Please open the Telegram link from our "
                             "latest letter or SMS, or from the subscription settings page."))
    try:
        named, made_on = payload.read_dated(settings, argument, max_days=config.link_days, now=now)
    except payload.PayloadError as exc:
        log.info("telegram: update %s: %s", update_id, exc)
        return Handled("refused", None, sorry)
    contact_id = current_contact_id(conn, named)
    if contact_id is None:  # erased, or never existed: nothing is linked, nothing said about whom
        return Handled("refused", None, sorry)
    done = Reply(chat_id, _("Done! From now on we will write to you here. To unsubscribe: /stop"))
    if conn.execute(select(chats_t.c.id).where(chats_t.c.chat_id == chat_id, chats_t.c.contact_id == contact_id,
                                               chats_t.c.update_id == update_id)).first() is not None:
        return Handled("linked", contact_id, done)  # the same update delivered again: recorded once
    evidence = _evidence(update_id, message, now)
    if _taken_over(conn, contact_id, chat_id, evidence["telegram_user_id"], made_on):
        log.info("telegram: update %s: a link no newer than the contact's chat, from another account", update_id)
        return Handled("refused", None, Reply(chat_id, _(
            "This link is already in use in another Telegram account. If you want our messages here instead, "
            "open the Telegram link from the subscription settings page (in any of our letters) tomorrow.")))
    link_chat(conn, contact_id, chat_id, user_id=evidence["telegram_user_id"], username=evidence["username"],
              update_id=update_id, now=now)
    record_consent(conn, contact_id, CHANNEL, PURPOSE, "granted", source=SOURCE,
                   evidence={**evidence, "link_contact_id": named}, at=now)
    record_audit(conn, SOURCE, "telegram.linked", contact_id=contact_id, update_id=update_id)
    return Handled("linked", contact_id, done)


def _taken_over(conn: Connection, contact_id: int, chat_id: int, user_id: int | None, made_on: dt.date) -> bool:
    """Whether another account's chat holds the contact since before this link was made (see the module)."""
    held = conn.execute(select(chats_t.c.chat_id, chats_t.c.user_id, chats_t.c.linked_at)
                        .where(chats_t.c.contact_id == contact_id)).first()
    if held is None or held.chat_id == chat_id or (user_id is not None and held.user_id == user_id):
        return False
    return made_on <= _aware(held.linked_at).date()


def link_chat(conn: Connection, contact_id: int, chat_id: int, *, user_id: int | None, username: str | None,
              update_id: int | None, now: dt.datetime) -> None:
    """The chat is the contact's now: any earlier link of the chat or of the contact is removed first."""
    conn.execute(delete(chats_t).where((chats_t.c.chat_id == chat_id) | (chats_t.c.contact_id == contact_id)))
    conn.execute(chats_t.insert().values(contact_id=contact_id, chat_id=chat_id, user_id=user_id, username=username,
                                         linked_at=now, update_id=update_id))


def unlink_chat(conn: Connection, chat_id: int, *, reason: str, evidence: dict[str, Any]) -> int | None:
    """Forget the chat and withdraw its contact's telegram consent; the contact id, or None if it was not linked."""
    contact_id = conn.execute(select(chats_t.c.contact_id).where(chats_t.c.chat_id == chat_id)).scalar()
    if contact_id is None:
        return None
    conn.execute(delete(chats_t).where(chats_t.c.chat_id == chat_id))
    record_consent(conn, contact_id, CHANNEL, PURPOSE, "withdrawn", source=SOURCE,
                   evidence={**evidence, "reason": reason})
    record_audit(conn, SOURCE, "telegram.unlinked", contact_id=contact_id, reason=reason)
    return contact_id


def chat_of(conn: Connection, contact_id: int | None) -> int | None:
    found = linked_chat(conn, contact_id)
    return found[0] if found is not None else None


def linked_chat(conn: Connection, contact_id: int | None) -> tuple[int, dt.datetime] | None:
    """The contact's chat and when it was linked (the bot answered then), or None."""
    if contact_id is None:
        return None
    row = conn.execute(select(chats_t.c.chat_id, chats_t.c.linked_at).where(chats_t.c.contact_id == contact_id)).first()
    return (row.chat_id, row.linked_at) if row is not None else None


# --- merges, unmerges and erasure ---------------------------------------------------------

def follow_merge(conn: Connection, survivor_id: int, merged_id: int, merge_id: int) -> None:
    """The merged contact's chat goes to the survivor; of two chats, the one linked later stays."""
    rows = {r.contact_id: r for r in conn.execute(select(chats_t).where(
        chats_t.c.contact_id.in_([survivor_id, merged_id])))}
    moving, staying = rows.get(merged_id), rows.get(survivor_id)
    if moving is None:
        return
    if staying is not None:
        if _aware(staying.linked_at) >= _aware(moving.linked_at):
            conn.execute(delete(chats_t).where(chats_t.c.id == moving.id))
            return
        conn.execute(delete(chats_t).where(chats_t.c.id == staying.id))
    conn.execute(update(chats_t).where(chats_t.c.id == moving.id).values(
        contact_id=survivor_id, merge_id=merge_id, previous_contact_id=merged_id))


def follow_unmerge(conn: Connection, survivor_id: int, restored_id: int, merge_id: int) -> None:
    """A chat that merge moved goes back to the restored contact (unless that one linked a chat since)."""
    if chat_of(conn, restored_id) is not None:
        return
    conn.execute(update(chats_t).where(chats_t.c.merge_id == merge_id, chats_t.c.previous_contact_id == restored_id,
                                       chats_t.c.contact_id == survivor_id)
                 .values(contact_id=restored_id, merge_id=None, previous_contact_id=None))


def forget(conn: Connection, contact_id: int) -> None:
    conn.execute(delete(chats_t).where(chats_t.c.contact_id == contact_id))


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
