"""Recording who is in each segment, and telling plugins who entered and who left.

A refresh evaluates a segment's rule into a scratch table, then applies the
difference to segment_members with two set-based statements: a DELETE of the
members the rule no longer holds for, and an INSERT ... SELECT of those it
newly holds for. Ids reach Python only when some plugin implements
`segment_changed`, which gets them in chunks of at most HOOK_CHUNK ids per
list, inside the refresh's transaction: a plugin's own writes (a workflow
starting runs) commit or roll back together with the membership change.

A refresh is incremental when it can be: a segment refreshed before, whose
rule does not depend on the clock and reads only fields whose changes touch
contacts.updated_at or the consent ledger, is re-evaluated only for contacts
changed (or given a consent answer) since. Everything else is re-evaluated in
full; running `hub segments refresh` on a schedule keeps time-based segments
such as dormant_90d current. Contacts that no longer exist (merged away,
erased) leave at the next refresh of either kind, and plugins are told.

On PostgreSQL a refresh of several segments runs REFRESH_WORKERS of them at
once, each on its own connection and in its own transaction: one INSERT ...
SELECT runs on one core, and evaluating one segment does not depend on
another's recorded members (a segment reference compiles to the other rule).
Each segment's refresh holds a lock of its own (two refreshes of one segment
never overlap), the lead scores are refreshed beside the segments that do
not read them and committed before any segment that does is evaluated, and
the hooks of one segment's change run while no other segment's hooks do:
from the first hook call to its commit, a refresh holds
HOOKS_LOCK, so the plugins' writes happen one segment after another, as they
did when every refresh ran alone. SQLite (one writer) refreshes one segment
after another.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import pluggy
from sqlalchemy import Column, Connection, Engine, Integer, MetaData, Table, delete, except_, exists, func, insert, \
    literal, or_, select, text, union
from sqlalchemy.exc import DBAPIError

from hub.config import Settings, SettingsError
from hub.db import UTCDateTime, analyze, utcnow
from hub.i18n import gettext as _
from hub.models import ConsentEvent, Contact, SegmentMember
from hub.plugins import get_pm
from hub.segments import portable, scoring, sizes, store
from hub.segments.compile import Compiler, compiler_for, conditions, tracked, uses_now
from hub.segments.evaluate import Segments
from hub.segments.rules import SegmentDefinition

contacts_t = Contact.__table__
members_t = SegmentMember.__table__
events_t = ConsentEvent.__table__

HOOK_CHUNK = 10_000
# The refreshes of one segment run one at a time (two overlapping `hub segments refresh`
# runs would otherwise both insert the same arrivals): each holds the lock REFRESH_LOCK
# followed by ":" and the segment's name (`segment_lock`); the lead scores' refresh holds
# SCORES_LOCK. A caller may still hold REFRESH_LOCK itself around a refresh_segment.
REFRESH_LOCK = "hub.segments.refresh"
SCORES_LOCK = REFRESH_LOCK + ".lead_scores"
# Held from a segment's first segment_changed call to its commit: plugins hear one segment at a time.
HOOKS_LOCK = REFRESH_LOCK + ".hooks"
# Segments refreshed at once on PostgreSQL (the settings' segment_refresh_workers overrides it).
REFRESH_WORKERS = 2
MAX_REFRESH_WORKERS = 16  # each holds a connection and a core of PostgreSQL's
WORKERS_SETTING = "segment_refresh_workers"
# Memory for the temporary tables of a refresh's session (PostgreSQL's default, 8 MB, holds
# the ids of 250,000 contacts; past it each scratch table is written out and read back).
TEMP_BUFFERS = "256MB"
# An incremental refresh also re-checks contacts changed shortly before the
# previous refresh started: a transaction still open then (or a worker whose
# clock runs a little behind) may have committed such a change after it.
SINCE_MARGIN = dt.timedelta(minutes=10)

# Scratch tables without indexes: they are read whole, by set operations.
_scratch = MetaData()
match_t = Table("hub_segment_match", _scratch, Column("contact_id", Integer, nullable=False), prefixes=["TEMPORARY"])
touched_t = Table("hub_segment_touched", _scratch, Column("contact_id", Integer, nullable=False),
                  prefixes=["TEMPORARY"])


@dataclass
class SegmentRefresh:
    segment: str
    mode: str  # full | incremental
    members: int
    entered: int
    exited: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"segment": self.segment, "mode": self.mode, "members": self.members, "entered": self.entered,
                "exited": self.exited, "seconds": round(self.seconds, 3)}


@dataclass
class RefreshReport:
    segments: list[SegmentRefresh] = field(default_factory=list)
    lead_score: scoring.ScoreRefresh | None = None
    broken: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"segments": [s.as_dict() for s in self.segments],
                "lead_score": self.lead_score.as_dict() if self.lead_score else None,
                "broken": [{"segment": k, "error": v} for k, v in sorted(self.broken.items())],
                "seconds": round(self.seconds, 3)}


def refresh(engine: Engine, settings: Settings, names: Sequence[str] | None = None, *,
            now: dt.datetime | None = None, full: bool = False, pm: pluggy.PluginManager | None = None,
            progress: Callable[[SegmentRefresh], None] | None = None) -> RefreshReport:
    """Refresh the named segments (all of them when none are named), each in its own transaction.

    Lead scores are recomputed when all segments are refreshed, or when a
    named one reads `contact.lead_score`; a segment that reads them is
    refreshed after they are committed (on PostgreSQL the others may be
    refreshed meanwhile, see the module's docstring).
    """
    started = time.perf_counter()
    pm = pm or get_pm()
    with engine.connect() as conn:
        base = Segments(conn, settings, now=now, pm=pm)
    definitions = base.catalog.definitions
    targets = [base.get(n) for n in names] if names else [definitions[n] for n in sorted(definitions)]
    report = RefreshReport(broken={} if names else dict(base.catalog.broken))
    reads_scores = {d.name for d in targets
                    if any(c.field.pattern == "contact.lead_score" for c in conditions(d.rule, definitions))}
    model = scoring.load_model(base.registry, definitions) if not names or reads_scores else None

    def scores() -> scoring.ScoreRefresh:
        assert model is not None
        with engine.begin() as conn:
            _scratch_memory(conn)
            portable.serialize(conn, SCORES_LOCK)
            compiler = compiler_for(conn, base.registry, now=base.now, segments=definitions)
            return scoring.refresh(conn, compiler, model, at=utcnow())

    def one(definition: SegmentDefinition) -> SegmentRefresh:
        with engine.begin() as conn:
            _scratch_memory(conn)
            compiler = compiler_for(conn, base.registry, now=base.now, segments=definitions)
            return refresh_segment(conn, compiler, definition, full=full, pm=pm)

    workers = workers_for(engine, settings, len(targets) + (model is not None))
    if workers <= 1:
        report.lead_score = scores() if model is not None else None
        for definition in targets:
            result = one(definition)
            report.segments.append(result)
            if progress is not None:
                progress(result)
    else:
        report.lead_score, segments = _in_parallel(one, targets, workers, progress,
                                                   scores=scores if model is not None else None,
                                                   after_scores=reads_scores)
        report.segments.extend(segments)
    report.seconds = time.perf_counter() - started
    return report


def workers_for(engine: Engine, settings: Settings, jobs: int) -> int:
    """How many refreshes to run at once: one on SQLite (a single writer), else `segment_refresh_workers`.

    The setting (top level of hub.toml, REFRESH_WORKERS when absent) is a whole
    number from 1 to MAX_REFRESH_WORKERS; anything else is said, not guessed at.
    """
    value = settings.extra.get(WORKERS_SETTING, REFRESH_WORKERS)
    if type(value) is not int or not 1 <= value <= MAX_REFRESH_WORKERS:
        raise SettingsError(_("%(setting)s = %(value)s: give a whole number from 1 to %(most)s",
                              setting=WORKERS_SETTING, value=repr(value)[:40], most=MAX_REFRESH_WORKERS))
    if engine.dialect.name != "postgresql" or jobs < 2:
        return 1
    return min(value, jobs)


def _in_parallel(one: Callable[[SegmentDefinition], SegmentRefresh], targets: Sequence[SegmentDefinition],
                 workers: int, progress: Callable[[SegmentRefresh], None] | None, *,
                 scores: Callable[[], scoring.ScoreRefresh] | None,
                 after_scores: set[str]) -> tuple[scoring.ScoreRefresh | None, list[SegmentRefresh]]:
    """The lead scores and each target refreshed on a pool of threads; the segments in the targets' order.

    The scores start first; the segments named in `after_scores` (they read
    the scores) start only once the scores are committed. Each job runs in a
    copy of the caller's context (its context variables: a plugin may mark a
    refresh as its own). The first failure stops the jobs not started yet,
    waits for those under way (each commits or rolls back alone, as in a
    sequential refresh) and is raised.
    """
    position = {d.name: i for i, d in enumerate(targets)}
    results: dict[int, SegmentRefresh] = {}
    scored: scoring.ScoreRefresh | None = None
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hub-refresh") as pool:
        def submit(fn: Callable[..., Any], *args: Any) -> Future[Any]:
            return pool.submit(contextvars.copy_context().run, fn, *args)

        first = submit(scores) if scores is not None else None
        waiting = [d for d in targets if d.name in after_scores] if first is not None else []
        pending: set[Future[Any]] = {submit(one, d) for d in targets if d.name not in after_scores or first is None}
        if first is not None:
            pending.add(first)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                error = future.exception()
                if error is not None:
                    for rest in pending:
                        rest.cancel()
                    wait(pending)
                    raise error
                if future is first:
                    scored = future.result()
                    pending |= {submit(one, d) for d in waiting}
                    continue
                result: SegmentRefresh = future.result()
                results[position[result.segment]] = result
                if progress is not None:
                    progress(result)
    return scored, [results[i] for i in sorted(results)]


def _scratch_memory(conn: Connection) -> None:
    """Give this transaction's temporary tables TEMP_BUFFERS of memory (PostgreSQL).

    PostgreSQL fixes a session's temporary buffers at its first use of a
    temporary table; a pooled connection that used one before with another
    size refuses the change, and keeps its size (a savepoint keeps the
    refusal from aborting the transaction).
    """
    if conn.dialect.name != "postgresql":
        return
    try:
        with conn.begin_nested():
            conn.execute(text(f"SET LOCAL temp_buffers = '{TEMP_BUFFERS}'"))
    except DBAPIError:
        pass


def segment_lock(name: str) -> str:
    """The lock a refresh of segment `name` holds until its transaction ends."""
    return f"{REFRESH_LOCK}:{name}"


# Why a segment's recorded members may not be what its rule says now (see `stale`).
NEVER_REFRESHED = "never"
DATA_CHANGED = "changed"
TIME_PASSED = "time"


def stale(conn: Connection, segments: Segments, *, today: dt.date | None = None) -> dict[str, str]:
    """Segments whose recorded members may differ from their rule's answer now, with why.

    The test is the one an incremental refresh uses to choose whom to look
    at: a segment never refreshed (or whose definition changed since) is
    NEVER_REFRESHED; one refreshed before the last change to a contact
    (contacts.updated_at: a sync, an import, a merge) or the last consent
    answer is DATA_CHANGED; one whose rule depends on the clock, or reads
    fields whose changes leave no trace there (a plugin's), and was refreshed
    on an earlier day (`today`, the shop's calendar) is TIME_PASSED. Cheap: two
    aggregate queries, whatever the size of the base.
    """
    definitions = segments.catalog.definitions
    last_change = conn.execute(select(func.max(contacts_t.c.updated_at))).scalar()
    last_event = conn.execute(select(func.max(events_t.c.id))).scalar()
    tz = segments.settings.tz
    today = today or segments.now.astimezone(tz).date()
    out: dict[str, str] = {}
    for name, definition in definitions.items():
        row = segments.catalog.rows.get(name)
        refreshed = row.refreshed_at if row is not None else None
        if row is None or refreshed is None or (definition.builtin and row.definition != definition.document):
            out[name] = NEVER_REFRESHED
        elif (last_change is not None and last_change > refreshed) or (last_event or 0) > (row.refreshed_event_id
                                                                                            or 0):
            out[name] = DATA_CHANGED
        elif ((uses_now(definition.rule, definitions) or not tracked(definition.rule, definitions))
              and refreshed.astimezone(tz).date() < today):
            out[name] = TIME_PASSED
    return out


def _heard(conn: Connection, pm: pluggy.PluginManager) -> bool:
    """Whether anyone hears who entered and left: a plugin's segment_changed, or a webhook subscribed to them.

    Hub's own webhook plugin always implements the hook; collecting the ids for it
    (the slower RETURNING statements) is only worth it when a webhook listens.
    """
    from hub import webhooks

    impls = pm.hook.segment_changed.get_hookimpls()
    if any(impl.plugin_name != webhooks.HOOKS_PLUGIN for impl in impls):
        return True
    return bool(impls) and webhooks.listening(conn, "segment.entered", "segment.exited")


def refresh_segment(conn: Connection, compiler: Compiler, definition: SegmentDefinition, *, full: bool = False,
                    pm: pluggy.PluginManager | None = None) -> SegmentRefresh:
    """Bring one segment's recorded members up to date inside the caller's transaction.

    Waits first for any other refresh of the same segment to end (`segment_lock`).
    """
    portable.serialize(conn, segment_lock(definition.name))
    started, wall = time.perf_counter(), utcnow()
    pm = pm or get_pm()
    state = store.refresh_state(conn, definition)
    rule = compiler.where(definition.rule)
    last_event = conn.execute(select(func.max(events_t.c.id))).scalar()
    incremental = (not full and state.refreshed_at is not None
                   and not uses_now(definition.rule, compiler.segments)
                   and tracked(definition.rule, compiler.segments))
    c, m, mine = contacts_t.c, members_t.c, members_t.alias("recorded").c
    scope = select(c.id).where(c.deleted_at.is_(None), rule)
    recorded = select(mine.contact_id).where(mine.segment_id == state.id)
    scratch = [match_t]
    if incremental:
        assert state.refreshed_at is not None
        scratch.append(touched_t)
        touched_t.create(conn)
        since = state.refreshed_at - SINCE_MARGIN
        conn.execute(touched_t.insert().from_select(["contact_id"], union(
            select(c.id).where(c.updated_at >= literal(since, UTCDateTime())),
            select(events_t.c.contact_id).where(events_t.c.id > (state.refreshed_event_id or 0)))))
        analyze(conn, touched_t)
        scope = scope.where(c.id.in_(select(touched_t.c.contact_id)))
        # members changed since, or no longer someone (merged away, erased, deleted at the source)
        recorded = recorded.where(or_(mine.contact_id.in_(select(touched_t.c.contact_id)),
                                      ~exists().where(c.id == mine.contact_id, c.deleted_at.is_(None))))
    match_t.create(conn)
    matched = conn.execute(match_t.insert().from_select(["contact_id"], scope)
                           .execution_options(preserve_rowcount=True)).rowcount
    analyze(conn, match_t)
    # EXCEPT, not NOT EXISTS: one set operation whatever the planner believes
    # about the tables' sizes (a NOT EXISTS on a table the statement writes,
    # planned from stale statistics, can turn into a scan per row).
    left = delete(members_t).where(m.segment_id == state.id, m.contact_id.in_(
        except_(recorded, select(match_t.c.contact_id))))
    arrivals = except_(select(match_t.c.contact_id),
                       select(mine.contact_id).where(mine.segment_id == state.id)).subquery("arrivals")
    joined = insert(members_t).from_select(
        ["segment_id", "contact_id", "entered_at"],
        # in key order: the primary key's b-tree grows at its end instead of at random pages
        select(literal(state.id, Integer()), arrivals.c.contact_id, literal(wall, UTCDateTime()))
        .order_by(arrivals.c.contact_id))
    if _heard(conn, pm):
        exited = sorted(conn.execute(left.returning(m.contact_id)).scalars())
        entered = sorted(conn.execute(joined.returning(m.contact_id)).scalars())
        if entered or exited:
            portable.serialize(conn, HOOKS_LOCK)
        for start in range(0, max(len(entered), len(exited)), HOOK_CHUNK):
            pm.hook.segment_changed(conn=conn, segment=definition.name, entered=entered[start:start + HOOK_CHUNK],
                                    exited=exited[start:start + HOOK_CHUNK])
        n_entered, n_exited = len(entered), len(exited)
    else:
        n_exited = conn.execute(left).rowcount
        n_entered = conn.execute(joined.execution_options(preserve_rowcount=True)).rowcount
    if n_entered + n_exited >= portable.ANALYZE_AFTER:
        analyze(conn, members_t)
    for table in scratch:
        table.drop(conn)
    conn.execute(store.segments_t.update().where(store.segments_t.c.id == state.id)
                 .values(refreshed_at=wall, refreshed_event_id=last_event))
    # After a full refresh the recorded members are exactly the matches (all live): no need to count them again.
    members = matched if not incremental else sizes.live_count(conn, state.id)
    sizes.record(conn, state.id, members, wall, compiler.settings.tz)  # the day's point of the size chart
    return SegmentRefresh(definition.name, "incremental" if incremental else "full", members, n_entered, n_exited,
                          time.perf_counter() - started)
