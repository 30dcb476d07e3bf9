"""`send:`: put one message for the run's contact in the outbox, under the key of this run and step.

The message is rendered and written in the same transaction that records the
step as done and moves the run on, so a retried job or a restarted worker
finds the step done and the message there: the outbox's unique key (run and
step) makes a second one impossible. Sending is the outbox's job: the worker
hands the new messages to their channel right after the commit, and consent
is asked again at that moment.

Before writing, the step applies the workflow policies: quiet hours defer the
step to the morning in the contact's time zone; the frequency cap defers it
until a slot frees up, or skips it when the step says `on_cap: skip`. A
transactional step may say `quiet_hours: ignore` (an order or pickup notice
may go at 22:00; advertising may not): its message carries that in its meta,
and the dispatcher's check lets it through the quiet hours. Both
are asked together (workflows.policy.slot), so a slot the cap frees at night
waits for the morning. The dispatcher applies both again, as the core's send
rules (hub.send_limits), to this message and to every other, whoever
dispatches it.
"""

from __future__ import annotations

from typing import Any, Mapping

from sqlalchemy import Connection, select

# not in hub.api on purpose: steps render templates for StepCall.template (public in workflows.steps); the campaign
# engine writes outbox rows and dispatches them
from hub import message_templates, messaging
from hub.api import (IGNORE_QUIET_HOURS, N_, QUIET_HOURS_META, TRANSACTIONAL, Message, Settings, Slot,
                     TemplateError, bulk_insert, chunks, company, consent_purposes, gettext, kind_for_channel,
                     OWN_ADDRESS)
from workflows import config, nps, policy
from workflows.steps import Checking, FormField, Options, Outcome, Step, StepCall, StepError

messages_t = Message.__table__
ON_CAP = ("defer", "skip")


def _uses(template: message_templates.Template, name: str) -> bool:
    return any(name in (part or "") for part in (template.subject, template.text, template.html))


