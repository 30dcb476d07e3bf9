"""API keys for admins: make one for a website or 1C, see who uses which, revoke one that leaked.

A new key is shown once, on the page the creating form answers with (never
a redirect carrying it, never a flash message, never the log); afterwards
only its first characters are shown. Creating and revoking are in the audit
log, without the key.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, make_response, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import IntegerField, StringField
from wtforms.validators import DataRequired, Length, NumberRange

from hub.admin import audit
from hub.admin.access import actor, allow, engine
from hub.admin.forms import ActionForm
from hub.i18n import gettext as _
from hub.i18n import lazy_gettext
from hub.db import whole_number
from hub.webapi import keys

bp = Blueprint("api_keys", __name__, url_prefix="/api-keys")

MAX_RATE = 100_000


class ApiKeyForm(FlaskForm):
    """A new key: its name and rate (the scopes are checkboxes, read from the form as a list)."""

    name = StringField(lazy_gettext("Name"), validators=[  # type: ignore[arg-type]
        DataRequired(lazy_gettext("Name the key after who will use it, e.g. «Сайт» or «1С».")),  # type: ignore[arg-type]
        Length(max=100)])
    rate = IntegerField(lazy_gettext("Requests per second"), default=keys.DEFAULT_RATE,  # type: ignore[arg-type]
                        validators=[NumberRange(min=1, max=MAX_RATE)])


def _page(form: ApiKeyForm, chosen: list[str], status: int = 200) -> Any:
    with engine().connect() as conn:
        rows = keys.listing(conn, revoked=True)
    return render_template("api_keys/index.html", keys=rows, form=form, scopes=keys.scope_titles(), chosen=chosen,
                           revoke=ActionForm()), status


@bp.get("/")
@allow(read="admin")
def index() -> Any:
    return _page(ApiKeyForm(), [])


@bp.post("/")
@allow(read=None, write="admin")
def create() -> Any:
    form = ApiKeyForm()
    chosen = [s for s in request.form.getlist("scopes") if s]
    if not form.validate():
        for errors in form.errors.values():
            for error in errors:
                flash(str(error), "error")
        return _page(form, chosen, 400)
    try:
        scopes = keys.parse_scopes(chosen, keys.known_scopes())
        with engine().begin() as conn:
            made = keys.create(conn, form.name.data or "", scopes, actor=actor(), rate=int(form.rate.data or 1))
            audit.record(conn, actor(), "api_key_created", key=made.name, scopes=made.scopes, rate=form.rate.data)
    except keys.ApiKeyError as exc:
        flash(str(exc), "error")
        return _page(form, chosen, 400)
    response = make_response(render_template("api_keys/created.html", made=made, rate=form.rate.data))
    response.headers["Cache-Control"] = "no-store"  # the only page that ever holds the key
    return response


@bp.post("/revoke")
@allow(read=None, write="admin")
def revoke() -> Any:
    raw = request.form.get("key_id", "")
    key_id = whole_number(raw, most=2**31 - 1) or 0
    if ActionForm().validate_on_submit():
        with engine().begin() as conn:
            row = conn.execute(select(keys.keys_t).where(keys.keys_t.c.id == key_id)).first()
            if row is None:
                flash(_("There is no such API key."), "error")
            elif not keys.revoke(conn, row.id):
                flash(_("The key %(name)s was already revoked.", name=row.name), "error")
            else:
                audit.record(conn, actor(), "api_key_revoked", key=row.name, prefix=row.prefix)
                flash(_("Key %(name)s revoked: requests with it are refused from now on.", name=row.name), "ok")
    return redirect(url_for("api_keys.index"))
