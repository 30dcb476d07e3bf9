"""What a workflow step is, for Hub's own steps and for plugins' (register_workflow_steps).

A step is a class. Its constructor reads the options a workflow file gives it
and refuses bad ones with StepError, so a mistake is found when the file is
loaded, not at the 10,000th contact. At run time the engine hands it StepCalls
(one per run that reached it) and gets an Outcome back for each:

- a step that talks to another system implements `run(call)`: it is called
  one run at a time, outside any database transaction. `repeatable = False`
  says it must not be repeated if a worker dies in the middle of it (a task
  in a CRM): the engine notes the attempt first and parks a run it finds
  half-done, for a person to check.
- a step that only changes Hub's own database sets `batched = True` and
  implements `write(conn, calls)` (and optionally `prepare(conn, calls)` for
  read-only work such as rendering): the writes commit in one transaction
  together with the step results and the runs' progress, so the step happens
  exactly once.

`run` raises StepFailed for a failure that trying again will not fix (the run
is parked with the reason); any other exception is treated as passing (a
timeout, a 503) and retried with backoff.

This module also holds the small built-in steps: wait, exit, tag, untag.
"""

from __future__ import annotations

import datetime as dt
import difflib
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

from sqlalchemy import Connection, Engine, bindparam, select, update

# not in hub.api on purpose: steps render templates for StepCall.template (public in workflows.steps)
from hub import message_templates
from hub.api import (N_, Contact, Settings, TemplateError, company, format_duration, format_length, gettext,
                     local_time, next_local_time, parse_duration, parse_time_of_day)

# What a plugin's own steps use (the public API of this module; tests/test_public_api.py records it).
__all__ = ["Step", "StepCall", "Outcome", "StepError", "StepFailed", "Options", "Checking", "RunInfo",
           "kind_title", "kind_summary", "FormField"]

contacts_t = Contact.__table__


