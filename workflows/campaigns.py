"""One-off campaigns ("рассылки"): a letter to a segment, now or at a set time, each person at most once.

A campaign is carried by a workflow row of its own (origin "campaign", named
``campaign_<name>``, never switched on, so no trigger ever looks at it) whose
definition is built from the campaign: an optional ``promo_code`` step, then
one ``send`` step, and the campaign's holdout. Starting it (``send_now``, or
the scheduler when its time comes) refreshes the segment and enters every
current member as a run of that workflow, cycle 1; the runner does the rest.
So a campaign has the workflows' guarantees: one run per workflow, contact and
cycle (a second start, a second scheduler, a crash in between start nobody
twice), one outbox message per run and step, consent, suppressions, caps and
quiet hours asked at send time.

Statuses: draft → scheduled → sending → done; paused while sending (its runs
are not claimed: see ``workflows.runner.due_ids``); cancelled before it starts.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Any

import pluggy
from sqlalchemy import Connection, Engine, case, func, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError

# not in hub.api on purpose: the campaign engine writes outbox rows and dispatches them
from hub import messaging
# not in hub.api on purpose: steps render templates for StepCall.template (public in workflows.steps)
from hub import message_templates
from hub.api import (N_, Message, Outgoing, ReasonShape, Settings, Verdict, company, current_contact_id,
                     format_moment, gettext, insert_for, local_time, parse_duration, record_audit, utcnow)
# not in hub.api on purpose: conditions and triggers are written in the segment rule language itself
from hub.segments.evaluate import Segments
# not in hub.api on purpose: conditions and triggers are written in the segment rule language itself
from hub.segments.rules import SegmentError
# not in hub.api on purpose: a campaign's page shows why the scheduler held it, which only the audit log keeps
from hub.models import AuditEntry
from workflows import config, engagement, forecast, policy, promo, sms_estimate, store, triggers
from workflows.definition import MAX_HOLDOUT, WorkflowError, parse
from workflows.models import Campaign, PromoCode, WorkflowRow, WorkflowRun

log = logging.getLogger(__name__)
campaigns_t = Campaign.__table__
runs_t = WorkflowRun.__table__
workflows_t = WorkflowRow.__table__
messages_t = Message.__table__
codes_t = PromoCode.__table__
audit_t = AuditEntry.__table__

STATUSES = ("draft", "scheduled", "sending", "paused", "done", "cancelled")
# A campaign's state as people say it (in Russian a campaign, «рассылка», is feminine: «завершена», «отменена»).
STATUS_TITLES = {"draft": N_("draft"), "scheduled": N_("scheduled"), "sending": N_("sending"),
                 "paused": N_("paused"), "done": N_("finished"), "cancelled": N_("called off")}
# What can still be done in each state, for the error a wrong move gets.
STATUS_NEXT = {"draft": N_("it can be changed, scheduled, sent now or cancelled"),
               "scheduled": N_("it can be changed, rescheduled, sent now or cancelled"),
               "sending": N_("it can only be paused"),
               "paused": N_("it can only be resumed"),
               "done": N_("it has finished; nothing more can be done with it"),
               "cancelled": N_("it was cancelled; nothing more can be done with it")}
NOT_STARTED = ("draft", "scheduled")
WORKFLOW_ORIGIN = store.CAMPAIGN_ORIGIN
WORKFLOW_PREFIX = "campaign_"
NAME = re.compile(r"^[a-z][a-z0-9_]{0,54}$")  # the workflow's name (campaign_ + this) fits its 64 characters
MAX_TITLE = 300
MAX_SAMPLE = 100
PROMO_KEYS = ("discount", "valid", "prefix")
# What campaigns write to the audit log, as the audit page names it (the admin page registers these).
AUDIT_ACTIONS = {"campaign_created": N_("campaign created"), "campaign_updated": N_("campaign changed"),
                 "campaign_scheduled": N_("campaign scheduled"), "campaign_started": N_("campaign started"),
                 "campaign_paused": N_("campaign paused"), "campaign_resumed": N_("campaign resumed"),
                 "campaign_cancelled": N_("campaign cancelled"), "campaign_done": N_("campaign finished"),
                 "campaign_test_sent": N_("campaign test sent"),
                 "campaign_held": N_("campaign held back as a draft")}
HELD = "campaign_held"
# The entries that change a campaign: the latest of them tells whether a hold's reason still stands.
_MOVES = tuple(a for a in AUDIT_ACTIONS if a != "campaign_test_sent")
# A letter not yet done with: waiting (quiet hours, the cap, a retry) or with the channel right now.
UNSENT = (messaging.QUEUED, messaging.DEFERRED, messaging.SENDING)
MAX_AHEAD = dt.timedelta(days=366)  # a campaign is scheduled at most a year ahead
PAUSED_RECHECK = dt.timedelta(minutes=10)  # how long a paused campaign's letter waits before it is asked again
_LATIN = dict(zip("абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
                  ("a", "b", "v", "g", "d", "e", "e", "zh", "z", "i", "y", "k", "l", "m", "n", "o", "p", "r", "s",
                   "t", "u", "f", "kh", "ts", "ch", "sh", "shch", "", "y", "", "e", "yu", "ya"), strict=True))


class CampaignError(ValueError):
    """A campaign that cannot be saved or moved so; the message names the field, in the reader's language.

    `problems` holds every problem as {"field", "detail"}, so a form shows each at its field.
    """

    def __init__(self, problems: list[dict[str, str]] | str, field: str = "") -> None:
        if isinstance(problems, str):
            problems = [{"field": field, "detail": problems}]
        self.problems = problems
        super().__init__("; ".join(f"{p['field']}: {p['detail']}" if p["field"] else p["detail"] for p in problems))


@dataclass
class Draft:
    """What a person fills in; checked by `check`, saved by `create`/`update`."""

    title: str
    segment: str
    channel: str
    template: str
    purpose: str = "marketing"
    promo: dict[str, Any] | None = None  # {"discount": 15, "valid": "14d", "prefix": "SALE"}
    holdout: int = 0


def workflow_name(campaign_name: str) -> str:
    """The name of the workflow row that carries the campaign."""
    return WORKFLOW_PREFIX + campaign_name


def slug(title: str) -> str:
    """A technical name people need not type: the title in Latin letters («Чёрная пятница» → chernaya_pyatnitsa)."""
    latin = "".join(_LATIN.get(ch, ch) for ch in title.lower())
    name = re.sub(r"[^a-z0-9]+", "_", latin).strip("_")[:48].strip("_")
    if not name:
        return "campaign"
    return name if name[0].isalpha() else f"c_{name}"


# --- checking a draft -------------------------------------------------------------------

def _promo_options(promo_raw: dict[str, Any]) -> dict[str, Any]:
    """The campaign's promo as the promo_code step's options; the step checks the values."""
    discount = str(promo_raw.get("discount", "")).strip()
    options: dict[str, Any] = {"discount": discount if discount.endswith("%") else f"{discount}%",
                               "valid_for": promo_raw.get("valid")}
    if promo_raw.get("prefix"):
        options["prefix"] = promo_raw["prefix"]
    return options


def document(name: str, draft: Draft) -> dict[str, Any]:
    """The workflow a campaign becomes: a promo code (when it gives one), then the send, to its segment once."""
    steps: list[dict[str, Any]] = []
    if draft.promo:
        steps.append({"promo_code": _promo_options(draft.promo)})
    # A one-off letter that cannot go now because of the frequency cap is skipped, not sent days later.
    steps.append({"send": {"channel": draft.channel, "template": draft.template, "purpose": draft.purpose,
                           "on_cap": "skip"}})
    return {"name": workflow_name(name), "title": draft.title, "trigger": {"segment": draft.segment},
            "reentry": "never", "holdout": f"{int(draft.holdout)}%", "steps": steps}


_STEP_FIELDS = {"channel": "channel", "template": "template", "purpose": "purpose", "on_cap": "template",
                "discount": "promo.discount", "valid_for": "promo.valid", "prefix": "promo.prefix"}


def _field(path: str) -> str:
    """The draft's field a workflow problem's path points at ("steps[1].send.template" → template)."""
    if path.startswith("trigger"):
        return "segment"
    if path.startswith("holdout"):
        return "holdout"
    found = re.match(r"steps\[\d+\]\.(send|promo_code)(?:\.(\w+))?", path)
    if found:
        kind, key = found.groups()
        return _STEP_FIELDS.get(key or "", "promo" if kind == "promo_code" else "template")
    return "title" if path.startswith("title") else ""


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def check(conn: Connection, settings: Settings, draft: Draft, pm: pluggy.PluginManager | None = None
          ) -> list[dict[str, str]]:
    """Every problem of a draft, [{"field", "detail"}]; empty when it can be saved.

    The fields are checked by the same code that checks a workflow file (the
    template exists and fits the channel, a template that shows a promo code
    has one issued before it, the segment exists), so a campaign that checks
    here is one the engine can run.
    """
    problems: list[dict[str, str]] = []

    def problem(field: str, detail: str) -> None:
        problems.append({"field": field, "detail": detail})

    title = _text(draft.title)
    if not title:
        problem("title", gettext("missing; give the campaign a title people will recognise"))
    elif len(title) > MAX_TITLE:
        problem("title", gettext("too long: at most %(max)s characters", max=MAX_TITLE))
    for field in ("segment", "channel", "template", "purpose"):
        value = getattr(draft, field)
        if not _text(value):
            problem(field, gettext("missing"))
        elif len(value) > 100:
            problem(field, gettext("too long: at most %(max)s characters", max=100))
    holdout = draft.holdout
    if isinstance(holdout, bool) or not isinstance(holdout, int) or not 0 <= holdout <= MAX_HOLDOUT:
        problem("holdout", gettext("%(value)s: give a whole number of per cent from 0 to %(max)s",
                                   value=repr(holdout), max=MAX_HOLDOUT))
    if draft.promo is not None:
        if not isinstance(draft.promo, dict):
            problem("promo", gettext("expected a discount, a validity and a prefix"))
        else:
            for key in draft.promo:
                if key not in PROMO_KEYS:
                    problem("promo", gettext("unknown key %(key)s; use %(keys)s", key=repr(key),
                                             keys=", ".join(PROMO_KEYS)))
            for key in ("discount", "valid"):
                if draft.promo.get(key) in (None, ""):
                    problem(f"promo.{key}", gettext("missing"))
    if problems:
        return problems
    try:
        parse(document("check", draft), conn, settings, pm=pm)
    except WorkflowError as exc:
        for text in exc.problems:
            path, sep, detail = text.partition(": ")
            problem(_field(path), detail) if sep else problem("", text)
    except SegmentError as exc:
        problem("segment", str(exc))
    if any(p["field"].startswith("promo") for p in problems):  # the template's "no code before it" follows from it
        problems = [p for p in problems if not (p["field"] == "template" and "promo" in p["detail"])]
    elif draft.promo is None:  # said in the campaign's terms, not the workflow steps' it is built from
        for p in problems:
            if p["field"] == "template" and "promo_code" in p["detail"]:
                p["detail"] = gettext("%(name)s shows a personal promo code: give the campaign one (a discount and "
                                      "how long it is valid)", name=draft.template)
    return problems


def _raise_problems(problems: list[dict[str, str]]) -> None:
    if problems:
        raise CampaignError(problems)


def _values(draft: Draft) -> dict[str, Any]:
    promo_raw = None
    if draft.promo:
        promo_raw = {k: draft.promo[k] for k in PROMO_KEYS if draft.promo.get(k) not in (None, "")}
    return {"title": draft.title.strip(), "segment": draft.segment.strip(), "channel": draft.channel.strip(),
            "template": draft.template.strip(), "purpose": draft.purpose.strip(), "promo": promo_raw,
            "holdout": int(draft.holdout)}


# --- saving ----------------------------------------------------------------------------

def _unique_name(conn: Connection, base: str) -> str:
    taken = set(conn.execute(select(campaigns_t.c.name).where(campaigns_t.c.name.like(f"{base}%"))).scalars())
    if base not in taken:
        return base
    n = 2
    while f"{base}_{n}" in taken:
        n += 1
    return f"{base}_{n}"


def create(engine: Engine, settings: Settings, draft: Draft, *, actor: str, name: str | None = None,
           pm: pluggy.PluginManager | None = None) -> dict[str, Any]:
    """Save a new draft (its name made from the title when not given); returns show()."""
    with engine.connect() as conn:
        problems = check(conn, settings, draft, pm)
    if name is not None and (not isinstance(name, str) or not NAME.match(name)):
        problems.insert(0, {"field": "name", "detail": gettext(
            "%(name)s is not a campaign name: use up to 55 lower-case Latin letters, digits and _, starting with a "
            "letter (e.g. black_friday)", name=repr(name))})
    _raise_problems(problems)
    now = utcnow()
    with engine.begin() as conn:
        chosen = name or _unique_name(conn, slug(draft.title))
        inserted = conn.execute(insert_for(conn, campaigns_t).values(
            name=chosen, status="draft", created_by=actor, created_at=now, updated_at=now, **_values(draft))
            .on_conflict_do_nothing(index_elements=["name"]).returning(campaigns_t.c.id)).scalar()
        if inserted is None:
            raise CampaignError(gettext("a campaign named %(name)s exists already; choose another name",
                                        name=repr(chosen)), "name")
        record_audit(conn, actor, "campaign_created", campaign=chosen, title=draft.title.strip())
    return show(engine, settings, chosen)


def _row(conn: Connection, name: str) -> Any:
    """The campaign's row, or an error that names the closest one."""
    found = conn.execute(select(campaigns_t).where(campaigns_t.c.name == str(name)[:100])).first()
    if found is None:
        names = list(conn.execute(select(campaigns_t.c.name)).scalars())
        close = difflib.get_close_matches(str(name), names, n=1, cutoff=0.6)
        raise CampaignError(gettext("no campaign named %(name)s; did you mean %(close)s?", name=repr(name),
                                    close=repr(close[0])) if close else
                            gettext("no campaign named %(name)s (see `hub campaigns list`)", name=repr(name)),
                            "campaign")
    return found


