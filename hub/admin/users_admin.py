"""Users and the audit log, for admins: add people, change roles, switch access off.

Switching someone off ends their sessions at their next click (access.py
re-reads the user on every request), which is what "when an employee leaves,
their access ends" needs. The last active admin cannot be demoted or
switched off.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, url_for

from hub import users
from hub.admin import audit
from hub.admin.filters import role_title
from hub.admin.access import actor, allow, current_user, engine
from hub.admin.app import current_settings
from hub.admin.forms import ActionForm, UserAddForm, UserRoleForm
from hub.i18n import gettext as _

bp = Blueprint("users", __name__, url_prefix="/users")


@bp.get("/")
@allow(read="admin")
def index() -> Any:
    with engine().connect() as conn:
        people = users.all_users(conn)
    return render_template("users/index.html", people=people, add=UserAddForm(), roles=users.ROLES,
                           default_language=current_settings().language)


@bp.post("/")
@allow(read=None, write="admin")
def add() -> Any:
    form = UserAddForm()
    if not form.validate():
        for errors in form.errors.values():
            for error in errors:
                flash(str(error), "error")
        return redirect(url_for("users.index"))
    try:
        with engine().begin() as conn:
            user = users.add(conn, form.email.data or "", form.role.data or "viewer", form.password.data or "")
            audit.record(conn, actor(), "user_added", user=user.email, role=user.role)
    except users.UserError as exc:
        flash(str(exc), "error")
    else:
        flash(_("Added %(email)s as %(role)s.", email=user.email, role=role_title(user.role)), "ok")
    return redirect(url_for("users.index"))


@bp.post("/<int:user_id>/role")
@allow(read=None, write="admin")
def role(user_id: int) -> Any:
    form = UserRoleForm()
    if form.validate():
        try:
            with engine().begin() as conn:
                user = users.set_role(conn, user_id, form.role.data or "")
                audit.record(conn, actor(), "user_role_changed", user=user.email, role=user.role)
        except users.UserError as exc:
            flash(str(exc), "error")
        else:
            flash(_("%(email)s is now %(role)s.", email=user.email, role=role_title(user.role)), "ok")
    else:
        flash(_("Role: choose one of %(roles)s.", roles=", ".join(users.ROLES)), "error")
    return redirect(url_for("users.index"))


@bp.post("/<int:user_id>/active")
@allow(read=None, write="admin")
def active(user_id: int) -> Any:
    if ActionForm().validate_on_submit():
        me = current_user()
        try:
            with engine().begin() as conn:
                target = users.get(conn, user_id)
                if target is None:
                    raise users.UserError(_("no user with id %(id)s", id=user_id))
                if me is not None and target.id == me.id and target.active:
                    raise users.UserError(_("you cannot switch off your own access"))
                user = users.set_active(conn, user_id, not target.active)
                audit.record(conn, actor(), "user_enabled" if user.active else "user_disabled", user=user.email)
        except users.UserError as exc:
            flash(str(exc), "error")
        else:
            flash(_("%(email)s can now sign in.", email=user.email) if user.active
                  else _("%(email)s can no longer sign in.", email=user.email), "ok")
    return redirect(url_for("users.index"))


@bp.get("/audit")
@allow(read="admin")
def audit_log() -> Any:
    with engine().connect() as conn:
        entries = audit.latest(conn)
    return render_template("users/audit.html", entries=entries)
