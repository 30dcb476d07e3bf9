"""The workflows' admin pages: the list, switching on and off, a dry-run forecast, the funnel, parked runs.

Registered through register_admin_pages like any plugin's page, with the
runs of a contact shown on the contact's card (``contact_section``). This
blueprint only shows what the plugin's modules (store, measure, forecast,
runner) know and passes a person's decisions on. A forecast writes nothing, so every role may run one; switching
a workflow on or off and retrying parked runs is for marketers. The funnel's
uplift compares the runs that got the messages with the holdout group that
entered but got nothing, so it measures what the campaign itself changed.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from markupsafe import Markup
from sqlalchemy import Connection, func, select

from hub.api import ActionForm, AdminPage, actor, allow, current_settings, engine, local_path, record_audit
from workflows.models import WorkflowRow, WorkflowRun

bp = Blueprint("workflows", __name__, url_prefix="/workflows", template_folder="admin_templates")
runs_t = WorkflowRun.__table__
workflows_t = WorkflowRow.__table__
MAX_FORECAST_DAYS = 90


def runs_for_contact(conn: Connection, contact_id: int) -> list[dict[str, Any]]:
    """A contact's workflow runs, newest first, read from workflow_runs."""
    rows = conn.execute(select(runs_t.c.id, workflows_t.c.name.label("workflow"), workflows_t.c.title,
                               runs_t.c.status, runs_t.c.step, runs_t.c.cycle, runs_t.c.holdout, runs_t.c.error,
                               runs_t.c.started_at, runs_t.c.finished_at)
                        .join(workflows_t, workflows_t.c.id == runs_t.c.workflow_id)
                        .where(runs_t.c.contact_id == contact_id).order_by(runs_t.c.id.desc()).limit(100))
    return [dict(r._mapping, step=r.step + 1) for r in rows]


def _run_counts(conn: Connection) -> dict[int, dict[str, int]]:
    out: dict[int, dict[str, int]] = {}
    for workflow_id, status, n in conn.execute(select(runs_t.c.workflow_id, runs_t.c.status, func.count())
                                               .group_by(runs_t.c.workflow_id, runs_t.c.status)):
        out.setdefault(workflow_id, {})[status] = n
    return out


def contact_section(conn: Connection, contact_id: int) -> Markup:
    """The contact card's "Workflow runs" table."""
    return Markup(render_template("workflows/contact_runs.html", runs=runs_for_contact(conn, contact_id)))


PAGE = AdminPage(bp, "workflows.index", {"ru": "Сценарии", "en": "Workflows"}, order=40, read_role="viewer",
                 write_role="marketer", contact_section=contact_section)


def _problems(exc: Exception) -> list[str]:
    return list(getattr(exc, "problems", None) or [str(exc)])


@bp.get("/")
@allow(read="viewer")
def index() -> Any:
    from workflows import store
    from workflows.definition import WorkflowError

    settings = current_settings()
    with engine().begin() as conn:
        store.install_library(conn)  # shipped workflows appear (switched off) the first time anyone looks
    rows = []
    with engine().connect() as conn:
        counts = _run_counts(conn)
        for row in store.rows(conn):
            try:
                trigger = store.definition(conn, settings, row.id, row.version).trigger.describe()
                error = None
            except (WorkflowError, ValueError) as exc:
                trigger, error = None, "; ".join(_problems(exc))
            rows.append({"name": row.name, "title": row.title, "enabled": row.enabled, "version": row.version,
                         "origin": row.origin, "trigger": trigger, "error": error, "runs": counts.get(row.id, {})})
    return render_template("workflows/index.html", rows=rows)


@bp.post("/<name>/enabled")
@allow(read=None, write="marketer")
def set_enabled(name: str) -> Any:
    from workflows import store
    from workflows.definition import WorkflowError

    if ActionForm().validate_on_submit():
        on = request.form.get("enabled") == "1"
        try:
            with engine().begin() as conn:
                if on:
                    row = store.row(conn, name)
                    store.definition(conn, current_settings(), row.id, row.version)  # refuse one that no longer checks
                store.set_enabled(conn, name, on)
                record_audit(conn, actor(), "workflow_enabled" if on else "workflow_disabled", workflow=name)
        except (WorkflowError, ValueError) as exc:
            flash(f"{name}: {'; '.join(_problems(exc))}", "error")
        else:
            flash(f"{name} is {'on: it starts runs from its next check' if on else 'off: no new runs start'}.", "ok")
    return redirect(local_path(request.form.get("back"), url_for("workflows.index")))


