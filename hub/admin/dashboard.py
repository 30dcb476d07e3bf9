"""The dashboard: the state of the base and of everything that feeds and uses it, on one page."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, render_template
from sqlalchemy import func, select

from hub import schedule
from hub.admin import filters, overview
from hub.admin.access import allow, engine
from hub.admin.app import current_settings
from hub.admin.health_banner import ago
from hub.config import Settings
from hub.db import utcnow
from hub.i18n import N_
from hub.i18n import gettext as _
from hub.models import SyncRun
from hub.segments import lifecycle
from hub.webhooks import store as webhook_store

bp = Blueprint("dashboard", __name__)
runs_t = SyncRun.__table__


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
    its jobs last did, so a sync failing every 15 minutes is seen here. A
    schedule that only hands work out (the syncs) is not "ok" for having done
    so: its row says the work was handed out, and how that work last ended.
    """
    now = utcnow()
    try:
        found = schedule.statuses(engine(), settings, now=now)
        jobs = schedule.last_runs(engine())
    except Exception as exc:  # noqa: BLE001 - a bad interval setting: the dashboard says so and shows the rest
        return [], str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    rows = []
    for s in found:
        work: list[dict[str, Any]] = []
        if s.last_started_at is None:
            outcome, text = "never", _("never ran")
        elif s.running:
            outcome, text = "running", _("running (or stopped without finishing)")
        elif s.last_error:
            outcome, text = "failed", s.last_error
        elif schedule.handed_out(s.last_result):
            outcome, text = "handed_out", ""
            work = handed_out_work(s, jobs)
        else:
            outcome, text = "ok", schedule.result_text(s.last_result, s.name)
        title, detail = titles(s)
        rows.append({
            "name": s.name, "title": title, "description": detail,
            "every": schedule.every_text(s.every), "started": s.last_started_at, "finished": s.last_finished_at,
            "started_ago": ago(s.last_started_at, now) if s.last_started_at else "",
            "outcome": outcome, "outcome_text": text, "work": work,
            "next_due": s.next_due, "due": s.due, "overdue": s.overdue,
            "next_in": ago(s.next_due, now) if s.next_due and not s.due else "",
        })
    return rows, None


# Setting names in a description ("([gdpr.retention])", "`hub worker`"): for whoever looks after Hub only.
_TECHNICAL = re.compile(r"\s*\(\[[^\]]*\]\)|\s*\[[^\]]*\]")


def titles(s: schedule.ScheduleStatus) -> tuple[str, str]:
    """A schedule's plain title (its `title`, else its description without setting names) and, when it says
    more, the description as written (shown to admins only)."""
    described = schedule.description_text(s.description) if s.description else ""
    plain = schedule.description_text(s.title) if s.title else _TECHNICAL.sub("", described).replace("`", "")
    plain = plain.strip()
    plain = plain[:1].upper() + plain[1:] if plain else s.name
    return plain, described if described.strip().lower() != plain.lower() else ""


# The sync runs a hand-out schedule of the core starts, by kind: how that work ended is the source's last such run.
SYNC_WORK = {"sync": (("incremental", "full"), N_("last sync of %(source)s: %(status)s")),
             "reconcile": (("reconcile",), N_("last reconciliation of %(source)s: %(status)s"))}


def handed_out_work(s: schedule.ScheduleStatus, jobs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """How the work a schedule handed out last ended, item by item, in words.

    For the core's syncs it is each source's last run of that kind (as the
    «last sync per CRM» table above shows it, which it links to when that run
    is the one shown there); for any other schedule, the jobs it handed out as
    they recorded themselves ("segment_sizes:today").
    """
    if s.name in SYNC_WORK:
        kinds, message = SYNC_WORK[s.name]
        out = []
        with engine().connect() as conn:
            for source in sorted(s.last_result):
                run = conn.execute(select(runs_t).where(runs_t.c.source == source, runs_t.c.kind.in_(kinds))
                                   .order_by(runs_t.c.id.desc()).limit(1)).mappings().first()
                latest = conn.execute(select(func.max(runs_t.c.id)).where(runs_t.c.source == source)).scalar()
                status, error = (run["status"], run["error"]) if run else ("none", None)
                said = filters.status_title(status) if run else _("none yet")
                above = bool(run and status == "failed" and run["id"] == latest)
                if status == "failed" and not above and error:
                    said = _("failed: %(error)s", error=error)
                out.append({"status": status, "above": above,
                            "text": _(message, source=filters.source_title(source), status=said)})
        return out
    mine = sorted((name, row) for name, row in jobs.items() if name.startswith(f"{s.name}:"))
    out = []
    for name, row in mine:
        if row.get("last_finished_at") is None or row["last_finished_at"] < row["last_started_at"]:
            status, said = "running", _("running")
        elif row.get("last_error"):
            status, said = "failed", _("failed: %(error)s", error=row["last_error"])
        else:
            status, result = "ok", schedule.result_text(row.get("last_result"), name)
            said = _("work done: %(outcome)s", outcome=result) if result else _("work done")
        out.append({"status": status, "above": False,
                    "text": f"{name.partition(':')[2]}: {said}" if len(mine) > 1 else said})
    return out or [{"status": "none", "above": False, "text": _("not done yet")}]
