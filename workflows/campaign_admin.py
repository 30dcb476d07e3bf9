"""The campaigns' pages in the admin: the list, the form, and a campaign's page with its preview and buttons.

A marketer sends a one-off letter to a segment without YAML or a terminal:
the form offers only what exists (segments with their sizes, registered
channels, the templates of the chosen channel, the consent purposes), and
what `campaigns.check` finds wrong is shown beside the field it concerns, the
typed values kept. Before anything goes out the campaign's page says how many
will get it and who is held back for which reason, and shows the letter as a
chosen person would read it, in a sandboxed frame with its own policy
(hub.admin.letter_frame) so its inline styles show as a mail client shows
them. Every change goes through workflows.campaigns, which checks, audits and
sends; these views only read forms and pass a person's decisions on.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from markupsafe import Markup
from sqlalchemy import select

from hub.api import whole_number
from hub.api import (N_, TRANSACTIONAL, ActionForm, AdminPage, actor, allow, consent_channel_title,
                     consent_purpose_title, consent_purposes, current_settings, current_user, engine, format_number,
                     gettext, letter_response, ngettext, translated_title)
from workflows import campaigns, sms_estimate
from workflows.models import Campaign

bp = Blueprint("campaigns", __name__, url_prefix="/campaigns", template_folder="admin_templates")
campaigns_t = Campaign.__table__

PAGE = AdminPage(bp, "campaigns.index", N_("Campaigns"), order=35, read_role="viewer", write_role="marketer",
                 audit_actions=campaigns.AUDIT_ACTIONS)

MAX_TEXT = 300  # the longest title, name or address a form field takes
SAMPLE = 10
EDITABLE = ("draft", "scheduled")
WAIT_FOR_SCHEDULER = ("scheduled", "sending")  # what goes on in these states goes on in `hub scheduler`
# The reasons a preview holds people back, in the order the page lists them.
HELD_BACK = {"holdout": N_("in the holdout group (kept back to measure the campaign)"),
             "no_address": N_("no address for this channel"),
             "no_consent": N_("no consent for this purpose"),
             "suppressed": N_("unsubscribed, bounced or erased (suppressed)"),
             "capped": N_("over the frequency cap")}
FIELD_TITLES = {"title": N_("Title"), "segment": N_("Segment"), "channel": N_("Channel"),
                "template": N_("Template"), "purpose": N_("Purpose"), "promo": N_("Personal promo code"),
                "promo.discount": N_("Discount"), "promo.valid": N_("Valid, days"), "promo.prefix": N_("Code prefix"),
                "holdout": N_("Holdout"), "to": N_("Send to"), "contact": N_("Contact"),
                "scheduled_at": N_("Date and time"), "status": N_("Status"), "name": N_("Name"),
                "campaign": N_("The campaign")}


def status_title(status: Any) -> str:
    """A campaign's status in the reader's words ("запланирована"); an unknown one as it is."""
    title = campaigns.STATUS_TITLES.get(status)
    return gettext(title) if title else str(status)


def status_badge(status: Any) -> Markup:
    return Markup('<span class="badge campaign-status {0}" data-status="{0}">{1}</span>').format(
        status, status_title(status))


def who(actor_name: Any) -> Markup:
    """Who did it: the person's email without the admin's prefix, marked as a name, not words to translate."""
    return Markup('<span translate="no">%s</span>') % str(actor_name or "").removeprefix("admin:")


def promo_days(valid: Any) -> str:
    """A code's validity ("14d") as people say it ("14 дней")."""
    from hub.api import format_length, parse_duration

    try:
        return format_length(parse_duration(str(valid)))
    except ValueError:
        return str(valid)


def campaign_purpose(purpose: Any) -> str:
    return gettext("transactional letter") if purpose == TRANSACTIONAL else consent_purpose_title(purpose)


