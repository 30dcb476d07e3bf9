"""Benchmark: 100,000 contacts enter reactivation_90d; codes issued, emails delivered by 2 workers.

    .venv/bin/python bench/campaign.py [--contacts N] [--workers W] [--database URL] [--workdir DIR] [--keep]
                                       [--skip-kill]

Builds a base of N dormant contacts with email addresses and granted consent
(bulk SQL), starts a private redis-server, an SMTP sink (aiosmtpd, its own
process, logging every message's X-Hub-Message-Id and recipient), W `hub
worker` processes and one `hub scheduler`, switches reactivation_90d on and
measures until every treated contact's email reached the sink: the segment
refresh, the runs, the promo codes, rendering and SMTP, end to end. Then the
same again on a fresh base, with one worker killed with SIGKILL mid-run and
restarted, counting duplicates and missing messages at the sink. Prints ONE
JSON document on stdout; progress goes to stderr. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout: import this checkout's hub
    sys.path.insert(0, str(ROOT))

from harness import free_port, log, serve_smtp  # noqa: E402  (bench/ is on sys.path when run as a script)

GOAL_MESSAGES_PER_S = 1_000
SECRET = "bench-secret-key-0123456789"
WORKFLOW = "reactivation_90d"
CHUNK = 5_000
_TRACKING = re.compile(rb"\r\nX-Hub-Message-Id: (\d+)\r\n")


def cpu_seconds(pid: int) -> float:
    """A process's CPU time and that of the children it waited for (RQ's work-horses), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


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

    from hub import migrations
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
        if ids[-1] % 20_000 == 0 or ids[-1] == count:
            log(f"  base: {ids[-1]:,} contacts")
    if engine.dialect.name == "postgresql":  # explicit ids: move the sequence past them
        with engine.begin() as conn:
            conn.exec_driver_sql("SELECT setval('contacts_id_seq', (SELECT max(id) FROM contacts))")
    dispose_engines()


# --- one campaign -------------------------------------------------------------------------

class Campaign:
    """Redis, the sink, the workers and the scheduler of one measured run, and the database they share."""

    def __init__(self, args: argparse.Namespace, workdir: Path, url: str) -> None:
        self.args, self.workdir, self.url = args, workdir, url
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.workers: list[subprocess.Popen[bytes]] = []
        self.sink_log = workdir / "sink.log"
        self.cpu_dead = 0.0

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
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or self.procs["sink"].poll() is not None:
                raise SystemExit("the SMTP sink did not start")
            time.sleep(0.05)
        self.smtp_port = int(port_file.read_text())

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
        try:
            return [int(p) for p in Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()]
        except OSError:
            return []

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


def run_campaign(args: argparse.Namespace, workdir: Path, url: str, *, kill: bool) -> dict[str, Any]:
    from hub import plugins
    from hub.db import dispose_engines, get_engine

    log(f"{'kill run' if kill else 'clean run'}: building {args.contacts:,} contacts")
    started = time.perf_counter()
    make_base(url, args.contacts)
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
    stopped = False
    try:
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
            if not state["treated"] or state["runs"] < args.contacts:
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
    finally:
        if not stopped:
            campaign.stop()
    delivered = read_sink(campaign.sink_log)
    treated = state["treated"]
    ids = Counter(i for i, _ in delivered)
    rcpts = Counter(r for _, r in delivered)
    result.update({
        "contacts": args.contacts, "entered": state["runs"], "in_holdout": state["holdout"], "treated": treated,
        "codes_issued": _codes(engine), "received_by_sink": len(delivered),
        "duplicates": sum(n - 1 for n in ids.values() if n > 1) + sum(n - 1 for n in rcpts.values() if n > 1),
        "missing": max(0, treated - len(rcpts)),
        "seconds": round(seconds, 2),
        "messages_per_s": round(len(rcpts) / seconds) if seconds else 0,
        "worker_cpu_ms_per_message": round(cpu * 1000 / max(len(rcpts), 1), 3),
    })
    dispose_engines()
    return result


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=100_000,
                        help="contacts entering the workflow (default 100,000)")
    parser.add_argument("--workers", type=int, default=2, help="hub worker processes (default 2)")
    parser.add_argument("--batch-size", type=int, default=500, help="runs per job (default 500)")
    parser.add_argument("--database", default=None, help="SQLAlchemy URL of an EMPTY database for the clean run "
                                                         "(default: SQLite in the work directory)")
    parser.add_argument("--workdir", type=Path, default=None, help="where files go (default: temporary)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory afterwards")
    parser.add_argument("--skip-kill", action="store_true", help="measure the clean run only")
    parser.add_argument("--timeout", type=float, default=1800, help="give up a run after this many seconds")
    parser.add_argument("--sink", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sink:
        serve_sink(*args.sink)
        return 0
    if args.contacts < 1 or args.workers < 1:
        parser.error("--contacts and --workers must be at least 1")
    made = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="hub-bench-campaign-")) if made else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        clean_dir, kill_dir = workdir / "clean", workdir / "kill"
        clean_dir.mkdir(exist_ok=True)
        clean = run_campaign(args, clean_dir, args.database or f"sqlite:///{clean_dir / 'hub.db'}", kill=False)
        killed = None
        if not args.skip_kill:
            kill_dir.mkdir(exist_ok=True)
            killed = run_campaign(args, kill_dir, f"sqlite:///{kill_dir / 'hub.db'}", kill=True)
    finally:
        if args.keep or not made:
            log(f"files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    database = (args.database or "sqlite").split(":", 1)[0].split("+")[0]
    report = {
        "contacts": args.contacts, "workers": args.workers, "database": database,
        "clean": clean, "kill_9": killed,
        "goal": {"messages_per_s": GOAL_MESSAGES_PER_S, "duplicates": 0, "missing": 0},
        "met": {"messages_per_s": clean["messages_per_s"] >= GOAL_MESSAGES_PER_S,
                "no_duplicates": clean["duplicates"] == 0 and (killed is None or killed["duplicates"] == 0),
                "none_missing": clean["missing"] == 0 and (killed is None or killed["missing"] == 0)},
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
