"""The history of a workflow's definition: every saved version, who saved it and when, compared and restored.

Versions are never rewritten: restoring an old one saves its document as a
new version. Runs follow the version they started on (store, runner); moving
runs in progress onto a newer version is the marketer's explicit choice, and
a run moves only where its place is the same in both versions: the
instruction it will do next has the same document path and the same kind
of step. A waiting run stands before the step it does next and keeps the
moment it waits for.

A run is not moved when the move could make it repeat or skip something:
the step results and outbox keys of a run are numbered by instruction
(`workflow:RUN:STEP`), so a run whose next instruction comes earlier in the
new version and that already did one of the instructions in between stays
where it is, as do runs a worker holds right now.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import pluggy
from sqlalchemy import Connection, and_, case, exists, func, or_, select, update

from hub.api import Settings, actor_title, chunks, gettext, ngettext, record_audit, utcnow
from workflows import store
from workflows.definition import Instruction, Workflow, WorkflowError, parse
from workflows.models import StepResult, WorkflowRun

runs_t = WorkflowRun.__table__
results_t = StepResult.__table__
ACTIVE = ("running", "waiting")
FINAL = ("done", "skipped", "failed")
_PATH_PART = re.compile(r"([a-z_]+)(?:\[(\d+)\])?")


def _workflow_row(conn: Connection, name: str) -> Any:
    """The workflow's row; a campaign's carrier has no versions of its own to show."""
    found = store.row(conn, name)
    if found.origin == store.CAMPAIGN_ORIGIN:
        raise WorkflowError([gettext("%(name)s carries a campaign; a campaign has no versions (hub campaigns)",
                                     name=repr(name))])
    return found


def _document(conn: Connection, workflow_id: int, version: int) -> dict[str, Any] | None:
    return conn.execute(select(store.versions_t.c.definition).where(
        store.versions_t.c.workflow_id == workflow_id, store.versions_t.c.version == version)).scalar()


def _no_version(name: str, version: Any) -> WorkflowError:
    return WorkflowError([gettext("%(name)s has no version %(version)s (see `hub workflows versions %(name)s`)",
                                  name=name, version=version)])


def who(created_by: str | None) -> str:
    """Who saved a version, as the audit page names people; a shipped version was saved by Hub itself."""
    return actor_title(created_by) if created_by else gettext("Hub (shipped or saved before names were kept)")


def history(conn: Connection, name: str) -> list[dict[str, Any]]:
    """Every version, newest first, with who saved it, when, and the runs that follow it."""
    row = _workflow_row(conn, name)
    v, r = store.versions_t.c, runs_t.c
    counts = {x.version: (int(x.active or 0), int(x.total)) for x in conn.execute(
        select(r.version, func.sum(case((r.status.in_(ACTIVE), 1), else_=0)).label("active"),
               func.count().label("total")).where(r.workflow_id == row.id).group_by(r.version))}
    out = []
    for x in conn.execute(select(v.version, v.created_at, v.created_by).where(v.workflow_id == row.id)
                          .order_by(v.version.desc())):
        active, total = counts.get(x.version, (0, 0))
        out.append({"version": x.version, "created_at": x.created_at, "created_by": x.created_by,
                    "who": who(x.created_by), "runs_in_progress": active, "runs": total,
                    "current": x.version == row.version})
    return out


# --- comparing two versions ------------------------------------------------------------------

# The order keys are written in inside a document, whatever order the database kept them in (PostgreSQL's
# jsonb sorts keys by length, SQLite keeps the order they were saved in): a step, a send's options, a rule.
KEY_ORDER = ("name", "title", "description", "trigger", "reentry", "holdout", "goal", "steps",
             "if", "then", "else", "all", "any", "not", "field", "op", "value",
             "segment", "on", "schedule", "event", "before", "workflow", "date", "at", "within",
             "channel", "template")
_KEY_RANK = {key: i for i, key in enumerate(KEY_ORDER)}


def canonical(value: Any) -> Any:
    """The document with every mapping's keys in one order, so two versions differ only where they differ."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (_KEY_RANK.get(str(k), len(_KEY_RANK)), str(k)))
        return {k: canonical(value[k]) for k in keys}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def to_text(document: dict[str, Any]) -> str:
    """A document as YAML, written like the builder writes it, with its keys in the canonical order."""
    from workflows.builder_model import to_text as builder_text

    return builder_text(canonical(document))


