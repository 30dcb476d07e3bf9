"""Segments: the list with counts, an editor that checks the rule as it is typed, and explain.

The editor takes the same YAML documents as `hub segments add` (see
docs/segments.md). While a marketer types, the page posts the text to
/segments/check, which answers with every problem (each with its path, e.g.
"rule.all[1].op: 'befor' is not an operator …; did you mean 'before'?") or
with how many contacts match right now. Saving checks it all again.

Beside the text sits the visual rule builder (static/segment-builder.js): it
asks /segments/check for the typed YAML as a tree of nodes (hub.admin.rule_model)
and /segments/write for the YAML of a tree it changed, so the two stay one
document; /segments/builder/fields and /segments/builder/suggest feed its pickers
(hub.admin.segment_builder). Without JavaScript the text editor works alone.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select

from hub import formats, i18n, queue
from hub.admin import audit, rule_model, segment_builder, segment_members
from hub.admin.access import actor, allow, engine
from hub.admin.app import current_settings
from hub.admin.forms import ActionForm, SegmentForm
from hub.config import Settings
from hub.i18n import gettext as _, ngettext
from hub.db import whole_number
from hub.segments import explain, fields, lifecycle, membership, rules, store
from hub.segments.evaluate import Segments
from hub.segments.rules import RuleError, SegmentError, check_references, jsonable, read_yaml

bp = Blueprint("segments", __name__, url_prefix="/segments")
MAX_DOCUMENT = 20_000
MAX_TREE = 200_000  # bytes of a builder tree sent as JSON (it is wordier than the YAML it stands for)
NEW_SEGMENT = """name: my_segment
title: {title}
rule:
  all:
    - {field: orders.last_at, op: after, value: -30d}
    - {field: consent.email.marketing, op: eq, value: granted}
