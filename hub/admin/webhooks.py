"""Webhooks in the admin, for admins: add one (the secret shown once), remove, switch back on, read deliveries.

The signing secret is shown in the answer to the POST that added it and
nowhere else: not in a flash message (those travel in the session cookie),
not in the log, not on a later visit. URLs are shown redacted.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from hub.admin import audit
from hub.admin.access import actor, allow, engine
from hub.admin.app import current_settings
from hub.i18n import N_
from hub.i18n import gettext as _
from hub.webhooks import EVENTS, store, targets

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")

AUDIT_ACTIONS = {"webhook_added": N_("webhook added"), "webhook_removed": N_("webhook removed"),
                 "webhook_enabled": N_("webhook switched on")}


def _page(**extra: Any) -> Any:
    with engine().connect() as conn:
        hooks = store.listing(conn)
    return render_template("webhooks/index.html", hooks=hooks, events=list(EVENTS), event_data=EVENTS,
                           delivery_status=store.status_text, **extra)


@bp.get("/")
@allow(read="admin")
def index() -> Any:
    return _page(url="", chosen=[])


@bp.post("/")
@allow(read=None, write="admin")
def add() -> Any:
    url = request.form.get("url", "")
    chosen = request.form.getlist("events")
    try:
        with engine().begin() as conn:
            settings = current_settings()
            hook_id, secret = store.add(conn, url, chosen, settings.require_secret_key(), actor=actor(),
                                        allow_private=targets.allow_private(settings))
            audit.record(conn, actor(), "webhook_added", webhook=hook_id, url=store.redact(url),
                         events=",".join(chosen))
    except store.WebhookError as exc:
        return _page(error=str(exc), url=url[:store.MAX_URL], chosen=chosen), 422
    return _page(added=hook_id, secret=secret, url="", chosen=[])


@bp.post("/<int:hook_id>/remove")
@allow(read=None, write="admin")
def remove(hook_id: int) -> Any:
    with engine().begin() as conn:
        if not store.remove(conn, hook_id):
            abort(404)
        audit.record(conn, actor(), "webhook_removed", webhook=hook_id)
    flash(_("Webhook %(id)s removed.", id=hook_id), "ok")
    return redirect(url_for("webhooks.index"))


@bp.post("/<int:hook_id>/enable")
@allow(read=None, write="admin")
def enable(hook_id: int) -> Any:
    with engine().begin() as conn:
        if not store.enable(conn, hook_id):
            abort(404)
        audit.record(conn, actor(), "webhook_enabled", webhook=hook_id)
    flash(_("Webhook %(id)s is on again.", id=hook_id), "ok")
    return redirect(url_for("webhooks.index"))


@bp.get("/<int:hook_id>/deliveries")
@allow(read="admin")
def deliveries(hook_id: int) -> Any:
    with engine().connect() as conn:
        hook = store.get(conn, hook_id)
        if hook is None:
            abort(404)
        rows = store.deliveries(conn, hook_id, limit=100)
    return render_template("webhooks/deliveries.html", hook=hook, rows=rows, delivery_status=store.status_text,
                           error_text=store.error_text)
