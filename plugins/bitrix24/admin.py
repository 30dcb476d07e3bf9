"""The Bitrix24 page of the admin: whether the portal is connected, and connecting it by webhook URL.

Registered through register_admin_pages with ``source="bitrix24"``, so the
core's Connections page links here. The webhook URL is checked with one call
before it is stored; its secret code never reaches a page.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import URL, DataRequired, Length, Optional

from hub.api import (AdminPage, CredentialError, Settings, actor, allow, current_settings, engine, lazy_gettext,
                     record_audit)
from hub.api import gettext as _
from plugins.bitrix24 import connection
from plugins.bitrix24.client import Bitrix24Error, check_webhook_url
from plugins.bitrix24.commands import user_name

bp = Blueprint("bitrix24_admin", __name__, url_prefix="/connections/bitrix24", template_folder="admin_templates")

PAGE = AdminPage(bp, "bitrix24_admin.index", {"ru": "Битрикс24", "en": "Bitrix24"}, order=61, read_role="viewer",
                 write_role="admin", in_menu=False, source="bitrix24")


def _l(message: str) -> str:
    """A label or form error translated when shown, in each reader's language (typed as the str WTForms takes)."""
    return cast(str, lazy_gettext(message))


class Bitrix24Form(FlaskForm):
    webhook = StringField(_l("Incoming webhook URL"), validators=[
        DataRequired(_l("Paste the webhook URL from Bitrix24.")),
        URL(require_tld=False, message=_l("That is not a URL.")), Length(max=500)])
    application_token = StringField(_l("Application token (optional, for events)"),
                                    validators=[Optional(), Length(max=200)])


def status(settings: Settings) -> dict[str, Any] | None:
    """How the portal is connected, without its secrets; None when it is not."""
    try:
        data, _version = connection.load(engine(), settings)
    except connection.NotConnected:
        return None
    endpoint = data.get("url") or data.get("client_endpoint") or ""
    return {"kind": _("incoming webhook") if data["kind"] == "webhook" else _("OAuth app"),
            "portal": urlsplit(endpoint).netloc, "events": bool(data.get("application_token"))}


@bp.get("")
@allow(read="viewer")
def index() -> Any:
    try:
        found = status(current_settings())
    except CredentialError:  # saved under another HUB_SECRET_KEY: only connecting again helps
        found = {"error": _("the saved connection cannot be read: HUB_SECRET_KEY has changed since it was "
                            "saved. Connect again below.")}
    except Exception:  # noqa: BLE001 - a broken stored connection is shown, not a 500
        found = {"error": _("the saved connection cannot be read. Connect again below.")}
    return render_template("bitrix24_admin/index.html", status=found, form=Bitrix24Form())


@bp.post("")
@allow(read=None, write="admin")
def connect() -> Any:
    form = Bitrix24Form()
    settings = current_settings()
    back = redirect(url_for("bitrix24_admin.index"))
    if not form.validate():
        for errors in form.errors.values():
            for error in errors:
                flash(_("Bitrix24: %(error)s", error=error), "error")
        return back
    try:
        data: dict[str, Any] = {"kind": "webhook", "url": check_webhook_url(form.webhook.data or "")}
        if form.application_token.data:
            data["application_token"] = form.application_token.data.strip()
        client = connection.client(settings, engine(), data)
        profile = client.call("profile").get("result") or {}
    except ValueError as exc:
        flash(_("Bitrix24: %(error)s", error=exc), "error")
        return back
    except Bitrix24Error as exc:
        flash(_("Bitrix24 refused the connection: %(error)s", error=exc), "error")
        return back
    connection.save(engine(), settings, data)
    with engine().begin() as conn:
        record_audit(conn, actor(), "connected", source="bitrix24", portal=client.auth.host)
    flash(_("Connected to Bitrix24 %(host)s as %(who)s. Press “Sync now” to read its contacts.",
            host=client.auth.host, who=user_name(profile)), "ok")
    return back
