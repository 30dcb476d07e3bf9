"""The admin's "Test on a contact" page, and the page that asks before a workflow is switched on.

Trying a workflow writes nothing, so every role may. Switching one on shows
the forecast's numbers for the next 14 days and asks for confirmation with
them: the confirm form carries the number shown (`expected`), and
workflows.admin.set_enabled refuses to switch on without it, shows the new
numbers again when the base moved a lot in between, and leaves a workflow
whose first look would message more than `[workflows] confirm_admin_over`
people to an admin.
"""

from __future__ import annotations

from typing import Any

from flask import abort, render_template, request, url_for

# not in hub.api on purpose: the try page picks a contact with the contacts page's own search
from hub.admin.contact_search import find as find_people
from hub.admin.contact_search import typed
from hub.api import whole_number
from hub.api import (allow, current_settings, current_user, engine, format_date, format_number, gettext,
                     letter_response, translated_title)
from workflows import config, forecast, trial
from workflows.admin import _known, _problems, bp
from workflows.definition import WorkflowError
from workflows.names import counter_title

FOUND = 10  # contacts the picker lists
MAX_QUERY = 200
# How far the number confirmed may be from the number now before it is shown again: both must be exceeded.
DRIFT_SHARE = 0.10
DRIFT_PEOPLE = 10


def _contact_arg(raw: str | None) -> tuple[str | None, str | None]:
    """The contact asked for as typed (a number, "#12"), or what is wrong with it."""
    text = (raw or "").strip().lstrip("#")
    if not text:
        return None, None
    if whole_number(text) is None:
        return None, gettext("Contact: %(value)s is not a contact number.", value=repr(text[:40]))
    return text, None


def _found(query: str) -> list[dict[str, Any]]:
    """The contacts the picker's search box finds, as the contacts page finds and names them.

    The search matches surnames, first names and patronymics, phones and
    emails: a result must show what matched, or «Владимир» lists people
    whose name does not say it (Иван Владимирович). So the full name with
    the patronymic, as the contacts list writes it, and the phone or email
    the query named when it named one.
    """
    with engine().connect() as conn:
        rows = find_people(conn, current_settings(), query, limit=FOUND).rows
    return [{"id": r["id"], "name": " ".join(p for p in (r.get("last_name"), r.get("first_name"),
                                                         r.get("middle_name")) if p) or f"#{r['id']}",
             "email": _matched(r.get("emails") or [], query.lower().strip()),
             "phone": _matched(r.get("phones") or [], _national_digits(query))}
            for r in rows]


def _national_digits(query: str) -> str:
    """The digits of a typed phone without its country prefix (8 916 … and +7 916 … name the same number)."""
    digits = "".join(ch for ch in query if ch.isdigit())
    return digits[1:] if len(digits) == 11 and digits[0] in "78" else digits


def _matched(values: list[str], typed: str) -> str | None:
    """The value the query named (a phone's digits, part of an email), else the first one."""
    if typed:
        for value in values:
            if typed in (value.lower() if "@" in value else "".join(ch for ch in value if ch.isdigit())):
                return value
    return values[0] if values else None


@bp.get("/<name>/try")
@allow(read="viewer")
def try_page(name: str) -> Any:
    """Pick a contact, then see what the workflow would do to them, step by step; nothing is written."""
    if not _known(name):
        abort(404)
    query = typed(request.args.get("q", ""))[:MAX_QUERY]
    contact, error = _contact_arg(request.args.get("contact"))  # a wrong one is said on the page, like the rest
    found = _found(query) if query else []
    as_treated = request.args.get("as_treated") == "1"
    report = None
    if contact is not None:
        try:
            report = trial.trial(engine(), current_settings(), name, int(contact), as_treated=as_treated)
        except trial.TrialError as exc:
            error = str(exc)
        except WorkflowError as exc:
            error = gettext("%(name)s: %(problems)s", name=name, problems="; ".join(_problems(exc)))
    title = None
    if report is not None:
        title = report["title"]
        for step in report["steps"]:
            step["icon"] = trial.ICONS.get(step["outcome"], "·")
            if step.get("html"):
                step["frame"] = url_for("workflows.try_letter", name=name, contact=report["contact_id"],
                                        step=step["step"], as_treated=1 if report["as_treated"] else None)
    return render_template("workflows/try.html", name=name, title=title, query=query, found=found,
                           contact=contact, error=error, report=report)


@bp.get("/<name>/try/letter")
@allow(read="viewer")
def try_letter(name: str) -> Any:
    """One letter of a trace as its own page, for the sandboxed frame on the try page."""
    if not _known(name):
        abort(404)
    contact, _error = _contact_arg(request.args.get("contact"))
    raw = request.args.get("step", "")
    if contact is None or whole_number(raw, most=999_999) is None:
        abort(404)
    try:
        report = trial.trial(engine(), current_settings(), name, int(contact),
                             as_treated=request.args.get("as_treated") == "1")
    except (trial.TrialError, WorkflowError):
        abort(404)
    for step in report["steps"]:
        if step.get("step") == int(raw) and step.get("html"):
            return letter_response(step["html"])
    abort(404)


# --- switching on asks first ----------------------------------------------------------------

def numbers(name: str) -> dict[str, Any]:
    """What switching on would do in the next 14 days, from the forecast (WorkflowError when it does not check)."""
    report = forecast.forecast(engine(), current_settings(), name, days=forecast.SWITCH_ON_DAYS, overlap=True)
    return forecast.switch_on_numbers(report)