class StepError(ValueError):
    """A step's options are wrong; `key` names the option at fault, when there is one."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class StepFailed(Exception):
    """A step cannot be done for this run and trying again will not help: the run is parked."""


@dataclass(frozen=True)
class Outcome:
    """What a step did for one run.

    status: "done" (carry on: at `until`, or from instruction `goto`, or stop
    when `exit`), "skipped" (not done, for the reason in `detail`; carry on),
    "deferred" (try this step again at `until`), "failed" (park the run).
    """

    status: str
    detail: str | None = None
    result: Mapping[str, Any] = field(default_factory=dict)
    until: dt.datetime | None = None
    goto: int | None = None
    exit: bool = False
    message_id: int | None = None

    @classmethod
    def done(cls, result: Mapping[str, Any] | None = None, *, until: dt.datetime | None = None,
             goto: int | None = None, exit: bool = False, message_id: int | None = None,
             detail: str | None = None) -> "Outcome":
        return cls("done", detail, dict(result or {}), until, goto, exit, message_id)

    @classmethod
    def skipped(cls, reason: str, result: Mapping[str, Any] | None = None) -> "Outcome":
        return cls("skipped", reason, dict(result or {}))

    @classmethod
    def deferred(cls, until: dt.datetime, reason: str) -> "Outcome":
        return cls("deferred", reason, {}, until)

    @classmethod
    def failed(cls, reason: str) -> "Outcome":
        return cls("failed", reason)


@dataclass(frozen=True)
class RunInfo:
    """The run a step is working for."""

    id: int
    workflow: str
    workflow_id: int
    contact_id: int
    cycle: int
    started_at: dt.datetime
    trigger: str
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class StepCall:
    """One run at one step.

    `key` is unique to this run and step: use it as the idempotency key of
    anything the step creates elsewhere. `contact` (template variables:
    names, first email and phone, …), `promo` (the run's promo code, or None)
    and `zone` (the contact's time zone) are filled in for steps that set
    `needs_contact`. `conn` is a reading connection. `number` is the step
    number people read (Workflow.number): `index` counts hidden jumps, so
    anything a person sees (a message's meta, a webhook's payload) says
    `shown_number()`.
    """

    run: RunInfo
    index: int
    key: str
    now: dt.datetime
    settings: Settings
    engine: Engine
    conn: Connection | None = None
    contact: dict[str, Any] | None = None
    promo: dict[str, Any] | None = None
    zone: Any = None
    number: int | None = None

    def shown_number(self) -> int:
        return self.number if self.number is not None else self.index + 1

    def variables(self) -> dict[str, Any]:
        """What a text a user wrote (a task title) may use: contact, promo, run, workflow, company."""
        out: dict[str, Any] = {
            "contact": self.contact or {}, "company": company(self.settings),
            "run": {"id": self.run.id, "started_at": local_time(self.settings, self.run.started_at),
                    "cycle": self.run.cycle, **dict(self.run.context)},
            "workflow": {"name": self.run.workflow},
        }
        if self.promo is not None:
            out["promo"] = self.promo
        from workflows import deals  # the open deal a task names («Сделка «…» 14 дней в этапе «…»»)

        out["deal"] = (deals.for_run(self.conn, self.settings, self.run.contact_id, self.run.context, self.now)
                       if self.conn is not None and self.run.contact_id else deals.empty())
        from workflows.event_data import from_context  # the API event that started the run, if one did

        event = from_context(self.run.context)
        if event is not None:
            out["event"] = event
        return out

    def render(self, text: str, what: str) -> str:
        """A user's text rendered in the sandbox; a mistake in it fails the step with its name."""
        template = message_templates.Template(name=f"{self.run.workflow}", channel="text", text=text)
        try:
            return message_templates.render(template, self.variables()).text
        except TemplateError as exc:
            raise StepFailed(f"{what}: {str(exc).split(': ', 1)[-1]}") from None


class Checking:
    """What a step may look at while its options are checked: settings, the database, the workflow so far."""

    def __init__(self, settings: Settings, conn: Connection, workflow: str) -> None:
        self.settings = settings
        self.conn = conn
        self.workflow = workflow
        self.promo = False  # whether runs reaching this point hold a promo code
        self.event: str | None = None  # the API event runs start on (templates may show it: workflows.event_data)
        self._channels: list[str] | None = None

    def channels(self) -> list[str]:
        if self._channels is None:
            # not in hub.api on purpose: the campaign engine writes outbox rows and dispatches them
            from hub.messaging import channel_factories

            self._channels = sorted(channel_factories())
        return self._channels

    def template(self, name: str) -> message_templates.Template:
        try:
            return message_templates.get(self.conn, self.settings, name)
        except TemplateError as exc:
            known = [t.name for t in message_templates.all_templates(self.conn, self.settings)]
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            if close:
                raise StepError(gettext("no template named %(name)s; did you mean %(close)s?", name=repr(name),
                                        close=repr(close[0])), "template") from None
            raise StepError(str(exc), "template") from None

    def sample(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The sample variables a user's text is tried against; no promo unless a code is issued earlier."""
        context = message_templates.sample_context(self.settings, extra)
        context["run"] = {"id": 1, "started_at": local_time(self.settings, context["promo"]["expires_at"]),
                          "cycle": 1}
        context["workflow"] = {"name": self.workflow}
        if not self.promo:
            context.pop("promo", None)
        from workflows import deals

        context["deal"] = deals.sample(self.settings)
        if self.event is not None:
            from workflows.event_data import sample

            context["event"] = sample(self.event)
        return context

    def text(self, raw: Any, key: str) -> str:
        """A text option that is a template (a task title): checked against the sample variables."""
        if not isinstance(raw, str) or not raw.strip():
            raise StepError(gettext("expected some text"), key)
        try:
            template = message_templates.Template(name=self.workflow, channel="text", text=raw)
            message_templates.render(template, self.sample())
        except TemplateError as exc:
            reason = str(exc).split(": ", 1)[-1]
            if "'promo' is undefined" in reason:
                reason = gettext("uses promo, but no promo_code step comes before this one")
            raise StepError(reason, key) from None
        return raw


class Options:
    """A step's options as a mapping, with unknown keys refused (and a guess at what was meant)."""

    def __init__(self, raw: Any, allowed: Sequence[str], *, shorthand: str | None = None,
                 example: str = "") -> None:
        if not isinstance(raw, Mapping):
            if shorthand is not None and raw is not None and not isinstance(raw, (list, dict)):
                raw = {shorthand: raw}
            else:
                raise StepError(gettext("expected options like %(example)s", example=example) if example
                                else gettext("expected a mapping of options"))
        for key in raw:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=0.6)
                raise StepError(gettext("unknown option; did you mean %(close)s?", close=repr(close[0])) if close
                                else gettext("unknown option; options: %(options)s", options=", ".join(allowed)),
                                str(key))
        self.raw = dict(raw)

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    def require(self, key: str) -> Any:
        if self.raw.get(key) is None:
            raise StepError(gettext("missing"), key)
        return self.raw[key]

    def duration(self, key: str, default: Any = None) -> dt.timedelta | None:
        raw = self.raw.get(key, default)
        if raw is None:
            return None
        try:
            return parse_duration(raw)
        except ValueError as exc:
            raise StepError(str(exc), key) from None


# What the admin's workflow builder can draw as a form field (workflows/builder_model.py, workflow-builder.js).
FORM_KINDS = ("text", "template_text", "duration", "time", "percent", "integer", "choice", "channel", "template",
              "purpose", "crm_field", "url")


@dataclass(frozen=True)
class FormField:
    """One option of a step as the admin's workflow builder shows it in the step's card.

    `key` is the option's name in the workflow file, `kind` one of FORM_KINDS
    (how it is typed: a duration is a number and a unit, a template a list of
    the channel's templates), `title` and `hint` English marked with N_;
    `choices` are (value, title) pairs for kind "choice". The options are still
    checked by the step's constructor, the one place that decides what is valid.
    """

    key: str
    kind: str
    title: str
    required: bool = False
    choices: tuple[tuple[str, str], ...] = ()
    hint: str = ""
    placeholder: str = ""


class Step:
    """Base class of every step kind; see the module docstring for the two ways to implement one."""

    name: ClassVar[str] = ""
    # What people call the kind and what it does, in English marked with N_ (translated in the plugin's catalog);
    # reports show them first, with `name` beside them. A kind without them is shown by its name.
    kind_title: ClassVar[str] = ""
    kind_summary: ClassVar[str] = ""
    # May run again after a worker died in the middle of it (False: park the run for a person instead).
    repeatable: ClassVar[bool] = True
    # Only touches Hub's database: runs in batches inside the transaction that records its results.
    batched: ClassVar[bool] = False
    # Wants call.contact, call.promo and call.zone filled in (a kind may decide per step, as wait does).
    needs_contact: bool = False
    # The options as the admin's builder draws them; a kind without a form is shown there as its YAML text.
    form: ClassVar[tuple[FormField, ...]] = ()
    # The option a bare value stands for (`wait: 7d` is `{for: 7d}`): the builder writes it back that way.
    shorthand: ClassVar[str | None] = None

    def __init__(self, options: Any, checking: Checking) -> None:
        self.options = options

    def label(self) -> str:
        """A short technical description for status reports and JSON: `send email reactivation_email`."""
        return self.name

    def phrase(self) -> str:
        """The step as people read it, in the reader's language: «Промокод 15 % на 14 дней».

        Reports show it with the kind's technical name beside it; label() keeps the
        form a workflow file writes. By default, the kind's title.
        """
        return kind_title(self)

    def wants_zone(self, settings: Settings) -> bool:
        """Whether call.zone is needed (finding it reads the contacts' phones); by default with the contact."""
        return self.needs_contact

    def describe(self) -> dict[str, Any]:
        """Extra facts for status reports (the channel of a send, ...)."""
        return {}

    def run(self, call: StepCall) -> Outcome:
        raise NotImplementedError(f"step {self.name!r} implements neither run() nor write()")

    def prepare(self, conn: Connection, calls: list[StepCall]) -> list[Any]:
        """Read-only work for a batch before the write transaction (rendering); one item per call."""
        return [None] * len(calls)

    def write(self, conn: Connection, calls: list[StepCall], prepared: list[Any]) -> list[Outcome]:
        """For batched steps: do the step for every call inside `conn`'s transaction."""
        raise NotImplementedError(f"step {self.name!r} is batched but has no write()")


def kind_title(step: Step | type[Step]) -> str:
    """The step kind as people call it, in the reader's language ("Подождать" for wait); its name if untitled."""
    return gettext(step.kind_title) if step.kind_title else step.name


def kind_summary(step: Step | type[Step]) -> str:
    """One line on what the step kind does, in the reader's language (empty when the kind has none)."""
    return gettext(step.kind_summary) if step.kind_summary else ""


# --- the small built-in steps -------------------------------------------------------------

class Wait(Step):
    """`wait: 7d`, `wait: {until: "10:00"}` (the contact's local time), or both: `{for: 2d, until: "10:00"}`."""

    name = "wait"
    kind_title = N_("Wait")
    kind_summary = N_("Pauses the run for a while, or until a time of day in the contact's time zone.")
    batched = True
    form = (FormField("for", "duration", N_("How long")),
            FormField("until", "time", N_("Then until (contact's local time)"), placeholder="10:00"))
    shorthand = "for"

    def __init__(self, options: Any, checking: Checking) -> None:
        opts = Options(options, ("for", "until"), shorthand="for", example="7d or {until: \"10:00\"}")
        self.length = opts.duration("for")
        self.at: dt.time | None = None
        if opts.get("until") is not None:
            try:
                self.at = parse_time_of_day(opts.get("until"))
            except ValueError as exc:
                raise StepError(str(exc), "until") from None
        if self.length is None and self.at is None:
            raise StepError(gettext("give a length (wait: 7d) or a time of day (wait: {until: \"10:00\"})"))
        self.needs_contact = self.at is not None

    def label(self) -> str:
        parts = [format_duration(self.length)] if self.length else []
        if self.at:
            parts.append(f"until {self.at:%H:%M}")
        return "wait " + " ".join(parts)

    def phrase(self) -> str:
        if self.length and self.at:
            return gettext("Wait %(length)s, then until %(time)s in the contact's time zone",
                           length=format_length(self.length), time=f"{self.at:%H:%M}")
        if self.at:
            return gettext("Wait until %(time)s in the contact's time zone", time=f"{self.at:%H:%M}")
        return gettext("Wait %(length)s", length=format_length(self.length or dt.timedelta(0)))

    def write(self, conn: Connection, calls: list[StepCall], prepared: list[Any]) -> list[Outcome]:
        out = []
        for call in calls:
            until = call.now + (self.length or dt.timedelta(0))
            if self.at is not None:
                until = next_local_time(until, call.zone or call.settings.tz, self.at)
            out.append(Outcome.done({"until": until.isoformat()}, until=until))
        return out


class Exit(Step):
    """`exit`: the run ends here."""

    name = "exit"
    kind_title = N_("Finish")
    kind_summary = N_("Ends the run for this contact.")
    batched = True

    def write(self, conn: Connection, calls: list[StepCall], prepared: list[Any]) -> list[Outcome]:
        return [Outcome.done(exit=True) for _ in calls]


def _tag_names(options: Any) -> list[str]:
    names = [options] if isinstance(options, str) else options
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise StepError(gettext("expected a tag or a list of tags, e.g. tag: winback or tag: [winback, promo]"))
    return [n.strip() for n in names]


class Tag(Step):
    """`tag: NAME` or `tag: [A, B]`: add tags to the contact (segments see them as contact.tags)."""

    name = "tag"
    kind_title = N_("Add a tag")
    kind_summary = N_("Adds tags to the contact; segments see them as contact.tags.")
    batched = True
    adding = True
    form = (FormField("tags", "text", N_("Tag"), required=True, placeholder="winback"),)
    shorthand = "tags"

    def __init__(self, options: Any, checking: Checking) -> None:
        self.tags = _tag_names(options)

    def label(self) -> str:
        return f"{self.name} {', '.join(self.tags)}"

    def phrase(self) -> str:
        return f"{kind_title(self)}: {', '.join(self.tags)}"

    def write(self, conn: Connection, calls: list[StepCall], prepared: list[Any]) -> list[Outcome]:
        ids = sorted({c.run.contact_id for c in calls})
        current = dict(conn.execute(select(contacts_t.c.id, contacts_t.c.tags).where(contacts_t.c.id.in_(ids))).all())
        changes = []
        for cid, tags in current.items():
            tags = list(tags or [])
            new = tags + [t for t in self.tags if t not in tags] if self.adding else [t for t in tags if
                                                                                      t not in self.tags]
            if new != tags:
                changes.append({"_id": cid, "_tags": new})
        if changes:
            conn.execute(update(contacts_t).where(contacts_t.c.id == bindparam("_id"))
                         .values(tags=bindparam("_tags")), changes)
        return [Outcome.done({"tags": self.tags}) for _ in calls]


class Untag(Tag):
    """`untag: NAME` or `untag: [A, B]`: remove tags from the contact."""

    name = "untag"
    kind_title = N_("Remove a tag")
    kind_summary = N_("Removes tags from the contact.")
    adding = False