def fragment(document: Any, path: str) -> Any:
    """The part of a document an instruction's path names ("steps[2].then[0]")."""
    found = document
    for part in path.split("."):
        m = _PATH_PART.fullmatch(part)
        if m is None or not isinstance(found, dict) or m.group(1) not in found:
            return None
        found = found[m.group(1)]
        if m.group(2) is not None:
            if not isinstance(found, list) or int(m.group(2)) >= len(found):
                return None
            found = found[int(m.group(2))]
    return found


def _step_key(document: dict[str, Any], instruction: Instruction) -> str:
    """What makes a step the same step in two versions: its kind and what the document says of it."""
    part = fragment(document, instruction.path)
    if instruction.kind == "if" and isinstance(part, dict):
        part = part.get("if")
    elif isinstance(part, dict) and "if" in part:  # a then/else holding one step
        part = None
    return instruction.kind + ":" + json.dumps(part, sort_keys=True, ensure_ascii=False, default=str)


def step_phrase(instruction: Instruction, document: dict[str, Any], settings: Settings) -> str:
    """A step as people read it; a condition with its rule in words, since «Условие» alone says nothing."""
    from workflows.definition import If
    from workflows.rule_words import rule_words

    if isinstance(instruction.step, If):
        return gettext("Condition: %(rule)s", rule=rule_words(instruction.step.rule, settings))
    if instruction.kind == "if":  # not parsed as an If (cannot happen for a checked workflow): the rule as written
        rule = (fragment(document, instruction.path) or {}).get("if")
        return gettext("Condition: %(rule)s", rule=json.dumps(rule, ensure_ascii=False, default=str))
    return instruction.step.phrase()


def _parsed(conn: Connection, settings: Settings, document: dict[str, Any],
            pm: pluggy.PluginManager | None) -> Workflow | WorkflowError:
    try:
        return parse(document, conn, settings, pm=pm)
    except WorkflowError as exc:
        return exc


def _changes(old: Workflow, new: Workflow, conn: Connection, settings: Settings) -> list[dict[str, str]]:
    """What changed, in the reader's words: {"kind": added|removed|changed, "text": …}."""
    from workflows import triggers

    out: list[dict[str, str]] = []

    def changed(what: str, before: str, after: str) -> None:
        if before != after:
            out.append({"kind": "changed", "text": gettext("%(what)s: %(old)s → %(new)s", what=what,
                                                           old=before or "—", new=after or "—")})

    changed(gettext("Title"), old.title or "", new.title or "")
    changed(gettext("Description"), old.description or "", new.description or "")
    if old.trigger != new.trigger:
        changed(gettext("Trigger"), triggers.trigger_text(conn, settings, old), triggers.trigger_text(conn, settings,
                                                                                                       new))
    changed(gettext("Holdout"), f"{old.holdout:g}%", f"{new.holdout:g}%")
    changed(gettext("Re-entry"), _reentry(old), _reentry(new))
    changed(gettext("Goal"), _goal(old), _goal(new))
    before, after = old.steps(), new.steps()
    a = [_step_key(old.document, i) for i in before]
    b = [_step_key(new.document, i) for i in after]
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        if op == "replace" and i2 - i1 == j2 - j1:
            for x, y in zip(before[i1:i2], after[j1:j2], strict=True):
                out.append({"kind": "changed", "text": gettext(
                    "step %(num)s: «%(old)s» → «%(new)s»", num=new.number(y.index),
                    old=step_phrase(x, old.document, settings), new=step_phrase(y, new.document, settings))})
            continue
        for x in before[i1:i2]:
            out.append({"kind": "removed", "text": gettext("step %(num)s removed: «%(step)s»", num=old.number(x.index),
                                                           step=step_phrase(x, old.document, settings))})
        for y in after[j1:j2]:
            out.append({"kind": "added", "text": gettext("step %(num)s added: «%(step)s»", num=new.number(y.index),
                                                         step=step_phrase(y, new.document, settings))})
    return out


def _reentry(workflow: Workflow) -> str:
    from hub.api import format_length

    return format_length(workflow.reentry) if workflow.reentry else gettext("never")


def _goal(workflow: Workflow) -> str:
    from workflows.names import goal_title

    if workflow.goal is None:
        return ""
    return gettext("%(goal)s within %(time)s", goal=goal_title(workflow.goal.event), time=workflow.goal.within_text())


