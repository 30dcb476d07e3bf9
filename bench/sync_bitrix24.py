"""Benchmark: a full and an incremental Bitrix24 sync against the emulator with real limits.

The portal emulator runs in its own process with the standard plan's bucket
(2 requests/s drained, 50 in a burst) and a fixed latency per request. Hub
syncs every custom field, company, contact, deal and activity (calls,
meetings, e-mails, tasks; 300,000 by default) into a fresh SQLite database,
then 100 contacts change and an incremental sync runs. For comparison, fast_bitrix24's get_all
fetches the same contacts from the same portal. Prints one JSON document.

    .venv/bin/python bench/sync_bitrix24.py [--contacts N] [--activities N] [--latency S] [--seed S]
        [--skip-third-party] [--profile FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import log  # noqa: E402  (bench/ is on sys.path when run as a script)

from hub import migrations, plugins, sync  # noqa: E402
from hub.config import load_settings  # noqa: E402
from hub.db import get_engine  # noqa: E402
from plugins.bitrix24 import connection  # noqa: E402
from plugins.bitrix24.client import command  # noqa: E402
from plugins.bitrix24.mapping import CONTACT_FIELDS  # noqa: E402
from plugins.bitrix24.source import Bitrix24Source  # noqa: E402

BUCKET = 50  # burst of the standard plan; a drained bucket refills at 2/s



def start_portal(contacts: int, seed: int, latency: float, count_cost: float,
                 activities: int) -> tuple[subprocess.Popen[str], str, str]:
    # In English, whatever the machine's language: the lines are read for the webhook and stats URLs.
    code = ("from hub.i18n import use_language\nfrom plugins.bitrix24.sandbox import serve\n"
            "with use_language('en'):\n"
            f"    serve(port=0, contacts={contacts}, seed={seed}, latency={latency}, count_sleep_scale={count_cost}, "
            f"activities={activities})")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    webhook = stats = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        log(f"  portal: {line.rstrip()}")
        if line.startswith("Webhook:"):
            webhook = line.split()[-1]
        if line.startswith("Stats:"):
            stats = line.split()[-1]
            break
    if not webhook:
        raise SystemExit("the emulator did not start")
    return proc, webhook, stats


def portal_stats(url: str) -> dict[str, Any]:
    stats = requests.get(url, timeout=30).json()
    stats["operating_total"] = sum(stats["operating_seconds"].values())  # per method
    return stats


def drain_bucket() -> None:
    """Wait until the portal's bucket is empty again, so each run starts as a fresh client would."""
    time.sleep(BUCKET / 2 + 1)


def touch_contacts(webhook: str, n: int) -> None:
    """Change `n` contacts through the REST API (batches of 50 updates)."""
    ids = list(range(1, n + 1))
    for start in range(0, n, 50):
        cmd = {f"u{i}": command("crm.contact.update", {"id": cid, "fields": {"ADDRESS_CITY": f"Казань {start}"}})
               for i, cid in enumerate(ids[start:start + 50])}
        requests.post(webhook + "batch", json={"halt": 0, "cmd": cmd}, timeout=60).raise_for_status()


def _fetch_with_fast_bitrix24(webhook: str) -> None:
    from fast_bitrix24 import Bitrix  # type: ignore[import-untyped]

    rows = Bitrix(webhook, verbose=False).get_all("crm.contact.list", params={"select": CONTACT_FIELDS})
    print(len(rows))


