"""One live sync per source at a time, across processes: a second one is refused before it reads anything.

Two syncs of one CRM account at once each pace themselves alone against its
rate limit and together get the account blocked. The database holds the rule
(a partial unique index on sync_runs, migration 0019), so it holds for
processes that race on SQLite and on PostgreSQL alike; a dead run does not
hold it, and other sources, event fetches and imports are not held by it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import multiprocessing
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, insert, make_url, select, text

from hub import migrations, queue, schedule, sync
from hub.db import dispose_engines, get_engine, utcnow
from hub.models import AuditEntry, SyncRun
from tests.conftest import HubDB
from tests.plugins import sample_source
from tests.plugins.sample_source import FakeCRM
from tests.support.admin import AdminEnv, client_as, plain, post
from tests.support.cli import cli

pytestmark = pytest.mark.both_databases  # the rule is the database's: proven on each

# A source that notes each read in $GATE_DIR/reads, then waits for $GATE_DIR/open before its one page.
GATE_SOURCE = """
import os, pathlib, time
from hub.hookspecs import hookimpl
from hub.records import ContactRecord
from hub.sync import Page

DIR = pathlib.Path(os.environ["GATE_DIR"])

class Gate:
    name = "gate"
    def entities(self): return ("contacts",)
    def checkpoint(self, entity): return "tick:0"
    def read(self, entity, cursor, full):
        with open(DIR / "reads", "a") as f:
            f.write(f"{os.getpid()}\\n")
        while not (DIR / "open").exists():
            time.sleep(0.02)
        yield Page([ContactRecord(source="gate", external_id="1", phones=["+79030000001"])], "1")

@hookimpl
def register_sources(register):
    register("gate", lambda settings: Gate())
"""


@pytest.fixture
def crm(plugin_manager: Any) -> FakeCRM:
    fresh = FakeCRM()
    sample_source.CRM = fresh
    plugin_manager.register(sample_source)
    fresh.add_contact(1, first="Анна", phones=["8 916 000-00-01"])
    return fresh


def live_elsewhere(db: HubDB, source: str = "sample", kind: str = "incremental", *, beat: dt.datetime | None = None,
                   owner: str = "crm-worker-2/4242/abc") -> int:
    """A running row as another machine's live sync leaves it: fresh heartbeat, an owner we cannot probe."""
    now = utcnow()
    with db.engine.begin() as conn:
        return conn.execute(insert(SyncRun).returning(SyncRun.id), {
            "source": source, "kind": kind, "status": "running", "counts": {}, "errors": [],
            "started_at": beat or now, "owner": owner, "heartbeat_at": beat or now}).scalar_one()


def statuses(db: HubDB) -> dict[int, str]:
    with db.engine.connect() as conn:
        return {r.id: r.status for r in conn.execute(select(SyncRun.id, SyncRun.status))}


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(done.stdout)


# --- two real processes at the same moment ------------------------------------------------------

