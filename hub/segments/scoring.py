"""Lead score: points for positive signals, minus points for negative ones, in the rule language.

The model is a YAML list; each line gives `points` when its `rule` holds
(`per` multiplies them by a whole-number field, `max` caps the line). Anything
a rule can ask is an input: what people bought, their consent, and what the
CRMs log of talking to them (calls.count.<window>, meetings.count.<window>,
calls.unanswered.<window>, activities.last_at; see hub/segments/crm_fields.py),
so interactions count both ways: a call that got through adds, a missed call
nobody returned takes away. A full
refresh recomputes every contact's score in one INSERT ... SELECT, writing only
scores that changed, and rules read it back as `contact.lead_score`. The
model cannot use `contact.lead_score` itself.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from sqlalchemy import (Boolean, Column, Connection, Integer, MetaData, Table, case, cast, delete, func, insert,
                        literal, select, update)

from hub.db import analyze
from hub.i18n import N_, gettext as _
from hub.models import Contact, LeadScore
from hub.segments import portable
from hub.segments.compile import Compiler, conditions
from hub.segments.fields import FieldError, Registry, ResolvedField
from hub.segments.rules import Node, Parser, RuleError, SegmentDefinition, SegmentError, read_document
from hub.segments.store import LIBRARY, SCORE_MODEL_FILE

contacts_t = Contact.__table__
scores_t = LeadScore.__table__
LINE_KEYS = ("title", "rule", "points", "per", "max")
SETTING = "lead_score_model"
# The titles of the shipped model's lines (library/lead_score.yaml), marked here for the catalog
# because the model is a list the title extractor does not read; shown through hub.i18n.title.
SHIPPED_TITLES = (N_("Decision maker"), N_("Won orders"), N_("Bought within 30 days"), N_("No contact for 180 days"),
                  N_("Email bounced"), N_("Called within 30 days"), N_("Met within 90 days"),
                  N_("Missed call not returned"))
_scratch = MetaData()
fresh_t = Table("hub_lead_score_fresh", _scratch, Column("contact_id", Integer, nullable=False),
                Column("score", Integer, nullable=False), prefixes=["TEMPORARY"])
# The scores to write: a new score (NULL: the contact has none any more) and whether one is stored now.
change_t = Table("hub_lead_score_change", _scratch, Column("contact_id", Integer, nullable=False),
                 Column("score", Integer), Column("stored", Boolean, nullable=False), prefixes=["TEMPORARY"])


@dataclass(frozen=True, eq=False)
class ScoreLine:
    title: str
    rule: Node | None
    points: int
    per: ResolvedField | None = None
    max: int | None = None


@dataclass(frozen=True, eq=False)
class ScoreModel:
    lines: tuple[ScoreLine, ...]
    origin: str


def model_path(settings_extra: Mapping[str, Any]) -> Path:
    """The model file: the lead_score_model setting, or the shipped default."""
    configured = settings_extra.get(SETTING)
    return Path(str(configured)) if configured else LIBRARY / SCORE_MODEL_FILE


def load_model(registry: Registry, segments: Mapping[str, SegmentDefinition]) -> ScoreModel:
    path = model_path(registry.settings.extra)
    if not path.is_file():
        raise SegmentError(f"{SETTING}: " + _("'%(path)s' is not a file", path=str(path)))
    return parse_model(read_document(path), registry, segments, origin=path.name)


def parse_model(data: Any, registry: Registry, segments: Mapping[str, SegmentDefinition], *,
                origin: str) -> ScoreModel:
    """A lead-score model checked line by line; RuleError lists every problem with its path."""
    parser = Parser(registry)
    if not isinstance(data, list) or not data:
        raise RuleError([_("expected a list of {title, rule, points} lines")], origin)
    lines = []
    for i, item in enumerate(data):
        path = f"[{i}]"
        if not isinstance(item, dict):
            parser.problem(path, _("expected {title, rule, points}"))
            continue
        for key in item:
            if key not in LINE_KEYS:
                parser.problem(f"{path}.{key}", _("unknown key; use %(keys)s", keys=", ".join(LINE_KEYS)))
        points = item.get("points")
        if not isinstance(points, int) or isinstance(points, bool) or points == 0:
            parser.problem(f"{path}.points", _("expected a whole number of points (negative to subtract), "
                                               "found %(found)s", found=repr(points)))
        rule = parser.rule(item["rule"], f"{path}.rule") if "rule" in item else None
        per = None
        if "per" in item:
            try:
                per = registry.resolve(str(item["per"]))
                if per.field.type != "integer":
                    parser.problem(f"{path}.per", _("%(field)s is not a whole-number field", field=item["per"]))
            except FieldError as exc:
                parser.problem(f"{path}.per", str(exc))
        cap = item.get("max")
        if cap is not None and (per is None or not isinstance(cap, int) or isinstance(cap, bool) or cap <= 0):
            parser.problem(f"{path}.max", _("a positive whole number, with per") if per else _("only goes with per"))
        if "rule" not in item and "per" not in item:
            parser.problem(path, _("needs a rule, a per field, or both"))
        if rule is not None and any(c.field.pattern == "contact.lead_score" for c in conditions(rule, segments)):
            parser.problem(f"{path}.rule", _("the lead score cannot depend on contact.lead_score"))
        title = str(item.get("title") or path)
        if isinstance(points, int):
            lines.append(ScoreLine(title, rule, points, per, cap))
    parser.raise_problems(origin)
    return ScoreModel(tuple(lines), origin)


def line_sql(compiler: Compiler, line: ScoreLine) -> Any:
    """The points one line gives a contact, as SQL."""
    points: Any = literal(line.points, Integer())
    if line.per is not None:
        count = func.coalesce(compiler.value(line.per), 0)
        points = cast(count * line.points, Integer())
        if line.max is not None:
            if compiler.dialect.name == "postgresql":  # the count once per contact, not up to three times
                points = func.least(func.greatest(points, -line.max), line.max, type_=Integer())
            else:
                points = case((points > line.max, line.max), (points < -line.max, -line.max), else_=points)
    if line.rule is not None:
        points = case((compiler.where(line.rule), points), else_=0)
    return points


def score_sql(compiler: Compiler, model: ScoreModel) -> Any:
    total: Any = literal(0, Integer())
    for line in model.lines:
        total = total + line_sql(compiler, line)
    return total


def score_of(conn: Connection, compiler: Compiler, model: ScoreModel, contact_id: int) -> int:
    """One contact's score from the data as it is now: the SQL a refresh stores, which explain shows line by line.

    The stored score (contact.lead_score in rules) changes only at a refresh;
    a contact's card shows this one, so it agrees with explain right after a
    sync or an import.
    """
    value = conn.execute(select(score_sql(compiler, model)).where(contacts_t.c.id == contact_id)).scalar()
    return int(value or 0)


@dataclass
class ScoreRefresh:
    contacts: int
    changed: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"contacts": self.contacts, "changed": self.changed, "seconds": round(self.seconds, 3)}


def refresh(conn: Connection, compiler: Compiler, model: ScoreModel, *, at: dt.datetime) -> ScoreRefresh:
    """Recompute every live contact's score in SQL, then write only the scores that changed.

    The new scores go to a scratch table; one FULL JOIN of it with the stored
    scores (on SQLite, a LEFT JOIN and an anti-join) keeps only the
    differences (a score new, changed or gone) in a second, usually small,
    scratch table, and only those rows are inserted, updated or deleted.
    Unchanged rows are not touched (an upsert of every row would lock, on
    PostgreSQL rewrite, a million unchanged rows per refresh), and the join
    reads each side once, where two EXCEPTs sorted or hashed every (contact,
    score) pair of both tables twice.
    """
    started = time.perf_counter()
    recorded = scores_t.alias("stored")
    c, stored, new, ch = contacts_t.c, recorded.c, fresh_t.c, change_t.c
    fresh_t.create(conn)
    change_t.create(conn)
    total = conn.execute(fresh_t.insert().from_select(
        ["contact_id", "score"], select(c.id, score_sql(compiler, model)).where(c.deleted_at.is_(None)))
        .execution_options(preserve_rowcount=True)).rowcount
    analyze(conn, fresh_t)
    columns = ["contact_id", "score", "stored"]
    if conn.dialect.name == "postgresql":  # one pass over both tables
        joined = fresh_t.join(recorded, new.contact_id == stored.contact_id, full=True)
        differ = conn.execute(change_t.insert().from_select(columns, select(
            func.coalesce(new.contact_id, stored.contact_id), new.score, stored.contact_id.is_not(None))
            .select_from(joined).where(new.score.is_distinct_from(stored.score)))
            .execution_options(preserve_rowcount=True)).rowcount
    else:  # SQLite has FULL JOIN only since 3.39: the new and changed scores, then the gone ones
        joined = fresh_t.join(recorded, new.contact_id == stored.contact_id, isouter=True)
        differ = conn.execute(change_t.insert().from_select(columns, select(
            new.contact_id, new.score, stored.contact_id.is_not(None))
            .select_from(joined).where(new.score.is_distinct_from(stored.score)))
            .execution_options(preserve_rowcount=True)).rowcount
        differ += conn.execute(change_t.insert().from_select(columns, select(
            stored.contact_id, literal(None, Integer()), literal(True, Boolean()))
            .where(stored.contact_id.not_in(select(new.contact_id))))  # one ephemeral index of the new ids
            .execution_options(preserve_rowcount=True)).rowcount
    changed = 0  # scores written: new or different (not the ones deleted)
    if differ:
        analyze(conn, change_t)
        when = literal(at, scores_t.c.updated_at.type)
        conn.execute(delete(scores_t).where(scores_t.c.contact_id.in_(select(ch.contact_id).where(ch.score.is_(None)))))
        changed += conn.execute(update(scores_t).where(scores_t.c.contact_id == ch.contact_id, ch.stored,
                                                       ch.score.is_not(None))
                                .values(score=ch.score, updated_at=when)
                                .execution_options(preserve_rowcount=True)).rowcount
        changed += conn.execute(insert(scores_t).from_select(
            ["contact_id", "score", "updated_at"],
            select(ch.contact_id, ch.score, when).where(~ch.stored)
            .order_by(ch.contact_id))  # in key order: the primary key's b-tree grows at its end
            .execution_options(preserve_rowcount=True)).rowcount
    if differ >= portable.ANALYZE_AFTER:
        analyze(conn, scores_t)
    change_t.drop(conn)
    fresh_t.drop(conn)
    return ScoreRefresh(contacts=total, changed=changed, seconds=time.perf_counter() - started)
