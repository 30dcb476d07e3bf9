"""Benchmark: a burst of one-click unsubscribes and Bitrix24 events at a running `hub admin`.

    .venv/bin/python bench/public_routes.py [--unsubscribes N] [--events N] [--clients C] [--threads T]
                                            [--database URL] [--workdir DIR] [--keep]

Seeds N contacts with an email and granted email marketing consent in a fresh
database (SQLite in the work directory; PostgreSQL with --database or
HUB_DATABASE_URL, which should be empty), connects Bitrix24 to a local portal
emulator, starts `hub admin` (waitress) on a free loopback port, and fires the
unsubscribes (POST List-Unsubscribe=One-Click to each contact's /u/<token>) and
the events (POST /hooks/bitrix24, the portal's form with the application
token), shuffled together, from C client threads. Then the same burst goes to
a trivial WSGI app on the same server, the floor. Prints ONE JSON document on
stdout; progress and notes go to stderr. See bench/README.md.

Goal: nothing lost (every answer 2xx, no connection error), p99 under 500 ms,
and every unsubscribe in the consent ledger.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout: import this checkout's hub
    sys.path.insert(0, str(ROOT))

from harness import free_port, in_workdir, log, start_server, stop  # noqa: E402  (bench/ is on sys.path when run as a script)

SECRET = "bench-secret-key-0123456789"
APP_TOKEN = "bench-application-token-0123456789"
GOAL_P99_MS = 500
HUB = str(Path(sys.executable).with_name("hub"))


@dataclass(frozen=True)
class Shot:
    kind: str  # "unsubscribe" | "event"
    path: str
    form: dict[str, str]


def bitrix24_event(n: int, record_id: int) -> dict[str, str]:
    """An event as a Bitrix24 portal posts it (application/x-www-form-urlencoded, PHP-style keys)."""
    name = ("ONCRMCONTACTUPDATE", "ONCRMCONTACTADD", "ONCRMDEALUPDATE")[n % 3]
    return {"event": name, "event_handler_id": "7", "data[FIELDS][ID]": str(record_id), "ts": str(1_764_000_000 + n),
            "auth[domain]": "bench.bitrix24.ru", "auth[client_endpoint]": "https://bench.bitrix24.ru/rest/",
            "auth[server_endpoint]": "https://oauth.bitrix.info/rest/", "auth[member_id]": "bench",
            "auth[application_token]": APP_TOKEN}


# --- setup --------------------------------------------------------------------------------

def seed(url: str, settings: Any, people: int) -> list[int]:
    """`people` contacts with an email and granted email marketing consent; their ids."""
    from sqlalchemy import select

    from hub import consent, migrations, sync
    from hub.db import get_engine
    from hub.models import ExternalRef
    from hub.records import ContactRecord

    engine = get_engine(url)
    migrations.upgrade(engine)
    for start in range(0, people, 500):
        records = [ContactRecord(source="bench", external_id=str(i), first_name="Анна", last_name=f"Бенчева{i}",
                                 emails=[f"person{i}@example.ru"]) for i in range(start, min(people, start + 500))]
        with engine.begin() as conn:
            sync.write_page(conn, records, settings, sync.Counts())
    with engine.connect() as conn:
        ids = list(conn.execute(select(ExternalRef.contact_id).where(ExternalRef.source == "bench")
                                .order_by(ExternalRef.contact_id)).scalars())
    with engine.begin() as conn:
        for contact_id in ids:
            consent.record(conn, contact_id, "email", "marketing", "granted", source="bench", settings=settings)
    return ids


def withdrawn(url: str, ids: list[int]) -> int:
    """How many of these contacts the ledger now has as withdrawn from email marketing."""
    from sqlalchemy import func, select

    from hub.db import get_engine
    from hub.models import ConsentEvent

    wanted = set(ids)
    with get_engine(url).connect() as conn:
        latest = (select(ConsentEvent.contact_id, func.max(ConsentEvent.id).label("id"))
                  .where(ConsentEvent.channel == "email", ConsentEvent.purpose == "marketing")
                  .group_by(ConsentEvent.contact_id).subquery())
        rows = conn.execute(select(ConsentEvent.contact_id).join(latest, latest.c.id == ConsentEvent.id)
                            .where(ConsentEvent.status == "withdrawn")).scalars()
        return sum(1 for contact_id in rows if contact_id in wanted)


# --- the burst ----------------------------------------------------------------------------

def fire(base: str, shots: list[Shot], clients: int) -> dict[str, Any]:
    """Send every shot from `clients` threads (a keep-alive connection each); latency and losses."""
    import requests

    local = threading.local()
    latencies: dict[str, list[float]] = {"unsubscribe": [], "event": []}
    lost: dict[str, int] = {"unsubscribe": 0, "event": 0}
    statuses: dict[str, int] = {}
    lock = threading.Lock()

    def one(shot: Shot) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        started = time.perf_counter()
        try:
            answer = session.post(base + shot.path, data=shot.form, timeout=60)
            status = str(answer.status_code)
            ok = 200 <= answer.status_code < 300
        except requests.RequestException as exc:
            status, ok = type(exc).__name__, False
        elapsed = (time.perf_counter() - started) * 1000
        with lock:
            latencies[shot.kind].append(elapsed)
            statuses[status] = statuses.get(status, 0) + 1
            if not ok:
                lost[shot.kind] += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(one, shots))
    seconds = time.perf_counter() - started
    every = latencies["unsubscribe"] + latencies["event"]
    result = {"requests": len(shots), "seconds": round(seconds, 2),
              "requests_per_s": round(len(shots) / seconds), **percentiles(every),
              "lost": sum(lost.values()), "statuses": dict(sorted(statuses.items()))}
    for kind, values in latencies.items():
        result[kind + "s"] = {"requests": len(values), **percentiles(values), "lost": lost[kind]}
    return result


def percentiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {"p50_ms": round(values[0], 1) if values else 0.0, "p99_ms": round(values[0], 1) if values else 0.0}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50_ms": round(cuts[49], 1), "p99_ms": round(cuts[98], 1), "max_ms": round(max(values), 1)}


# --- the floor: a trivial WSGI app on the same server -------------------------------------

def serve_floor(port: int, threads: int) -> None:
    """Answer every request with a few bytes, after reading its body, on the same server `hub admin` uses."""
    from hub.wsgi import serve

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length:
            environ["wsgi.input"].read(length)
        body = b'{"ok": true}'
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    serve(app, "127.0.0.1", port, threads=threads)


# --- the run ------------------------------------------------------------------------------

def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from hub import links, plugins
    from hub.config import load_settings
    from hub.db import dispose_engines, get_engine
    from plugins.bitrix24 import connection
    from plugins.bitrix24.sandbox import Portal, SandboxServer

    url = args.database or os.environ.get("HUB_DATABASE_URL") or f"sqlite:///{workdir / 'hub.db'}"
    port, floor_port = free_port(), free_port()
    public_url = f"http://127.0.0.1:{port}"
    settings = replace(load_settings(environ={}), database_url=url, secret_key=SECRET,
                       extra={"public_url": public_url})
    plugins.use(plugins.build(settings))
    log(f"seeding {args.unsubscribes} contacts")
    ids = seed(url, settings, args.unsubscribes)
    portal = Portal(contacts=args.portal_contacts, seed=1)
    portal_server = SandboxServer(portal).start()
    connection.save(get_engine(url), settings, {"kind": "webhook", "url": portal_server.webhook_url,
                                                "application_token": APP_TOKEN})
    rng = random.Random(args.seed)
    shots = [Shot("unsubscribe", "/u/" + links.unsubscribe_url(settings, cid).rsplit("/", 1)[1],
                  {"List-Unsubscribe": "One-Click"}) for cid in ids]
    shots += [Shot("event", "/hooks/bitrix24", bitrix24_event(n, rng.randint(1, args.portal_contacts)))
              for n in range(args.events)]
    rng.shuffle(shots)
    dispose_engines()
    from hub.wsgi import default_threads

    args.threads = args.threads or default_threads(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_DATABASE_URL=url, HUB_SECRET_KEY=SECRET, HUB_PUBLIC_URL=public_url)
    try:
        log(f"hub admin (waitress, {args.threads} threads) on {public_url}: {len(shots)} requests "
            f"from {args.clients} clients")
        server = start_server([HUB, "admin", "--port", str(port), "--threads", str(args.threads)], env, port,
                              workdir / "hub-admin.log")
        try:
            hub = fire(public_url, shots, args.clients)
        finally:
            stop(server)
        recorded = withdrawn(url, ids)
        log("the floor: the same burst at a trivial WSGI app on the same server")
        floor_server = start_server([sys.executable, __file__, "--serve-floor", str(floor_port),
                                     "--threads", str(args.threads)], env, floor_port, workdir / "floor.log")
        try:
            floor = fire(f"http://127.0.0.1:{floor_port}", shots, args.clients)
        finally:
            stop(floor_server)
    finally:
        portal_server.stop()
        dispose_engines()
    return {
        "database": get_engine(url).dialect.name,
        "server": {"name": "waitress", "threads": args.threads},
        "clients": args.clients,
        "cpus": os.cpu_count(),
        "hub": hub,
        "floor": {k: floor[k] for k in ("requests", "seconds", "requests_per_s", "p50_ms", "p99_ms", "lost")},
        "ratio": {"requests_per_s": round(hub["requests_per_s"] / floor["requests_per_s"], 3),
                  "p99": round(hub["p99_ms"] / max(floor["p99_ms"], 0.1), 1)},
        "ledger": {"unsubscribes": len(ids), "withdrawn": recorded, "every_unsubscribe_recorded": recorded == len(ids)},
        "goal": {"lost": 0, "p99_ms": GOAL_P99_MS, "every_unsubscribe_recorded": True},
        "met": {"lost": hub["lost"] == 0, "p99_ms": hub["p99_ms"] < GOAL_P99_MS,
                "every_unsubscribe_recorded": recorded == len(ids)},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unsubscribes", type=int, default=2_000)
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--clients", type=int, default=32, help="client threads firing at once")
    parser.add_argument("--threads", type=int, help="the server's threads (hub admin --threads; default: "
                                                    "what hub admin picks for the database)")
    parser.add_argument("--portal-contacts", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database", help="SQLAlchemy URL of an empty database (default: HUB_DATABASE_URL, "
                                           "else SQLite in the work directory)")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--serve-floor", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_floor:
        serve_floor(args.serve_floor, args.threads)
        return 0
    return in_workdir(args, run, prefix="hub-bench-public-")


if __name__ == "__main__":
    sys.exit(main())
