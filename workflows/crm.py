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

from hub.api import WriteBackError, write_back
from workflows.steps import Checking, Options, Outcome, Step, StepCall, StepError, StepFailed

NOT_IN_A_CRM = "accepts write-back"


def _write(call: StepCall, action: str, *, first_only: bool = False, **kwargs: Any) -> Outcome:
    assert call.conn is not None
    try:
        done = write_back(call.conn, call.settings, call.run.contact_id, action, first_only=first_only,
                               **kwargs)
    except WriteBackError as exc:
        if NOT_IN_A_CRM in str(exc):
            return Outcome.skipped("the contact is in no CRM that accepts write-back")
        raise StepFailed(str(exc)) from None
    return Outcome.done({"crm": [{"source": w.source, "external_id": w.external_id, "id": w.result} for w in done]})


class CrmTask(Step):
    """`crm_task: {title: "Позвонить {{ contact.first_name }}", due_in: 2d, description: "..."}`."""

    name = "crm_task"
    repeatable = False
    needs_contact = True

    def __init__(self, options: Any, checking: Checking) -> None:
        opts = Options(options, ("title", "due_in", "description"), shorthand="title",
                       example="{title: \"Позвонить {{ contact.first_name }}\", due_in: 2d}")
        self.title = checking.text(opts.require("title"), "title")
        self.description = checking.text(opts.get("description"), "description") \
            if opts.get("description") is not None else ""
        self.due_in = opts.duration("due_in", "1d")

    def label(self) -> str:
        return "crm_task"

    def run(self, call: StepCall) -> Outcome:
        assert self.due_in is not None
        title = call.render(self.title, "title")
        description = call.render(self.description, "description") if self.description else ""
        return _write(call, "add_task", first_only=True, title=title, due_at=call.now + self.due_in,
                      description=description)


class CrmComment(Step):
    """`crm_comment: "Отправили промокод {{ promo.code }}"`: a note on the contact in every CRM holding them."""

    name = "crm_comment"
    repeatable = False
    needs_contact = True

    def __init__(self, options: Any, checking: Checking) -> None:
        opts = Options(options, ("text",), shorthand="text", example="\"Отправили промокод {{ promo.code }}\"")
        self.text = checking.text(opts.require("text"), "text")

    def run(self, call: StepCall) -> Outcome:
        return _write(call, "add_comment", text=call.render(self.text, "text"))


class CrmField(Step):
    """`crm_field: {field: promo_code, value: "{{ promo.code }}"}`: set a contact field (a logical name)."""

    name = "crm_field"
    needs_contact = True

    def __init__(self, options: Any, checking: Checking) -> None:
        opts = Options(options, ("field", "value"), example="{field: promo_code, value: \"{{ promo.code }}\"}")
        field = opts.require("field")
        if not isinstance(field, str) or not field.strip():
            raise StepError("expected a field name, e.g. promo_code", "field")
        self.field = field.strip()
        value = opts.require("value")
        self.value = checking.text(str(value), "value")

    def label(self) -> str:
        return f"crm_field {self.field}"

    def run(self, call: StepCall) -> Outcome:
        return _write(call, "set_field", name=self.field, value=call.render(self.value, "value"))
