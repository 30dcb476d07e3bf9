"""Benchmark: render and deliver 100,000 emails to a local SMTP sink with 2 workers, against its floor.

    .venv/bin/python bench/mailing.py [--messages N] [--workers W] [--database URL] [--workdir DIR] [--keep]
                                      [--profile DIR] [--no-floor]

Sets up a base of N contacts with email addresses and granted marketing
consent, starts an SMTP sink (aiosmtpd, in a process of its own, counting and
discarding what it receives), then starts W worker processes at once. Each
worker renders the shipped reactivation_email template for its share of the
contacts into the outbox (hub.messaging.create_many) and then dispatches the
whole outbox (hub.messaging.dispatch) over SMTP, concurrently with the others,
exactly as `hub messages dispatch` does in several processes, with every
installed plugin loaded and every send rule on.

Then, in the same run, the floor (bench/smtp_floor.py): W processes send the very same rendered
letters (read back from the outbox, put in Hub's wire format before the clock
starts) to the same sink, each in a bare loop over one SMTP connection
(smtplib, no database, no checks). Hub's throughput as a share of the floor
is the goal: at least 0.6. Prints ONE JSON document on stdout; progress and
notes go to stderr. See bench/README.md.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout: import this checkout's hub
    sys.path.insert(0, str(ROOT))

from harness import in_workdir, log, serve_smtp  # noqa: E402  (bench/ is on sys.path when run as a script)
from smtp_floor import floor_worker, run_floor, summary  # noqa: E402

GOAL_MESSAGES_PER_S = 1_500  # the absolute figure, kept for context; the goal is the ratio
GOAL_RATIO = 0.6  # Hub's messages/s as a share of the floor's, same run, same sink
SECRET = "bench-secret-key-0123456789"
EARLY = 5_000  # messages a worker has sent when its "early" memory is read
GOAL_RSS_GROWTH_MB = 32  # flat memory: what a worker may grow by between EARLY and the end
PROMO = {"code": "BENCH-15", "discount": 15, "expires_at": "2026-12-31"}
_TRACKING = re.compile(rb"\r\nX-Hub-Message-Id: (\d+)\r\n")



def rss_mb() -> float:
    """Resident set now (not the peak), from /proc; 0 where there is no /proc."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    """This process's peak resident set: VmHWM, which starts afresh at exec.

    (ru_maxrss would carry over the parent's peak into a child started with
    fork and exec, and the parent built the whole base of contacts.)
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


# --- the SMTP sink (its own process) ------------------------------------------------------

def serve_sink(port_file: Path, report_file: Path) -> None:
    """Accept every message, keep only its tracking id; write a tally when told (SIGUSR1) and when stopped.

    SIGUSR1 ends a phase: its tally goes to sink-1.json, sink-2.json, ...
    beside `report_file` and the count starts afresh, so one sink process
    counts Hub and the floor apart.
    """
    seen: list[int] = []
    phase = [0, cpu_seconds()]  # phases written, CPU seconds when the current one began

    def write_tally(*_: object) -> None:
        nonlocal seen
        done, seen = seen, []
        cpu = cpu_seconds()
        phase[0] += 1
        tally = {"received": len(done), "unique": len(set(done)), "untracked": done.count(-1),
                 "cpu_s": round(cpu - phase[1], 2)}
        phase[1] = cpu
        report_file.with_name(f"{report_file.stem}-{phase[0]}{report_file.suffix}").write_text(json.dumps(tally))

    class Sink:
        async def handle_EHLO(self, server, session, envelope, hostname, responses):
            # PIPELINING, as the relays a shop sends through offer it (Postfix, Exim, Yandex 360, Mail.ru,
            # Gmail); aiosmtpd reads pipelined commands in order but does not announce it.
            session.host_name = hostname
            return [*responses[:-1], "250-PIPELINING", responses[-1]]

        async def handle_DATA(self, server, session, envelope):
            m = _TRACKING.search(envelope.content)
            seen.append(int(m.group(1)) if m else -1)
            return "250 2.0.0 Accepted"

    signal.signal(signal.SIGUSR1, write_tally)
    serve_smtp(Sink(), port_file)


