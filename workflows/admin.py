"""The workflows' admin pages: the list, switching on and off, a dry-run forecast, the funnel, parked runs.

Registered through register_admin_pages like any plugin's page, with the
runs and promo codes of a contact shown on the contact's card (``contact_section``)
and promo codes found by the contacts search (``contact_search``). This
blueprint only shows what the plugin's modules (store, measure, forecast,
runner) know and passes a person's decisions on. A forecast writes nothing, so every role may run one; switching
a workflow on or off and retrying parked runs is for marketers. The funnel's
uplift compares the runs that got the messages with the holdout group that
entered but got nothing, so it measures what the campaign itself changed.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from markupsafe import Markup, escape
from sqlalchemy import Connection, func, select

from hub.api import whole_number
from hub.api import (N_, ActionForm, AdminPage, actor, allow, current_settings, engine, format_date, format_number,
                     gettext, local_path, ngettext, record_audit, translated_title, utcnow)
from workflows.models import Campaign, PromoCode, WorkflowRow, WorkflowRun
from workflows.names import add_titles, counter_title, goal_title, state_title

bp = Blueprint("workflows", __name__, url_prefix="/workflows", template_folder="admin_templates",
               static_folder="admin_static", static_url_path="/static")
runs_t = WorkflowRun.__table__
workflows_t = WorkflowRow.__table__
promo_t = PromoCode.__table__
campaigns_t = Campaign.__table__
MAX_FORECAST_DAYS = 90


def trigger_html(text: str | None, segment: str | None, schedule: str | None = None) -> Markup:
    """A trigger in words with its segment's technical name marked as a name, not a word to translate.

    A cron the trigger could not word (cron_words) is shown as written, in <code>.
    """
    shown = escape(text or "")
    if segment:
        shown = shown.replace(escape(f"({segment})"), Markup('(<code translate="no">%s</code>)') % segment)
    if schedule:
        shown = shown.replace(escape(schedule), Markup('<code translate="no">%s</code>') % schedule)
    return shown


# Where a saved workflow came from (workflows.origin), as the list says it.
ORIGIN_TITLES = {"library": N_("shipped with Hub"), "file": N_("added from a file"), "admin": N_("made in the admin")}


def origin_title(origin: str) -> str:
    return gettext(ORIGIN_TITLES[origin]) if origin in ORIGIN_TITLES else origin


@bp.context_processor
def _titles() -> dict[str, Any]:
    return {"state_title": state_title, "goal_title": goal_title, "counter_title": counter_title,
            "trigger_html": trigger_html, "origin_title": origin_title}


def runs_for_contact(conn: Connection, contact_id: int) -> list[dict[str, Any]]:
    """A contact's workflow runs, newest first, read from workflow_runs.

    A one-off campaign is carried by a workflow row of its own; its runs come
    with `campaign` (the campaign's name) so the card shows them as the
    campaign («Рассылка: …») and not as a workflow nobody made.
    """
    rows = conn.execute(select(runs_t.c.id, workflows_t.c.name.label("workflow"), workflows_t.c.title,
                               runs_t.c.workflow_id, runs_t.c.version,
                               runs_t.c.status, runs_t.c.step, runs_t.c.cycle, runs_t.c.holdout, runs_t.c.error,
                               runs_t.c.started_at, runs_t.c.finished_at, campaigns_t.c.name.label("campaign"),
                               campaigns_t.c.title.label("campaign_title"))
                        .join(workflows_t, workflows_t.c.id == runs_t.c.workflow_id)
                        .outerjoin(campaigns_t, campaigns_t.c.workflow_id == workflows_t.c.id)
                        .where(runs_t.c.contact_id == contact_id).order_by(runs_t.c.id.desc()).limit(100))
    from workflows import runner

    number = runner.StepNumbers(conn, current_settings())  # the number people read, on the run's own version
    return [dict(r._mapping, step=number(r.workflow_id, r.version, r.step),
                 title=translated_title(r.campaign_title or r.title)) for r in rows]


def _run_counts(conn: Connection) -> dict[int, dict[str, int]]:
    out: dict[int, dict[str, int]] = {}
    for workflow_id, status, n in conn.execute(select(runs_t.c.workflow_id, runs_t.c.status, func.count())
                                               .group_by(runs_t.c.workflow_id, runs_t.c.status)):
        out.setdefault(workflow_id, {})[status] = n
    return out


def promo_codes_for_contact(conn: Connection, contact_id: int) -> list[dict[str, Any]]:
    """A contact's promo codes, newest first: what the person may still use, and what they used."""
    c = promo_t.c
    rows = conn.execute(select(c.code, c.discount, c.created_at, c.expires_at, c.redeemed_at, c.redeemed_by,
                               workflows_t.c.name.label("workflow"),
                               func.coalesce(campaigns_t.c.title, workflows_t.c.title).label("title"),
                               campaigns_t.c.name.label("campaign"))
                        .outerjoin(workflows_t, workflows_t.c.id == c.workflow_id)
                        .outerjoin(campaigns_t, campaigns_t.c.workflow_id == workflows_t.c.id)
                        .where(c.contact_id == contact_id).order_by(c.id.desc()).limit(100))
    now = utcnow()
    return [dict(r._mapping, title=translated_title(r.title) if r.title else None,
                 discount=format_number(r.discount.normalize() if r.discount is not None else 0),
                 state="redeemed" if r.redeemed_at else ("expired" if r.expires_at < now else "active"))
            for r in rows]


def campaign_url(name: str) -> str | None:
    """A campaign's page, when the campaigns' pages are registered."""
    return url_for("campaigns.detail", name=name) if "campaigns.detail" in current_app.view_functions else None


def contact_section(conn: Connection, contact_id: int) -> Markup:
    """The contact card's "Campaigns", "Workflow runs" and "Promo codes" tables."""
    found = runs_for_contact(conn, contact_id)
    runs = render_template("workflows/contact_runs.html", runs=[r for r in found if not r["campaign"]],
                           campaign_runs=[r for r in found if r["campaign"]], state_title=state_title,
                           campaign_url=campaign_url)
    codes = render_template("workflows/contact_promo.html", codes=promo_codes_for_contact(conn, contact_id),
                            campaign_url=campaign_url)
    return Markup(runs) + Markup(codes)


MAX_CODE = 32  # promo_codes.code's length: a longer text is no code


def contacts_by_promo_code(conn: Connection, text: str) -> list[int]:
    """Who holds the promo code typed in the contacts search: the code whole (any case), or its start.

    The exact code is found through the codes' unique index; a start of at
    least four characters finds every code that begins with it.
    """
    typed = text.strip().upper()
    if not (3 <= len(typed) <= MAX_CODE) or any(ch.isspace() for ch in typed):
        return []
    c = promo_t.c
    found = list(conn.execute(select(c.contact_id).where(c.code == typed, c.contact_id.is_not(None))).scalars())
    if len(typed) >= 4:
        found += conn.execute(select(c.contact_id).where(c.code.startswith(typed, autoescape=True),
                                                         c.contact_id.is_not(None)).limit(500)).scalars()
    return sorted({int(i) for i in found})


# What these pages write to the audit log, as the audit page names it.
AUDIT_ACTIONS = {"workflow_enabled": N_("workflow switched on"), "workflow_disabled": N_("workflow switched off"),
                 "workflow_run_retried": N_("parked run retried"),
                 "workflow_held_exits_started": N_("held exits started by an admin"),
                 "workflow_version_restored": N_("workflow version restored"),
                 "workflow_runs_moved": N_("workflow runs moved to another version"),
                 "workflow_saved": N_("workflow saved in the builder"),
                 "workflow_copied": N_("workflow copied from a ready-made one")}
PAGE = AdminPage(bp, "workflows.index", N_("Workflows"), order=40, read_role="viewer",
                 write_role="marketer", contact_section=contact_section, contact_search=contacts_by_promo_code,
                 audit_actions=AUDIT_ACTIONS)


def _known(name: str) -> bool:
    """A saved workflow or a shipped one (not installed until someone looks at the list)."""
    from workflows import store

    with engine().connect() as conn:
        saved = conn.execute(select(workflows_t.c.id).where(workflows_t.c.name == name)).first() is not None
    return saved or name in store.library_documents()


def _problems(exc: Exception) -> list[str]:
    return list(getattr(exc, "problems", None) or [str(exc)])


@bp.get("/")
@allow(read="viewer")
def index() -> Any:
    from workflows import store, triggers
    from workflows.definition import WorkflowError

    settings = current_settings()
    with engine().begin() as conn:
        store.install_library(conn)  # shipped workflows appear (switched off) the first time anyone looks
    rows = []
    with engine().connect() as conn:
        counts = _run_counts(conn)
        for row in store.rows(conn):
            trigger_title = trigger_text = description = segment = None
            try:
                workflow = store.definition(conn, settings, row.id, row.version)
                trigger, trigger_title, segment = workflow.trigger.describe(), workflow.trigger.title(), \
                    workflow.trigger.segment
                trigger_text = triggers.trigger_text(conn, settings, workflow)
                description, error = translated_title(workflow.description), None
            except (WorkflowError, ValueError) as exc:
                trigger, error = None, "; ".join(_problems(exc))
            rows.append({"name": row.name, "title": translated_title(row.title), "description": description,
                         "enabled": row.enabled, "version": row.version, "origin": row.origin, "trigger": trigger,
                         "trigger_title": trigger_title, "trigger_text": trigger_text,
                         "segment": segment, "error": error,
                         "runs": counts.get(row.id, {})})
    return render_template("workflows/index.html", rows=rows)


@bp.post("/<name>/enabled")
@allow(read=None, write="marketer")
def set_enabled(name: str) -> Any:
    from workflows import store
    from workflows.definition import WorkflowError

    if ActionForm().validate_on_submit():
        on = request.form.get("enabled") == "1"
        confirmed: dict[str, Any] = {}
        try:
            if on:  # switching on asks first, with the forecast's numbers (workflows.trial_admin)
                from workflows import trial_admin

                answer, numbers = trial_admin.confirmed_switch_on(name)
                if answer is not None:
                    return answer
                confirmed = {"confirmed": numbers}
            with engine().begin() as conn:
                row = store.row(conn, name)
                if on:
                    store.definition(conn, current_settings(), row.id, row.version)  # refuse one that no longer checks
                store.set_enabled(conn, name, on)
                record_audit(conn, actor(), "workflow_enabled" if on else "workflow_disabled", workflow=name,
                             **confirmed)
        except (WorkflowError, ValueError) as exc:
            flash(gettext("%(name)s: %(problems)s", name=name, problems="; ".join(_problems(exc))), "error")
        else:
            from workflows import trial_admin

            flash(*trial_admin.switched_text(translated_title(row.title) or name, on))
    return redirect(local_path(request.form.get("back"), url_for("workflows.index")))


def _funnel_chart(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Per step, how many runs it reached: sent for messages, done for other steps."""
    return {"labels": [f"{s['step']}. {s.get('title') or s['label']}" for s in steps],
            "datasets": [{"label": gettext("sent / done"), "data": [s.get("sent", s.get("done", 0)) for s in steps]},
                         {"label": gettext("skipped or failed"), "backgroundColor": "#c7a14a",
                          "data": [s.get("skipped", 0) + s.get("failed", 0) for s in steps]}]}


def _uplift_chart(report: dict[str, Any]) -> dict[str, Any] | None:
    groups = report.get("conversion")
    if not groups:
        return None
    rates = [groups[g]["rate"] for g in ("treated", "holdout")]
    return {"labels": [gettext("got the campaign"), gettext("holdout (got nothing)")],
            "values": [round(r * 100, 2) if r is not None else 0 for r in rates]}


@bp.get("/<name>")
@allow(read="viewer")
def detail(name: str) -> Any:
    from workflows import measure, runner, store
    from workflows.definition import WorkflowError

    if not _known(name):
        abort(404)
    try:
        report = measure.status(engine(), current_settings(), name)
    except WorkflowError as exc:
        return render_template("workflows/detail.html", name=name, report=None, problems=_problems(exc),
                               parked=[], funnel=None, uplift=None, action=ActionForm())
    from workflows import daily

    with engine().connect() as conn:
        parked = runner.parked(conn, current_settings(), name)
        found, workflow = store.current(conn, current_settings(), name)
        add_titles(report, workflow, conn, current_settings())
        by_day = daily.results_by_day(conn, name, settings=current_settings())
    return render_template("workflows/detail.html", name=name, report=report, problems=[], parked=parked,
                           funnel=_funnel_chart(report["steps"]), uplift=_uplift_chart(report), action=ActionForm(),
                           segment=workflow.trigger.segment, by_day=by_day, daily=daily.chart(by_day),
                           held=_held_text(found), exit_failed=_exit_failed_text(found))


def _held_text(row: Any) -> str | None:
    """The warning about exits held for an admin (workflows.triggers: too many left in one refresh)."""
    from workflows import triggers

    held = triggers.held_exits(row)
    if held is None:
        return None
    n = int(held.get("count") or len(held["ids"]))
    return ngettext("%(num)s person left the segment %(segment)s at once (%(date)s; was its rule changed?): the "
                    "workflow did not touch them. Start it for them? (administrator only)",
                    "%(num)s people left the segment %(segment)s at once (%(date)s; was its rule changed?): the "
                    "workflow did not touch them. Start it for them? (administrator only)", n,
                    num=format_number(n), segment=held.get("segment", ""), date=_moment(held.get("at")))


def _exit_failed_text(row: Any) -> str | None:
    """Starting runs at a segment refresh failed for this workflow (the refresh itself went on)."""
    failed = (row.state or {}).get("exit_failed")
    if not isinstance(failed, dict):
        return None
    return gettext("Starting runs when the segment %(segment)s changed failed %(num)s time(s), last %(date)s "
                   "(%(error)s); those people were not started. See the server log.",
                   segment=failed.get("segment", ""), num=format_number(int(failed.get("count") or 1)),
                   date=_moment(failed.get("at")), error=failed.get("error", ""))


def _moment(raw: Any) -> str:
    import datetime as dt

    from hub.api import format_moment

    try:
        return format_moment(dt.datetime.fromisoformat(str(raw)), current_settings().tz, zone=True)
    except ValueError:
        return ""


@bp.post("/<name>/held-exits")
@allow(read=None, write="admin")
def start_held_exits(name: str) -> Any:
    """An admin starts the exits a refresh held (or, with drop=1, lets them go): both clear the warning."""
    from workflows import store, triggers
    from workflows.definition import WorkflowError

    if not _known(name):
        abort(404)
    if ActionForm().validate_on_submit():
        drop = request.form.get("drop") == "1"
        try:
            with engine().begin() as conn:
                held = triggers.held_exits(store.row(conn, name))
                if held is None:
                    flash(gettext("Nobody is held any more: nothing to start."), "error")
                    return redirect(url_for("workflows.detail", name=name))
                if drop:
                    row = store.row(conn, name)
                    state = dict(row.state or {})
                    state.pop("held_exits", None)
                    store.save_state(conn, row.id, state)
                    report = triggers.StartReport()
                else:
                    report = triggers.start_held_exits(conn, current_settings(), name, now=utcnow())
                record_audit(conn, actor(), "workflow_held_exits_started", workflow=name, held=int(held["count"]),
                             dropped=drop, **report.as_dict())
        except WorkflowError as exc:
            flash(gettext("%(name)s: %(problems)s", name=name, problems="; ".join(_problems(exc))), "error")
        else:
            if drop:
                flash(gettext("The held people were let go: the workflow will not start for them."), "ok")
            else:
                flash(ngettext("Started for %(num)s person.", "Started for %(num)s people.", report.started,
                               num=format_number(report.started)), "ok")
    return redirect(url_for("workflows.detail", name=name))


@bp.get("/<name>/forecast")
@allow(read="viewer")
def forecast_page(name: str) -> Any:
    """The dry run: who would get what and when; nothing is written, nothing is sent."""
    from workflows import forecast
    from workflows.definition import WorkflowError

    raw = request.args.get("days", "14").strip()
    if whole_number(raw, most=MAX_FORECAST_DAYS) is None:
        flash(gettext("Days: %(value)s is not a whole number from 1 to %(max)s.", value=repr(raw[:40]),
                      max=MAX_FORECAST_DAYS), "error")
        return redirect(url_for("workflows.detail", name=name))
    if not _known(name):
        abort(404)
    try:
        report = forecast.forecast(engine(), current_settings(), name, days=int(raw))
    except WorkflowError as exc:
        flash(gettext("%(name)s: %(problems)s", name=name, problems="; ".join(_problems(exc))), "error")
        return redirect(url_for("workflows.index"))
    with engine().connect() as conn:
        workflow = forecast._workflow(conn, current_settings(), name, None)[1]
        add_titles(report, workflow, conn, current_settings())
    channels = sorted({k for day in report["by_day"] for k in day if k != "date"})
    kinds = report["kind_titles"]
    chart = {"labels": [format_date(d["date"]) for d in report["by_day"]],
             "datasets": [{"label": kinds.get(c) or counter_title(c), "data": [d.get(c, 0) for d in report["by_day"]]}
                          for c in channels]}
    from workflows import sms_estimate

    sms = sms_estimate.text(report.get("sms"))  # «За 14 дней: 120 SMS (180 частей), ≈ 630,00 ₽.»
    sms_text = ngettext("Within %(days)s day: %(what)s.", "Within %(days)s days: %(what)s.", int(raw), days=int(raw),
                        what=sms) if sms else ""
    return render_template("workflows/forecast.html", name=name, title=report["title"], report=report,
                           days=int(raw), chart=chart, channels=channels, sms_text=sms_text)


@bp.post("/<name>/retry")
@allow(read=None, write="marketer")
def retry(name: str) -> Any:
    from workflows import runner

    form = ActionForm()
    raw = request.form.get("run", "")
    if form.validate_on_submit():
        run_id = whole_number(raw)
        if run_id is None:
            flash(gettext("Run: %(value)s is not a run number.", value=repr(raw[:40])), "error")
        else:
            skip = request.form.get("skip") == "1"
            done = runner.retry(engine(), [run_id], skip=skip)
            if done:
                with engine().begin() as conn:
                    record_audit(conn, actor(), "workflow_run_retried", workflow=name, run=int(raw), skip=skip)
                flash(gettext("Run #%(run)s is back at work, past the step it was parked at.", run=raw) if skip
                      else gettext("Run #%(run)s is back at work.", run=raw), "ok")
            else:
                flash(gettext("Run #%(run)s is not parked (any more); nothing to retry.", run=raw), "error")
    return redirect(url_for("workflows.detail", name=name))
