"""Steps that write to the contact's CRM: a call task, a comment, a field (hub.writeback).

The texts are templates the user writes in the workflow file ("Позвонить
{{ contact.first_name }}: промокод {{ promo.code }} истекает"), rendered in
the sandbox with the contact, the run's promo code and the company.

A task and a comment cannot be taken back or told apart from a second one, so
they are not repeatable: if a worker dies while the CRM is being asked, the
run is parked for a person to look in the CRM rather than risk a second task.
A contact held by no CRM that accepts writes is skipped, not failed: a
spreadsheet-only customer simply gets no task.
"""

from __future__ import annotations

from typing import Any

from hub.api import N_, NoCrmHolds, WriteBackError, format_length, gettext, write_back
from workflows import deals
from workflows.steps import (Checking, FormField, Options, Outcome, Step, StepCall, StepError, StepFailed,
                             kind_title)



def _write(call: StepCall, action: str, *, first_only: bool = False, shown: dict[str, Any] | None = None,
           **kwargs: Any) -> Outcome:
    assert call.conn is not None
    try:
        done = write_back(call.conn, call.settings, call.run.contact_id, action, first_only=first_only,
                               **kwargs)
    except NoCrmHolds:
        return Outcome.skipped("the contact is in no CRM that accepts write-back")
    except WriteBackError as exc:
        raise StepFailed(str(exc)) from None
    return Outcome.done({"crm": [{"source": w.source, "external_id": w.external_id, "id": w.result} for w in done],
                         **(shown or {})})


class CrmTask(Step):
    """`crm_task: {title: "Позвонить {{ contact.first_name }}", due_in: 2d, description: "..."}`."""

    name = "crm_task"
    kind_title = N_("Task in the CRM")
    kind_summary = N_("Creates a task (a call) for the contact's manager in the CRM that holds the contact.")
    repeatable = False
    needs_contact = True
    form = (FormField("title", "template_text", N_("Task"), required=True,
                      placeholder="Позвонить {{ contact.first_name }}"),
            FormField("due_in", "duration", N_("Due in")),
            FormField("description", "template_text", N_("Description")))
    shorthand = "title"

    def __init__(self, options: Any, checking: Checking) -> None:
        opts = Options(options, ("title", "due_in", "description"), shorthand="title",
                       example="{title: \"Позвонить {{ contact.first_name }}\", due_in: 2d}")
        self.title = checking.text(opts.require("title"), "title")
        self.description = checking.text(opts.get("description"), "description") \
            if opts.get("description") is not None else ""
        self.due_in = opts.duration("due_in", "1d")

    def label(self) -> str:
        return "crm_task"

    def phrase(self) -> str:
        assert self.due_in is not None
        return gettext("Task in the CRM, due in %(length)s", length=format_length(self.due_in))

    def run(self, call: StepCall) -> Outcome:
        assert self.due_in is not None
        title = call.render(self.title, "title")
        description = call.render(self.description, "description") if self.description else ""
        due_at = call.now + self.due_in
        task: dict[str, Any] = {"title": title, "due_at": due_at, "description": description,
                                "shown": {"title": title, "due_at": due_at.isoformat()}}  # for reports
        owner = deals.owner(call.conn, call.run.context) if call.conn is not None else None
        if owner is not None:  # a run about one deal: the task goes to that deal's CRM and manager
            source, responsible_id = owner
            outcome = _write(call, "add_task", first_only=True, only=[source], responsible_id=responsible_id,
                             **task)
            if outcome.status != "skipped":
                return outcome  # else the deal's CRM no longer holds the contact: any CRM that does
        return _write(call, "add_task", first_only=True, **task)


class CrmComment(Step):
    """`crm_comment: "Отправили промокод {{ promo.code }}"`: a note on the contact in every CRM holding them."""

    name = "crm_comment"
    kind_title = N_("Comment in the CRM")
    kind_summary = N_("Adds a note to the contact in every CRM that holds them.")
    repeatable = False
    needs_contact = True
    form = (FormField("text", "template_text", N_("Comment"), required=True),)
    shorthand = "text"

    def __init__(self, options: Any, checking: Checking) -> None:
        opts = Options(options, ("text",), shorthand="text", example="\"Отправили промокод {{ promo.code }}\"")
        self.text = checking.text(opts.require("text"), "text")

    def run(self, call: StepCall) -> Outcome:
        return _write(call, "add_comment", text=call.render(self.text, "text"))


class CrmField(Step):
    """`crm_field: {field: promo_code, value: "{{ promo.code }}"}`: set a contact field (a logical name)."""

    name = "crm_field"
    kind_title = N_("Field in the CRM")
    kind_summary = N_("Writes a value into a field of the contact in the CRM.")
    needs_contact = True
    form = (FormField("field", "crm_field", N_("Field"), required=True, placeholder="promo_code"),
            FormField("value", "template_text", N_("Value"), required=True, placeholder="{{ promo.code }}"))

    def __init__(self, options: Any, checking: Checking) -> None:
        opts = Options(options, ("field", "value"), example="{field: promo_code, value: \"{{ promo.code }}\"}")
        field = opts.require("field")
        if not isinstance(field, str) or not field.strip():
            raise StepError(gettext("expected a field name, e.g. promo_code"), "field")
        self.field = field.strip()
        value = opts.require("value")
        self.value = checking.text(str(value), "value")

    def label(self) -> str:
        return f"crm_field {self.field}"

    def phrase(self) -> str:
        return f"{kind_title(self)}: {self.field}"

    def run(self, call: StepCall) -> Outcome:
        return _write(call, "set_field", name=self.field, value=call.render(self.value, "value"))