@bp.context_processor
def _helpers() -> dict[str, Any]:
    from hub.messaging import status_title as message_status

    return {"campaign_status": status_badge, "campaign_status_title": status_title, "who": who,
            "promo_days": promo_days, "campaign_purpose": campaign_purpose, "message_status": message_status,
            "held_back_title": lambda key: gettext(HELD_BACK[key]) if key in HELD_BACK else key}


# --- what exists to choose from ------------------------------------------------------------

def segment_choices(conn: Any, settings: Any) -> list[dict[str, Any]]:
    """Every segment that checks, with its title in the reader's language and how many it holds now."""
    from hub.segments.evaluate import Segments
    from hub.segments.rules import SegmentError

    segments = Segments(conn, settings)
    out = []
    for name, definition in sorted(segments.catalog.definitions.items()):
        try:
            count: int | None = segments.count(name)
        except SegmentError:
            count = None
        out.append({"name": name, "title": translated_title(definition.title) or name, "count": count})
    return out


def segment_titles(conn: Any, settings: Any) -> dict[str, str]:
    """Each segment's title in the reader's language, without counting anyone (for the list)."""
    from hub.segments.evaluate import Segments

    return {name: translated_title(definition.title) or name
            for name, definition in Segments(conn, settings).catalog.definitions.items()}


def channel_choices() -> list[dict[str, str]]:
    from hub.messaging import channel_factories

    return [{"name": name, "title": consent_channel_title(name)} for name in sorted(channel_factories())]


def template_choices(conn: Any, settings: Any) -> list[dict[str, str]]:
    """Templates with their channel, so the form offers those that fit the chosen channel."""
    from hub import message_templates

    return [{"name": t.name, "title": translated_title(t.title) or t.name, "channel": t.channel}
            for t in message_templates.all_templates(conn, settings)]


def purpose_choices(settings: Any) -> list[dict[str, str]]:
    names = ["marketing", TRANSACTIONAL, *(p for p in consent_purposes(settings) if p not in ("marketing",
                                                                                             TRANSACTIONAL))]
    return [{"name": p, "title": _purpose_title(p)} for p in names]


def _purpose_title(purpose: str) -> str:
    if purpose == TRANSACTIONAL:
        return gettext("transactional (an order, a receipt: no marketing consent needed)")
    return consent_purpose_title(purpose)


def _choices() -> dict[str, Any]:
    settings = current_settings()
    with engine().connect() as conn:
        return {"segments": segment_choices(conn, settings), "channels": channel_choices(),
                "templates": template_choices(conn, settings), "purposes": purpose_choices(settings)}


# --- reading the form -----------------------------------------------------------------------

FORM_KEYS = ("title", "segment", "channel", "template", "purpose", "promo", "promo.discount", "promo.valid",
             "promo.prefix", "holdout")
FORM_FIELDS = ("title", "segment", "channel", "template", "purpose", "promo", "discount", "valid", "prefix",
               "holdout")


def form_values(form: Any) -> dict[str, str]:
    """What was typed, as typed (cut to a sane length), to show again on error."""
    return {key: str(form.get(key, ""))[:MAX_TEXT * 4] for key in FORM_FIELDS}


def _whole(raw: str, key: str, problems: list[dict[str, str]]) -> int | None:
    text = raw.strip().rstrip("%").strip()
    if not text:
        return None
    number = whole_number(text, least=0, most=10**9 - 1)
    if number is None:
        problems.append({"field": key, "detail": gettext("%(value)s is not a whole number", value=repr(raw[:40]))})
    return number


