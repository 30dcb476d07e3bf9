"""Saved segments and the built-in library.

Built-in segments are read from hub/segments/library/*.yaml every time, so a
newer Hub brings its improved definitions without a migration; their rows in
`segments` carry only the refresh state. A user's segment is stored as the
document they wrote and checked again whenever it is read, because a plugin
whose field it uses may have gone away since; a segment that no longer checks
is reported, not silently skipped.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Connection, select

from hub import i18n
from hub.db import insert_for, utcnow
from hub.i18n import gettext as _
from hub.models import Segment, SegmentMember
from hub.segments.fields import Registry
from hub.segments.rules import Parser, PlainDumper, RuleError, SegmentDefinition, SegmentError, check_references, \
    close_match, read_document, references

segments_t = Segment.__table__
members_t = SegmentMember.__table__
LIBRARY = Path(__file__).parent / "library"
SCORE_MODEL_FILE = "lead_score.yaml"


@cache
def builtin_documents() -> dict[str, dict[str, Any]]:
    """The shipped segment documents by name (the lead-score model is not a segment)."""
    out = {}
    for path in sorted(LIBRARY.glob("*.yaml")):
        if path.name != SCORE_MODEL_FILE:
            document = read_document(path)
            out[document["name"]] = document
    return out


@dataclass
class Catalog:
    """Every segment there is: checked definitions, and those that no longer check."""

    definitions: dict[str, SegmentDefinition] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)
    rows: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> SegmentDefinition:
        """The segment called `name`, or an error that says what there is."""
        if name in self.definitions:
            return self.definitions[name]
        if name in self.broken:
            raise SegmentError(_("segment '%(name)s' no longer checks: %(problems)s", name=name,
                                 problems=self.broken[name]))
        close = close_match(name, sorted(self.definitions))
        if close:
            raise SegmentError(_("no segment named '%(name)s'; did you mean '%(option)s'? (see `hub segments list`)",
                                 name=name, option=close))
        raise SegmentError(_("no segment named '%(name)s' (see `hub segments list`)", name=name))


def parse(document: Any, registry: Registry, *, origin: str | None = None, builtin: bool = False) -> SegmentDefinition:
    """A segment document checked against the registry; RuleError lists every problem."""
    parser = Parser(registry)
    definition = parser.segment(document)
    parser.raise_problems(origin)
    assert definition is not None
    if builtin:
        definition = SegmentDefinition(definition.name, definition.title, definition.rule, definition.document,
                                       builtin=True)
    return definition


def shown_document(definition: SegmentDefinition) -> dict[str, Any]:
    """The segment's document as its reader is shown it (the admin's editor, a copy, `hub segments show`).

    A shipped segment's title and description come in the reader's language,
    as everywhere else it is named; its rule stays as written. A marketer's
    own segment is their document, unchanged.
    """
    document = dict(definition.document)
    if definition.builtin:
        for key in ("title", "description"):
            if isinstance(document.get(key), str) and document[key].strip():
                document[key] = i18n.title(document[key])
    return document


def shown_yaml(definition: SegmentDefinition) -> str:
    """`shown_document` as the YAML people read and edit."""
    return yaml.dump(shown_document(definition), Dumper=PlainDumper, allow_unicode=True, sort_keys=False)


def load(conn: Connection, registry: Registry) -> Catalog:
    """The built-in segments and every saved one, checked against this registry."""
    catalog = Catalog()
    for name, document in builtin_documents().items():
        catalog.definitions[name] = parse(document, registry, origin=_("built-in segment %(name)s", name=name),
                                          builtin=True)
    for row in conn.execute(select(segments_t).order_by(segments_t.c.name)):
        catalog.rows[row.name] = row
        if row.builtin:
            continue
        try:
            catalog.definitions[row.name] = parse(row.definition, registry)
        except RuleError as exc:
            catalog.broken[row.name] = str(exc)
    for name, definition in list(catalog.definitions.items()):
        try:
            check_references(definition, catalog.definitions)
        except RuleError as exc:
            catalog.broken[name] = str(exc)
            del catalog.definitions[name]
    return catalog


def add(conn: Connection, registry: Registry, document: Any, *,
        origin: str | None = None) -> tuple[SegmentDefinition, bool]:
    """Save a segment (replacing one of the same name); returns it and whether it is new.

    A replaced segment forgets its refresh state, so its next refresh
    re-evaluates everyone under the new rule.
    """
    definition = parse(document, registry, origin=origin)
    catalog = load(conn, registry)
    if definition.name in builtin_documents():
        raise SegmentError(f"{origin + ': ' if origin else ''}"
                           + _("'%(name)s' is a built-in segment; save yours under another name",
                               name=definition.name))
    try:
        check_references(definition, catalog.definitions)
    except RuleError as exc:
        raise RuleError(exc.problems, origin) from None
    now = utcnow()
    values = {"name": definition.name, "title": definition.title, "definition": definition.document,
              "builtin": False, "created_at": now, "updated_at": now, "refreshed_at": None,
              "refreshed_event_id": None}
    existing = catalog.rows.get(definition.name)
    ins = insert_for(conn, segments_t)
    conn.execute(ins.values(values).on_conflict_do_update(
        index_elements=["name"],
        set_={k: ins.excluded[k] for k in ("title", "definition", "updated_at", "refreshed_at",
                                           "refreshed_event_id")}))
    return definition, existing is None


def remove(conn: Connection, registry: Registry, name: str) -> None:
    """Delete a saved segment and its recorded members; refused while another segment uses it."""
    catalog = load(conn, registry)
    if name in builtin_documents():
        raise SegmentError(_("'%(name)s' is a built-in segment and cannot be removed", name=name))
    if name not in catalog.rows:
        catalog.get(name)  # raises with a suggestion
    users = sorted(other for other, d in catalog.definitions.items()
                   if any(ref.name == name for ref in references(d.rule)))
    if users:
        raise SegmentError(_("segment '%(name)s' is used by %(users)s; change or remove those first", name=name,
                             users=", ".join(users)))
    segment_id = catalog.rows[name].id
    conn.execute(members_t.delete().where(members_t.c.segment_id == segment_id))
    conn.execute(segments_t.delete().where(segments_t.c.id == segment_id))


@dataclass(frozen=True)
class RefreshState:
    id: int
    refreshed_at: dt.datetime | None
    refreshed_event_id: int | None


def refresh_state(conn: Connection, definition: SegmentDefinition) -> RefreshState:
    """The segment's row, created for a built-in on its first refresh.

    A built-in whose shipped definition changed since (a newer Hub) starts
    over with a full refresh, as a user's edited segment does.
    """
    query = select(segments_t.c.id, segments_t.c.definition, segments_t.c.refreshed_at,
                   segments_t.c.refreshed_event_id).where(segments_t.c.name == definition.name)
    if definition.builtin:
        now = utcnow()
        conn.execute(insert_for(conn, segments_t).values(
            name=definition.name, title=definition.title, builtin=True, definition=definition.document,
            created_at=now, updated_at=now).on_conflict_do_nothing(index_elements=["name"]))
    row = conn.execute(query).first()
    if row is None:
        raise SegmentError(_("no segment named '%(name)s' (see `hub segments list`)", name=definition.name))
    if definition.builtin and row.definition != definition.document:
        conn.execute(segments_t.update().where(segments_t.c.id == row.id).values(
            title=definition.title, definition=definition.document, refreshed_at=None, refreshed_event_id=None))
        row = conn.execute(query).one()
    return RefreshState(row.id, row.refreshed_at, row.refreshed_event_id)
