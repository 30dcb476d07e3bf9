"""Jobs on a real Redis with RQ workers, and the same jobs in-process without Redis."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import func, select

from hub import jobs, queue
from hub.config import SettingsError
from hub.models import ExternalRef, SyncRun
from tests.conftest import HubDB
from tests.plugins import sample_source
from tests.plugins.sample_source import FakeCRM
from tests.processes import hub_process


def fill(crm: FakeCRM, n: int) -> None:
    for i in range(1, n + 1):
        crm.add_contact(i, first=f"К{i}", phones=[f"+7916{i:07d}"])


def refs(db: HubDB) -> int:
    with db.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(ExternalRef)).scalar_one()


def test_without_redis_jobs_run_in_process(hub_db: HubDB, plugin_manager) -> None:
    sample_source.CRM = FakeCRM()
    fill(sample_source.CRM, 5)
    plugin_manager.register(sample_source)
    done = queue.enqueue(hub_db.settings, jobs.sync_source, "sample", full=True)
    assert done.inline and done.result["contacts"]["created"] == 5
    assert refs(hub_db) == 5


def test_rq_worker_runs_the_enqueued_sync(hub_db: HubDB, plugin_manager, redis_url: str, monkeypatch) -> None:
    Redis.from_url(redis_url).flushdb()
    sample_source.CRM = FakeCRM()
    fill(sample_source.CRM, 7)
    plugin_manager.register(sample_source)
    settings = replace(hub_db.settings, redis_url=redis_url)
    monkeypatch.setenv("HUB_REDIS_URL", redis_url)
    enqueued = queue.enqueue(settings, jobs.sync_source, "sample", full=True, job_id="sync-sample")
    again = queue.enqueue(settings, jobs.sync_source, "sample", full=True, job_id="sync-sample")
    assert not enqueued.inline and again.job.id == enqueued.job.id
    assert refs(hub_db) == 0  # nothing ran yet: it waits for a worker
    assert queue.health(settings)["queues"]["default"]["queued"] == 1
    queue.work(settings, ("default",), burst=True, simple=True)
    assert refs(hub_db) == 7
    assert enqueued.job.get_status(refresh=True) == "finished"
    assert enqueued.job.return_value()["contacts"]["created"] == 7


def test_a_job_may_run_for_hours_on_rq(hub_db: HubDB, redis_url: str) -> None:
    """A full sync of a large portal outlasts RQ's default of 180 s; HUB_JOB_TIMEOUT_S says how long instead."""
    Redis.from_url(redis_url).flushdb()
    settings = replace(hub_db.settings, redis_url=redis_url)
    assert queue.enqueue(settings, jobs.sync_source, "sample").job.timeout == queue.JOB_TIMEOUT_S >= 3600
    shorter = replace(settings, extra={**settings.extra, "job_timeout_s": "7200"})
    assert queue.enqueue(shorter, jobs.sync_source, "other").job.timeout == 7200
    for wrong in ("soon", "5", "-1"):
        with pytest.raises(SettingsError, match="HUB_JOB_TIMEOUT_S"):
            queue.job_timeout(replace(settings, extra={"job_timeout_s": wrong}))
    Redis.from_url(redis_url).flushdb()


def test_a_job_whose_worker_died_is_handed_out_again_without_waiting_for_rqs_clean_up(hub_db: HubDB,
                                                                                     redis_url: str) -> None:
    import time

    from rq import Queue

    redis = Redis.from_url(redis_url)
    redis.flushdb()
    settings = replace(hub_db.settings, redis_url=redis_url)
    first = queue.enqueue(settings, jobs.sync_source, "sample", job_id="schedule-sync-sample").job
    q = Queue("default", connection=redis)

    def taken_by_a_worker(heartbeat_until: float) -> None:  # what a worker's horse records, then its heartbeats
        q.remove(first)
        first.set_status("started")
        redis.zadd(q.started_job_registry.key, {f"{first.id}:e1": heartbeat_until})

    taken_by_a_worker(time.time() + 60)  # alive: the same job is still running, nothing is enqueued again
    again = queue.enqueue(settings, jobs.sync_source, "sample", job_id="schedule-sync-sample")
    assert again.job.get_status(refresh=True) == "started" and len(q) == 0
    taken_by_a_worker(time.time() - 1)  # its machine died: the heartbeat lapsed
    after = queue.enqueue(settings, jobs.sync_source, "sample", job_id="schedule-sync-sample")
    assert after.job.get_status(refresh=True) == "queued" and len(q) == 1
    redis.flushdb()