def read_draft(values: dict[str, str]) -> tuple[campaigns.Draft, list[dict[str, str]]]:
    """The draft a form describes and what is wrong with how it was typed (the engine checks the rest)."""
    problems: list[dict[str, str]] = []
    texts = {}
    for key in ("title", "segment", "channel", "template", "purpose"):
        text = " ".join(values.get(key, "").split()) if key == "title" else values.get(key, "").strip()
        if len(text) > MAX_TEXT:
            problems.append({"field": key, "detail": gettext("longer than %(max)s characters",
                                                             max=format_number(MAX_TEXT))})
            text = ""
        texts[key] = text
    promo = None
    if values.get("promo") in ("1", "y", "on"):
        discount = _whole(values.get("discount", ""), "promo.discount", problems)
        days = _whole(values.get("valid", ""), "promo.valid", problems)
        prefix = values.get("prefix", "").strip()
        if len(prefix) > 20:
            problems.append({"field": "promo.prefix", "detail": gettext("longer than %(max)s characters",
                                                                        max=20)})
            prefix = prefix[:20]
        promo = {"discount": discount if discount is not None else "",
                 "valid": f"{days}d" if days is not None else "", **({"prefix": prefix} if prefix else {})}
    holdout = _whole(values.get("holdout", ""), "holdout", problems)
    draft = campaigns.Draft(title=texts["title"], segment=texts["segment"], channel=texts["channel"],
                            template=texts["template"], purpose=texts["purpose"] or "marketing", promo=promo,
                            holdout=holdout or 0)
    return draft, problems


def merged_problems(own: list[dict[str, str]], checked: list[dict[str, str]]) -> list[dict[str, str]]:
    """The form's own problems, then the engine's about fields the form found nothing wrong with."""
    seen = {p["field"] for p in own}
    return own + [p for p in checked if p.get("field") not in seen]


def problems_by_field(problems: list[dict[str, str]]) -> tuple[dict[str, list[str]], list[str]]:
    """Each problem at the field it names ("promo.discount" under the promo code); the rest for the top."""
    placed: dict[str, list[str]] = {}
    loose: list[str] = []
    for p in problems:
        field, detail = str(p.get("field") or ""), str(p.get("detail") or "")
        key = field if field in FORM_KEYS else field.partition(".")[0]
        if key in FORM_KEYS:
            placed.setdefault(key, []).append(detail)
        else:
            label = gettext(FIELD_TITLES[field]) if field in FIELD_TITLES else field
            loose.append(f"{label}: {detail}" if label else detail)
    return placed, loose


def values_of(campaign: dict[str, Any]) -> dict[str, str]:
    """A saved campaign as the form shows it."""
    promo = campaign.get("promo") or {}
    valid = str(promo.get("valid") or "")
    return {"title": campaign.get("title") or "", "segment": campaign.get("segment") or "",
            "channel": campaign.get("channel") or "", "template": campaign.get("template") or "",
            "purpose": campaign.get("purpose") or "marketing", "promo": "1" if promo else "",
            "discount": str(promo.get("discount") or ""), "valid": valid[:-1] if valid.endswith("d") else valid,
            "prefix": str(promo.get("prefix") or ""), "holdout": str(campaign.get("holdout") or 0)}


def _problems(exc: Exception) -> list[dict[str, str]]:
    return list(getattr(exc, "problems", None) or [{"field": "", "detail": str(exc)}])


def _flash_problems(exc: Exception) -> None:
    for p in _problems(exc):
        field = p.get("field") or ""
        label = gettext(FIELD_TITLES[field]) if field in FIELD_TITLES else field
        flash(f"{label}: {p['detail']}" if label else str(p["detail"]), "error")


# --- finding a campaign ---------------------------------------------------------------------

def _exists(name: str) -> bool:
    if len(name) > 64:
        return False
    with engine().connect() as conn:
        return conn.execute(select(campaigns_t.c.id).where(campaigns_t.c.name == name)).first() is not None


def _show(name: str) -> dict[str, Any]:
    if not _exists(name):
        abort(404)
    try:
        return campaigns.show(engine(), current_settings(), name)
    except campaigns.CampaignError:
        abort(404)


def message_log_url(workflow: str) -> str:
    """The message log filtered to this campaign's letters."""
    if "messages.index" in current_app.view_functions:
        return url_for("messages.index", origin=workflow)
    return "/messages/?origin=" + quote(workflow)


