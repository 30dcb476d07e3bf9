"""Signing in and out.

The session cookie holds only the user's id and a fingerprint of their
password hash: each request re-reads the user, so switching someone off or
changing their password ends their sessions at once. Failed attempts are
limited per account and per address (hub.users).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for

from hub import users
from hub.admin.access import PUBLIC, allow, current_user, engine, local_path
from hub.admin.forms import ActionForm, LoginForm

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
    return (f"This page came over plain HTTP from {host}, so your browser will not keep the sign-in. Open Hub "
            "through HTTPS (a proxy in front of `hub admin`), or at http://127.0.0.1 on the machine itself; "
            "admin_secure_cookies = false in hub.toml allows plain HTTP (not recommended).")


@bp.post("/logout")
@allow(read=None, write="viewer")
def logout() -> Any:
    if ActionForm().validate_on_submit():
        session.clear()
        flash("You are signed out.", "ok")
    return redirect(url_for("auth.login"))