def _state_error(row: Any, doing: str) -> CampaignError:
    return CampaignError(gettext("cannot %(doing)s: the campaign %(name)s is %(status)s; %(next)s",
                                 doing=gettext(doing), name=repr(row.name), status=gettext(STATUS_TITLES[row.status]),
                                 next=gettext(STATUS_NEXT[row.status])), "status")


def update(engine: Engine, settings: Settings, name: str, draft: Draft, *, actor: str,
           pm: pluggy.PluginManager | None = None) -> dict[str, Any]:
    """Change a campaign that has not started yet (draft or scheduled)."""
    with engine.connect() as conn:
        row = _row(conn, name)
        if row.status not in NOT_STARTED:
            raise _state_error(row, N_("change it"))
        _raise_problems(check(conn, settings, draft, pm))
    with engine.begin() as conn:
        done = conn.execute(sql_update(campaigns_t)
                            .where(campaigns_t.c.id == row.id, campaigns_t.c.status.in_(NOT_STARTED))
                            .values(updated_at=utcnow(), **_values(draft))).rowcount
        if not done:
            raise _state_error(_row(conn, name), N_("change it"))
        record_audit(conn, actor, "campaign_updated", campaign=row.name, title=draft.title.strip())
    return show(engine, settings, row.name)


def _draft(row: Any) -> Draft:
    return Draft(title=row.title, segment=row.segment, channel=row.channel, template=row.template,
                 purpose=row.purpose, promo=dict(row.promo) if row.promo else None, holdout=int(row.holdout or 0))


