"""Workflow files: read one, check all of it, and turn its steps into a program the engine runs.

A workflow is a YAML (or JSON) document:

    name: reactivation_90d
    title: …
    trigger: {segment: dormant_90d}      # or {segment: vip, on: exit} (leaving it),
                                         # or {schedule: "0 10 * * *", segment: …}, or {event: order.won},
                                         # or an event sent to /api/v1/events: {event: cart_abandoned},
                                         # or a date in the card: {date: contact.birthday, before: 7d, at: "10:00"}
    reentry: 180d                        # or never (the default)
    holdout: 10%                         # a control group that enters, gets nothing, and is measured
    goal: {event: order.created, within: 30d}
    steps: [...]

Everything is checked when the file is loaded, against this Hub's plugins and
data: step names, durations, templates (and whether a promo code exists where
a template uses one), channels, segments, rule fields. Every problem is
reported with its path ("steps[4].then[0].send.template: no template named
'reactivaton_sms'; did you mean 'reactivation_sms'?"), all of them at once.

The steps become a flat program: `if` jumps to its `then` or `else` part, and
a hidden `goto` skips the `else` part after `then`. Instructions are numbered
from 0 in the database (step results, outbox keys); people read the recorded
steps numbered 1…N (`Workflow.number`), the hidden jumps left out.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, ClassVar, Mapping

import pluggy
from sqlalchemy import Connection

# not in hub.api on purpose: workflow files report their problems like segment files
from hub.problems import ProblemList
from hub.api import N_, Settings, format_duration, format_length, gettext, parse_duration, parse_time_of_day
# not in hub.api on purpose: conditions and triggers are written in the segment rule language itself
from hub.segments import fields as segment_fields
# not in hub.api on purpose: conditions and triggers are written in the segment rule language itself
from hub.segments.rules import RuleError, SegmentError, jsonable, read_document, references
# not in hub.api on purpose: a workflow file is checked against the saved segments
from hub.segments.store import load as load_segments
from workflows import conditions
from workflows.steps import Checking, Exit, Outcome, Step, StepCall, StepError

NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# The admin's own pages under /workflows/: a workflow of that name could not open its page.
RESERVED_NAMES = frozenset({"new", "library", "builder", "static"})
MAX_TITLE = 300  # workflows.title's length: a longer one could not be saved (and would not fit any page)
MAX_DESCRIPTION = 2000
KEYS = ("name", "title", "description", "trigger", "reentry", "holdout", "goal", "steps")
EVENTS = ("order.created", "order.won", "contact.created", "promo.expiring", "promo.expired", "deal.stuck")
# Events other systems send (POST /api/v1/events) are named without dots (hub.events.NAME_PATTERN), so a
# trigger's name says which kind it is: `{event: cart_abandoned}` starts a run for each such event.
API_EVENT = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
GOAL_EVENTS = ("order.created", "order.won", "promo.redeemed")
TRIGGER_KEYS = ("segment", "on", "schedule", "event", "before", "after", "workflow", "date", "at")
SEGMENT_ON = ("enter", "exit")
DATE_KEYS = ("date", "before", "at")
DATE_AT = "10:00"  # when a date trigger starts its runs (local time) unless it says
# A date trigger without `reentry` lets a contact in once a year: a birthday comes round every
# 365 days, and 300 leaves room for the day a contact's date is corrected in their card.
DATE_REENTRY = parse_duration("300d")
MAX_HOLDOUT = Decimal(50)
# Each kind of trigger as people call it and what it does (reports show them before the technical description).
TRIGGER_KINDS = {
    "segment": (N_("Entering a segment"), N_("Starts a run for each contact who enters the segment.")),
    "exit": (N_("Leaving a segment"), N_("Starts a run for each contact who leaves the segment.")),
    "schedule": (N_("On a schedule"), N_("At the scheduled times, starts a run for each of the segment's members.")),
    "event": (N_("On an event"), N_("Starts a run when the event happens: an order, a new contact, a promo code "
                                    "about to expire.")),
    "date": (N_("A date in the card"), N_("Every day at the set time, starts a run for each contact whose date "
                                          "(a birthday) comes round in the set number of days.")),
}


def is_api_event(event: Any) -> bool:
    """Whether a trigger's event is one other systems send through the API (not a built-in one)."""
    return isinstance(event, str) and event not in EVENTS and API_EVENT.match(event) is not None


