"""Who a workflow about to be switched on would reach that other switched-on workflows already reach.

A copy of a shipped workflow switched on beside the original messaged the
same people twice, minutes apart, each with a code of its own: nothing in
the engine keeps two workflows apart, and nothing should (a welcome series
and a birthday letter may well meet). So switching on only says it, with
numbers: of the people who would enter now, how many already have a run
under way in another switched-on workflow, and how many are in another
one's trigger segment and would enter that one too (its re-entry rule
applied). Its holdout is left out: they would get nothing from it. Campaign
rows count only by their runs: their members entered once, when they started.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, select

from hub.api import Settings, chunks, translated_title
# not in hub.api on purpose: conditions and triggers are written in the segment rule language itself
from hub.segments.evaluate import Segments
from hub.segments.rules import RuleError
from workflows import store, triggers
from workflows.definition import WorkflowError
from workflows.models import WorkflowRow, WorkflowRun

runs_t = WorkflowRun.__table__
workflows_t = WorkflowRow.__table__
SEGMENT_KINDS = ("segment", "schedule")  # triggers that start the members of a segment


def find(conn: Connection, settings: Settings, name: str, ids: list[int], now: dt.datetime) -> dict[str, Any]:
    """{"contacts": distinct people shared, "workflows": [{name, title, campaign, running, entering, contacts}]}.

    `running`: of `ids`, those with a run under way there; `entering`: the
    others of `ids` its trigger would start now. Sorted by most shared first.
    """
    wanted = set(ids)
    others = [r for r in conn.execute(select(workflows_t.c.id, workflows_t.c.name, workflows_t.c.title,
                                             workflows_t.c.origin, workflows_t.c.version, workflows_t.c.enabled)
                                      .where(workflows_t.c.enabled, workflows_t.c.name != name)
                                      .order_by(workflows_t.c.id))]
    if not wanted or not others:
        return {"contacts": 0, "workflows": []}
    running: dict[int, set[int]] = defaultdict(set)
    r = runs_t.c
    for part in chunks(sorted(wanted), 1000):
        for workflow_id, contact_id in conn.execute(
                select(r.workflow_id, r.contact_id).where(r.workflow_id.in_([o.id for o in others]),
                                                          r.status.in_(triggers.ACTIVE), r.holdout.is_(False),
                                                          r.contact_id.in_(part))):
            running[workflow_id].add(contact_id)
    segments: Segments | None = None
    found, everyone = [], set()
    for other in others:
        entering: set[int] = set()
        if other.origin != store.CAMPAIGN_ORIGIN:
            try:
                workflow = store.definition(conn, settings, other.id, other.version)
                if workflow.trigger.kind in SEGMENT_KINDS and workflow.trigger.segment:
                    segments = segments or Segments(conn, settings, now=now)
                    members = [cid for cid in segments.member_ids(workflow.trigger.segment) if cid in wanted]
                    entering = {cid for cid in _would_start(conn, other, workflow, members, now)
                                if not triggers.in_holdout(workflow, cid)} - running[other.id]
            except (WorkflowError, RuleError, ValueError):
                pass  # a workflow that does not check starts nobody; its page says why
        shared = running[other.id] | entering
        if shared:
            everyone |= shared
            found.append({"name": other.name, "title": translated_title(other.title),
                          "campaign": other.origin == store.CAMPAIGN_ORIGIN, "running": len(running[other.id]),
                          "entering": len(entering), "contacts": len(shared)})
    found.sort(key=lambda w: (-w["contacts"], w["name"]))
    return {"contacts": len(everyone), "workflows": found}


def _would_start(conn: Connection, row: Any, workflow: Any, ids: list[int], now: dt.datetime) -> list[int]:
    """Of `ids`, those the workflow's own re-entry rule lets start now (as its next check would)."""
    from workflows.forecast import _eligible

    return _eligible(conn, row, workflow, ids, now)[0]
