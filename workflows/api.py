"""POST /api/v1/workflows/{name}/enroll: one contact into a workflow, by the workflow's own rules.

An enrolment is a start like any trigger's (workflows.triggers.start, with
trigger "api"): a switched-off workflow takes nobody, a contact with a run
under way or inside the re-entry period does not start again, and the
holdout takes its share. The answer says which of these happened, so a
repeat (or a retry after a lost answer) is harmless and tells the caller
the run it already made.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

from sqlalchemy import Connection, select

from hub.api import (MAX_ROW_ID, N_, ApiCall, ApiEndpoint, ApiError, ContactKey, Settings, find_contacts, format_date,
                     format_length, gettext, normalize_email, normalize_phones, shared_keys, translated_title,
                     utcnow)
from workflows import store, triggers
from workflows.definition import WorkflowError

runs_t = triggers.runs_t

LINE = "^[^\\x00-\\x1f\\x7f]*$"  # one line of text: no control characters (PostgreSQL stores no NUL)
STATUSES = ("enrolled", "held_out", "already_running", "not_eligible")
# The titles of the problems this endpoint answers itself (RFC 9457: the same for every error of a kind).
TITLES = {400: N_("Bad request"), 404: N_("Not found"), 409: N_("Conflict")}

BODY: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "description": "The contact, by one of: contact_id, phone, email, reference.",
    "properties": {
        "contact_id": {"type": "integer", "minimum": 1, "maximum": MAX_ROW_ID},
        "phone": {"type": "string", "maxLength": 50, "pattern": LINE,
                  "description": "As people write it: +7 916 123-45-67"},
        "email": {"type": "string", "maxLength": 320, "pattern": LINE},
        "reference": {"type": "object", "additionalProperties": False, "required": ["source", "external_id"],
                      "description": "The contact's id in a source system (a CRM, the shop)",
                      "properties": {"source": {"type": "string", "minLength": 1, "maxLength": 100,
                                                "pattern": LINE},
                                     "external_id": {"type": "string", "minLength": 1, "maxLength": 200,
                                                     "pattern": LINE}}},
    },
}

ANSWER: dict[str, Any] = {
    "type": "object", "required": ["contact_id", "workflow", "status", "run_id", "reason"],
    "properties": {
        "contact_id": {"type": "integer", "description": "The contact as they are now (after merges)"},
        "workflow": {"type": "string"},
        "status": {"enum": list(STATUSES),
                   "description": "enrolled: a run started; held_out: the contact is in the control group (a run "
                                  "is recorded, nothing is sent); already_running: a run is under way; "
                                  "not_eligible: the workflow's rules keep the contact out now (reason says why)"},
        "run_id": {"type": ["integer", "null"], "description": "The run started now, or the one under way"},
        "reason": {"type": ["string", "null"]},
    },
}


def _error(status: int, detail: str, **kwargs: Any) -> ApiError:
    return ApiError(status, gettext(TITLES[status]), detail, **kwargs)


def enroll(call: ApiCall) -> dict[str, Any]:
    """Start the contact's run of the workflow if its rules let them in; say what happened either way."""
    conn, name = call.conn, call.path["name"]
    usable = len(name) <= 64 and name.isprintable()  # a path no workflow can have is not sent to the database
    store.install_library(conn)  # shipped workflows exist (switched off) before anyone opened the admin
    row = conn.execute(select(store.workflows_t).where(store.workflows_t.c.name == name)).first() if usable else None
    if row is None:
        raise _error(404, gettext("There is no workflow %(name)s; `hub workflows list` lists them", name=name[:64]))
    if not row.enabled:
        raise _error(409, gettext("The workflow %(name)s is switched off and takes nobody; switch it on first "
                                  "(hub workflows enable %(name)s)", name=name))
    try:
        workflow = store.definition(conn, call.settings, row.id, row.version)
    except WorkflowError as exc:
        raise _error(409, gettext("The workflow %(name)s has problems and takes nobody: %(problems)s", name=name,
                                  problems="; ".join(str(p) for p in exc.problems)[:500])) from None
    contact_id = _contact(conn, call.settings, call.body)
    answer = {"contact_id": contact_id, "workflow": name, "run_id": None, "reason": None}
    outside = _outside_segment(conn, call.settings, workflow, contact_id)
    if outside is not None:
        return answer | {"status": "not_eligible", "reason": outside}
    now = utcnow()
    blocked = _blocked(conn, row.id, contact_id, workflow.reentry, now)
    if blocked is not None:
        return answer | blocked
    report = triggers.start(conn, row, workflow, [triggers.Candidate(contact_id, context={"api_key": call.key.name})],
                            trigger="api", now=now)
    if report.started:
        run_id = _latest_run(conn, row.id, contact_id)
        if report.holdout:
            return answer | {"status": "held_out", "run_id": run_id, "reason": _held_out()}
        return answer | {"status": "enrolled", "run_id": run_id}
    # Started by someone else a moment ago (the run's uniqueness decided): say what is there now.
    return answer | (_blocked(conn, row.id, contact_id, workflow.reentry, now) or {
        "status": "not_eligible", "reason": gettext("the workflow's rules keep the contact out now")})