def _resolve(conn: Connection, campaign: str | Draft) -> tuple[str | None, Draft]:
    if isinstance(campaign, Draft):
        return None, campaign
    row = _row(conn, campaign)
    return row.name, _draft(row)


# --- reading ----------------------------------------------------------------------------

def _columns() -> list[Any]:
    c, w, r, m = campaigns_t.c, workflows_t.c, runs_t.c, messages_t.c
    sent = (select(func.count()).select_from(messages_t).where(m.origin == w.name, m.status == messaging.SENT)
            .scalar_subquery())
    runs = select(func.count()).select_from(runs_t).where(r.workflow_id == c.workflow_id).scalar_subquery()
    return [c.id, c.name, c.title, c.segment, c.channel, c.template, c.purpose, c.promo, c.holdout, c.status,
            c.scheduled_at, c.started_at, c.paused_at, c.finished_at, c.created_by, c.created_at, c.updated_at,
            c.workflow_id, w.name.label("workflow"), func.coalesce(sent, 0).label("sent"),
            func.coalesce(runs, 0).label("runs")]


def _item(row: Any) -> dict[str, Any]:
    return {"name": row.name, "title": row.title, "segment": row.segment, "channel": row.channel,
            "template": row.template, "purpose": row.purpose, "status": row.status,
            "scheduled_at": row.scheduled_at, "started_at": row.started_at, "paused_at": row.paused_at,
            "finished_at": row.finished_at, "created_by": row.created_by, "created_at": row.created_at,
            "updated_at": row.updated_at, "workflow": row.workflow or workflow_name(row.name),
            "sent": int(row.sent), "runs": int(row.runs)}


