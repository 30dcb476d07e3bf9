"""The dashboard: the state of the base and of everything that feeds and uses it, on one page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from hub import schedule
from hub.admin import overview
from hub.admin.access import allow, engine
from hub.admin.app import current_settings
from hub.admin.health_banner import ago
from hub.config import Settings
from hub.db import utcnow
from hub.i18n import gettext as _
from hub.segments import lifecycle
from hub.webhooks import store as webhook_store

bp = Blueprint("dashboard", __name__)


@bp.get("/")
@allow(read="viewer")
def index() -> Any:
    settings = current_settings()
    since = overview.week_start(settings)
    with engine().connect() as conn:
        data: dict[str, Any] = {
            "base_size": overview.base_size(conn),
            "lifecycle": overview.lifecycle_counts(conn, settings),
            "segments": overview.segment_sizes(conn),
            "syncs": overview.last_syncs(conn),
            "campaigns": overview.campaigns_since(conn, since),
            "webhooks_off": webhook_store.switched_off(conn),
        }
    data["queue"] = overview.queue_health(settings)
    data["schedules"], data["schedules_error"] = schedule_rows(settings)
    data["week_start"] = since
    chart = {"labels": [lifecycle.title(stage) for stage in data["lifecycle"]],
             "values": list(data["lifecycle"].values())}
    return render_template("dashboard.html", chart=chart, **data)


def schedule_rows(settings: Settings) -> tuple[list[dict[str, Any]], str | None]:
    """Every registered schedule as the dashboard lists it, in the reader's language; or why it cannot be listed.

    The banner says whether the scheduler ticks at all; this says what each of
    its jobs last did, so a sync failing every 15 minutes is seen here.
    """
    now = utcnow()
    try:
        found = schedule.statuses(engine(), settings, now=now)
    except Exception as exc:  # noqa: BLE001 - a bad interval setting: the dashboard says so and shows the rest
        return [], str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    rows = []
    for s in found:
        if s.last_started_at is None:
            outcome, text = "never", _("never ran")
        elif s.running:
            outcome, text = "running", _("running (or stopped without finishing)")
        elif s.last_error:
            outcome, text = "failed", s.last_error
        else:
            outcome, text = "ok", schedule.result_text(s.last_result)
        rows.append({
            "name": s.name, "description": schedule.description_text(s.description) if s.description else "",
            "every": schedule.every_text(s.every), "started": s.last_started_at, "finished": s.last_finished_at,
            "started_ago": ago(s.last_started_at, now) if s.last_started_at else "",
            "outcome": outcome, "outcome_text": text, "next_due": s.next_due, "due": s.due, "overdue": s.overdue,
            "next_in": ago(s.next_due, now) if s.next_due and not s.due else "",
        })
    return rows, None