def test_two_hub_sync_processes_at_once_one_syncs_the_other_is_refused_unread(hub_db: HubDB, tmp_path: Path) -> None:
    plugin_dir, gate = tmp_path / "plugins", tmp_path / "gate"
    plugin_dir.mkdir()
    gate.mkdir()
    (plugin_dir / "gate_source.py").write_text(GATE_SOURCE, encoding="utf-8")
    env = {**os.environ, "HUB_DATABASE_URL": hub_db.url, "HUB_PLUGINS_DIR": str(plugin_dir), "HUB_PLUGINS": "",
           "HUB_SECRET_KEY": str(hub_db.settings.secret_key), "GATE_DIR": str(gate), "HUB_LANGUAGE": "en"}
    env.pop("HUB_REDIS_URL", None)
    procs = [subprocess.Popen([sys.executable, "-m", "hub", "sync", "gate", "--full", "--json"], env=env,
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        deadline = time.monotonic() + 120
        while all(p.poll() is None for p in procs):  # the loser ends on its own; the winner waits at the gate
            assert time.monotonic() < deadline, "neither sync was refused"
            time.sleep(0.05)
        (gate / "open").touch()
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], outputs
    won = next(json.loads(out) for p, (out, _err) in zip(procs, outputs, strict=True) if p.returncode == 0)
    lost_proc, (lost_out, lost_err) = next((p, o) for p, o in zip(procs, outputs, strict=True) if p.returncode == 1)
    refused = json.loads(lost_out)  # one JSON document on stdout, nothing else
    winner = next(p for p in procs if p.returncode == 0)
    assert refused["error"] == "sync_running" and refused["source"] == "gate"
    assert refused["running_run"]["id"] == won["run"] and refused["running_run"]["pid"] == winner.pid
    assert refused["running_run"]["host"] == socket.gethostname()[:100]
    assert f"run #{won['run']}" in refused["message"] and "Traceback" not in lost_err
    assert (gate / "reads").read_text().split() == [str(winner.pid)]  # the refused one read nothing
    assert lost_proc.pid != winner.pid and won["contacts"]["created"] == 1
    assert sorted(statuses(hub_db).values()) == ["ok"]  # the refused one left no row behind


def _race(url: str, source: str, barrier: Any, results: Any, release: Any) -> None:
    """One racer: start a run of `source` the moment every racer is ready; hold it until released."""
    engine = get_engine(url)
    barrier.wait(timeout=60)
    try:
        run_id = sync.start_run(engine, source, "incremental")
    except sync.SyncBusy as busy:
        results.put(("refused", busy.live.id))
        return
    results.put(("won", run_id))
    release.wait(timeout=60)
    sync.finish_run(engine, run_id, sync.Counts())


@pytest.mark.parametrize("racers", [2, 4])
def test_processes_racing_to_start_the_same_source_exactly_one_wins(hub_db: HubDB, racers: int) -> None:
    spawn = multiprocessing.get_context("spawn")
    for round_ in range(3):
        barrier, results, release = spawn.Barrier(racers), spawn.Queue(), spawn.Event()
        procs = [spawn.Process(target=_race, args=(hub_db.url, "amocrm", barrier, results, release))
                 for _ in range(racers)]
        for p in procs:
            p.start()
        try:
            seen = [results.get(timeout=120) for _ in procs]
        finally:
            release.set()
            for p in procs:
                p.join(timeout=60)
                if p.is_alive():
                    p.kill()
        winners = [run_id for outcome, run_id in seen if outcome == "won"]
        assert len(winners) == 1, (round_, seen)
        assert [run_id for outcome, run_id in seen if outcome == "refused"] == winners * (racers - 1)
        assert all(p.exitcode == 0 for p in procs)
    assert list(statuses(hub_db).values()) == ["ok"] * 3  # one run a round, each finished


def test_when_two_get_past_the_check_at_once_the_index_refuses_the_second(hub_db: HubDB,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """On PostgreSQL two transactions can both see no live run; the unique index then decides."""
    live = live_elsewhere(hub_db, "amocrm", "full")
    looked = []
    real = sync.live_run

    def not_yet_committed(conn: Any, source: str) -> Any:  # the first look misses the other's uncommitted row
        looked.append(source)
        return None if len(looked) == 1 else real(conn, source)

    monkeypatch.setattr(sync, "live_run", not_yet_committed)
    with pytest.raises(sync.SyncBusy) as refused:
        sync.start_run(hub_db.engine, "amocrm", "incremental")
    assert refused.value.live.id == live and looked == ["amocrm", "amocrm"]
    assert statuses(hub_db) == {live: "running"} and not sync._active_runs


# --- what holds a source, and what does not -------------------------------------------------------

def test_a_stale_run_does_not_block_but_a_live_one_does(hub_db: HubDB, crm: FakeCRM) -> None:
    here = socket.gethostname()
    dead = live_elsewhere(hub_db, owner=f"{here}/{dead_pid()}/abc")  # its process is gone
    first = sync.run(hub_db.engine, hub_db.settings, "sample")
    assert first.as_dict()["interrupted"] == [dead]

    silent = live_elsewhere(hub_db, beat=utcnow() - sync.RUN_LEASE - dt.timedelta(minutes=1))  # lease expired
    second = sync.run(hub_db.engine, hub_db.settings, "sample")
    assert second.as_dict()["interrupted"] == [silent]

    live = live_elsewhere(hub_db)
    with pytest.raises(sync.SyncBusy) as refused:
        sync.run(hub_db.engine, hub_db.settings, "sample", full=True)
    assert refused.value.live.id == live and refused.value.live.host == "crm-worker-2"
    assert refused.value.live.pid == 4242
    with pytest.raises(sync.SyncBusy):
        sync.reconcile(hub_db.engine, hub_db.settings, "sample")  # a reconcile pass reads the whole CRM too
    assert statuses(hub_db) == {dead: "interrupted", first.run_id: "ok", silent: "interrupted", second.run_id: "ok",
                                live: "running"}


def test_other_sources_event_fetches_and_imports_run_beside_a_live_sync(hub_db: HubDB, crm: FakeCRM) -> None:
    live_elsewhere(hub_db, "amocrm")
    live_elsewhere(hub_db, "bitrix24", "reconcile")
    report = sync.run(hub_db.engine, hub_db.settings, "sample")  # a different source: side by side
    assert report.as_dict()["contacts"]["created"] == 1

    live_elsewhere(hub_db, "sample", "full")
    crm.add_contact(2, first="Олег", phones=["8 903 111-22-33"])
    fetched = sync.fetch(hub_db.engine, hub_db.settings, "sample", "contacts", ["2"])  # an event's few records
    assert fetched.as_dict()["contacts"]["created"] == 1
    imported = sync.start_run(hub_db.engine, "sample", "import")  # a spreadsheet reads no CRM
    sync.finish_run(hub_db.engine, imported, sync.Counts())
    with hub_db.engine.connect() as conn:
        running = conn.execute(select(SyncRun.source, SyncRun.kind).where(SyncRun.status == "running")
                               .order_by(SyncRun.id)).all()
    assert [tuple(r) for r in running] == [("amocrm", "incremental"), ("bitrix24", "reconcile"), ("sample", "full")]


def test_a_live_run_silent_past_its_lease_stops_when_another_took_its_source(hub_db: HubDB, crm: FakeCRM) -> None:
    old = sync.start_run(hub_db.engine, "sample", "full")
    with hub_db.engine.begin() as conn:  # as another host sees it: silent past the lease
        conn.execute(SyncRun.__table__.update().where(SyncRun.id == old).values(
            owner="crm-worker-2/4242/abc", heartbeat_at=utcnow() - sync.RUN_LEASE * 2))
    newer = sync.start_run(hub_db.engine, "sample", "incremental")  # marks the old one interrupted, takes over
    with pytest.raises(sync.SyncError, match=f"запуск #{old} источника sample слишком долго не продвигался"):
        with hub_db.engine.begin() as conn:
            sync.heartbeat(conn, old)  # the old one's next page: it may not come back as a second live run
    assert statuses(hub_db) == {old: "interrupted", newer: "running"}
    with hub_db.engine.begin() as conn:
        sync.heartbeat(conn, newer)
    sync.finish_run(hub_db.engine, newer, sync.Counts())
    with hub_db.engine.begin() as conn:  # with no other run live, a run marked by mistake takes its row back
        sync.heartbeat(conn, old)
    assert statuses(hub_db) == {old: "running", newer: "ok"}
    sync.finish_run(hub_db.engine, old, sync.Counts())


# --- what people and the scheduler see ----------------------------------------------------------------

def test_hub_sync_says_in_russian_and_english_which_run_holds_the_source(hub_db: HubDB, crm: FakeCRM) -> None:
    live = live_elsewhere(hub_db)
    ru = CliRunner().invoke(cli, ["sync", "sample"])
    assert ru.exit_code == 1 and "Traceback" not in ru.output, ru.output
    assert f"sample уже синхронизируется: запуск #{live} (только изменения)" in ru.output
    assert "на crm-worker-2, процесс 4242" in ru.output and "запустите `hub sync sample` снова" in ru.output
    assert "помечен прерванным сам" in ru.output

    en = CliRunner().invoke(cli, ["sync", "sample"], env={"HUB_LANGUAGE": "en"})
    assert en.exit_code == 1, en.output
    assert f"sample is already being synced: run #{live} (changes only)" in en.output
    assert "on crm-worker-2 by process 4242" in en.output and "run `hub sync sample` again" in en.output

    shown = CliRunner().invoke(cli, ["sync", "sample", "--json"])
    assert shown.exit_code == 1
    data = json.loads(shown.stdout)
    assert {k: data[k] for k in ("error", "source")} == {"error": "sync_running", "source": "sample"}
    assert data["running_run"]["id"] == live and data["running_run"]["kind"] == "incremental"
    assert data["running_run"]["host"] == "crm-worker-2" and data["running_run"]["pid"] == 4242
    assert statuses(hub_db) == {live: "running"}  # nothing recorded for the refused ones


def test_the_scheduled_sync_skips_a_source_that_is_syncing_quietly(hub_db: HubDB, crm: FakeCRM,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    sync.run(hub_db.engine, hub_db.settings, "sample")  # connected
    crm.add_contact(2, first="Олег", phones=["8 903 111-22-33"])
    live = live_elsewhere(hub_db)  # a `hub sync sample` typed on another machine
    caplog.set_level(logging.INFO, logger="hub.jobs")
    for only in (["sync"], ["reconcile"]):
        assert schedule.run_due(hub_db.engine, hub_db.settings, only=only).ran[only[0]] == {"sample": "started"}
        queue.drain(timeout=60)
    last = schedule.last_runs(hub_db.engine)
    for job in ("sync:sample", "reconcile:sample"):
        assert last[job]["last_error"] is None  # not a failure: nothing to show in red every tick
        result = last[job]["last_result"]
        assert {k: result[k] for k in ("skipped", "source")} == {"skipped": "sync_running", "source": "sample"}
        assert result["running_run"]["id"] == live  # the same record of the live run as `hub sync --json` gives
    skips = [r for r in caplog.records if r.name == "hub.jobs" and "skipped" in r.getMessage()]
    assert [r.levelno for r in skips] == [logging.INFO, logging.INFO]
    assert not [r for r in caplog.records if r.name.startswith("hub") and r.levelno >= logging.WARNING]
    assert len(statuses(hub_db)) == 2  # the first sync and the live one: the skips started nothing

    with hub_db.engine.begin() as conn:  # the other machine's sync ends; the next pass syncs
        conn.execute(SyncRun.__table__.update().where(SyncRun.id == live).values(status="ok"))
    schedule.run_due(hub_db.engine, hub_db.settings, only=["sync"], now=utcnow() + dt.timedelta(hours=1))
    queue.drain(timeout=60)
    assert "skipped" not in schedule.last_runs(hub_db.engine)["sync:sample"]["last_result"]


def test_sync_now_in_the_admin_says_a_sync_is_running_and_starts_nothing(admin_env: AdminEnv) -> None:
    live = live_elsewhere(admin_env.db, "bitrix24", "full")
    admin = client_as(admin_env, "admin")
    shown = plain(post(admin, "/connections/bitrix24/sync", {"full": "y"}, follow_redirects=True))
    assert f"bitrix24 уже синхронизируется: запуск #{live} (полная синхронизация)" in shown
    assert "запущена" not in shown
    queue.drain(timeout=60)
    assert statuses(admin_env.db) == {live: "running"}
    with admin_env.engine.connect() as conn:
        assert not conn.execute(select(AuditEntry.id).where(AuditEntry.action == "sync_requested")).first()


# --- the migration ----------------------------------------------------------------------------------

@pytest.fixture
def blank_url(hub_db: HubDB, tmp_path: Path) -> Iterator[str]:
    """An untouched database of the same kind as hub_db's, to migrate step by step."""
    if hub_db.dialect == "sqlite":
        yield f"sqlite:///{tmp_path / 'blank.db'}"
        return
    name = f"hub_blank_{uuid.uuid4().hex[:12]}"
    admin = create_engine(hub_db.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(hub_db.url).set(database=name).render_as_string(hide_password=False)
    finally:
        dispose_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def test_the_migration_keeps_the_newest_live_run_of_a_source_and_interrupts_older_ones(blank_url: str) -> None:
    engine = get_engine(blank_url)
    migrations.upgrade(engine, "0018")
    now = utcnow()
    rows = [("amocrm", "full", "running"), ("amocrm", "incremental", "running"), ("amocrm", "event", "running"),
            ("bitrix24", "reconcile", "running"), ("bitrix24", "incremental", "ok"), ("csv", "import", "running"),
            ("csv", "import", "running")]
    with engine.begin() as conn:
        for source, kind, status in rows:
            conn.execute(insert(SyncRun), {"source": source, "kind": kind, "status": status, "counts": {},
                                           "errors": [], "started_at": now, "owner": None, "heartbeat_at": now})
    migrations.upgrade(engine, "0019")
    with engine.connect() as conn:
        after = [(r.id, r.status, r.error, r.finished_at) for r in conn.execute(
            select(SyncRun.id, SyncRun.status, SyncRun.error, SyncRun.finished_at).order_by(SyncRun.id))]
    assert [status for _id, status, _error, _at in after] == [
        "interrupted", "running", "running", "running", "ok", "running", "running"]
    assert after[0][2] == "interrupted: a newer run of the same source was running"
    assert after[0][3] is not None and abs(after[0][3] - utcnow()) < dt.timedelta(minutes=5)
    with pytest.raises(Exception, match="(?i)unique"):
        with engine.begin() as conn:  # from now on the database itself refuses a second live sync
            conn.execute(insert(SyncRun), {"source": "amocrm", "kind": "full", "status": "running", "counts": {},
                                           "errors": [], "started_at": now, "owner": None, "heartbeat_at": now})
    dispose_engines()