def _did_you_mean(close: list[str]) -> str:
    """"; did you mean 'send'?" in the reader's language, or nothing when no name is close."""
    return gettext("; did you mean %(close)s?", close=repr(close[0])) if close else ""


class WorkflowError(ProblemList):
    """A workflow that cannot be used; `problems` lists every reason, each starting with its path."""


def date_fields(registry: segment_fields.Registry) -> list[str]:
    """The fields a date trigger may watch: the registry's dates (a day and month that come round every year).

    Moments (orders.first_at, contact.created_at) are left out: the rule
    language's anniversary (birthday_within) reads dates, and a moment's day
    depends on the time zone it is read in.
    """
    return sorted(n for n, f in registry.fields.items() if f.type == "date" and "<" not in n)


@dataclass(frozen=True)
class Trigger:
    kind: str  # segment | exit | schedule | event | date
    segment: str | None = None
    schedule: str | None = None
    event: str | None = None
    before: Any = None  # promo.expiring: how long before the code expires; date: how many days before the date
    after: Any = None  # deal.stuck: how long an open deal stands in one stage before it starts a run
    workflow: str | None = None  # promo events: only codes this workflow issued
    on: str | None = None  # segment triggers: enter (segment) or exit
    date: str | None = None  # date triggers: the field (contact.birthday)
    at: str | None = None  # date triggers: the local time runs start, "HH:MM"
    date_title: str | None = None  # date triggers: the field's description (an English msgid)

    def describe(self) -> str:
        if self.kind == "date":
            return f"date {self.date}, {format_duration(self.before) if self.before else '0d'} before, at {self.at}"
        if self.kind == "exit":
            return f"segment {self.segment} (on exit)"
        if self.kind == "event":
            extra = (f" {format_duration(self.before)} before" if self.before else
                     f" {format_duration(self.after)} in one stage" if self.after else "")
            return f"event {self.event}{extra}" + (f" (codes of {self.workflow})" if self.workflow else "")
        if self.kind == "schedule":
            return f"schedule \"{self.schedule}\" → segment {self.segment}"
        return f"segment {self.segment}"

    def text(self, segment_title: str | None = None) -> str:
        """The trigger as people read it: «вход в сегмент «Не покупали 90 дней» (dormant_90d)».

        `segment_title` is the segment's title in the reader's language (the caller reads it:
        the definition knows only the name); describe() gives the technical form for JSON.
        """
        segment = (gettext("“%(title)s” (%(name)s)", title=segment_title, name=self.segment) if segment_title
                   else str(self.segment))
        if self.kind == "event":
            text = (gettext("the event %(event)s, %(length)s before", event=self.event,
                            length=format_length(self.before)) if self.before else
                    gettext("an open deal %(length)s in one stage", length=format_length(self.after))
                    if self.after else gettext("the event %(event)s", event=self.event))
            return text + (" " + gettext("(codes of %(workflow)s)", workflow=self.workflow) if self.workflow else "")
        if self.kind == "schedule":
            from workflows.cron_words import schedule_words

            when = schedule_words(str(self.schedule))
            if when:
                return gettext("%(when)s, for the segment %(segment)s", when=when, segment=segment)
            return gettext("on the schedule “%(schedule)s”, for the segment %(segment)s", schedule=self.schedule,
                           segment=segment)
        if self.kind == "exit":
            return gettext("leaving the segment %(segment)s", segment=segment)
        if self.kind == "date":
            field = (gettext("“%(title)s” (%(name)s)", title=gettext(self.date_title), name=self.date)
                     if self.date_title else str(self.date))
            if self.before:
                return gettext("%(length)s before the date %(field)s, at %(at)s", length=format_length(self.before),
                               field=field, at=self.at)
            return gettext("on the date %(field)s, at %(at)s", field=field, at=self.at)
        return gettext("entering the segment %(segment)s", segment=segment)

    def title(self) -> str:
        """The kind of trigger in the reader's language ("Вход в сегмент"); describe() gives its technical form."""
        return gettext(TRIGGER_KINDS[self.kind][0])

    def summary(self) -> str:
        """One line on how this kind of trigger starts runs, in the reader's language."""
        return gettext(TRIGGER_KINDS[self.kind][1])


