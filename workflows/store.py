"""Saved workflows: the shipped library, users' files, their versions, and whether each is on.

Library workflows (workflows/library/*.yaml) are copied into the database the
first time Hub looks, switched off; a newer Hub that ships a changed file adds
a new version. A user's file is saved by `hub workflows add` (also switched
off until `hub workflows enable`). Saving a changed definition adds a version:
runs keep following the version they started on, new runs take the newest.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any

import pluggy
from sqlalchemy import Connection, func, select, update

from hub.api import Contact, Order, Settings, gettext, insert_for, parse_duration, utcnow
# not in hub.api on purpose: conditions and triggers are written in the segment rule language itself
from hub.segments.rules import read_document
from workflows.definition import DATE_REENTRY, Workflow, WorkflowError, parse
from workflows.models import WorkflowRow, WorkflowVersion

workflows_t = WorkflowRow.__table__
versions_t = WorkflowVersion.__table__
LIBRARY = Path(__file__).parent / "library"
LIBRARY_ORIGIN, FILE_ORIGIN = "library", "file"
ADMIN_ORIGIN = "admin"  # made in the admin's builder (from scratch or copied from the library)
CAMPAIGN_ORIGIN = "campaign"  # a campaign's own workflow: built, started and finished by workflows.campaigns

_parsed: dict[tuple[str, int, str], Workflow] = {}


@cache
def library_documents() -> dict[str, dict[str, Any]]:
    """The shipped workflow documents by name."""
    out = {}
    for path in sorted(LIBRARY.glob("*.yaml")):
        document = read_document(path)
        out[document["name"]] = document
    return out


def install_library(conn: Connection) -> None:
    """Make sure every shipped workflow has a row, and its newest shipped version."""
    library = library_documents()
    rows = {r.name: r for r in conn.execute(select(workflows_t.c.id, workflows_t.c.name, workflows_t.c.origin,
                                                   workflows_t.c.definition, workflows_t.c.version)
                                            .where(workflows_t.c.name.in_(list(library))))}
    for name, document in library.items():
        row = rows.get(name)
        if row is None:
            _insert(conn, document, LIBRARY_ORIGIN)
        elif row.origin == LIBRARY_ORIGIN and row.definition != document:
            _new_version(conn, row.id, row.version + 1, document)


def _insert(conn: Connection, document: dict[str, Any], origin: str, by: str | None = None) -> int:
    now = utcnow()
    ins = insert_for(conn, workflows_t).values(
        name=document["name"], title=document.get("title"), origin=origin, definition=document, version=1,
        enabled=False, state={}, created_at=now, updated_at=now).on_conflict_do_nothing(index_elements=["name"])
    new_id = conn.execute(ins.returning(workflows_t.c.id)).scalar()
    if new_id is None:  # another process installed it first
        return conn.execute(select(workflows_t.c.id).where(workflows_t.c.name == document["name"])).scalar_one()
    conn.execute(versions_t.insert().values(workflow_id=new_id, version=1, definition=document, created_at=now,
                                            created_by=by))
    return new_id


def _new_version(conn: Connection, workflow_id: int, version: int, document: dict[str, Any],
                 by: str | None = None, *, enabled: bool | None = None) -> bool:
    """Make `version` the current one if the row is still at the version before it; False when another save won.

    The row's UPDATE is the guard: on PostgreSQL a second save from the same
    version waits for the first to commit, then finds the row moved on and
    changes nothing; SQLite runs one writer at a time. Only the winner writes
    the version's document, so a lost save never passes for a saved one.
    """
    now = utcnow()
    values: dict[str, Any] = {"definition": document, "version": version, "title": document.get("title"),
                              "updated_at": now}
    if enabled is not None:
        values["enabled"] = enabled
    moved = conn.execute(update(workflows_t).where(workflows_t.c.id == workflow_id,
                                                   workflows_t.c.version == version - 1).values(**values))
    if moved.rowcount != 1:
        return False
    conn.execute(insert_for(conn, versions_t).values(workflow_id=workflow_id, version=version, definition=document,
                                                     created_at=now, created_by=by).on_conflict_do_nothing())
    return True


# --- who enters ------------------------------------------------------------------------------

ENTRY_KEYS = ("trigger", "reentry", "holdout")


def entry_changed(old: Any, new: Any) -> list[str]:
    """Which of the keys deciding who enters (and is messaged) a new version changes so that others may come in.

    Switching a workflow on asks first: the forecast, a confirmation, an
    administrator past `[workflows] confirm_admin_over`. A new version of a
    switched-on workflow that changes its trigger, lets people in again sooner
    (`reentry`) or keeps fewer of them aside (a smaller `holdout`) would skip
    all that, so whoever saves it switches the workflow off. A later or no
    reentry, a larger holdout, texts, templates, waits and goals message no one
    new: the workflow stays on. Anything unreadable counts as a change.
    """
    old_doc = old if isinstance(old, dict) else {}
    new_doc = new if isinstance(new, dict) else {}
    out = []
    if old_doc.get("trigger") != new_doc.get("trigger"):
        out.append("trigger")
    before, after = _reentry(old_doc), _reentry(new_doc)
    if before != after and (UNREADABLE in (before, after) or
                            (after is not None and (before is None or after < before))):
        out.append("reentry")
    held_before, held_after = _share(old_doc.get("holdout")), _share(new_doc.get("holdout"))
    if held_before != held_after and (held_before is None or held_after is None or held_after < held_before):
        out.append("holdout")
    return out


UNREADABLE = dt.timedelta(-1)  # a reentry no one could read: always a change


def _reentry(document: dict[str, Any]) -> dt.timedelta | None:
    """After how long a contact may enter again (None: never)."""
    raw = document.get("reentry")
    if raw is None and "reentry" not in document:
        trigger = document.get("trigger")
        return DATE_REENTRY if isinstance(trigger, dict) and "date" in trigger else None
    if raw is None or raw == "never":
        return None
    try:
        return parse_duration(raw)
    except (ValueError, TypeError):
        return UNREADABLE


def _share(raw: Any) -> Decimal | None:
    if raw is None:
        return Decimal(0)
    try:
        return Decimal(str(raw).strip().rstrip("%"))
    except InvalidOperation:
        return None


@dataclass
class Saved:
    """What saving a workflow did, for the page or command that says so."""

    workflow: Workflow
    created: bool  # a new workflow
    version: int  # its current version now
    written: bool  # this save wrote that version (False: the document was already current, or refused)
    stale: bool = False  # refused: someone else saved since `base_version`, or in the same moment
    entry: list[str] = field(default_factory=list)  # what of who enters changed (entry_changed)
    switched_off: bool = False  # it was on, and the new version lets others in: switched off until confirmed again
    saved_at: dt.datetime | None = None  # when the current version was saved, and by whom (for a refusal)
    saved_by: str | None = None


def add(conn: Connection, settings: Settings, document: Any, *, origin: str | None = None,
        pm: pluggy.PluginManager | None = None, by: str | None = None,
        kind: str = FILE_ORIGIN) -> tuple[Workflow, bool]:
    """Check and save a user's workflow (a new version if it exists); returns it and whether it is new.

    `by` says who saved it (kept with the version); `kind` is the origin a new
    workflow gets: FILE_ORIGIN from `hub workflows add`, ADMIN_ORIGIN from the builder.
    A version that changes who enters a switched-on workflow switches it off (see save).
    """
    saved = save(conn, settings, document, origin=origin, pm=pm, by=by, kind=kind)
    return saved.workflow, saved.created


def save(conn: Connection, settings: Settings, document: Any, *, origin: str | None = None,
         pm: pluggy.PluginManager | None = None, by: str | None = None, kind: str = FILE_ORIGIN,
         base_version: int | None = None) -> Saved:
    """Check and save a workflow, and say exactly what happened.

    With `base_version` (the version an editor was opened at) nothing is
    saved when the workflow has moved on since: the editor shows who saved
    what instead of overwriting it. Two saves in the same moment write one
    version; the other comes back `stale`. A switched-on workflow whose new
    version changes who enters is switched off in the same transaction: its
    runs in progress go on (the scheduler advances runs whether or not their
    workflow is on), new ones wait for the switch-on confirmation.
    """
    workflow = parse(document, conn, settings, origin=origin, pm=pm)
    if workflow.name in library_documents():
        raise WorkflowError([gettext("%(name)s is a shipped workflow; save yours under another name",
                                     name=repr(workflow.name))], origin)
    found = conn.execute(select(workflows_t.c.id, workflows_t.c.definition, workflows_t.c.version,
                                workflows_t.c.origin, workflows_t.c.enabled)
                         .where(workflows_t.c.name == workflow.name)).first()
    if found is not None and found.origin == CAMPAIGN_ORIGIN:
        raise WorkflowError([gettext("%(name)s carries a campaign (hub campaigns); save yours under another name",
                                     name=repr(workflow.name))], origin)
    if found is None:
        if base_version is None:
            new_id = conn.execute(insert_for(conn, workflows_t).values(
                name=workflow.name, title=workflow.document.get("title"), origin=kind, definition=workflow.document,
                version=1, enabled=False, state={}, created_at=utcnow(), updated_at=utcnow())
                .on_conflict_do_nothing(index_elements=["name"]).returning(workflows_t.c.id)).scalar()
            if new_id is not None:
                conn.execute(versions_t.insert().values(workflow_id=new_id, version=1, definition=workflow.document,
                                                        created_at=utcnow(), created_by=by))
                return Saved(workflow, created=True, version=1, written=True)
        return _stale(conn, workflow, created=base_version is None)  # made (or erased) by someone else meanwhile
    if base_version is not None and found.version != base_version:
        return _stale(conn, workflow)
    if found.definition == workflow.document:
        return Saved(workflow, created=False, version=int(found.version), written=False)
    entry = entry_changed(found.definition, workflow.document)
    switch_off = bool(found.enabled and entry)
    if not _new_version(conn, found.id, found.version + 1, workflow.document, by,
                        enabled=False if switch_off else None):
        return _stale(conn, workflow)
    return Saved(workflow, created=False, version=int(found.version) + 1, written=True, entry=entry,
                 switched_off=switch_off)


def _stale(conn: Connection, workflow: Workflow, *, created: bool = False) -> Saved:
    """A refused save, with the version that is current now and who saved it when."""
    now = conn.execute(select(versions_t.c.version, versions_t.c.created_at, versions_t.c.created_by)
                       .join(workflows_t, (workflows_t.c.id == versions_t.c.workflow_id)
                             & (workflows_t.c.version == versions_t.c.version))
                       .where(workflows_t.c.name == workflow.name)).first()
    if now is None:
        return Saved(workflow, created=created, version=0, written=False, stale=True)
    return Saved(workflow, created=created, version=int(now.version), written=False, stale=True,
                 saved_at=now.created_at, saved_by=now.created_by)


def rows(conn: Connection, *, campaigns: bool = False) -> list[Any]:
    """Saved workflows by name; those that carry a one-off campaign (workflows.campaigns) only when asked."""
    q = select(workflows_t).order_by(workflows_t.c.name)
    if not campaigns:
        q = q.where(workflows_t.c.origin != CAMPAIGN_ORIGIN)
    return list(conn.execute(q))


def row(conn: Connection, name: str) -> Any:
    """The workflow's row, or an error that says which workflows there are."""
    found = conn.execute(select(workflows_t).where(workflows_t.c.name == name)).first()
    if found is None:
        names = list(conn.execute(select(workflows_t.c.name)).scalars()) or list(library_documents())
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        raise WorkflowError([gettext("no workflow named %(name)s; did you mean %(close)s? (see `hub workflows list`)",
                                     name=repr(name), close=repr(close[0])) if close else
                             gettext("no workflow named %(name)s (see `hub workflows list`)", name=repr(name))])
    return found


