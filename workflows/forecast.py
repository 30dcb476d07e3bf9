"""`hub workflows run NAME --dry-run`: who would get what, and when, over the next days; nothing is written.

The forecast takes the contacts `hub workflows run` would start now (the
trigger segment evaluated now, reentry and the holdout applied) and the runs
already under way, and walks each through the steps on a simulated clock:
waits move it forward, quiet hours push a message to the morning in the
contact's time zone, the frequency cap counts what they were sent lately and
what the forecast itself plans, consent and a usable address are checked as
they are now. `if` rules are asked of today's data at the simulated moment,
so a forecast assumes nobody buys in the meantime. Events still to come
(orders, new contacts) cannot be foreseen; event workflows show the runs
their past events would start.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

import pluggy
from sqlalchemy import Connection, Engine, select

# not in hub.api on purpose: the campaign engine writes outbox rows and dispatches them
from hub import messaging
from hub.api import (N_, OWN_ADDRESS, TRANSACTIONAL, Contact, ContactIdentity, Settings, chunks, format_number,
                     gettext, kind_for_channel, next_local_time, ngettext, parse_time_of_day, utcnow)
# not in hub.api on purpose: conditions and triggers are written in the segment rule language itself
from hub.segments.evaluate import Segments
# not in hub.api on purpose: conditions and triggers are written in the segment rule language itself
from hub.segments.rules import RuleError
from workflows import conditions, config, policy, sms_estimate, store, triggers
from workflows.definition import Goto, If, Workflow, parse
from workflows.models import WorkflowRow, WorkflowRun
from workflows.send import Send
from workflows.steps import Exit, Wait

runs_t = WorkflowRun.__table__
workflows_t = WorkflowRow.__table__
contacts_t = Contact.__table__
identities_t = ContactIdentity.__table__


@dataclass
class Sim:
    contact_id: int
    pc: int
    t: dt.datetime
    started_at: dt.datetime
    existing: bool = False
    done: bool = False
    actions: list[tuple[dt.datetime, int, str]] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # why a send step did not message them, in order


class _Facts:
    """What the forecast needs to know about the contacts, fetched once per kind."""

    def __init__(self, conn: Connection, settings: Settings, ids: list[int], now: dt.datetime) -> None:
        self.conn, self.settings, self.ids, self.now = conn, settings, ids, now
        self.zones = policy.contact_zones(conn, settings, ids) if ids else {}
        self._addresses: dict[str, set[int]] = {}
        self._consent: dict[tuple[str, str], set[int]] = {}
        self._recent: dict[int, list[dt.datetime]] | None = None
        self.segments: Segments | None = None

    def has_address(self, channel: str) -> set[int]:
        kind = kind_for_channel(channel)
        if kind == OWN_ADDRESS:  # the channel finds the person (its can_contact says whether it can)
            return set(self.ids)
        if kind not in self._addresses:
            found: set[int] = set()
            for part in chunks(self.ids, 1000):
                found.update(self.conn.execute(select(identities_t.c.contact_id).where(
                    identities_t.c.contact_id.in_(part), identities_t.c.kind == kind, identities_t.c.valid)).scalars())
            self._addresses[kind] = found
        return self._addresses[kind]

    def usable_addresses(self, channel: str) -> dict[int, str | None]:
        """Each contact with a valid address for the channel: the first one not suppressed, None if all are.

        Asked of the outbox's own address picker, in one query per 500
        addresses; an empty extra candidate (never suppressed) tells "all of
        them suppressed" apart from "the first one is fine".
        """
        kind = kind_for_channel(channel)
        if kind == OWN_ADDRESS:
            return {cid: "" for cid in self.ids}
        found: dict[int, list[str]] = defaultdict(list)
        for part in chunks(self.ids, 1000):
            for cid, value in self.conn.execute(
                    select(identities_t.c.contact_id, identities_t.c.value)
                    .where(identities_t.c.contact_id.in_(part), identities_t.c.kind == kind, identities_t.c.valid)
                    .order_by(identities_t.c.id)):
                found[cid].append(value)
        picked = messaging.pick_addresses(self.conn, self.settings,
                                          {cid: {f"{kind}s": [*values, ""]} for cid, values in found.items()}, channel)
        return {cid: value or None for cid, value in picked.items()}

    def consents(self, channel: str, purpose: str) -> set[int]:
        if (channel, purpose) not in self._consent:
            if self.segments is None:
                self.segments = Segments(self.conn, self.settings, now=self.now)
            try:
                rule = conditions.parse({"field": f"consent.{channel}.{purpose}", "op": "eq", "value": "granted"},
                                        "consent", self.segments.registry)
                found = rule.holds_for(self.conn, self.settings, [(cid, self.now) for cid in self.ids], now=self.now)
            except RuleError:
                found = set()
            self._consent[(channel, purpose)] = found
        return self._consent[(channel, purpose)]

    def recent(self, since: dt.datetime) -> dict[int, list[dt.datetime]]:
        if self._recent is None:
            self._recent = policy.recent_messages(self.conn, self.ids, since)
        return self._recent


@dataclass
class Reach:
    """Who of some contacts a message on a channel and purpose would reach now, and why the others not.

    `addresses` maps each reachable contact to the address it would go to;
    `held` maps each other one to the first reason that holds, in the order
    the send asks them: no_address, no_consent, suppressed, capped.
    """

    addresses: dict[int, str]
    held: dict[int, str]
    zones: dict[int, Any]


def reach(conn: Connection, settings: Settings, ids: list[int], channel: str, purpose: str, now: dt.datetime,
          options: config.WorkflowSettings | None = None) -> Reach:
    """The send step's own questions asked set-wise, so a campaign enters (and a preview counts) only those it reaches.

    A campaign that entered people it cannot write to would still issue them
    its promo code; asking here, before they enter, keeps codes and letters
    matched. The send step asks again when it sends (consent may be withdrawn
    in between).
    """
    options = options or config.load(settings)
    facts = _Facts(conn, settings, ids, now)
    usable = facts.usable_addresses(channel)
    allowed = None if purpose == TRANSACTIONAL else facts.consents(channel, purpose)
    cap = options.frequency_cap if purpose != TRANSACTIONAL else None
    recent = facts.recent(now - cap.period) if cap else {}
    addresses: dict[int, str] = {}
    held: dict[int, str] = {}
    for cid in ids:
        address = usable.get(cid)
        if cid not in usable:
            held[cid] = "no_address"
        elif allowed is not None and cid not in allowed:
            held[cid] = "no_consent"
        elif address is None:
            held[cid] = "suppressed"
        elif cap is not None and policy.cap_until(cap, recent.get(cid, []), now) is not None:
            held[cid] = "capped"
        else:
            addresses[cid] = address
    return Reach(addresses, held, facts.zones)


def _workflow(conn: Connection, settings: Settings, name: str, pm: pluggy.PluginManager | None
              ) -> tuple[Any, Workflow]:
    """The saved workflow, or a shipped one not yet installed (a dry run writes nothing, not even that)."""
    row = conn.execute(select(workflows_t).where(workflows_t.c.name == name)).first()
    if row is None and name in store.library_documents():
        return None, parse(store.library_documents()[name], conn, settings, pm=pm)
    if row is None:
        row = store.row(conn, name)  # raises with a suggestion
    return row, store.definition(conn, settings, row.id, row.version, pm)


def forecast(engine: Engine, settings: Settings, name: str, *, days: int = 14, now: dt.datetime | None = None,
             sample: int = 10, pm: pluggy.PluginManager | None = None, overlap: bool = False) -> dict[str, Any]:
    """The dry run's report (`hub workflows run NAME --dry-run --json`).

    `overlap` adds who of the entrants other switched-on workflows already
    reach (workflows.overlap): switching on asks it, a plain forecast need not.
    """
    now = now or utcnow()
    horizon = now + dt.timedelta(days=days)
    options = config.load(settings)
    with engine.connect() as conn:
        row, workflow = _workflow(conn, settings, name, pm)
        entrants, skipped, note = _entrants(conn, settings, row, workflow, now)
        starts = _date_starts(conn, settings, row, workflow, now, days) if workflow.trigger.kind == "date" else {}
        if starts:  # a date trigger: each of the days brings its own entrants, at `at` that day
            entrants, skipped = (_eligible(conn, row, workflow, list(starts), now)[:2] if row is not None
                                 else (list(starts), 0))
        holdout = [cid for cid in entrants if triggers.in_holdout(workflow, cid)]
        chosen = [cid for cid in entrants if not triggers.in_holdout(workflow, cid)]
        sims = [Sim(cid, 0, starts.get(cid, now), starts.get(cid, now)) for cid in chosen]
        if row is not None:
            r = runs_t.c
            for run in conn.execute(select(r.contact_id, r.step, r.next_at, r.started_at).where(
                    r.workflow_id == row.id, r.status.in_(("running", "waiting")))):
                sims.append(Sim(run.contact_id, run.step, max(now, run.next_at or now), run.started_at, existing=True))
        facts = _Facts(conn, settings, sorted({s.contact_id for s in sims}), now)
        steps: dict[int, Counter[str]] = defaultdict(Counter)
        _simulate(workflow, sims, facts, options, now=now, horizon=horizon, steps=steps)
        names = contact_names(conn, [s.contact_id for s in sorted(sims, key=lambda s: s.contact_id)[:sample]])
        # the parts each SMS step's message takes, as its template renders for the sample contact
        sms_parts = {n: sms_estimate.template_parts(conn, settings, i.step.template)
                     for n, i in enumerate(workflow.program)
                     if isinstance(i.step, Send) and i.step.channel == sms_estimate.SMS}
        if overlap:
            from workflows import overlap as overlaps

            shared = overlaps.find(conn, settings, workflow.name, chosen, now)
    by_day: dict[str, Counter[str]] = defaultdict(Counter)
    messages: Counter[str] = Counter()
    parts = 0
    for sim in sims:
        for at, index, what in sim.actions:
            instruction = workflow.program[index]
            if isinstance(instruction.step, Send) and what.startswith("send"):
                messages[instruction.step.channel] += 1
                parts += sms_parts.get(index, 0)
                by_day[at.astimezone(settings.tz).date().isoformat()][instruction.step.channel] += 1
            elif not isinstance(instruction.step, (Wait, If, Goto)):
                by_day[at.astimezone(settings.tz).date().isoformat()][instruction.kind] += 1
    report: dict[str, Any] = {
        "workflow": workflow.name, "days": days, "from": now.isoformat(), "until": horizon.isoformat(),
        "would_start": len(chosen), "holdout": len(holdout), "skipped": skipped,
        "already_running": sum(1 for s in sims if s.existing),
        "messages": dict(messages),
        "steps": [{"step": workflow.number(i.index), "label": i.step.label(), **dict(steps.get(i.index, Counter()))}
                  for i in workflow.steps()],
        "by_day": [{"date": day, **dict(counts)} for day, counts in sorted(by_day.items())],
        "contacts": [{"contact_id": s.contact_id, "name": names.get(s.contact_id),
                      "actions": [{"at": at.isoformat(), "step": workflow.number(index), "what": what}
                                  for at, index, what in s.actions]}
                     for s in sorted(sims, key=lambda s: s.contact_id)[:sample]],
    }
    report["holdout_percent"] = float(workflow.holdout or 0)
    if starts:  # the first look starts only today's
        today = triggers.date_day(settings, now)
        report["first_tick"] = sum(1 for cid in chosen if triggers.date_day(settings, starts[cid]) == today)
    report["silent"] = _silent(workflow, [s for s in sims if not s.existing])
    if messages.get(sms_estimate.SMS):
        report["sms"] = sms_estimate.summary(settings, messages[sms_estimate.SMS], parts)
    if overlap:
        report["overlap"] = shared
    if note:
        report["note"] = note
    return report


SILENT_REASONS = ("skipped_no_consent", "skipped_no_address", "skipped_frequency_cap", "after_horizon",
                  "no_message_step")


def _silent(workflow: Workflow, sims: list[Sim]) -> dict[str, int]:
    """How many new entrants no message would reach within the forecast, by the first reason that held them.

    `no_message_step`: their way through the steps reaches no send within the
    forecast (a branch without one, or a wait longer than the forecast).
    """
    found: Counter[str] = Counter()
    for sim in sims:
        if any(isinstance(workflow.program[index].step, Send) for _at, index, _what in sim.actions):
            continue
        found[sim.held[0] if sim.held else "no_message_step"] += 1
    return {"total": sum(found.values()), **{k: found[k] for k in SILENT_REASONS if found[k]}}


def _entrants(conn: Connection, settings: Settings, row: Any, workflow: Workflow, now: dt.datetime
              ) -> tuple[list[int], int, str | None]:
    """Who `hub workflows run` would start now, how many it would pass over, and a note."""
    trigger = workflow.trigger
    if trigger.kind == "event" and trigger.event == "deal.stuck":  # the deals stuck now start at the first look
        people = list(dict.fromkeys(c.contact_id for c in triggers.stuck_deal_candidates(conn, trigger.after, now)))
        return (people, 0, None) if row is None else _eligible(conn, row, workflow, people, now)
    if trigger.kind == "event":
        if row is None or not row.enabled:
            return [], 0, gettext("%(name)s starts on an event (%(event)s); it watches for events once it is on",
                                  name=workflow.name, event=trigger.event)
        candidates = triggers.event_candidates(conn, row, workflow, now=now)
        return _eligible(conn, row, workflow, [c.contact_id for c in candidates], now)
    if trigger.kind == "exit":
        assert trigger.segment is not None
        note = gettext("%(name)s starts when contacts leave the segment %(segment)s; who will leave it "
                       "cannot be foreseen", name=workflow.name, segment=trigger.segment)
        pending = triggers.exit_pending(conn, settings, trigger.segment, now=now)
        if row is None or not row.enabled:
            # switching on refreshes the segment first (triggers.baseline_exits): these are not its exits
            if pending:
                note += ". " + ngettext(
                    "%(num)s recorded member no longer fits the segment; switching on brings the segment up to "
                    "date first, so they get nothing from this workflow",
                    "%(num)s recorded members no longer fit the segment; switching on brings the segment up to "
                    "date first, so they get nothing from this workflow", len(pending), num=format_number(len(pending)))
            return [], 0, note
        # on: the next refresh sees these leave (its first look's exits)
        chosen, skipped, _ = _eligible(conn, row, workflow, pending, now)
        return chosen, skipped, note
    if trigger.kind == "date":  # who, day by day: _date_starts
        return [], 0, gettext("counted day by day: each day at %(at)s (the shop's time) starts those whose date "
                              "comes round then; the first look starts today's", at=trigger.at)
    assert trigger.segment is not None
    members = Segments(conn, settings, now=now).member_ids(trigger.segment)
    if row is None:
        return members, 0, None
    return _eligible(conn, row, workflow, members, now)


def _date_starts(conn: Connection, settings: Settings, row: Any, workflow: Workflow, now: dt.datetime, days: int
                 ) -> dict[int, dt.datetime]:
    """When a date trigger would start each contact within the forecast: day by day, at `at`, first day first.

    Today counts unless the trigger already looked today (its state says so);
    each following day brings those whose date comes round then.
    """
    state = dict(row.state or {}) if row is not None else {}
    today = triggers.date_day(settings, now)
    starts: dict[int, dt.datetime] = {}
    for i in range(days):
        day = today + dt.timedelta(days=i)
        if i == 0 and state.get("date_day") == today.isoformat():
            continue
        at = max(now, dt.datetime.combine(day, parse_time_of_day(workflow.trigger.at or "00:00"), settings.tz))
        for cand in triggers.date_candidates(conn, settings, workflow, now=now, day=day):
            starts.setdefault(cand.contact_id, at)
    return starts


def _eligible(conn: Connection, row: Any, workflow: Workflow, ids: list[int], now: dt.datetime
              ) -> tuple[list[int], int, str | None]:
    history = triggers._history(conn, row.id, sorted(set(ids)))
    out, seen = [], set()
    for cid in ids:
        past = history.get(cid, [])
        if cid in seen or any(h.status in triggers.ACTIVE or workflow.reentry is None
                              or h.started_at > now - workflow.reentry for h in past):
            continue
        seen.add(cid)
        out.append(cid)
    return out, len(ids) - len(out), None


def _simulate(workflow: Workflow, sims: list[Sim], facts: _Facts, options: config.WorkflowSettings, *,
              now: dt.datetime, horizon: dt.datetime, steps: dict[int, Counter[str]]) -> None:
    planned: dict[int, list[dt.datetime]] = defaultdict(list)
    cap = options.frequency_cap
    recent = facts.recent(now - cap.period) if cap else {}
    for _ in range(4 * len(workflow.program) + 4):
        active = [s for s in sims if not s.done and s.t <= horizon]
        if not active:
            return
        groups: dict[int, list[Sim]] = defaultdict(list)
        for s in active:
            groups[s.pc].append(s)
        for pc, group in groups.items():
            instruction = workflow.instruction(pc)
            if instruction is None:
                for s in group:
                    s.done = True
                continue
            step = instruction.step
            if isinstance(step, If):
                at = max(s.t for s in group)
                holds = step.rule.holds_for(facts.conn, facts.settings, [(s.contact_id, s.started_at) for s in group],
                                            now=at)
                for s in group:
                    yes = s.contact_id in holds
                    steps[pc]["then" if yes else "else"] += 1
                    s.pc = step.then_at if yes else step.else_at
            elif isinstance(step, Goto):
                for s in group:
                    s.pc = step.target
            elif isinstance(step, Exit):
                for s in group:
                    steps[pc]["exit"] += 1
                    s.done = True
            elif isinstance(step, Wait):
                for s in group:
                    s.t, s.pc = wait_until(step, s.t, facts.zones.get(s.contact_id, facts.settings.tz)), pc + 1
            elif isinstance(step, Send):
                _send(step, pc, group, facts, options, recent, planned, steps, horizon)
            else:
                for s in group:
                    s.actions.append((s.t, pc, step.label()))
                    steps[pc]["count"] += 1
                    s.pc = pc + 1


def wait_until(step: Wait, t: dt.datetime, zone: Any) -> dt.datetime:
    """When a run waiting at `step` from `t` goes on: the length, then the time of day in the contact's zone."""
    until = t + (step.length or dt.timedelta(0))
    return next_local_time(until, zone, step.at) if step.at is not None else until