"""


def as_yaml(document: Any) -> str:
    return rule_model.dump(document)


def read_text(text: str) -> Any:
    """The document a person typed, or a SegmentError saying where the YAML is broken."""
    if len(text) > MAX_DOCUMENT:
        raise SegmentError(too_long())
    return read_yaml(text)


def too_long() -> str:
    return _("the segment is too long (more than %(limit)s characters)", limit=formats.number(MAX_DOCUMENT))


def check(conn: Any, settings: Settings, text: str) -> dict[str, Any]:
    """Every problem with a typed segment, or its name and how many contacts match it now.

    `summary` says the count in the reader's language ("5 контактов подходят сейчас"), for the editor to show.
    """
    try:
        document = read_text(text)
        segments = Segments(conn, settings)
        definition = store.parse(document, segments.registry)
        check_references(definition, segments.catalog.definitions)
        if definition.name in store.builtin_documents():
            raise SegmentError(_("name: '%(name)s' is a built-in segment; save yours under another name",
                                 name=definition.name))
        members = segments.compiler.members(definition.rule).subquery()
        count = conn.execute(select(func.count()).select_from(members)).scalar_one()
    except RuleError as exc:
        return {"ok": False, "problems": exc.problems}
    except rules.DocumentRefused as exc:  # the endpoints answer it with 400: refused, not merely wrong
        return {"ok": False, "problems": [str(exc)], "refused": True}
    except SegmentError as exc:
        return {"ok": False, "problems": [str(exc)]}
    summary = ngettext("%(num)s contact matches now", "%(num)s contacts match now", count, num=formats.number(count))
    return {"ok": True, "problems": [], "name": definition.name, "count": count, "summary": summary}


@bp.get("/")
@allow(read="viewer")
def index() -> Any:
    settings = current_settings()
    rows = []
    with engine().connect() as conn:
        segments = Segments(conn, settings)
        catalog = segments.catalog
        recorded = {r["name"]: r for r in _recorded(conn)}
        for name in sorted(set(catalog.definitions) | set(catalog.broken)):
            definition = catalog.definitions.get(name)
            error = catalog.broken.get(name)
            count = None
            if definition is not None:
                try:
                    count = segments.count(name)
                except SegmentError as exc:
                    error = str(exc)
            rows.append({"name": name, **titles(definition),
                         "builtin": bool(definition and definition.builtin), "count": count, "error": error,
                         "members": recorded.get(name, {}).get("members", 0),
                         "refreshed_at": recorded.get(name, {}).get("refreshed_at")})
    return render_template("segments/list.html", rows=rows, action=ActionForm())


def titles(definition: Any) -> dict[str, str]:
    """A segment's title and description in the reader's language (shipped ones translated, a marketer's as written)."""
    if definition is None:
        return {"title": "", "description": ""}
    return {"title": i18n.title(definition.title), "description": i18n.title(definition.description)}


def _recorded(conn: Any) -> list[dict[str, Any]]:
    from hub.admin.overview import segment_sizes

    return segment_sizes(conn)


@bp.get("/new")
@allow(read="marketer")
def new() -> Any:
    document = NEW_SEGMENT.replace("{title}", json.dumps(_("Bought in the last 30 days"), ensure_ascii=False))
    copy = request.args.get("copy")
    if copy:
        with engine().connect() as conn:
            try:
                original = store.shown_document(Segments(conn, current_settings()).get(copy))
            except SegmentError:
                abort(404)
        document = as_yaml({**original, "name": f"my_{copy}"[:64]})
    form = SegmentForm(document=document)
    return render_template("segments/edit.html", form=form, name=None, builtin=False, problems=[], count=None,
                           field_list=_fields(), builder=_builder(document), **titles(None))


def _fields() -> list[dict[str, Any]]:
    """The fields a rule can use, described in the reader's language (names and operators stay as rules write them)."""
    rows = fields.build(current_settings()).describe()
    for row in rows:
        row["type_title"] = fields.type_title(row["type"])
        row["description"] = i18n.title(row["description"])
        if row["field"] == "contact.lifecycle":
            row["choice_titles"] = {c: lifecycle.title(c) for c in row.get("choices", [])}
    return rows


@bp.get("/<name>")
@allow(read="viewer")
def edit(name: str) -> Any:
    with engine().connect() as conn:
        segments = Segments(conn, current_settings())
        try:
            definition = segments.get(name)
        except SegmentError:
            row = segments.catalog.rows.get(name)
            if row is None:
                abort(404)
            form = SegmentForm(document=as_yaml(row.definition))
            return render_template("segments/edit.html", form=form, name=name, builtin=False,
                                   problems=[segments.catalog.broken.get(name, "")], count=None,
                                   field_list=_fields(), builder=_builder(form.document.data), **titles(None))
        count = segments.count(name)
    form = SegmentForm(document=store.shown_yaml(definition))
    return render_template("segments/edit.html", form=form, name=name, builtin=definition.builtin, problems=[],
                           count=count, field_list=_fields(), builder=_builder(form.document.data),
                           **titles(definition))


def _builder(text: str | None) -> dict[str, Any]:
    """What the builder starts from: the fields, and the tree of the text shown (None when it does not read)."""
    try:
        tree = rule_model.model(jsonable(read_text(text or "")))
    except SegmentError:
        tree = None
    with engine().connect() as conn:
        names = sorted(Segments(conn, current_settings()).catalog.definitions)
    return {"catalog": segment_builder.catalog(fields.build(current_settings())), "model": tree,
            "hints": segment_builder.hints(tree.get("rule"), current_settings()) if tree else {},
            "segments": names, "texts": segment_builder.texts()}


@bp.get("/builder/fields")
@allow(read="viewer")
def fields_json() -> Any:
    """The builder's field catalog: every field (plugins' too) with its title, type, operators and choices."""
    return segment_builder.catalog(fields.build(current_settings()))


@bp.get("/builder/suggest")
@allow(read="marketer")
def suggest() -> Any:
    """The values a text field holds in the base, most frequent first, for the builder's value box."""
    field = request.args.get("field")
    try:
        with engine().connect() as conn:
            values = segment_builder.suggestions(conn, fields.build(current_settings()), field,
                                                 request.args.get("prefix", ""))
    except segment_builder.SuggestError as exc:
        return {"field": field, "values": [], "error": str(exc)}, 400
    return {"field": field, "values": values}


@bp.post("/check")
@allow(read=None, write="marketer")
def check_json() -> Any:
    if _too_big(MAX_TREE):
        return {"ok": False, "problems": [too_long()]}, 400
    data = _json_body()
    text = data.get("document") if isinstance(data, dict) else None
    if not isinstance(text, str):
        return {"ok": False, "problems": [_('send the segment as {"document": "...YAML..."}')]}, 400
    settings = current_settings()
    with engine().connect() as conn:
        answer = check(conn, settings, text)
    if answer.pop("refused", False):
        return answer, 400
    if data.get("model"):  # the builder asks for the text as its tree, to draw it again
        try:
            tree = rule_model.model(jsonable(read_text(text)))
        except SegmentError:
            tree = None
        answer["model"] = tree
        answer["hints"] = segment_builder.hints(tree.get("rule"), settings) if tree else {}
    return answer


@bp.post("/write")
@allow(read=None, write="marketer")
def write_json() -> Any:
    """The YAML of a tree the builder changed, checked and counted as /segments/check would."""
    if _too_big(MAX_TREE):
        return {"ok": False, "problems": [too_long()]}, 400
    data = _json_body()
    tree = data.get("model") if isinstance(data, dict) else None
    if not isinstance(tree, dict):
        return {"ok": False, "problems": [_('send the builder\'s tree as {"model": {...}}')]}, 400
    try:
        document = rule_model.document(tree)
        text = as_yaml(document)
    except rule_model.ModelError as exc:
        return {"ok": False, "problems": [str(exc)]}, 400
    except RecursionError:
        return {"ok": False, "problems": ["rule: " + rules.too_deep()]}, 400
    settings = current_settings()
    with engine().connect() as conn:
        answer = check(conn, settings, text)
    return {**answer, "document": text, "hints": segment_builder.hints(tree.get("rule"), settings)}


def _too_big(limit: int) -> bool:
    return (request.content_length or 0) > limit or len(request.get_data(cache=True)) > limit


def _json_body() -> Any:
    """The request's JSON, or {} when it is not JSON or nested past what Python reads."""
    try:
        return request.get_json(silent=True) or {}
    except RecursionError:
        return {}


@bp.post("/save")
@allow(read=None, write="marketer")
def save() -> Any:
    form = SegmentForm()
    settings = current_settings()
    original = request.form.get("original") or None
    problems: list[str] = []
    if not form.validate():
        problems = [e for errors in form.errors.values() for e in errors]
    else:
        try:
            document = read_text(form.document.data or "")
            with engine().begin() as conn:
                definition, created = store.add(conn, fields.build(settings), document)
                audit.record(conn, actor(), "segment_saved", segment=definition.name, created=created)
        except RuleError as exc:
            problems = exc.problems
        except SegmentError as exc:
            problems = [str(exc)]
        else:
            # Record its members now (a worker does it when there is one), so its member list is not empty.
            queue.enqueue(settings, segment_members.refresh_job, definition.name,
                          job_id=f"admin-segment-refresh-{definition.name}")
            with engine().connect() as conn:
                count = Segments(conn, settings).count(definition.name)
            flash(ngettext("Saved segment %(name)s: %(num)s contact matches it now.",
                           "Saved segment %(name)s: %(num)s contacts match it now.", count,
                           name=definition.name, num=formats.number(count)), "ok")
            return redirect(url_for("segments.edit", name=definition.name))
    return render_template("segments/edit.html", form=form, name=original, builtin=False, problems=problems,
                           count=None, field_list=_fields(), builder=_builder(form.document.data),
                           **titles(None)), 400


@bp.post("/<name>/delete")
@allow(read=None, write="marketer")
def delete(name: str) -> Any:
    if ActionForm().validate_on_submit():
        try:
            with engine().begin() as conn:
                store.remove(conn, fields.build(current_settings()), name)
                audit.record(conn, actor(), "segment_removed", segment=name)
        except SegmentError as exc:
            flash(str(exc), "error")
            return redirect(url_for("segments.edit", name=name))
        flash(_("Removed segment %(name)s.", name=name), "ok")
    return redirect(url_for("segments.index"))


def refresh_job() -> dict[str, Any]:
    """Record every segment's members now (a queue job: the web request does not wait for it)."""
    from hub.config import load_settings
    from hub.db import get_engine

    settings = load_settings()
    return membership.refresh(get_engine(settings.database_url), settings).as_dict()


@bp.post("/refresh")
@allow(read=None, write="marketer")
def refresh() -> Any:
    if ActionForm().validate_on_submit():
        settings = current_settings()
        with engine().begin() as conn:
            audit.record(conn, actor(), "segments_refresh_requested")
        queue.enqueue(settings, refresh_job, background=True, job_id="admin-segments-refresh")
        flash(_("Refreshing every segment in the background; reload this page in a minute."), "ok")
    return redirect(url_for("segments.index"))


@bp.get("/<name>/explain")
@allow(read="viewer")
def explain_page(name: str) -> Any:
    raw = request.args.get("contact", "").strip().lstrip("#")
    result, error = None, None
    with engine().connect() as conn:
        try:
            shown = titles(Segments(conn, current_settings()).get(name))
        except SegmentError:
            shown = titles(None)
    if raw:
        contact_id = whole_number(raw)
        if contact_id is None:
            error = _("'%(value)s' is not a contact number", value=raw[:40])
        else:
            with engine().connect() as conn:
                try:
                    settings = current_settings()
                    result = explain.readable(explain.explain(Segments(conn, settings), name, contact_id),
                                              settings.tz)
                    for line in result["lead_score"]["lines"]:
                        line["title"] = i18n.title(line["title"])
                except SegmentError as exc:
                    error = str(exc)
    return render_template("segments/explain.html", name=name, contact=raw, result=result, error=error, **shown)