def daily_chart(campaign: dict[str, Any]) -> dict[str, Any] | None:
    """Letters sent, delivered, bounced, unsubscribes, codes redeemed and revenue by day, once it has started.

    {"counts": …, "revenue": …}, Chart.js data as workflows.daily draws it; None
    when there is nothing to draw (no workflow row yet, or the module is absent).
    """
    try:
        from workflows import daily
    except ImportError:
        return None
    from workflows.definition import WorkflowError

    try:
        with engine().connect() as conn:
            report = daily.results_by_day(conn, campaigns.workflow_name(campaign["name"]),
                                          settings=current_settings(), days=30)
    except (WorkflowError, ValueError):
        return None
    return daily.chart(report)


# --- pages ----------------------------------------------------------------------------------

@bp.get("/")
@allow(read="viewer")
def index() -> Any:
    raw = request.args.get("status", "").strip()
    status = raw if raw in campaigns.STATUSES else None
    if raw and status is None:
        flash(gettext("Status: %(value)s is not a campaign status; showing every campaign.",
                      value=repr(raw[:40])), "error")
    settings = current_settings()
    with engine().connect() as conn:
        rows = campaigns.listing(conn, status=status)
        titles = segment_titles(conn, settings) if rows else {}
    return render_template("campaigns/index.html", rows=rows, status=status, statuses=campaigns.STATUSES,
                           segment_titles=titles)


def _form_page(values: dict[str, str], problems: list[dict[str, str]], name: str | None, code: int = 200) -> Any:
    placed, loose = problems_by_field(problems)
    return render_template("campaigns/edit.html", values=values, errors=placed, loose=loose, name=name,
                           **_choices()), code


@bp.get("/new")
@allow(read="marketer")
def new() -> Any:
    values = {key: "" for key in FORM_FIELDS}
    values.update(purpose="marketing", holdout="0", discount="15", valid="14")
    segment = request.args.get("segment", "")[:MAX_TEXT]
    values["segment"] = segment
    return _form_page(values, [], None)


@bp.post("/new")
@allow(read="marketer", write="marketer")
def create() -> Any:
    values = form_values(request.form)
    draft, own = read_draft(values)
    settings = current_settings()
    with engine().connect() as conn:
        problems = merged_problems(own, campaigns.check(conn, settings, draft))
    if problems:
        return _form_page(values, problems, None, 400)
    try:
        made = campaigns.create(engine(), settings, draft, actor=actor())
    except campaigns.CampaignError as exc:
        return _form_page(values, _problems(exc), None, 400)
    flash(gettext("Campaign saved as a draft. Check who will get it, then send it or set its time."), "ok")
    return redirect(url_for("campaigns.detail", name=made["name"]))


def _no_longer_editable(campaign: dict[str, Any]) -> Any:
    """Back to the campaign's page, saying why its form is closed (it started, finished or was cancelled)."""
    flash(gettext("This campaign is %(status)s: it can no longer be changed.",
                  status=status_title(campaign["status"])), "error")
    return redirect(url_for("campaigns.detail", name=campaign["name"]))


@bp.get("/<name>/edit")
@allow(read="marketer")
def edit(name: str) -> Any:
    campaign = _show(name)
    if campaign["status"] not in EDITABLE:
        return _no_longer_editable(campaign)
    return _form_page(values_of(campaign), [], name)


@bp.post("/<name>/edit")
@allow(read="marketer", write="marketer")
def save(name: str) -> Any:
    campaign = _show(name)
    if campaign["status"] not in EDITABLE:
        return _no_longer_editable(campaign)
    values = form_values(request.form)
    draft, own = read_draft(values)
    settings = current_settings()
    with engine().connect() as conn:
        problems = merged_problems(own, campaigns.check(conn, settings, draft))
    if problems:
        return _form_page(values, problems, name, 400)
    try:
        campaigns.update(engine(), settings, name, draft, actor=actor())
    except campaigns.CampaignError as exc:
        return _form_page(values, _problems(exc), name, 400)
    flash(gettext("Campaign saved."), "ok")
    return redirect(url_for("campaigns.detail", name=name))


