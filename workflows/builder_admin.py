"""The workflow builder: make or change an automation in the admin without writing YAML.

The page (admin_templates/workflows/builder.html with admin_static/workflow-builder.js)
shows a workflow as a flow of cards — the trigger, then each step with its
form (the step kind's `form`), conditions drawn with the segment rule editor
(Hub.RuleEditor) and their «да»/«нет» branches — with the YAML text beside it.
Like the segment editor, the server does the reading and writing: /workflows/builder/check
turns the typed text into the builder's tree (workflows.builder_model) and says
what is wrong, /workflows/builder/write turns a changed tree back into text.
Without JavaScript the text form alone is the editor.

Saving checks everything with definition.parse (the one place that decides
what is valid) and keeps a changed workflow as a new version: runs in
progress stay on the version they started on unless the marketer moves them.
A workflow's name is its identity and cannot change here; shipped (library)
workflows open read-only, to be copied; campaigns' workflows are not shown.
"""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select

# not in hub.api on purpose: a workflow's `if` is drawn by the segment rule editor, with its catalog and words
from hub.admin import segment_builder
from hub.api import (N_, TRANSACTIONAL, Settings, actor, allow, consent_purpose_title, consent_purposes,
                     current_settings, current_user, engine, format_moment, format_number, gettext, ngettext,
                     record_audit, translated_title)
# not in hub.api on purpose: the template picker lists the message templates
from hub import message_templates
# not in hub.api on purpose: conditions and triggers are written in the segment rule language itself
from hub.segments import fields as segment_fields
# not in hub.api on purpose: a workflow's text is read like a segment's, with the same messages
from hub.segments.rules import DocumentRefused, SegmentError
from workflows import builder_model, builder_words, store
from workflows.admin import bp
from workflows.definition import EVENTS, GOAL_EVENTS, WorkflowError, date_fields, parse, step_types
from workflows.models import WorkflowRow
from workflows.names import goal_title
from workflows.steps import kind_summary, kind_title

workflows_t = WorkflowRow.__table__
MAX_DOCUMENT = 50_000  # characters of a workflow's text
MAX_TREE = 400_000  # bytes of a builder tree sent as JSON (it is wordier than the YAML it stands for)
# A new workflow starts empty: the marketer's own title (the name is made from it), a trigger, «+ step»;
# `reentry: never` is what the page's «Повторный вход» shows (a date trigger would otherwise mean once a year).
NEW_WORKFLOW = "reentry: never\nsteps: []\n"
PICKED_VARIABLES = ("contact", "promo")  # what a CRM task or comment says; links and surveys belong in letters
EVENT_TITLES = {"order.created": N_("an order is placed"), "order.won": N_("a deal is won"),
                "contact.created": N_("a new contact"), "promo.expiring": N_("a promo code is about to expire"),
                "promo.expired": N_("a promo code expired"),
                "deal.stuck": N_("an open deal stands in one stage")}


def too_long() -> str:
    return gettext("the workflow is too long (more than %(limit)s characters)", limit=format_number(MAX_DOCUMENT))


def read_text(text: str) -> Any:
    """The document a person typed, or a SegmentError saying where the YAML is broken."""
    if len(text) > MAX_DOCUMENT:
        raise SegmentError(too_long())
    return builder_model.from_text(text)


def check(settings: Settings, text: str, name: str | None = None) -> dict[str, Any]:
    """Every problem with a typed workflow (each starting with its path), or a line saying it is fine."""
    try:
        document = read_text(text)
        with engine().connect() as conn:
            workflow = parse(document, conn, settings)
            problems = _identity_problems(conn, document, name)
    except DocumentRefused as exc:  # the endpoints answer it with 400: refused, not merely wrong
        return {"ok": False, "problems": [str(exc)], "summary": "", "refused": True}
    except SegmentError as exc:
        return {"ok": False, "problems": [str(exc)], "summary": ""}
    except WorkflowError as exc:
        return {"ok": False, "problems": list(exc.problems), "summary": ""}
    except RecursionError:
        return {"ok": False, "problems": ["steps: " + gettext("nested too deeply")], "summary": ""}
    if problems:
        return {"ok": False, "problems": problems, "summary": ""}
    count = len(workflow.steps())
    return {"ok": True, "problems": [], "summary": ngettext("No problems found: %(num)s step.",
                                                           "No problems found: %(num)s steps.", count, num=count)}


