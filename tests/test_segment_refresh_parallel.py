"""A refresh of every segment at once records what a refresh of one after another records.

On PostgreSQL `membership.refresh` runs the lead scores and several segments
on connections of their own; these tests hold it to the guarantees of the
sequential refresh: the same members and scores, a segment that reads lead
scores refreshed after they are written, plugins told of one segment at a
time, and each segment's change in its own transaction. They also cover the
lead scores' diff (new, changed, unchanged and gone scores) on both databases.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text, update

from hub.config import Settings, load_settings
from hub.db import utcnow
from hub.hookspecs import hookimpl
from hub.models import Contact, LeadScore, SegmentMember
from hub.segments import membership, scoring, store
from hub.segments.evaluate import Segments
from tests.conftest import HubDB
from tests.test_segments import ShopCRM, english, hub, hub_json, shop, write_file  # noqa: F401  (fixtures)

pytestmark = pytest.mark.both_databases

MODEL = """
- {title: Moscow, rule: {field: contact.city, op: eq, value: Москва}, points: 10}
- {title: Orders, per: orders.count, points: 7, max: 15}
- {title: Opted out, rule: {field: contact.tags, op: contains, value: opt-out-city}, points: -30}
"""


def recorded(db: HubDB) -> tuple[dict[str, set[int]], dict[int, int]]:
    """Every segment's recorded members by name, and the stored lead scores."""
    with db.engine.connect() as conn:
        names = dict(conn.execute(select(store.segments_t.c.id, store.segments_t.c.name)).all())
        members: dict[str, set[int]] = {}
        for segment_id, contact_id in conn.execute(select(SegmentMember.segment_id, SegmentMember.contact_id)):
            members.setdefault(names[segment_id], set()).add(contact_id)
        scores = dict(conn.execute(select(LeadScore.contact_id, LeadScore.score)).all())
    return members, scores


def forget(db: HubDB) -> None:
    """No segment refreshed yet, no score stored."""
    with db.engine.begin() as conn:
        conn.execute(SegmentMember.__table__.delete())
        conn.execute(LeadScore.__table__.delete())
        conn.execute(update(store.segments_t).values(refreshed_at=None, refreshed_event_id=None))


def at_once(n: int) -> Settings:
    """The settings as the environment gives them (the test's model), refreshing n segments at once."""
    settings = load_settings()
    return replace(settings, extra={**settings.extra, membership.WORKERS_SETTING: n})