def _contact_arg(raw: str | None) -> tuple[int | None, str | None]:
    """The contact a reader asked to see the letter for, or what is wrong with what they gave."""
    text = (raw or "").strip().lstrip("#")
    if not text:
        return None, None
    number = whole_number(text)
    if number is None:
        return None, gettext("Show the letter for: %(value)s is not a contact number.", value=repr(text[:40]))
    return number, None


def _letter_for(name: str, contact_id: int) -> dict[str, Any]:
    """The letter for one person, or {"error": ...} saying why there is none."""
    from hub.api import TemplateError

    try:
        return campaigns.render_for(engine(), current_settings(), name, contact_id)
    except (campaigns.CampaignError, TemplateError) as exc:
        return {"error": str(exc)}


def _default_schedule() -> tuple[str, str]:
    """Tomorrow 10:00 in Hub's time zone: when most one-off letters are sent."""
    tomorrow = dt.datetime.now(current_settings().tz).date() + dt.timedelta(days=1)
    return tomorrow.isoformat(), "10:00"


@bp.get("/<name>")
@allow(read="viewer")
def detail(name: str) -> Any:
    return _detail_page(name)


def _detail_page(name: str, *, schedule_error: str | None = None, typed: tuple[str, str] | None = None,
                 code: int = 200) -> Any:
    """The campaign's page; a refused schedule shows its reason at the form, the date and time as typed."""
    settings = current_settings()
    campaign = _show(name)
    preview: dict[str, Any] | None = None
    problems: list[str] = []
    if campaign["status"] in EDITABLE:
        try:
            preview = campaigns.preview(engine(), settings, name, sample=SAMPLE)
        except campaigns.CampaignError as exc:
            problems = [str(exc)]
    contact_id, contact_error = _contact_arg(request.args.get("contact"))
    if contact_id is None and preview and preview.get("sample"):
        contact_id = preview["sample"][0]["contact_id"]
    letter = _letter_for(name, contact_id) if contact_id is not None else None
    day, time = typed or _default_schedule()
    started = campaign["status"] not in EDITABLE and campaign["status"] != "cancelled" or bool(
        campaign.get("started_at"))
    workflow = campaigns.workflow_name(name)
    will = (preview or {}).get("will_receive", 0)
    scheduler = campaigns.scheduler_health(engine(), settings) if campaign["status"] in WAIT_FOR_SCHEDULER else None
    return render_template(
        "campaigns/detail.html", c=campaign, preview=preview, problems=problems, letter=letter,
        contact_id=contact_id, contact_error=contact_error, started=started,
        chart=daily_chart(campaign) if started else None, log_url=message_log_url(workflow),
        test_to=own_address(), schedule_day=day, schedule_time=time,
        zone_key=getattr(settings.tz, "key", str(settings.tz)),
        confirm_send=ngettext("Send to %(num)s recipient?", "Send to %(num)s recipients?", will,
                              num=format_number(will)),
        segment_title=_segment_title(campaign.get("segment")), template_title=campaign.get("template"),
        action=ActionForm(), schedule_error=schedule_error, scheduler=scheduler,
        scheduler_every=every_text(scheduler["every"]) if scheduler else "",
        with_workers=bool(settings.redis_url), sms_text=sms_estimate.text((preview or {}).get("sms"))), code


def every_text(every: dt.timedelta) -> str:
    """How often the scheduler should run, as people say it («каждые 30 секунд»)."""
    # not in hub.api on purpose: only the campaign page names the scheduler's interval
    from hub.schedule import every_text as said

    return said(every)


def _segment_title(name: Any) -> str:
    with engine().connect() as conn:
        return segment_titles(conn, current_settings()).get(str(name)) or str(name)