@dataclass(frozen=True)
class Goal:
    event: str
    within: Any  # timedelta

    def describe(self) -> dict[str, Any]:
        return {"event": self.event, "within": format_duration(self.within)}

    def within_text(self) -> str:
        """The goal's window as people say it: «30 дней»."""
        return format_length(self.within)


class If(Step):
    """`if: RULE` with `then:` and `else:`: which way this run goes, asked when it gets here."""

    name = "if"
    kind_title = N_("Condition")
    kind_summary = N_("Checks a rule about the contact when the run gets here and goes on one way or the other.")
    batched = True

    def __init__(self, rule: conditions.RunRule, then_at: int, else_at: int) -> None:
        self.rule, self.then_at, self.else_at = rule, then_at, else_at

    def label(self) -> str:
        return "if"

    def prepare(self, conn: Connection, calls: list[StepCall]) -> list[Any]:
        if not calls:
            return []
        holds = self.rule.holds_for(conn, calls[0].settings, [(c.run.contact_id, c.run.started_at) for c in calls],
                                    now=calls[0].now)
        return [c.run.contact_id in holds for c in calls]

    def write(self, conn: Connection, calls: list[StepCall], prepared: list[Any]) -> list[Outcome]:
        return [Outcome.done({"branch": "then" if yes else "else"}, goto=self.then_at if yes else self.else_at)
                for yes in prepared]


class Goto(Step):
    """The hidden jump past an `else:` part; leaves no step result."""

    name = "goto"
    batched = True
    recorded: ClassVar[bool] = False

    def __init__(self, target: int) -> None:
        self.target = target

    def write(self, conn: Connection, calls: list[StepCall], prepared: list[Any]) -> list[Outcome]:
        return [Outcome.done(goto=self.target) for _ in calls]


@dataclass(frozen=True)
class Instruction:
    index: int
    path: str
    step: Step

    @property
    def kind(self) -> str:
        return self.step.name

    @property
    def recorded(self) -> bool:
        return getattr(self.step, "recorded", True)


@dataclass(frozen=True)
class Workflow:
    name: str
    title: str | None
    description: str | None
    trigger: Trigger
    reentry: Any  # timedelta, or None for never
    holdout: Decimal  # per cent
    goal: Goal | None
    program: tuple[Instruction, ...]
    document: dict[str, Any]

    def instruction(self, index: int) -> Instruction | None:
        return self.program[index] if 0 <= index < len(self.program) else None

    def steps(self) -> list[Instruction]:
        """The instructions a report shows (the hidden jumps left out)."""
        return [i for i in self.program if i.recorded]

    def number(self, index: int) -> int:
        """The step number people read for an instruction index (1…N, no gaps).

        The database keeps instruction indexes, which count the hidden `goto`
        after a `then:` part; showing `index + 1` would skip a number after
        every if/then/else. A hidden jump (or the end of the program) gets the
        number of the step that comes next.
        """
        return 1 + sum(1 for i in self.program[:max(index, 0)] if i.recorded)


def read_file(path: Path) -> Any:
    """A workflow file as data; a file that is not YAML/JSON is refused with where it broke."""
    try:
        return read_document(path)
    except SegmentError as exc:
        raise WorkflowError([str(exc).split(": ", 1)[-1]], path.name) from None


def step_types(pm: pluggy.PluginManager | None = None) -> dict[str, type[Step]]:
    """Every step kind plugins registered (Hub's own included), by name."""
    # not in hub.api on purpose: the registry of workflow steps that plugins register
    from hub import plugins

    found = plugins.registry("register_workflow_steps", pm)
    for name, cls in found.items():
        if not (isinstance(cls, type) and issubclass(cls, Step)):
            raise ValueError(f"workflow step {name!r} must be registered as a subclass of workflows.steps.Step")
    return found


