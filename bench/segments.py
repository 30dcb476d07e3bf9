"""Benchmark: segments on a million contacts with three million orders, against hand-written SQL.

    .venv/bin/python bench/segments.py [--contacts N | --scale N,N,...] [--seed S] [--repeat R]
                                       [--database URL | --postgres] [--workdir DIR] [--keep]

Generates a customer base with bulk SQL (not the identity path, which the
import benchmark measures), in a process of its own: contacts with their
order statistics, orders, consent answers. Then, all at one fixed "now", it
counts every segment, runs a first full refresh of every segment (everyone
enters, lead scores computed), and a second full refresh a week later after
1% of the base bought again and 0.5% withdrew consent (before it, an
incremental refresh of a saved segment whose rule allows one); and the
plain-Python reference evaluator counts dormant_90d on the same data.

Each count and each full refresh is set beside its floor, measured in the
same run on the same data: the same question written by hand in plain SQL
(bench/segments_floor.py): a COUNT per segment, and for a refresh the lead
scores and each segment's member ids written by INSERT ... SELECT into a
scratch table. The floor must select exactly Hub's rows; any difference is
listed under "errors". `--scale` runs the whole benchmark once per size, each
in a child process (so peak memory is per size), and reports how time grows
with the base (bench/segments_scale.py).
Prints ONE JSON document on stdout; progress goes to stderr.

Goals (2 cores): dormant_90d counted in under 1 s and a full refresh with its
enter/exit diff in under 10 s, on SQLite and on PostgreSQL, within the ratios
to the floor that bench/README.md states.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import resource
import subprocess
import sys
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout: import this checkout's hub
    sys.path.insert(0, str(ROOT))

import segments_scale  # noqa: E402  (bench/ is on sys.path when run as a script)
from harness import in_workdir, log, serve_postgres  # noqa: E402
from segments_floor import Floor  # noqa: E402

from sqlalchemy import func, select, text, update  # noqa: E402

from hub import consent, migrations, plugins  # noqa: E402
from hub.config import load_settings  # noqa: E402
from hub.db import bulk_insert, dispose_engines, get_engine  # noqa: E402
from hub.models import ConsentEvent, Contact, Order  # noqa: E402
from hub.segments import membership, store  # noqa: E402
from hub.segments.evaluate import Segments  # noqa: E402
from hub.segments.reference import Reference, Snapshot  # noqa: E402

GOAL_COUNT_S = 1.0
GOAL_REFRESH_S = 10.0
# Hub's time over the hand-written SQL's (see bench/README.md for why these).
GOAL_RATIO_COUNT = 1.5
GOAL_RATIO_REFRESH = 3.0
UTC = dt.timezone.utc
# A fixed "now": the same data gives the same segments on every day the benchmark runs.
NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
WEEK_LATER = NOW + dt.timedelta(days=7)
HISTORY_DAYS = 1500
CHUNK = 20_000
SECRET = "bench-secret-key-0123456789"
CITIES = [("Москва", 30), ("Санкт-Петербург", 15), ("Казань", 6), ("Новосибирск", 6), ("Екатеринбург", 6),
          ("Самара", 4), ("Краснодар", 4), ("Воронеж", 4), ("Ростов-на-Дону", 4), ("Тула", 3), ("Пермь", 3),
          ("Уфа", 3), (None, 12)]
SOURCES = ["site", "instagram", "vk", "bitrix24", "amocrm", "recommendation"]
TAGS = [("vip", 0.02), ("decision-maker", 0.05), ("opt-out-city", 0.03), ("wholesale", 0.04), ("email-bounced", 0.02)]
# (channel, purpose, share of contacts with an answer); a fifth of them later withdraw.
CONSENT = [("email", "marketing", 0.6), ("sms", "marketing", 0.3), ("email", "news", 0.4)]
SAVED_SEGMENT: dict[str, Any] = {
    "name": "moscow_buyers_emailable", "title": "Bought at least twice, Moscow, email allowed",
    "rule": {"all": [{"field": "orders.count", "op": "gte", "value": 2},
                     {"field": "contact.city", "op": "in", "value": ["Москва", "Санкт-Петербург"]},
                     {"field": "consent.email.marketing", "op": "eq", "value": "granted"}]}}



def copy_rows(conn: Any, table: Any, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL's bulk load, COPY: the data is the benchmark's setting, not what it measures."""
    from psycopg.types.json import Jsonb

    if not rows:
        return
    names = list(rows[0])
    cursor = conn.connection.dbapi_connection.cursor()
    with cursor.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([Jsonb(v) if isinstance(v, (dict, list)) else v for v in (row[n] for n in names)])