def definition(conn: Connection, settings: Settings, workflow_id: int, version: int,
               pm: pluggy.PluginManager | None = None) -> Workflow:
    """One version of a workflow, parsed; the parse is kept for as long as the document stays the same."""
    document = conn.execute(select(versions_t.c.definition).where(
        versions_t.c.workflow_id == workflow_id, versions_t.c.version == version)).scalar()
    if document is None:
        raise WorkflowError([f"workflow #{workflow_id} has no version {version}"])
    # not in hub.api on purpose: the registry of workflow steps that plugins register
    from hub.plugins import get_pm

    pm = pm or get_pm()
    key = (settings.database_url, id(pm), json.dumps(document, sort_keys=True, ensure_ascii=False))
    found = _parsed.get(key)
    if found is None:
        if len(_parsed) > 256:
            _parsed.clear()
        found = _parsed[key] = parse(document, conn, settings, pm=pm)
    return found


def current(conn: Connection, settings: Settings, name: str, pm: pluggy.PluginManager | None = None
            ) -> tuple[Any, Workflow]:
    """The workflow's row and its newest version, parsed."""
    found = row(conn, name)
    return found, definition(conn, settings, found.id, found.version, pm)


def set_enabled(conn: Connection, name: str, enabled: bool, *, now: dt.datetime | None = None) -> Any:
    """Switch a workflow on or off. Switching on marks where its event triggers start watching."""
    found = row(conn, name)
    if found.origin == CAMPAIGN_ORIGIN:  # its members entered once, when it started; a trigger would add more
        raise WorkflowError([gettext("%(name)s carries a campaign; start, pause and resume it with hub campaigns",
                                     name=repr(name))])
    now = now or utcnow()
    values: dict[str, Any] = {"enabled": enabled, "updated_at": now}
    if enabled and not found.enabled:
        from workflows import triggers

        triggers.baseline_exits(conn, found, now=now)  # those who left while it was off are not its exits
        values["enabled_at"] = now
        state = dict(found.state or {})
        state.update(since=now.isoformat(),
                     order_floor=conn.execute(select(func.coalesce(func.max(Order.__table__.c.id), 0))).scalar_one(),
                     contact_floor=conn.execute(select(func.coalesce(func.max(Contact.__table__.c.id), 0)))
                     .scalar_one())
        values["state"] = state
    conn.execute(update(workflows_t).where(workflows_t.c.id == found.id).values(**values))
    return row(conn, name)


def save_state(conn: Connection, workflow_id: int, state: dict[str, Any]) -> None:
    conn.execute(update(workflows_t).where(workflows_t.c.id == workflow_id).values(state=state))
