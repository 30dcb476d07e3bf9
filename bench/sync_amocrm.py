"""Benchmark: a full and an incremental amoCRM sync against the emulator at 7 requests/s.

    .venv/bin/python bench/sync_amocrm.py [--contacts N] [--leads N] [--activities N] [--latency S] [--seed S]

Starts the emulator (plugins/amocrm/sandbox/) in a child process with
`--contacts` contacts, their leads cut to the first `--leads`, their
companies, `--activities` calls and tasks (300,000 by default), 150 ms of
latency and amoCRM's 7 requests/s limit (HTML 429s, blocks for abuse).
Connects Hub with an authorization code, times a full `hub.sync.run` into a
fresh SQLite database, changes 100 contacts through the API and times the
incremental run; then fetches the same contacts and leads through the
amocrm-api package (PyPI), sequentially as it pages, for comparison. Prints
ONE JSON document on stdout; progress and notes go to stderr.

The goal it measures: the full sync (field definitions, companies,
contacts, leads with their stage moves, calls and tasks of contacts,
companies and leads) within 1.1x of the rate-limit floor (requests needed /
7 s), zero 429s, and the 100 changes in at most 8 requests (contacts,
deletions, leads, companies, calls of contacts, of companies and of leads,
tasks). It also reports the share of the full run that was
local work (this process's CPU time over the run's wall time). See
bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout: import this checkout's hub
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

PAGE = 250
RATE = 7.0
ENTITIES = ("contacts", "companies", "leads")  # whose calls and tasks are lists of their own
# Contacts, deletions, leads, companies, calls of contacts, of companies and of leads (amoCRM lists notes per
# entity type: those of leads are one list more), and tasks of every entity type in one list.
INCREMENTAL_REQUESTS = 8


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the emulator, in a process of its own --------------------------------------------------

def serve_sandbox(contacts: int, leads: int, seed: int, latency: float, activities: int) -> None:
    """Child mode: seed, serve, print how to connect as one JSON line, run until stdin closes."""
    from plugins.amocrm.sandbox import Account, SandboxServer, settle_heap
    from plugins.amocrm.sandbox.data import LOST_STATUS_ID, WON_STATUS_ID

    # The emulator seeds every sample order as a lead (about 2.7 per contact); the benchmark's
    # scenario has as many leads as contacts, and every call and task on a lead it holds.
    account = Account(contacts=contacts, seed=seed, latency=latency, activities=activities, leads=leads)
    settle_heap()  # this process is the emulator alone: keep full GC passes from stalling it
    with SandboxServer(account) as server:
        print(json.dumps({"base_url": server.base_url, "client_id": server.client_id,
                          "client_secret": server.client_secret, "redirect_uri": server.redirect_uri,
                          "code": account.issue_authorization_code(), "token": account.issue_long_lived_token(),
                          "contacts": account.contacts_count, "leads": account.leads_count,
                          "companies": len(account.company_ids()),
                          "calls": {entity: len(account.calls(entity)) for entity in ENTITIES},
                          "tasks": {entity: sum(1 for t in account.seeded_tasks if t["entity_type"] == entity)
                                    for entity in ENTITIES},
                          "moves": sum(1 for e in account.events if e["type"] == "lead_status_changed"
                                       and e["value_after"][0]["lead_status"]["id"] not in (WON_STATUS_ID,
                                                                                            LOST_STATUS_ID)),
                          "contact_ids": account.contact_ids()[:100]}), flush=True)
        sys.stdin.read()
    account.close()


def start_sandbox(args: argparse.Namespace) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve-sandbox", "--contacts", str(args.contacts), "--leads", str(args.leads),
         "--seed", str(args.seed), "--latency", str(args.latency), "--activities", str(args.activities)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line:
        raise SystemExit("the emulator did not start")
    return child, json.loads(line)


def sandbox_stats(base_url: str) -> dict[str, Any]:
    return requests.get(base_url + "/_sandbox/stats", timeout=30).json()


def diff(after: dict[str, Any], before: dict[str, Any]) -> dict[str, int]:
    keys = ("requests", "too_many_requests", "blocked", "unauthorized", "refreshes")
    return {k: int(after.get(k, 0)) - int(before.get(k, 0)) for k in keys}


# --- the runs --------------------------------------------------------------------------------

def needed(count: int) -> int:
    """Requests a list of `count` needs at least: one per page of 250 (no total count is given, so a
    client also needs the 204 after a full last page when the server announces `next` there; that one
    is not counted, which makes the floor the strictest possible)."""
    return max(1, math.ceil(count / PAGE))


def floor(info: dict[str, Any]) -> int:
    """Requests a full sync needs at least: three field lists, the pipelines, a page per 250 companies,
    contacts, leads, calls (of contacts, of companies, of leads) and tasks (of contacts, of companies, of
    leads), and a page per 100 stage moves (the events list's maximum)."""
    lists = [info["companies"], info["contacts"], info["leads"], *info["calls"].values(), *info["tasks"].values()]
    return 3 + 1 + sum(needed(count) for count in lists) + max(1, math.ceil(info["moves"] / 100))


def third_party_fetch(info: dict[str, Any], access_token: str) -> dict[str, Any]:
    """The same contacts and leads through the amocrm-api package, pointed at the emulator."""
    try:
        from amocrm.v2 import interaction, tokens as amo_tokens  # type: ignore[import-untyped]
    except ImportError as exc:
        return {"package": "amocrm-api", "error": f"not installed ({exc}); install amocrm-api to compare"}

    class ToSandbox(requests.adapters.HTTPAdapter):
        """The package always calls https://SUBDOMAIN.amocrm.ru; send those requests to the emulator."""

        def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            request.url = request.url.replace("https://hubsandbox.amocrm.ru", info["base_url"], 1)
            return super().send(request, **kwargs)

    session = requests.Session()
    session.mount("https://hubsandbox.amocrm.ru", ToSandbox())
    storage = amo_tokens.MemoryTokensStorage()
    storage.save_tokens(access_token, "unused")
    manager = amo_tokens.TokenManager()
    manager(client_id=info["client_id"], client_secret=info["client_secret"], subdomain="hubsandbox",
            redirect_url=info["redirect_uri"], storage=storage)
    before = sandbox_stats(info["base_url"])
    started = time.monotonic()
    counts = {}
    try:
        for path, include in (("contacts", ["leads"]), ("leads", ["contacts"])):
            fetched = interaction.GenericInteraction(token_manager=manager, session=session, path=path)
            counts[path] = sum(1 for _ in fetched.get_all(include=include))
            note(f"amocrm-api: {counts[path]:,} {path}")
    except Exception as exc:  # noqa: BLE001 - the package stops at the first 429 or unexpected status
        return {"package": "amocrm-api", "error": f"{type(exc).__name__}: {str(exc)[:200]}",
                "seconds": round(time.monotonic() - started, 1),
                **{f"emulator_{k}": v for k, v in diff(sandbox_stats(info["base_url"]), before).items()}}
    seconds = time.monotonic() - started
    seen = diff(sandbox_stats(info["base_url"]), before)
    return {"package": "amocrm-api", "how": "GenericInteraction.get_all, one page at a time, limit 250",
            "contacts": counts.get("contacts"), "leads": counts.get("leads"), "seconds": round(seconds, 1),
            "requests": seen["requests"], "rate_limited": seen["too_many_requests"]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import hub.plugins
    import plugins.amocrm
    from hub import migrations, sync
    from hub.config import Settings
    from hub.db import get_engine
    from plugins.amocrm import commands, tokens
    from plugins.amocrm.source import AmoSource, client_for

    child, info = start_sandbox(args)
    activities = sum(info["calls"].values()) + sum(info["tasks"].values())
    note(f"emulator at {info['base_url']}: {info['contacts']:,} contacts, {info['leads']:,} leads, "
         f"{info['companies']:,} companies, {activities:,} calls and tasks, {info['moves']:,} stage moves, "
         f"{args.latency * 1000:.0f} ms latency")
    try:
        workdir = Path(tempfile.mkdtemp(prefix="hub-bench-amocrm-"))
        settings = Settings(database_url=f"sqlite:///{workdir}/hub.db", secret_key="bench-secret-key-0123456789",
                            plugins=())
        engine = get_engine(settings.database_url)
        migrations.upgrade(engine)
        pm = hub.plugins.build(settings)
        pm.register(plugins.amocrm)
        hub.plugins.use(pm)
        tokens.save(engine, settings, tokens.exchange_code(info["base_url"], info["client_id"], info["client_secret"],
                                                           info["redirect_uri"], info["code"]))
        commands.account_details(settings)
        time.sleep(1.1)  # let the connect's requests leave the emulator's one-second window

        before = sandbox_stats(info["base_url"])
        started = time.monotonic()
        cpu_started = time.process_time()
        done = {"fields": 0, "companies": 0, "contacts": 0, "orders": 0, "activities": 0}
        spans: dict[str, list[float]] = {}

        def progress(entity: str, n: int) -> None:
            done[entity] += n
            span = spans.setdefault(entity, [time.monotonic(), time.monotonic()])
            span[1] = time.monotonic()
            if sum(done.values()) % 25_000 < n:
                note(f"full sync: {done['companies']:,} companies, {done['contacts']:,} contacts, "
                     f"{done['orders']:,} orders, {done['activities']:,} activities, "
                     f"{time.monotonic() - started:.0f} s")

        full = sync.run(engine, settings, "amocrm", full=True, progress=progress)
        full_s = time.monotonic() - started
        local_s = time.process_time() - cpu_started
        full_seen = diff(sandbox_stats(info["base_url"]), before)
        floor_requests = floor(info)
        floor_s = floor_requests / RATE
        note(f"full sync: {full_s:.1f} s, {full_seen['requests']} requests, floor {floor_s:.1f} s")

        # 100 contacts change in amoCRM, then the scheduled incremental run.
        headers = {"Authorization": f"Bearer {info['token']}"}
        ids = info["contact_ids"]
        for start in range(0, len(ids), 50):
            body = [{"id": i, "first_name": f"Изменён {n}"} for n, i in enumerate(ids[start:start + 50], start)]
            response = requests.patch(info["base_url"] + "/api/v4/contacts", json=body, headers=headers, timeout=30)
            response.raise_for_status()
            time.sleep(0.3)
        time.sleep(1.1)
        before = sandbox_stats(info["base_url"])
        started = time.monotonic()
        incremental = sync.run(engine, settings, "amocrm", source=AmoSource(settings))
        incremental_s = time.monotonic() - started
        incremental_seen = diff(sandbox_stats(info["base_url"]), before)
        note(f"incremental: {incremental.counts.contacts['updated']} contacts updated, "
             f"{incremental_seen['requests']} requests")

        # Hub's client alone (no database), for a like-for-like fetch comparison.
        time.sleep(1.1)
        client = client_for(settings)
        before = sandbox_stats(info["base_url"])
        started = time.monotonic()
        fetched = {"contacts": 0, "leads": 0}
        for path, extra in (("contacts", "leads"), ("leads", "contacts")):
            for _, rows in client.pages(f"/api/v4/{path}", [("with", extra), ("order[id]", "asc")], path):
                fetched[path] += len(rows)
        fetch_s = time.monotonic() - started
        fetch_seen = diff(sandbox_stats(info["base_url"]), before)
        note(f"hub client fetch: {fetch_s:.1f} s")

        time.sleep(1.1)
        access_token = tokens.load(engine, settings)[0]["access_token"]
        other = third_party_fetch(info, access_token)
        note(f"amocrm-api: {other}")
    finally:
        if child.stdin:
            child.stdin.close()
        child.wait(timeout=60)

    report = full.as_dict()
    ratio = full_s / floor_s
    return {
        "contacts": info["contacts"], "leads": info["leads"], "companies": info["companies"],
        "activities": activities, "stage_moves": info["moves"], "latency_ms": round(args.latency * 1000),
        "rate_limit_per_s": RATE,
        "full": {"seconds": round(full_s, 1), "floor_seconds": round(floor_s, 1), "ratio": round(ratio, 3),
                 "requests_needed": floor_requests, "requests": full_seen["requests"],
                 "rate_limited": full_seen["too_many_requests"], "blocked": full_seen["blocked"],
                 "refreshes": full_seen["refreshes"],
                 "local_work_seconds": round(local_s, 1), "local_share": round(local_s / full_s, 3),
                 "seconds_by_entity": {entity: round(end - begin, 1) for entity, (begin, end) in spans.items()},
                 "contacts_created": report["contacts"]["created"], "contacts_merged": report["contacts"]["merged"],
                 "orders_created": report["orders"]["created"], "companies_created": report["companies"]["created"],
                 "activities_created": report["activities"]["created"], "fields": report["fields"],
                 "errors": report["errors"]},
        "incremental": {"changed_contacts": len(ids), "contacts_updated": incremental.counts.contacts["updated"],
                        "requests": incremental_seen["requests"], "seconds": round(incremental_s, 2),
                        "by_hub_stats": incremental.extra.get("requests")},
        "fetch_only": {"hub": {"seconds": round(fetch_s, 1), "requests": fetch_seen["requests"],
                               "rate_limited": fetch_seen["too_many_requests"], **fetched},
                       "third_party": other},
        "database": "sqlite",
        "goal": {"full_ratio": 1.1, "rate_limited": 0, "incremental_requests": INCREMENTAL_REQUESTS},
        "met": {"full_ratio": ratio <= 1.1, "rate_limited": full_seen["too_many_requests"] == 0,
                "incremental_requests": incremental_seen["requests"] <= INCREMENTAL_REQUESTS},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--activities", type=int, default=300_000, help="calls and tasks the account holds")
    parser.add_argument("--latency", type=float, default=0.15, help="seconds the emulator waits on every answer")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--serve-sandbox", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sandbox:
        serve_sandbox(args.contacts, args.leads, args.seed, args.latency, args.activities)
        return
    os.environ.pop("HUB_REDIS_URL", None)
    print(json.dumps(run(args), ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
