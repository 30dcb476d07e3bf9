"""Test on a contact: what a workflow would do to one person, step by step, and why; nothing is written.

The trace walks the person through the workflow's current version on a
simulated clock with the forecast's own machinery (workflows.forecast): the
send step's questions in the same order (an address, consent for the
channel and purpose, a blocked address, the frequency cap, quiet hours in
the person's time zone), waits in their zone, `if` rules asked of today's
data at the simulated moment. Templates are rendered by the real renderer
with the person's own variables, a sample promo code and the preview links
(never the person's signed ones: whoever reads a trace must not be able to
unsubscribe them). No promo code is issued, no message queued, no CRM asked.

A person the trigger would not take now is traced anyway, with the reason
first: marketers try a workflow before its segment fits.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any, Iterable

import pluggy
from sqlalchemy import Connection, Engine, select

# not in hub.api on purpose: steps render templates for StepCall.template (public in workflows.steps)
from hub import message_templates
# not in hub.api on purpose: the campaign engine writes outbox rows and dispatches them
from hub import messaging
from hub.api import (TRANSACTIONAL, Contact, ExternalRef, Settings, TemplateError, company, consent_channel_title,
                     consent_purpose_title, current_contact_id, end_of_local_day, format_date, format_length,
                     format_moment, format_number, format_phone, gettext, local_time, translated_title, utcnow)
# not in hub.api on purpose: conditions and triggers are written in the segment rule language itself
from hub.segments.evaluate import Segments
# not in hub.api on purpose: conditions and triggers are written in the segment rule language itself
from hub.segments.rules import AllOf, AnyOf, Condition, Node, Not, RuleError, SegmentError, SegmentRef
from workflows import config, forecast, nps, policy, promo, triggers
from workflows.crm import CrmComment, CrmField, CrmTask
from workflows.definition import Goto, If, Workflow, WorkflowError
from workflows.names import goal_title
from workflows.send import Send
from workflows.steps import Exit, RunInfo, Step, StepCall, StepFailed, Wait, kind_title
from workflows.webhook import Webhook

contacts_t = Contact.__table__
refs_t = ExternalRef.__table__
DEFAULT_DAYS = 60
# What each step outcome looks like beside it, on the try page and in `hub workflows try`.
ICONS = {"sent": "✉", "stopped": "✕", "waited": "◔", "branch": "↳", "done": "✓", "exit": "■", "end": "■"}
MAX_DAYS = 365
MAX_CONTACT_ID = 2**63 - 1


class TrialError(ValueError):
    """A contact that cannot be traced (erased, never there); the message says which."""


def trial(conn_or_engine: Connection | Engine, settings: Settings, name: str, contact_id: int | str, *,
          now: dt.datetime | None = None, days: int = DEFAULT_DAYS, pm: pluggy.PluginManager | None = None,
          as_treated: bool = False) -> dict[str, Any]:
    """The trace (`hub workflows try NAME --contact ID --json`): entry, then every step in order with why.

    A person in the control group gets nothing, which is all the trace says
    unless `as_treated`: then the steps are traced as for everyone else, so a
    marketer can see the letters without hunting for another contact; the
    report says `as_treated` and the entry still says the truth.
    """
    if isinstance(conn_or_engine, Engine):
        with conn_or_engine.connect() as conn:
            return _trial(conn, conn_or_engine, settings, name, contact_id, now=now, days=days, pm=pm,
                          as_treated=as_treated)
    return _trial(conn_or_engine, conn_or_engine.engine, settings, name, contact_id, now=now, days=days, pm=pm,
                  as_treated=as_treated)


def resolve(conn: Connection, contact_id: Any) -> tuple[int, str | None]:
    """The person an id names now and a note when it was merged away; TrialError when it names nobody."""
    try:
        asked = int(str(contact_id).strip().lstrip("#"))
    except (TypeError, ValueError):
        raise TrialError(gettext("%(value)s is not a contact number", value=repr(str(contact_id)[:40]))) from None
    if not 0 < asked <= MAX_CONTACT_ID:
        raise TrialError(gettext("no contact #%(id)s", id=asked))
    exists = conn.execute(select(contacts_t.c.id).where(contacts_t.c.id == asked)).first() is not None
    current = current_contact_id(conn, asked)
    if current is None:
        raise TrialError(gettext("contact #%(id)s was erased: nothing is held about them any more, so there is "
                                 "nothing to try", id=asked) if exists else gettext("no contact #%(id)s", id=asked))
    if current != asked:
        return current, gettext("contact #%(id)s was merged into #%(survivor)s; this is the trace for #%(survivor)s",
                                id=asked, survivor=current)
    return current, None


def _trial(conn: Connection, engine: Engine, settings: Settings, name: str, contact_id: int | str, *,
           now: dt.datetime | None, days: int, pm: pluggy.PluginManager | None, as_treated: bool = False
           ) -> dict[str, Any]:
    now = now or utcnow()
    days = max(1, min(int(days), MAX_DAYS))
    row, workflow = forecast._workflow(conn, settings, name, pm)
    cid, merged = resolve(conn, contact_id)
    contact = messaging.contact_contexts(conn, settings, [cid]).get(cid)
    options = config.load(settings)
    facts = forecast._Facts(conn, settings, [cid], now)
    zone = facts.zones.get(cid, settings.tz)
    report: dict[str, Any] = {
        "workflow": workflow.name, "title": translated_title(workflow.title), "version": row.version if row else None,
        "contact_id": cid, "asked": int(str(contact_id).strip().lstrip("#")), "merged": merged,
        "name": forecast.contact_names(conn, [cid]).get(cid), "zone": getattr(zone, "key", str(zone)),
        "from": now.isoformat(), "until": (now + dt.timedelta(days=days)).isoformat(), "days": days,
        "goal": None if workflow.goal is None else {
            **workflow.goal.describe(), "text": f"{goal_title(workflow.goal.event)} "
                                                f"{gettext('within %(time)s', time=workflow.goal.within_text())}"},
    }
    if contact is None:
        report.update(entry={"status": "deleted", "enters": False, "holdout": False,
                             "text": gettext("the contact is deleted in every source: the workflow will not reach "
                                             "them")}, steps=[])
        return report
    entry = _entry(conn, settings, row, workflow, cid, now)
    report["entry"] = entry
    report["as_treated"] = bool(entry["holdout"] and as_treated)
    if entry["holdout"] and not as_treated:
        report["steps"] = []
        return report
    walker = _Walker(conn, engine, settings, workflow, row, cid, contact, zone, facts, options, now, days, pm)
    report["steps"] = walker.walk()
    return report


# --- entering -------------------------------------------------------------------------------

def _entry(conn: Connection, settings: Settings, row: Any, workflow: Workflow, cid: int, now: dt.datetime
           ) -> dict[str, Any]:
    """Whether the trigger would take the person now, and why (not); the holdout decides last."""
    trigger = workflow.trigger
    reasons: list[str] = []
    status = "enters"
    if trigger.kind == "event":
        status = "event"
        reasons.append(gettext("the workflow starts on an event (%(event)s): traced as if it happened now",
                               event=trigger.event))
    elif trigger.kind == "date":
        status = _date_entry(conn, settings, row, workflow, cid, now, reasons)
    else:
        assert trigger.segment is not None
        title = _segment_title(conn, settings, trigger.segment)
        try:
            segments = Segments(conn, settings, now=now)
            rule = segments.compiler.where(segments.get(trigger.segment).rule)
            member = conn.execute(select(contacts_t.c.id).where(contacts_t.c.id == cid, rule)).first() is not None
        except (SegmentError, RuleError) as exc:
            member = None
            status = "not_member"
            reasons.append(str(exc))
        if trigger.kind == "exit":
            if member:
                status = "not_left"
                reasons.append(gettext("in the segment %(segment)s now: enters when they leave it", segment=title))
            elif member is False and row is not None and row.enabled and cid in triggers.exit_pending(
                    conn, settings, trigger.segment, now=now):
                reasons.append(gettext("has left the segment %(segment)s since it was last brought up to date: "
                                       "its next refresh starts them", segment=title))
            elif member is False:
                status = "not_member"
                reasons.append(gettext("not in the segment %(segment)s: this workflow is for those who leave it",
                                       segment=title))
        elif not member:
            status = "not_member"
            if member is False:
                reasons.append(gettext("not in the segment %(segment)s", segment=title))
        if trigger.kind == "schedule":
            reasons.append(gettext("runs start at the scheduled times (%(schedule)s)", schedule=trigger.schedule))
    if row is not None:
        for h in sorted(triggers._history(conn, row.id, [cid]).get(cid, []), key=lambda h: h.started_at):
            started = format_moment(h.started_at, settings.tz, zone=True)
            if h.status in triggers.ACTIVE:
                status = "running"
                reasons.append(gettext("a run of this workflow is already under way (since %(date)s)", date=started))
            elif workflow.reentry is None:
                status = "reentry"
                reasons.append(gettext("already went through it (%(date)s); re-entry: never", date=started))
            elif h.started_at > now - workflow.reentry:
                status = "reentry"
                reasons.append(gettext("entered %(date)s; may enter again after %(length)s, from %(again)s",
                                       date=started, length=format_length(workflow.reentry),
                                       again=format_moment(h.started_at + workflow.reentry, settings.tz, zone=True)))
    holdout = triggers.in_holdout(workflow, cid)
    enters = status in ("enters", "event")
    if holdout:
        text = gettext("in the holdout (control group): gets nothing; the workflow measures the others against "
                       "them")
        if not enters:
            text = gettext("would not enter now: %(why)s", why="; ".join(reasons)) + ". " + text
    elif enters:
        text = gettext("enters now") + (f" ({'; '.join(reasons)})" if reasons else "")
    else:
        text = gettext("would not enter now: %(why)s; traced anyway", why="; ".join(reasons))
    return {"status": status, "enters": enters, "holdout": holdout, "reasons": reasons, "text": text}


def _date_entry(conn: Connection, settings: Settings, row: Any, workflow: Workflow, cid: int, now: dt.datetime,
                reasons: list[str]) -> str:
    """A date trigger and one person: starts today, on which day it will, or never (no date in the card)."""
    trigger = workflow.trigger
    at = trigger.at or "00:00"
    field = gettext(trigger.date_title) if trigger.date_title else str(trigger.date)
    try:
        day = triggers.date_next(conn, settings, workflow, cid, now=now)
    except (WorkflowError, SegmentError, RuleError) as exc:
        reasons.append(str(exc))
        return "not_member"
    if day is None:
        reasons.append(gettext("no %(field)s in the card: the date trigger never starts them", field=field))
        return "no_date"
    comes = day + (trigger.before or dt.timedelta(0))
    today = triggers.date_day(settings, now)
    if day == today:
        looked = row is not None and dict(row.state or {}).get("date_day") == today.isoformat()
        reasons.append(gettext("their date (%(field)s) comes round on %(date)s: the trigger starts them today at "
                               "%(at)s (the shop's time)", field=field, date=format_date(comes), at=at)
                       if not looked else
                       gettext("their date (%(field)s) comes round on %(date)s: today's start at %(at)s (the shop's "
                               "time) has been made", field=field, date=format_date(comes), at=at))
        return "enters"
    reasons.append(gettext("their date (%(field)s) comes round next on %(date)s: the trigger starts them on %(day)s "
                           "at %(at)s (the shop's time)", field=field, date=format_date(comes),
                           day=format_date(day), at=at))
    return "not_today"


def _segment_title(conn: Connection, settings: Settings, name: str) -> str:
    catalog = Segments(conn, settings).catalog
    definition = catalog.definitions.get(name)
    found = catalog.rows.get(name)
    title = translated_title(definition.title if definition else (found.title if found else None))
    return f"«{title}» ({name})" if title else name


# --- the steps ------------------------------------------------------------------------------

class _Walker:
    """One person through the program on a simulated clock, the way forecast._simulate moves everyone."""

    def __init__(self, conn: Connection, engine: Engine, settings: Settings, workflow: Workflow, row: Any, cid: int,
                 contact: dict[str, Any], zone: Any, facts: forecast._Facts, options: config.WorkflowSettings,
                 now: dt.datetime, days: int, pm: pluggy.PluginManager | None = None) -> None:
        self.conn, self.engine, self.settings, self.workflow, self.pm = conn, engine, settings, workflow, pm
        self.cid, self.contact, self.zone, self.facts, self.options = cid, contact, zone, facts, options
        self.now, self.t, self.horizon = now, now, now + dt.timedelta(days=days)
        self.promo: dict[str, Any] | None = None
        self.promo_expires: dt.datetime | None = None  # a reminder sent after it is pointless: the trace says so
        cap = options.frequency_cap
        self.sent: list[dt.datetime] = list(facts.recent(now - cap.period).get(cid, [])) if cap else []
        self.run = RunInfo(id=0, workflow=workflow.name, workflow_id=row.id if row is not None else 0,
                           contact_id=cid, cycle=1, started_at=now, trigger="trial", context={})

    def walk(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        pc = 0
        for _ in range(4 * len(self.workflow.program) + 4):
            instruction = self.workflow.instruction(pc)
            if instruction is None:
                out.append(self._item(None, "end", gettext("the run ends: no steps left")))
                break
            if self.t > self.horizon:
                out.append(self._item(None, "end", gettext("later than the %(days)s days looked at; the trace stops "
                                                           "here", days=format_number((self.horizon - self.now).days))))
                break
            step = instruction.step
            if isinstance(step, Goto):
                pc = step.target
                continue
            item, pc = self._step(step, instruction.index)
            item.update(step=self.workflow.number(instruction.index), kind=step.name, phrase=self._phrase(step),
                        label=step.label())
            out.append(item)
            if item["outcome"] == "exit":
                break
        return out

    def _phrase(self, step: Step) -> str:
        """The step in people's words; a send step names its template by title («Возвращайтесь (письмо)»)."""
        if isinstance(step, Send):
            title = template_title(self.conn, self.settings, step.template)
            if title:
                return send_phrase(step, title)
        return _phrase(step)

    def _item(self, at: dt.datetime | None, outcome: str, text: str, **extra: Any) -> dict[str, Any]:
        at = at or self.t
        return {"at": at.isoformat(), "when": format_moment(at, self.zone, zone=True), "outcome": outcome,
                "text": text, **extra}

    def _call(self, index: int) -> StepCall:
        return StepCall(run=self.run, index=index, key=f"trial:{self.cid}:{index}", now=self.t,
                        settings=self.settings, engine=self.engine, conn=self.conn, contact=dict(self.contact),
                        promo=self.promo, zone=self.zone, number=self.workflow.number(index))

    def _step(self, step: Step, index: int) -> tuple[dict[str, Any], int]:
        if isinstance(step, If):
            item = self._if(step)
            return item, step.then_at if item["branch"] == "then" else step.else_at
        if isinstance(step, Exit):
            return self._item(None, "exit", gettext("the run ends here")), index + 1
        if isinstance(step, Wait):
            until = forecast.wait_until(step, self.t, self.zone)
            item = self._item(None, "waited", gettext("waits until %(when)s", when=format_moment(until, self.zone,
                                                                                               zone=True)),
                              until=until.isoformat())
            self.t = until
            return item, index + 1
        if isinstance(step, promo.PromoCodeStep):
            return self._promo(step), index + 1
        if isinstance(step, Send):
            return self._send(step, index), index + 1
        if isinstance(step, (CrmTask, CrmComment, CrmField)):
            return self._crm(step, index), index + 1
        if isinstance(step, Webhook):
            return self._item(None, "done", gettext("would send the contact's data to %(host)s", host=step.host),
                              payload=step.payload(self._call(index))), index + 1
        return self._item(None, "done", gettext("would be done: %(what)s", what=_phrase(step))), index + 1

    def _if(self, step: If) -> dict[str, Any]:
        holds = self.cid in step.rule.holds_for(self.conn, self.settings, [(self.cid, self.run.started_at)],
                                                now=self.t)
        rule = rule_text(step.rule.node, step.rule.run_paths, self.run.started_at, self.settings)
        facts = self._facts(step)
        branch = gettext("branch “yes”") if holds else gettext("branch “no”")
        # The person's values stand in the sentence beside their fields, once: «последний заказ (26.11.2026) позже …»
        shown = rule_text(step.rule.node, step.rule.run_paths, self.run.started_at, self.settings,
                          values={f["field"]: f["value"] for f in facts})
        text = gettext("%(branch)s: %(rule)s", branch=branch, rule=shown)
        goes = self.workflow.instruction(step.then_at if holds else step.else_at)
        return self._item(None, "branch", text, branch="then" if holds else "else", rule=rule, facts=facts,
                          next_step=self.workflow.number(goes.index) if goes is not None else None)

    def _facts(self, step: If) -> list[dict[str, Any]]:
        """The person's own values of the fields the rule asks about, at the simulated moment."""
        segments = Segments(self.conn, self.settings, now=self.t)
        out, seen = [], set()
        for cond in _conditions(step.rule.node):
            if cond.field.name in seen:
                continue
            seen.add(cond.field.name)
            try:
                value = self.conn.execute(select(segments.compiler.value(cond.field))
                                          .where(contacts_t.c.id == self.cid)).scalar()
            except Exception:  # noqa: BLE001 - a plugin's field that cannot be read alone: the rule's text says enough
                continue
            out.append({"field": cond.field.name, "title": _field_title(cond), "value": _value_text(value,
                                                                                                  self.settings)})
        return out

    # promo_code
    def _promo(self, step: promo.PromoCodeStep) -> dict[str, Any]:
        expires = end_of_local_day(self.t + step.valid_for, self.settings.tz)
        discount: Any = step.discount
        if discount == discount.to_integral_value():
            discount = int(discount)
        code = sample_code(step.prefix, step.length, self.cid)
        self.promo = {"id": 0, "code": code, "discount": discount, "expires_at": local_time(self.settings, expires)}
        self.promo_expires = expires
        text = gettext("a promo code would be issued: %(discount)s%%, valid until %(date)s (sample code %(code)s; "
                       "the real one is drawn when the run gets here)", discount=format_number(discount),
                       date=format_date(expires.astimezone(self.settings.tz)), code=code)
        return self._item(None, "done", text, code=code, discount=float(step.discount), expires_at=expires.isoformat())

    # send
    def _send(self, step: Send, index: int) -> dict[str, Any]:
        plan = forecast.plan_send(step, self.cid, self.t, self.facts, self.options, self.sent)
        channel = consent_channel_title(step.channel)
        if plan.held == "skipped_no_address":
            return self._item(None, "stopped", gettext("not sent: the contact has no valid address for %(channel)s",
                                                       channel=channel), reason="no_address")
        if plan.held == "skipped_no_consent":
            return self._item(None, "stopped", gettext(
                "not sent: no consent to %(channel)s for %(purpose)s", channel=channel,
                purpose=consent_purpose_title(step.purpose)), reason="no_consent")
        address = self.facts.usable_addresses(step.channel).get(self.cid)
        if address is None:
            return self._item(None, "stopped", gettext("not sent: every address of the contact for %(channel)s is "
                                                       "blocked (unsubscribed or bounced)", channel=channel),
                              reason="suppressed")
        moved = [self._moved(step, kind, until) for kind, until in plan.moves]  # in order: cap, then quiet, …
        if step.ignores_quiet and policy.quiet_until(self.options, step.channel, plan.at, self.zone) is not None:
            moved.append(gettext("quiet hours do not apply: a transactional message"))
        if plan.held == "skipped_frequency_cap":
            return self._item(plan.at, "stopped", gettext(
                "not sent: the frequency cap %(cap)s is reached until %(when)s, and the step skips then",
                cap=str(self.options.frequency_cap), when=format_moment(plan.cap_until or plan.at, self.zone,
                                                                          zone=True)), reason="capped")
        self.t = plan.at
        if self.t > self.horizon:
            return self._item(None, "waited", gettext("would go later than the days looked at"), reason="after_horizon")
        rendered = self._render(step, index)
        if "error" in rendered:
            return self._item(None, "stopped", gettext("not sent: the template does not render: %(error)s",
                                                       error=rendered["error"]), reason="template")
        if step.purpose != TRANSACTIONAL:
            self.sent.append(self.t)
        text = gettext("would go to %(address)s", address=format_phone(address) if "@" not in address else address)
        if moved:
            text += " (" + "; ".join(moved) + ")"
        if step.uses_promo and self.promo_expires is not None and self.t > self.promo_expires:
            text += ". " + gettext("By then the promo code it shows has expired (valid until %(date)s).",
                                   date=format_date(self.promo_expires.astimezone(self.settings.tz)))
        return self._item(None, "sent", text, channel=step.channel, address=address, template=step.template,
                          template_title=template_title(self.conn, self.settings, step.template), moved=moved,
                          **rendered)

    def _moved(self, step: Send, kind: str, until: dt.datetime) -> str:
        when = format_moment(until, self.zone, zone=True)
        if kind == policy.QUIET_HOURS:
            return gettext("quiet hours %(window)s move it to %(when)s", window=str(self.options.quiet(step.channel)),
                           when=when)
        return gettext("the frequency cap %(cap)s holds it until %(when)s", cap=str(self.options.frequency_cap),
                       when=when)

    def _render(self, step: Send, index: int) -> dict[str, Any]:
        call = self._call(index)
        variables = call.variables()
        context: dict[str, Any] = {"contact": dict(self.contact), "company": company(self.settings),
                                   "run": variables["run"], "workflow": variables["workflow"]}
        if self.promo is not None:
            context["promo"] = self.promo
        if step.uses_nps:
            context["nps"] = nps.sample_links(self.settings)
        context |= message_templates.preview_links(self.settings)  # never the person's own signed links
        try:
            template = message_templates.get(self.conn, self.settings, step.template)
            rendered = message_templates.render(template, context)
        except TemplateError as exc:
            return {"error": str(exc)}
        return {"subject": rendered.subject, "body": rendered.text, "html": rendered.html}

    # crm_task / crm_comment / crm_field
    def _crm(self, step: CrmTask | CrmComment | CrmField, index: int) -> dict[str, Any]:
        call = self._call(index)
        shown: dict[str, Any] = {}
        try:
            if isinstance(step, CrmTask):
                assert step.due_in is not None
                shown = {"title": call.render(step.title, "title"),
                         "description": call.render(step.description, "description") if step.description else "",
                         "due_at": format_moment(self.t + step.due_in, self.zone, zone=True)}
                what, quote = gettext("a task due %(due)s", due=shown["due_at"]), shown["title"]
                if shown["description"]:
                    quote += "\n" + shown["description"]
            elif isinstance(step, CrmComment):
                shown = {"comment": call.render(step.text, "text")}
                what, quote = gettext("a comment"), shown["comment"]
            else:
                shown = {"field": step.field, "value": call.render(step.value, "value")}
                what, quote = gettext("the field %(field)s", field=step.field), shown["value"]
        except StepFailed as exc:
            return self._item(None, "stopped", gettext("would fail: %(error)s", error=str(exc)), reason="template")
        crms = crm_targets(self.conn, self.cid)
        if isinstance(step, CrmTask):
            crms = crms[:1]  # a call task goes to one manager
        if not crms:
            return self._item(None, "stopped", gettext("%(what)s: the contact is in no CRM, so the step would be "
                                                       "skipped", what=what), reason="no_crm", quote=quote, **shown)
        titles = {s: source_title(s, self.pm) for s, _ in crms}
        return self._item(None, "done", gettext("%(what)s in %(crm)s", what=what, crm=", ".join(
            dict.fromkeys(titles[s] for s, _ in crms))),
            crm=[{"source": s, "title": titles[s], "external_id": e} for s, e in crms], quote=quote, **shown)


