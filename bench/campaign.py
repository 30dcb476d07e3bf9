"""Benchmark: 100,000 contacts enter reactivation_90d; codes issued, emails delivered by 2 workers, against a floor.

    .venv/bin/python bench/campaign.py [--contacts N | --scale N,N,...] [--workers W] [--database URL|postgres]
                                       [--workdir DIR] [--keep] [--skip-kill] [--no-floor]

Builds a base of N dormant contacts with email addresses and granted consent
(bulk SQL), starts a private redis-server, an SMTP sink (aiosmtpd, its own
process, logging every message's X-Hub-Message-Id and recipient), W `hub
worker` processes and one `hub scheduler`, switches reactivation_90d on and
measures until every treated contact's email reached the sink: the segment
refresh, the runs, the promo codes, rendering and SMTP, end to end. Then, in
the same run, the floor (bench/smtp_floor.py): W bare smtplib loops send the
very letters Hub delivered to a sink of the same kind, and Hub's letters/s is
given as a share of the floor's. With --scale, all that once per size, each
on a fresh base, with the growth between sizes. Then the same again on a
fresh base at the largest size, with one worker killed with SIGKILL mid-run
and restarted, counting duplicates and missing messages at the sink. Prints
ONE JSON document on stdout; progress goes to stderr. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout: import this checkout's hub
    sys.path.insert(0, str(ROOT))

from harness import free_port, log, serve_postgres, serve_smtp  # noqa: E402  (bench/ is on sys.path)
from smtp_floor import floor_worker, run_floor, summary  # noqa: E402

GOAL_MESSAGES_PER_S = 1_000  # the absolute figure, kept for context; the goal is the ratio
GOAL_RATIO = 0.3  # Hub's letters/s end to end as a share of the floor's, same run, same kind of sink
SECRET = "bench-secret-key-0123456789"
WORKFLOW = "reactivation_90d"
CHUNK = 5_000
SAMPLE_S = 0.1  # how often the resident sets of the workers, their jobs and the scheduler are read
_TRACKING = re.compile(rb"\r\nX-Hub-Message-Id: (\d+)\r\n")


def cpu_seconds(pid: int) -> float:
    """A process's CPU time and that of the children it waited for (RQ's work-horses), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident set (VmHWM, which starts afresh at exec); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    """The processes `pid` forked (RQ's work-horse for the job at hand)."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


# --- the SMTP sink (its own process) ------------------------------------------------------

def serve_sink(port_file: Path, log_file: Path) -> None:
    """Accept every message; append "id recipient" to the log as it arrives (the server's own log)."""
    out = open(log_file, "a", buffering=1, encoding="utf-8")

    class Sink:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            m = _TRACKING.search(envelope.content)
            out.write(f"{m.group(1).decode() if m else -1} {envelope.rcpt_tos[0]}\n")
            return "250 2.0.0 Accepted"

    serve_smtp(Sink(), port_file)
    out.close()


def read_sink(log_file: Path) -> list[tuple[int, str]]:
    if not log_file.exists():
        return []
    rows = []
    for line in log_file.read_text(encoding="utf-8").splitlines():
        ident, _, rcpt = line.partition(" ")
        if rcpt:
            rows.append((int(ident), rcpt))
    return rows


# --- the base -----------------------------------------------------------------------------

def make_base(url: str, count: int) -> None:
    """`count` contacts who bought 120 days ago, each with an email and granted email marketing consent."""
    from sqlalchemy import func, select

    from hub import consent, migrations
    from hub.db import bulk_insert, dispose_engines, get_engine, utcnow
    from hub.models import ConsentEvent, Contact, ContactIdentity

    engine = get_engine(url)
    migrations.upgrade(engine)
    with engine.connect() as conn:
        if conn.execute(select(func.count()).select_from(Contact)).scalar_one():
            raise SystemExit("the database already holds contacts; give an empty one")
    names = ["Анна", "Олег", "Мария", "Иван", "Елена", "Пётр", "Ольга", "Сергей"]
    now = utcnow()
    bought = now - dt.timedelta(days=120)
    for start in range(1, count + 1, CHUNK):
        ids = range(start, min(count, start + CHUNK - 1) + 1)
        with engine.begin() as conn:
            bulk_insert(conn, Contact.__table__, [
                {"id": i, "first_name": names[i % len(names)], "last_name": "Иванова" if i % 2 else "Петров",
                 "name_key": None, "tags": [], "attributes": {}, "provenance": {}, "orders_count": 1,
                 "revenue": Decimal("2500.00"), "first_order_at": bought, "last_order_at": bought,
                 "created_at": now, "updated_at": now} for i in ids])
            bulk_insert(conn, ContactIdentity.__table__, [
                {"contact_id": i, "kind": "email", "value": f"client{i}@example.ru", "raw": f"client{i}@example.ru",
                 "valid": True, "source": "bench", "created_at": now} for i in ids])
            bulk_insert(conn, ConsentEvent.__table__, [
                {"contact_id": i, "channel": "email", "purpose": "marketing", "status": "granted", "source": "bench",
                 "evidence": {}, "at": now} for i in ids])
            consent.restate(conn, ids)  # the ledger was written past hub.consent.record
        if ids[-1] % 20_000 == 0 or ids[-1] == count:
            log(f"  base: {ids[-1]:,} contacts")
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:  # explicit ids: move the sequence past them
            conn.exec_driver_sql("SELECT setval('contacts_id_seq', (SELECT max(id) FROM contacts))")
        # What autovacuum does within a minute of a bulk load, and a shop's base has long had: statistics.
        # Without them the planner takes the freshly filled tables for empty ones, and the segment
        # refresh's consent subquery, planned as nested loops, ran for minutes on 2,000 contacts.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    dispose_engines()


# --- one campaign -------------------------------------------------------------------------

class MemoryWatch:
    """The peak resident set of the workers, of their jobs' work-horses and of the scheduler, sampled.

    RQ forks a short-lived work-horse per job, which no one waits for but its
    worker, so its peak cannot be read once it is gone (and `ru_maxrss` of
    the workers would carry over this benchmark's own peak: they are started
    with vfork and exec). So a thread reads every process's VmHWM (a peak of
    its own, monotonic) every SAMPLE_S seconds; a job's last moments after
    the last reading are missed. A work-horse's figure is its whole resident
    set, the pages it shares with its worker since the fork included.
    """

    def __init__(self, campaign: Campaign) -> None:
        self.campaign = campaign
        self.peaks = {"worker": 0.0, "job": 0.0, "scheduler": 0.0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def sample(self) -> None:
        def note(role: str, pid: int) -> None:
            self.peaks[role] = max(self.peaks[role], peak_rss_mb(pid))

        for worker in list(self.campaign.workers):
            note("worker", worker.pid)
            for horse in children(worker.pid):
                note("job", horse)
        scheduler = self.campaign.procs.get("scheduler")
        if scheduler is not None:
            note("scheduler", scheduler.pid)
            for child in children(scheduler.pid):
                note("scheduler", child)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.sample()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self.sample()
        return {role: round(mb, 1) for role, mb in self.peaks.items()}


class Campaign:
    """Redis, the sink, the workers and the scheduler of one measured run, and the database they share."""

    def __init__(self, args: argparse.Namespace, workdir: Path, url: str) -> None:
        self.args, self.workdir, self.url = args, workdir, url
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.workers: list[subprocess.Popen[bytes]] = []
        self.sink_log = workdir / "sink.log"
        self.cpu_dead = 0.0
        self.memory: MemoryWatch | None = None
        self.peaks: dict[str, float] = {}

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                "HUB_CONFIG": str(self.workdir / "no-such-hub.toml"), "HUB_DATABASE_URL": self.url,
                "HUB_REDIS_URL": self.redis_url, "HUB_SECRET_KEY": SECRET, "HUB_PLUGINS": "mailing,workflows",
                "HUB_SMTP_URL": f"smtp://127.0.0.1:{self.smtp_port}",
                "HUB_MAIL_FROM": "Цветочная лавка <shop@example.ru>", "HUB_PUBLIC_URL": "https://hub.example.ru",
                "HUB_COMPANY_NAME": "Цветочная лавка", "HUB_WORKFLOWS_BATCH_SIZE": str(self.args.batch_size),
                "HUB_WORKFLOWS_LEASE_S": "30", "HUB_MESSAGES_LEASE_S": "30"}

    def settings(self) -> Any:
        from hub.config import load_settings

        return load_settings(environ=self.env())

    def start_services(self) -> None:
        redis_bin = shutil.which("redis-server")
        if redis_bin is None:
            raise SystemExit("redis-server is not installed (apt-get install redis-server)")
        port = free_port()
        self.procs["redis"] = subprocess.Popen(
            [redis_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        from redis import Redis

        deadline = time.monotonic() + 30
        while True:
            try:
                Redis.from_url(self.redis_url).ping()
                break
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline:
                    raise SystemExit("redis-server did not start") from None
                time.sleep(0.05)
        port_file = self.workdir / "sink.port"
        self.procs["sink"] = subprocess.Popen([sys.executable, __file__, "--sink", str(port_file), str(self.sink_log)],
                                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
        self.smtp_port = wait_for_port(port_file, self.procs["sink"])

    def start_worker(self) -> subprocess.Popen[bytes]:
        worker = subprocess.Popen([sys.executable, "-m", "hub", "worker"], env=self.env(), cwd=self.workdir,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.workers.append(worker)
        return worker

    def start_scheduler(self) -> None:
        self.procs["scheduler"] = subprocess.Popen([sys.executable, "-m", "hub", "scheduler"],
                                                   env=self.env(), cwd=self.workdir, stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL)

    @staticmethod
    def horses(worker: subprocess.Popen[bytes]) -> list[int]:
        """The work-horse processes a worker forked for its current job."""
        return children(worker.pid)

    def sending(self, engine: Any) -> subprocess.Popen[bytes] | None:
        """A worker whose job has a message with the SMTP server right now.

        `sending`: the one it may leave in doubt.
        """
        from sqlalchemy import select

        from hub.models import Message

        with engine.connect() as conn:
            holders = set(conn.execute(select(Message.worker).where(Message.status == "sending")).scalars())
        host = socket.gethostname()
        for worker in self.workers:
            if any(f"{host}:{pid}" in holders for pid in self.horses(worker)):
                return worker
        return None

    def kill_9(self, worker: subprocess.Popen[bytes]) -> None:
        """SIGKILL a worker and the work-horse it forked for its job (RQ gives the horse its own session)."""
        horses = self.horses(worker)
        if self.memory is not None:
            self.memory.sample()
        self.cpu_dead += cpu_seconds(worker.pid)
        for pid in [worker.pid, *horses]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        worker.wait(timeout=30)
        self.workers.remove(worker)

    def stop(self) -> float:
        """Stop everything; returns the workers' CPU seconds (their jobs included)."""
        if self.memory is not None:
            self.peaks = self.memory.stop()
        cpu = self.cpu_dead + sum(cpu_seconds(w.pid) for w in self.workers)
        for proc in [self.procs.get("scheduler"), *self.workers, self.procs.get("sink"), self.procs.get("redis")]:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [self.procs.get("scheduler"), *self.workers, self.procs.get("sink"), self.procs.get("redis")]:
            if proc is not None:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
        return cpu


def counts(engine: Any) -> dict[str, int]:
    from sqlalchemy import func, select

    from hub.models import Message
    from workflows.models import WorkflowRun

    with engine.connect() as conn:
        runs = dict(conn.execute(select(WorkflowRun.holdout, func.count()).group_by(WorkflowRun.holdout)).all())
        waiting = conn.execute(select(func.count()).select_from(WorkflowRun)
                               .where(WorkflowRun.status == "waiting")).scalar_one()
        messages = dict(conn.execute(select(Message.status, func.count()).group_by(Message.status)).all())
    return {"runs": sum(runs.values()), "holdout": runs.get(True, 0), "treated": runs.get(False, 0),
            "waiting": waiting, **{f"messages_{k}": v for k, v in messages.items()}}


def run_campaign(args: argparse.Namespace, workdir: Path, url: str, contacts: int, *, kill: bool) -> dict[str, Any]:
    """One measured campaign on a fresh base of `contacts`; the clean one (not `kill`) then measures its floor."""
    from hub import plugins
    from hub.db import dispose_engines, get_engine

    log(f"{'kill run' if kill else 'clean run'}: building {contacts:,} contacts")
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    make_base(url, contacts)
    log(f"  base ready in {time.perf_counter() - started:.1f} s")
    campaign = Campaign(args, workdir, url)
    campaign.start_services()
    settings = campaign.settings()
    plugins.configure(settings)
    engine = get_engine(url)
    from workflows import store

    with engine.begin() as conn:
        store.install_library(conn)
        store.set_enabled(conn, WORKFLOW, True)
    for _ in range(args.workers):
        campaign.start_worker()
    time.sleep(1.0)  # let the workers connect to Redis before the clock starts
    log(f"  {args.workers} workers and an SMTP sink up; the scheduler starts the campaign")
    result: dict[str, Any] = {}
    floor: dict[str, Any] = {}
    stopped = False
    try:
        campaign.memory = MemoryWatch(campaign)
        campaign.memory.start()
        began = time.perf_counter()
        campaign.start_scheduler()
        killed_at = None
        deadline = began + args.timeout
        state = counts(engine)
        still = 0  # polls in a row with nothing moving but what a dead worker left `sending`
        while time.perf_counter() < deadline:
            time.sleep(0.5)
            previous, state = state, counts(engine)
            sent = state.get("messages_sent", 0)
            if kill and killed_at is None and state["treated"] and sent >= state["treated"] * 0.35:
                # the hardest moment: a worker that is handing messages to the SMTP server right now
                victim, give_up = None, time.monotonic() + 10
                while victim is None and time.monotonic() < give_up:
                    victim = campaign.sending(engine)
                    time.sleep(0.005)
                killed_at = counts(engine).get("messages_sent", 0)
                log(f"  kill -9 of a worker {'while it was sending' if victim else ''} at {killed_at:,} sent; "
                    "restarting it")
                campaign.kill_9(victim or campaign.workers[0])
                campaign.start_worker()
            if not state["treated"] or state["runs"] < contacts:
                continue
            if not kill and sent >= state["treated"]:
                break
            if kill and killed_at is not None and state["waiting"] == state["treated"] and \
                    not state.get("messages_queued") and state == previous:
                still += 1
                if still >= 4:
                    break
            else:
                still = 0
        seconds = time.perf_counter() - began
        delivered = read_sink(campaign.sink_log)
        log(f"  {len(delivered):,} emails at the sink in {seconds:.1f} s; {state}")
        if kill:
            result.update(review(engine, settings, campaign, state, killed_at))
        cpu = campaign.stop()
        stopped = True
        if not kill and not args.no_floor:
            floor = measure_floor(args, campaign, engine)
    finally:
        if not stopped:
            campaign.stop()
    delivered = read_sink(campaign.sink_log)
    treated = state["treated"]
    ids = Counter(i for i, _ in delivered)
    rcpts = Counter(r for _, r in delivered)
    result.update({
        "contacts": contacts, "entered": state["runs"], "in_holdout": state["holdout"], "treated": treated,
        "codes_issued": _codes(engine), "received_by_sink": len(delivered),
        "duplicates": sum(n - 1 for n in ids.values() if n > 1) + sum(n - 1 for n in rcpts.values() if n > 1),
        "missing": max(0, treated - len(rcpts)),
        "seconds": round(seconds, 2),
        "messages_per_s": round(len(rcpts) / seconds) if seconds else 0,
        "worker_cpu_ms_per_message": round(cpu * 1000 / max(len(rcpts), 1), 3),
        "peak_rss_mb": campaign.peaks,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    })
    if not kill:  # Hub's letters/s over the floor's, both from the same run
        floor_rate = floor["sent"] / floor["seconds"] if floor and floor["seconds"] else 0.0
        ratio = len(rcpts) / seconds / floor_rate if floor_rate and seconds else None
        result["floor"] = floor or None
        result["ratio"] = {"messages_per_s": round(ratio, 3) if ratio is not None else None}
        if ratio is not None:
            log(f"  Hub reaches {ratio:.3f} of the floor")
    dispose_engines()
    return result


def measure_floor(args: argparse.Namespace, campaign: Campaign, engine: Any) -> dict[str, Any]:
    """The floor, right after the campaign: the letters Hub delivered, sent again by bare smtplib loops.

    As many processes as Hub had workers, each with an equal run of the
    delivered messages (by id), put on the wire by the mailing plugin's own
    channel with this campaign's settings before the clock starts, then sent
    over one connection each to a fresh sink of the same kind (its own
    process, logging every letter), while nothing of Hub runs.
    """
    from sqlalchemy import select

    from hub.models import Message

    with engine.connect() as conn:
        ids = list(conn.execute(select(Message.id).where(Message.channel == "email", Message.status == "sent")
                                .order_by(Message.id)).scalars())
    if not ids:
        return {}
    per = -(-len(ids) // args.workers)
    shares = [(ids[i], ids[min(len(ids), i + per) - 1]) for i in range(0, len(ids), per)]
    port_file, sink_log = campaign.workdir / "floor-sink.port", campaign.workdir / "floor-sink.log"
    sink = subprocess.Popen([sys.executable, __file__, "--sink", str(port_file), str(sink_log)],
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        port = wait_for_port(port_file, sink)
        log(f"  the floor: {len(ids):,} letters Hub delivered, {len(shares)} bare loops of smtplib, a fresh sink")
        floor_seconds, reports = run_floor([sys.executable, __file__, "--floor-worker"], campaign.env(),
                                           {"port": port, "by": "id", "status": "sent"}, shares)
        sink_cpu = cpu_seconds(sink.pid)
    finally:
        sink.send_signal(signal.SIGTERM)
        sink.wait(timeout=60)
    floor = summary(floor_seconds, reports, len(read_sink(sink_log)), sink_cpu)
    log(f"  floor: {floor['sent']:,} sent in {floor_seconds:.1f} s ({floor['messages_per_s']:,} messages/s)")
    return floor


def wait_for_port(port_file: Path, proc: subprocess.Popen[bytes]) -> int:
    """The port a sink process wrote once it listens."""
    deadline = time.monotonic() + 30
    while not port_file.exists() or not port_file.read_text():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("the SMTP sink did not start")
        time.sleep(0.05)
    return int(port_file.read_text())


def _codes(engine: Any) -> int:
    from sqlalchemy import func, select

    from workflows.models import PromoCode

    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(PromoCode)).scalar_one()


def review(engine: Any, settings: Any, campaign: Campaign, state: dict[str, int], killed_at: int | None
           ) -> dict[str, Any]:
    """After the kill: the message the dead worker's channel had is in doubt.

    Check it against the sink's log, as a person would.
    """
    from sqlalchemy import select

    from hub import messaging
    from hub.db import utcnow
    from hub.models import Message

    recovered = messaging.recover_stale(engine, now=utcnow() + messaging.SENDING_TIMEOUT + dt.timedelta(seconds=1))
    at_sink = {i for i, _ in read_sink(campaign.sink_log)}
    with engine.connect() as conn:
        doubtful = list(conn.execute(select(Message.id).where(Message.status == "unknown")).scalars())
    missing_before = max(0, state["treated"] - len({r for _, r in read_sink(campaign.sink_log)}))
    marked = requeued = 0
    for message_id in doubtful:
        if message_id in at_sink:
            messaging.resolve(engine, message_id, "sent", by="bench review")
            marked += 1
        else:
            messaging.resolve(engine, message_id, "requeue", by="bench review")
            requeued += 1
    messaging.dispatch(engine, replace(settings, redis_url=None))
    return {"killed_at_sent": killed_at, "in_doubt": len(doubtful), "recovered_sending": recovered,
            "missing_before_review": missing_before, "review": {"arrived": marked, "requeued": requeued}}


class Databases:
    """A fresh, empty database for every run.

    SQLite (the default): a file in the run's own directory. Given a URL, the
    first run uses it (it must be empty) and every later run a new database
    beside it: on PostgreSQL one created on the same server (`NAME_TAG`,
    dropped at the end unless --keep), on SQLite a file beside it.
    """

    def __init__(self, given: str | None) -> None:
        self.given = given
        self.first = True
        self.created: list[str] = []

    def fresh(self, directory: Path, tag: str) -> str:
        if self.given is None:
            return f"sqlite:///{directory / 'hub.db'}"
        if self.first:
            self.first = False
            return self.given
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url

        url = make_url(self.given)
        name = f"{url.database}_{tag}"
        if url.get_backend_name() == "sqlite":
            path = Path(url.database or "hub.db")
            return url.set(database=str(path.with_name(f"{path.stem}_{tag}{path.suffix}"))).render_as_string(False)
        if url.get_backend_name() != "postgresql":
            raise SystemExit("--database: only SQLite and PostgreSQL can hold more than one run")
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        finally:
            admin.dispose()
        self.created.append(name)
        return url.set(database=name).render_as_string(hide_password=False)

    def drop_created(self) -> None:
        if not self.created or self.given is None:
            return
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url

        from hub.db import dispose_engines

        dispose_engines()
        admin = create_engine(make_url(self.given).set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                for name in self.created:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            admin.dispose()


@contextmanager
def database_server(database: str | None) -> Iterator[str | None]:
    """`--database postgres`: a throwaway PostgreSQL cluster for the whole benchmark; any other value as given."""
    if database == "postgres":
        with serve_postgres() as url:
            log(f"throwaway PostgreSQL cluster at {url}")
            yield url
    else:
        yield database


def growth(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Between consecutive sizes: time ratio / size ratio (1.0 = linear), also against the floor's own growth."""
    steps = []
    for small, large in itertools.pairwise(runs):
        size = large["contacts"] / small["contacts"]
        time_ratio = large["seconds"] / small["seconds"] if small["seconds"] else None
        step: dict[str, Any] = {"from": small["contacts"], "to": large["contacts"], "size_ratio": round(size, 2),
                                "time_ratio": round(time_ratio, 2) if time_ratio else None,
                                "growth": round(time_ratio / size, 2) if time_ratio else None}
        if small.get("floor") and large.get("floor") and small["floor"]["seconds"] and time_ratio:
            floor_ratio = large["floor"]["seconds"] / small["floor"]["seconds"]
            step["floor_time_ratio"] = round(floor_ratio, 2)
            step["growth_vs_floor"] = round(time_ratio / floor_ratio, 2)
        steps.append(step)
    return steps


def size_line(run: dict[str, Any]) -> dict[str, Any]:
    """One size of the growth curve."""
    floor = run.get("floor") or {}
    return {"contacts": run["contacts"], "treated": run["treated"], "seconds": run["seconds"],
            "messages_per_s": run["messages_per_s"], "floor_messages_per_s": floor.get("messages_per_s"),
            "ratio": (run.get("ratio") or {}).get("messages_per_s"), "peak_rss_mb": run["peak_rss_mb"],
            "worker_cpu_ms_per_message": run["worker_cpu_ms_per_message"], "load_average": run["load_average"]}


def parse_scale(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("--scale takes contact counts separated by commas") from None
    if not sizes or min(sizes) < 1 or sizes != sorted(set(sizes)):
        raise argparse.ArgumentTypeError("--scale takes increasing contact counts, each at least 1")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=100_000,
                        help="contacts entering the workflow (default 100,000)")
    parser.add_argument("--scale", type=parse_scale, default=None, metavar="N,N,...",
                        help="a growth curve: the clean run at each of these sizes, each on a fresh base "
                             "(instead of --contacts); the kill run at the largest")
    parser.add_argument("--workers", type=int, default=2, help="hub worker processes (default 2)")
    parser.add_argument("--batch-size", type=int, default=500, help="runs per job (default 500)")
    parser.add_argument("--database", default=None,
                        help="SQLAlchemy URL of an EMPTY database for the first run, later runs in new databases "
                             "beside it; 'postgres' starts a throwaway PostgreSQL cluster "
                             "(default: SQLite in the work directory)")
    parser.add_argument("--workdir", type=Path, default=None, help="where files go (default: temporary)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (and databases) afterwards")
    parser.add_argument("--skip-kill", action="store_true", help="measure the clean run(s) only")
    parser.add_argument("--no-floor", action="store_true", help="skip the floor (no ratio)")
    parser.add_argument("--timeout", type=float, default=1800, help="give up a run after this many seconds")
    parser.add_argument("--sink", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--floor-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sink:
        serve_sink(*args.sink)
        return 0
    if args.floor_worker:
        from hub.config import load_settings

        print(json.dumps(floor_worker(json.loads(args.floor_worker), load_settings())), flush=True)
        return 0
    sizes = args.scale or [args.contacts]
    if min(sizes) < 1 or args.workers < 1:
        parser.error("--contacts and --workers must be at least 1")
    made = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="hub-bench-campaign-")) if made else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    killed = None
    with database_server(args.database) as given:
        databases = Databases(given)
        try:
            for size in sizes:
                run_dir = workdir / ("clean" if len(sizes) == 1 else f"clean-{size}")
                runs.append(run_campaign(args, run_dir, databases.fresh(run_dir, f"clean_{size}"), size, kill=False))
                if made and not args.keep:  # the outbox of 100,000 letters is ~450 MB: free it before the next
                    shutil.rmtree(run_dir, ignore_errors=True)
            if not args.skip_kill:
                kill_dir = workdir / "kill"
                killed = run_campaign(args, kill_dir, databases.fresh(kill_dir, f"kill_{sizes[-1]}"), sizes[-1],
                                      kill=True)
        finally:
            if not args.keep:
                databases.drop_created()
            if args.keep or not made:
                log(f"files kept in {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    clean = runs[-1]
    ratio = (clean.get("ratio") or {}).get("messages_per_s")
    database = (given or "sqlite").split(":", 1)[0].split("+")[0]
    report = {
        "contacts": sizes[-1], "workers": args.workers, "database": database,
        "clean": clean, "kill_9": killed,
        "scale": [size_line(run) for run in runs],
        "growth": growth(runs),
        "goal": {"ratio": GOAL_RATIO, "messages_per_s": GOAL_MESSAGES_PER_S, "duplicates": 0, "missing": 0},
        "met": {"ratio": ratio is not None and ratio >= GOAL_RATIO,
                "messages_per_s": clean["messages_per_s"] >= GOAL_MESSAGES_PER_S,
                "no_duplicates": all(run["duplicates"] == 0 for run in runs)
                and (killed is None or killed["duplicates"] == 0),
                "none_missing": all(run["missing"] == 0 for run in runs)
                and (killed is None or killed["missing"] == 0)},
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