def generate(engine: Any, contacts: int, seed: int) -> dict[str, int]:
    """Contacts (stats filled in as refresh_stats would), ~3 orders each on average, consent answers."""
    rng = random.Random(seed)
    cities = [c for c, weight in CITIES for _ in range(weight)]
    contacts_t, orders_t, events_t = Contact.__table__, Order.__table__, ConsentEvent.__table__
    order_id = event_id = 0
    with engine.begin() as conn:
        for start in range(1, contacts + 1, CHUNK):
            people, orders, events = [], [], []
            for cid in range(start, min(contacts + 1, start + CHUNK)):
                created = NOW - dt.timedelta(seconds=rng.randrange(HISTORY_DAYS * 86400))
                span = (NOW - created).total_seconds()
                # a quarter never bought; buyers average four orders: ~3 per contact overall
                k = 0 if rng.random() < 0.25 else 1 + int(rng.expovariate(1 / 3.5))
                won = 0
                revenue = Decimal(0)
                first = last = None
                for _ in range(k):
                    order_id += 1
                    r = rng.random()
                    status = "won" if r < 0.8 else ("lost" if r < 0.9 else "open")
                    amount = Decimal(rng.randrange(50_000, 2_000_000)) / 100
                    closed = created + dt.timedelta(seconds=rng.random() * span) if status != "open" else None
                    orders.append({"id": order_id, "source": "bench", "external_id": str(order_id),
                                   "contact_external_id": str(cid), "contact_id": cid, "amount": amount,
                                   "currency": "RUB", "status": status, "closed_at": closed,
                                   "created_at": created, "updated_at": created})
                    if status == "won":
                        assert closed is not None
                        won += 1
                        revenue += amount
                        first = closed if first is None or closed < first else first
                        last = closed if last is None or closed > last else last
                birthday = (dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(60 * 365))
                            if rng.random() < 0.7 else None)
                people.append({"id": cid, "first_name": "Имя", "last_name": f"Фамилия{cid}",
                               "city": rng.choice(cities), "birthday": birthday,
                               "tags": [t for t, p in TAGS if rng.random() < p],
                               "attributes": {"lead_source": rng.choice(SOURCES)}, "provenance": {},
                               "orders_count": won, "revenue": revenue, "first_order_at": first,
                               "last_order_at": last, "created_at": created, "updated_at": created})
                for channel, purpose, share in CONSENT:
                    if rng.random() < share:
                        event_id += 1
                        at = created + dt.timedelta(seconds=rng.random() * span / 2)
                        events.append({"id": event_id, "contact_id": cid, "channel": channel, "purpose": purpose,
                                       "status": "granted", "source": "bench", "evidence": {}, "at": at})
                        if rng.random() < 0.2:
                            event_id += 1
                            events.append({"id": event_id, "contact_id": cid, "channel": channel,
                                           "purpose": purpose, "status": "withdrawn", "source": "bench",
                                           "evidence": {}, "at": at + dt.timedelta(seconds=rng.random() * span / 2)})
            load = copy_rows if conn.dialect.name == "postgresql" else bulk_insert
            load(conn, contacts_t, people)
            load(conn, orders_t, orders)
            load(conn, events_t, events)
            if (start // CHUNK) % 10 == 0:
                log(f"  {min(contacts, start + CHUNK - 1):,} contacts, {order_id:,} orders")
        if conn.dialect.name == "postgresql":
            for table in ("contacts", "orders", "consent_events"):
                conn.execute(text(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))"))
        consent.rebuild_states(conn)  # the ledger was written past hub.consent.record
    return {"contacts": contacts, "orders": order_id, "consent_events": event_id}


def a_week_later(engine: Any, contacts: int, seed: int) -> dict[str, int]:
    """1% of contacts buy again (stats and updated_at move as a sync would), 0.5% withdraw email consent."""
    rng = random.Random(seed + 1)
    buyers = sorted(rng.sample(range(1, contacts + 1), contacts // 100))
    leavers = sorted(rng.sample(range(1, contacts + 1), contacts // 200))
    c = Contact.__table__.c
    with engine.begin() as conn:
        top = conn.execute(select(func.max(Order.__table__.c.id))).scalar() or 0
        closed = WEEK_LATER - dt.timedelta(days=1)
        bulk_insert(conn, Order.__table__, [
            {"id": top + i, "source": "bench", "external_id": f"w{i}", "contact_external_id": str(cid),
             "contact_id": cid, "amount": Decimal("2500.00"), "currency": "RUB", "status": "won",
             "closed_at": closed, "created_at": closed, "updated_at": closed} for i, cid in enumerate(buyers, 1)])
        for part in range(0, len(buyers), 5000):
            ids = buyers[part:part + 5000]
            conn.execute(update(Contact.__table__).where(c.id.in_(ids)).values(
                orders_count=c.orders_count + 1, revenue=c.revenue + Decimal("2500.00"),
                first_order_at=func.coalesce(c.first_order_at, closed), last_order_at=closed))
        top = conn.execute(select(func.max(ConsentEvent.__table__.c.id))).scalar() or 0
        bulk_insert(conn, ConsentEvent.__table__, [
            {"id": top + i, "contact_id": cid, "channel": "email", "purpose": "marketing", "status": "withdrawn",
             "source": "bench", "evidence": {}, "at": closed} for i, cid in enumerate(leavers, 1)])
        consent.restate(conn, leavers)  # as hub.consent.record_many does after its own insert
    return {"bought_again": len(buyers), "withdrew": len(leavers)}


def timed(fn: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def peak_rss_mb() -> float:
    """The most memory this process has held so far (its peak resident set), in megabytes."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def ratio(hub: float, floor: float) -> float | None:
    return round(hub / floor, 2) if floor else None


def generate_apart(url: str, contacts: int, seed: int) -> dict[str, Any]:
    """Generate the data in a process of its own, so the generator's memory is not counted as Hub's."""
    command = [sys.executable, str(Path(__file__).resolve()), "--generate", "--database", url,
               "--contacts", str(contacts), "--seed", str(seed)]
    done = subprocess.run(command, stdout=subprocess.PIPE, check=True)
    return dict(json.loads(done.stdout))


def measure_counts(engine: Any, settings: Any, floor: Floor, repeat: int) -> tuple[dict[str, Any], list[str]]:
    """Every segment counted by Hub (as `hub segments count` does) and by the floor, alternately; the best of each."""
    with engine.connect() as conn:
        names = sorted(Segments(conn, settings, now=NOW).catalog.definitions)
    out: dict[str, Any] = {}
    problems = []
    for name in names:
        hub_runs, floor_runs = [], []
        n = m = None
        for _ in range(repeat):
            with engine.connect() as conn:
                n, seconds = timed(lambda: Segments(conn, settings, now=NOW).count(name))  # noqa: B023 (called at once)
            hub_runs.append(seconds)
            if name in floor.where:
                with engine.connect() as conn:
                    m, seconds = timed(lambda: floor.count(conn, name))  # noqa: B023
                floor_runs.append(seconds)
        row: dict[str, Any] = {"members": n, "seconds": round(min(hub_runs), 3)}
        if floor_runs:
            row.update(floor_members=m, floor_seconds=round(min(floor_runs), 3),
                       ratio=ratio(min(hub_runs), min(floor_runs)), agrees=n == m)
            if n != m:
                problems.append(f"count {name}: Hub {n}, floor {m}")
        else:
            row["floor"] = None  # a segment the floor has no SQL for: reported, not compared
        if name == "dormant_90d":
            row["runs"] = [round(s, 3) for s in hub_runs]
        out[name] = row
        log(f"count {name}: {n:,} in {min(hub_runs):.3f} s; floor {min(floor_runs or [0]):.3f} s")
    return out, problems


def floor_refresh(engine: Any, settings: Any, now: dt.datetime, hub: membership.RefreshReport,
                  label: str) -> tuple[dict[str, Any], list[str]]:
    """The floor's full refresh at `now`, checked against what Hub's refresh at the same moment recorded."""
    floor = Floor(engine.dialect.name, settings, now)
    with engine.connect() as conn:
        ids = {r.name: r.id for r in conn.execute(select(store.segments_t.c.name, store.segments_t.c.id))}
    names = [s.segment for s in hub.segments if s.segment in floor.where]
    report, problems = floor.refresh(engine, names, {n: ids[n] for n in names})
    for s in hub.segments:
        if s.segment in report.segments and report.segments[s.segment]["members"] != s.members:
            wrote = report.segments[s.segment]["members"]
            problems.append(f"{label} {s.segment}: Hub {s.members} members, floor {wrote}")
    if hub.lead_score and report.lead_score["contacts"] != hub.lead_score.contacts:
        scored = report.lead_score["contacts"]
        problems.append(f"{label} lead_score: Hub scored {hub.lead_score.contacts}, floor {scored}")
    log(f"floor {label}: {report.seconds:.1f} s (Hub {hub.seconds:.1f} s)")
    return {"seconds": round(report.seconds, 2), "lead_score": report.lead_score, "segments": report.segments,
            "not_in_floor": sorted(s.segment for s in hub.segments if s.segment not in floor.where)}, \
        [f"{label}: {p}" if not p.startswith(label) else p for p in problems]


def refresh_ratios(hub: membership.RefreshReport, floor: dict[str, Any]) -> dict[str, Any]:
    """Hub over floor for the whole refresh, its lead scores, and the segments both compute."""
    both = [s for s in hub.segments if s.segment in floor["segments"]]
    hub_segments = sum(s.seconds for s in both)
    floor_segments = sum(floor["segments"][s.segment]["seconds"] for s in both)
    return {"whole": ratio(hub.seconds, floor["seconds"]),
            "lead_score": ratio(hub.lead_score.seconds, floor["lead_score"]["seconds"]) if hub.lead_score else None,
            "segments": ratio(hub_segments, floor_segments)}


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    url = args.database or f"sqlite:///{workdir / 'hub.db'}"
    settings = replace(load_settings(environ={"HUB_DATABASE_URL": url, "HUB_SECRET_KEY": SECRET, "HUB_PLUGINS": ""}),
                       config_path=None)
    plugins.use(plugins.build(settings))
    engine = get_engine(url)
    migrations.upgrade(engine)
    with engine.connect() as conn:
        if conn.execute(select(func.count()).select_from(Contact.__table__)).scalar():
            raise SystemExit("the database is not empty; give --database an empty one")
    dialect = engine.dialect.name

    log(f"generating {args.contacts:,} contacts on {dialect} (in a process of its own)")
    generated, seconds_generate = timed(lambda: generate_apart(url, args.contacts, args.seed))
    sizes = generated["sizes"]
    if dialect == "postgresql":  # what autovacuum would have done by the time anyone asks
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    log(f"generated {sizes} in {seconds_generate:.1f} s")
    rss_before = peak_rss_mb()

    with engine.begin() as conn:
        store.add(conn, Segments(conn, settings).registry, SAVED_SEGMENT)
    counts, errors = measure_counts(engine, settings, Floor(dialect, settings, NOW), args.repeat)
    dormant = counts["dormant_90d"]

    first, seconds_first = timed(lambda: membership.refresh(engine, settings, now=NOW, full=True))
    log(f"first full refresh: {seconds_first:.1f} s")
    floor_first, problems = floor_refresh(engine, settings, NOW, first, "refresh_first")
    errors += problems
    changes = a_week_later(engine, args.contacts, args.seed)
    incremental, seconds_incremental = timed(
        lambda: membership.refresh(engine, settings, [SAVED_SEGMENT["name"]], now=WEEK_LATER))
    log(f"incremental refresh of {SAVED_SEGMENT['name']}: {seconds_incremental:.2f} s")
    second, seconds_second = timed(lambda: membership.refresh(engine, settings, now=WEEK_LATER, full=True))
    log(f"full refresh a week later: {seconds_second:.1f} s")
    floor_second, problems = floor_refresh(engine, settings, WEEK_LATER, second, "refresh_week_later")
    errors += problems
    rss_measured = peak_rss_mb()

    log("plain-Python reference: loading the data")
    with engine.connect() as conn:
        segments = Segments(conn, settings, now=NOW)
        snapshot, seconds_load = timed(lambda: Snapshot.load(conn, contact_columns=["deleted_at"]))
    reference = Reference(snapshot, segments.registry, now=WEEK_LATER, segments=segments.catalog.definitions)
    rule = segments.get("dormant_90d").rule
    members, seconds_reference = timed(lambda: reference.members(rule))
    with engine.connect() as conn:
        sql_ids, seconds_sql = timed(lambda: Segments(conn, settings, now=WEEK_LATER).member_ids("dormant_90d"))
    log(f"reference: {len(members):,} in {seconds_reference:.1f} s (loading took {seconds_load:.1f} s)")
    for line in errors:
        log(f"ERROR: {line}")

    def segment_rows(report: membership.RefreshReport) -> dict[str, Any]:
        return {s.segment: {"members": s.members, "entered": s.entered, "exited": s.exited,
                            "seconds": round(s.seconds, 3)}
                for s in report.segments}

    compared = [c for c in counts.values() if "floor_seconds" in c]
    hub_total, floor_total = sum(c["seconds"] for c in compared), sum(c["floor_seconds"] for c in compared)
    ratios = {"count_dormant_90d": dormant.get("ratio"), "counts_total": ratio(hub_total, floor_total),
              "refresh_first": refresh_ratios(first, floor_first),
              "refresh_week_later": refresh_ratios(second, floor_second)}
    worst_refresh = max(r["whole"] or 0 for r in (ratios["refresh_first"], ratios["refresh_week_later"]))
    best_count = dormant["seconds"]
    return {
        "database": dialect,
        **sizes,
        "seconds_generate": round(seconds_generate, 1),
        "dormant_90d": dormant["members"],
        "seconds_count_dormant_90d": best_count,
        "seconds_count_dormant_90d_runs": dormant["runs"],
        "counts": counts,
        "counts_total": {"segments": len(compared), "seconds": round(hub_total, 3),
                         "floor_seconds": round(floor_total, 3)},
        "refresh_first": {"seconds": round(seconds_first, 2), "lead_score": first.lead_score.as_dict()
                          if first.lead_score else None, "segments": segment_rows(first)},
        "a_week_later": changes,
        "refresh_week_later": {"seconds": round(seconds_second, 2), "lead_score": second.lead_score.as_dict()
                               if second.lead_score else None, "segments": segment_rows(second)},
        "refresh_incremental": {"segment": SAVED_SEGMENT["name"], "seconds": round(seconds_incremental, 3),
                                **incremental.segments[0].as_dict()},
        "floor": {"refresh_first": floor_first, "refresh_week_later": floor_second},
        "ratio": ratios,
        "floor_agrees": not errors,
        "errors": errors,
        "reference": {"members": len(members), "agrees_with_sql": members == set(sql_ids),
                      "seconds_load": round(seconds_load, 1), "seconds_evaluate": round(seconds_reference, 2),
                      "seconds_sql": round(seconds_sql, 3),
                      "sql_faster_by": round(seconds_reference / seconds_sql, 1) if seconds_sql else None},
        "memory": {"peak_rss_mb": rss_measured, "peak_rss_mb_before_measuring": rss_before,
                   "peak_rss_mb_with_reference": peak_rss_mb(), "generator_peak_rss_mb": generated["peak_rss_mb"]},
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "goal": {"seconds_count_dormant_90d": GOAL_COUNT_S, "seconds_full_refresh": GOAL_REFRESH_S,
                 "ratio_count_dormant_90d": GOAL_RATIO_COUNT, "ratio_full_refresh": GOAL_RATIO_REFRESH},
        "met": {"seconds_count_dormant_90d": best_count < GOAL_COUNT_S,
                "seconds_full_refresh": max(seconds_first, seconds_second) < GOAL_REFRESH_S,
                "ratio_count_dormant_90d": (dormant.get("ratio") or 0) <= GOAL_RATIO_COUNT,
                "ratio_full_refresh": worst_refresh <= GOAL_RATIO_REFRESH,
                "floor_agrees": not errors},
    }


def generate_only(args: argparse.Namespace) -> int:
    """The --generate child: fill the (migrated, empty) database and print what it made and its peak memory."""
    engine = get_engine(args.database)
    sizes = generate(engine, args.contacts, args.seed)
    dispose_engines()
    print(json.dumps({"sizes": sizes, "peak_rss_mb": peak_rss_mb()}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=1_000_000, help="contacts to generate (default 1,000,000)")
    parser.add_argument("--scale", type=segments_scale.sizes, default=None, metavar="N,N,...",
                        help="run at each of these contact counts, each in a process of its own on fresh data, "
                             "and report the growth between consecutive sizes (e.g. 100000,1000000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="counts per segment, best kept (default 3)")
    parser.add_argument("--database", default=None,
                        help="SQLAlchemy URL of an EMPTY database (default: SQLite in the work directory); "
                             "with --scale, a PostgreSQL server on which a database is created per size")
    parser.add_argument("--postgres", action="store_true",
                        help="start a throwaway PostgreSQL cluster as the tests do, and run there")
    parser.add_argument("--workdir", type=Path, default=None, help="where the SQLite file goes (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (and per-size databases)")
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.scale or [args.contacts]) < 200:
        parser.error("--contacts and every --scale size must be at least 200")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.postgres and args.database:
        parser.error("give either --postgres or --database")
    if args.generate:
        return generate_only(args)
    if args.scale and args.database and args.database.startswith("sqlite"):
        parser.error("with --scale, leave SQLite to the benchmark (a fresh file per size) or give a PostgreSQL URL")
    if args.postgres:
        with serve_postgres() as url:
            args.database = url
            return dispatch(args)
    return dispatch(args)


def dispatch(args: argparse.Namespace) -> int:
    if args.scale:
        return in_workdir(args, segments_scale.run)
    return in_workdir(args, run, cleanup=dispose_engines)


if __name__ == "__main__":
    raise SystemExit(main())