@dataclass
class Planned:
    """What the send step would do for one contact at `t`: when it goes, or the counter of why not.

    `held` is "skipped_no_address", "skipped_no_consent" or
    "skipped_frequency_cap" (on_cap: skip); `moves` are the (kind, until)
    moves of quiet hours and the frequency cap that took it to `at`, in
    order ("frequency_cap" to 22:58, then "quiet_hours" to 09:00);
    `quiet_until` and `cap_until` are each one's last.
    """

    at: dt.datetime
    held: str | None = None
    quiet_until: dt.datetime | None = None
    cap_until: dt.datetime | None = None
    moves: tuple[tuple[str, dt.datetime], ...] = ()


def plan_send(step: Send, contact_id: int, t: dt.datetime, facts: _Facts, options: config.WorkflowSettings,
              sent: list[dt.datetime]) -> Planned:
    """The send step's questions for one contact, in its order; `sent` is what counts against their cap.

    Shared by the forecast (everyone at once) and the try-on-a-contact trace
    (one person, step by step), so both say the same thing; the limits are
    asked through the same function the step and the dispatcher ask
    (policy.slot), so they say what the runner will do.
    """
    if contact_id not in facts.has_address(step.channel):
        return Planned(t, "skipped_no_address")
    if step.purpose != TRANSACTIONAL and contact_id not in facts.consents(step.channel, step.purpose):
        return Planned(t, "skipped_no_consent")
    slot = policy.slot(options, step.channel, step.purpose, t, facts.zones.get(contact_id, facts.settings.tz), sent,
                       step.quiet_hours)
    moves = tuple((m.kind, m.until) for m in slot.moves)
    capped = slot.moved_by(policy.FREQUENCY_CAP)
    if capped is not None and step.on_cap == "skip":
        # The step waits out the quiet hours, then skips on the cap (Send._held).
        first = moves[0]
        if first[0] == policy.QUIET_HOURS:
            return Planned(first[1], "skipped_frequency_cap", first[1], moves[1][1], moves[:2])
        return Planned(t, "skipped_frequency_cap", None, first[1], moves[:1])
    return Planned(slot.at, None, slot.moved_by(policy.QUIET_HOURS), capped, moves)