def _identity_problems(conn: Any, document: Any, name: str | None) -> list[str]:
    """What the name may not be: another workflow's (when new), a different one (when changing), a shipped one."""
    new_name = document.get("name") if isinstance(document, dict) else None
    if name is not None:
        if new_name != name:
            return ["name: " + gettext("a saved workflow cannot be renamed (its name is how runs and reports know "
                                       "it); keep %(name)s, or make a new workflow", name=repr(name))]
        return []
    if new_name in store.library_documents():
        return ["name: " + gettext("%(name)s is a shipped workflow; save yours under another name",
                                   name=repr(new_name))]
    found = conn.execute(select(workflows_t.c.id).where(workflows_t.c.name == new_name)).first()
    if found is not None:
        return ["name: " + gettext("a workflow named %(name)s exists already; choose another name or open that "
                                   "one to change it", name=repr(new_name))]
    return []


def _model_of(text: str) -> dict[str, Any] | None:
    try:
        return builder_model.to_model(read_text(text))
    except SegmentError:
        return None


def condition_hints(model: Any, settings: Settings) -> dict[str, str]:
    """What each relative time in the conditions means in words («-60d» → «60 дней назад»), by its path.

    The paths are the ones the script draws each condition's rule editor at
    ("steps[3].if.value"; a branch written as one step is "steps[3].then"),
    so every editor finds its own hints, as the segment editor does.
    """
    out: dict[str, str] = {}
    _hints_in(model.get("steps") if isinstance(model, dict) else None, "steps", False, settings, out, 0)
    return out


def _hints_in(nodes: Any, base: str, one: bool, settings: Settings, out: dict[str, str], depth: int) -> None:
    if not isinstance(nodes, list) or depth > builder_model.MAX_DEPTH:
        return
    for i, node in enumerate(nodes):
        if not isinstance(node, dict) or node.get("kind") != "if":
            continue
        path = base if one and len(nodes) == 1 else f"{base}[{i}]"
        out.update(segment_builder.hints(node.get("rule"), settings, path=f"{path}.if"))
        for branch in ("then", "else"):
            _hints_in(node.get(branch), f"{path}.{branch}", bool(node.get(f"{branch}_one")), settings, out, depth + 1)


def _kinds() -> list[dict[str, Any]]:
    """Every step kind a workflow may use, with its form (kinds without one can still be written as text)."""
    out = []
    for name, cls in sorted(step_types().items()):
        if name == "exit":
            continue
        out.append({"kind": name, "title": kind_title(cls), "summary": kind_summary(cls),
                    "shorthand": cls.shorthand,
                    "form": [{"key": f.key, "kind": f.kind, "title": gettext(f.title), "required": f.required,
                              "choices": [[v, gettext(t)] for v, t in f.choices],
                              "hint": gettext(f.hint) if f.hint else "", "placeholder": f.placeholder}
                             for f in cls.form]})
    return out


def builder_data(text: str, *, readonly: bool) -> dict[str, Any]:
    """What the page's script draws from: the tree of the text, the pickers' choices, the words."""
    settings = current_settings()
    # not in hub.api on purpose: the campaign engine sends through the registered channels
    from hub.messaging import channel_factories
    from hub.segments.evaluate import Segments

    registry = segment_fields.build(settings)
    with engine().connect() as conn:
        catalog = Segments(conn, settings).catalog
        segments = [{"name": n, "title": translated_title(getattr(d, "title", None)) or n}
                    for n, d in sorted(catalog.definitions.items())]
        templates = [{"name": t.name, "title": translated_title(t.title) if t.title else t.name,
                      "email": t.is_email} for t in message_templates.all_templates(conn, settings)]
        from hub import events as hub_events  # not in hub.api on purpose: the names of events sent so far

        api_events = [n for n in hub_events.names(conn) if n not in EVENTS]
    model = _model_of(text)
    purposes = [{"value": p, "title": consent_purpose_title(p)} for p in consent_purposes(settings)]
    purposes.append({"value": TRANSACTIONAL, "title": gettext("transactional (service messages)")})
    return {
        "model": model, "hints": condition_hints(model, settings), "readonly": readonly,
        "kinds": _kinds(), "channels": sorted(channel_factories()), "templates": templates, "purposes": purposes,
        "segments": segments,
        "events": [{"value": e, "title": gettext(EVENT_TITLES[e])} for e in EVENTS] +
                  [{"value": e, "title": e} for e in api_events],
        "goal_events": [{"value": e, "title": goal_title(e)} for e in GOAL_EVENTS],
        "date_fields": [{"value": f, "title": gettext(registry.fields[f].description) or f}
                        for f in date_fields(registry)],
        "rule": {"catalog": segment_builder.catalog(registry), "texts": segment_builder.texts(),
                 "segments": [s["name"] for s in segments], "suggestUrl": url_for("segments.suggest")},
        "variables": _variables(settings),
        "texts": texts(),
    }


