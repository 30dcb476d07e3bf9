"""The public side of click and open tracking: the redirect and the picture.

    GET /c/TOKEN      records a click on the letter's link TOKEN names, then 302 to it
    GET /o/TOKEN.gif  records an open, answers a transparent 1×1 GIF that is never cached
                      (the picture still, but nothing recorded, once the reader was erased)

A HEAD request (link checkers, some mail scanners) is answered the same way
but counts nothing; every GET counts, and the reports count each letter once.
A token that is not ours, or names a link the letter does not hold, gets a
page saying the link does not work (404); a letter whose text is gone (its
reader was erased) gets «Ссылка больше не действует» (410). Nothing about the
reader or the link is logged.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from flask import Blueprint, render_template, request
from sqlalchemy import select
from werkzeug.urls import iri_to_uri
from werkzeug.utils import redirect
from werkzeug.wrappers import Response

from hub.api import (Message, company, current_language, current_settings, get_engine, gettext as _,
                     record_message_event)
from plugins.mailing import tracking

bp = Blueprint("mailing_public", __name__, template_folder="templates")
messages_t = Message.__table__
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_CACHE = {"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0", "Pragma": "no-cache",
            "Expires": "0"}


def _page(title: str, text: str, status: int) -> Response:
    body = render_template("mailing_public/message.html", title=title, text=text, lang=current_language(),
                           company=company(current_settings()))
    return Response(body, status=status, mimetype="text/html", headers={"Cache-Control": "no-store"})


def _broken() -> Response:
    return _page(_("The link does not work"),
                 _("It looks like the link was not copied whole. Open it from the email again."), 404)


def _gone() -> Response:
    return _page(_("The link no longer works"),
                 _("This letter is no longer kept, so its links lead nowhere. Visit the shop's website instead."),
                 410)


def _counts() -> bool:
    return request.method == "GET"


@bp.get("/c/<path:token>")
def click(token: str) -> Response:
    settings = current_settings()
    found = tracking.read_click(settings, token)
    if found is None:
        return _broken()
    message_id, index = found
    with get_engine(settings.database_url).begin() as conn:
        row = conn.execute(select(messages_t.c.body_html, messages_t.c.body_text)
                           .where(messages_t.c.id == message_id)).first()
        if row is None or (not row.body_html and not row.body_text):
            return _gone()
        links = tracking.targets(row.body_html, row.body_text)
        if index >= len(links):
            return _broken()
        url = links[index]
        if _counts():
            record_message_event(conn, settings, message_id, "click", url=url,
                                 uid=_once_per(f"click:{message_id}:{index}", CLICK_BUCKET_S))
    response = redirect(iri_to_uri(url), code=302)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/o/<path:token>")
def opened(token: str) -> Response:
    settings = current_settings()
    message_id = tracking.read_open(settings, token[:-4]) if token.endswith(".gif") else None
    if message_id is None:
        return Response(PIXEL, status=404, mimetype="image/gif", headers=NO_CACHE)
    if _counts():
        with get_engine(settings.database_url).begin() as conn:
            row = conn.execute(select(messages_t.c.body_html, messages_t.c.body_text)
                               .where(messages_t.c.id == message_id)).first()
            if row is not None and (row.body_html or row.body_text):  # an erased reader's letter records nothing
                record_message_event(conn, settings, message_id, "open",
                                     uid=_once_per(f"open:{message_id}", OPEN_BUCKET_S))
    return Response(PIXEL, mimetype="image/gif", headers=NO_CACHE)


CLICK_BUCKET_S = 600  # the same link of one letter clicked again within ten minutes is one click
OPEN_BUCKET_S = 3600  # a letter shown again within the hour is one open


def _once_per(what: str, seconds: int) -> str:
    """A uid that repeats within the period: reloading a link (or a bot replaying it) adds no rows or webhooks."""
    return f"{what}:{int(time.time()) // seconds}"


def register(app: Any) -> None:
    app.register_blueprint(bp)