def _funnel_chart(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Per step, how many runs it reached: sent for messages, done for other steps."""
    return {"labels": [f"{s['step']}. {s['label']}" for s in steps],
            "datasets": [{"label": "sent / done", "data": [s.get("sent", s.get("done", 0)) for s in steps]},
                         {"label": "skipped or failed", "backgroundColor": "#c7a14a",
                          "data": [s.get("skipped", 0) + s.get("failed", 0) for s in steps]}]}


def _uplift_chart(report: dict[str, Any]) -> dict[str, Any] | None:
    groups = report.get("conversion")
    if not groups:
        return None
    rates = [groups[g]["rate"] for g in ("treated", "holdout")]
    return {"labels": ["got the campaign", "holdout (got nothing)"],
            "values": [round(r * 100, 2) if r is not None else 0 for r in rates]}


@bp.get("/<name>")
@allow(read="viewer")
def detail(name: str) -> Any:
    from workflows import measure, runner
    from workflows.definition import WorkflowError

    try:
        report = measure.status(engine(), current_settings(), name)
    except WorkflowError as exc:
        if any("no workflow named" in p for p in _problems(exc)):
            abort(404)
        return render_template("workflows/detail.html", name=name, report=None, problems=_problems(exc),
                               parked=[], funnel=None, uplift=None, action=ActionForm())
    with engine().connect() as conn:
        parked = runner.parked(conn, name)
    return render_template("workflows/detail.html", name=name, report=report, problems=[], parked=parked,
                           funnel=_funnel_chart(report["steps"]), uplift=_uplift_chart(report), action=ActionForm())


@bp.get("/<name>/forecast")
@allow(read="viewer")
def forecast_page(name: str) -> Any:
    """The dry run: who would get what and when; nothing is written, nothing is sent."""
    from workflows import forecast
    from workflows.definition import WorkflowError

    raw = request.args.get("days", "14").strip()
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_FORECAST_DAYS:
        flash(f"Days: {raw!r} is not a whole number from 1 to {MAX_FORECAST_DAYS}.", "error")
        return redirect(url_for("workflows.detail", name=name))
    try:
        report = forecast.forecast(engine(), current_settings(), name, days=int(raw))
    except WorkflowError as exc:
        if any("no workflow named" in p for p in _problems(exc)):
            abort(404)
        flash(f"{name}: {'; '.join(_problems(exc))}", "error")
        return redirect(url_for("workflows.index"))
    channels = sorted({k for day in report["by_day"] for k in day if k != "date"})
    chart = {"labels": [d["date"] for d in report["by_day"]],
             "datasets": [{"label": c, "data": [d.get(c, 0) for d in report["by_day"]]} for c in channels]}
    return render_template("workflows/forecast.html", name=name, report=report, days=int(raw), chart=chart,
                           channels=channels)


@bp.post("/<name>/retry")
@allow(read=None, write="marketer")
def retry(name: str) -> Any:
    from workflows import runner

    form = ActionForm()
    raw = request.form.get("run", "")
    if form.validate_on_submit():
        if not raw.isdigit():
            flash(f"Run: {raw!r} is not a run number.", "error")
        else:
            skip = request.form.get("skip") == "1"
            done = runner.retry(engine(), [int(raw)], skip=skip)
            if done:
                with engine().begin() as conn:
                    record_audit(conn, actor(), "workflow_run_retried", workflow=name, run=int(raw), skip=skip)
                flash(f"Run #{raw} is back at work{', past the step it was parked at' if skip else ''}.", "ok")
            else:
                flash(f"Run #{raw} is not parked (any more); nothing to retry.", "error")
    return redirect(url_for("workflows.detail", name=name))
