"""Moving runs through their steps, exactly once, whatever happens to the worker.

A worker claims due runs by writing a lease (a random token and an expiry) on
them; only the holder of a run's lease may move it, so two workers, or a job
queued twice, never work on the same run. A claimed batch goes step by step:
runs standing at the same step of the same workflow version are done
together. For a step that only touches Hub's database the step's writes, its
results (one row per run and step, unique) and the runs' new positions commit
in one transaction: a worker killed before the commit leaves the runs where
they were, to be taken over when the lease ends; after it, the step is done
and is never done again. A step that calls another system and cannot be
repeated (a CRM task) is noted as started before the call; finding it so
later means the worker died mid-call, and the run is parked for a person.

After the batch, the messages its send steps wrote are handed to their
channels at once (the outbox claims each message before calling the channel,
so a message is sent at most once; one the worker died holding is marked for
review). Messages that nobody sent right away are swept up by the scheduler.

Failures: a step that says it failed for good parks the run with the reason
(`hub workflows parked`, `hub workflows retry`); any other error is retried
with backoff (1 min, 5 min, 30 min, 2 h, 6 h), and the run is parked after
the fifth try.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import pluggy
from sqlalchemy import Connection, Engine, delete, exists, select, update

# not in hub.api on purpose: the campaign engine writes outbox rows and dispatches them
from hub import messaging
from hub.api import Settings, SettingsError, bulk_insert, chunks, insert_for, utcnow
from workflows import config, policy, promo, store
from workflows.definition import Instruction, Workflow, WorkflowError
from workflows.models import Campaign, StepResult, WorkflowRow, WorkflowRun
from workflows.steps import Outcome, RunInfo, Step, StepCall, StepFailed

log = logging.getLogger(__name__)
runs_t = WorkflowRun.__table__
results_t = StepResult.__table__
workflows_t = WorkflowRow.__table__

ACTIVE = ("running", "waiting")
FINAL = ("done", "skipped", "failed")
MAX_ATTEMPTS = 5
# Messages a worker claims at a time when it hands a batch's messages to their channel. Each goes to
# `sending` only as it is handed over, so a worker killed while sending leaves one in doubt (for
# review, never resent by itself); the rest of its claim is sent by the next worker.
DISPATCH_BATCH = 50
BACKOFF = (60, 300, 1800, 7200, 21600)
IN_DOUBT = ("a worker stopped while this step was calling another system; it may or may not have happened. "
            "Check, then `hub workflows retry RUN` to do it again or `hub workflows retry RUN --skip`")


def backoff(attempts: int) -> dt.timedelta:
    return dt.timedelta(seconds=BACKOFF[min(max(attempts, 1), len(BACKOFF)) - 1])


@dataclass
class RunState:
    """A claimed run as the engine moves it along."""

    id: int
    workflow_id: int
    version: int
    contact_id: int
    cycle: int
    step: int
    attempts: int
    started_at: dt.datetime
    trigger: str
    context: dict[str, Any]
    status: str = "running"


@dataclass
class AdvanceReport:
    claimed: int = 0
    steps: int = 0
    messages: int = 0
    waiting: int = 0
    finished: int = 0
    deferred: int = 0
    retried: int = 0
    parked: int = 0
    lost: int = 0  # runs whose lease another worker took over meanwhile
    dispatch: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def not_paused() -> Any:
    """A run not of a paused campaign: such runs stay where they are, unclaimed, until it is resumed.

    Pausing changes only the campaign's row; the runs keep their status and
    place. The claim asks this in the same UPDATE that takes the lease, so a
    run is either claimed before the pause committed (its worker finishes
    the step it is on, as if the pause came a moment later) or not claimed
    at all; nothing writes a run's status from two sides, as moving the runs
    to a status of their own while a worker holds some would.
    """
    c = Campaign.__table__.c
    return ~exists().where(c.workflow_id == runs_t.c.workflow_id, c.status == "paused")


def due_ids(conn: Connection, now: dt.datetime, limit: int | None = None, *,
            workflow_id: int | None = None) -> list[int]:
    """Runs whose next step is due and that no worker holds, oldest first."""
    r = runs_t.c
    q = (select(r.id).where(r.status.in_(ACTIVE), r.next_at <= now,
                            (r.lease_until.is_(None)) | (r.lease_until < now), not_paused())
         .order_by(r.next_at, r.id))
    if workflow_id is not None:
        q = q.where(r.workflow_id == workflow_id)
    return list(conn.execute(q.limit(limit) if limit else q).scalars())


def claim(engine: Engine, ids: Sequence[int], *, token: str, now: dt.datetime, lease: dt.timedelta) -> list[RunState]:
    """Take the due, unheld runs among `ids`: their lease is ours once this commits."""
    r = runs_t.c
    out: list[RunState] = []
    for part in chunks(list(ids), 1000):
        with engine.begin() as conn:
            rows = conn.execute(
                update(runs_t).where(r.id.in_(part), r.status.in_(ACTIVE), r.next_at <= now,
                                     (r.lease_until.is_(None)) | (r.lease_until < now), not_paused())
                .values(lease_token=token, lease_until=now + lease, status="running")
                .returning(r.id, r.workflow_id, r.version, r.contact_id, r.cycle, r.step, r.attempts, r.started_at,
                           r.trigger, r.context)).all()
        out.extend(RunState(row.id, row.workflow_id, row.version, row.contact_id, row.cycle, row.step, row.attempts,
                            row.started_at, row.trigger, dict(row.context or {})) for row in rows)
    out.sort(key=lambda s: s.id)
    return out


def _confirm(conn: Connection, runs: Sequence[RunState], token: str, until: dt.datetime) -> set[int]:
    """Which of these runs we still hold, renewing the lease; a write first, so SQLite locks for us."""
    r = runs_t.c
    held: set[int] = set()
    for part in chunks([s.id for s in runs], 1000):
        held.update(conn.execute(update(runs_t).where(r.id.in_(part), r.lease_token == token)
                                 .values(lease_until=until).returning(r.id)).scalars())
    return held


class Advance:
    """One batch of runs taken through as many steps as are due now."""

    def __init__(self, engine: Engine, settings: Settings, *, now: dt.datetime, pm: pluggy.PluginManager | None,
                 token: str | None = None) -> None:
        self.engine, self.settings, self.now, self.pm = engine, settings, now, pm
        self.options = config.load(settings)
        self.token = token or uuid.uuid4().hex
        self.report = AdvanceReport()
        self.programs: dict[tuple[int, int], Workflow | WorkflowError] = {}
        self.messages: dict[str, list[int]] = defaultdict(list)
        self.runs: list[RunState] = []
        self._results_seen: set[tuple[int, int]] = set()  # (run, step) that have a result row already
        self._started = self._renewed = time.monotonic()

    def _until(self) -> dt.datetime:
        """The end of a lease taken now: measured from `now`, plus the time this batch has taken so far."""
        return self.now + dt.timedelta(seconds=time.monotonic() - self._started) + self.options.lease

    def _keep_alive(self) -> None:
        """Renew the lease on the batch's remaining runs now and then, while slow steps go one by one."""
        if time.monotonic() - self._renewed < self.options.lease.total_seconds() / 3:
            return
        self._renewed = time.monotonic()
        mine = [s for s in self.runs if s.status == "running"]
        with self.engine.begin() as conn:
            held = _confirm(conn, mine, self.token, self._until())
        self._lose([s for s in mine if s.id not in held])

    # -- the batch

    def run(self, ids: Sequence[int]) -> AdvanceReport:
        runs = self.runs = claim(self.engine, ids, token=self.token, now=self.now, lease=self.options.lease)
        self.report.claimed = len(runs)
        if not runs:
            return self.report
        rounds = 0
        while True:
            due = [s for s in runs if s.status == "running"]
            if not due:
                break
            rounds += 1
            if rounds > 1000:  # programs only jump forward; this is a guard, not a limit one meets
                self._release(due)
                break
            groups: dict[tuple[int, int, int], list[RunState]] = defaultdict(list)
            for s in due:
                groups[(s.workflow_id, s.version, s.step)].append(s)
            try:
                for (workflow_id, version, step), group in sorted(groups.items()):
                    self._group(workflow_id, version, step, group)
            except SettingsError:
                self._release([s for s in self.runs if s.status == "running"])
                raise
            runs = due
        return self.report

    def _program(self, workflow_id: int, version: int) -> Workflow | WorkflowError:
        key = (workflow_id, version)
        if key not in self.programs:
            try:
                with self.engine.connect() as conn:
                    self.programs[key] = store.definition(conn, self.settings, workflow_id, version, self.pm)
            except WorkflowError as exc:
                self.programs[key] = exc
        return self.programs[key]

    def _group(self, workflow_id: int, version: int, index: int, runs: list[RunState]) -> None:
        program = self._program(workflow_id, version)
        if isinstance(program, WorkflowError):
            reason = f"the workflow no longer checks: {program}"
            self._apply_alone(runs, None, [Outcome.failed(reason)] * len(runs), program_length=index + 1)
            return
        instruction = program.instruction(index)
        if instruction is None:  # past the last step: the run is complete
            self._apply_alone(runs, None, [Outcome.done(exit=True, detail="done")] * len(runs),
                              program_length=len(program.program))
            return
        step = instruction.step
        runs = self._skip_finished(runs, instruction, program)
        if not runs:
            return
        calls = self._calls(runs, instruction, program)
        if step.needs_contact:
            self._fill_contacts(calls, zones=step.wants_zone(self.settings))
        if step.batched:
            self._batched(step, instruction, program, runs, calls)
        else:
            for state, call in zip(runs, calls, strict=True):
                self._keep_alive()
                if state.status == "running":
                    self._one(step, instruction, program, state, call)

    def _calls(self, runs: list[RunState], instruction: Instruction, program: Workflow) -> list[StepCall]:
        return [StepCall(run=RunInfo(s.id, program.name, s.workflow_id, s.contact_id, s.cycle, s.started_at, s.trigger,
                                     s.context),
                         index=instruction.index, key=f"workflow:{s.id}:{instruction.index}", now=self.now,
                         settings=self.settings, engine=self.engine, number=program.number(instruction.index))
                for s in runs]

    def _fill_contacts(self, calls: list[StepCall], *, zones: bool) -> None:
        ids = [c.run.contact_id for c in calls]
        with self.engine.connect() as conn:
            contacts = messaging.contact_contexts(conn, self.settings, ids)
            promos = promo.for_runs(conn, self.settings, [c.run for c in calls])
            found = policy.contact_zones(conn, self.settings, ids) if zones else {}
        for c in calls:
            c.contact = contacts.get(c.run.contact_id)
            c.promo = promos.get(c.run.id)
            c.zone = found.get(c.run.contact_id, self.settings.tz)

    def _skip_finished(self, runs: list[RunState], instruction: Instruction, program: Workflow) -> list[RunState]:
        """Runs whose step already has a final result move on without doing it again; half-done ones park."""
        if not instruction.recorded:
            return runs
        with self.engine.connect() as conn:
            found = {row.run_id: row for part in chunks([s.id for s in runs], 1000) for row in conn.execute(
                select(results_t.c.run_id, results_t.c.status, results_t.c.result).where(
                    results_t.c.run_id.in_(part), results_t.c.step == instruction.index))}
        self._results_seen.update((run_id, instruction.index) for run_id in found)
        todo, moved, outcomes = [], [], []
        for s in runs:
            row = found.get(s.id)
            if row is not None and row.status in FINAL:
                moved.append(s)
                goto = (row.result or {}).get("goto")
                outcomes.append(Outcome("resumed", goto=goto))
            elif row is not None and row.status == "started" and not instruction.step.repeatable:
                moved.append(s)
                outcomes.append(Outcome.failed(IN_DOUBT))
            else:
                todo.append(s)
        if moved:
            self._apply_alone(moved, instruction, outcomes, program_length=len(program.program))
        return todo

    # -- doing a step

    def _batched(self, step: Step, instruction: Instruction, program: Workflow, runs: list[RunState],
                 calls: list[StepCall]) -> None:
        try:
            with self.engine.connect() as reader:
                for c in calls:
                    c.conn = reader
                prepared = step.prepare(reader, calls)
                reader.rollback()  # end the read snapshot before writing (SQLite)
            for c in calls:
                c.conn = None
            with self.engine.begin() as conn:
                held = _confirm(conn, runs, self.token, self._until())
                keep = [i for i, s in enumerate(runs) if s.id in held]
                self._lose([s for s in runs if s.id not in held])
                mine = [runs[i] for i in keep]
                outcomes = step.write(conn, [calls[i] for i in keep], [prepared[i] for i in keep])
                self._apply(conn, mine, instruction, outcomes, len(program.program))
        except SettingsError:
            raise  # a setting to fix (no secret key, a bad SMTP URL): the person running Hub must see it
        except Exception as exc:  # a bad moment (database busy, a bug): try again later
            log.exception("step %s of %s failed for %d runs", instruction.index + 1, program.name, len(runs))
            reason = f"{type(exc).__name__}: {exc}"[:500]
            self._apply_alone(runs, instruction, [Outcome("retry", reason)] * len(runs),
                              program_length=len(program.program))

    def _one(self, step: Step, instruction: Instruction, program: Workflow, state: RunState, call: StepCall) -> None:
        if not step.repeatable:
            with self.engine.begin() as conn:
                if not _confirm(conn, [state], self.token, self._until()):
                    self._lose([state])
                    return
                self._upsert_results(conn, [{"run_id": state.id, "step": instruction.index, "kind": step.name,
                                             "status": "started", "message_id": None, "detail": None, "result": {},
                                             "deferrals": 0, "started_at": self.now, "finished_at": None}])
        try:
            with self.engine.connect() as reader:
                call.conn = reader
                outcome = step.run(call)
                reader.rollback()
        except StepFailed as exc:
            outcome = Outcome.failed(str(exc))
        except SettingsError:
            raise
        except Exception as exc:  # noqa: BLE001 - a timeout, a 503: try again with backoff
            outcome = Outcome("retry", f"{type(exc).__name__}: {exc}"[:500])
        finally:
            call.conn = None
        self._apply_alone([state], instruction, [outcome], program_length=len(program.program))

    # -- recording what happened

    def _apply_alone(self, runs: list[RunState], instruction: Instruction | None, outcomes: list[Outcome], *,
                     program_length: int) -> None:
        with self.engine.begin() as conn:
            held = _confirm(conn, runs, self.token, self._until())
            self._lose([s for s in runs if s.id not in held])
            pairs = [(s, o) for s, o in zip(runs, outcomes, strict=True) if s.id in held]
            self._apply(conn, [s for s, _ in pairs], instruction, [o for _, o in pairs], program_length)

    def _lose(self, runs: Iterable[RunState]) -> None:
        for s in runs:
            s.status = "lost"
            self.report.lost += 1

    def _apply(self, conn: Connection, runs: list[RunState], instruction: Instruction | None,
               outcomes: list[Outcome], program_length: int) -> None:
        now, until = self.now, self._until()
        results: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for s, outcome in zip(runs, outcomes, strict=True):
            next_at: dt.datetime | None
            status, step, next_at, error, finished = "running", s.step, now, None, None
            attempts = s.attempts
            record = instruction is not None and instruction.recorded and outcome.status != "resumed"
            result_status, deferrals = outcome.status, 0
            if outcome.status in ("done", "skipped", "resumed"):
                self.report.steps += outcome.status != "resumed"
                attempts = 0
                target = outcome.goto if outcome.goto is not None else s.step + 1
                if outcome.status == "done" and outcome.message_id is not None and instruction is not None:
                    channel = str(outcome.result.get("channel") or "")
                    self.messages[channel].append(outcome.message_id)
                    self.report.messages += 1
                if outcome.exit or target >= program_length:
                    status, next_at, finished = ("exited" if outcome.exit and outcome.detail != "done" else "done",
                                                 None, now)
                    self.report.finished += 1
                else:
                    step = target
                    next_at = outcome.until or now
                    if next_at > now:
                        status = "waiting"
                        self.report.waiting += 1
            elif outcome.status == "deferred":
                deferrals, next_at, status = 1, outcome.until or now, "waiting"
                self.report.deferred += 1
            elif outcome.status == "retry":
                attempts += 1
                if attempts >= MAX_ATTEMPTS:
                    status, next_at, error = "parked", None, f"gave up after {attempts} tries: {outcome.detail}"
                    result_status = "failed"
                    self.report.parked += 1
                else:
                    status, next_at = "waiting", now + backoff(attempts)
                    self.report.retried += 1
            else:  # failed
                status, next_at, error = "parked", None, outcome.detail
                self.report.parked += 1
            if record:
                assert instruction is not None
                result = dict(outcome.result)
                if outcome.goto is not None:
                    result["goto"] = outcome.goto
                results.append({"run_id": s.id, "step": instruction.index, "kind": instruction.kind,
                                "status": result_status, "message_id": outcome.message_id,
                                "detail": error or outcome.detail, "result": result, "deferrals": deferrals,
                                "started_at": now,
                                "finished_at": now if result_status in FINAL else None})
            held = status == "running"
            updates.append({"_id": s.id, "_status": status, "_step": step, "_next_at": next_at, "_attempts": attempts,
                            "_error": error, "_finished_at": finished,
                            "_token": self.token if held else None,
                            "_until": until if held else None})
            s.status, s.step, s.attempts = status, step, attempts
        if results:
            self._upsert_results(conn, results)
        if updates:
            self._move(conn, updates)

    def _move(self, conn: Connection, updates: list[dict[str, Any]]) -> None:
        """Write the runs' new positions: one UPDATE per distinct outcome (most of a batch moves alike)."""
        alike: dict[tuple[tuple[str, Any], ...], list[int]] = defaultdict(list)
        for u in updates:
            alike[tuple((k, v) for k, v in sorted(u.items()) if k != "_id")].append(u["_id"])
        r = runs_t.c
        for key, ids in alike.items():
            v = dict(key)
            for part in chunks(ids, 1000):
                conn.execute(update(runs_t).where(r.id.in_(part), r.lease_token == self.token).values(
                    status=v["_status"], step=v["_step"], next_at=v["_next_at"], attempts=v["_attempts"],
                    error=v["_error"], finished_at=v["_finished_at"], lease_token=v["_token"],
                    lease_until=v["_until"], updated_at=self.now))

    def _upsert_results(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Write step results: a plain bulk insert for first results, an upsert where a row exists."""
        fresh = [r for r in rows if (r["run_id"], r["step"]) not in self._results_seen]
        again = [r for r in rows if (r["run_id"], r["step"]) in self._results_seen]
        if fresh:
            bulk_insert(conn, results_t, fresh)
            self._results_seen.update((r["run_id"], r["step"]) for r in fresh)
        if again:
            ins = insert_for(conn, results_t)
            stmt = ins.on_conflict_do_update(index_elements=["run_id", "step"], set_={
                "status": ins.excluded.status, "message_id": ins.excluded.message_id, "detail": ins.excluded.detail,
                "result": ins.excluded.result, "finished_at": ins.excluded.finished_at,
                "deferrals": results_t.c.deferrals + ins.excluded.deferrals})
            conn.execute(stmt, again)

    def _release(self, runs: Iterable[RunState]) -> None:
        with self.engine.begin() as conn:
            for part in chunks([s.id for s in runs], 1000):
                conn.execute(update(runs_t).where(runs_t.c.id.in_(part), runs_t.c.lease_token == self.token)
                             .values(lease_token=None, lease_until=None))

    # -- handing the new messages to their channels

    def dispatch(self) -> None:
        total: dict[str, Any] = {}
        for channel, ids in self.messages.items():
            report = messaging.dispatch(self.engine, self.settings, channels=[channel] if channel else None,
                                        ids=ids, batch_size=DISPATCH_BATCH).as_dict()
            for key, value in report.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    total[key] = round(total.get(key, 0) + value, 3)
                elif isinstance(value, list):
                    total.setdefault(key, []).extend(value)
        self.report.dispatch = total


def advance(engine: Engine, settings: Settings, run_ids: Sequence[int] | None = None, *,
            now: dt.datetime | None = None, limit: int | None = None, dispatch: bool = True,
            pm: pluggy.PluginManager | None = None) -> AdvanceReport:
    """Take these runs (or every due run, up to `limit`) as far as they can go now, then send their messages."""
    now = now or utcnow()
    if run_ids is None:
        with engine.connect() as conn:
            run_ids = due_ids(conn, now, limit)
    batch = Advance(engine, settings, now=now, pm=pm)
    batch.run(run_ids)
    if dispatch:
        batch.dispatch()
    return batch.report


# --- for people: parked runs, retrying, a contact's runs ----------------------------------

class StepNumbers:
    """The step number people read for a run's position, on the run's own version.

    A run keeps the version it started on and the instruction index it stands
    at; `index + 1` would skip a number after every if/then/else, and the
    newest version may number its steps differently. Each version is parsed
    once per reader; a version that no longer parses (a step kind whose
    plugin is gone) falls back to `index + 1` rather than hide the run.
    """

    def __init__(self, conn: Connection, settings: Settings) -> None:
        self.conn, self.settings = conn, settings
        self._versions: dict[tuple[int, int], Workflow | None] = {}

    def __call__(self, workflow_id: int, version: int, index: int) -> int:
        key = (workflow_id, version)
        if key not in self._versions:
            try:
                self._versions[key] = store.definition(self.conn, self.settings, workflow_id, version)
            except (WorkflowError, SettingsError):
                self._versions[key] = None
        found = self._versions[key]
        return found.number(index) if found is not None else index + 1


def parked(conn: Connection, settings: Settings, workflow: str | None = None, limit: int | None = 100
           ) -> list[dict[str, Any]]:
    """Runs parked for good, newest first, with why; `step` is the number people read (`index` the position)."""
    r, w = runs_t.c, workflows_t.c
    q = (select(r.id, w.name.label("workflow"), r.contact_id, r.step, r.error, r.started_at, r.updated_at,
                r.workflow_id, r.version)
         .join(workflows_t, w.id == r.workflow_id).where(r.status == "parked")
         .order_by(r.updated_at.desc(), r.id.desc()))
    if workflow:
        q = q.where(w.name == workflow)
    if limit is not None:
        q = q.limit(limit)
    number = StepNumbers(conn, settings)
    return [dict(row._mapping, step=number(row.workflow_id, row.version, row.step), index=row.step)
            for row in conn.execute(q)]


def retry(engine: Engine, run_ids: Sequence[int], *, skip: bool = False, now: dt.datetime | None = None) -> int:
    """Put parked runs back to work; `skip` passes over the step they were parked at. Returns how many."""
    now = now or utcnow()
    r = runs_t.c
    done = 0
    with engine.begin() as conn:
        rows = conn.execute(update(runs_t).where(r.id.in_(list(run_ids)), r.status == "parked")
                            .values(status="running", next_at=now, attempts=0, error=None, lease_token=None,
                                    lease_until=None, finished_at=None, updated_at=now)
                            .returning(r.id, r.step, r.workflow_id, r.version)).all()
        for row in rows:
            done += 1
            if skip:
                ins = insert_for(conn, results_t)
                values = {"run_id": row.id, "step": row.step, "kind": "skipped", "status": "skipped",
                          "detail": "skipped by hand", "result": {}, "deferrals": 0, "started_at": now,
                          "finished_at": now}
                conn.execute(ins.values(**values).on_conflict_do_update(
                    index_elements=["run_id", "step"], set_={"status": "skipped", "detail": "skipped by hand",
                                                             "finished_at": now}))
            else:
                conn.execute(delete(results_t).where(results_t.c.run_id == row.id, results_t.c.step == row.step,
                                                     results_t.c.status.not_in(("done", "skipped"))))
    return done


def runs_for_contact(conn: Connection, settings: Settings, contact_id: int) -> list[dict[str, Any]]:
    """A contact's workflow runs, newest first; `step` is the number people read (`index` the position)."""
    r, w = runs_t.c, workflows_t.c
    q = (select(r.id, w.name.label("workflow"), r.status, r.holdout, r.step, r.cycle, r.started_at, r.next_at,
                r.finished_at, r.error, r.workflow_id, r.version)
         .join(workflows_t, w.id == r.workflow_id).where(r.contact_id == contact_id)
         .order_by(r.started_at.desc(), r.id.desc()))
    number = StepNumbers(conn, settings)
    return [dict(row._mapping, step=number(row.workflow_id, row.version, row.step), index=row.step)
            for row in conn.execute(q)]
