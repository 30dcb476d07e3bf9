"""The amoCRM page of the admin: whether the account is connected, and connecting it through OAuth.

amoCRM connects through its OAuth redirect: the admin enters the
integration's ID and secret, Hub stores them encrypted with a random
`state`, links the browser to amoCRM's consent page, and amoCRM sends it back
to /connections/amocrm/callback with a code, which Hub exchanges for tokens
at once (a code lives 20 minutes and works once). The state must match both
the one stored and the one in the admin's own session, so a callback forged
by someone else, or replayed, is refused.

Secrets never reach a page: tokens and client secrets are shown masked, and
error messages from amoCRM carry none. Registered through
register_admin_pages with ``source="amocrm"``, so the core's Connections page
links here.
"""

from __future__ import annotations

import hmac
import re
import secrets
from typing import Any, cast
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import URL, DataRequired, Length

from hub.api import (AdminPage, CredentialError, Settings, actor, allow, current_settings, delete_credentials, engine,
                     lazy_gettext, load_credentials, record_audit, save_credentials)
from hub.api import gettext as _
from plugins.amocrm import commands, tokens
from plugins.amocrm.client import AmoError, check_base_url

bp = Blueprint("amocrm_admin", __name__, url_prefix="/connections/amocrm", template_folder="admin_templates")

PAGE = AdminPage(bp, "amocrm_admin.index", {"ru": "amoCRM", "en": "amoCRM"}, order=62, read_role="viewer",
                 write_role="admin", in_menu=False, source="amocrm")

PENDING = "amocrm:oauth-pending"
SESSION_STATE = "amocrm_oauth_state"
_AMO_HOSTS = {"amocrm.ru": "https://www.amocrm.ru/oauth", "amocrm.com": "https://www.amocrm.com/oauth",
              "kommo.com": "https://www.kommo.com/oauth"}
_REFERER = re.compile(r"^[a-z0-9-]{1,63}\.(amocrm\.ru|amocrm\.com|kommo\.com)$")


def _l(message: str) -> str:
    """A label or form error translated when shown, in each reader's language (typed as the str WTForms takes)."""
    return cast(str, lazy_gettext(message))


class AmoCRMForm(FlaskForm):
    base_url = StringField(_l("Account address"), validators=[
        DataRequired(_l("Enter the account's address, e.g. https://shop.amocrm.ru.")),
        URL(require_tld=False, message=_l("That is not an address like https://shop.amocrm.ru.")),
        Length(max=300)])
    client_id = StringField(_l("Integration ID"), validators=[
        DataRequired(_l("Enter the integration ID.")), Length(max=200)])
    client_secret = PasswordField(_l("Secret key"), validators=[
        DataRequired(_l("Enter the secret key.")), Length(max=300)])


def _mask(value: str | None, keep: int = 4) -> str:
    if not value:
        return ""
    return value[:keep] + "…" if len(value) > keep * 2 else "…"


def status(settings: Settings) -> dict[str, Any] | None:
    """How the account is connected, without its secrets; None when it is not."""
    try:
        data, _version = tokens.load(engine(), settings)
    except tokens.NotConnected:
        return None
    account = data.get("account") or {}
    return {"kind": _("long-lived token") if data.get("kind") == "long_lived" else _("OAuth (refreshed automatically)"),
            "base_url": data.get("base_url"), "account": account.get("name") or account.get("subdomain"),
            "expires_at": data.get("expires_at"), "refresh_expires_at": data.get("refresh_expires_at"),
            "webhook": f"/hooks/amocrm/{_mask(data.get('webhook_secret'))}"}


def redirect_uri(settings: Settings) -> str:
    """The address amoCRM sends the browser back to; register it with the integration."""
    base = str(settings.extra.get("public_url") or request.host_url).rstrip("/")
    return base + url_for("amocrm_admin.callback")


def _amo_domain(host: str) -> str | None:
    """Which of amoCRM's own domains `host` is, or is an account of; None for anything else."""
    host = host.lower()
    return next((d for d in _AMO_HOSTS if host == d or host.endswith("." + d)), None)


def authorize_url(base_url: str, client_id: str, state: str) -> str:
    """amoCRM's consent page for this account: www.amocrm.ru (or Kommo) for real accounts, the account
    itself for anything else (the local emulator serves /oauth)."""
    domain = _amo_domain(urlsplit(base_url).hostname or "")
    query = urlencode({"client_id": client_id, "state": state, "mode": "post_message"})
    if domain is not None:
        return f"{_AMO_HOSTS[domain]}?{query}"
    return f"{base_url.rstrip('/')}/oauth?{query}"