def listing(conn: Connection, *, status: str | None = None) -> list[dict[str, Any]]:
    """Campaigns newest first, with how many messages each sent."""
    c = campaigns_t.c
    q = (select(*_columns()).select_from(campaigns_t.outerjoin(workflows_t, workflows_t.c.id == c.workflow_id))
         .order_by(c.created_at.desc(), c.id.desc()))
    if status is not None:
        if status not in STATUSES:
            raise CampaignError(gettext("%(value)s is not one of: %(allowed)s", value=repr(status),
                                        allowed=", ".join(STATUSES)), "status")
        q = q.where(c.status == status)
    return [_item(row) for row in conn.execute(q)]


def show(engine: Engine, settings: Settings, name: str) -> dict[str, Any]:
    """One campaign with its counts; CampaignError if there is none so named.

    Test letters never appear here: they go past the outbox (hub.messaging.test_send).
    """
    c = campaigns_t.c
    with engine.connect() as conn:
        found = _row(conn, name)
        row = conn.execute(select(*_columns()).select_from(
            campaigns_t.outerjoin(workflows_t, workflows_t.c.id == c.workflow_id)).where(c.id == found.id)).one()
        out = _item(row)
        out.update(promo=dict(row.promo) if row.promo else None, holdout=int(row.holdout or 0),
                   workflow_id=row.workflow_id,
                   scheduled_local=local_time(settings, row.scheduled_at) if row.scheduled_at else None)
        counts: dict[str, Any] = {"runs": 0, "holdout": 0, "run_states": {}, "messages": {}, "promo_issued": 0,
                                  "promo_redeemed": 0}
        if row.workflow_id is not None:
            r, m, p = runs_t.c, messages_t.c, codes_t.c
            for status, holdout, n in conn.execute(select(r.status, r.holdout, func.count())
                                                   .where(r.workflow_id == row.workflow_id)
                                                   .group_by(r.status, r.holdout)):
                counts["runs"] += n
                counts["holdout"] += n if holdout else 0
                counts["run_states"][status] = counts["run_states"].get(status, 0) + n
            counts["messages"] = dict(conn.execute(select(m.status, func.count()).where(m.origin == row.workflow)
                                                   .group_by(m.status)).all())
            issued, redeemed = conn.execute(select(func.count(), func.coalesce(func.sum(
                case((p.redeemed_at.is_not(None), 1), else_=0)), 0)).where(p.workflow_id == row.workflow_id)).one()
            counts["promo_issued"], counts["promo_redeemed"] = int(issued), int(redeemed)
        counts["held_back"] = dict((row_state(conn, row.workflow_id) or {}).get("held_back") or {})
        out["counts"] = counts
        out["engagement"] = engagement.rates(conn, row.workflow if row.workflow_id is not None else None)
        out["problem"] = problem(conn, row.name) if row.status == "draft" else None
    return out


def row_state(conn: Connection, workflow_id: int | None) -> dict[str, Any] | None:
    """The campaign workflow's state (when it entered, who was held back), None before it started."""
    if workflow_id is None:
        return None
    return conn.execute(select(workflows_t.c.state).where(workflows_t.c.id == workflow_id)).scalar()


# --- before sending: who would get it, and the letter itself ---------------------------

def preview(engine: Engine, settings: Settings, campaign: str | Draft, *, sample: int = 10,
            now: dt.datetime | None = None, pm: pluggy.PluginManager | None = None) -> dict[str, Any]:
    """Who would get it if it started now, and who would be held back and why; set-wise, nothing rendered.

    Each member is counted once, under the first reason that holds in the
    order the send asks them: no address, no consent, every address
    suppressed, the frequency cap; the control group is drawn among the rest,
    as the campaign enters only those (workflows.forecast.reach). Those in quiet hours would
    get it in the morning: they are among `will_receive` and counted again
    under `quiet_hours`.
    """
    now = now or utcnow()
    try:
        sample = max(0, min(int(sample), MAX_SAMPLE))
    except (TypeError, ValueError):
        raise CampaignError(gettext("%(value)s: give a whole number from 0 to %(max)s", value=repr(sample),
                                    max=MAX_SAMPLE), "sample") from None
    options = config.load(settings)
    with engine.connect() as conn:
        name, draft = _resolve(conn, campaign)
        _raise_problems(check(conn, settings, draft, pm))
        members = Segments(conn, settings, now=now).member_ids(draft.segment)
        wname = workflow_name(name or "draft")
        held = {"holdout": 0, "no_address": 0, "no_consent": 0, "suppressed": 0, "capped": 0}
        reached = forecast.reach(conn, settings, members, draft.channel, draft.purpose, now, options)
        for reason in reached.held.values():
            held[reason] += 1
        chosen: list[int] = []
        for cid in reached.addresses:  # the engine draws the control group among those it enters
            if triggers.in_holdout_name(wname, cid, draft.holdout):
                held["holdout"] += 1
            else:
                chosen.append(cid)
        quiet = sum(1 for cid in chosen if policy.quiet_until(options, draft.channel, now,
                                                              reached.zones.get(cid, settings.tz)) is not None)
        names = forecast.contact_names(conn, chosen[:sample])
        parts = (sms_estimate.template_parts(conn, settings, draft.template)
                 if draft.channel == sms_estimate.SMS and chosen else 0)
    found = {"campaign": name, "segment": draft.segment, "channel": draft.channel, "at": now,
             "members": len(members), "will_receive": len(chosen), "held_back": held, "quiet_hours": quiet,
             "sample": [{"contact_id": cid, "name": names.get(cid, f"#{cid}"), "address": reached.addresses[cid]}
                        for cid in chosen[:sample]]}
    if parts:  # what the SMS would take and cost, as the provider bills them
        found["sms"] = sms_estimate.summary(settings, len(chosen), parts * len(chosen))
    return found