# --- one worker (its own process) ---------------------------------------------------------

FROM = "Цветочная лавка <shop@example.ru>"


def settings_for(url: str, port: int, workdir: Path, overrides: dict | None = None):
    """Every installed plugin loaded (so every plugin's send rules run), the limits at their defaults.

    `overrides` are the run's own settings: the quiet hours the parent picked
    so they are on but do not hold, and any --setting given.
    """
    from hub.config import load_settings

    base = load_settings(environ={}, config_path=str(workdir / "no-such-hub.toml"))
    extra = {"smtp_url": f"smtp://127.0.0.1:{port}", "mail_from": FROM, "public_url": "https://hub.example.ru",
             "company": {"name": "Цветочная лавка", "website": "https://lavka.example.ru"}}
    return replace(base, database_url=url, secret_key=SECRET, plugins=None, extra=extra | dict(overrides or {}))


def quiet_hours_away(settings) -> str:
    """A one-minute window of quiet hours twelve hours from now: checked for every letter, holding none."""
    local = dt.datetime.now(settings.tz) + dt.timedelta(hours=12)
    return f"{local:%H:%M}-{local + dt.timedelta(minutes=1):%H:%M}"


def checks_on(settings) -> dict:
    """What every letter passed at send time in this run, read from the plugin manager and the settings."""
    from hub import send_limits
    from hub.plugins import get_pm
    from plugins.mailing import tracking

    hook = get_pm().hook
    limits = send_limits.load(settings)
    return {"send_rules": sorted({i.plugin_name for i in hook.check_send.get_hookimpls()}),
            "can_contact": sorted({i.plugin_name for i in hook.can_contact.get_hookimpls()}),
            "consent_at_send_time": True, "suppression_lookup": True, "exactly_once_claims": True,
            "frequency_cap": str(limits.frequency_cap) if limits.frequency_cap else None,
            "quiet_hours_email": str(settings.extra.get("quiet_hours_email")),
            "mail_domain_rates": settings.extra.get("mail_domain_rates"),
            "click_tracking": {"clicks": tracking.mode(settings).clicks, "opens": tracking.mode(settings).opens},
            "message_sent_hooks": sorted({i.plugin_name for i in hook.message_sent.get_hookimpls()}),
            "settings": {k: v for k, v in settings.extra.items() if k not in ("company", "smtp_url")}}


def profiled(profile_dir: str | None, name: str, work):
    """Run `work()` under cProfile when asked, writing DIR/NAME.prof (the figures then include its overhead).

    The profiler counts CPU time (time.process_time), not the clock: a worker spends most of its
    dispatch waiting for the SMTP server's replies, and what is to be cut is what it computes.
    """
    if not profile_dir:
        return work()
    profiler = cProfile.Profile(time.process_time)
    try:
        return profiler.runcall(work)
    finally:
        Path(profile_dir).mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(str(Path(profile_dir) / f"{name}.prof"))


def run_worker(args: dict) -> dict:
    """Render this worker's share into the outbox, then dispatch until nothing is left."""
    from hub import plugins

    settings = settings_for(args["database"], args["port"], Path(args["workdir"]), args["overrides"])
    plugins.configure(settings)
    return profiled(args.get("profile"), f"hub-worker-{args['index']}", lambda: _render_and_dispatch(args, settings))


