"""How a workflow is doing: who entered, what each step did, who bought, and what the workflow added.

Conversion is counted for every run, the control group's included: a run
converts when the workflow's goal happened within its window after the run
started (an order created, an order won, or the run's promo code redeemed).
The uplift is the treated runs' conversion rate minus the holdout's, in
percentage points, which is what the campaign itself caused: people who would
have bought anyway buy in the holdout too.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pluggy
from sqlalchemy import Connection, Engine, case, func, select

from hub.api import Message, Order, Settings, utcnow
from workflows import config, engagement, nps, policy, store
from workflows.definition import Goal, Workflow, WorkflowError
from workflows.models import PromoCode, StepResult, WorkflowRun

runs_t = WorkflowRun.__table__
results_t = StepResult.__table__
messages_t = Message.__table__
orders_t = Order.__table__
codes_t = PromoCode.__table__

RUN_STATES = ("running", "waiting", "done", "exited", "parked", "cancelled", "holdout")
SENT, WAITING_TO_SEND = ("sent",), ("queued", "sending", "deferred")


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))


def status(engine: Engine, settings: Settings, name: str, *, now: dt.datetime | None = None,
           pm: pluggy.PluginManager | None = None) -> dict[str, Any]:
    """The workflow's whole report, as `hub workflows status NAME --json` prints it."""
    now = now or utcnow()
    with engine.begin() as conn:
        store.install_library(conn)
    with engine.connect() as conn:
        row, workflow = store.current(conn, settings, name, pm)
        runs = _runs(conn, row.id)
        out: dict[str, Any] = {
            "workflow": row.name, "title": row.title, "enabled": row.enabled, "version": row.version,
            "trigger": workflow.trigger.describe(),
            "entered": runs["total"], "in_holdout": runs["holdout"], "runs": runs["by_status"],
            "steps": _steps(conn, settings, row.id, row.version, workflow),
            "promo_codes": _promo(conn, row.id, now),
            "goal": workflow.goal.describe() if workflow.goal else None,
            "policies": policy.describe(config.load(settings)),
        }
        out["engagement"] = engagement.rates(conn, row.name)
        if workflow.goal is not None:
            out.update(_conversion(conn, row.id, workflow.goal))
        answers = nps.average(conn, list(conn.execute(select(runs_t.c.id).where(runs_t.c.workflow_id == row.id))
                                         .scalars())) if _has_survey(workflow) else None
        if answers is not None:
            out["nps"] = answers
    return out


def _has_survey(workflow: Workflow) -> bool:
    return any(getattr(i.step, "uses_nps", False) for i in workflow.program)


def _runs(conn: Connection, workflow_id: int) -> dict[str, Any]:
    r = runs_t.c
    by_status = {s: 0 for s in RUN_STATES}
    holdout = total = 0
    for status, is_holdout, n in conn.execute(select(r.status, r.holdout, func.count()).where(
            r.workflow_id == workflow_id).group_by(r.status, r.holdout)):
        by_status[status] = by_status.get(status, 0) + n
        total += n
        holdout += n if is_holdout else 0
    return {"total": total, "holdout": holdout, "by_status": by_status}


def _steps(conn: Connection, settings: Settings, workflow_id: int, version: int, workflow: Workflow
           ) -> list[dict[str, Any]]:
    r, s, m = runs_t.c, results_t.c, messages_t.c
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    joined = results_t.join(runs_t, r.id == s.run_id)
    for step, state, n, deferred in conn.execute(
            select(s.step, s.status, func.count(), func.sum(case((s.deferrals > 0, 1), else_=0)))
            .select_from(joined).where(r.workflow_id == workflow_id).group_by(s.step, s.status)):
        counts[step][state] += n
        counts[step]["deferred"] += int(deferred or 0)
    sent: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for step, state, n in conn.execute(
            select(s.step, m.status, func.count()).select_from(joined.join(messages_t, m.id == s.message_id))
            .where(r.workflow_id == workflow_id).group_by(s.step, m.status)):
        sent[step][state] += n
    waiting = _waiting(conn, settings, workflow_id, version, workflow)
    out = []
    for instruction in workflow.steps():
        c, msg = counts.get(instruction.index, {}), sent.get(instruction.index, {})
        row: dict[str, Any] = {"step": workflow.number(instruction.index), "kind": instruction.kind,
                               "label": instruction.step.label(), **instruction.step.describe()}
        if instruction.kind == "send":
            row.update({
                "sent": sum(msg.get(k, 0) for k in SENT),
                "queued": sum(msg.get(k, 0) for k in WAITING_TO_SEND),
                "deferred": c.get("deferred", 0),
                "skipped": c.get("skipped", 0) + msg.get("suppressed", 0),
                "failed": c.get("failed", 0) + msg.get("failed", 0),
                "unknown": msg.get("unknown", 0),
            })
        else:
            row.update({"done": c.get("done", 0), "deferred": c.get("deferred", 0), "skipped": c.get("skipped", 0),
                        "failed": c.get("failed", 0)})
        row["in_progress"] = c.get("started", 0) + c.get("retry", 0)
        if instruction.kind == "wait":
            row["waiting"] = waiting.get(instruction.index, 0)
        out.append(row)
    return out