def sample_code(name: str, contact_id: int | None, prefix: str | None = None) -> str:
    """The sample code a preview shows: the same for one campaign and person at every render.

    The frame and the text part are rendered apart; a random sample would show
    one letter with two different codes. Derived from the campaign's name and
    the contact, it is never stored, so it redeems nothing.
    """
    digest = hashlib.sha256(f"campaign-sample:{name}:{contact_id or 0}".encode()).digest()
    body = "".join(promo.ALPHABET[b % len(promo.ALPHABET)] for b in digest[:promo.DEFAULT_LENGTH])
    return f"{prefix}-{body}" if prefix else body


def _sample_promo(settings: Settings, name: str | None, draft: Draft, now: dt.datetime,
                  contact_id: int | None) -> dict[str, Any] | None:
    """A code like the one the campaign will issue, for previews and tests (never stored, never redeemable)."""
    if not draft.promo:
        return None
    options = _promo_options(draft.promo)
    discount = options["discount"].rstrip("%").strip()
    try:
        valid = parse_duration(str(options["valid_for"]))
    except ValueError:
        valid = dt.timedelta(days=14)
    prefix = str(options.get("prefix") or "").upper() or None
    return {"id": 0, "code": sample_code(name or "draft", contact_id, prefix),
            "discount": int(float(discount)) if float(discount).is_integer() else float(discount),
            "expires_at": local_time(settings, now + valid)}


def _context(settings: Settings, name: str | None, draft: Draft, now: dt.datetime,
             contact_id: int | None = None) -> dict[str, Any]:
    """What the send step gives a campaign's template besides the contact: run, workflow, promo."""
    context: dict[str, Any] = {"run": {"id": 0, "started_at": local_time(settings, now), "cycle": 1,
                                       "campaign": name or ""},
                               "workflow": {"name": workflow_name(name or "draft")}}
    code = _sample_promo(settings, name, draft, now, contact_id)
    if code is not None:
        context["promo"] = code
    return context


def _contact(conn: Connection, contact_id: Any) -> int:
    """The person a contact id names now (a merged one's survivor); an erased or unknown id is refused."""
    try:
        cid = int(contact_id)
    except (TypeError, ValueError):
        raise CampaignError(gettext("%(value)s is not a contact number", value=repr(contact_id)),
                            "contact") from None
    current = current_contact_id(conn, cid) if 0 < cid < 2**63 else None
    if current is None:
        raise CampaignError(gettext("no contact #%(id)s (erased, or there never was one)", id=cid), "contact")
    return current


def render_for(engine: Engine, settings: Settings, campaign: str | Draft, contact_id: int,
               pm: pluggy.PluginManager | None = None) -> dict[str, Any]:
    """The letter as it would go to this contact: {"address", "subject", "text", "html"}.

    Rendered with the send step's variables, so what a marketer reads is
    what goes, except the links: unsubscribe, preferences and confirm are the
    preview links (hub.message_templates.preview_links), never the contact's
    signed ones. A campaign with a promo code shows a sample code (the real
    one is issued when the run gets there).
    """
    now = utcnow()
    with engine.connect() as conn:
        name, draft = _resolve(conn, campaign)
        _raise_problems(check(conn, settings, draft, pm))
        cid = _contact(conn, contact_id)
        contact = messaging.contact_contexts(conn, settings, [cid]).get(cid)
        if contact is None:
            raise CampaignError(gettext("no contact #%(id)s (erased, or there never was one)", id=cid), "contact")
        template = message_templates.get(conn, settings, draft.template)
        address = messaging.pick_addresses(conn, settings, {cid: contact}, draft.channel).get(cid)
    # Never the contact's signed links: whoever reads a preview could unsubscribe them or confirm for them.
    context = ({"contact": dict(contact), "company": company(settings)} | _context(settings, name, draft, now, cid)
               | message_templates.preview_links(settings))
    try:
        rendered = message_templates.render(template, context)
    except message_templates.TemplateError as exc:
        raise CampaignError(str(exc), "template") from None
    return {"contact_id": cid, "address": address, "subject": rendered.subject, "text": rendered.text,
            "html": rendered.html}


def send_test(engine: Engine, settings: Settings, campaign: str | Draft, *, to: str, contact_id: int | None = None,
              actor: str, pm: pluggy.PluginManager | None = None) -> dict[str, Any]:
    """One test letter to the marketer's own address, never counted in the campaign's results.

    It is rendered for `contact_id` (or the first person the campaign would
    reach) and goes past the outbox (hub.messaging.test_send): nobody's
    message, no cap or consent holds it, its subject starts with a test mark.
    """
    from hub.messaging import test_send

    now = utcnow()
    with engine.connect() as conn:
        name, draft = _resolve(conn, campaign)
        _raise_problems(check(conn, settings, draft, pm))
        cid = _contact(conn, contact_id) if contact_id is not None else None
    if cid is None:
        found = preview(engine, settings, campaign, sample=1, now=now, pm=pm)["sample"]
        cid = found[0]["contact_id"] if found else None
    try:
        sent = test_send.send_test(engine, settings, template=draft.template, channel=draft.channel, to=to,
                                   contact_id=cid, context=_context(settings, name, draft, now, cid))
    except messaging.MessagingError as exc:
        raise CampaignError(str(exc), "to") from None
    with engine.begin() as conn:
        # The address is the staff member's own (the admin allows only those), so it is kept whole.
        record_audit(conn, actor, "campaign_test_sent", campaign=name, template=draft.template,
                     channel=draft.channel, to=sent["address"])
    return {**sent, "contact_id": cid}


# --- moving a campaign ------------------------------------------------------------------