@bp.get("/<name>/letter/<int:contact_id>")
@allow(read="viewer")
def letter(name: str, contact_id: int) -> Any:
    """The letter for one person as its own page, for the sandboxed frame on the campaign's page."""
    if not _exists(name):
        abort(404)
    found = _letter_for(name, contact_id)
    if "error" in found:
        response = letter_response(str(Markup("<!doctype html><meta charset=utf-8><p>%s</p>") % found["error"]))
        response.status_code = 404
        return response
    if found.get("html"):
        return letter_response(found["html"])
    body = Markup("<!doctype html><meta charset=utf-8><pre style=\"white-space:pre-wrap;font-family:sans-serif\">"
                  "%s</pre>") % (found.get("text") or "")
    return letter_response(str(body))


# --- buttons --------------------------------------------------------------------------------

def _back(name: str) -> Any:
    return redirect(url_for("campaigns.detail", name=name))


def _checked(name: str) -> bool:
    """The form's token holds and the campaign exists (else 404); False after flashing why not."""
    if not _exists(name):
        abort(404)
    if not ActionForm().validate_on_submit():
        flash(gettext("The button's security token is missing or has expired: reload the page and press it again."),
              "error")
        return False
    return True


def own_address() -> str:
    """Where a test letter goes: the signed-in person's own email, never an address typed in a form.

    A test is rendered for a real contact; sent to any address, it would hand
    that person's letter (name, promo code) to whoever types one. Operators
    who must test elsewhere use `hub campaigns test --to`.
    """
    user = current_user()
    return user.email if user else ""


def forged_to(typed: str, own: str) -> str | None:
    """What is wrong with an address posted in a test form (the page sends none), or None."""
    text = typed.strip()
    if text and text.casefold() != own.casefold():
        return gettext("A test letter goes only to your own address, %(own)s; %(typed)s is refused. To send one "
                       "elsewhere, an operator uses the command line.", own=own, typed=repr(text[:80]))
    return None


@bp.post("/<name>/test")
@allow(read=None, write="marketer")
def test(name: str) -> Any:
    if not _checked(name):
        return _back(name)
    to = own_address()
    forged = forged_to(str(request.form.get("to", "")), to)
    contact_id, contact_error = _contact_arg(request.form.get("contact"))
    if forged:
        flash(forged, "error")
    elif _show(name)["channel"] != "email":
        flash(gettext("A test goes to your own email address, so only email campaigns can be tested here; an "
                      "operator tests others from the command line."), "error")
    elif contact_error:
        flash(contact_error, "error")
    else:
        # not in hub.api on purpose: the campaign engine writes outbox rows and dispatches them
        from hub.messaging import test_send

        try:
            sent = campaigns.send_test(engine(), current_settings(), name, to=to, contact_id=contact_id,
                                       actor=actor())
        except campaigns.CampaignError as exc:
            _flash_problems(exc)
        else:
            flash(test_send.sent_text(sent), "ok")  # the address, or the file when no mail server is set up
    return _back(name)


def _parse_local(day: str, time: str) -> tuple[dt.datetime | None, str | None]:
    """A local date and time in Hub's time zone as an aware moment, or what is wrong with them."""
    day, time = day.strip()[:40], time.strip()[:40]
    try:
        date = dt.date.fromisoformat(day)
    except ValueError:
        return None, gettext("Date: %(value)s is not a date (pick one in the calendar).", value=repr(day))
    try:
        clock = dt.time.fromisoformat(time)
    except ValueError:
        return None, gettext("Time: %(value)s is not a time of day (e.g. 10:00).", value=repr(time))
    tz = current_settings().tz
    try:
        at = dt.datetime.combine(date, clock.replace(tzinfo=None), tzinfo=tz)
        at.astimezone(dt.timezone.utc)  # the year 9999 in a zone east of UTC has no moment in UTC
    except (OverflowError, ValueError):
        return None, gettext("Date: %(value)s is too far ahead.", value=repr(day))
    if at <= dt.datetime.now(dt.timezone.utc):
        from hub.api import format_moment

        return None, gettext("Date and time: %(when)s has already passed; pick a moment in the future.",
                             when=format_moment(at, tz))
    return at, None