def _variables(settings: Settings) -> list[dict[str, str]]:
    """What a task's or a comment's text may insert: the contact's and the promo code's variables, in words."""
    # not in hub.api on purpose: the same variables, words and examples as the template editor offers
    from hub import template_variables

    out = []
    for group_title, found in template_variables.variables(settings):
        out += [{"group": group_title, "snippet": v.snippet, "title": v.description, "example": v.example}
                for v in found if v.group in PICKED_VARIABLES]
    return out


def texts() -> dict[str, str]:
    """The builder's own words, in the reader's language (the script has no catalog of its own)."""
    return {
        "trigger": gettext("Starts when"), "steps": gettext("Steps"), "add": gettext("+ step"),
        "up": gettext("Move up"), "down": gettext("Move down"), "remove": gettext("Remove"),
        "if": gettext("Condition"), "if_summary": gettext("Goes on along «yes» or «no» by a rule on the contact."),
        "exit": gettext("Leave the workflow"), "exit_summary": gettext("Ends the run for this contact."),
        "yes": gettext("yes"), "no": gettext("no"), "add_else": gettext("Add the «no» branch"),
        "preset_bought": gettext("Bought since entering"),
        "run_started": gettext("the moment of entering the workflow"),
        "as_text": gettext("Written as text (the builder has no form for it); it is kept as written:"),
        "segment_enter": gettext("Entering a segment"), "segment_exit": gettext("Leaving a segment"),
        "event": gettext("An event"), "date": gettext("A date in the card"), "schedule": gettext("On a schedule"),
        "segment": gettext("Segment"), "event_name": gettext("Event"), "api_event": gettext("an event from the API…"),
        "api_event_name": gettext("Event name (sent to /api/v1/events)"),
        "before": gettext("How long before"), "stuck_for": gettext("How long in one stage"),
        "at": gettext("At (the shop's time)"), "date_field": gettext("Date"),
        "cron": gettext("Schedule (cron)"), "daily_at": gettext("every day at"), "weekly_at": gettext("every week on"),
        "custom": gettext("other (cron)"), "days_before": gettext("days before"),
        "weekdays": gettext("Mon,Tue,Wed,Thu,Fri,Sat,Sun"),
        "goal": gettext("Goal"), "goal_none": gettext("no goal"), "goal_within": gettext("within"),
        "holdout": gettext("Control group, %"), "reentry": gettext("Enter again"),
        "reentry_never": gettext("never"), "reentry_after": gettext("again after"),
        "minutes": gettext("minutes"), "hours": gettext("hours"), "days": gettext("days"), "weeks": gettext("weeks"),
        "pick": gettext("— choose —"), "problems": gettext("Fix these before saving:"),
        "checking": gettext("Checking…"), "offline": gettext("The workflow could not be checked."),
        "unreadable": gettext("The text is not a workflow the builder can show; fix it in the text form."),
        "name": gettext("Name (latin letters, digits and _)"), "title": gettext("Title"),
        "description": gettext("Description"), "empty_branch": gettext("nothing: the run goes on below"),
        "title_placeholder": gettext("e.g. Spring win-back"),
        "name_auto": gettext("made from the title; change it if you like"),
        "channel_first": gettext("choose the channel first"),
        "settings": gettext("Goal and limits"),
        "preset_hint": gettext("the last won order is later than the moment of entering the workflow"),
        "insert": gettext("Insert…"), "typed_date": gettext("a date…"),
        "todo": gettext("To save it, there is still:"),
    }


def _row(name: str) -> Any:
    with engine().connect() as conn:
        return conn.execute(select(workflows_t).where(workflows_t.c.name == name)).first()