def _send(step: Send, pc: int, group: list[Sim], facts: _Facts, options: config.WorkflowSettings,
          recent: dict[int, list[dt.datetime]], planned: dict[int, list[dt.datetime]],
          steps: dict[int, Counter[str]], horizon: dt.datetime) -> None:
    for s in group:
        s.pc = pc + 1
        plan = plan_send(step, s.contact_id, s.t, facts, options, recent.get(s.contact_id, []) + planned[s.contact_id])
        if plan.quiet_until is not None:
            steps[pc]["deferred_quiet_hours"] += 1
        s.t = plan.at
        if plan.held is not None:
            steps[pc][plan.held] += 1
            s.held.append(plan.held)
            continue
        if plan.cap_until is not None:
            steps[pc]["deferred_frequency_cap"] += 1
        if s.t > horizon:
            steps[pc]["after_horizon"] += 1
            s.held.append("after_horizon")
            continue
        planned[s.contact_id].append(s.t)
        steps[pc]["count"] += 1
        s.actions.append((s.t, pc, step.label()))


def contact_names(conn: Connection, ids: list[int]) -> dict[int, str]:
    """How a sample names people: their name, or their number when they have none."""
    c = contacts_t.c
    rows: Iterable[Any] = conn.execute(select(c.id, c.first_name, c.last_name).where(c.id.in_(ids))) if ids else []
    return {r.id: " ".join(p for p in (r.first_name, r.last_name) if p) or f"#{r.id}" for r in rows}