def _outside_segment(conn: Connection, settings: Settings, workflow: Any, contact_id: int) -> str | None:
    """Why the contact is not in the workflow's trigger segment now, or None (in it, or no segment).

    A workflow triggered by a segment is written for its members (a
    reactivation for those who stopped buying): enrolling anyone else would
    send them what is not meant for them. Evaluated live, as GET
    /segments/{name}/contacts does, not as the segment was last refreshed.
    """
    name = workflow.trigger.segment
    if not name or workflow.trigger.kind == "exit":  # written for those who left it: being outside is the point
        return None
    # not in hub.api on purpose: a trigger segment is evaluated in the segment rule language itself
    from hub.segments.evaluate import Segments

    chosen = Segments(conn, settings)
    title = translated_title(chosen.catalog.definitions[name].title) if name in chosen.catalog.definitions else None
    shown = gettext("“%(title)s” (%(name)s)", title=title, name=name) if title else name
    if name in chosen.catalog.definitions:
        members = chosen.compiler.members(chosen.get(name).rule).subquery()
        if conn.execute(select(members.c.id).where(members.c.id == contact_id)).first() is not None:
            return None
    return gettext("the contact is not in the segment %(segment)s now; this workflow takes its members only",
                   segment=shown)


def _held_out() -> str:
    return gettext("the contact is in the workflow's control group: the run is recorded and measured, nothing is "
                   "sent")


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)


def _latest_run(conn: Connection, workflow_id: int, contact_id: int) -> int | None:
    return conn.execute(select(runs_t.c.id).where(runs_t.c.workflow_id == workflow_id,
                                                  runs_t.c.contact_id == contact_id)
                        .order_by(runs_t.c.id.desc()).limit(1)).scalar()


def _blocked(conn: Connection, workflow_id: int, contact_id: int, reentry: dt.timedelta | None,
             now: dt.datetime) -> dict[str, Any] | None:
    """Why the contact cannot start now (the same rules as triggers.start), or None if they can."""
    r = runs_t.c
    runs = conn.execute(select(r.id, r.status, r.started_at).where(r.workflow_id == workflow_id,
                                                                   r.contact_id == contact_id)
                        .order_by(r.id.desc())).all()
    for run in runs:
        if run.status in triggers.ACTIVE:
            return {"status": "already_running", "run_id": run.id,
                    "reason": gettext("the contact's run of this workflow is under way")}
    if not runs:
        return None
    last = runs[0]
    held = last.status == "holdout"
    if held and (reentry is None or _aware(last.started_at) > now - reentry):
        return {"status": "held_out", "run_id": last.id, "reason": _held_out()}
    if reentry is None:
        return {"status": "not_eligible", "run_id": last.id,
                "reason": gettext("the contact has been through this workflow; it takes each person once "
                                  "(reentry: never)")}
    started = _aware(last.started_at)
    if started > now - reentry:
        return {"status": "not_eligible", "run_id": last.id,
                "reason": gettext("the contact entered this workflow on %(date)s; it takes them again after "
                                  "%(reentry)s (on %(next)s)", date=format_date(started),
                                  reentry=format_length(reentry), next=format_date(started + reentry))}
    return None


def _contact(conn: Connection, settings: Settings, body: Mapping[str, Any]) -> int:
    """The contact the body names, as they are now; a problem naming the field otherwise."""
    given = [f for f in ("contact_id", "reference", "phone", "email") if f in body]
    if len(given) != 1:
        detail = gettext("name the contact by exactly one of: contact_id, reference, phone, email")
        fields = given[1:] or ["contact_id"]
        raise _error(400, f"/{fields[0]}: {detail}", errors=[{"field": "/" + f, "detail": detail} for f in fields])
    by = given[0]
    key: ContactKey
    if by == "contact_id":
        key = int(body["contact_id"])
    elif by == "reference":
        key = (body["reference"]["source"], body["reference"]["external_id"])
    elif by == "phone":
        numbers = [p for p in normalize_phones(str(body["phone"]), settings.default_region) if p.valid]
        if not numbers:
            raise _error(400, "/phone: " + gettext("not a phone number"),
                         errors=[{"field": "/phone", "detail": gettext("not a phone number")}])
        key = numbers[0].value
    else:
        address = normalize_email(str(body["email"]))
        if address is None or not address.valid:
            raise _error(400, "/email: " + gettext("not a valid email address"),
                         errors=[{"field": "/email", "detail": gettext("not a valid email address")}])
        key = address.value
    found = find_contacts(conn, [key])[0]  # a live contact: not deleted, erased or a signup placeholder
    if found is None and shared_keys(conn, [key])[0]:
        detail = (gettext("several people share this phone, so it names nobody; name the contact by contact_id or "
                          "reference") if by == "phone" else
                  gettext("several people share this email, so it names nobody; name the contact by contact_id or "
                          "reference"))
        raise _error(409, f"/{by}: {detail}", errors=[{"field": "/" + by, "detail": detail}])
    if found is None:
        detail = gettext("nobody in the base has it")
        raise _error(404, f"/{by}: {detail}", errors=[{"field": "/" + by, "detail": detail}])
    return found


def register(register: Any) -> None:
    """POST /api/v1/workflows/{name}/enroll (the workflows plugin's register_api_endpoints)."""
    register(ApiEndpoint(
        "POST", "/workflows/{name}/enroll", enroll, "workflows:write", "Enroll one contact into a workflow",
        "workflows", body=BODY, answer=ANSWER, errors=(400, 404, 409),
        params=({"name": "name", "in": "path", "required": True,
                 "schema": {"type": "string", "maxLength": 64, "pattern": LINE}},),
        description="The workflow's own rules apply, as for any start: a switched-off workflow answers 409; a "
                    "contact with a run under way, or inside the re-entry period, is not started again; the "
                    "holdout takes its share. A repeat is harmless: it answers already_running with the run. A "
                    "phone or email several people share (an office switchboard) names nobody: 409, name the "
                    "contact by contact_id or reference. The "
                    "run's first step is done by the next tick of `hub scheduler`, like any run's."))
