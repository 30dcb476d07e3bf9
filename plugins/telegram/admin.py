"""The «Telegram» page of the admin, and the Telegram part of each contact's card.

Everyone signed in reads them; nothing here changes anything or shows the
token. The page tells whether the bot answers (getMe, with a short timeout so
a slow Telegram never holds the page), how many chats are linked, how
updates arrive, and how to give people their link. The card shows whether
the contact linked a chat and their own deep link to send them.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template
from markupsafe import Markup
from sqlalchemy import select

from hub.api import AdminPage, SettingsError, allow, current_settings, engine
from plugins.telegram import status as bot_status
from plugins.telegram.bot import BotError
from plugins.telegram.models import TelegramChat

PAGE_TIMEOUT = 3.0  # seconds the page waits for getMe
bp = Blueprint("telegram_admin", __name__, url_prefix="/telegram", template_folder="admin_templates")


def _card(conn: Any, contact_id: int) -> Markup | None:
    settings = current_settings()
    row = conn.execute(select(TelegramChat.__table__).where(TelegramChat.__table__.c.contact_id == contact_id)).first()
    link = None
    try:
        link = bot_status.deep_link(settings, contact_id, timeout=PAGE_TIMEOUT)
    except (SettingsError, BotError):
        if row is None:
            return None
    return Markup(render_template("telegram_admin/card.html", chat=row, link=link))


PAGE = AdminPage(bp, "telegram_admin.index", {"ru": "Telegram", "en": "Telegram"}, order=72, read_role="viewer",
                 write_role=None, icon="✈", contact_section=_card)


@bp.get("/")
@allow(read="viewer")
def index() -> Any:
    found = bot_status.read(engine(), current_settings(), timeout=PAGE_TIMEOUT)
    return render_template("telegram_admin/index.html", status=found)