def test_hub_worker_process_drains_the_queue(hub_db: HubDB, redis_url: str, tmp_path: Path) -> None:
    Redis.from_url(redis_url).flushdb()
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "tiny_source.py").write_text(
        "from hub.hookspecs import hookimpl\n"
        "from hub.records import ContactRecord\n"
        "from hub.sync import Page\n"
        "class Tiny:\n"
        "    name = 'tiny'\n"
        "    def entities(self): return ('contacts',)\n"
        "    def checkpoint(self, entity): return 'done'\n"
        "    def read(self, entity, cursor, full):\n"
        "        yield Page([ContactRecord(source='tiny', external_id=str(i), phones=[f'+7903{i:07d}'])"
        " for i in range(3)], None)\n"
        "@hookimpl\n"
        "def register_sources(register):\n"
        "    register('tiny', lambda settings: Tiny())\n",
        encoding="utf-8",
    )
    env = {**os.environ, "HUB_DATABASE_URL": hub_db.url, "HUB_REDIS_URL": redis_url,
           "HUB_PLUGINS_DIR": str(plugin_dir), "HUB_SECRET_KEY": hub_db.settings.secret_key, "HUB_PLUGINS": ""}
    settings = replace(hub_db.settings, redis_url=redis_url)
    queue.enqueue(settings, jobs.sync_source, "tiny", full=True)
    with hub_process(["worker", "--burst"], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True) as worker:
        _, stderr = worker.communicate(timeout=600)  # on any failure the worker and its horse are killed
    assert worker.returncode == 0, stderr
    assert refs(hub_db) == 3
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(SyncRun.status)).scalar_one() == "ok"


def test_worker_without_redis_explains_itself(hub_db: HubDB) -> None:
    from click.testing import CliRunner

    from tests.support.cli import cli

    result = CliRunner().invoke(cli, ["worker"])
    assert result.exit_code == 1 and "HUB_REDIS_URL не задан" in result.output


def test_any_job_id_becomes_one_rq_accepts_and_stays_idempotent() -> None:
    assert queue.job_key("sync-bitrix24") == "sync-bitrix24"  # ids RQ accepts are kept as they are
    mapped = queue.job_key("bitrix24:contacts:17:1724916859")
    assert mapped == queue.job_key("bitrix24:contacts:17:1724916859")
    assert mapped.startswith("bitrix24-contacts-17-1724916859-")
    assert queue.job_key("a:b") not in ("a_b", "a-b")  # different ids never meet
    long = queue.job_key("x" * 500)
    assert long != queue.job_key("x" * 499) and len(long) < 100
    for odd in ("", ":::", "Запрос/№5 {json}", "x" * 65):
        from rq.job import JOB_ID_PATTERN

        assert JOB_ID_PATTERN.fullmatch(queue.job_key(odd)), odd


def test_a_job_id_with_a_colon_is_enqueued_on_rq_once(hub_db: HubDB, plugin_manager, redis_url: str,
                                                       monkeypatch) -> None:
    Redis.from_url(redis_url).flushdb()
    sample_source.CRM = FakeCRM()
    fill(sample_source.CRM, 2)
    plugin_manager.register(sample_source)
    settings = replace(hub_db.settings, redis_url=redis_url)
    monkeypatch.setenv("HUB_REDIS_URL", redis_url)
    first = queue.enqueue(settings, jobs.sync_source, "sample", full=True, job_id="sync:sample:full")
    second = queue.enqueue(settings, jobs.sync_source, "sample", full=True, job_id="sync:sample:full")
    assert not first.inline and second.job.id == first.job.id
    assert queue.health(settings)["queues"]["default"]["queued"] == 1
    queue.work(settings, ("default",), burst=True, simple=True)
    assert first.job.get_status(refresh=True) == "finished" and refs(hub_db) == 2


def test_a_workers_command_listener_looks_every_second_whether_to_stop(redis_url: str) -> None:
    """RQ waits for this thread when a worker stops: with minute-long reads, a stop could take a minute."""
    for worker_class in queue.worker_classes():
        worker = worker_class(["default"], connection=Redis.from_url(redis_url))
        worker.subscribe()
        try:
            assert worker.pubsub_thread.sleep_time == queue.LISTEN_S <= 1
        finally:
            worker.unsubscribe()