class _Parser:
    def __init__(self, conn: Connection, settings: Settings, name: str, pm: pluggy.PluginManager | None) -> None:
        self.conn, self.settings, self.pm = conn, settings, pm
        self.problems: list[str] = []
        self.program: list[Step | None] = []
        self.paths: list[str] = []
        self.types = step_types(pm)
        self.checking = Checking(settings, conn, name)
        self._registry: segment_fields.Registry | None = None
        self._segments: Any = None

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}" if path else message)

    @property
    def registry(self) -> segment_fields.Registry:
        if self._registry is None:
            self._registry = segment_fields.build(self.settings, self.pm)
        return self._registry

    @property
    def segments(self) -> Any:
        if self._segments is None:
            self._segments = load_segments(self.conn, self.registry)
        return self._segments

    def _append(self, step: Step | None, path: str) -> int:
        self.program.append(step)
        self.paths.append(path)
        return len(self.program) - 1

    # -- steps

    def block(self, items: Any, path: str) -> None:
        if not isinstance(items, list) or not items:
            self.problem(path, gettext("expected a list of at least one step"))
            return
        for i, item in enumerate(items):
            self.one(item, f"{path}[{i}]")

    def branch(self, body: Any, path: str) -> None:
        """What `then:`/`else:` hold: `exit`, one step, or a list of steps."""
        if isinstance(body, list):
            self.block(body, path)
        else:
            self.one(body, path)

    def one(self, item: Any, path: str) -> None:
        if item == "exit" or (isinstance(item, dict) and list(item) == ["exit"] and item["exit"] is None):
            self._append(Exit(None, self.checking), path)
            return
        if isinstance(item, str):
            hint = self._suggest(item)
            self.problem(path, gettext("%(item)s is not a step; a step is written like {wait: 7d}", item=repr(item))
                         + hint)
            return
        if not isinstance(item, dict) or not item:
            self.problem(path, gettext("expected a step like {send: {...}}, {wait: 7d} or if/then"))
            return
        if "if" in item:
            self.if_step(item, path)
            return
        if len(item) != 1:
            self.problem(path, gettext("a step has one name; found %(names)s (write them as separate steps)",
                                       names=", ".join(map(str, item))))
            return
        kind, options = next(iter(item.items()))
        cls = self.types.get(str(kind))
        if cls is None:
            self.problem(path, gettext("unknown step %(kind)s", kind=repr(kind)) + self._suggest(str(kind)))
            return
        try:
            step = cls(options, self.checking)
        except StepError as exc:
            where = f"{path}.{kind}" + (f".{exc.key}" if exc.key else "")
            self.problem(where, str(exc))
            return
        self._append(step, path)

    def _suggest(self, word: str) -> str:
        names = sorted(set(self.types) | {"if", "exit"})
        close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
        return _did_you_mean(close) if close else gettext(" (steps: %(steps)s)", steps=", ".join(names))

    def if_step(self, item: dict[str, Any], path: str) -> None:
        for key in item:
            if key not in ("if", "then", "else"):
                self.problem(f"{path}.{key}", gettext("unknown key; an if step has if, then and else"))
        if "then" not in item:
            self.problem(f"{path}.then", gettext("missing; say what happens when the rule holds (a step, a list, "
                                                 "or exit)"))
            return
        rule = None
        try:
            rule = conditions.parse(item["if"], f"{path}.if", self.registry)
            for ref in references(rule.node):
                if ref.name not in self.segments.definitions:
                    close = difflib.get_close_matches(ref.name, list(self.segments.definitions), n=1, cutoff=0.6)
                    self.problem(ref.path, gettext("%(name)s is not a segment", name=repr(ref.name))
                                 + _did_you_mean(close))
        except RuleError as exc:
            self.problems.extend(exc.problems)
        at = self._append(None, path)
        promo_before = self.checking.promo
        self.branch(item["then"], f"{path}.then")
        promo_then = self.checking.promo
        self.checking.promo = promo_before
        else_at: int
        if "else" in item:
            jump = self._append(None, f"{path}.then")
            else_at = len(self.program)
            self.branch(item["else"], f"{path}.else")
            self.program[jump] = Goto(len(self.program))
            promo_else = self.checking.promo
        else:
            else_at = len(self.program)
            promo_else = promo_before
        self.checking.promo = promo_before or (promo_then and promo_else)
        if rule is not None:
            self.program[at] = If(rule, at + 1, else_at)

    # -- the rest of the document

    def trigger(self, raw: Any) -> Trigger | None:
        if not isinstance(raw, dict) or not raw:
            self.problem("trigger", gettext("expected {segment: NAME}, {segment: NAME, on: exit}, "
                                            "{schedule: \"0 10 * * *\", segment: NAME}, {event: order.won} "
                                            "or {date: contact.birthday, before: 7d, at: \"10:00\"}"))
            return None
        ok = True
        for key in raw:
            if key not in TRIGGER_KEYS:
                close = difflib.get_close_matches(str(key), TRIGGER_KEYS, n=1, cutoff=0.6)
                self.problem(f"trigger.{key}", gettext("unknown key") + (
                    _did_you_mean(close) if close else gettext("; use %(keys)s", keys=", ".join(TRIGGER_KEYS))))
                ok = False
        if "date" in raw:
            date = self.date_trigger(raw)
            return date if ok else None
        if raw.get("at") is not None:
            self.problem("trigger.at", gettext("only a date trigger takes at (the time its runs start)"))
            ok = False
        event, segment, schedule = raw.get("event"), raw.get("segment"), raw.get("schedule")
        on = raw.get("on")
        if on is not None and event is not None:
            self.problem("trigger.on", gettext("only a segment trigger takes on (enter or exit)"))
            ok = False
        elif on is not None and on not in SEGMENT_ON:
            self.problem("trigger.on", gettext("%(value)s: write enter (entering the segment, the default) or exit "
                                               "(leaving it)", value=repr(on)))
            ok = False
        elif on == "exit" and schedule is not None:
            self.problem("trigger.on", gettext("a schedule starts runs for the segment's members; leaving a segment "
                                               "is written without a schedule: {segment: NAME, on: exit}"))
            ok = False
        if event is not None:
            if segment is not None or schedule is not None:
                self.problem("trigger", gettext("an event trigger takes no segment or schedule"))
                return None
            if event not in EVENTS and not is_api_event(event):
                if isinstance(event, str) and "." in event:  # dotted: meant a built-in one
                    self.problem("trigger.event", gettext("%(event)s is not an event; use one of: %(events)s",
                                                          event=repr(event), events=", ".join(EVENTS)))
                else:
                    self.problem("trigger.event", gettext(
                        "%(event)s is not an event: the built-in ones are %(events)s; an event sent to "
                        "/api/v1/events is named with lowercase letters, digits, _ and - (e.g. cart_abandoned)",
                        event=repr(event), events=", ".join(EVENTS)))
                return None
            if is_api_event(event) and event.replace("_", ".") in EVENTS:
                self.problem("trigger.event", gettext("%(event)s looks like the built-in event %(builtin)s; events "
                                                      "sent through the API may not be named like one",
                                                      event=repr(event), builtin=event.replace("_", ".")))
                return None
            before = after = None
            if event == "promo.expiring":
                before = self.length(raw, "before", gettext("missing; say how long before expiry, e.g. 3d"))
                if before is None:
                    return None
            elif raw.get("before") is not None:
                self.problem("trigger.before", gettext("only promo.expiring takes before"))
                ok = False
            if event == "deal.stuck":
                after = self.length(raw, "after", gettext("missing; say how long a deal stands in one stage, "
                                                          "e.g. 14d"))
                if after is None:
                    return None
            elif raw.get("after") is not None:
                self.problem("trigger.after", gettext("only deal.stuck takes after"))
                ok = False
            workflow = raw.get("workflow")
            if workflow is not None and (not event.startswith("promo.") or not isinstance(workflow, str)
                                         or not NAME.match(workflow)):
                self.problem("trigger.workflow", gettext("only promo events take a workflow name (whose codes to "
                                                         "watch)"))
                ok = False
            return Trigger("event", event=event, before=before, after=after, workflow=workflow) if ok else None
        if raw.get("before") is not None or raw.get("workflow") is not None:
            self.problem("trigger", gettext("before and workflow belong to promo events only"))
            ok = False
        if raw.get("after") is not None:
            self.problem("trigger.after", gettext("only deal.stuck takes after"))
            ok = False
        if segment is None:
            self.problem("trigger.segment", gettext("missing; a schedule starts runs for a segment's members")
                         if schedule is not None else gettext("missing"))
            return None
        if not isinstance(segment, str):
            self.problem("trigger.segment", gettext("expected a segment name"))
            return None
        try:
            self.segments.get(segment)
        except SegmentError as exc:
            self.problem("trigger.segment", str(exc))
            ok = False
        if schedule is not None:
            from croniter import croniter

            if not isinstance(schedule, str) or not croniter.is_valid(schedule):
                self.problem("trigger.schedule", gettext("%(value)s is not a cron schedule like \"0 10 * * *\" "
                                                         "(minute hour day month weekday, in HUB_TIMEZONE)",
                                                         value=repr(schedule)))
                ok = False
        if not ok:
            return None
        if schedule:
            return Trigger("schedule", segment=segment, schedule=schedule)
        if on == "exit":
            return Trigger("exit", segment=segment, on="exit")
        return Trigger("segment", segment=segment, on="enter")

    def length(self, raw: Mapping[str, Any], key: str, missing: str) -> dt.timedelta | None:
        """A trigger's length of time (`before: 3d`, `after: 14d`), or None with the problem named."""
        try:
            return parse_duration(raw.get(key))
        except ValueError as exc:
            self.problem(f"trigger.{key}", missing if raw.get(key) is None else str(exc))
            return None

    def date_trigger(self, raw: dict[str, Any]) -> Trigger | None:
        """{date: contact.birthday, before: 7d, at: "10:00"}: runs for those whose date comes round."""
        ok = True
        for key in raw:
            if key in TRIGGER_KEYS and key not in DATE_KEYS:  # unknown ones were named already
                self.problem(f"trigger.{key}", gettext("a date trigger takes %(keys)s", keys=", ".join(DATE_KEYS)))
                ok = False
        allowed = date_fields(self.registry)
        name, title = raw.get("date"), None
        if not isinstance(name, str) or not name:
            self.problem("trigger.date", gettext("expected the name of a date field; a date trigger takes %(fields)s",
                                                 fields=", ".join(allowed)))
            ok = False
        elif name not in allowed:
            try:
                spec = self.registry.resolve(name).field
            except segment_fields.FieldError:
                close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
                self.problem("trigger.date", gettext("%(field)s is not a field", field=repr(name)) + (
                    _did_you_mean(close) if close else "") + gettext("; a date trigger takes %(fields)s",
                                                                     fields=", ".join(allowed)))
            else:
                self.problem("trigger.date", gettext(
                    "%(field)s is not a date that comes round every year (it is %(type)s); a date trigger takes "
                    "%(fields)s", field=repr(name), type=segment_fields.type_title(spec.type),
                    fields=", ".join(allowed)))
            ok = False
        else:
            title = self.registry.fields[name].description or None
        before = None
        if raw.get("before") not in (None, 0, "0d"):
            before = self.days(raw.get("before"))
            ok = ok and before is not None
        at = DATE_AT
        if raw.get("at") is not None:
            try:
                at = parse_time_of_day(raw.get("at")).strftime("%H:%M")
            except ValueError as exc:
                self.problem("trigger.at", str(exc))
                ok = False
        if not ok:
            return None
        assert isinstance(name, str)
        return Trigger("date", date=name, before=before, at=at, date_title=title)

    def days(self, raw: Any) -> Any:
        """A date trigger's `before`: whole days, none or more (a timedelta; None after a problem)."""
        if isinstance(raw, str) and raw.strip().startswith("-"):
            self.problem("trigger.before", gettext("%(value)s: before counts the days ahead of the date, 0d or "
                                                   "more, like 7d", value=repr(raw)))
            return None
        try:
            before = parse_duration(raw)
        except ValueError as exc:
            self.problem("trigger.before", str(exc))
            return None
        if before % dt.timedelta(days=1) or before > dt.timedelta(days=365):
            self.problem("trigger.before", gettext("%(value)s: before is a whole number of days up to a year, "
                                                   "like 7d", value=repr(raw)))
            return None
        return before

    def reentry(self, raw: Any) -> Any:
        if raw is None or raw == "never":
            return None
        try:
            return parse_duration(raw)
        except ValueError as exc:
            self.problem("reentry", gettext("%(problem)s; or never", problem=exc))
            return None

    def holdout(self, raw: Any) -> Decimal:
        if raw is None:
            return Decimal(0)
        text = str(raw).strip()
        try:
            value = Decimal(text[:-1] if text.endswith("%") else text)
        except InvalidOperation:
            self.problem("holdout", gettext("%(value)s is not a share; write it like 10%%", value=repr(raw)))
            return Decimal(0)
        if not text.endswith("%") or not Decimal(0) <= value <= MAX_HOLDOUT:
            self.problem("holdout", gettext("%(value)s: write a share from 0%% to %(max)s%%, like 10%%",
                                            value=repr(raw), max=MAX_HOLDOUT))
        return value

    def goal(self, raw: Any) -> Goal | None:
        if raw is None:
            return None
        if not isinstance(raw, dict) or set(raw) - {"event", "within"}:
            self.problem("goal", gettext("expected {event: order.created, within: 30d}"))
            return None
        event = raw.get("event")
        if event not in GOAL_EVENTS:
            self.problem("goal.event", gettext("%(event)s is not a goal; use one of: %(events)s", event=repr(event),
                                               events=", ".join(GOAL_EVENTS)))
            return None
        try:
            within = parse_duration(raw.get("within", "30d"))
        except ValueError as exc:
            self.problem("goal.within", str(exc))
            return None
        return Goal(event, within)