def _move(engine: Engine, name: str, *, allowed: tuple[str, ...], doing: str, action: str, actor: str,
          values: dict[str, Any], details: dict[str, Any] | None = None) -> Any:
    """One state change, compared-and-set: of two people clicking at once, the second is told the new state."""
    with engine.begin() as conn:
        row = _row(conn, name)
        moved = conn.execute(sql_update(campaigns_t).where(campaigns_t.c.id == row.id,
                                                           campaigns_t.c.status.in_(allowed))
                             .values(updated_at=utcnow(), **values)).rowcount
        if not moved:
            raise _state_error(_row(conn, name), doing)
        record_audit(conn, actor, action, campaign=row.name, **(details or {}))
    return row


def check_time(settings: Settings, at: dt.datetime, *, now: dt.datetime | None = None) -> dt.datetime:
    """The start time in UTC, if it is in the future and at most a year ahead; CampaignError names what is wrong.

    The year bound keeps far-off dates (9999-12-31 and an offset) from
    overflowing the arithmetic and the database, and no campaign is planned
    that far ahead anyway.
    """
    now = now or utcnow()
    try:
        at_utc = at.astimezone(dt.timezone.utc)
        too_far = at_utc > now + MAX_AHEAD
    except OverflowError:
        too_far, at_utc = True, now
    if too_far:
        raise CampaignError(gettext("%(at)s is too far ahead: a campaign is scheduled at most a year ahead",
                                    at=at.replace(tzinfo=None).isoformat(sep=" ", timespec="minutes")),
                            "scheduled_at")
    zone = at.tzinfo
    if at_utc.astimezone(zone).replace(tzinfo=None) != at.replace(tzinfo=None):
        raise CampaignError(gettext("%(at)s does not exist in %(zone)s: the clocks are moved that night; "
                                    "choose another time", at=at.replace(tzinfo=None).isoformat(sep=" ",
                                                                                                timespec="minutes"),
                                    zone=str(zone)), "scheduled_at")
    if at_utc <= now:
        raise CampaignError(gettext("%(at)s has passed; give a time in the future, or send it now",
                                    at=format_moment(at_utc, settings.tz, zone=True)), "scheduled_at")
    return at_utc


