"""Signing in and out, and the language each signed-in person reads the admin in.

The session cookie holds only the user's id and a fingerprint of their
password hash: each request re-reads the user, so switching someone off or
changing their password ends their sessions at once. Failed attempts are
limited per account and per address (hub.users). The language a person
picks is kept on their account (users.language), so it follows them to any
browser, and is an audit entry like every other change to a user.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for

from hub import users
from hub.admin import audit
from hub.admin.access import PUBLIC, actor, allow, current_user, engine, local_path
from hub.admin.app import current_settings
from hub.admin.forms import ActionForm, LoginForm
from hub.i18n import LANGUAGE_NAMES, use_language
from hub.i18n import gettext as _

bp = Blueprint("auth", __name__)
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _safe_next(target: str | None) -> str:
    return local_path(target, url_for("dashboard.index"))


@bp.route("/login", methods=["GET", "POST"])
@allow(read=PUBLIC, write=PUBLIC)
def login() -> Any:
    if current_user() is not None and request.method == "GET":
        return redirect(_safe_next(request.args.get("next")))
    form = LoginForm(next=request.args.get("next", ""))
    error = None
    if form.validate_on_submit():
        try:
            user = users.authenticate(engine(), form.email.data or "", form.password.data or "",
                                      address=request.remote_addr or "unknown")
        except users.LoginRefused as exc:
            error = str(exc)
        else:
            session.clear()
            session.permanent = True
            session["uid"] = user.id
            session["auth"] = user.fingerprint
            return redirect(_safe_next(form.next.data))
    status = 401 if error else (400 if form.errors else 200)
    return render_template("login.html", form=form, error=error, cookie_warning=_cookie_warning()), status


def _cookie_warning() -> str | None:
    """Why the browser will drop the session cookie here, if it will: said up front, not as a silent loop."""
    host = urlsplit("//" + request.host).hostname or ""
    if request.is_secure or not current_app.config["SESSION_COOKIE_SECURE"] or host in LOCAL_HOSTS:
        return None
    return _("This page came over plain HTTP from %(host)s, so your browser will not keep the sign-in. Open Hub "
             "through HTTPS (a proxy in front of `hub admin`), or at http://127.0.0.1 on the machine itself; "
             "admin_secure_cookies = false in hub.toml allows plain HTTP (not recommended).", host=host)


@bp.post("/logout")
@allow(read=None, write="viewer")
def logout() -> Any:
    if ActionForm().validate_on_submit():
        session.clear()
        flash(_("You are signed out."), "ok")
    return redirect(url_for("auth.login"))


@bp.post("/language")
@allow(read=None, write="viewer")
def language() -> Any:
    """The signed-in person's own language for the admin; other people keep theirs."""
    back = local_path(request.form.get("next"), url_for("dashboard.index"))
    if not ActionForm().validate_on_submit():
        abort(400)
    me = current_user()
    assert me is not None  # allow(write="viewer")
    chosen = (request.form.get("language") or "").strip()
    try:
        with engine().begin() as conn:
            user = users.set_language(conn, me.id, users.check_language(chosen) or "?")
            audit.record(conn, actor(), "user_language_changed", user=user.email, language=user.language)
    except users.UserError as exc:
        abort(400, description=_("Language not changed: %(reason)s.", reason=str(exc)))
    with use_language(user.language or current_settings().language):
        flash(_("The admin's language is now %(language)s.", language=LANGUAGE_NAMES[user.language or "ru"]), "ok")
    return redirect(back)
