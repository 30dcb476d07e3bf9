"""The library page: the shipped workflows as templates to start from, and copying one to adapt.

A marketer rarely starts from an empty page: the shipped workflows
(workflows/library/*.yaml) show what each does, in words, and what it needs
in this Hub (a segment, templates, channels, a CRM, an event from the
website), each marked as there or missing, so a copy is not switched on to
fail at its first step. A copy is an ordinary workflow of the admin's
(origin "admin", version 1, switched off), opened in the builder to adapt;
the shipped row itself stays as it is and can still be switched on as shipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import abort, current_app, redirect, render_template, request, url_for
from sqlalchemy import Connection, select

from hub.api import (ActionForm, Settings, actor, allow, current_settings, engine, gettext, pgettext, record_audit,
                     translated_title)
from workflows.admin import bp
from workflows.rule_words import rule_words

MAX_TITLE = 300  # workflows.title's length


@dataclass(frozen=True)
class Need:
    """One thing a workflow needs to work here, in words, and whether this Hub has it."""

    text: str
    present: bool
    missing: str = ""  # what "not here" is for this need, when not simply "no" (an event: "not received yet")
    segment: str | None = None  # a segment's technical name in the text, shown as a name (not a word)

    @property
    def state(self) -> str:
        """«есть» / «нет» (or the need's own word for missing), in the reader's language."""
        if self.present:
            return pgettext("library need", "present")
        return self.missing or pgettext("library need", "missing")


def _walk(steps: Any) -> list[dict[str, Any]]:
    """Every step mapping of a document, inside `then`/`else` too."""
    out: list[dict[str, Any]] = []
    for item in steps if isinstance(steps, list) else [steps]:
        if not isinstance(item, dict):
            continue
        out.append(item)
        for branch in ("then", "else"):
            if branch in item:
                out.extend(_walk(item[branch]))
    return out


def _crm_sources(conn: Connection, settings: Settings) -> list[str]:
    """CRMs that take tasks and comments and hold contacts of this base."""
    from hub.api import ExternalRef, WriteBack
    # not in hub.api on purpose: which registered sources accept writes is the write-back registry's business
    from hub.plugins import sources

    held = set(conn.execute(select(ExternalRef.__table__.c.source).distinct()).scalars())
    out = []
    for name, factory in sources().items():
        if name not in held:
            continue
        try:
            if isinstance(factory(settings), WriteBack):
                out.append(name)
        except Exception:  # noqa: BLE001 - a source that cannot be made here takes no tasks here
            continue
    return sorted(out)


class _Here:
    """What this Hub has, read once per page: segments, templates, channels, CRMs, events received."""

    def __init__(self, conn: Connection, settings: Settings) -> None:
        # not in hub.api on purpose: the campaign engine's channels and templates, like workflows.send
        from hub import message_templates
        from hub.events import names as event_names
        from hub.messaging import channel_factories
        # not in hub.api on purpose: the segment's title comes with its definition (as in workflows.triggers)
        from hub.segments.evaluate import Segments

        self.conn, self.settings = conn, settings
        catalog = Segments(conn, settings).catalog
        self.segments = {name: translated_title(d.title) if d.title else None
                         for name, d in catalog.definitions.items()}
        self.templates = {t.name for t in message_templates.all_templates(conn, settings)}
        self.channels = set(channel_factories())
        self.events = set(event_names(conn))
        self._crms: list[str] | None = None

    @property
    def crms(self) -> list[str]:
        if self._crms is None:
            self._crms = _crm_sources(self.conn, self.settings)
        return self._crms


def needs(document: dict[str, Any], here: _Here) -> list[Need]:
    """What the document needs, in the order a reader meets it, each once."""
    from workflows.definition import is_api_event

    out: list[Need] = []
    seen: set[str] = set()

    def add(key: str, text: str, present: bool, missing: str = "", segment: str | None = None) -> None:
        if key not in seen:
            seen.add(key)
            out.append(Need(text, present, missing, segment))

    raw_trigger = document.get("trigger")
    trigger: dict[str, Any] = raw_trigger if isinstance(raw_trigger, dict) else {}
    segment = trigger.get("segment")
    if isinstance(segment, str):
        title = here.segments.get(segment)
        add(f"segment:{segment}", gettext("the segment “%(title)s” (%(name)s)", title=title, name=segment) if title
            else gettext("the segment %(name)s", name=segment), segment in here.segments, segment=segment)
    event = trigger.get("event")
    if is_api_event(event):
        add(f"event:{event}", gettext("your website sends the event %(event)s to the API (POST /api/v1/events)",
                                      event=event), event in here.events, gettext("not received yet"))
    for step in _walk(document.get("steps")):
        send = step.get("send")
        if isinstance(send, dict):
            channel, template = send.get("channel"), send.get("template")
            if isinstance(channel, str):
                add(f"channel:{channel}", gettext("the channel %(channel)s", channel=channel),
                    channel in here.channels)
            if isinstance(template, str):
                add(f"template:{template}", gettext("the message template %(name)s", name=template),
                    template in here.templates)
        if any(key in step for key in ("crm_task", "crm_comment", "crm_field")):
            add("crm", gettext("a CRM that takes tasks and comments (Bitrix24 or amoCRM), holding the contacts"),
                bool(here.crms))
    return out


def _steps(conn: Connection, settings: Settings, document: dict[str, Any]) -> tuple[list[dict[str, Any]], Any,
                                                                                    list[str]]:
    """The steps as phrases (with their depth in branches), the parsed workflow, and its problems here."""
    from workflows.definition import If, WorkflowError, parse
    from workflows.steps import kind_title

    try:
        workflow = parse(document, conn, settings)
    except WorkflowError as exc:
        return [], None, list(exc.problems)
    except ValueError as exc:  # a plugin's step that refuses its options outside StepError
        return [], None, [str(exc)]
    out = []
    for instruction in workflow.steps():
        path = instruction.path
        depth = path.count(".then") + path.count(".else")
        last = max(path.rfind(".then"), path.rfind(".else"))
        branch = path[last + 1:last + 5] if last >= 0 else None
        rule = None
        if isinstance(instruction.step, If):
            rule = rule_words(instruction.step.rule, settings)
        out.append({"phrase": instruction.step.phrase(), "kind": instruction.kind,
                    "title": kind_title(instruction.step), "depth": depth, "branch": branch, "rule": rule})
    return out, workflow, []


def entries(conn: Connection, settings: Settings) -> list[dict[str, Any]]:
    """Every shipped workflow as the library page shows it."""
    from workflows import store, triggers

    here = _Here(conn, settings)
    out = []
    for name, document in store.library_documents().items():
        steps, workflow, problems = _steps(conn, settings, document)
        trigger_text = triggers.trigger_text(conn, settings, workflow) if workflow is not None else None
        goal = workflow.goal if workflow is not None else None
        out.append({"name": name, "title": translated_title(document.get("title")) or name,
                    "description": translated_title(document.get("description")),
                    "trigger_text": trigger_text, "segment": workflow.trigger.segment if workflow else None,
                    "schedule": workflow.trigger.schedule if workflow else None,
                    "trigger_title": workflow.trigger.title() if workflow else None,
                    "goal": goal, "steps": steps, "problems": problems, "needs": needs(document, here)})
    return out


@bp.get("/library")
@allow(read="viewer")
def library() -> Any:
    with engine().connect() as conn:
        found = entries(conn, current_settings())
    return render_template("workflows/library.html", entries=found)


def default_name(conn: Connection, template: str) -> str:
    """`<template>_copy`, or `_copy_2`, `_copy_3`, … when taken; never longer than a name may be."""
    from workflows import store

    taken = set(conn.execute(select(store.workflows_t.c.name)).scalars()) | set(store.library_documents())
    base = f"{template}_copy"[:64]
    if base not in taken:
        return base
    n = 2
    while True:
        suffix = f"_{n}"
        name = base[:64 - len(suffix)] + suffix
        if name not in taken:
            return name
        n += 1


def name_problem(conn: Connection, name: str) -> str | None:
    """Why `name` cannot be the copy's name, in the reader's language; None when it can."""
    from workflows import store
    from workflows.definition import NAME

    if not name:
        return gettext("Name: enter a name for the copy, e.g. reactivation_90d_copy.")
    if len(name) > 64:
        return gettext("Name: too long (%(length)s characters); at most 64.", length=len(name))
    if not NAME.match(name):
        return gettext("Name: %(name)s does not fit: use lower-case Latin letters, digits and _, starting with a "
                       "letter (e.g. reactivation_90d_copy).", name=name)
    if name in store.library_documents():
        return gettext("Name: %(name)s is a shipped workflow; choose another name for your copy.", name=name)
    if conn.execute(select(store.workflows_t.c.id).where(store.workflows_t.c.name == name)).first() is not None:
        return gettext("Name: a workflow named %(name)s already exists; choose another name.", name=name)
    return None


def title_problem(title: str) -> str | None:
    if not title:
        return gettext("Title: enter a title people will see in the list.")
    if len(title) > MAX_TITLE:
        return gettext("Title: too long (%(length)s characters); at most %(max)s.", length=len(title), max=MAX_TITLE)
    if any(ord(ch) < 32 for ch in title):
        return gettext("Title: write it on one line, without control characters.")
    return None


def _copy(document: dict[str, Any], name: str, title: str) -> dict[str, Any]:
    """The copy's document: its description in the reader's language, as the library card showed it.

    The shipped files carry English with the Russian in the catalog; a copy is
    the marketer's own text from then on, so it keeps what they read.
    """
    copy = {**document, "name": name, "title": title}
    description = document.get("description")
    if isinstance(description, str) and description:
        copy["description"] = translated_title(description)
    return copy


def _builder_url(name: str) -> str:
    """The copy opens in the builder, when the builder's pages are registered; else on its own page."""
    if "workflows.edit" in current_app.view_functions:
        return url_for("workflows.edit", name=name)
    return url_for("workflows.detail", name=name)


@bp.route("/library/<template>/copy", methods=["GET", "POST"])
@allow(read="marketer", write="marketer")  # the form is only for those who may save it
def library_copy(template: str) -> Any:
    from workflows import store
    from workflows.definition import WorkflowError

    document = store.library_documents().get(template)
    if document is None:
        abort(404)
    settings = current_settings()
    form = ActionForm()
    shown_title = translated_title(document.get("title")) or template
    problems: list[str] = []
    if request.method == "POST":
        name = request.form.get("name", "").strip()
        title = request.form.get("title", "").strip()
        if form.validate_on_submit():
            with engine().begin() as conn:
                problems = [p for p in (name_problem(conn, name), title_problem(title)) if p]
                if not problems:
                    copy = _copy(document, name, title)
                    try:
                        store.add(conn, settings, copy, by=actor(), kind=store.ADMIN_ORIGIN)
                    except WorkflowError as exc:
                        problems = list(exc.problems)
                    else:
                        record_audit(conn, actor(), "workflow_copied", workflow=name, template=template)
            if not problems:
                return redirect(_builder_url(name))
        else:
            problems = [gettext("The form's security token is missing or has expired. Reload the page and send it "
                                "again.")]
        status = 400
    else:
        with engine().connect() as conn:
            name = default_name(conn, template)
        title = gettext("%(title)s (copy)", title=shown_title)[:MAX_TITLE]
        status = 200
    return render_template("workflows/library_copy.html", template=template, template_title=shown_title,
                           name=name, title=title, problems=problems, form=form), status