def template_title(conn: Connection, settings: Settings, name: str) -> str:
    """A template's title in the reader's language ("" when it has none or is gone: the name says it then)."""
    try:
        return translated_title(message_templates.get(conn, settings, name).title)
    except TemplateError:
        return ""


def send_phrase(step: Send, title: str) -> str:
    """«Отправить письмо: «Возвращайтесь (письмо)»»: the send step with its template's title for its name."""
    named = gettext("“%(title)s”", title=title)
    if step.channel == message_templates.EMAIL:
        return gettext("Send an email: %(template)s", template=named)
    if step.channel == "sms":
        return gettext("Send an SMS: %(template)s", template=named)
    return gettext("Send by %(channel)s: %(template)s", channel=step.channel, template=named)


def source_title(source: str, pm: pluggy.PluginManager | None = None) -> str:
    """A CRM by its product name (Битрикс24), as the contact card and the connections page name it.

    The name comes from the admin page the source's plugin registers; a
    source without one is shown by its technical name.
    """
    # not in hub.api on purpose: the admin's registry of pages is where a source gets its product name
    from flask import current_app, has_app_context

    from hub.admin import access, filters, registry
    from hub.api import current_language

    if has_app_context() and access.ADMIN_BLUEPRINTS in current_app.config:
        return filters.source_title(source)
    from hub.plugins import get_pm

    for page in registry.collect(pm or get_pm()):
        if page.source == source:
            return page.title_in(current_language())
    return source


