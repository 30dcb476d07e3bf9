"""Benchmark: a full and an incremental Bitrix24 sync against the emulator with real limits.

The portal emulator runs in its own process with the standard plan's bucket
(2 requests/s drained, 50 in a burst) and a fixed latency per request. Hub
syncs every custom field, company, contact, deal and activity (calls,
meetings, e-mails, tasks; 300,000 by default) into a fresh SQLite database,
then 100 contacts change and an incremental sync runs. For comparison, fast_bitrix24's get_all
fetches the same contacts from the same portal. Prints one JSON document.

    .venv/bin/python bench/sync_bitrix24.py [--contacts N] [--activities N] [--latency S] [--seed S]
        [--skip-third-party] [--no-local-floor] [--profile FILE]

Each time sits beside its floor, measured or counted in the same run:

- the rate-limit floor of the full and the incremental sync: the requests the
  protocol cannot avoid for what the emulator holds (50 records a list call, 50
  calls chained in one batch request, one batch for the field definitions,
  funnels and stages), spent as fast as the portal's bucket lets them through
  (50 at once, then 2 a second), the last one answered after one latency;
- the floor of local work: the same records fetched again with Hub's client
  and decoded and mapped by the plugin (Bitrix24Source.read) without writing
  them anywhere, in CPU time of this process, like the sync's local work.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import math
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import threading
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
from plugins.bitrix24.client import MAX_BATCH, PAGE, command  # noqa: E402
from plugins.bitrix24.mapping import CONTACT_FIELDS  # noqa: E402
from plugins.bitrix24.source import HISTORY_CHUNK, Bitrix24Source  # noqa: E402

BUCKET = 50  # burst of the standard plan; a drained bucket refills at 2/s
# The product's requirement for local work, absolute: records per CPU-second of the syncing process.
# The local floor's same-run ratio is reported beside it (local_work.floor.ratio, .ratio_at_goal).
LOCAL_GOAL = 20_000
RATE = 2.0  # requests per second the standard plan's bucket drains


def serve_portal(contacts: int, seed: int, latency: float, count_cost: float, activities: int) -> None:
    """Child mode: build the portal, serve it, print how to reach it and what it holds as one JSON line,
    and run until stdin closes."""
    from plugins.bitrix24.sandbox import Portal, SandboxServer

    started = time.monotonic()
    portal = Portal(contacts, seed, latency=latency, count_sleep_scale=count_cost, activities=activities)
    with SandboxServer(portal) as server:
        print(json.dumps({"webhook": server.webhook_url, "stats": server.stats_url, "held": holdings(portal),
                          "built_s": round(time.monotonic() - started, 1)}), flush=True)
        sys.stdin.read()


def holdings(portal: Any) -> dict[str, int]:
    """What a full sync has to read from this portal, counted in the emulator's own tables.

    Activities are only those bound to a contact or a company (what the source's filter asks for);
    requisites only those of companies; deals whose stage entry date needs the stage history are the
    open ones without MOVED_TIME (the source asks for their latest history entries, 10 deals a call).
    """
    with portal._lock:  # the emulator's tables: this process is the emulator
        activities = portal._activity_rows.rows.values()
        deals = portal._deals.rows.values()
        return {
            "contacts": len(portal._contacts.rows), "deals": len(portal._deals.rows),
            "companies": len(portal._companies.rows),
            "requisites": sum(1 for r in portal._requisites.rows.values() if r["ENTITY_TYPE_ID"] == 4),
            "activities": len(portal._activity_rows.rows),
            "activities_read": sum(1 for r in activities if r["OWNER_TYPE_ID"] in (2, 3, 4)),  # deals' too
            "deals_needing_history": sum(1 for d in deals if not d.get("MOVED_TIME") and d.get("CLOSED") != "Y"),
        }


def start_portal(args: argparse.Namespace) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve-portal", "--contacts", str(args.contacts), "--seed", str(args.seed),
         "--latency", str(args.latency), "--count-cost", str(args.count_cost), "--activities", str(args.activities)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line:
        raise SystemExit("the emulator did not start")
    info = json.loads(line)
    log(f"  portal built in {info['built_s']} s: {info['held']}")
    return child, info


def stop_portal(child: subprocess.Popen[str]) -> None:
    if child.stdin is not None:
        child.stdin.close()
    try:
        child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        child.terminate()
        child.wait(timeout=30)


def list_requests(rows: int) -> int:
    """Requests one list of `rows` records needs at least: 50 records a call, 50 calls chained in a batch.

    At least one even when empty (that is how a client learns it is). A client that does not count
    (start=-1) needs one more call after a last full page; that call is not counted (it fits the same
    batch unless the rows are an exact multiple of 2,500), which makes this the strictest floor.
    """
    return max(1, math.ceil(math.ceil(rows / PAGE) / MAX_BATCH))


def rate_floor(requests: dict[str, int], latency: float) -> dict[str, Any]:
    """The seconds `requests` take at least through the standard plan's bucket, starting empty.

    The first 50 go at once, each further one 0.5 s after the one before; the last answer comes one
    latency after the last request. The pages of one list are a chain (each batch starts after the
    last ID of the one before), so the longest list's requests times the latency is a floor as well;
    different lists could be read side by side, so their chains are not added up.
    """
    total = sum(requests.values())
    bucket_s = max(0, total - BUCKET) / RATE + latency
    chain_s = max(requests.values(), default=0) * latency
    return {"requests_needed": total, "by_list": requests, "seconds": round(max(bucket_s, chain_s), 2),
            "bucket_s": round(bucket_s, 2), "longest_chain_s": round(chain_s, 2)}


def full_floor(held: dict[str, int], latency: float) -> dict[str, Any]:
    """A full sync's floor: the directories in one batch, then every list Hub reads, whole."""
    history_calls = math.ceil(held["deals_needing_history"] / HISTORY_CHUNK)
    requests = {"directory": 1, "companies": list_requests(held["companies"]),
                "requisites": list_requests(held["requisites"]) if held["companies"] else 0,
                "contacts": list_requests(held["contacts"]),
                # crm.contact.list does not return COMPANY_IDS: crm.item.list brings them, 50 contacts a call.
                "contact_companies": list_requests(held["contacts"]) if held["contacts"] else 0,
                "deals": list_requests(held["deals"]),
                "stage_history": math.ceil(history_calls / MAX_BATCH),
                "activities": list_requests(held["activities_read"])}
    return rate_floor(requests, latency)


def incremental_floor(changed: int, latency: float) -> dict[str, Any]:
    """An incremental sync's floor after `changed` contacts changed: the directories again (custom fields
    and stages can change at any time), the changed contacts, and one request for each other list to learn
    that nothing changed there; the changed contacts' companies come in one request more."""
    requests = {"directory": 1, "companies": 1, "contacts": list_requests(changed),
                "contact_companies": list_requests(changed) if changed else 0, "deals": 1, "activities": 1}
    return rate_floor(requests, latency)


def local_floor(settings: Any) -> dict[str, Any]:
    """The same records fetched again and decoded and mapped by the plugin, written nowhere.

    CPU time of this process (both threads: the client decodes each answer on its read-ahead thread),
    measured the same way as the sync's local work, so the difference is what resolving and writing
    cost. The HTTP client's own work is in both, and so are the garbage collector's settings for a
    bulk run (hub.sync.bulk_collector), which the sync runs under.
    """
    source = Bitrix24Source(settings)
    records: dict[str, int] = {}
    started, cpu_started = time.monotonic(), time.process_time()
    with sync.bulk_collector():
        for entity in source.entities():
            records[entity] = sum(len(page.records) for page in source.read(entity, None, True))
    cpu_s = time.process_time() - cpu_started
    mapped = sum(n for entity, n in records.items() if entity != "fields")
    return {"records": mapped, "by_entity": records, "requests": source.client.stats.requests,
            "seconds": round(time.monotonic() - started, 2), "cpu_s": round(cpu_s, 2),
            "records_per_cpu_s": round(mapped / max(cpu_s, 1e-9))}


class Collections:
    """The cyclic garbage collector's passes while the block runs: how many of each generation, and the CPU
    time they took (in whichever thread set them off), from gc.callbacks."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0]
        self.cpu_s = 0.0
        self._started: dict[int, float] = {}

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started[threading.get_ident()] = time.thread_time()
            return
        began = self._started.pop(threading.get_ident(), None)
        if began is not None:
            self.counts[info["generation"]] += 1
            self.cpu_s += time.thread_time() - began

    def __enter__(self) -> Collections:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def as_dict(self) -> dict[str, Any]:
        return {"by_generation": list(self.counts), "cpu_s": round(self.cpu_s, 3)}


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
    parser.add_argument("--no-local-floor", action="store_true",
                        help="skip fetching and mapping everything again without writing (the local work's floor)")
    parser.add_argument("--profile", metavar="FILE",
                        help="write cProfile stats (CPU time) of the full sync's writing thread to FILE")
    parser.add_argument("--serve-portal", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_portal:
        serve_portal(args.contacts, args.seed, args.latency, args.count_cost, args.activities)
        return 0

    log(f"Starting the emulator with {args.contacts:,} contacts and {args.activities:,} activities…")
    proc, info = start_portal(args)
    webhook, stats_url, holding = info["webhook"], info["stats"], info["held"]
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
            spans: dict[str, list[float]] = {}

            def progress(entity: str, n: int) -> None:
                now = time.monotonic()
                spans.setdefault(entity, [now, now])[1] = now

            started, cpu_started, thread_started = time.monotonic(), time.process_time(), time.thread_time()
            if profiler is not None:
                profiler.enable()
            with Collections() as collections:
                report = sync.run(engine, settings, "bitrix24", full=True, source=source, progress=progress)
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
            inc_started = time.monotonic()
            inc = sync.run(engine, settings, "bitrix24", source=incremental)
            inc_s = time.monotonic() - inc_started

            floor_local: dict[str, Any] = {"skipped": "--no-local-floor"}
            if not args.no_local_floor:
                log("Local work's floor: everything fetched and mapped again, written nowhere…")
                drain_bucket()
                floor_local = local_floor(settings)

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
        stop_portal(proc)

    records_per_request = records / max(st.requests, 1)
    floor_full = full_floor(holding, args.latency)
    floor_inc = incremental_floor(args.changed, args.latency)
    local_rate = records / max(local_s, 1e-9)
    if "cpu_s" in floor_local:
        # Local work against its floor: the sync's records per CPU-second over the floor's (at most about 1).
        floor_local["ratio"] = round(local_rate / max(floor_local["records_per_cpu_s"], 1), 3)
        # What the absolute goal is as a ratio at this run's floor (context, not the goal itself).
        floor_local["ratio_at_goal"] = round(LOCAL_GOAL / max(floor_local["records_per_cpu_s"], 1), 3)
        # The same fetch's wall clock: what the portal's answers take without any writing behind them.
        floor_local["ratio_of_full_sync_seconds"] = round(full_s / max(floor_local["seconds"], 1e-9), 3)
    result = {
        "contacts": held["contacts"], "deals": held["deals"], "companies": held.get("companies"),
        "activities": held.get("activities"), "latency_s": args.latency, "count_cost": args.count_cost,
        "held": holding,
        "full": {"seconds": round(full_s, 2), "floor_seconds": floor_full["seconds"],
                 "ratio": round(full_s / max(floor_full["seconds"], 1e-9), 2),
                 "requests_needed": floor_full["requests_needed"],
                 "records": records, "requests": st.requests,
                 "requests_ratio": round(st.requests / max(floor_full["requests_needed"], 1), 3),
                 "records_per_request": round(records_per_request), "rejected_503": after_full["status_503"],
                 "rate_limited_seen": st.rate_limited, "waiting_for_portal_s": round(st.http_s, 2),
                 "paced_by_own_bucket_s": round(st.paced_s, 2), "local_cpu_s": round(local_s, 2),
                 "writing_thread_cpu_s": round(writing_s, 2),
                 # Passes of the cyclic garbage collector during the sync (hub.sync.bulk_collector's setting).
                 "garbage_collections": collections.as_dict(),
                 "local_records_per_s": round(local_rate),
                 # CPU seconds of local work per second of the run: the rest is waiting for the portal.
                 "local_share": round(local_s / max(wall_s, 1e-9), 3),
                 "contacts": report.counts.contacts, "orders": report.counts.orders,
                 "companies": report.counts.companies, "activities": report.counts.activities,
                 "fields": report.counts.fields,
                 "seconds_by_entity": {entity: round(end - begin, 1) for entity, (begin, end) in spans.items()},
                 "server_operating_s": round(after_full["operating_total"] - held["operating_total"], 2),
                 "floor": floor_full},
        "local_work": {"records": records, "cpu_s": round(local_s, 2), "records_per_cpu_s": round(local_rate),
                       "floor": floor_local},
        "incremental": {"changed": args.changed, "seconds": round(inc_s, 2), "floor_seconds": floor_inc["seconds"],
                        "ratio": round(inc_s / max(floor_inc["seconds"], 1e-9), 1),
                        "requests_needed": floor_inc["requests_needed"],
                        "requests": incremental.client.stats.requests,
                        "retries": incremental.client.stats.retries,
                        "rate_limited": incremental.client.stats.rate_limited,
                        "operating_waits": incremental.client.stats.operating_waits,
                        "contacts": inc.counts.contacts, "floor": floor_inc},
        "fetch_contacts": {"hub": ours, "fast_bitrix24": theirs},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "database": "sqlite", "cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
        # A small incremental run: the directories (fields, funnels, stages), one request per entity and
        # one for the changed contacts' companies: the floor's count.
        "goal": {"records_per_request": 2000, "rejected_503": 0, "local_records_per_s": LOCAL_GOAL,
                 "incremental_requests": floor_inc["requests_needed"], "speedup_vs_fast_bitrix24": 2.0},
    }
    speedup = None
    their_time = theirs.get("seconds") if theirs.get("finished") else theirs.get("projected_seconds")
    if their_time and ours.get("seconds"):
        speedup = round(their_time / ours["seconds"], 2)
    result["fetch_contacts"]["speedup"] = speedup
    result["met"] = {
        "records_per_request": records_per_request >= 2000,
        "rejected_503": after_full["status_503"] == 0,
        "local_records_per_s": local_rate >= LOCAL_GOAL,
        "incremental_requests": incremental.client.stats.requests <= floor_inc["requests_needed"],
        "speedup_vs_fast_bitrix24": speedup is not None and speedup >= 2.0,
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
