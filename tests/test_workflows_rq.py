"""Workflows on Redis and RQ: a real redis-server, RQ workers, and a real SMTP server.

The scheduler's tick enqueues due runs in batches (jobs carry run ids only);
SimpleWorker in burst mode runs them in these tests, and real `hub worker`
processes in the end-to-end test that kills one of them with SIGKILL in the
middle of a campaign. Redis is flushed mid-campaign too: the database is the
only record of progress, so the next tick puts the work back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest
from aiosmtpd.controller import Controller
from redis import Redis
from sqlalchemy import select, update

from hub import messaging, queue, schedule
from hub.config import load_settings
from hub.db import utcnow
from hub.models import Message, WorkflowRun
from tests.conftest import HubDB
from tests.test_workflows import SHOP, Person, enable, make_shop, runs_of, use_workflows
from workflows import engine, jobs, scheduler

ROOT = Path(__file__).resolve().parent.parent
_TRACKING = re.compile(rb"\r\nX-Hub-Message-Id: (\d+)\r\n")


class Sink:
    """An SMTP server's log: which message ids and recipients arrived, slowed down to take some time."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.ids: list[int] = []
        self.recipients: list[str] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        m = _TRACKING.search(envelope.content)
        with self.lock:
            self.ids.append(int(m.group(1)) if m else -1)
            self.recipients.extend(envelope.rcpt_tos)
        return "250 2.0.0 Accepted"


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    handler = Sink(delay=0.01)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


@pytest.fixture
def wf(hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch) -> HubDB:
    return use_workflows(hub_db, plugin_manager, monkeypatch)


