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
import threading
import time
from collections import Counter
from contextlib import ExitStack
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
from hub.models import Message
from tests.conftest import HubDB
from tests.processes import alive, hub_env, hub_process, session_members, stop
from tests.support.shop import SHOP, Person, enable, make_shop, runs_of, use_workflows
from tests.support.waiting import wait_for
from workflows import jobs, ticks
from workflows.models import WorkflowRun

pytestmark = pytest.mark.both_databases  # exactly-once runs across worker processes

_TRACKING = re.compile(rb"\r\nX-Hub-Message-Id: (\d+)\r\n")


class Sink:
    """An SMTP server's log: which message ids and recipients arrived, slowed down to take some time.

    With `hold_at` set, the answer to that message (the n-th to arrive) waits
    until `release` is set: the message is with the server and its sender
    waits for the reply, the moment a worker can least afford to die.
    """

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.ids: list[int] = []
        self.recipients: list[str] = []
        self.lock = threading.Lock()
        self.hold_at: int | None = None
        self.holding = threading.Event()
        self.release = threading.Event()
        self.held: int | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        m = _TRACKING.search(envelope.content)
        message_id = int(m.group(1)) if m else -1
        with self.lock:
            self.ids.append(message_id)
            self.recipients.extend(envelope.rcpt_tos)
            hold = len(self.ids) == self.hold_at
        if hold:
            self.held = message_id
            self.holding.set()
            while not self.release.is_set():  # other sessions go on meanwhile
                await asyncio.sleep(0.01)
        return "250 2.0.0 Accepted"


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    handler = Sink(delay=0.01)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        handler.release.set()
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
    report = ticks.tick(rq.engine, rq.settings)
    treated = [r for r in runs_of(rq, "reactivation_90d") if not r.holdout]
    assert report.enqueued == len(treated) and report.jobs == -(-len(treated) // 3)
    assert emails(rq) == []  # nothing runs in the scheduler when there are workers
    from rq import Queue

    queued = Queue("default", connection=Redis.from_url(rq.settings.redis_url)).jobs
    advancing = [j for j in queued if j.func_name == "workflows.jobs.advance_runs"]
    assert len(advancing) == report.jobs and all(isinstance(i, int) for j in advancing for i in j.args[0])
    again = ticks.tick(rq.engine, rq.settings)
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
    first = ticks.tick(rq.engine, rq.settings)
    assert first.enqueued > 0
    Redis.from_url(rq.settings.redis_url).flushdb()  # every queued job is gone
    burst(rq)
    assert emails(rq) == []
    second = ticks.tick(rq.engine, rq.settings)
    assert second.enqueued == first.enqueued  # the database still says they are due
    burst(rq)
    treated = [r for r in runs_of(rq, "reactivation_90d") if not r.holdout]
    assert sorted(m.contact_id for m in emails(rq)) == sorted(r.contact_id for r in treated)


def test_a_dead_workers_runs_are_enqueued_again_when_their_lease_ends(rq: HubDB) -> None:
    make_shop(rq, SHOP, now=utcnow())
    enable(rq, "reactivation_90d")
    ticks.tick(rq.engine, rq.settings)
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
    assert ticks.tick(rq.engine, rq.settings).enqueued == 0  # leased: the worker may still be at it
    lease(utcnow() - dt.timedelta(seconds=1))  # the lease ran out and the job never finished: the worker died
    assert ticks.tick(rq.engine, rq.settings).enqueued == len(job.args[0])
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
    env = hub_env(HUB_DATABASE_URL=rq.url, HUB_REDIS_URL=rq.settings.redis_url,
                  HUB_SECRET_KEY=rq.settings.secret_key or "", HUB_PLUGINS="mailing,workflows",
                  HUB_WORKFLOWS_INTERVAL_S="1")
    lines: list[list[str]] = [[], []]
    with ExitStack() as stack:
        procs = [stack.enter_context(hub_process(["scheduler", "--interval", "1"], env=env, cwd=tmp_path,
                                                 stderr=subprocess.PIPE, text=True)) for _ in range(2)]

        def read(i: int) -> None:
            assert procs[i].stderr is not None
            for line in procs[i].stderr:
                lines[i].append(line)

        readers = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(2)]
        for r in readers:
            r.start()
        wait_for(lambda: all(sum("выполнено:" in x or "ожидает:" in x for x in ls) >= 3 for ls in lines),
                 "both schedulers to tick or stand by three times")
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            stop(p)
        for r in readers:
            r.join(timeout=60)
    ticking = [sum("выполнено: " in x and "workflows" in x for x in ls) for ls in lines]
    standing = [sum("ожидает:" in x for x in ls) for ls in lines]
    assert sorted(bool(t) for t in ticking) == [False, True], lines  # one ticks, the other only stands by
    assert standing[ticking.index(0)] >= 3
    assert all("Планировщик остановлен." in "".join(ls) for ls in lines)