@bp.get("")
@allow(read="viewer")
def index() -> Any:
    settings = current_settings()
    try:
        found = status(settings)
    except CredentialError:  # saved under another HUB_SECRET_KEY: only connecting again helps
        found = {"error": _("the saved connection cannot be read: HUB_SECRET_KEY has changed since it was "
                            "saved. Connect again below.")}
    except Exception:  # noqa: BLE001 - a broken stored connection is shown, not a 500
        found = {"error": _("the saved connection cannot be read. Connect again below.")}
    return render_template("amocrm_admin/index.html", status=found, form=AmoCRMForm(),
                           redirect_uri=redirect_uri(settings))


@bp.post("/authorize")
@allow(read=None, write="admin")
def authorize() -> Any:
    form = AmoCRMForm()
    settings = current_settings()
    back = redirect(url_for("amocrm_admin.index"))
    if not form.validate():
        for errors in form.errors.values():
            for error in errors:
                flash(_("amoCRM: %(error)s", error=error), "error")
        return back
    try:
        base_url = check_base_url(form.base_url.data or "")
    except ValueError as exc:
        flash(_("amoCRM: %(error)s", error=exc), "error")
        return back
    state = secrets.token_urlsafe(24)
    pending = {"base_url": base_url, "client_id": (form.client_id.data or "").strip(),
               "client_secret": (form.client_secret.data or "").strip(), "redirect_uri": redirect_uri(settings),
               "state": state}
    with engine().begin() as conn:
        save_credentials(conn, PENDING, pending, settings.require_secret_key())
    session[SESSION_STATE] = state
    # A page with a link rather than a redirect: the admin sees where they are sent, and the page's
    # Content-Security-Policy (form-action) need not allow every CRM address a form might lead to.
    return render_template("amocrm_admin/continue.html", url=authorize_url(base_url, pending["client_id"], state),
                           base_url=base_url)


def _take_pending(settings: Settings) -> dict[str, Any] | None:
    with engine().begin() as conn:
        found = load_credentials(conn, PENDING, settings.require_secret_key())
        delete_credentials(conn, PENDING)
    return found[0] if found else None


@bp.get("/callback")
@allow(read="admin")
def callback() -> Any:
    """Where amoCRM sends the browser back with ?code=…&state=…&referer=SUBDOMAIN.amocrm.ru."""
    settings = current_settings()
    back = redirect(url_for("amocrm_admin.index"))
    given = request.args.get("state", "")
    expected = session.pop(SESSION_STATE, None)
    if request.args.get("error"):
        _take_pending(settings)
        flash(_("amoCRM did not grant access (the request was declined). Nothing was stored."), "error")
        return back
    pending = _take_pending(settings)
    if (pending is None or not expected or not given
            or not hmac.compare_digest(given.encode(), str(pending.get("state", "")).encode())
            or not hmac.compare_digest(given.encode(), str(expected).encode())):
        flash(_("amoCRM: this sign-in link is not the one Hub started (or it was used already). "
                "Start again with “Connect amoCRM”."), "error")
        return back
    code = request.args.get("code", "")
    if not code:
        flash(_("amoCRM sent no authorization code back. Start again with “Connect amoCRM”."), "error")
        return back
    base_url = pending["base_url"]
    referer = request.args.get("referer", "").lower()
    if _REFERER.match(referer) and _amo_domain(urlsplit(base_url).hostname or "") is not None:
        base_url = f"https://{referer}"  # the account the person actually chose on amoCRM's page
    try:
        data = tokens.exchange_code(base_url, pending["client_id"], pending["client_secret"], pending["redirect_uri"],
                                    code)
        account = commands.connect(settings, data)
    except (AmoError, ValueError) as exc:
        flash(_("amoCRM: %(error)s", error=exc), "error")
        return back
    name = account.get("name") or account.get("subdomain") or base_url
    with engine().begin() as conn:
        record_audit(conn, actor(), "connected", source="amocrm", account=str(name), base_url=base_url)
    flash(_("Connected to amoCRM account %(name)s. Tokens are stored encrypted and refreshed automatically. "
            "Press “Sync now” to read its contacts.", name=name), "ok")
    return back