def _phrase(step: Step) -> str:
    try:
        return step.phrase()
    except Exception:  # noqa: BLE001 - a plugin's step whose phrase fails is still named by its kind
        return kind_title(step)


def sample_code(prefix: str | None, length: int, contact_id: int) -> str:
    """A code shaped like the real ones, the same for a person every time (no code is issued)."""
    digest = hashlib.sha256(f"trial:{contact_id}".encode()).digest()
    body = "".join(promo.ALPHABET[b % len(promo.ALPHABET)] for b in digest[:length])
    return f"{prefix}-{body}" if prefix else body


def crm_targets(conn: Connection, contact_id: int) -> list[tuple[str, str]]:
    """(source, external id) of each live CRM record of the person whose plugin accepts writes."""
    # not in hub.api on purpose: the registry of workflow steps that plugins register (and the sources behind them)
    from hub.plugins import sources

    from hub.api import WriteBack

    factories = sources()
    out = []
    for source, external_id in conn.execute(select(refs_t.c.source, refs_t.c.external_id).where(
            refs_t.c.contact_id == contact_id, refs_t.c.deleted_at.is_(None)).order_by(refs_t.c.id)):
        factory = factories.get(source)
        if factory is None:
            continue
        if isinstance(factory, type) and not issubclass(factory, WriteBack):
            continue
        out.append((source, external_id))
    return out


