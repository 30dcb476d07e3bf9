"""A segment's members enter a workflow a page at a time: the same runs, holdout and counts as all at once.

The scheduler's tick reads the trigger segment's members in pages of
triggers.ENTRY_PAGE (keyset on contact id) and starts each page before
reading the next, so entering a million people holds one page in memory.
Here the page is two people, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from hub.db import utcnow
from tests.conftest import HubDB
from tests.support.shop import SHOP, enable, make_shop, runs_of, use_workflows
from workflows import ticks, triggers

pytestmark = pytest.mark.both_databases

DORMANT_AND_WILLING = {"anna", "gleb", "dina", "zoya", "ivan"}  # SHOP people in dormant_90d


def a_morning() -> dt.datetime:
    """07:00 UTC a month ago: a fixed local time in the past."""
    return (utcnow() - dt.timedelta(days=30)).replace(hour=7, minute=0, second=0, microsecond=0)


@pytest.fixture
def wf(hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch) -> HubDB:
    return use_workflows(hub_db, plugin_manager, monkeypatch)


def test_members_enter_a_page_at_a_time_with_the_same_runs_and_holdout(wf: HubDB,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(triggers, "ENTRY_PAGE", 2)
    started_with: list[int] = []
    original = triggers.start

    def spying(conn: Any, row: Any, workflow: Any, candidates: Any, **kw: Any) -> triggers.StartReport:
        candidates = list(candidates)
        started_with.append(len(candidates))
        return original(conn, row, workflow, candidates, **kw)

    monkeypatch.setattr(triggers, "start", spying)
    t0 = a_morning()
    ids = make_shop(wf, SHOP, now=t0)
    enable(wf, "reactivation_90d", t0)
    report = ticks.tick(wf.engine, wf.settings, now=t0)
    expected = sorted(ids[k] for k in DORMANT_AND_WILLING)
    runs = runs_of(wf, "reactivation_90d")
    assert [r.contact_id for r in runs] == expected
    assert started_with and max(started_with) == 2 and sum(started_with) == len(expected)
    held = [r.contact_id for r in runs if r.holdout]
    assert held == [c for c in expected if triggers.in_holdout_name("reactivation_90d", c, 10)]
    assert all((r.status == "holdout") == r.holdout for r in runs)
    assert report.started["reactivation_90d"] == {"started": len(expected), "holdout": len(held), "skipped": 0}
    # A minute later everyone is in a run: nobody starts twice, and every member is counted as skipped.
    started_with.clear()
    again = ticks.tick(wf.engine, wf.settings, now=t0.replace(minute=1))
    assert again.started["reactivation_90d"] == {"started": 0, "holdout": 0, "skipped": len(expected)}
    assert started_with == [] and len(runs_of(wf, "reactivation_90d")) == len(expected)


def test_candidate_pages_follow_the_contact_ids_and_leave_out_who_is_in_a_run(wf: HubDB) -> None:
    from hub.segments import membership
    from workflows import store

    t0 = a_morning()
    ids = make_shop(wf, SHOP, now=t0)
    membership.refresh(wf.engine, wf.settings, ["dormant_90d"], now=t0)  # switched off: the refresh starts nobody
    with wf.engine.begin() as conn:
        store.install_library(conn)
        row, workflow = store.current(conn, wf.settings, "reactivation_90d")
        pages = list(triggers.candidate_pages(conn, row, workflow, "dormant_90d", now=t0, size=2))
        expected = sorted(ids[k] for k in DORMANT_AND_WILLING)
        assert pages == [expected[0:2], expected[2:4], expected[4:]]
        triggers.start(conn, row, workflow, [triggers.Candidate(ids["gleb"])], trigger="test", now=t0)
        left = [c for page in triggers.candidate_pages(conn, row, workflow, "dormant_90d", now=t0, size=2)
                for c in page]
        assert left == [c for c in expected if c != ids["gleb"]]


def test_a_large_entry_refreshes_the_runs_statistics_as_they_double(wf: HubDB, monkeypatch: pytest.MonkeyPatch) -> None:
    # Planned from statistics taken while workflow_runs was empty, each page's lookup of its members' runs read
    # the whole table: PostgreSQL is told the table's size each time the entry's runs double (SQLite needs none).
    from sqlalchemy import event

    monkeypatch.setattr(triggers, "ENTRY_PAGE", 1)
    monkeypatch.setattr(triggers, "ANALYZE_FROM", 1)
    analyzed: list[int] = []
    started = 0
    original = triggers.start

    def counting(*args: Any, **kw: Any) -> triggers.StartReport:
        nonlocal started
        report = original(*args, **kw)
        started += report.started
        return report

    def seen(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if statement.strip().upper() == "ANALYZE WORKFLOW_RUNS":
            analyzed.append(started)

    monkeypatch.setattr(triggers, "start", counting)
    t0 = a_morning()
    make_shop(wf, SHOP, now=t0)
    enable(wf, "reactivation_90d", t0)
    event.listen(wf.engine, "before_cursor_execute", seen)
    try:
        ticks.tick(wf.engine, wf.settings, now=t0)
    finally:
        event.remove(wf.engine, "before_cursor_execute", seen)
    assert started == len(DORMANT_AND_WILLING)
    assert analyzed == ([1, 2, 4] if wf.dialect == "postgresql" else [])