@bp.post("/<name>/schedule")
@allow(read=None, write="marketer")
def schedule(name: str) -> Any:
    if not _checked(name):
        return _back(name)
    typed = (str(request.form.get("date", ""))[:40], str(request.form.get("time", ""))[:40])
    at, error = _parse_local(*typed)
    if error or at is None:
        return _detail_page(name, schedule_error=error, typed=typed, code=400)
    try:
        campaigns.schedule(engine(), current_settings(), name, at, actor=actor())
    except campaigns.CampaignError as exc:
        if all(p.get("field") == "scheduled_at" for p in _problems(exc)):
            return _detail_page(name, schedule_error="; ".join(str(p["detail"]) for p in _problems(exc)),
                                typed=typed, code=400)
        _flash_problems(exc)
    else:
        from hub.api import format_moment

        flash(gettext("Scheduled: it starts %(when)s.", when=format_moment(at, current_settings().tz)), "ok")
    return _back(name)


def start_job(name: str, actor_name: str, settings: Any = None) -> dict[str, Any]:
    """Queue job: start a campaign (refresh its segment, enter every member) outside the web request.

    A big segment takes longer than a request may; the page only asks for it.
    A worker reads its settings afresh, as every job does, and leaves the
    letters to the other workers; run in this process (no Redis) it gets the
    request's own settings and sends the letters too (`campaigns.start`), as
    no worker will.
    """
    from hub.api import get_engine, load_settings

    settings = settings or load_settings()
    return campaigns.start(get_engine(settings.database_url), settings, name, actor=actor_name)


@bp.post("/<name>/send")
@allow(read=None, write="marketer")
def send(name: str) -> Any:
    if not _checked(name):
        return _back(name)
    from hub.api import enqueue

    settings = current_settings()
    campaign = _show(name)
    if campaign["status"] not in EDITABLE:
        flash(gettext("This campaign is %(status)s: it can no longer be sent.",
                      status=status_title(campaign["status"])), "error")
        return _back(name)
    with engine().connect() as conn:  # what would stop it is said now, not lost in a worker's log
        problems = campaigns.check(conn, settings, campaigns.Draft(
            title=campaign["title"] or "", segment=campaign["segment"] or "", channel=campaign["channel"] or "",
            template=campaign["template"] or "", purpose=campaign["purpose"] or "marketing",
            promo=campaign.get("promo"), holdout=int(campaign.get("holdout") or 0)))
    if problems:
        _flash_problems(campaigns.CampaignError(problems))
        return _back(name)
    try:
        enqueue(settings, start_job, name, actor(), None if settings.redis_url else settings,
                job_id=f"campaign-start-{name}")
    except campaigns.CampaignError as exc:
        _flash_problems(exc)
    else:
        flash(gettext("The campaign is starting…"), "ok")
    return _back(name)


def _move(name: str, step: Any, done: str) -> Any:
    if not _checked(name):
        return _back(name)
    try:
        step(engine(), name, actor=actor())
    except campaigns.CampaignError as exc:
        _flash_problems(exc)
    else:
        flash(done, "ok")
    return _back(name)


@bp.post("/<name>/cancel")
@allow(read=None, write="marketer")
def cancel(name: str) -> Any:
    return _move(name, campaigns.cancel, gettext("Campaign cancelled: nothing will be sent."))


@bp.post("/<name>/pause")
@allow(read=None, write="marketer")
def pause(name: str) -> Any:
    return _move(name, campaigns.pause, gettext("Paused: letters not yet sent wait until you resume."))


@bp.post("/<name>/resume")
@allow(read=None, write="marketer")
def resume(name: str) -> Any:
    return _move(name, campaigns.resume, gettext("Resumed: the remaining letters go out."))
