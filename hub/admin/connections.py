"""Connections: connect Bitrix24 and amoCRM, sync now, and each source's run history and errors.

Bitrix24 connects by an incoming-webhook URL, checked with one call before
it is stored. amoCRM connects through its OAuth redirect: the admin enters
the integration's ID and secret, Hub stores them encrypted with a random
`state`, links the browser to amoCRM's consent page, and amoCRM sends it back
to /connections/amocrm/callback with a code, which Hub exchanges for tokens
at once (a code lives 20 minutes and works once). The state must match both
the one stored and the one in the admin's own session, so a callback forged
by someone else, or replayed, is refused.

Secrets never reach a page: webhook codes, tokens and client secrets are
shown masked, and error messages from the CRMs carry none.
"""

from __future__ import annotations

import hmac
import re
import secrets
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from sqlalchemy import delete, select

from hub import credentials, jobs, plugins, queue
from hub.admin import audit, overview
from hub.admin.access import actor, allow, engine
from hub.admin.app import current_settings
from hub.admin.forms import AmoCRMForm, Bitrix24Form, SyncForm
from hub.config import Settings
from hub.models import Credential, SyncRun

bp = Blueprint("connections", __name__, url_prefix="/connections")
runs_t = SyncRun.__table__
credentials_t = Credential.__table__
AMO_PENDING = "amocrm:oauth-pending"
AMO_SESSION_STATE = "amocrm_oauth_state"
_AMO_HOSTS = {"amocrm.ru": "https://www.amocrm.ru/oauth", "amocrm.com": "https://www.amocrm.com/oauth",
              "kommo.com": "https://www.kommo.com/oauth"}
_REFERER = re.compile(r"^[a-z0-9-]{1,63}\.(amocrm\.ru|amocrm\.com|kommo\.com)$")


def history(conn: Any, source: str, limit: int = 15) -> list[dict[str, Any]]:
    rows = conn.execute(select(runs_t).where(runs_t.c.source == source).order_by(runs_t.c.id.desc()).limit(limit))
    return [dict(r._mapping) for r in rows]


def _mask(value: str | None, keep: int = 4) -> str:
    if not value:
        return ""
    return value[:keep] + "…" if len(value) > keep * 2 else "…"


def bitrix24_status(settings: Settings) -> dict[str, Any] | None:
    from plugins.bitrix24 import connection

    try:
        data, _ = connection.load(engine(), settings)
    except connection.NotConnected:
        return None
    endpoint = data.get("url") or data.get("client_endpoint") or ""
    return {"kind": "incoming webhook" if data["kind"] == "webhook" else "OAuth app",
            "portal": urlsplit(endpoint).netloc, "events": bool(data.get("application_token"))}


def amocrm_status(settings: Settings) -> dict[str, Any] | None:
    from plugins.amocrm import tokens

    try:
        data, _ = tokens.load(engine(), settings)
    except tokens.NotConnected:
        return None
    account = data.get("account") or {}
    return {"kind": "long-lived token" if data.get("kind") == "long_lived" else "OAuth (refreshed automatically)",
            "base_url": data.get("base_url"), "account": account.get("name") or account.get("subdomain"),
            "expires_at": data.get("expires_at"), "refresh_expires_at": data.get("refresh_expires_at"),
            "webhook": f"/hooks/amocrm/{_mask(data.get('webhook_secret'))}"}


STATUS = {"bitrix24": bitrix24_status, "amocrm": amocrm_status}


def redirect_uri(settings: Settings) -> str:
    """The address amoCRM sends the browser back to; register it with the integration."""
    base = str(settings.extra.get("public_url") or request.host_url).rstrip("/")
    return base + url_for("connections.amocrm_callback")


def authorize_url(base_url: str, client_id: str, state: str) -> str:
    """amoCRM's consent page for this account: www.amocrm.ru (or Kommo) for real accounts, the account
    itself for anything else (the local emulator serves /oauth)."""
    host = (urlsplit(base_url).hostname or "").lower()
    query = urlencode({"client_id": client_id, "state": state, "mode": "post_message"})
    for domain, url in _AMO_HOSTS.items():
        if host == domain or host.endswith("." + domain):
            return f"{url}?{query}"
    return f"{base_url.rstrip('/')}/oauth?{query}"


@bp.get("/")
@allow(read="viewer")
def index() -> Any:
    settings = current_settings()
    names = overview.source_names()
    sources = []
    with engine().connect() as conn:
        for name in names:
            status_of = STATUS.get(name)
            try:
                status = status_of(settings) if status_of else None
            except Exception as exc:  # a broken stored connection is shown, not a 500
                status = {"error": f"cannot read the stored connection ({type(exc).__name__})"}
            sources.append({"name": name, "status": status, "known": status_of is not None,
                            "runs": history(conn, name)})
    return render_template("connections/index.html", sources=sources, b24=Bitrix24Form(), amo=AmoCRMForm(),
                           sync_form=SyncForm(), redirect_uri=redirect_uri(settings) if "amocrm" in names else None,
                           bitrix24="bitrix24" in names, amocrm="amocrm" in names)