def _page(text: str, *, name: str | None, problems: list[str], status: int = 200,
          readonly: bool = False, library: bool = False, move: bool = False, base_version: Any = None,
          conflict: dict[str, Any] | None = None) -> Any:
    editable = not readonly and bool(current_user() and current_user().can("marketer"))  # type: ignore[union-attr]
    copy_url = None
    if library and "workflows.library_copy" in current_app.view_functions:
        copy_url = url_for("workflows.library_copy", template=name)
    return render_template("workflows/builder.html", name=name, text=text, problems=problems, editable=editable,
                           library=library, copy_url=copy_url, can_move=name is not None,
                           move=move, base_version=base_version, conflict=conflict,
                           builder={**builder_data(text, readonly=not editable), "problems": problems,
                                               "shown": builder_words.shown(problems, _model_of(text), step_types())},
                           check_url=url_for("workflows.builder_check"),
                           write_url=url_for("workflows.builder_write")), status


@bp.get("/new")
@allow(read="marketer")
def new() -> Any:
    return _page(NEW_WORKFLOW, name=None, problems=[])


@bp.get("/<name>/edit")
@allow(read="viewer")
def edit(name: str) -> Any:
    row = _row(name)
    if row is None:
        if name in store.library_documents():
            return _page(builder_model.to_text(store.library_documents()[name]), name=name, problems=[],
                         readonly=True, library=True)
        abort(404)
    if row.origin == store.CAMPAIGN_ORIGIN:
        abort(404)
    library = row.origin == store.LIBRARY_ORIGIN
    return _page(builder_model.to_text(row.definition), name=name, problems=[], readonly=library, library=library,
                 base_version=row.version)


@bp.post("/new")
@allow(read=None, write="marketer")
def save_new() -> Any:
    return _save(None)


@bp.post("/<name>/edit")
@allow(read=None, write="marketer")
def save_edit(name: str) -> Any:
    row = _row(name)
    if row is None or row.origin == store.CAMPAIGN_ORIGIN:
        abort(404)
    if row.origin == store.LIBRARY_ORIGIN:
        return _page(request.form.get("document", ""), name=name, readonly=True, library=True, status=400,
                     problems=[gettext("A shipped workflow cannot be changed; make a copy and change that.")])
    return _save(name)


def _base_version(name: str | None) -> int | None:
    """The version the editor was opened at (the page always sends it); a malformed one is never current (-1).

    A form without it (a script posting the text alone) saves over whatever is
    current, as `hub workflows add` does; a save at the same moment as another
    is still refused by store.save.
    """
    raw = request.form.get("base_version")
    if name is None or raw is None:
        return None
    raw = raw.strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 10 else -1


def _conflict(name: str, saved: store.Saved) -> dict[str, Any]:
    """Who saved the workflow while this person was editing, when, and where to compare."""
    from workflows import versions

    return {"who": versions.who(saved.saved_by), "version": saved.version,
            "when": format_moment(saved.saved_at, current_settings().tz) if saved.saved_at else "",
            "url": url_for("workflows.versions", name=name)}