def _render_and_dispatch(args: dict, settings) -> dict:
    from hub import messaging
    from hub.db import dispose_engines, get_engine

    engine = get_engine(settings.database_url)
    name = f"worker-{args['index']}"
    ids = list(range(args["first_id"], args["last_id"] + 1))
    promo = dict(PROMO, expires_at=dt.date.fromisoformat(str(PROMO["expires_at"])))
    started = time.perf_counter()
    messaging.create_many(engine, settings, ids, channel="email", template="reactivation_email",
                          key_prefix="bench", context={"promo": promo})
    rendered_s = time.perf_counter() - started
    cpu_render = cpu_seconds()  # from the process's start: imports and plugins included
    rss_after_render = rss_mb()
    log(f"{name}: rendered {len(ids):,} in {rendered_s:.1f} s; dispatching")
    sent = 0
    rss_early: float | None = None
    next_note = 10_000

    def progress(n: int) -> None:
        nonlocal sent, rss_early, next_note
        sent += n
        if rss_early is None and sent >= EARLY:
            rss_early = rss_mb()
        if sent >= next_note:
            log(f"{name}: {sent:,} dispatched, RSS {rss_mb():.0f} MB")
            next_note += 20_000

    dispatch_started = time.perf_counter()
    report = messaging.dispatch(engine, settings, worker=name, batch_size=args["batch_size"], progress=progress)
    finished = time.perf_counter()
    rss_end = rss_mb()
    dispose_engines()
    return {"worker": name, "rendered": len(ids), "seconds_render": round(rendered_s, 2),
            "seconds_dispatch": round(finished - dispatch_started, 2), "sent": report.sent,
            "other_outcomes": {k: v for k, v in report.as_dict().items()
                               if k in ("failed", "bounced", "suppressed", "deferred", "unknown", "held", "released")
                               and v},
            "errors": report.errors, "rss_mb_after_render": round(rss_after_render, 1),
            "rss_mb_early": round(rss_early or 0.0, 1), "rss_mb_at_end": round(rss_end, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1), "cpu_s_to_render": round(cpu_render, 2),
            "cpu_s": round(cpu_seconds(), 2)}


# --- setting up and driving ---------------------------------------------------------------