SWITCH_ON_DAYS = 14  # how far ahead switching on shows what a workflow will do (the page and `hub workflows enable`)


def switch_on_numbers(report: dict[str, Any]) -> dict[str, Any]:
    """What switching a workflow on would do, from its forecast: the numbers a person confirms.

    `first_tick` is how many people its first look would message (the
    entrants outside the holdout); `promo_codes` counts the codes its
    promo_code steps would issue within the forecast, `actions` the other
    steps' work by kind (CRM tasks, comments, webhooks); `silent` how many
    entrants no message would reach and why; `overlap` who of them other
    switched-on workflows already reach (when the forecast was asked for it).
    """
    channels = set(report["messages"])
    promo_codes = sum(int(day.get("promo_code", 0)) for day in report["by_day"])
    actions: Counter[str] = Counter()
    for day in report["by_day"]:
        for kind, n in day.items():
            if kind not in channels and kind not in ("date", "promo_code"):
                actions[kind] += int(n)
    return {"workflow": report["workflow"], "days": report["days"], "would_start": report["would_start"],
            "holdout": report["holdout"], "holdout_percent": report.get("holdout_percent", 0),
            "already_running": report["already_running"], "messages": dict(report["messages"]),
            "promo_codes": promo_codes, "actions": dict(sorted(actions.items())),
            "first_tick": report.get("first_tick", report["would_start"]),
            "silent": report.get("silent") or {"total": 0}, "overlap": report.get("overlap"),
            "by_day": report["by_day"], "note": report.get("note"), "sms": report.get("sms")}


