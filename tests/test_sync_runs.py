"""Sync runs left 'running' by a process that died are marked 'interrupted' when the next run starts."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, insert, select

from hub import sync
from hub.db import utcnow
from hub.models import ExternalRef, SyncRun
from tests.conftest import HubDB
from tests.plugins import sample_source
from tests.plugins.sample_source import FakeCRM
from tests.support.cli import cli

pytestmark = pytest.mark.both_databases  # sync runs' bookkeeping under concurrent processes

# A source that commits one page, then hangs, as a sync stuck on a slow CRM would, until it is killed.
HANGING_SOURCE = """
import threading
from hub.hookspecs import hookimpl
from hub.records import ContactRecord
from hub.sync import Page

class Hanging:
    name = "sample"
    def entities(self): return ("contacts",)
    def checkpoint(self, entity): return "tick:0"
    def read(self, entity, cursor, full):
        yield Page([ContactRecord(source="sample", external_id="500", phones=["+79030000500"])], "500")
        threading.Event().wait()

@hookimpl
def register_sources(register):
    register("sample", lambda settings: Hanging())
"""


@pytest.fixture
def crm(plugin_manager) -> FakeCRM:
    fresh = FakeCRM()
    sample_source.CRM = fresh
    plugin_manager.register(sample_source)
    for i in range(1, 5):
        fresh.add_contact(i, first=f"Имя{i}", phones=[f"8 916 000-00-{i:02d}"])
    return fresh


def runs(db: HubDB) -> dict[int, tuple[str, str | None]]:
    with db.engine.connect() as conn:
        return {r.id: (r.status, r.error) for r in conn.execute(select(SyncRun.id, SyncRun.status, SyncRun.error))}


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(done.stdout)


def test_a_sync_killed_mid_run_is_marked_interrupted_by_the_next_run(hub_db: HubDB, crm: FakeCRM,
                                                                     tmp_path: Path) -> None:
    plugin_dir = tmp_path / "hanging"
    plugin_dir.mkdir()
    (plugin_dir / "hanging_source.py").write_text(HANGING_SOURCE, encoding="utf-8")
    env = {**os.environ, "HUB_DATABASE_URL": hub_db.url, "HUB_PLUGINS_DIR": str(plugin_dir), "HUB_PLUGINS": "",
           "HUB_SECRET_KEY": hub_db.settings.secret_key}
    env.pop("HUB_REDIS_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "hub", "sync", "sample", "--json"], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:  # wait until its first page is committed: it is mid-run now
            with hub_db.engine.connect() as conn:
                if conn.execute(select(func.count()).select_from(ExternalRef)).scalar_one():
                    break
            assert proc.poll() is None, "the hanging sync exited on its own"
            assert time.monotonic() < deadline, "the hanging sync never committed its first page"
            time.sleep(0.1)
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ((killed, (status, _)),) = runs(hub_db).items()
    assert status == "running"  # what a kill -9 leaves behind

    result = CliRunner().invoke(cli, ["sync", "sample"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"Прошлый запуск #{killed} источника sample не завершился" in result.output
    assert "теперь помечен прерванным" in result.output
    after = runs(hub_db)
    assert after[killed][0] == "interrupted" and f"(pid {proc.pid}) is gone" in (after[killed][1] or "")
    assert [status for run_id, (status, _) in after.items() if run_id != killed] == ["ok"]


def test_only_runs_whose_process_is_gone_or_silent_past_the_lease_are_interrupted(hub_db: HubDB,
                                                                                  crm: FakeCRM) -> None:
    host, now = socket.gethostname(), utcnow()
    long_ago = now - sync.RUN_LEASE - dt.timedelta(minutes=1)
    rows = {
        "dead_here": ("sample", f"{host}/{dead_pid()}/abc", now),
        "alive_here": ("sample", f"{host}/{os.getppid()}/abc", now),
        "elsewhere_fresh": ("sample", "other-host/4242/abc", now),
        "elsewhere_silent": ("sample", "other-host/4242/abc", long_ago),
        "before_owners": ("sample", None, None),
        "this_process_lost": ("sample", sync._owner(), now),
        "other_source": ("amocrm", f"{host}/{dead_pid()}/abc", now),
    }
    ids = {}
    with hub_db.engine.begin() as conn:
        for name, (source, owner, beat) in rows.items():
            started = long_ago if name == "before_owners" else now
            # Webhook event fetches: several may run at once, and a live one does not hold its source
            # (a live sync would refuse this sync: tests/test_sync_single_run.py).
            ids[name] = conn.execute(insert(SyncRun).returning(SyncRun.id), {
                "source": source, "kind": "event", "status": "running", "counts": {}, "errors": [],
                "started_at": started, "owner": owner, "heartbeat_at": beat}).scalar_one()
    report = sync.run(hub_db.engine, hub_db.settings, "sample", full=True)
    status = {name: runs(hub_db)[run_id][0] for name, run_id in ids.items()}
    assert status == {"dead_here": "interrupted", "alive_here": "running", "elsewhere_fresh": "running",
                      "elsewhere_silent": "interrupted", "before_owners": "interrupted",
                      "this_process_lost": "interrupted", "other_source": "running"}
    assert sorted(report.as_dict()["interrupted"]) == sorted(
        ids[n] for n in ("dead_here", "elsewhere_silent", "before_owners", "this_process_lost"))
    errors = {name: runs(hub_db)[run_id][1] for name, run_id in ids.items()}
    assert "no progress for more than 30 minutes" in errors["elsewhere_silent"]
    assert runs(hub_db)[report.run_id][0] == "ok"


def test_a_live_run_marked_by_mistake_takes_it_back_at_its_next_page(hub_db: HubDB, crm: FakeCRM) -> None:
    run_id = sync.start_run(hub_db.engine, "sample", "full")
    with hub_db.engine.begin() as conn:  # as seen from another host: silent past the lease
        conn.execute(SyncRun.__table__.update().where(SyncRun.id == run_id).values(
            owner="other-host/4242/abc", heartbeat_at=utcnow() - sync.RUN_LEASE * 2))
        assert sync.interrupt_stale_runs(conn, "sample") == [run_id]
    with hub_db.engine.begin() as conn:
        sync.heartbeat(conn, run_id)
    assert runs(hub_db)[run_id] == ("running", None)
    sync.finish_run(hub_db.engine, run_id, sync.Counts())
    assert runs(hub_db)[run_id][0] == "ok"


def test_a_sync_stopped_by_ctrl_c_says_interrupted_at_once(hub_db: HubDB, crm: FakeCRM,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def stop(self: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(sample_source.SampleSource, "_serve", stop)
    with pytest.raises(KeyboardInterrupt):
        sync.run(hub_db.engine, hub_db.settings, "sample", full=True)
    ((_, (status, error)),) = runs(hub_db).items()
    assert status == "interrupted" and error == "interrupted: stopped before it finished"


def test_a_large_run_leaves_postgresql_with_planner_statistics(hub_db: HubDB, monkeypatch) -> None:
    """A segment refresh right after a first big import must not be planned without statistics."""
    from sqlalchemy import text

    def analyzes() -> int:  # counted, not "ever analyzed": the migrations analyze contacts once themselves
        with hub_db.engine.connect() as conn:
            return conn.execute(text("SELECT analyze_count FROM pg_stat_user_tables "
                                     "WHERE relname = 'contacts'")).scalar_one()

    monkeypatch.setattr(sync, "ANALYZE_AFTER_ROWS", 3)
    postgres = hub_db.engine.dialect.name == "postgresql"
    before = analyzes() if postgres else 0
    small = sync.start_run(hub_db.engine, "t", "import")
    sync.finish_run(hub_db.engine, small, sync.Counts(contacts={"created": 2, "updated": 0, "refused": 5}))
    if not postgres:
        return  # SQLite plans well without statistics; nothing to refresh
    assert analyzes() == before  # two rows written: not worth it (refused ones were not written)
    large = sync.start_run(hub_db.engine, "t", "import")
    sync.finish_run(hub_db.engine, large, sync.Counts(contacts={"created": 2, "merged": 1}, orders={"created": 1}))
    assert analyzes() == before + 1


def test_statistics_are_refreshed_each_time_what_a_run_wrote_doubles(hub_db: HubDB, monkeypatch) -> None:
    """A first import into an empty PostgreSQL base must not plan its identity lookups as scans of "empty" tables."""
    from sqlalchemy import text

    def analyze_count() -> int:
        with hub_db.engine.connect() as conn:
            return conn.execute(text("SELECT analyze_count FROM pg_stat_user_tables "
                                     "WHERE relname = 'contact_identities'")).scalar_one()

    monkeypatch.setattr(sync, "ANALYZE_GROWTH_FROM", 4)
    counts = sync.Counts()
    postgres = hub_db.engine.dialect.name == "postgresql"
    seen = []
    before = analyze_count() if postgres else 0
    for created in (3, 4, 6, 7, 8, 15, 16):
        counts.contacts["created"] = created
        sync.keep_statistics(hub_db.engine, counts)
        seen.append(counts.analyzed_at)
    if not postgres:
        assert seen == [0] * 7  # SQLite plans these lookups well without statistics
        return
    assert seen == [0, 4, 4, 4, 8, 8, 16]  # from 4 rows on, each time the rows written doubled
    assert analyze_count() - before == 3