def _waiting(conn: Connection, settings: Settings, workflow_id: int, version: int, workflow: Workflow
             ) -> dict[int, int]:
    """Runs still waiting out a wait step, by the wait step's index.

    A wait step is done the moment it is reached: its result is written and
    the run moves on to the NEXT step with `next_at` at the end of the wait.
    Counted by where runs stand, the people waiting would show at the step
    after the wait (which has not happened to them yet), and the wait itself
    would say nobody waits. A waiting run with no result at the step it
    stands at is waiting before it; when the instruction before is a wait
    (a wait never jumps), that wait made it wait. Runs waiting at a step for
    another reason (deferred by quiet hours or the cap, a retry) have a
    result there and are counted by that step. A run on an older version is
    read with its own version's program and counted at the wait with the
    same number in the version shown, when that step is a wait there too
    (otherwise it is left to the runs' summary, which counts every waiting run).
    """
    r, s = runs_t.c, results_t.c
    here = select(s.run_id).where(s.run_id == r.id, s.step == r.step).exists()
    out: dict[int, int] = defaultdict(int)
    programs: dict[int, Workflow | None] = {version: workflow}
    for own, step, n in conn.execute(
            select(r.version, r.step, func.count()).where(r.workflow_id == workflow_id, r.status == "waiting", ~here)
            .group_by(r.version, r.step)):
        if own not in programs:
            try:
                programs[own] = store.definition(conn, settings, workflow_id, own)
            except WorkflowError:
                programs[own] = None
        program = programs[own]
        before = program.instruction(step - 1) if program is not None else None
        if program is None or before is None or before.kind != "wait":
            continue
        # a run on an older version counts at the wait of the same number in the one shown, when there is one
        index = before.index if program is workflow else _wait_numbered(workflow, program.number(before.index))
        if index is not None:
            out[index] += n
    return out


def _wait_numbered(workflow: Workflow, number: int) -> int | None:
    found = [i.index for i in workflow.steps() if workflow.number(i.index) == number and i.kind == "wait"]
    return found[0] if found else None


def _promo(conn: Connection, workflow_id: int, now: dt.datetime) -> dict[str, int]:
    c = codes_t.c
    issued = redeemed = expired = 0
    for redeemed_at, expires_at in conn.execute(
            select(c.redeemed_at, c.expires_at).where(c.workflow_id == workflow_id)):
        issued += 1
        if redeemed_at is not None:
            redeemed += 1
        elif expires_at < now:
            expired += 1
    return {"issued": issued, "redeemed": redeemed, "expired": expired, "active": issued - redeemed - expired}


def _conversion(conn: Connection, workflow_id: int, goal: Goal) -> dict[str, Any]:
    """Converted runs and revenue in the goal window, treated runs against the holdout, and the uplift."""
    r, o, c = runs_t.c, orders_t.c, codes_t.c
    runs = conn.execute(select(r.id, r.contact_id, r.started_at, r.holdout).where(r.workflow_id == workflow_id)).all()
    groups: dict[bool, dict[str, Any]] = {False: {"runs": 0, "converted": 0, "revenue": Decimal(0)},
                                          True: {"runs": 0, "converted": 0, "revenue": Decimal(0)}}
    if goal.event == "promo.redeemed":
        redeemed = {row.run_id: row for row in conn.execute(
            select(c.run_id, c.redeemed_at, o.amount, o.status)
            .select_from(codes_t.outerjoin(orders_t, o.id == c.order_id))
            .where(c.workflow_id == workflow_id, c.redeemed_at.is_not(None)))}
        for run in runs:
            g = groups[bool(run.holdout)]
            g["runs"] += 1
            hit = redeemed.get(run.id)
            if hit is not None and run.started_at <= hit.redeemed_at <= run.started_at + goal.within:
                g["converted"] += 1
                if hit.amount is not None and hit.status == "won":
                    g["revenue"] += hit.amount
    else:
        orders: dict[int, list[Any]] = defaultdict(list)
        contacts = select(r.contact_id).where(r.workflow_id == workflow_id).scalar_subquery()
        for order in conn.execute(select(o.contact_id, o.status, o.amount, o.created_at, o.closed_at)
                                  .where(o.contact_id.in_(contacts), o.status != "lost")):
            orders[order.contact_id].append(order)
        for run in runs:
            g = groups[bool(run.holdout)]
            g["runs"] += 1
            end = run.started_at + goal.within
            if goal.event == "order.won":
                hits = [x for x in orders.get(run.contact_id, []) if x.status == "won" and x.closed_at is not None
                        and run.started_at <= x.closed_at <= end]
            else:
                hits = [x for x in orders.get(run.contact_id, []) if run.started_at <= x.created_at <= end]
            if hits:
                g["converted"] += 1
                g["revenue"] += sum((x.amount for x in hits if x.status == "won"), Decimal(0))

    def shape(g: dict[str, Any]) -> dict[str, Any]:
        rate = g["converted"] / g["runs"] if g["runs"] else None
        return {"runs": g["runs"], "converted": g["converted"], "rate": round(rate, 4) if rate is not None else None,
                "revenue": _money(g["revenue"]),
                "revenue_per_run": _money(g["revenue"] / g["runs"]) if g["runs"] else None}

    treated, holdout = shape(groups[False]), shape(groups[True])
    uplift: dict[str, Any] = {"rate_points": None, "relative": None, "incremental_conversions": None,
                              "incremental_revenue": None}
    if treated["rate"] is not None and holdout["rate"] is not None:
        diff = treated["rate"] - holdout["rate"]
        uplift["rate_points"] = round(diff * 100, 2)
        uplift["relative"] = round(diff / holdout["rate"], 4) if holdout["rate"] else None
        uplift["incremental_conversions"] = round(diff * treated["runs"], 1)
        per_run = groups[False]["revenue"] / treated["runs"] - groups[True]["revenue"] / holdout["runs"]
        uplift["incremental_revenue"] = _money(per_run * treated["runs"])
    converted = groups[False]["converted"] + groups[True]["converted"]
    revenue = groups[False]["revenue"] + groups[True]["revenue"]
    return {"converted": converted, "revenue": _money(revenue),
            "conversion": {"treated": treated, "holdout": holdout}, "uplift": uplift}
