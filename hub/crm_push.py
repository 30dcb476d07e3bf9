"""Pushing what Hub works out about a person back to the CRMs: lead score and lifecycle stage.

Managers work in the CRM, not in Hub, so the score (hub.segments, lead_scores)
and the lifecycle stage (hub.segments.lifecycle, worked out when asked, never
stored) are written to fields of each CRM record behind the contact. A source
takes part by implementing hub.api.FieldBatches (`set_fields`); which CRM
field a logical name ("lead_score", "lifecycle") goes to is the connection's
setting (`[bitrix24] fields`, `[amocrm] fields`). A source may also say which
logical names it writes at all (`pushes(name) -> bool`): one that pushes
neither is not even read; one without `pushes` is offered both and skips what
it maps to no field.

Only what changed is sent. `external_refs.pushed` keeps what Hub last wrote
to each record; the comparison is one SQL query per page (keyset on the
reference's id), so a base of a million contacts reads only the rows whose
score or stage moved since. The ids `set_fields` answers with are the
records written: their `pushed` is updated, the rest keep theirs and are sent
again next time (a CRM that refused or was down loses nothing).

`hub crm push` runs it at once; the `crm_push` schedule (HUB_CRM_PUSH_INTERVAL_S,
300 s by default, 0 = off) hands one job per source to the queue.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from sqlalchemy import Connection, Engine, Integer, bindparam, func, literal, or_, select, update

from hub import plugins
from hub.config import Settings
from hub.db import utcnow
from hub.models import Contact, ExternalRef, LeadScore
from hub.segments import lifecycle, portable
from hub.writeback import FieldBatches

log = logging.getLogger(__name__)
refs_t = ExternalRef.__table__
contacts_t = Contact.__table__
scores_t = LeadScore.__table__

NAMES = ("lead_score", "lifecycle")  # the logical names pushed, as `[<crm>] fields` maps them
PAGE = 1000  # references compared and sent per set_fields call
LIMIT = 200_000  # references written per source and run at most; the next run goes on
INTERVAL_S = 300
ISOLATE_CALLS = 16  # more set_fields calls a refused batch may cost to find the records the CRM refuses


@dataclass
class SourcePush:
    """One source's part of a push: rows found changed, values sent, records written, records not written."""

    changed: int = 0
    sent: int = 0
    written: int = 0
    failed: int = 0
    error: str | None = None


@dataclass
class PushReport:
    sources: dict[str, SourcePush] = field(default_factory=dict)

    @property
    def written(self) -> int:
        return sum(s.written for s in self.sources.values())

    def as_dict(self) -> dict[str, Any]:
        return {"sources": {name: asdict(s) for name, s in self.sources.items()}, "written": self.written}


def pushing_sources(settings: Settings, only: Sequence[str] | None = None) -> dict[str, tuple[Any, tuple[str, ...]]]:
    """Registered sources that write fields in batches, each with the logical names it pushes."""
    found: dict[str, tuple[Any, tuple[str, ...]]] = {}
    for name, factory in sorted(plugins.sources().items()):
        if only is not None and name not in only:
            continue
        source = factory(settings)
        if not isinstance(source, FieldBatches):
            continue
        asks = getattr(source, "pushes", None)
        names = tuple(n for n in NAMES if not callable(asks) or asks(n))
        if names:
            found[name] = (source, names)
    return found


def push(engine: Engine, settings: Settings, *, sources: Sequence[str] | None = None, limit: int = LIMIT,
         page: int = PAGE, now: dt.datetime | None = None) -> PushReport:
    """Send every changed score and stage to the CRMs that take them; see the module's docstring."""
    now = now or utcnow()
    report = PushReport()
    for name, (source, names) in pushing_sources(settings, sources).items():
        report.sources[name] = _push_source(engine, settings, name, source, names, limit=limit, page=page, now=now)
    return report


def _push_source(engine: Engine, settings: Settings, name: str, source: Any, names: tuple[str, ...], *, limit: int,
                 page: int, now: dt.datetime) -> SourcePush:
    done = SourcePush()
    after = 0
    while done.changed < limit:
        with engine.connect() as conn:
            rows, last = _changed(conn, settings, name, names, after=after, limit=min(page, limit - done.changed),
                                  now=now)
        if last is None:
            break
        after = last
        if not rows:
            continue
        records = [[(ext, key, value) for key, value in new.items()] for _rid, ext, _old, new in rows]
        done.changed += len(rows)
        done.sent += sum(len(r) for r in records)
        written, error = _write(source, records, budget=[ISOLATE_CALLS])
        if error is not None:
            done.error = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
            log.warning("pushing scores to %s: %s", name, type(error).__name__)
        if error is not None and not written:
            done.failed += len(rows)
            break  # nothing of the page went through: the CRM is down or refuses everything; the next run resends
        updates = [{"rid": rid, "new_pushed": {**old, **new}} for rid, ext, old, new in rows if ext in written]
        done.written += len(updates)
        done.failed += len(rows) - len(updates)
        if updates:
            with engine.begin() as conn:
                conn.execute(update(refs_t).where(refs_t.c.id == bindparam("rid"))
                             .values(pushed=bindparam("new_pushed")), updates)
    return done


