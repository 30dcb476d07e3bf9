"""Several machines, one PostgreSQL and one Redis: every limit holds across all of them together.

The deployment docs/deploy.md describes, run for real: three `hub worker`
processes and two `hub scheduler` processes, each in a working folder of its
own with a hub.toml of its own (as on separate machines), sharing nothing but
the PostgreSQL URL, the Redis URL and the settings that must be the same
everywhere. Every count and rate below is what a server outside Hub saw:

- a counter the schedulers' probe schedule calls (tests/deploy_machine.py):
  one scheduler runs the schedules, once per interval, and after SIGKILL the
  other takes over only once the lock's TTL has run out;
- the Bitrix24 emulator, stamping each request: three workers fetching at
  once stay inside the portal's leaky bucket, with no 503;
- a real SMTP server, stamping each letter: the channel's rate and a
  domain's pace hold across the workers, quiet hours and the frequency cap
  hold while several workers dispatch one contact's letters, and no letter
  arrives twice.

The tests share one set of processes (a module fixture): the scheduler
killed in the first is taken over while the CRM and mail tests run, and the
last test waits out whatever is left of the lock's TTL (60 s, the least
`hub scheduler` uses). Each test still stands alone: the last kills the
holder itself when run on its own.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import signal
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator
from zoneinfo import ZoneInfo

import pytest
from redis import Redis
from sqlalchemy import Engine, select, update

from hub import jobs, messaging, plugins, queue
from hub.config import load_settings
from hub.db import dispose_engines, get_engine
from hub.models import Contact, Message
from hub.testing import empty_database
from tests import deploy_machine
from tests.conftest import SECRET, HubDB
from tests.processes import hub_process
from tests.support.smtp import Mailbox, smtp_server
from tests.support.waiting import wait_for
from tests.test_mailing_smtp import person, queue_reactivation

PROBE = Path(__file__).with_name("deploy_machine.py")
WORKERS = 3
SCHEDULERS = 2
LOCK_TTL_S = 60.0  # what `hub scheduler --interval 1` holds its lock for (hub.schedule.serve: at least 60 s)
PROBE_EVERY_S = deploy_machine.PROBE_EVERY_S
# The portal's leaky bucket (the emulator's and Hub's [bitrix24] setting): drained at RATE a second, BURST deep.
CRM_RATE, CRM_BURST = 3.0, 12
CRM_JOBS = 30
EMAIL_RATE = 8  # HUB_EMAIL_RATE: letters a second over the channel, a burst of as many
MAIL_RU_RATE = 2  # the Mail.ru group's pace: letters a second, no burst
_TRACKING = re.compile(rb"\r\nX-Hub-Message-Id: (\d+)\r\n")


# --- what the servers saw ----------------------------------------------------------------------

class ProbeCounter:
    """An HTTP server that stamps each request it gets: (time, the caller's path)."""

    def __init__(self) -> None:
        self.hits: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with outer.lock:
                    outer.hits.append((time.time(), self.path.strip("/")))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def since(self, moment: float) -> list[tuple[float, str]]:
        with self.lock:
            return [h for h in self.hits if h[0] >= moment]


class StampingSink(Mailbox):
    """The SMTP server: when each letter arrived, to whom, and which outbox row it was."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: list[tuple[float, str, int]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        found = _TRACKING.search(envelope.content)
        self.arrived.append((time.time(), envelope.rcpt_tos[0], int(found.group(1)) if found else -1))
        return await super().handle_DATA(server, session, envelope)


@dataclass
class Cluster:
    """The machines (working folders and processes) and the servers that watch them."""

    db: HubDB
    redis_url: str
    root: Path
    probe: ProbeCounter
    portal: Any
    crm_stamps: list[tuple[float, int]]
    sink: StampingSink
    workers: list[Any] = field(default_factory=list)
    schedulers: list[Any] = field(default_factory=list)
    killed: dict[str, float] = field(default_factory=dict)  # the killed scheduler's pid -> when

    def holder(self, since: float) -> str | None:
        """The one scheduler the probe heard from since `since`; None if none yet."""
        pids = {pid for _t, pid in self.probe.since(since)}
        assert len(pids) <= 1, f"several schedulers ran the schedules at once: {pids}"
        return next(iter(pids), None)

    def kill_holder(self) -> tuple[str, float]:
        """SIGKILL the scheduler that runs the schedules (once): its pid and when."""
        if not self.killed:
            pid = wait_for(lambda: self.holder(time.time() - 3 * PROBE_EVERY_S), "a scheduler to run the probe")
            os.kill(int(pid), signal.SIGKILL)
            self.killed[pid] = time.time()
        return next(iter(self.killed.items()))


# --- the machines ------------------------------------------------------------------------------

def _toml(values: dict[str, Any]) -> str:
    """A small hub.toml: top-level keys first, then tables."""
    def value(v: Any) -> str:
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return str(v)

    top = [f"{k} = {value(v)}" for k, v in values.items() if not isinstance(v, dict)]
    tables = [f"\n[{k}]\n" + "\n".join(f'"{kk}" = {value(vv)}' for kk, vv in v.items())
              for k, v in values.items() if isinstance(v, dict)]
    return "\n".join(top) + "\n" + "\n".join(tables) + "\n"


def machine_settings(cluster_urls: dict[str, str], *, quiet_email: str) -> dict[str, Any]:
    """What every machine's hub.toml says: the shared services, the shared secret and the same limits."""
    return {
        "database_url": cluster_urls["database"], "redis_url": cluster_urls["redis"], "secret_key": SECRET,
        "plugins": ["bitrix24", "mailing", "workflows"],
        "smtp_url": cluster_urls["smtp"], "mail_from": "Лавка <shop@example.ru>",
        "public_url": "https://hub.example.ru", "email_rate": EMAIL_RATE, "frequency_cap": "2/7d",
        "mail_domain_rates": f"mail.ru={MAIL_RU_RATE}/s", "messages_lease_s": 5,
        # The workflows' tick runs once when the first scheduler starts, not again while the test dispatches.
        "workflows_interval_s": 3600,
        # The core's other schedules off: the probe and the workflows' tick are what the test watches.
        "sync_interval_s": 0, "reconcile_interval_s": 0, "segment_sizes_interval_s": 0, "crm_push_interval_s": 0,
        "quiet_hours": {"email": quiet_email, "sms": "none"},
        "bitrix24": {"rate": CRM_RATE, "burst": CRM_BURST},
    }


def quiet_window(zone: str) -> str:
    """Email quiet hours that hold now in `zone` (UTC+10) and are far from now in Moscow (UTC+3)."""
    local = dt.datetime.now(ZoneInfo(zone))
    start, end = local - dt.timedelta(hours=1), local + dt.timedelta(hours=2)
    return f"{start:%H:%M}-{end:%H:%M}"


@pytest.fixture(scope="module")
def cluster(postgres_migrated: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    from plugins.bitrix24 import connection
    from plugins.bitrix24.sandbox.portal import Portal
    from plugins.bitrix24.sandbox.server import SandboxServer

    empty_database(postgres_migrated)
    Redis.from_url(redis_url).flushdb()
    root = tmp_path_factory.mktemp("machines")
    probe = ProbeCounter()
    portal = Portal(contacts=CRM_JOBS + 10, rate=CRM_RATE, burst=CRM_BURST)
    stamps: list[tuple[float, int]] = []
    answer = portal.handle_http

    def stamped(*args: Any) -> Any:
        status, headers, payload = answer(*args)
        stamps.append((time.time(), status))
        return status, headers, payload

    portal.handle_http = stamped  # type: ignore[method-assign, assignment]
    sink = StampingSink()
    with ExitStack() as stack:
        probe.thread.start()
        stack.callback(probe.server.server_close)
        stack.callback(probe.server.shutdown)
        crm = stack.enter_context(SandboxServer(portal))
        port = stack.enter_context(smtp_server(sink))
        urls = {"database": postgres_migrated, "redis": redis_url, "smtp": f"smtp://127.0.0.1:{port}"}
        values = machine_settings(urls, quiet_email=quiet_window("Asia/Vladivostok"))
        # This process is one more machine (the one an admin types commands on).
        own = root / "admin"
        own.mkdir()
        (own / "hub.toml").write_text(_toml(values), encoding="utf-8")
        settings = load_settings({}, config_path=str(own / "hub.toml"))
        plugins.use(plugins.build(settings))
        stack.callback(dispose_engines)
        stack.callback(plugins.use, None)
        db = HubDB(url=postgres_migrated, engine=get_engine(postgres_migrated), settings=settings)
        connection.save(db.engine, settings, {"kind": "webhook", "url": crm.webhook_url})
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
        found = Cluster(db=db, redis_url=redis_url, root=root, probe=probe, portal=portal, crm_stamps=stamps,
                        sink=sink)
        for n in range(WORKERS):
            where = root / f"worker{n}"
            where.mkdir()
            (where / "hub.toml").write_text(_toml(values), encoding="utf-8")
            log = stack.enter_context((where / "worker.log").open("w"))
            found.workers.append(stack.enter_context(hub_process(["worker"], env=env, cwd=where, stderr=log)))
        for n in range(SCHEDULERS):
            where = root / f"scheduler{n}"
            (where / "plugins").mkdir(parents=True)
            shutil.copy(PROBE, where / "plugins" / "deploy_machine.py")
            (where / "hub.toml").write_text(_toml({**values, "plugins_dir": str(where / "plugins"),
                                                   "probe_url": probe.url}),
                                            encoding="utf-8")
            log = stack.enter_context((where / "scheduler.log").open("w"))
            found.schedulers.append(stack.enter_context(
                hub_process(["scheduler", "--interval", "1"], env=env, cwd=where, stderr=log)))
        yield found


def logs(cluster: Cluster) -> str:
    """Every machine's stderr, for an assertion's message."""
    return "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(cluster.root.glob("*/*.log")))


# --- the scheduler -----------------------------------------------------------------------------

def test_one_scheduler_runs_each_schedule_once_per_interval(cluster: Cluster) -> None:
    first = wait_for(lambda: cluster.probe.since(0), "the probe schedule to run")[0][0]
    watched = 4 * PROBE_EVERY_S
    time.sleep(max(0.0, first + watched - time.time()))
    hits = [h for h in cluster.probe.since(first) if h[0] <= first + watched]
    pids = Counter(pid for _t, pid in hits)
    assert len(pids) == 1, (pids, logs(cluster))  # one scheduler runs the schedules; the other stands by
    assert {str(p.pid) for p in cluster.schedulers} >= set(pids)
    # Once per interval: two schedulers both running it would double this; a pass may be late, never early.
    assert 2 <= len(hits) <= watched / PROBE_EVERY_S + 1, hits
    cluster.kill_holder()  # the next test takes over here; the last one sees who runs the schedules then


# --- the CRM bucket ----------------------------------------------------------------------------

def run_jobs(cluster: Cluster, calls: list[tuple[Callable[..., Any], tuple[Any, ...]]]) -> list[Any]:
    """Enqueue these jobs for the workers and wait until each has finished or failed; the RQ jobs."""
    from rq.job import Job

    redis = Redis.from_url(cluster.redis_url)
    enqueued = [queue.enqueue(cluster.db.settings, func, *args) for func, args in calls]

    def ended() -> list[Any]:
        found = [Job.fetch(e.id, connection=redis) for e in enqueued]
        return found if all(j.get_status(refresh=True) in ("finished", "failed") for j in found) else []

    return wait_for(ended, "every job to end")


def failures(done: list[Any]) -> list[str]:
    """The last line of each failed job's traceback."""
    return [str((j.latest_result().exc_string or "").strip().splitlines()[-1:]) for j in done
            if j.get_status() == "failed"]


def test_core_jobs_run_on_forked_workers_on_postgresql(cluster: Cluster) -> None:
    """Every job after a worker's first runs too: a work-horse never reuses its parent's PostgreSQL connection."""
    ids = sorted(cluster.portal.contact_person)[:2 * WORKERS]
    done = run_jobs(cluster, [(jobs.fetch_records, ("bitrix24", "contacts", [str(i)])) for i in ids])
    assert all(j.get_status() == "finished" for j in done), failures(done)


def test_the_crms_bucket_holds_for_all_workers_together(cluster: Cluster) -> None:
    ids = sorted(cluster.portal.contact_person)[:CRM_JOBS]
    from_ = len(cluster.crm_stamps)
    # What the Bitrix24 receiver enqueues for each event: a fetch of that record, on whichever worker is free.
    done = run_jobs(cluster, [(jobs.fetch_records, ("bitrix24", "contacts", [str(i)])) for i in ids])
    assert all(j.get_status() == "finished" for j in done), failures(done)
    assert len({j.worker_name for j in done}) == WORKERS, Counter(j.worker_name for j in done)  # all took part
    seen = cluster.crm_stamps[from_:]
    times = [t for t, _status in seen]
    statuses = Counter(status for _t, status in seen)
    assert statuses[503] == 0 and statuses[429] == 0 and set(statuses) == {200}, statuses
    assert len(seen) >= 3 * CRM_BURST  # far more than one burst: the bucket had to pace them
    # The leaky bucket the portal keeps: of the requests arriving in any stretch of time, no more than
    # its depth plus what drained meanwhile. Three workers each pacing alone would send three times that.
    for i in range(len(times)):
        for j in range(i + 1, len(times)):
            assert j - i + 1 <= CRM_BURST + CRM_RATE * (times[j] - times[i]), (i, j, times)


# --- the mail limits ---------------------------------------------------------------------------

@dataclass
class Mail:
    moscow: dict[int, str]  # contact id -> address
    vladivostok: dict[int, str]
    started: float


def queue_letters(cluster: Cluster) -> Mail:
    """Three letters for each contact (three campaigns), to mail.ru and other domains, in two time zones."""
    db = cluster.db
    moscow = {person(db, f"Москва{i}", a): a for i, a in enumerate(
        [f"m{i}@{d}" for i, d in enumerate(["mail.ru", "bk.ru", "inbox.ru", "list.ru"] * 2)]
        + [f"o{i}@{d}" for i, d in enumerate(["example.ru", "shop.example", "yandex.ru", "rambler.ru"] * 5)])}
    vladivostok = {person(db, f"Владивосток{i}", f"v{i}@example.ru"): f"v{i}@example.ru" for i in range(6)}
    with db.engine.begin() as conn:
        conn.execute(update(Contact).where(Contact.id.in_(list(moscow))).values(timezone="Europe/Moscow"))
        conn.execute(update(Contact).where(Contact.id.in_(list(vladivostok))).values(timezone="Asia/Vladivostok"))
    people = list(moscow) + list(vladivostok)
    for prefix in ("spring", "summer", "autumn"):  # the same contact's letters far apart: in different batches
        queue_reactivation(db, db.settings, people, prefix=prefix)
    return Mail(moscow, vladivostok, time.time())


def ready(engine: Engine, within: float = 0.0) -> int:
    """Letters not yet out that are due within `within` seconds (quiet hours and the cap hold theirs for hours)."""
    until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=within)
    with engine.connect() as conn:
        return len(conn.execute(select(Message.id).where(Message.status.in_(("queued", "deferred", "sending")),
                                                         Message.due_at <= until)).all())


def test_channel_rate_domain_pace_quiet_hours_and_cap_hold_across_workers(cluster: Cluster) -> None:
    mail = queue_letters(cluster)
    redis = Redis.from_url(cluster.redis_url)
    from rq import Queue

    pending = Queue("default", connection=redis)
    # What `hub messages dispatch --queue --jobs 3` enqueues, again whenever the workers are idle and
    # letters a pace held are due (as the scheduler's tick does every 30 s), until none are left.
    deadline = time.monotonic() + 180
    ours: list[str] = []
    while ready(cluster.db.engine, within=60):  # a letter a pace held comes back within seconds
        assert time.monotonic() < deadline, logs(cluster)
        if pending.count == 0 and not pending.started_job_registry.count and ready(cluster.db.engine):
            ours += [queue.enqueue(cluster.db.settings, messaging.dispatch_job, ["email"], 4).id
                     for _ in range(WORKERS)]
        time.sleep(0.2)
    wait_for(lambda: pending.count == 0 and not pending.started_job_registry.count, "the last dispatch to end")
    arrived = list(cluster.sink.arrived)
    with cluster.db.engine.connect() as conn:
        rows = conn.execute(select(Message.id, Message.contact_id, Message.status, Message.worker)).all()

    # Exactly once: no letter arrived twice, and every one that arrived is `sent`.
    ids = Counter(i for _t, _to, i in arrived)
    assert ids and max(ids.values()) == 1, ids.most_common(3)
    sent = {r.id for r in rows if r.status == "sent"}
    assert set(ids) == sent, (set(ids) ^ sent)
    per_person = Counter(to for _t, to, _i in arrived)
    # The frequency cap (2 in 7 days) held each Moscow contact's third letter, whichever worker had it.
    assert all(per_person[a] == 2 for a in mail.moscow.values()), per_person
    # Quiet hours in the contact's own time: nothing reached anyone in Vladivostok.
    assert not any(per_person[a] for a in mail.vladivostok.values()), per_person

    # The channel's rate (a bucket in Redis, EMAIL_RATE deep): in any stretch of time, no more letters than
    # the burst plus the rate over it, plus one each worker had in hand when it took its slot.
    times = sorted(t for t, _to, _i in arrived)
    for i in range(len(times)):
        for j in range(i + 1, len(times)):
            assert j - i + 1 <= EMAIL_RATE + EMAIL_RATE * (times[j] - times[i]) + WORKERS, (i, j, times)
    # Mail.ru's pace, no burst: slots 1/MAIL_RU_RATE apart, each taken before its letter left, so of
    # the letters in any stretch all but one per worker took their slots inside it.
    group = {"mail.ru", "bk.ru", "inbox.ru", "list.ru"}
    slow = sorted(t for t, to, _i in arrived if to.split("@")[1] in group)
    assert len(slow) == 16
    for i in range(len(slow)):
        for j in range(i + 1, len(slow)):
            assert slow[j] - slow[i] >= (j - i - WORKERS) / MAIL_RU_RATE - 0.001, (i, j, slow)

    from rq.job import Job

    dispatchers = {Job.fetch(i, connection=redis).worker_name for i in ours}
    assert len(dispatchers) == WORKERS, dispatchers  # all three machines dispatched
    # Several workers had the same contact's letters: one job (one work-horse) claimed the one, another the next.
    shared = [c for c in mail.moscow if len({r.worker for r in rows if r.contact_id == c}) > 1]
    assert len(shared) >= len(mail.moscow) // 4, shared


# --- the scheduler dies ------------------------------------------------------------------------

def test_another_scheduler_takes_over_once_the_lock_expires(cluster: Cluster) -> None:
    dead, killed_at = cluster.kill_holder()
    last_beat = max((t for t, pid in cluster.probe.since(0) if pid == dead), default=killed_at)
    successor = wait_for(lambda: next((pid for t, pid in cluster.probe.since(killed_at) if pid != dead), None),
                         "another scheduler to take over", timeout=LOCK_TTL_S * 3)
    took_over = min(t for t, pid in cluster.probe.since(killed_at) if pid == successor)
    assert not any(pid == dead for _t, pid in cluster.probe.since(killed_at + 0.5))  # the dead one is gone
    assert successor in {str(p.pid) for p in cluster.schedulers}
    # Not before the lock it renewed at its last run expired: no moment with two schedulers.
    assert took_over >= last_beat + LOCK_TTL_S - 1.0, (took_over - last_beat, logs(cluster))
    # And it goes on alone, once per interval.
    time.sleep(2 * PROBE_EVERY_S)
    assert cluster.holder(took_over) == successor