def _action_text(kind: str, n: int) -> str:
    """A step kind's work in a 14-day summary: «76 задач менеджерам в CRM»."""
    num = format_number(n)
    if kind == "crm_task":
        return ngettext("%(num)s task for managers in the CRM", "%(num)s tasks for managers in the CRM", n, num=num)
    if kind == "crm_comment":
        return ngettext("%(num)s comment in the CRM", "%(num)s comments in the CRM", n, num=num)
    if kind == "crm_field":
        return ngettext("%(num)s field change in the CRM", "%(num)s field changes in the CRM", n, num=num)
    if kind == "webhook":
        return ngettext("%(num)s webhook call", "%(num)s webhook calls", n, num=num)
    if kind == "tag":
        return ngettext("%(num)s tag set", "%(num)s tags set", n, num=num)
    if kind == "untag":
        return ngettext("%(num)s tag removed", "%(num)s tags removed", n, num=num)
    from workflows.definition import step_types
    from workflows.steps import kind_title

    found = step_types().get(kind)
    return gettext("%(what)s: %(num)s", what=kind_title(found) if found is not None else kind, num=num)


def silent_text(numbers: dict[str, Any]) -> str | None:
    """«Ни одного сообщения не получат 55 из вошедших: нет согласия — 37; нет адреса — 18.», None when all get one."""
    silent = numbers.get("silent") or {}
    total = int(silent.get("total", 0))
    if not total:
        return None
    days = numbers["days"]

    def said(key: str, num: str) -> str:
        if key == "skipped_no_consent":
            return gettext("no consent to such messages — %(num)s", num=num)
        if key == "skipped_no_address":
            return gettext("no address to send to (email or phone) — %(num)s", num=num)
        if key == "skipped_frequency_cap":
            return gettext("skipped by the frequency cap — %(num)s", num=num)
        if key == "after_horizon":
            return ngettext("their message goes later than %(days)s day — %(num)s",
                            "their message goes later than %(days)s days — %(num)s", days, days=days, num=num)
        return ngettext("their way through the steps has no message within %(days)s day — %(num)s",
                        "their way through the steps has no message within %(days)s days — %(num)s", days,
                        days=days, num=num)

    why = [said(k, format_number(int(silent[k]))) for k in SILENT_REASONS if silent.get(k)]
    return ngettext("%(num)s of those entering would get no message at all: %(why)s.",
                    "%(num)s of those entering would get no message at all: %(why)s.", total,
                    num=format_number(total), why="; ".join(why))