def diff(conn: Connection, name: str, old: int, new: int, *, settings: Settings | None = None,
         pm: pluggy.PluginManager | None = None) -> dict[str, Any]:
    """Two versions compared as people read them: what changed in words, and the text line by line.

    `lines` is a unified diff of the YAML, each line with its kind (added,
    removed, same, gap) so a page marks it by more than colour; `changes`
    names what changed; a version that no longer checks against this Hub is
    compared as text only, with its problems in `problems`.
    """
    row = _workflow_row(conn, name)
    documents = {}
    for version in (old, new):
        document = _document(conn, row.id, version)
        if document is None:
            raise _no_version(name, version)
        documents[version] = document
    old_text, new_text = to_text(documents[old]), to_text(documents[new])
    lines = []
    for line in difflib.unified_diff(old_text.splitlines(), new_text.splitlines(),
                                     f"v{old}", f"v{new}",
                                     n=3, lineterm=""):
        if line.startswith(("---", "+++")):
            continue
        kind = {"+": "added", "-": "removed", "@": "gap"}.get(line[:1], "same")
        lines.append({"kind": kind, "text": line if kind == "gap" else line[1:]})
    out: dict[str, Any] = {"workflow": name, "old": old, "new": new, "old_text": old_text, "new_text": new_text,
                           "lines": lines, "changes": [], "problems": {}}
    if settings is not None:
        parsed = {v: _parsed(conn, settings, documents[v], pm) for v in (old, new)}
        for v, p in parsed.items():
            if isinstance(p, WorkflowError):
                out["problems"][v] = list(p.problems)
        a, b = parsed[old], parsed[new]
        if isinstance(a, Workflow) and isinstance(b, Workflow):
            out["changes"] = _changes(a, b, conn, settings)
    return out


# --- restoring one ---------------------------------------------------------------------------

def restore(conn: Connection, settings: Settings, name: str, version: int, by: str | None,
            pm: pluggy.PluginManager | None = None) -> int:
    """Save an old version's document as a new version; returns its number (the current one if unchanged).

    The document is checked against this Hub as it is now: a version that
    names a template or segment since deleted is refused with the problems.
    A shipped workflow follows the file Hub ships, so it is not restored.
    """
    row = _workflow_row(conn, name)
    if row.origin == store.LIBRARY_ORIGIN:
        raise WorkflowError([gettext("%(name)s is a shipped workflow: it follows the version Hub ships; copy it to "
                                     "change it", name=repr(name))])
    document = _document(conn, row.id, version)
    if document is None:
        raise _no_version(name, version)
    if document == row.definition:
        return int(row.version)
    try:  # a restored version that lets others into a switched-on workflow switches it off (store.save)
        saved = store.save(conn, settings, document, pm=pm, by=by, kind=row.origin, base_version=row.version)
    except WorkflowError as exc:
        raise WorkflowError([gettext("version %(num)s no longer checks against this Hub:", num=version),
                             *exc.problems]) from None
    if saved.stale:  # someone saved between reading the row and writing: nothing restored
        raise WorkflowError([gettext("%(name)s was saved by someone else a moment ago (version %(num)s); look at "
                                     "it and restore again if you still want to", name=repr(name),
                                     num=saved.version)])
    record_audit(conn, by or "cli", "workflow_version_restored", workflow=name, restored=version,
                 version=saved.version, entry_changed=saved.entry, switched_off=saved.switched_off)
    return saved.version


# --- moving runs in progress -------------------------------------------------------------------

@dataclass
class MoveReport:
    """What moving runs did: how many moved from each version, and which stayed and why."""

    workflow: str
    to_version: int
    moved: dict[int, int] = field(default_factory=dict)  # old version → runs moved
    kept: list[dict[str, Any]] = field(default_factory=list)  # {version, step, count, reason}
    leased: int = 0  # held by a worker right now: not moved this time

    @property
    def moved_total(self) -> int:
        return sum(self.moved.values())

    @property
    def kept_total(self) -> int:
        return sum(k["count"] for k in self.kept)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["moved"] = {str(k): v for k, v in self.moved.items()}
        out.update(moved_total=self.moved_total, kept_total=self.kept_total)
        return out

    def _keep(self, version: int, number: int, count: int, reason: str) -> None:
        """`number` is the step as people read it on that version (`Workflow.number`)."""
        if count:
            self.kept.append({"version": version, "step": number, "count": count, "reason": reason})


def in_progress_elsewhere(conn: Connection, name: str, version: int | None = None) -> dict[int, int]:
    """Runs in progress on versions older than `version` (the current one by default), by version."""
    row = _workflow_row(conn, name)
    target = version or row.version
    r = runs_t.c
    return {int(v): int(n) for v, n in conn.execute(
        select(r.version, func.count()).where(r.workflow_id == row.id, r.status.in_(ACTIVE), r.version < target)
        .group_by(r.version).order_by(r.version.desc()))}