@bp.post("/bitrix24")
@allow(read=None, write="admin")
def connect_bitrix24() -> Any:
    if "bitrix24" not in plugins.sources():
        abort(404)
    from plugins.bitrix24 import connection
    from plugins.bitrix24.client import Bitrix24Error, check_webhook_url

    form = Bitrix24Form()
    settings = current_settings()
    if not form.validate():
        for field, errors in form.errors.items():
            for error in errors:
                flash(f"Bitrix24: {error}", "error")
        return redirect(url_for("connections.index"))
    try:
        data: dict[str, Any] = {"kind": "webhook", "url": check_webhook_url(form.webhook.data or "")}
        if form.application_token.data:
            data["application_token"] = form.application_token.data.strip()
        client = connection.client(settings, engine(), data)
        profile = client.call("profile").get("result") or {}
    except ValueError as exc:
        flash(f"Bitrix24: {exc}", "error")
        return redirect(url_for("connections.index"))
    except Bitrix24Error as exc:
        flash(f"Bitrix24 refused the connection: {exc}", "error")
        return redirect(url_for("connections.index"))
    connection.save(engine(), settings, data)
    who = " ".join(str(profile.get(k) or "") for k in ("NAME", "LAST_NAME")).strip() or f"user {profile.get('ID')}"
    with engine().begin() as conn:
        audit.record(conn, actor(), "connected", source="bitrix24", portal=client.auth.host)
    flash(f"Connected to Bitrix24 {client.auth.host} as {who}. Press “Sync now” to read its contacts.", "ok")
    return redirect(url_for("connections.index"))


@bp.post("/amocrm/authorize")
@allow(read=None, write="admin")
def amocrm_authorize() -> Any:
    if "amocrm" not in plugins.sources():
        abort(404)
    from plugins.amocrm.client import check_base_url

    form = AmoCRMForm()
    settings = current_settings()
    if not form.validate():
        for field, errors in form.errors.items():
            for error in errors:
                flash(f"amoCRM: {error}", "error")
        return redirect(url_for("connections.index"))
    try:
        base_url = check_base_url(form.base_url.data or "")
    except ValueError as exc:
        flash(f"amoCRM: {exc}", "error")
        return redirect(url_for("connections.index"))
    state = secrets.token_urlsafe(24)
    pending = {"base_url": base_url, "client_id": (form.client_id.data or "").strip(),
               "client_secret": (form.client_secret.data or "").strip(), "redirect_uri": redirect_uri(settings),
               "state": state}
    with engine().begin() as conn:
        credentials.save(conn, AMO_PENDING, pending, settings.require_secret_key())
    session[AMO_SESSION_STATE] = state
    # A page with a link rather than a redirect: the admin sees where they are sent, and the page's
    # Content-Security-Policy (form-action) need not allow every CRM address a form might lead to.
    return render_template("connections/amocrm_continue.html", url=authorize_url(base_url, pending["client_id"], state),
                           base_url=base_url)


def _take_pending(settings: Settings) -> dict[str, Any] | None:
    with engine().begin() as conn:
        found = credentials.load(conn, AMO_PENDING, settings.require_secret_key())
        conn.execute(delete(credentials_t).where(credentials_t.c.name == AMO_PENDING))
    return found[0] if found else None


@bp.get("/amocrm/callback")
@allow(read="admin")
def amocrm_callback() -> Any:
    """Where amoCRM sends the browser back with ?code=…&state=…&referer=SUBDOMAIN.amocrm.ru."""
    from plugins.amocrm import commands, tokens
    from plugins.amocrm.client import AmoError

    settings = current_settings()
    given = request.args.get("state", "")
    expected = session.pop(AMO_SESSION_STATE, None)
    if request.args.get("error"):
        _take_pending(settings)
        flash("amoCRM did not grant access (the request was declined). Nothing was stored.", "error")
        return redirect(url_for("connections.index"))
    pending = _take_pending(settings)
    if (pending is None or not expected or not given
            or not hmac.compare_digest(given.encode(), str(pending.get("state", "")).encode())
            or not hmac.compare_digest(given.encode(), str(expected).encode())):
        flash("amoCRM: this sign-in link is not the one Hub started (or it was used already). "
              "Start again with “Connect amoCRM”.", "error")
        return redirect(url_for("connections.index"))
    code = request.args.get("code", "")
    if not code:
        flash("amoCRM sent no authorization code back. Start again with “Connect amoCRM”.", "error")
        return redirect(url_for("connections.index"))
    base_url = pending["base_url"]
    referer = request.args.get("referer", "").lower()
    if _REFERER.match(referer) and any(urlsplit(base_url).hostname.endswith(d) for d in _AMO_HOSTS):  # type: ignore[union-attr]
        base_url = f"https://{referer}"  # the account the person actually chose on amoCRM's page
    try:
        data = tokens.exchange_code(base_url, pending["client_id"], pending["client_secret"], pending["redirect_uri"],
                                    code)
        account = commands.connect(settings, data)
    except (AmoError, ValueError) as exc:
        flash(f"amoCRM: {exc}", "error")
        return redirect(url_for("connections.index"))
    name = account.get("name") or account.get("subdomain") or base_url
    with engine().begin() as conn:
        audit.record(conn, actor(), "connected", source="amocrm", account=str(name), base_url=base_url)
    flash(f"Connected to amoCRM account {name}. Tokens are stored encrypted and refreshed automatically. "
          "Press “Sync now” to read its contacts.", "ok")
    return redirect(url_for("connections.index"))


@bp.post("/<source>/sync")
@allow(read=None, write="admin")
def sync_now(source: str) -> Any:
    if source not in plugins.sources():
        abort(404)
    form = SyncForm()
    if form.validate_on_submit():
        settings = current_settings()
        full = bool(form.full.data)
        # Recorded before the job starts: on SQLite a write racing the sync's first page would fail it.
        with engine().begin() as conn:
            audit.record(conn, actor(), "sync_requested", source=source, full=full)
        queue.enqueue(settings, jobs.sync_source, source, full, background=True, job_id=f"sync-{source}")
        flash(f"{'Full sync' if full else 'Sync'} of {source} started; its result appears below when it ends.", "ok")
    return redirect(url_for("connections.index"))