def parse(document: Any, conn: Connection, settings: Settings, *, origin: str | None = None,
          pm: pluggy.PluginManager | None = None) -> Workflow:
    """A workflow document checked against this Hub; WorkflowError lists every problem."""
    if not isinstance(document, dict):
        raise WorkflowError([gettext("expected a workflow with name, trigger and steps")], origin)
    raw_trigger = document.get("trigger")
    if isinstance(raw_trigger, dict) and any(k is True for k in raw_trigger) and "on" not in raw_trigger:
        # YAML 1.1 reads a bare `on` as true: {segment: vip, on: exit} arrives as {True: "exit"}
        document = {**document, "trigger": {"on" if k is True else k: v for k, v in raw_trigger.items()}}
    name = document.get("name")
    parser = _Parser(conn, settings, str(name), pm)
    for key in document:
        if key not in KEYS:
            close = difflib.get_close_matches(str(key), KEYS, n=1, cutoff=0.6)
            parser.problem(str(key), gettext("unknown key") + (_did_you_mean(close) if close else
                                                           gettext("; use %(keys)s", keys=", ".join(KEYS))))
    if name is None:
        parser.problem("name", gettext("missing"))
    elif not isinstance(name, str) or not NAME.match(name):
        parser.problem("name", gettext("%(name)s is not a workflow name: use lower-case Latin letters, digits and _, "
                                       "starting with a letter (e.g. reactivation_90d)", name=repr(name)))
    elif name in RESERVED_NAMES:
        parser.problem("name", gettext("%(quoted)s is taken by a page of the admin (/workflows/%(name)s); "
                                       "choose another name", quoted=repr(name), name=name))
    title = document.get("title")
    for key, limit in (("title", MAX_TITLE), ("description", MAX_DESCRIPTION)):
        text = document.get(key)
        if text is not None and not isinstance(text, str):
            parser.problem(key, gettext("expected text"))
        elif isinstance(text, str) and len(text) > limit:
            parser.problem(key, gettext("too long: at most %(max)s characters", max=limit))
    trigger = parser.trigger(document.get("trigger")) if "trigger" in document else None
    if "trigger" not in document:
        parser.problem("trigger", gettext("missing"))
    if trigger is not None and trigger.kind == "event" and trigger.event and trigger.event.startswith("promo."):
        parser.checking.promo = True  # the run is about that code: templates may show it
    if trigger is not None and trigger.kind == "event" and is_api_event(trigger.event):
        parser.checking.event = trigger.event  # the run keeps the event: templates may show it (event_data)
    reentry = parser.reentry(document.get("reentry"))
    if trigger is not None and trigger.kind == "date" and "reentry" not in document:
        reentry = DATE_REENTRY  # once a year unless the file says otherwise
    holdout = parser.holdout(document.get("holdout"))
    goal = parser.goal(document.get("goal"))
    if "steps" not in document:
        parser.problem("steps", gettext("missing; a workflow needs at least one step"))
    else:
        parser.block(document["steps"], "steps")
    if parser.problems:
        raise WorkflowError(parser.problems, origin)
    assert trigger is not None and isinstance(name, str)
    steps = enumerate(zip(parser.paths, parser.program, strict=True))
    program = tuple(Instruction(i, path, step) for i, (path, step) in steps if step is not None)
    assert len(program) == len(parser.program)
    return Workflow(name=name, title=title, description=document.get("description"), trigger=trigger,
                    reentry=reentry, holdout=holdout, goal=goal, program=program, document=jsonable(document))


def summary(workflow: Workflow) -> Mapping[str, Any]:
    """The definition in brief, for `hub workflows list`."""
    return {"trigger": workflow.trigger.describe(),
            "reentry": format_duration(workflow.reentry) if workflow.reentry else "never",
            "holdout": f"{workflow.holdout:g}%", "goal": workflow.goal.describe() if workflow.goal else None,
            "steps": [f"{workflow.number(i.index)}. {i.step.label()}" for i in workflow.steps()]}