def holdout_text(numbers: dict[str, Any]) -> str:
    """The holdout as a share that is drawn, not cut: small numbers stray from the per cent."""
    share = float(numbers.get("holdout_percent") or 0)
    percent = format_number(int(share) if share.is_integer() else share)
    return ngettext("%(num)s would go into the holdout (≈%(percent)s %% — chosen at random; with small numbers "
                    "the share varies)",
                    "%(num)s would go into the holdout (≈%(percent)s %% — chosen at random; with small numbers "
                    "the share varies)", numbers["holdout"], num=format_number(numbers["holdout"]), percent=percent)


def overlap_lines(numbers: dict[str, Any]) -> list[str]:
    """Per other switched-on workflow, how many of the entrants it already reaches, in words (for the command line)."""
    found = numbers.get("overlap") or {}
    lines = []
    for other in found.get("workflows", []):
        if other["running"]:
            lines.append(ngettext("%(num)s of them is already in the workflow «%(title)s» (switched on)",
                                  "%(num)s of them are already in the workflow «%(title)s» (switched on)",
                                  other["running"], num=format_number(other["running"]), title=other["title"]))
        if other["entering"]:
            lines.append(ngettext("%(num)s of them would enter the workflow «%(title)s» too (switched on; they are "
                                  "in its segment)",
                                  "%(num)s of them would enter the workflow «%(title)s» too (switched on; they are "
                                  "in its segment)",
                                  other["entering"], num=format_number(other["entering"]), title=other["title"]))
    return lines