# --- an if rule in words --------------------------------------------------------------------

def _conditions(node: Node) -> Iterable[Condition]:
    if isinstance(node, Condition):
        yield node
    elif isinstance(node, (AllOf, AnyOf)):
        for item in node.items:
            yield from _conditions(item)
    elif isinstance(node, Not):
        yield from _conditions(node.item)


def _field_title(cond: Condition) -> str:
    description = cond.field.field.description
    return gettext(description) if description else cond.field.name


OPERATORS = {"eq": "=", "ne": "≠", "gt": ">", "gte": "≥", "lt": "<", "lte": "≤"}


def rule_text(node: Node, run_paths: frozenset[str], started_at: dt.datetime, settings: Settings,
              values: dict[str, str] | None = None) -> str:
    """The rule as people read it: «когда был последний заказ после дня входа (06.12.2026)».

    With `values` (field → the person's value as text) each field carries its
    value beside it, «когда был последний заказ (26.11.2026) после …», so a
    trace says the fact once, where the rule asks about it.
    """
    if isinstance(node, Condition):
        if node.path in run_paths:
            value = gettext("the day the run started (%(date)s)", date=format_date(started_at.astimezone(
                settings.tz)))
        else:
            value = _value_text(node.written, settings)
        op = OPERATORS.get(node.op) or _op_title(node.op)
        field = _field_title(node)
        if values is not None and node.field.name in values:
            field = f"{field} ({values[node.field.name]})"
        return f"{field} {op} {value}".strip()
    if isinstance(node, AllOf):
        return gettext("all of: %(items)s", items="; ".join(rule_text(i, run_paths, started_at, settings, values)
                                                             for i in node.items))
    if isinstance(node, AnyOf):
        return gettext("any of: %(items)s", items="; ".join(rule_text(i, run_paths, started_at, settings, values)
                                                             for i in node.items))
    if isinstance(node, Not):
        return gettext("not (%(rule)s)", rule=rule_text(node.item, run_paths, started_at, settings, values))
    assert isinstance(node, SegmentRef)
    return gettext("in the segment %(segment)s", segment=node.name)


def _op_title(op: str) -> str:
    titles = {"in": gettext("is one of"), "not_in": gettext("is none of"), "contains": gettext("contains"),
              "is_null": gettext("is empty"), "not_null": gettext("is filled in"), "before": gettext("earlier than"),
              "after": gettext("later than"), "within_last": gettext("within the last"),
              "birthday_within": gettext("birthday within"), "matches": gettext("matches")}
    return titles.get(op, op)


def _value_text(value: Any, settings: Settings) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return gettext("yes") if value else gettext("no")
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        utc = aware.astimezone(dt.timezone.utc)
        if utc.time() == dt.time():  # a date-only field (a CRM deal closed «8 августа») kept as UTC midnight
            return format_date(utc.date())
        return format_moment(aware, settings.tz)
    if isinstance(value, dt.date):
        return format_date(value)
    if isinstance(value, (int, float)) or type(value).__name__ == "Decimal":
        return format_number(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(_value_text(v, settings) for v in value)
    text = str(value)
    if len(text) >= 16 and text[4:5] == "-" and text[10:11] in ("T", " "):
        try:
            return _value_text(dt.datetime.fromisoformat(text), settings)
        except ValueError:
            return text
    return text