def _write(source: Any, records: list[list[tuple[str, str, Any]]], *,
           budget: list[int]) -> tuple[set[str], BaseException | None]:
    """Send the records' values; when the CRM refuses the batch, find the records it refuses.

    One record the CRM will not take (a deleted field, a locked record) must not
    hold back every record after it run after run, so a refused batch is split
    in halves, and the halves again, until the refused records are alone. The
    splitting costs at most `budget` more calls: a CRM that refuses everything
    (down, or a wrong field) is not asked once per record.
    """
    try:
        return {str(ext) for ext in source.set_fields([v for r in records for v in r]) or ()}, None
    except Exception as exc:  # noqa: BLE001 - the CRM is down or refused: pushed stays, the next run resends
        # A source may say what it wrote before the refusal (the error's `written`): those are done.
        done = {str(ext) for ext in getattr(exc, "written", None) or ()}
        records = [r for r in records if r and r[0][0] not in done]
        if not records:
            return done, exc
        if len(records) == 1 or budget[0] < 2:
            return done, exc
    budget[0] -= 2
    middle = len(records) // 2
    first, first_error = _write(source, records[:middle], budget=budget)
    second, second_error = _write(source, records[middle:], budget=budget)
    return done | first | second, first_error or second_error


def _changed(conn: Connection, settings: Settings, source: str, names: tuple[str, ...], *, after: int, limit: int,
             now: dt.datetime) -> tuple[list[tuple[int, str, dict[str, Any], dict[str, Any]]], int | None]:
    """(ref id, external id, pushed before, values to send) of the next references whose values moved,
    and the last reference id read (None when there was none: the end).

    The comparison runs in the database: a value never pushed (NULL in
    `pushed`) counts as changed; unchanged rows are never read.
    """
    r, c = refs_t.c, contacts_t.c
    score = func.coalesce(scores_t.c.score, literal(0, Integer())).label("score")
    stage = lifecycle.stage_sql(contacts_t, now=now, thresholds=lifecycle.Thresholds.from_settings(settings.extra),
                                has_tag=portable.prepare(conn).has_tag).label("stage")
    current = {"lead_score": score, "lifecycle": stage}
    old = {"lead_score": r.pushed["lead_score"].as_integer(), "lifecycle": r.pushed["lifecycle"].as_string()}
    moved = [or_(old[n].is_(None), old[n] != current[n]) for n in names]
    q = (select(r.id, r.external_id, r.pushed, *(current[n] for n in names))
         .join(contacts_t, c.id == r.contact_id)
         .outerjoin(scores_t, scores_t.c.contact_id == r.contact_id)
         .where(r.source == source, r.deleted_at.is_(None), c.deleted_at.is_(None), r.id > after, or_(*moved))
         .order_by(r.id).limit(limit))
    out: list[tuple[int, str, dict[str, Any], dict[str, Any]]] = []
    last = None
    for row in conn.execute(q):
        last = row.id
        before = dict(row.pushed or {})
        new: dict[str, Any] = {}
        if "lead_score" in names and before.get("lead_score") != int(row.score):
            new["lead_score"] = int(row.score)
        if "lifecycle" in names and before.get("lifecycle") != str(row.stage):
            new["lifecycle"] = str(row.stage)
        if new:
            out.append((row.id, str(row.external_id), before, new))
    return out, last


# --- the schedule ----------------------------------------------------------------------------

def push_source(source_name: str) -> dict[str, Any]:
    """The queue's job: one source's push, with settings read afresh in the worker."""
    from hub.config import load_settings
    from hub.db import get_engine

    settings = load_settings()
    report = push(get_engine(settings.database_url), settings, sources=[source_name])
    part = report.sources.get(source_name, SourcePush())
    return {k: v for k, v in asdict(part).items() if v}


def push_all(run: Any) -> dict[str, str]:
    """The `crm_push` schedule: a push job per connected source that writes fields in batches."""
    from hub.schedule import hand_out, synced_sources

    connected = synced_sources(run.engine)
    return {name: hand_out(run.settings, f"crm_push:{name}", push_source, name)
            for name in pushing_sources(run.settings, connected)}