def third_party(webhook: str, stats_url: str, total: int, cap_s: float) -> dict[str, Any]:
    """fast_bitrix24's get_all in a child process, stopped after `cap_s` if it has not finished:
    it counts on every page, and on a large portal counting costs real server time."""
    try:
        import fast_bitrix24  # noqa: F401
    except ImportError:
        return {"skipped": "fast_bitrix24 is not installed (pip install -e '.[test]')"}
    before = portal_stats(stats_url)
    code = (f"import runpy, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"runpy.run_path({__file__!r})['_fetch_with_fast_bitrix24']({webhook!r})")
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    error = None
    try:
        out, err = child.communicate(timeout=cap_s)
        if child.returncode == 0:
            finished, contacts = True, int(out.strip().splitlines()[-1])
        else:
            finished, contacts = False, None
            error = (err.strip().splitlines() or ["exited with an error"])[-1][:300]
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        finished, contacts = False, None
        error = f"not finished after {cap_s:.0f} s"
    seconds = time.monotonic() - started
    after = portal_stats(stats_url)
    calls = after["methods"].get("crm.contact.list", 0) - before["methods"].get("crm.contact.list", 0)
    calls += after["batch_methods"].get("crm.contact.list", 0) - before["batch_methods"].get("crm.contact.list", 0)
    fetched = contacts if finished and contacts is not None else min(total, calls * 50)
    return {"finished": finished, "error": error, "contacts": fetched, "seconds": round(seconds, 2),
            "records_per_s": round(fetched / seconds) if seconds else None,
            "projected_seconds": round(seconds * total / fetched) if fetched else None,
            "requests": after["requests"] - before["requests"],
            "rejected_503": after["status_503"] - before["status_503"],
            "rejected_429": after["status_429"] - before["status_429"],
            "server_operating_s": round(after["operating_total"] - before["operating_total"], 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--activities", type=int, default=300_000,
                        help="calls, meetings, e-mails and tasks on the portal (companies: one per ten contacts)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--changed", type=int, default=100)
    parser.add_argument("--count-cost", type=float, default=1.0,
                        help="share of the documented counting cost the emulator really spends (1: as a portal)")
    parser.add_argument("--third-party-cap", type=float, default=180.0,
                        help="stop the third-party fetch after this many seconds and project its time")
    parser.add_argument("--skip-third-party", action="store_true")
    parser.add_argument("--profile", metavar="FILE",
                        help="write cProfile stats (CPU time) of the full sync's writing thread to FILE")
    args = parser.parse_args(argv)

    log(f"Starting the emulator with {args.contacts:,} contacts and {args.activities:,} activities…")
    proc, webhook, stats_url = start_portal(args.contacts, args.seed, args.latency, args.count_cost, args.activities)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = replace(load_settings(environ={}), database_url=f"sqlite:///{Path(tmp) / 'hub.db'}",
                               secret_key=secrets.token_urlsafe(32))
            engine = get_engine(settings.database_url)
            migrations.upgrade(engine)
            plugins.use(plugins.build(replace(settings, plugins=())))
            connection.save(engine, settings, {"kind": "webhook", "url": webhook})
            held = portal_stats(stats_url)

            log("Full sync…")
            source = Bitrix24Source(settings)
            # CPU time of the writing thread: wall time would count the reading thread's turns at the GIL.
            profiler = cProfile.Profile(time.thread_time) if args.profile else None
            started, cpu_started, thread_started = time.monotonic(), time.process_time(), time.thread_time()
            if profiler is not None:
                profiler.enable()
            report = sync.run(engine, settings, "bitrix24", full=True, source=source)
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(args.profile)
            full_s = time.monotonic() - started
            # Local work is measured in CPU time of this process (both threads): requests overlap
            # the writing of the previous page, so wall time minus network time would undercount
            # the network and overcount the work, and other load on the machine would count too.
            local_s = time.process_time() - cpu_started
            writing_s = time.thread_time() - thread_started  # mapping and writing; the rest is fetching
            st = source.client.stats
            wall_s = full_s
            records = sum(report.counts.contacts[k] for k in ("created", "updated", "merged")) + \
                report.counts.orders["created"] + report.counts.orders["updated"] + \
                sum(report.counts.companies[k] for k in ("created", "updated")) + \
                sum(report.counts.activities[k] for k in ("created", "updated"))
            after_full = portal_stats(stats_url)

            log(f"Changing {args.changed} contacts through the API, then an incremental sync…")
            drain_bucket()
            touch_contacts(webhook, args.changed)
            drain_bucket()
            incremental = Bitrix24Source(settings)
            inc = sync.run(engine, settings, "bitrix24", source=incremental)

            ours = {"seconds": round(full_s, 2), "requests": st.requests}
            theirs: dict[str, Any] = {"skipped": "--skip-third-party"}
            if not args.skip_third_party:
                log("fast_bitrix24 get_all of the same contacts…")
                drain_bucket()
                contacts_started = time.monotonic()
                only_contacts = Bitrix24Source(settings)
                pages = sum(len(rows) for rows in only_contacts.client.pages("crm.contact.list",
                                                                           select=only_contacts._select("contacts")))
                ours = {"contacts": pages, "seconds": round(time.monotonic() - contacts_started, 2),
                        "requests": only_contacts.client.stats.requests}
                drain_bucket()
                theirs = third_party(webhook, stats_url, pages, args.third_party_cap)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    records_per_request = records / max(st.requests, 1)
    result = {
        "contacts": held["contacts"], "deals": held["deals"], "companies": held.get("companies"),
        "activities": held.get("activities"), "latency_s": args.latency, "count_cost": args.count_cost,
        "full": {"seconds": round(full_s, 2), "records": records, "requests": st.requests,
                 "records_per_request": round(records_per_request), "rejected_503": after_full["status_503"],
                 "rate_limited_seen": st.rate_limited, "waiting_for_portal_s": round(st.http_s, 2),
                 "paced_by_own_bucket_s": round(st.paced_s, 2), "local_cpu_s": round(local_s, 2),
                 "writing_thread_cpu_s": round(writing_s, 2),
                 "local_records_per_s": round(records / max(local_s, 1e-9)),
                 # CPU seconds of local work per second of the run: the rest is waiting for the portal.
                 "local_share": round(local_s / max(wall_s, 1e-9), 3),
                 "contacts": report.counts.contacts, "orders": report.counts.orders,
                 "companies": report.counts.companies, "activities": report.counts.activities,
                 "fields": report.counts.fields,
                 "server_operating_s": round(after_full["operating_total"] - held["operating_total"], 2)},
        "incremental": {"changed": args.changed, "requests": incremental.client.stats.requests,
                        "retries": incremental.client.stats.retries,
                        "rate_limited": incremental.client.stats.rate_limited,
                        "operating_waits": incremental.client.stats.operating_waits,
                        "contacts": inc.counts.contacts, "seconds": round(inc.duration_s, 2)},
        "fetch_contacts": {"hub": ours, "fast_bitrix24": theirs},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "database": "sqlite",
        # A small incremental run: the directories (fields, funnels, stages) and one request per entity.
        "goal": {"records_per_request": 2000, "rejected_503": 0, "local_records_per_s": 20000,
                 "incremental_requests": 5, "speedup_vs_fast_bitrix24": 2.0},
    }
    speedup = None
    their_time = theirs.get("seconds") if theirs.get("finished") else theirs.get("projected_seconds")
    if their_time and ours.get("seconds"):
        speedup = round(their_time / ours["seconds"], 2)
    result["fetch_contacts"]["speedup"] = speedup
    result["met"] = {
        "records_per_request": records_per_request >= 2000,
        "rejected_503": after_full["status_503"] == 0,
        "local_records_per_s": records / max(local_s, 1e-9) >= 20000,
        "incremental_requests": incremental.client.stats.requests <= 5,
        "speedup_vs_fast_bitrix24": speedup is not None and speedup >= 2.0,
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