def overlap_text(numbers: dict[str, Any]) -> str | None:
    """The warning that heads the overlap: the same people may get two letters; None without overlap."""
    found = numbers.get("overlap") or {}
    if not found.get("contacts"):
        return None
    return ngettext("Careful: %(num)s of those entering is already reached by other switched-on workflows and may "
                    "get two messages at once.",
                    "Careful: %(num)s of those entering are already reached by other switched-on workflows and may "
                    "get two messages at once.", found["contacts"], num=format_number(found["contacts"]))


def switch_on_text(numbers: dict[str, Any]) -> str:
    """The numbers in words: «Сразу войдут 1 240 человек; в контрольную группу попадут 138 (…). За 14 дней: …»."""
    parts = [ngettext("%(num)s person would enter at once", "%(num)s people would enter at once",
                      numbers["would_start"], num=format_number(numbers["would_start"]))]
    if numbers["holdout"]:
        parts[0] += "; " + holdout_text(numbers)
    parts[0] += "."
    if numbers["already_running"]:
        parts.append(ngettext("%(num)s run is already under way.", "%(num)s runs are already under way.",
                              numbers["already_running"], num=format_number(numbers["already_running"])))
    counted = []
    for channel, n in sorted(numbers["messages"].items()):
        if channel == "email":
            counted.append(ngettext("%(num)s letter", "%(num)s letters", n, num=format_number(n)))
        elif channel == "sms":
            counted.append(sms_estimate.text(numbers.get("sms")) or
                           ngettext("%(num)s SMS", "%(num)s SMS", n, num=format_number(n)))
        else:
            counted.append(gettext("%(num)s by %(channel)s", num=format_number(n), channel=channel))
    if numbers["promo_codes"]:
        counted.append(ngettext("%(num)s promo code", "%(num)s promo codes", numbers["promo_codes"],
                                num=format_number(numbers["promo_codes"])))
    counted += [_action_text(kind, n) for kind, n in (numbers.get("actions") or {}).items() if n]
    parts.append(ngettext("Within %(days)s day: %(what)s.", "Within %(days)s days: %(what)s.", numbers["days"],
                          days=numbers["days"], what=", ".join(counted) if counted else gettext("no messages")))
    silent = silent_text(numbers)
    if silent:
        parts.append(silent)
    return " ".join(parts)


