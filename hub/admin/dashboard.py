"""The dashboard: the state of the base and of everything that feeds and uses it, on one page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from hub.admin import overview
from hub.admin.access import allow, engine
from hub.admin.app import current_settings
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
    data["week_start"] = since
    chart = {"labels": [lifecycle.title(stage) for stage in data["lifecycle"]],
             "values": list(data["lifecycle"].values())}
    return render_template("dashboard.html", chart=chart, **data)