def horses(pid: int) -> list[int]:
    """The work-horses a `hub worker` forked for its current job."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def kill_9(pid: int) -> None:
    """SIGKILL a `hub worker` and the work-horse it forked for its job (RQ gives the horse a group of its own)."""
    for victim in [pid, *horses(pid)]:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass


def holder(db: HubDB, message_id: int) -> str | None:
    """The worker a message is `sending` for, if it is."""
    with db.engine.connect() as conn:
        return conn.execute(select(Message.worker).where(Message.id == message_id,
                                                         Message.status == "sending")).scalar()


def campaign(wf: HubDB, redis_url: str, port: int, monkeypatch: pytest.MonkeyPatch, people: int = 300
             ) -> tuple[HubDB, dict[str, int], set[int], dict[str, str]]:
    """A reactivation campaign for `people` contacts, ticked once: its jobs wait in Redis for `hub worker`."""
    Redis.from_url(redis_url).flushdb()
    env_settings = {"HUB_REDIS_URL": redis_url, "HUB_SMTP_URL": f"smtp://127.0.0.1:{port}",
                    "HUB_MAIL_FROM": "Лавка <shop@example.ru>", "HUB_WORKFLOWS_LEASE_S": "3",
                    "HUB_MESSAGES_LEASE_S": "3", "HUB_WORKFLOWS_BATCH_SIZE": "40",
                    "HUB_QUIET_HOURS_SMS": "none",
                    "HUB_SMTP_TIMEOUT": "900"}  # a held answer is waited for, however slow the machine
    for key, value in env_settings.items():
        monkeypatch.setenv(key, value)
    db = replace(wf, settings=load_settings())
    ids = make_shop(db, [Person(f"p{i}", f"Имя{i}", None, f"p{i}@example.ru") for i in range(people)], now=utcnow())
    enable(db, "reactivation_90d")
    assert ticks.tick(db.engine, db.settings).enqueued > 0
    treated = {r.contact_id for r in runs_of(db, "reactivation_90d") if not r.holdout}
    env = hub_env(**env_settings, HUB_DATABASE_URL=db.url, HUB_SECRET_KEY=db.settings.secret_key or "",
                  HUB_PLUGINS="mailing,workflows")
    return db, ids, treated, env


def settled(db: HubDB, box: Sink) -> None:
    """Tick as the scheduler would until the campaign is still: no run moving, nothing queued, nothing changing."""
    last, still = None, 0
    deadline = time.monotonic() + 600  # only stops a broken test
    while still < 3:
        assert time.monotonic() < deadline, "the campaign never settled"
        ticks.tick(db.engine, db.settings)
        with db.engine.connect() as conn:
            moving = conn.execute(select(WorkflowRun.id).where(WorkflowRun.status == "running")).all()
            waiting = conn.execute(select(Message.id).where(Message.status == "queued")).all()
            sending = sorted(conn.execute(select(Message.id).where(Message.status == "sending")).scalars())
        now_state = (len(box.ids), sending)  # a dead worker's message in hand stays `sending`
        still = still + 1 if not moving and not waiting and now_state == last else 0
        last = now_state
        time.sleep(0.5)


def test_kill_9_a_hub_worker_mid_campaign_then_restart(wf: HubDB, redis_url: str, sink: tuple[Sink, int],
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    box, port = sink
    db, ids, treated, env = campaign(wf, redis_url, port, monkeypatch)
    box.hold_at = 40  # the 40th message waits for its answer: its worker is killed right then
    with ExitStack() as stack:
        workers = [stack.enter_context(hub_process(["worker"], env=env, cwd=tmp_path)) for _ in range(2)]
        wait_for(box.holding.is_set, "the 40th message to reach the server")
        assert box.held is not None
        in_hand = wait_for(lambda: holder(db, box.held), "the held message to be `sending`")
        (victim,) = [w for w in workers if any(in_hand == f"{socket.gethostname()}:{h}" for h in horses(w.pid))]
        kill_9(victim.pid)  # the worker and the job it was running, while the server has the message
        victim.wait()
        box.release.set()
        at_kill = len(box.ids)
        assert 0 < at_kill < len(treated)
        workers.append(stack.enter_context(hub_process(["worker"], env=env, cwd=tmp_path)))  # as a service would
        settled(db, box)
        assert [stop(w) for w in workers if w is not victim] == [0, 0]  # SIGTERM: both stop, cleanly
    runs = runs_of(db, "reactivation_90d")
    assert all(r.status == "waiting" for r in runs if not r.holdout), Counter(r.status for r in runs)
    # Only the message the killed worker's channel had is in doubt: marked for review, never resent.
    messaging.recover_stale(db.engine, now=utcnow() + messaging.SENDING_TIMEOUT + dt.timedelta(seconds=1))
    with db.engine.connect() as conn:
        rows = {m.id: m for m in conn.execute(select(Message))}
    assert Counter(box.ids).most_common(1)[0][1] == 1  # no message arrived twice
    assert len(rows) == len(treated) and {m.contact_id for m in rows.values()} == treated
    assert {m.status for m in rows.values()} <= {"sent", "unknown"}  # every message delivered or in review
    in_doubt = [m.id for m in rows.values() if m.status == "unknown"]
    assert in_doubt == [box.held] and len(in_doubt) <= len(workers) - 1  # at most one per worker connection
    # A person checks the server's log, as `hub messages review` says, and decides.
    for m in in_doubt:
        messaging.resolve(db.engine, m, "sent" if m in box.ids else "requeue")
    messaging.dispatch(db.engine, db.settings)
    assert sorted(box.ids) == sorted(rows)  # every message exactly once
    assert sorted(box.recipients) == sorted(f"{k}@example.ru" for k, c in ids.items() if c in treated)


def test_sigterm_stops_a_hub_worker_mid_campaign_after_the_message_in_hand(
        wf: HubDB, redis_url: str, sink: tuple[Sink, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rq import Worker

    box, port = sink
    db, ids, treated, env = campaign(wf, redis_url, port, monkeypatch)
    box.hold_at = 20
    redis = Redis.from_url(redis_url)
    with hub_process(["worker"], env=env, cwd=tmp_path) as worker:
        wait_for(box.holding.is_set, "the 20th message to reach the server")
        worker.send_signal(signal.SIGTERM)  # a service manager stops it while a long job is mid-way
        wait_for(lambda: any(w.pid == worker.pid and w.shutdown_requested_date for w in Worker.all(connection=redis)),
                 "the worker to take the request")
        box.release.set()
        assert stop(worker) == 0
    with db.engine.connect() as conn:
        statuses = Counter(conn.execute(select(Message.status)).scalars())
        claimed = conn.execute(select(Message.id).where(Message.claimed_at.is_not(None),
                                                        Message.status == "queued")).all()
    # It finished the message the server had and put the rest back for the next worker: it did not
    # wait for its job to send everything, and nothing is left in doubt.
    assert statuses["sent"] == len(box.ids) == 20 and statuses["queued"] > 0, statuses
    assert set(statuses) <= {"sent", "queued"} and claimed == []
    with hub_process(["worker"], env=env, cwd=tmp_path) as worker:
        settled(db, box)
        assert stop(worker) == 0
    with db.engine.connect() as conn:
        assert set(conn.execute(select(Message.status)).scalars()) == {"sent"}
    assert sorted(Counter(box.ids).values()) == [1] * len(treated)  # each once
    assert sorted(box.recipients) == sorted(f"{k}@example.ru" for k, c in ids.items() if c in treated)


def test_a_failing_test_leaves_no_hub_worker_behind(sqlite_db: HubDB, redis_url: str, tmp_path: Path) -> None:
    from rq import Queue

    redis = Redis.from_url(redis_url)
    redis.flushdb()
    Queue("default", connection=redis).enqueue(time.sleep, 3600)  # a job that would outlive any test
    env = hub_env(HUB_REDIS_URL=redis_url, HUB_DATABASE_URL=sqlite_db.url, HUB_PLUGINS="")
    with pytest.raises(AssertionError, match="the test failed here"):
        with hub_process(["worker"], env=env, cwd=tmp_path) as worker:
            horse = wait_for(lambda: horses(worker.pid), "the worker to fork a horse for the job")
            assert sorted(session_members(worker.pid)) == sorted([worker.pid, *horse])
            raise AssertionError("the test failed here")
    assert worker.returncode is not None and session_members(worker.pid) == []
    assert not any(alive(pid) for pid in horse)  # the horse in a process group of its own too