# A step's forecast counts that exclude each other (each run that reached the step is in exactly one),
# then the ones that say more about some of them ("of these, held by quiet hours").
OUTCOMES = ("count", "after_horizon", "skipped_frequency_cap", "skipped_no_consent", "skipped_no_address",
            "then", "else", "exit")
OF_WHICH = ("deferred_frequency_cap", "deferred_quiet_hours")


def step_outcomes(step: dict[str, Any]) -> list[str]:
    """A forecast step's counts as a list that adds up: «отправится: 21 (из них отложено лимитом частоты: 14); …».

    A deferred message is still sent (or goes after the forecast), so the
    deferrals are said as part of those, not beside them; the total is the
    number of runs that reached the step.
    """
    send = step.get("kind") == "send"
    words = {"count": N_("will be sent: %(num)s") if send else N_("will be done: %(num)s"),
             "after_horizon": N_("later than the forecast: %(num)s"),
             "skipped_frequency_cap": N_("skipped by the frequency cap: %(num)s"),
             "skipped_no_consent": N_("no consent: %(num)s"), "skipped_no_address": N_("no address: %(num)s"),
             "then": N_("the rule holds: %(num)s"), "else": N_("the rule does not hold: %(num)s"),
             "exit": N_("leave the workflow: %(num)s"),
             "deferred_frequency_cap": N_("held by the frequency cap: %(num)s"),
             "deferred_quiet_hours": N_("held by quiet hours: %(num)s")}
    out = [gettext(words[k], num=format_number(int(step[k]))) for k in OUTCOMES if step.get(k)]
    later = [gettext(words[k], num=format_number(int(step[k]))) for k in OF_WHICH if step.get(k)]
    if later and out:
        out[0] += " " + gettext("(of these, %(what)s)", what=", ".join(later))
    elif later:
        out += later
    known = set(OUTCOMES) | set(OF_WHICH) | {"step", "label", "title", "summary", "text", "kind"}
    out += [f"{k}: {format_number(v)}" for k, v in sorted(step.items()) if k not in known and isinstance(v, int)]
    total = sum(int(step.get(k) or 0) for k in OUTCOMES)
    if len(out) > 1 and total:
        out.append(gettext("reached the step: %(num)s", num=format_number(total)))
    return out
