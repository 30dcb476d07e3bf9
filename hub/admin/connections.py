"""Connections: every registered data source, its run history and errors, and "Sync now".

What the core knows of every source alike lives here: its sync runs and
starting a sync. How a source is connected (Bitrix24's webhook URL, amoCRM's
OAuth redirect, a shop's API key) and whether it is, is the source's own:
each source plugin registers an admin page with ``source=NAME``
(register_admin_pages), and this page links to it. Errors shown here come
from the sync runs, which carry no secrets.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from sqlalchemy import Connection, select

from hub import i18n, jobs, plugins, queue, sync
from hub.admin import access, audit, filters, overview
from hub.admin.access import actor, allow, engine
from hub.admin.app import current_settings
from hub.admin.forms import SyncForm
from hub.i18n import gettext as _
from hub.models import SyncRun

bp = Blueprint("connections", __name__, url_prefix="/connections")
runs_t = SyncRun.__table__


def history(conn: Connection, source: str, limit: int = 15) -> list[dict[str, Any]]:
    rows = conn.execute(select(runs_t).where(runs_t.c.source == source).order_by(runs_t.c.id.desc()).limit(limit))
    return [dict(r._mapping) for r in rows]


def source_pages() -> dict[str, Any]:
    """Source name -> the admin page its plugin registered to connect it."""
    return {page.source: page for page in current_app.config[access.ADMIN_BLUEPRINTS].values() if page.source}


@bp.get("/")
@allow(read="viewer")
def index() -> Any:
    pages = source_pages()
    with engine().connect() as conn:
        sources = [{"name": name, "page": pages.get(name), "runs": history(conn, name),
                    "title": pages[name].title_in(i18n.current_language()) if name in pages else name}
                   for name in overview.source_names()]
    return render_template("connections/index.html", sources=sources, sync_form=SyncForm())


@bp.post("/<source>/sync")
@allow(read=None, write="admin")
def sync_now(source: str) -> Any:
    if source not in plugins.sources():
        abort(404)
    form = SyncForm()
    if form.validate_on_submit():
        settings = current_settings()
        full = bool(form.full.data)
        # Said here rather than left to the job, which would skip quietly: one run per source at a time
        # (hub.sync.SyncBusy). The job is refused all the same if another starts in between.
        with engine().begin() as conn:
            sync.interrupt_stale_runs(conn, source)
            live = sync.live_run(conn, source)
        if live is not None:
            flash(str(sync.SyncBusy(source, live, settings.tz)), "error")
            return redirect(url_for("connections.index"))
        # Recorded before the job starts: on SQLite a write racing the sync's first page would fail it.
        with engine().begin() as conn:
            audit.record(conn, actor(), "sync_requested", source=source, full=full)
        queue.enqueue(settings, jobs.sync_source, source, full, background=True, job_id=f"sync-{source}")
        title = filters.source_title(source)
        flash(_("Full sync of %(source)s started; its result appears below when it ends.", source=title) if full
              else _("Sync of %(source)s started; its result appears below when it ends.", source=title), "ok")
    return redirect(url_for("connections.index"))
