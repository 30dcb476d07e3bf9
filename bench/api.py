"""Benchmark: a shop's systems pushing events and contacts through /api/v1 on `hub admin`.

    .venv/bin/python bench/api.py [--events N] [--contacts N] [--clients C] [--threads T]
                                  [--workdir DIR] [--keep] [--no-floor]

Makes a fresh SQLite database in the work directory, a key with contacts:write
and events:write, and starts `hub admin` (waitress, as in production) on a
free loopback port. C client threads then push N contacts in batches of 1,000
(POST /api/v1/contacts, each with a reference, a phone and an email) and N
events in batches of 500 (POST /api/v1/events, each with its own id and its
contact named by reference). A batch that gets no answer or a 5xx/429 is sent
again unchanged: the references and event ids make a repeat change nothing.
Afterwards the database is counted: every contact and every event exactly once.

The floor, measured in the same run on a second fresh database: the same
batches written in this process by the same view functions (one transaction
per batch, as the gate does) without HTTP, JSON or the gate; and the events
once more as a bare executemany INSERT into a copy of the events table. The
ratios say what the web server, the gate and the storage code each cost.
Prints ONE JSON document on stdout; progress and notes go to stderr.

Goal (issue 21): at least 10,000 events/s and 2,000 contacts/s on SQLite, nothing lost or doubled.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout: import this checkout's hub
    sys.path.insert(0, str(ROOT))

from harness import free_port, in_workdir, log, start_server, stop  # noqa: E402  (bench/ is on sys.path when run as a script)

SECRET = "bench-secret-key-0123456789"
HUB = str(Path(sys.executable).with_name("hub"))
SOURCE = "shop"  # the contacts' reference source
KEY_NAME = "bench"
EVENT_BATCH = 500
CONTACT_BATCH = 1000
GOAL = {"events_per_s": 10_000, "contacts_per_s": 2_000}
ATTEMPTS = 5  # a batch is sent at most this many times
EPOCH = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
PAGES = ("/", "/catalog", "/cart", "/checkout", "/product/17", "/product/42")


# --- what the clients send: deterministic, so a repeat is byte-identical -------------------

def contact(i: int) -> dict[str, Any]:
    return {"source": SOURCE, "external_id": f"c{i}", "first_name": "Мария", "last_name": f"Покупателева{i}",
            "phones": [f"+7 916 {i // 10000 % 1000:03d}-{i // 100 % 100:02d}-{i % 100:02d}"],
            "emails": [f"buyer{i}@example.ru"], "city": "Казань", "tags": ["bench"]}


def event(i: int, contacts: int) -> dict[str, Any]:
    name = ("page_viewed", "page_viewed", "cart_abandoned", "product_viewed")[i % 4]
    return {"id": f"{SOURCE}-e{i}", "name": name,
            "reference": {"source": SOURCE, "external_id": f"c{i % contacts}"},
            "properties": {"page": PAGES[i % len(PAGES)], "amount": (i % 997) * 10, "n": i},
            "occurred_at": (EPOCH + dt.timedelta(seconds=i)).isoformat()}


def batches(kind: str, total: int, size: int, contacts: int) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    make: Callable[[int], dict[str, Any]] = contact if kind == "contacts" else (lambda i: event(i, contacts))
    for start in range(0, total, size):
        yield start, [make(i) for i in range(start, min(total, start + size))]


# --- setup --------------------------------------------------------------------------------

def fresh_database(path: Path) -> str:
    from hub import migrations
    from hub.db import dispose_engines, get_engine

    url = f"sqlite:///{path}"
    migrations.upgrade(get_engine(url))
    dispose_engines()
    return url


def make_key(url: str) -> str:
    from hub.db import dispose_engines, get_engine
    from hub.webapi import keys

    with get_engine(url).begin() as conn:
        key = keys.create(conn, KEY_NAME, ["contacts:write", "events:write"], actor="bench",
                          rate=1_000_000).key  # the rate limit is not what is measured
    dispose_engines()
    return key


# --- the push -----------------------------------------------------------------------------

def push(url: str, key: str, kind: str, total: int, size: int, contacts: int, clients: int) -> dict[str, Any]:
    """Send every batch of `kind` from `clients` threads (a keep-alive connection each)."""
    import requests

    work = batches(kind, total, size, contacts)
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    tally = {"sent": 0, "retries": 0, "lost_batches": 0, "refused": 0, "duplicates": 0, "stored": 0}
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", "Accept-Language": "en"}

    def client() -> None:
        session = requests.Session()
        while True:
            with lock:
                job = next(work, None)
            if job is None:
                return
            _, items = job
            body = json.dumps({kind: items}, ensure_ascii=False).encode()
            answer = None
            for attempt in range(ATTEMPTS):
                started = time.perf_counter()
                try:
                    response = session.post(f"{url}/api/v1/{kind}", data=body, headers=headers, timeout=300)
                    status = str(response.status_code)
                except requests.RequestException as exc:
                    response, status = None, type(exc).__name__
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    latencies.append(elapsed)
                    if attempt:
                        tally["retries"] += 1
                if response is not None and response.status_code == 200:
                    answer = response.json()
                    break
                if response is not None and response.status_code < 500 and response.status_code != 429:
                    log(f"{kind}: refused with {status}: {response.text[:500]}")
                    break  # the batch is wrong: sending it again would not help
                time.sleep(float(response.headers.get("Retry-After", 1)) if response is not None else 1)
            with lock:
                tally["sent"] += len(items)
                if answer is None:
                    tally["lost_batches"] += 1
                    continue
                outcomes = [item["status"] for item in answer["items"]]
                tally["refused"] += outcomes.count("refused")
                tally["duplicates"] += outcomes.count("duplicate")
                tally["stored"] += len(outcomes) - outcomes.count("refused") - outcomes.count("duplicate")

    threads = [threading.Thread(target=client, name=f"client-{n}") for n in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    return {"items": total, "batch": size, "batches": -(-total // size), "seconds": round(seconds, 2),
            f"{kind}_per_s": round(total / seconds), **percentiles(latencies), **tally,
            "statuses": dict(sorted(statuses.items()))}


def percentiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {"p50_ms": round(values[0], 1) if values else 0.0, "p99_ms": round(values[0], 1) if values else 0.0}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50_ms": round(cuts[49], 1), "p99_ms": round(cuts[98], 1), "max_ms": round(max(values), 1)}


def counted(url: str) -> dict[str, int]:
    """What the database holds afterwards."""
    from sqlalchemy import func, select

    from hub.db import dispose_engines, get_engine
    from hub.models import Contact, Event, ExternalRef

    with get_engine(url).connect() as conn:
        out = {"contacts": conn.execute(select(func.count()).select_from(Contact)
                                        .where(Contact.deleted_at.is_(None))).scalar_one(),
               "references": conn.execute(select(func.count()).select_from(ExternalRef)
                                          .where(ExternalRef.source == SOURCE)).scalar_one(),
               "events": conn.execute(select(func.count()).select_from(Event)).scalar_one(),
               "distinct_event_ids": conn.execute(select(func.count(func.distinct(Event.uid)))).scalar_one()}
    dispose_engines()
    return out


# --- the floor: the same rows, in this process, without HTTP -------------------------------

def floor(url: str, events: int, contacts: int) -> dict[str, Any]:
    """The same batches through the same view functions, one transaction each, in one thread."""
    from hub import plugins
    from hub.config import load_settings
    from hub.db import dispose_engines, get_engine
    from hub.webapi.contacts import post_contacts
    from hub.webapi.endpoints import ApiKeyInfo, Call
    from hub.webapi.events import post_events

    os.environ["HUB_DATABASE_URL"] = url
    settings = load_settings()
    plugins.use(plugins.build(settings))
    engine = get_engine(url)
    key = ApiKeyInfo(1, KEY_NAME, ("contacts:write", "events:write"))
    out: dict[str, Any] = {}
    for kind, total, size, view in (("contacts", contacts, CONTACT_BATCH, post_contacts),
                                    ("events", events, EVENT_BATCH, post_events)):
        started = time.perf_counter()
        for _, items in batches(kind, total, size, contacts):
            with engine.begin() as conn:
                view(Call(settings=settings, conn=conn, key=key, path={}, query={}, body={kind: items}))
        seconds = time.perf_counter() - started
        out[kind] = {"seconds": round(seconds, 2), f"{kind}_per_s": round(total / seconds)}
    out["counts"] = counted(url)
    out["events_bare_insert"] = bare_insert(url, events)
    plugins.use(None)
    dispose_engines()
    return out


def bare_insert(url: str, events: int) -> dict[str, Any]:
    """The event rows as one executemany INSERT per batch into a copy of the events table (same indexes)."""
    import sqlite3

    path = url.removeprefix("sqlite:///")
    db = sqlite3.connect(path)
    made = db.execute("SELECT sql FROM sqlite_master WHERE tbl_name = 'events' AND sql IS NOT NULL").fetchall()
    for (sql,) in made:
        db.execute(sql.replace("events", "bare_events"))
    contact_of = dict(db.execute("SELECT external_id, contact_id FROM external_refs WHERE source = ?", (SOURCE,)))
    now = dt.datetime.now(dt.timezone.utc).isoformat(sep=" ")
    started = time.perf_counter()
    for _, items in batches("events", events, EVENT_BATCH, len(contact_of) or 1):
        rows = [(e["id"], contact_of[e["reference"]["external_id"]], e["name"], json.dumps(e["properties"]),
                 e["occurred_at"], now, KEY_NAME) for e in items]
        with db:
            db.executemany("INSERT INTO bare_events (uid, contact_id, name, properties, occurred_at, received_at, "
                           "api_key) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    seconds = time.perf_counter() - started
    db.close()
    return {"seconds": round(seconds, 2), "events_per_s": round(events / seconds)}


# --- the run ------------------------------------------------------------------------------

def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    empty = workdir / "empty.db"
    empty.unlink(missing_ok=True)
    fresh_database(empty)
    api_db, floor_db = workdir / "api.db", workdir / "floor.db"
    shutil.copy(empty, api_db)
    shutil.copy(empty, floor_db)
    url = f"sqlite:///{api_db}"
    key = make_key(url)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_DATABASE_URL=url, HUB_SECRET_KEY=SECRET, HUB_PUBLIC_URL=f"http://127.0.0.1:{port}")
    log(f"hub admin (waitress) on port {port}; {args.clients} clients push {args.contacts} contacts in batches of "
        f"{CONTACT_BATCH}, then {args.events} events in batches of {EVENT_BATCH}")
    threads = ["--threads", str(args.threads)] if args.threads else []
    server = start_server([HUB, "admin", "--port", str(port), *threads], env, port, workdir / "hub-admin.log")
    try:
        base = f"http://127.0.0.1:{port}"
        contacts = push(base, key, "contacts", args.contacts, CONTACT_BATCH, args.contacts, args.clients)
        log(f"contacts: {contacts['contacts_per_s']}/s, p50 {contacts['p50_ms']} ms, p99 {contacts['p99_ms']} ms")
        events = push(base, key, "events", args.events, EVENT_BATCH, args.contacts, args.clients)
        log(f"events: {events['events_per_s']}/s, p50 {events['p50_ms']} ms, p99 {events['p99_ms']} ms")
    finally:
        stop(server)
    found = counted(url)
    exact = {"contacts": found["contacts"] == args.contacts and found["references"] == args.contacts,
             "events": found["events"] == found["distinct_event_ids"] == args.events}
    result: dict[str, Any] = {
        "database": "sqlite", "cpus": os.cpu_count(), "clients": args.clients,
        "server": {"name": "waitress", "threads": args.threads or "hub admin's default"},
        "contacts": contacts, "events": events, "found": found, "exact": exact,
        "goal": GOAL,
        "met": {"events_per_s": events["events_per_s"] >= GOAL["events_per_s"],
                "contacts_per_s": contacts["contacts_per_s"] >= GOAL["contacts_per_s"],
                "nothing_lost_or_doubled": all(exact.values())},
    }
    if not args.no_floor:
        log("the floor: the same batches through the same views, in this process, without HTTP")
        result["floor"] = low = floor(f"sqlite:///{floor_db}", args.events, args.contacts)
        result["ratio"] = {
            "events_vs_views": round(events["events_per_s"] / low["events"]["events_per_s"], 3),
            "contacts_vs_views": round(contacts["contacts_per_s"] / low["contacts"]["contacts_per_s"], 3),
            "events_vs_bare_insert": round(events["events_per_s"] / low["events_bare_insert"]["events_per_s"], 3),
        }
    assert all(exact.values()), f"lost or doubled: sent {args.contacts} contacts and {args.events} events, " \
                                f"found {found}"
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=4, help="client threads pushing at once")
    parser.add_argument("--threads", type=int, help="the server's threads (hub admin --threads; default: what "
                                                    "hub admin picks for SQLite)")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--no-floor", action="store_true", help="skip the in-process floor")
    args = parser.parse_args()
    if args.contacts < 1:
        parser.error("--contacts must be at least 1: events name their contact by its reference")
    return in_workdir(args, run, prefix="hub-bench-api-")


if __name__ == "__main__":
    sys.exit(main())