def scheduler_running() -> bool | None:
    """Whether `hub scheduler` ticks, the answer the banner on every page gives; None when it cannot be told.

    A workflow switched on while nothing ticks starts no run, and the person
    who switched it on would only find out days later.
    """
    from workflows.campaigns import scheduler_health

    try:
        return bool(scheduler_health(engine(), current_settings())["running"])
    except Exception:  # noqa: BLE001 - a bad setting or the database away: the banner on the page says why
        return None


def switched_text(title: str, on: bool) -> tuple[str, str]:
    """The flash after switching on or off, by the workflow's title: (text, category)."""
    if not on:
        return gettext("The workflow «%(title)s» is off: no new runs start.", title=title), "ok"
    if scheduler_running() is False:
        return gettext("The workflow «%(title)s» is on, but the scheduler is not running: no runs start until an "
                       "administrator starts hub scheduler.", title=title), "error"
    return gettext("The workflow «%(title)s» is on: it starts runs from its next check.", title=title), "ok"


@bp.context_processor
def _forecast_words() -> dict[str, Any]:
    return {"step_outcomes": forecast.step_outcomes}


def needs_admin(found: dict[str, Any]) -> bool:
    """Whether the first look would message more people than [workflows] confirm_admin_over."""
    return int(found["first_tick"]) > config.load(current_settings()).confirm_admin_over


def may_switch_on(found: dict[str, Any]) -> bool:
    user = current_user()
    return user is not None and user.can("admin" if needs_admin(found) else "marketer")


def drifted(expected: int, now: int) -> bool:
    """Whether the number now is far enough from the one confirmed to ask again (>10 % and >10 people)."""
    gap = abs(now - expected)
    return gap > DRIFT_PEOPLE and gap > DRIFT_SHARE * max(expected, 1)


def _chart(found: dict[str, Any]) -> dict[str, Any]:
    keys = sorted({k for day in found["by_day"] for k in day if k != "date"})
    return {"labels": [format_date(d["date"]) for d in found["by_day"]],
            "datasets": [{"label": counter_title(k) if k in ("email", "sms") else _kind_title(k),
                          "data": [d.get(k, 0) for d in found["by_day"]]} for k in keys]}


def _kind_title(kind: str) -> str:
    from workflows.definition import step_types
    from workflows.steps import kind_title

    found = step_types().get(kind)
    return kind_title(found) if found is not None else counter_title(kind)


def confirm_page(name: str, found: dict[str, Any], *, changed: bool = False, refused: str | None = None,
                 code: int = 200) -> Any:
    """The numbers, the per-day chart and the confirm form (or why this person may not switch it on)."""
    from workflows import store

    with engine().connect() as conn:
        row, workflow = forecast._workflow(conn, current_settings(), name, None)
    limit = config.load(current_settings()).confirm_admin_over
    return render_template(
        "workflows/enable_confirm.html", name=name, title=translated_title(workflow.title), found=found,
        text=forecast.switch_on_text(found), chart=_chart(found), changed=changed, refused=refused,
        needs_admin=needs_admin(found), may=may_switch_on(found), limit=limit,
        limit_text=format_number(limit), enabled=bool(row is not None and row.enabled),
        campaign=bool(row is not None and row.origin == store.CAMPAIGN_ORIGIN),
        event=workflow.trigger.kind == "event", overlap=forecast.overlap_text(found),
        share=url_for("workflows.enable_confirm", name=name, _external=True),
        scheduler=scheduler_running(), kind_title=_kind_title), code


def only_admin_text(found: dict[str, Any]) -> str:
    return gettext("Only an administrator may switch it on: its first look would message %(num)s people, more than "
                   "the limit of %(limit)s ([workflows] confirm_admin_over).", num=format_number(found["first_tick"]),
                   limit=format_number(config.load(current_settings()).confirm_admin_over))


@bp.get("/<name>/enable")
@allow(read="viewer")
def enable_confirm(name: str) -> Any:
    """What switching on would do in the next 14 days, and the button that confirms it with those numbers."""
    if not _known(name):
        abort(404)
    try:
        found = numbers(name)
    except WorkflowError as exc:
        return render_template("workflows/enable_confirm.html", name=name, title=None, found=None,
                               problems=_problems(exc)), 200
    return confirm_page(name, found)


def confirmed_switch_on(name: str) -> tuple[Any, dict[str, Any] | None]:
    """For set_enabled: (a page to answer with instead, or None to go on; the numbers to audit)."""
    expected = whole_number(request.form.get("expected", ""), least=0, most=10**12 - 1)
    if expected is None:
        return _redirect_to_confirm(name), None
    found = numbers(name)
    if needs_admin(found) and not may_switch_on(found):
        return confirm_page(name, found, refused=only_admin_text(found), code=403), None
    if drifted(expected, int(found["first_tick"])):
        return confirm_page(name, found, changed=True, code=409), None
    audit = {k: found[k] for k in ("days", "would_start", "holdout", "already_running", "messages", "promo_codes",
                                   "actions", "silent")}
    shared = found.get("overlap") or {}
    audit["overlap"] = {"contacts": shared.get("contacts", 0),
                        "workflows": {w["name"]: {"running": w["running"], "entering": w["entering"]}
                                      for w in shared.get("workflows", [])}}
    return None, {**audit, "expected": expected}


def _redirect_to_confirm(name: str) -> Any:
    from flask import flash, redirect

    flash(gettext("Switching on asks first: check what the next %(days)s days would bring and confirm.",
                  days=forecast.SWITCH_ON_DAYS), "error")
    return redirect(url_for("workflows.enable_confirm", name=name))