def schedule(engine: Engine, settings: Settings, name: str, at: dt.datetime, *, actor: str) -> dict[str, Any]:
    """Set the time it starts (an aware datetime in the future); draft|scheduled → scheduled."""
    if not isinstance(at, dt.datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise CampaignError(gettext("give the time with its time zone"), "scheduled_at")
    check_time(settings, at)
    with engine.connect() as conn:
        _raise_problems(check(conn, settings, _draft(_row(conn, name))))
    at_utc = check_time(settings, at)
    _move(engine, name, allowed=NOT_STARTED, doing=N_("schedule it"), action="campaign_scheduled", actor=actor,
          values={"status": "scheduled", "scheduled_at": at_utc}, details={"at": at_utc.isoformat()})
    return show(engine, settings, name)


def cancel(engine: Engine, name: str, *, actor: str) -> dict[str, Any]:
    """Call off a campaign that has not started (draft or scheduled); one that is sending can be paused."""
    row = _move(engine, name, allowed=NOT_STARTED, doing=N_("cancel it"), action="campaign_cancelled", actor=actor,
                values={"status": "cancelled", "finished_at": utcnow()})
    return _brief(engine, row.name)


def pause(engine: Engine, name: str, *, actor: str) -> dict[str, Any]:
    """Stop sending: runs not yet sent wait (workflows.runner does not claim them) until resume."""
    row = _move(engine, name, allowed=("sending",), doing=N_("pause it"), action="campaign_paused", actor=actor,
                values={"status": "paused", "paused_at": utcnow()})
    return _brief(engine, row.name)


def resume(engine: Engine, name: str, *, actor: str) -> dict[str, Any]:
    """Go on sending a paused campaign: the next tick (or worker) takes the runs that waited."""
    row = _move(engine, name, allowed=("paused",), doing=N_("resume it"), action="campaign_resumed", actor=actor,
                values={"status": "sending", "paused_at": None})
    if row.workflow_id is not None:  # its letters held by the pause go at the next dispatch, not in ten minutes
        now = utcnow()
        with engine.begin() as conn:
            wname = conn.execute(select(workflows_t.c.name).where(workflows_t.c.id == row.workflow_id)).scalar_one()
            m = messages_t.c
            conn.execute(sql_update(messages_t).where(m.origin == wname, m.status == messaging.QUEUED,
                                                      m.due_at > now, m.error == f"held: {PAUSED_REASON()}")
                         .values(due_at=now, updated_at=now))
    return _brief(engine, row.name)


# Stored in English like every reason; the message log and the card read it in the reader's language.
PAUSED_REASON = ReasonShape("campaign paused")


def paused_verdict(conn: Connection, message: Outgoing, now: dt.datetime) -> Verdict | None:
    """The send rule of a pause: a paused campaign's letters already in the outbox wait too, until resume.

    One indexed lookup, and only for campaign letters (their meta names the
    campaign); the hold is short so a letter is asked again soon even if the
    resume's release misses it.
    """
    name = (message.meta or {}).get("campaign")
    if not name:
        return None
    status = conn.execute(select(campaigns_t.c.status).where(campaigns_t.c.name == str(name)[:100])).scalar()
    if status != "paused":
        return None
    return Verdict.defer(now + PAUSED_RECHECK, PAUSED_REASON())


def _brief(engine: Engine, name: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(select(*_columns()).select_from(campaigns_t.outerjoin(
            workflows_t, workflows_t.c.id == campaigns_t.c.workflow_id)).where(campaigns_t.c.name == name)).one()
    return _item(row)


def _workflow_row(conn: Connection, name: str, doc: dict[str, Any], now: dt.datetime) -> int:
    """The campaign's workflow: switched off for good (no trigger looks at it), its only version this document."""
    wname = doc["name"]
    found = conn.execute(select(workflows_t.c.id, workflows_t.c.origin).where(workflows_t.c.name == wname)).first()
    if found is not None:
        if found.origin != WORKFLOW_ORIGIN:
            raise CampaignError(gettext("a workflow named %(name)s exists already; rename the campaign",
                                        name=repr(wname)), "name")
        return int(found.id)
    new_id = conn.execute(insert_for(conn, workflows_t).values(
        name=wname, title=doc["title"], origin=WORKFLOW_ORIGIN, definition=doc, version=1, enabled=False,
        state={"campaign": name}, created_at=now, updated_at=now).returning(workflows_t.c.id)).scalar_one()
    conn.execute(store.versions_t.insert().values(workflow_id=new_id, version=1, definition=doc, created_at=now))
    return int(new_id)


def send_now(engine: Engine, settings: Settings, name: str, *, actor: str,
             pm: pluggy.PluginManager | None = None, now: dt.datetime | None = None) -> dict[str, Any]:
    """Start it now: draft|scheduled → sending, every reachable member enters; a second call changes nothing.

    Two steps, each safe to repeat: the move to `sending` (with its workflow
    row) commits first; then the segment is refreshed and its members enter
    in one transaction that also marks the campaign entered. Whoever finds
    a campaign sending but not yet entered (a second click, the scheduler
    after a crash) does the entering; runs are unique per workflow, contact
    and cycle, so two doing it at once start each person once.

    The move reads the campaign, checks it and builds its workflow in one
    transaction, and sets `sending` only if neither the state nor
    `updated_at` changed since: an edit saved meanwhile is never lost under
    a document built from the text before it.
    """
    now = now or utcnow()
    for _ in range(3):
        try:
            with engine.begin() as conn:
                row = _row(conn, name)
                if row.status not in NOT_STARTED:
                    break
                draft = _draft(row)
                _raise_problems(check(conn, settings, draft, pm))
                workflow_id = _workflow_row(conn, row.name, document(row.name, draft), now)
                moved = conn.execute(sql_update(campaigns_t).where(
                    campaigns_t.c.id == row.id, campaigns_t.c.status == row.status,
                    campaigns_t.c.updated_at == row.updated_at).values(
                    status="sending", started_at=now, workflow_id=workflow_id, updated_at=now)).rowcount
                if moved:
                    record_audit(conn, actor, "campaign_started", campaign=row.name)
                    break
                conn.rollback()  # changed meanwhile: read it again
        except IntegrityError:  # another process made the workflow row at the same moment: it started the campaign
            break
    with engine.connect() as conn:
        row = _row(conn, name)
    if row.status in NOT_STARTED:  # changed under us three times running: let the person try again
        raise CampaignError(gettext("the campaign %(name)s was being changed; try again", name=repr(row.name)),
                            "status")
    if row.status in ("paused", "done", "cancelled"):
        raise _state_error(row, N_("send it"))
    _enter(engine, settings, row, now=now, pm=pm)
    if settings.redis_url:
        from workflows import ticks

        ticks.enqueue_due(engine, settings, now=now, workflow_id=row.workflow_id)
    return show(engine, settings, row.name)


def start(engine: Engine, settings: Settings, name: str, *, actor: str,
          pm: pluggy.PluginManager | None = None) -> dict[str, Any]:
    """Start it now and get its letters out: what the admin's «send now» asks for.

    With Redis, `send_now` hands the runs to `hub worker`. Without it nobody
    would take them before `hub scheduler`'s next tick, and a person who
    pressed «send now» on a Hub without a scheduler would wait for ever; so
    here the campaign's runs are advanced in this process (the runner sends
    the letters each batch writes, as `hub campaigns send` does) and the
    campaign is marked done when nothing of it is left. Letters held for
    quiet hours or a retry still wait for the scheduler.
    """
    item = send_now(engine, settings, name, actor=actor, pm=pm)
    if item["status"] != "sending" or settings.redis_url or item["workflow_id"] is None:
        return item
    from workflows import ticks

    ticks.advance_due(engine, settings, now=utcnow(), pm=pm, workflow_id=item["workflow_id"])
    _finish(engine, now=utcnow())
    return show(engine, settings, name)


SCHEDULE_NAME = "workflows"  # the schedule whose tick starts campaigns and sends what waits (workflows.ticks)


def scheduler_health(engine: Engine, settings: Settings, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Whether `hub scheduler` runs the workflows' tick: {"last_tick", "every", "running"}.

    A scheduled campaign starts, and letters held for quiet hours go, only
    from that tick. Whether a scheduler ticks is the core's own answer
    (hub.schedule.scheduler_alive), the same the banner on every admin page
    gives, so the campaign's page and the banner never disagree.
    """
    # not in hub.api on purpose: only the campaign page asks whether the scheduler ticks
    from hub.schedule import scheduler_alive

    beat = scheduler_alive(engine, settings, now=now)
    every = dt.timedelta(seconds=config.load(settings).interval)
    return {"last_tick": beat.last_started_at, "every": every, "running": beat.alive}


def _enter(engine: Engine, settings: Settings, row: Any, *, now: dt.datetime,
           pm: pluggy.PluginManager | None = None) -> triggers.StartReport | None:
    """Refresh the segment and start a run for each current member it reaches, once; None when it was done before."""
    # not in hub.api on purpose: conditions and triggers are written in the segment rule language itself
    from hub.segments import membership

    with engine.connect() as conn:
        wrow = conn.execute(select(workflows_t).where(workflows_t.c.id == row.workflow_id)).one()
    if (wrow.state or {}).get("entered_at"):
        return None
    membership.refresh(engine, settings, [row.segment], now=now, pm=pm)
    with engine.begin() as conn:
        state = conn.execute(select(workflows_t.c.state).where(workflows_t.c.id == wrow.id)).scalar_one() or {}
        if state.get("entered_at"):
            return None
        workflow = store.definition(conn, settings, wrow.id, wrow.version, pm)
        candidates, total = triggers.segment_candidates(conn, wrow, workflow, row.segment, now=now)
        # Only those the letter would reach now: nobody held back gets a run, so nobody gets a code without it.
        reached = forecast.reach(conn, settings, [c.contact_id for c in candidates], row.channel, row.purpose, now)
        held: dict[str, int] = {}
        for reason in reached.held.values():
            held[reason] = held.get(reason, 0) + 1
        report = triggers.start(conn, wrow, workflow, [triggers.Candidate(c.contact_id, context={"campaign": row.name})
                                                       for c in candidates if c.contact_id in reached.addresses],
                                trigger=f"campaign:{row.name}", now=now)
        report.skipped += total - len(reached.addresses)
        store.save_state(conn, wrow.id, {**state, "campaign": row.name, "entered_at": now.isoformat(),
                                         "entered": report.as_dict(), "members": total, "held_back": held})
    log.info("campaign %s: %s", row.name, report.as_dict())
    return report


def start_due(engine: Engine, settings: Settings, *, now: dt.datetime | None = None,
              pm: pluggy.PluginManager | None = None, errors: dict[str, str] | None = None) -> list[str]:
    """The scheduler's part: start scheduled campaigns whose time came, mark finished ones done; the started names.

    Also finishes the entering of a campaign whose starter died between the
    move to `sending` and the entering. A scheduled campaign that no longer
    checks (its template was deleted) goes back to draft with the reason in
    the audit log (`show()` gives it as `problem`), so it is not tried every
    tick. Any other failure is logged and put in `errors` under the
    campaign's name; the other campaigns go on.
    """
    now = now or utcnow()
    c = campaigns_t.c
    started: list[str] = []
    errors = errors if errors is not None else {}
    with engine.connect() as conn:
        due = list(conn.execute(select(c.name).where(c.status == "scheduled", c.scheduled_at <= now)
                                .order_by(c.scheduled_at, c.id)).scalars())
        unentered = [r for r in conn.execute(
            select(c.name, c.segment, c.channel, c.purpose, c.workflow_id, workflows_t.c.state)
            .join(workflows_t, workflows_t.c.id == c.workflow_id)
            .where(c.status.in_(("sending", "paused")))) if not (r.state or {}).get("entered_at")]
    for name in due:
        try:
            send_now(engine, settings, name, actor="scheduler", pm=pm, now=now)
            started.append(name)
        except CampaignError as exc:
            _hold(engine, name, str(exc), errors)
        except Exception as exc:  # one campaign's failure must not stop the others, nor the tick
            log.exception("campaign %s did not start", name)
            errors[f"campaign {name}"] = _failure(exc)
    for row in unentered:
        try:
            _enter(engine, settings, row, now=now, pm=pm)
        except Exception as exc:  # as above
            log.exception("campaign %s: entering its segment failed", row.name)
            errors[f"campaign {row.name}"] = _failure(exc)
    _finish(engine, now=now)
    return started


def _failure(exc: Exception) -> str:
    """An unexpected failure for the tick's report: its kind only, as a database error's text may quote
    someone's data (the log has the whole of it)."""
    return gettext("did not start (%(error)s); see the scheduler's log", error=type(exc).__name__)


def _hold(engine: Engine, name: str, reason: str, errors: dict[str, str]) -> None:
    """Back to draft, with the reason, a scheduled campaign the scheduler could not start."""
    log.error("campaign %s did not start and goes back to draft: %s", name, reason)
    errors[f"campaign {name}"] = reason
    try:
        _move(engine, name, allowed=("scheduled",), doing=N_("hold it"), action=HELD, actor="scheduler",
              values={"status": "draft", "scheduled_at": None}, details={"reason": reason[:2000]})
    except CampaignError:  # someone moved it meanwhile (sent it, cancelled it): theirs stands
        pass


def problem(conn: Connection, name: str) -> str | None:
    """Why the scheduler put a campaign back to draft, while nobody has touched it since; else None."""
    a = audit_t.c
    for action, details in conn.execute(select(a.action, a.details).where(a.action.in_(_MOVES))
                                        .order_by(a.id.desc()).limit(500)):
        if (details or {}).get("campaign") == name:
            return (str(details.get("reason") or "") or None) if action == HELD else None
    return None


def _finish(engine: Engine, *, now: dt.datetime) -> list[str]:
    """Mark done the sending campaigns whose members all entered, none of whose runs is active and none of
    whose letters still waits (quiet hours, the cap, a retry) or is with the channel."""
    c, r, m = campaigns_t.c, runs_t.c, messages_t.c
    finished = []
    with engine.connect() as conn:
        sending = conn.execute(select(c.id, c.name, c.workflow_id, workflows_t.c.name.label("workflow"),
                                      workflows_t.c.state)
                               .join(workflows_t, workflows_t.c.id == c.workflow_id)
                               .where(c.status == "sending")).all()
        for row in sending:
            if not (row.state or {}).get("entered_at"):
                continue
            active = conn.execute(select(r.id).where(r.workflow_id == row.workflow_id,
                                                     r.status.in_(triggers.ACTIVE)).limit(1)).first()
            waiting = conn.execute(select(m.id).where(m.origin == row.workflow, m.status.in_(UNSENT))
                                   .limit(1)).first()
            if active is None and waiting is None:
                finished.append(row)
    done = []
    for row in finished:
        with engine.begin() as conn:
            if conn.execute(sql_update(campaigns_t).where(c.id == row.id, c.status == "sending")
                            .values(status="done", finished_at=now, updated_at=now)).rowcount:
                record_audit(conn, "scheduler", "campaign_done", campaign=row.name)
                done.append(row.name)
    return done