def move_runs(conn: Connection, settings: Settings, name: str, *, to_version: int | None = None,
              by: str | None = None, now: dt.datetime | None = None,
              pm: pluggy.PluginManager | None = None) -> MoveReport:
    """Move runs in progress on older versions onto the newest (or `to_version`), where their place exists.

    One UPDATE per (old version, step): the runs standing there that no
    worker holds move together; a run's non-final result at that step (a
    send held back by quiet hours) moves with it, so the step keeps its
    history. Written to the audit log.
    """
    row = _workflow_row(conn, name)
    target = row.version if to_version is None else to_version
    if _document(conn, row.id, target) is None:
        raise _no_version(name, target)
    try:
        new = store.definition(conn, settings, row.id, target, pm)
    except WorkflowError as exc:
        raise WorkflowError([gettext("version %(num)s no longer checks against this Hub:", num=target),
                             *exc.problems]) from None
    now = now or utcnow()
    report = MoveReport(name, target)
    places = {(i.path, i.kind): i for i in new.program}
    paths = {i.path for i in new.program}
    r = runs_t.c
    free = or_(r.lease_until.is_(None), r.lease_until <= now)
    groups = conn.execute(
        select(r.version, r.step, func.count().label("n"),
               func.sum(case((free, 0), else_=1)).label("leased"))
        .where(r.workflow_id == row.id, r.status.in_(ACTIVE), r.version < target)
        .group_by(r.version, r.step).order_by(r.version, r.step)).all()
    for g in groups:
        leased, count = int(g.leased or 0), int(g.n)
        report.leased += leased
        try:
            old: Workflow | None = store.definition(conn, settings, row.id, g.version, pm)
        except WorkflowError:
            old = None
        num = old.number(g.step) if old is not None else g.step + 1
        report._keep(g.version, num, leased, gettext("a worker is doing this step right now; try again in a "
                                                     "minute"))
        if old is None:
            report._keep(g.version, num, count - leased,
                         gettext("version %(num)s no longer checks against this Hub", num=g.version))
            continue
        here = old.instruction(g.step)
        if here is None:
            report._keep(g.version, num, count - leased, gettext("the run is finishing its last step"))
            continue
        phrase = step_phrase(here, old.document, settings)
        there = places.get((here.path, here.kind))
        if there is None:
            reason = (gettext("step %(num)s (%(step)s) is a different step in version %(version)s",
                              num=num, step=phrase, version=target) if here.path in paths else
                      gettext("step %(num)s (%(step)s) was removed in version %(version)s", num=num,
                              step=phrase, version=target))
            report._keep(g.version, num, count - leased, reason)
            continue
        where = [r.workflow_id == row.id, r.version == g.version, r.step == g.step, r.status.in_(ACTIVE), free]
        if there.index < here.index:  # earlier in the new version: its numbers must not meet the run's history
            done_between = exists().where(results_t.c.run_id == r.id, results_t.c.step >= there.index,
                                          results_t.c.step < here.index)
            where.append(~done_between)
        moved = list(conn.execute(update(runs_t).where(and_(*where))
                                  .values(version=target, step=there.index, updated_at=now)
                                  .returning(r.id)).scalars())
        if moved and there.index != here.index:
            for part in chunks(moved, 1000):
                conn.execute(update(results_t).where(results_t.c.run_id.in_(part), results_t.c.step == here.index,
                                                     results_t.c.status.not_in(FINAL))
                             .values(step=there.index))
        if moved:
            report.moved[g.version] = report.moved.get(g.version, 0) + len(moved)
        report._keep(g.version, num, count - leased - len(moved), gettext(
            "step %(num)s (%(step)s) comes earlier in version %(version)s and the run already did a step in "
            "between", num=num, step=phrase, version=target))
    record_audit(conn, by or "cli", "workflow_runs_moved", workflow=name, version=target,
                 moved=report.moved_total, kept=report.kept_total)
    return report


def counts_text(counts: dict[int, int]) -> str:
    """«12 запусков на версии 2, 3 на версии 1»: the runs a move would take, before it does."""
    parts = []
    for i, (version, n) in enumerate(sorted(counts.items(), reverse=True)):
        parts.append(ngettext("%(num)s run on version %(version)s", "%(num)s runs on version %(version)s", n,
                              version=version) if i == 0 else
                     ngettext("%(num)s on version %(version)s", "%(num)s on version %(version)s", n,
                              version=version))
    return ", ".join(parts)