def _save(name: str | None) -> Any:
    """Save the typed workflow as a new version, unless someone saved it since the editor was opened.

    A switched-on workflow whose new version lets other people in is saved
    switched off (store.save) and the marketer is taken to the switch-on
    confirmation, as if switching it on for the first time.
    """
    text = request.form.get("document", "")
    move = request.form.get("move_runs") == "1"
    base = _base_version(name)
    settings = current_settings()
    try:
        document = read_text(text)
        with engine().begin() as conn:
            problems = _identity_problems(conn, document, name)
            if problems:
                raise WorkflowError(problems)
            saved = store.save(conn, settings, document, by=actor(), kind=store.ADMIN_ORIGIN, base_version=base)
            workflow, created, version = saved.workflow, saved.created, saved.version
            if saved.stale:
                record_audit(conn, actor(), "workflow_save_refused", workflow=workflow.name, base_version=base,
                             current_version=version)
            else:
                record_audit(conn, actor(), "workflow_saved", workflow=workflow.name, created=created,
                             version=version, written=saved.written, entry_changed=saved.entry,
                             switched_off=saved.switched_off)
            moved: Any = None
            if move and saved.written and not created:
                from workflows import versions

                moved = versions.move_runs(conn, settings, workflow.name, by=actor())
    except SegmentError as exc:
        return _page(text, name=name, move=move, status=400, problems=[str(exc)], base_version=base)
    except WorkflowError as exc:
        return _page(text, name=name, move=move, status=400, problems=list(exc.problems), base_version=base)
    except RecursionError:
        return _page(text, name=name, move=move, status=400, problems=["steps: " + gettext("nested too deeply")],
                     base_version=base)
    if saved.stale:  # the typed text stays; saving again (now from the current version) keeps it
        return _page(text, name=name, move=move, status=409, problems=[],
                     base_version=saved.version if name is not None else None,
                     conflict=_conflict(workflow.name, saved))
    if created:
        flash(gettext("Saved the workflow %(name)s. It is off: switch it on when it is ready.", name=workflow.name),
              "ok")
    elif not saved.written:
        flash(gettext("Nothing changed: the workflow %(name)s stays at version %(version)s.", name=workflow.name,
                      version=version), "ok")
    elif saved.switched_off:
        flash(gettext("The new version is saved. Who enters the workflow changed, so the workflow is switched off: "
                      "check the forecast and switch it on again."), "error")
        return redirect(url_for("workflows.enable_confirm", name=workflow.name))
    else:
        flash(gettext("Saved the workflow %(name)s as version %(version)s. Runs in progress stay on the version "
                      "they started on.", name=workflow.name, version=version) if moved is None else
              gettext("Saved the workflow %(name)s as version %(version)s. Runs in progress moved to it: "
                      "%(moved)s; stayed on their version: %(kept)s.", name=workflow.name, version=version,
                      moved=moved.moved_total, kept=moved.kept_total), "ok")  # kept counts leased runs too
    return redirect(url_for("workflows.detail", name=workflow.name))


# --- the builder's JSON ---------------------------------------------------------------------

def _too_big(limit: int) -> bool:
    return (request.content_length or 0) > limit or len(request.get_data(cache=True)) > limit


def _json_body() -> Any:
    """The request's JSON, or {} when it is not JSON or nested past what Python reads."""
    try:
        return request.get_json(silent=True) or {}
    except RecursionError:
        return {}


def _name_arg(data: dict[str, Any]) -> str | None:
    name = data.get("name")
    return name if isinstance(name, str) and name else None


@bp.post("/builder/check")
@allow(read=None, write="marketer")
def builder_check() -> Any:
    """Every problem with the typed text; with "model": true also the text as the builder's tree."""
    if _too_big(MAX_TREE):
        return {"ok": False, "problems": [too_long()], "summary": ""}, 400
    data = _json_body()
    text = data.get("document") if isinstance(data, dict) else None
    if not isinstance(text, str):
        return {"ok": False, "problems": [gettext('send the workflow as {"document": "...YAML..."}')],
                "summary": ""}, 400
    settings = current_settings()
    answer = check(settings, text, _name_arg(data))
    if answer.pop("refused", False):
        return {**answer, "hints": {}, "shown": builder_words.shown(answer["problems"], None, step_types())}, 400
    model = _model_of(text)
    answer["hints"] = condition_hints(model, settings)
    answer["shown"] = builder_words.shown(answer["problems"], model, step_types())
    if data.get("model"):
        answer["model"] = model
    return answer


@bp.post("/builder/write")
@allow(read=None, write="marketer")
def builder_write() -> Any:
    """The YAML of a tree the builder changed, checked as /workflows/builder/check would."""
    if _too_big(MAX_TREE):
        return {"ok": False, "problems": [too_long()], "summary": ""}, 400
    data = _json_body()
    tree = data.get("model") if isinstance(data, dict) else None
    if not isinstance(tree, dict):
        return {"ok": False, "problems": [gettext('send the builder\'s tree as {"model": {...}}')],
                "summary": ""}, 400
    try:
        text = builder_model.to_text(builder_model.to_document(tree))
    except builder_model.ModelError as exc:
        return {"ok": False, "problems": [str(exc)], "summary": ""}, 400
    except RecursionError:
        return {"ok": False, "problems": ["steps: " + gettext("nested too deeply")], "summary": ""}, 400
    settings = current_settings()
    try:
        hints = condition_hints(tree, settings)
    except RecursionError:
        hints = {}
    answer = check(settings, text, _name_arg(data))
    return {**answer, "document": text, "hints": hints,
            "shown": builder_words.shown(answer["problems"], tree, step_types())}