class Send(Step):
    """`send: {channel: email, template: reactivation_email, purpose: marketing, on_cap: defer}`.

    `quiet_hours: ignore` is accepted with `purpose: transactional` only.
    """

    name = "send"
    kind_title = N_("Send a message")
    kind_summary = N_("Sends an email or an SMS from a template, if the contact agreed and the send limits allow it.")
    batched = True
    needs_contact = True
    form = (FormField("channel", "channel", N_("Channel"), required=True),
            FormField("template", "template", N_("Template"), required=True),
            FormField("purpose", "purpose", N_("Purpose (consent)"), placeholder="marketing",
                      hint=N_("Transactional: needs no consent and is not counted against the frequency cap; "
                              "blocked addresses still apply, and so do quiet hours unless the step says otherwise "
                              "below. Use it only for messages a person asked for.")),
            FormField("on_cap", "choice", N_("When the frequency cap is reached"),
                      choices=(("defer", N_("send later, when the cap allows")),
                               ("skip", N_("skip this message")))),
            FormField("quiet_hours", "choice", N_("Quiet hours"),
                      choices=(("respect", N_("respect quiet hours")),
                               ("ignore", N_("send during quiet hours too (transactional only)"))),
                      hint=N_("Only for transactional messages a person is waiting for, such as an order or pickup "
                              "notice; advertising always waits for the quiet hours to end.")))

    def __init__(self, options: Any, checking: Checking) -> None:
        opts = Options(options, ("channel", "template", "purpose", "on_cap", "quiet_hours"),
                       example="{channel: email, template: reactivation_email, purpose: marketing}")
        channel = opts.require("channel")
        if channel not in checking.channels():
            raise StepError(gettext("no channel %(channel)s; registered: %(channels)s", channel=repr(channel),
                                    channels=", ".join(checking.channels()) or gettext("none")), "channel")
        name = opts.require("template")
        if not isinstance(name, str):
            raise StepError(gettext("expected a template name"), "template")
        template = checking.template(name)
        if (channel == message_templates.EMAIL) != template.is_email:
            raise StepError(gettext("%(name)s is an email template; it cannot go by %(channel)s", name=name,
                                    channel=channel) if template.is_email else
                            gettext("%(name)s is a text template; it cannot go by %(channel)s", name=name,
                                    channel=channel), "template")
        purpose = opts.get("purpose", "marketing")
        allowed = (*consent_purposes(checking.settings), TRANSACTIONAL)
        if purpose not in allowed:
            raise StepError(gettext("%(value)s is not one of: %(allowed)s", value=repr(purpose),
                                    allowed=", ".join(allowed)), "purpose")
        on_cap = opts.get("on_cap", "defer")
        if on_cap not in ON_CAP:
            raise StepError(gettext("%(value)s is not one of: %(allowed)s", value=repr(on_cap),
                                    allowed=", ".join(ON_CAP)), "on_cap")
        quiet_hours = opts.get("quiet_hours", policy.RESPECT_QUIET_HOURS)
        if quiet_hours not in policy.QUIET_HOURS_CHOICES:
            raise StepError(gettext("%(value)s is not one of: %(allowed)s", value=repr(quiet_hours),
                                    allowed=", ".join(policy.QUIET_HOURS_CHOICES)), "quiet_hours")
        if quiet_hours == IGNORE_QUIET_HOURS and purpose != TRANSACTIONAL:
            raise StepError(gettext("ignore is only for transactional messages (an order or pickup notice): "
                                    "%(purpose)s messages are advertising and must wait for the quiet hours to end; "
                                    "set purpose: transactional or leave quiet_hours out", purpose=repr(purpose)),
                            "quiet_hours")
        self.uses_nps = _uses(template, "nps")
        self.uses_promo = _uses(template, "promo")
        try:
            message_templates.render(template, checking.sample({"nps": nps.sample_links(checking.settings)}))
        except TemplateError as exc:
            reason = str(exc)
            if not checking.promo and _uses(template, "promo") and "promo" in reason:
                reason = gettext("%(name)s uses promo, but no promo_code step comes before this one", name=name)
            elif checking.event is None and _uses(template, "event") and "event" in reason:
                reason = gettext("%(name)s shows the event that started the run; only a workflow started by an event "
                                 "sent to the API (trigger: {event: cart_abandoned}) has one", name=name)
            raise StepError(reason, "template") from None
        self.channel, self.template, self.purpose, self.on_cap = channel, name, purpose, on_cap
        self.quiet_hours = quiet_hours
        self.ignores_quiet = policy.ignores_quiet(purpose, quiet_hours)

    def label(self) -> str:
        return f"send {self.channel} {self.template}"

    def phrase(self) -> str:
        if self.channel == message_templates.EMAIL:
            return gettext("Send an email: %(template)s", template=self.template)
        if self.channel == "sms":
            return gettext("Send an SMS: %(template)s", template=self.template)
        return gettext("Send by %(channel)s: %(template)s", channel=self.channel, template=self.template)

    def wants_zone(self, settings: Settings) -> bool:
        # only quiet hours ask for local time
        return not self.ignores_quiet and config.load(settings).quiet(self.channel) is not None

    def describe(self) -> dict[str, Any]:
        return {"channel": self.channel, "template": self.template, "purpose": self.purpose}

    def prepare(self, conn: Connection, calls: list[StepCall]) -> list[Any]:
        if not calls:
            return []
        settings, now = calls[0].settings, calls[0].now
        options = config.load(settings)
        try:
            template = message_templates.get(conn, settings, self.template)
        except TemplateError as exc:
            return [Outcome.failed(str(exc)) for _ in calls]
        contacts = {c.run.contact_id: c.contact for c in calls if c.contact is not None}
        addresses = messaging.pick_addresses(conn, settings, contacts, self.channel)
        cap = options.frequency_cap if self.purpose != TRANSACTIONAL else None
        recent = policy.recent_messages(conn, contacts, now - cap.period) if cap else {}
        company_details = company(settings)
        kind = kind_for_channel(self.channel)
        out: list[Any] = []
        for call in calls:
            cid = call.run.contact_id
            if call.contact is None:
                out.append(Outcome.skipped("the contact no longer exists"))
                continue
            address = addresses.get(cid)
            if address is None and kind != OWN_ADDRESS:
                out.append(Outcome.skipped(f"no valid {kind}"))
                continue
            slot = policy.slot(options, self.channel, self.purpose, now, call.zone or settings.tz,
                               recent.get(cid, []), self.quiet_hours)
            if slot.moves:
                out.append(self._held(slot))
                continue
            out.append(self._row(settings, template, call, address, company_details))
        return out

    def _held(self, slot: Slot) -> Outcome:
        """Wait for the slot, or skip on the cap (`on_cap: skip`) once the quiet hours are over.

        A step that skips on the cap first waits out the quiet hours and is
        asked again then, as the forecast shows it: by the morning a message
        counted now may have failed and freed its slot.
        """
        first = slot.moves[0]
        if self.on_cap == "skip" and slot.moved_by(policy.FREQUENCY_CAP) is not None:
            if first.kind == policy.QUIET_HOURS:
                return Outcome.deferred(first.until, first.reason)
            return Outcome.skipped(first.reason)
        return Outcome.deferred(slot.at, slot.reason)

    def _row(self, settings: Settings, template: message_templates.Template, call: StepCall, address: str | None,
             company: Mapping[str, Any]) -> Any:
        variables = call.variables()
        context: dict[str, Any] = {"run": variables["run"], "workflow": variables["workflow"]}
        if call.promo is not None:
            context["promo"] = call.promo
        if "event" in variables:  # the API event that started the run (workflows.event_data)
            context["event"] = variables["event"]
        if self.uses_nps:
            context["nps"] = nps.links(settings, call.run.contact_id, call.run.id)
        meta = {"workflow": call.run.workflow, "run": call.run.id, "step": call.shown_number()}
        if self.ignores_quiet:  # the dispatcher's check (hub.api.ignores_quiet_hours) reads it
            meta[QUIET_HOURS_META] = IGNORE_QUIET_HOURS
        if call.run.context.get("campaign"):  # a one-off campaign's run (workflows.campaigns) names it
            meta["campaign"] = call.run.context["campaign"]
        try:
            return messaging.build_row(settings, template, dict(call.contact or {}), address, channel=self.channel,
                                       purpose=self.purpose, key=call.key, context=context, meta=meta,
                                       due_at=call.now, now=call.now, company=company)
        except TemplateError as exc:
            return Outcome.failed(str(exc))

    def write(self, conn: Connection, calls: list[StepCall], prepared: list[Any]) -> list[Outcome]:
        rows = [p for p in prepared if isinstance(p, dict)]
        ids: dict[str, int] = {}
        if rows:
            bulk_insert(conn, messages_t, rows, ignore_conflicts=True)
            for part in chunks([r["idempotency_key"] for r in rows], 1000):
                ids.update(conn.execute(select(messages_t.c.idempotency_key, messages_t.c.id)
                                        .where(messages_t.c.idempotency_key.in_(part))).all())
        out = []
        for item in prepared:  # one per call, in order
            if isinstance(item, Outcome):
                out.append(item)
            else:
                message_id = ids[item["idempotency_key"]]
                out.append(Outcome.done({"message_id": message_id, "channel": self.channel}, message_id=message_id))
        return out