@pytest.fixture
def rq(wf: HubDB, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> HubDB:
    """Hub with Redis: jobs read HUB_REDIS_URL from the environment, as `hub worker` does."""
    Redis.from_url(redis_url).flushdb()
    monkeypatch.setenv("HUB_REDIS_URL", redis_url)
    return replace(wf, settings=load_settings())


def burst(db: HubDB) -> None:
    queue.work(db.settings, ("default", "low"), burst=True, simple=True)


def emails(db: HubDB) -> list[Any]:
    with db.engine.connect() as conn:
        return list(conn.execute(select(Message).where(Message.channel == "email")))


def test_the_tick_enqueues_batches_of_run_ids_for_workers(rq: HubDB, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_WORKFLOWS_BATCH_SIZE", "3")
    rq = replace(rq, settings=load_settings())
    ids = make_shop(rq, SHOP, now=utcnow())
    enable(rq, "reactivation_90d")
    report = scheduler.tick(rq.engine, rq.settings)
    treated = [r for r in runs_of(rq, "reactivation_90d") if not r.holdout]
    assert report.enqueued == len(treated) and report.jobs == -(-len(treated) // 3)
    assert emails(rq) == []  # nothing runs in the scheduler when there are workers
    from rq import Queue

    queued = Queue("default", connection=Redis.from_url(rq.settings.redis_url)).jobs
    advancing = [j for j in queued if j.func_name == "workflows.jobs.advance_runs"]
    assert len(advancing) == report.jobs and all(isinstance(i, int) for j in advancing for i in j.args[0])
    again = scheduler.tick(rq.engine, rq.settings)
    assert again.enqueued == 0  # the runs sit in live jobs already
    burst(rq)
    sent = emails(rq)
    assert sorted(m.contact_id for m in sent) == sorted(r.contact_id for r in treated)
    assert {m.status for m in sent} == {"sent"}
    assert all(r.status == "waiting" for r in runs_of(rq, "reactivation_90d") if not r.holdout)
    # the same runs enqueued once more by mistake: the job finds nothing due, sends nothing
    jobs_report = jobs.advance_runs([r.id for r in treated])
    assert jobs_report["claimed"] == 0 and len(emails(rq)) == len(sent)
    assert ids  # the shop is there


def test_flushing_redis_mid_campaign_loses_nothing(rq: HubDB) -> None:
    make_shop(rq, SHOP, now=utcnow())
    enable(rq, "reactivation_90d")
    first = scheduler.tick(rq.engine, rq.settings)
    assert first.enqueued > 0
    Redis.from_url(rq.settings.redis_url).flushdb()  # every queued job is gone
    burst(rq)
    assert emails(rq) == []
    second = scheduler.tick(rq.engine, rq.settings)
    assert second.enqueued == first.enqueued  # the database still says they are due
    burst(rq)
    treated = [r for r in runs_of(rq, "reactivation_90d") if not r.holdout]
    assert sorted(m.contact_id for m in emails(rq)) == sorted(r.contact_id for r in treated)


def test_a_dead_workers_runs_are_enqueued_again_when_their_lease_ends(rq: HubDB) -> None:
    make_shop(rq, SHOP, now=utcnow())
    enable(rq, "reactivation_90d")
    scheduler.tick(rq.engine, rq.settings)
    from rq import Queue
    from rq.job import Job

    redis = Redis.from_url(rq.settings.redis_url)
    (job,) = [j for j in Queue("default", connection=redis).jobs if j.func_name == "workflows.jobs.advance_runs"]
    # A worker took the job and the runs, then died: the job stays "started", the runs leased.
    def lease(until: dt.datetime) -> None:
        with rq.engine.begin() as conn:
            conn.execute(update(WorkflowRun).where(WorkflowRun.id.in_(job.args[0]))
                         .values(lease_token="dead", lease_until=until))

    lease(utcnow() + dt.timedelta(hours=1))
    Queue("default", connection=redis).remove(job)
    started = Job.fetch(job.id, connection=redis)
    started.set_status("started")
    started.started_at = utcnow() - dt.timedelta(minutes=10)
    started.save()
    assert scheduler.tick(rq.engine, rq.settings).enqueued == 0  # leased: the worker may still be at it
    lease(utcnow() - dt.timedelta(seconds=1))  # the lease ran out and the job never finished: the worker died
    assert scheduler.tick(rq.engine, rq.settings).enqueued == len(job.args[0])
    burst(rq)
    assert len(emails(rq)) == len(job.args[0])


def test_only_one_scheduler_holds_the_redis_lock(rq: HubDB) -> None:
    ttl = dt.timedelta(seconds=30)
    first = schedule.RedisLock(rq.settings, ttl)
    second = schedule.RedisLock(rq.settings, ttl)
    assert first.acquire() and not second.acquire()
    assert first.renew() and first.acquire()
    first.release()
    assert second.acquire() and not first.acquire()
    second.release()


def test_two_scheduler_processes_tick_one_at_a_time(rq: HubDB, tmp_path: Path) -> None:
    env = {**os.environ, "HUB_DATABASE_URL": rq.url, "HUB_REDIS_URL": rq.settings.redis_url,
           "HUB_SECRET_KEY": rq.settings.secret_key or "", "HUB_PLUGINS": "mailing,workflows",
           "HUB_WORKFLOWS_INTERVAL_S": "1",
           "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-m", "hub", "scheduler", "--interval", "1"], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    lines: list[list[str]] = [[], []]

    def read(i: int) -> None:
        assert procs[i].stderr is not None
        for line in procs[i].stderr:
            lines[i].append(line)

    readers = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(2)]
    for r in readers:
        r.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(sum("ran:" in x or "standing by" in x for x in ls) >= 3
                                                  for ls in lines):
        time.sleep(0.2)
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(timeout=30)
    for r in readers:
        r.join(timeout=5)
    ticking = [sum("ran: " in x and "workflows" in x for x in ls) for ls in lines]
    standing = [sum("standing by" in x for x in ls) for ls in lines]
    assert sorted(bool(t) for t in ticking) == [False, True], lines  # one ticks, the other only stands by
    assert standing[ticking.index(0)] >= 3
    assert all("Scheduler stopped." in "".join(ls) for ls in lines)


def horses(pid: int) -> list[int]:
    """The work-horses a `hub worker` forked for its current job."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def kill_9(pid: int) -> None:
    """SIGKILL a `hub worker` and the work-horse it forked for its job (RQ gives the horse a session of its own)."""
    for victim in [pid, *horses(pid)]:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_kill_9_a_hub_worker_mid_campaign_then_restart(wf: HubDB, redis_url: str, sink: tuple[Sink, int],
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    box, port = sink
    Redis.from_url(redis_url).flushdb()
    env_settings = {"HUB_REDIS_URL": redis_url, "HUB_SMTP_URL": f"smtp://127.0.0.1:{port}",
                    "HUB_MAIL_FROM": "Лавка <shop@example.ru>", "HUB_WORKFLOWS_LEASE_S": "3",
                    "HUB_WORKFLOWS_BATCH_SIZE": "40", "HUB_WORKFLOWS_QUIET_HOURS_SMS": "none"}
    for key, value in env_settings.items():
        monkeypatch.setenv(key, value)
    db = replace(wf, settings=load_settings())
    people = [Person(f"p{i}", f"Имя{i}", None, f"p{i}@example.ru") for i in range(300)]
    ids = make_shop(db, people, now=utcnow())
    enable(db, "reactivation_90d")
    assert scheduler.tick(db.engine, db.settings).enqueued > 0
    treated = {r.contact_id for r in runs_of(db, "reactivation_90d") if not r.holdout}
    env = {**os.environ, **env_settings, "HUB_DATABASE_URL": db.url, "HUB_SECRET_KEY": db.settings.secret_key or "",
           "HUB_PLUGINS": "mailing,workflows", "PYTHONPATH": str(ROOT)}

    def worker() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "hub", "worker"], env=env, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    workers = [worker(), worker()]
    try:
        deadline = time.monotonic() + 120
        while len(box.ids) < 40 and time.monotonic() < deadline:
            time.sleep(0.005)
        victim = None
        while victim is None and time.monotonic() < deadline:  # the worst moment: while it talks to the server
            with db.engine.connect() as conn:
                holders = set(conn.execute(select(Message.worker).where(Message.status == "sending")).scalars())
            victim = next((i for i, w in enumerate(workers)
                           if any(f"{socket.gethostname()}:{pid}" in holders for pid in horses(w.pid))), None)
        assert victim is not None
        at_kill = len(box.ids)
        kill_9(workers[victim].pid)  # the worker and the job it was running, mid-campaign
        workers[victim].wait(timeout=10)
        assert 0 < at_kill < len(treated)
        workers[victim] = worker()  # restarted, as a service manager would
        last, still = None, 0
        while time.monotonic() < deadline:  # the scheduler's ticks, until nothing moves but what the dead left
            scheduler.tick(db.engine, db.settings)
            with db.engine.connect() as conn:
                moving = conn.execute(select(WorkflowRun.id).where(WorkflowRun.status == "running")).all()
                queued = conn.execute(select(Message.id).where(Message.status == "queued")).all()
                sending = sorted(conn.execute(select(Message.id).where(Message.status == "sending")).scalars())
            now_state = (len(box.ids), sending)
            still = still + 1 if not moving and not queued and now_state == last else 0
            if still >= 3:
                break
            last = now_state
            time.sleep(0.5)
    finally:
        for w in workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGTERM)
                w.wait(timeout=30)
    runs = runs_of(db, "reactivation_90d")
    assert all(r.status == "waiting" for r in runs if not r.holdout), Counter(r.status for r in runs)
    # Messages the killed worker held while it was sending are in doubt: marked for review, never resent.
    messaging.recover_stale(db.engine, now=utcnow() + messaging.SENDING_TIMEOUT + dt.timedelta(seconds=1))
    with db.engine.connect() as conn:
        rows = {m.id: m for m in conn.execute(select(Message))}
    assert Counter(box.ids).most_common(1)[0][1] == 1  # no message arrived twice
    assert len(rows) == len(treated) and {m.contact_id for m in rows.values()} == treated
    in_doubt = [m for m in rows.values() if m.status == "unknown"]
    assert {m.status for m in rows.values()} <= {"sent", "unknown"}
    assert 0 < len(in_doubt) <= engine.DISPATCH_BATCH
    # A person checks the server's log, as `hub messages review` says, and decides.
    for m in in_doubt:
        messaging.resolve(db.engine, m.id, "sent" if m.id in box.ids else "requeue")
    messaging.dispatch(db.engine, db.settings)
    assert sorted(box.ids) == sorted(rows)  # every message exactly once
    assert sorted(box.recipients) == sorted(f"{k}@example.ru" for k, c in ids.items() if c in treated)