@pytest.fixture
def scored_shop(shop: dict[str, int], hub_db: HubDB, tmp_path: Path,  # noqa: F811  (the fixture)
                monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """The shop with a lead-score model and a segment that reads the scores ("hot": 20 points or more)."""
    monkeypatch.setenv("HUB_LEAD_SCORE_MODEL", write_file(tmp_path, "score.yaml", MODEL))
    hot = write_file(tmp_path, "hot.yaml", "name: hot\nrule: {field: contact.lead_score, op: gte, value: 20}\n")
    assert hub("segments", "add", hot).exit_code == 0
    forget(hub_db)
    return shop


def test_a_refresh_at_once_records_what_one_after_another_records(scored_shop: dict[str, int],
                                                                  hub_db: HubDB) -> None:
    one_by_one = membership.refresh(hub_db.engine, at_once(1))
    expected = recorded(hub_db)
    forget(hub_db)
    together = membership.refresh(hub_db.engine, at_once(3))
    assert recorded(hub_db) == expected
    assert [s.segment for s in together.segments] == [s.segment for s in one_by_one.segments]
    assert [(s.members, s.entered, s.exited) for s in together.segments] == \
        [(s.members, s.entered, s.exited) for s in one_by_one.segments]
    assert together.lead_score is not None and one_by_one.lead_score is not None
    assert together.lead_score.changed == one_by_one.lead_score.changed == len(scored_shop)
    # hot reads the scores: refreshed from nothing, it already holds those the scores written put there
    assert expected[0]["hot"] == {scored_shop["Анна"], scored_shop["Вера"]}


def test_plugins_hear_one_segment_at_a_time_inside_its_transaction(scored_shop: dict[str, int], hub_db: HubDB,
                                                                   plugin_manager: Any) -> None:
    class Overlaps:
        """Counts hook calls under way at once; each call holds the refresh open a little."""

        def __init__(self) -> None:
            self.lock = threading.Lock()
            self.now = self.most = 0
            self.calls: dict[str, list[int]] = {}

        @hookimpl
        def segment_changed(self, conn: Any, segment: str, entered: list[int], exited: list[int]) -> None:
            assert conn.in_transaction()
            with self.lock:
                self.now += 1
                self.most = max(self.most, self.now)
            time.sleep(0.05)  # long enough for another segment's refresh to reach its hooks
            with self.lock:
                self.now -= 1
                self.calls.setdefault(segment, []).extend(entered)

    listener = Overlaps()
    plugin_manager.register(listener)
    report = membership.refresh(hub_db.engine, at_once(3))
    members, _ = recorded(hub_db)
    assert listener.most == 1
    assert {k: set(v) for k, v in listener.calls.items()} == members
    assert {s.segment: s.entered for s in report.segments if s.entered} == {k: len(v) for k, v in members.items()}


def test_a_failing_segment_leaves_the_others_refreshed_and_is_raised(scored_shop: dict[str, int], hub_db: HubDB,
                                                                     plugin_manager: Any) -> None:
    class Refuses:
        @hookimpl
        def segment_changed(self, conn: Any, segment: str, entered: list[int], exited: list[int]) -> None:
            conn.execute(update(Contact.__table__).where(Contact.__table__.c.id == -1).values(city="x"))
            if segment == "vip":
                raise RuntimeError("vip refused")

    plugin_manager.register(Refuses())
    settings = at_once(2)
    with pytest.raises(RuntimeError, match="vip refused"):
        membership.refresh(hub_db.engine, settings)
    members, _ = recorded(hub_db)
    assert "vip" not in members  # rolled back with its transaction
    with hub_db.engine.connect() as conn:
        vip = store.refresh_state(conn, Segments(conn, settings).get("vip"))
    assert vip.refreshed_at is None


def test_lead_scores_write_only_what_changed(scored_shop: dict[str, int], hub_db: HubDB) -> None:
    settings = load_settings()

    def refresh() -> scoring.ScoreRefresh:
        with hub_db.engine.begin() as conn:
            segments = Segments(conn, settings)
            model = scoring.load_model(segments.registry, segments.catalog.definitions)
            return scoring.refresh(conn, segments.compiler, model, at=utcnow())

    first = refresh()
    assert first.contacts == first.changed == len(scored_shop)
    _, scores = recorded(hub_db)
    assert scores[scored_shop["Вера"]] == 25 and scores[scored_shop["Борис"]] == 7 - 30
    with hub_db.engine.connect() as conn:
        stamps = dict(conn.execute(select(LeadScore.contact_id, LeadScore.updated_at)).all())
    contacts = Contact.__table__
    with hub_db.engine.begin() as conn:
        conn.execute(update(contacts).where(contacts.c.id == scored_shop["Зоя"]).values(city="Москва"))  # 0 -> 10
        conn.execute(update(contacts).where(contacts.c.id == scored_shop["Егор"]).values(deleted_at=utcnow()))
        conn.execute(LeadScore.__table__.delete().where(LeadScore.__table__.c.contact_id == scored_shop["Глеб"]))
    second = refresh()
    assert second.contacts == len(scored_shop) - 1 and second.changed == 2  # Зоя changed, Глеб's written again
    _, after = recorded(hub_db)
    assert scored_shop["Егор"] not in after  # no longer a live contact: the score is gone
    assert after[scored_shop["Зоя"]] == 10 and after[scored_shop["Глеб"]] == scores[scored_shop["Глеб"]]
    assert {k: v for k, v in after.items() if k not in (scored_shop["Зоя"], scored_shop["Глеб"])} == \
        {k: v for k, v in scores.items() if k not in (scored_shop["Зоя"], scored_shop["Глеб"], scored_shop["Егор"])}
    with hub_db.engine.connect() as conn:
        again = dict(conn.execute(select(LeadScore.contact_id, LeadScore.updated_at)).all())
    assert again[scored_shop["Вера"]] == stamps[scored_shop["Вера"]]  # unchanged rows are not touched
    assert again[scored_shop["Зоя"]] > stamps[scored_shop["Зоя"]]
    assert refresh().changed == 0


def test_a_session_whose_temporary_buffers_are_already_fixed_still_refreshes(scored_shop: dict[str, int],
                                                                             hub_db: HubDB) -> None:
    postgres = hub_db.engine.dialect.name == "postgresql"
    engine = create_engine(hub_db.url, pool_size=1, max_overflow=0)  # every transaction on the same session
    try:
        if postgres:  # SQLite has no such setting: there the refresh simply runs on the one connection
            with engine.begin() as conn:
                conn.execute(text("SET temp_buffers = '9MB'"))
                conn.execute(text("CREATE TEMPORARY TABLE fixes_the_buffers (id int)"))
        report = membership.refresh(engine, at_once(2))  # two jobs, one connection: they take turns
        if postgres:
            with engine.connect() as conn:
                assert conn.execute(text("SHOW temp_buffers")).scalar() == "9MB"
    finally:
        engine.dispose()
    assert report.lead_score is not None and report.lead_score.changed == len(scored_shop)
    assert recorded(hub_db)[0]["hot"] == {scored_shop["Анна"], scored_shop["Вера"]}


@pytest.mark.parametrize("value", ["two", 0, 17, 2.5, True])
def test_a_refresh_workers_setting_that_is_no_whole_number_in_range_is_said(hub_db: HubDB, value: Any) -> None:
    settings = replace(hub_db.settings, extra={**hub_db.settings.extra, membership.WORKERS_SETTING: value})
    with pytest.raises(membership.SettingsError, match=r"refresh_workers = .*: give a whole number from 1 to 16"):
        membership.refresh(hub_db.engine, settings)