def make_base(url: str, count: int, workdir: Path) -> tuple[int, int]:
    """`count` contacts with a valid email and granted email marketing consent; returns the id range."""
    from sqlalchemy import func, select

    from hub import consent, migrations, plugins, sync
    from hub.db import bulk_insert, dispose_engines, get_engine, utcnow
    from hub.models import ConsentEvent, Contact
    from hub.records import ContactRecord

    settings = settings_for(url, 0, workdir)
    plugins.configure(settings)
    engine = get_engine(url)
    migrations.upgrade(engine)
    with engine.connect() as conn:
        if conn.execute(select(func.count()).select_from(Contact)).scalar_one():
            raise SystemExit("the database already holds contacts; give an empty one")
    names = ["Анна", "Олег", "Мария", "Иван", "Елена", "Пётр", "Ольга", "Сергей"]
    first_id = last_id = 0
    now = utcnow()
    for start in range(0, count, 5_000):
        records = [ContactRecord(source="bench", external_id=str(i), first_name=names[i % len(names)],
                                 last_name="Иванова" if i % 2 else "Петров", emails=[f"client{i}@example.ru"])
                   for i in range(start, min(count, start + 5_000))]
        with engine.begin() as conn:
            ids = [int(cid) for cid in sync.write_contacts(conn, records, settings, sync.Counts()).contact_ids
                   if cid is not None]
            bulk_insert(conn, ConsentEvent.__table__, [
                {"contact_id": cid, "channel": "email", "purpose": "marketing", "status": "granted",
                 "source": "bench", "evidence": {}, "at": now} for cid in ids])
            consent.restate(conn, ids)  # the ledger was written past hub.consent.record
        first_id = first_id or min(ids)
        last_id = max(last_id, max(ids))
        log(f"  base: {min(count, start + 5_000):,} contacts")
    dispose_engines()
    return first_id, last_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000, help="emails to render and deliver (default 100,000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--batch-size", type=int, default=200, help="messages a worker claims at a time (default 200)")
    parser.add_argument("--database", default=None,
                        help="SQLAlchemy URL of an EMPTY database (default: SQLite in the work directory)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the SQLite file goes (default: temporary)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory afterwards")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="profile every worker (cProfile) into DIR/hub-worker-N.prof and floor-worker-N.prof; "
                             "the figures then include the profiler's overhead")
    parser.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                        help="a Hub setting for the run, as settings.extra[KEY] (e.g. a per-domain rate); repeatable")
    parser.add_argument("--no-floor", action="store_true", help="skip the floor (no ratio)")
    parser.add_argument("--sink", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--floor-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sink:
        serve_sink(*args.sink)
        return 0
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return 0
    if args.floor_worker:
        print(json.dumps(run_floor_worker(json.loads(args.floor_worker))), flush=True)
        return 0
    if args.messages < 1 or args.workers < 1:
        parser.error("--messages and --workers must be at least 1")
    if any("=" not in pair for pair in args.setting):
        parser.error("--setting takes KEY=VALUE")
    return in_workdir(args, run, prefix="hub-bench-mail-")


def run_floor_worker(args: dict) -> dict:
    """A floor worker (bench/smtp_floor.py) with this benchmark's settings: the very letters Hub's workers sent."""
    settings = settings_for(args["database"], args["port"], Path(args["workdir"]), args["overrides"])
    return floor_worker(args, settings, lambda name, work: profiled(args.get("profile"), name, work))


def end_phase(sink: subprocess.Popen, report: Path, phase: int) -> dict:
    """Have the sink write what it received since the last phase, and read it."""
    found = report.with_name(f"{report.stem}-{phase}{report.suffix}")
    sink.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 60
    while not found.exists() or not found.read_text():
        if time.monotonic() > deadline or sink.poll() is not None:
            raise SystemExit("the SMTP sink did not write its tally")
        time.sleep(0.05)
    time.sleep(0.05)  # the file is written in one go; let the write finish
    return json.loads(found.read_text())


def run_hub(args: argparse.Namespace, env: dict, common: dict, shares: list[tuple[int, int]]
            ) -> tuple[float, list[dict]]:
    started = time.perf_counter()
    workers = [subprocess.Popen(
        [sys.executable, __file__, "--worker", json.dumps(common | {"index": i + 1, "first_id": a, "last_id": b,
                                                                    "batch_size": args.batch_size})],
        env=env, stdout=subprocess.PIPE) for i, (a, b) in enumerate(shares)]
    outputs = [w.communicate()[0] for w in workers]
    seconds = time.perf_counter() - started
    if any(w.returncode for w in workers):
        raise SystemExit(f"a worker failed (exit codes {[w.returncode for w in workers]})")
    return seconds, [json.loads(out) for out in outputs]


def run(args: argparse.Namespace, workdir: Path) -> dict:
    url = args.database or f"sqlite:///{workdir / 'hub.db'}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    log(f"creating {args.messages:,} contacts with granted email consent")
    started = time.perf_counter()
    first_id, last_id = make_base(url, args.messages, workdir)
    log(f"base ready in {time.perf_counter() - started:.1f} s")

    from hub import plugins

    # Every check on, none holding: quiet hours for email away from now, a pace per destination domain
    # far above what two workers send (a rule that takes a slot per letter: its cost is measured).
    overrides = {"quiet_hours_email": quiet_hours_away(settings_for(url, 0, workdir)),
                 "mail_domain_rates": "example.ru=100000/s, *=100000/s"}
    overrides |= dict(pair.split("=", 1) for pair in args.setting)
    settings = settings_for(url, 0, workdir, overrides)
    plugins.configure(settings)
    checks = checks_on(settings)

    port_file, sink_report = workdir / "sink.port", workdir / "sink.json"
    sink = subprocess.Popen([sys.executable, __file__, "--sink", str(port_file), str(sink_report)], env=env)
    floor_tally: dict = {}
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or sink.poll() is not None:
                raise SystemExit("the SMTP sink did not start")
            time.sleep(0.05)
        port = int(port_file.read_text())
        log(f"SMTP sink on 127.0.0.1:{port}; starting {args.workers} workers")
        per = -(-(last_id - first_id + 1) // args.workers)
        shares = [(first_id + i * per, min(last_id, first_id + (i + 1) * per - 1)) for i in range(args.workers)]
        common = {"database": url, "port": port, "workdir": str(workdir), "overrides": overrides,
                  "profile": str(args.profile) if args.profile else None}
        seconds, reports = run_hub(args, env, common, shares)
        tally = end_phase(sink, sink_report, 1)
        if not args.no_floor:
            log(f"the floor: the same letters, {args.workers} bare loops of smtplib, the same sink")
            floor_seconds, floor_reports = run_floor([sys.executable, __file__, "--floor-worker"], env, common,
                                                     shares)
            floor_tally = end_phase(sink, sink_report, 2)
    finally:
        sink.send_signal(signal.SIGTERM)
        sink.wait(timeout=60)

    sent = sum(r["sent"] for r in reports)
    rate = sent / seconds if seconds else 0.0
    exactly_once = tally.get("received") == tally.get("unique") == args.messages == sent
    log(f"{sent:,} sent in {seconds:.1f} s ({rate:,.0f} messages/s); sink received {tally}")
    growth = max(r["rss_mb_at_end"] - r["rss_mb_early"] for r in reports) \
        if all(r["rss_mb_early"] for r in reports) else None
    dispatch_s = max(r["seconds_dispatch"] for r in reports)
    floor: dict | None = None
    ratio = None
    if floor_tally:
        floor = summary(floor_seconds, floor_reports, floor_tally.get("received"), floor_tally.get("cpu_s", 0.0))
        floor_rate = floor["sent"] / floor_seconds if floor_seconds else 0.0
        ratio = rate / floor_rate if floor_rate else 0.0
        log(f"floor: {floor['sent']:,} sent in {floor_seconds:.1f} s ({floor_rate:,.0f} messages/s); "
            f"Hub reaches {ratio:.2f} of it")
    return {
        "messages": args.messages,
        "workers": args.workers,
        "sent": sent,
        "received_by_sink": tally.get("received"),
        "unique_at_sink": tally.get("unique"),
        "exactly_once": exactly_once,
        "seconds": round(seconds, 2),
        "messages_per_s": round(rate),
        "dispatch_messages_per_s": round(sent / dispatch_s) if dispatch_s else None,
        "floor": floor,
        "ratio": {"messages_per_s": round(ratio, 3) if ratio is not None else None},
        "checks": checks,
        "profiled": bool(args.profile),
        "peak_rss_mb_per_worker": [r["peak_rss_mb"] for r in reports],
        "cpu_ms_per_message": {"workers": round(sum(r["cpu_s"] for r in reports) * 1000 / max(sent, 1), 3),
                               "sink": round(tally.get("cpu_s", 0.0) * 1000 / max(sent, 1), 3)},
        "rss_growth_mb": round(growth, 1) if growth is not None else None,
        "per_worker": reports,
        "database": url.split(":", 1)[0].split("+")[0],
        "goal": {"ratio": GOAL_RATIO, "messages_per_s": GOAL_MESSAGES_PER_S, "exactly_once": True,
                 "rss_growth_mb": GOAL_RSS_GROWTH_MB},
        "met": {"ratio": ratio is not None and ratio >= GOAL_RATIO, "messages_per_s": rate >= GOAL_MESSAGES_PER_S,
                "exactly_once": exactly_once, "rss_growth_mb": growth is not None and growth <= GOAL_RSS_GROWTH_MB},
    }


if __name__ == "__main__":
    raise SystemExit(main())
