"""Benchmark: segments on a million contacts with three million orders.

    .venv/bin/python bench/segments.py [--contacts N] [--seed S] [--database URL] [--workdir DIR] [--keep]

Generates a customer base with bulk SQL (not the identity path, which the
import benchmark measures): contacts with their order statistics, orders,
consent answers. Then, all at one fixed "now", it measures the count of
dormant_90d, a first full refresh of every segment (everyone enters, lead
scores computed), a second full refresh a week later after 1% of the base
bought again and 0.5% withdrew consent (people enter and leave; before it,
an incremental refresh of a saved segment whose rule allows one), and the
plain-Python reference evaluator counting dormant_90d on the same data.
Prints ONE JSON document on stdout; progress goes to stderr.

Goals (2 cores): dormant_90d counted in under 1 s and a full refresh with its
enter/exit diff in under 10 s, on SQLite and on PostgreSQL. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout: import this checkout's hub
    sys.path.insert(0, str(ROOT))

from harness import in_workdir, log  # noqa: E402  (bench/ is on sys.path when run as a script)

from sqlalchemy import func, select, text, update  # noqa: E402

from hub import migrations, plugins  # noqa: E402
from hub.config import load_settings  # noqa: E402
from hub.db import bulk_insert, dispose_engines, get_engine  # noqa: E402
from hub.models import ConsentEvent, Contact, Order  # noqa: E402
from hub.segments import membership, store  # noqa: E402
from hub.segments.evaluate import Segments  # noqa: E402
from hub.segments.reference import Reference, Snapshot  # noqa: E402

GOAL_COUNT_S = 1.0
GOAL_REFRESH_S = 10.0
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
SAVED_SEGMENT = {"name": "moscow_buyers_emailable", "title": "Bought at least twice, Moscow, email allowed",
                 "rule": {"all": [{"field": "orders.count", "op": "gte", "value": 2},
                                  {"field": "contact.city", "op": "in", "value": ["Москва", "Санкт-Петербург"]},
                                  {"field": "consent.email.marketing", "op": "eq", "value": "granted"}]}}



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
            bulk_insert(conn, contacts_t, people)
            bulk_insert(conn, orders_t, orders)
            bulk_insert(conn, events_t, events)
            if (start // CHUNK) % 10 == 0:
                log(f"  {min(contacts, start + CHUNK - 1):,} contacts, {order_id:,} orders")
        if conn.dialect.name == "postgresql":
            for table in ("contacts", "orders", "consent_events"):
                conn.execute(text(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))"))
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
    return {"bought_again": len(buyers), "withdrew": len(leavers)}


def timed(fn: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


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

    log(f"generating {args.contacts:,} contacts on {dialect}")
    sizes, seconds_generate = timed(lambda: generate(engine, args.contacts, args.seed))
    if dialect == "postgresql":  # what autovacuum would have done by the time anyone asks
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    log(f"generated {sizes} in {seconds_generate:.1f} s")

    counts = []
    for _ in range(3):
        with engine.connect() as conn:
            n, seconds = timed(lambda: Segments(conn, settings, now=NOW).count("dormant_90d"))
        counts.append(seconds)
        log(f"count dormant_90d: {n:,} in {seconds:.3f} s")
    dormant = n

    with engine.begin() as conn:
        store.add(conn, Segments(conn, settings).registry, SAVED_SEGMENT)
    first, seconds_first = timed(lambda: membership.refresh(engine, settings, now=NOW, full=True))
    log(f"first full refresh: {seconds_first:.1f} s")
    changes = a_week_later(engine, args.contacts, args.seed)
    incremental, seconds_incremental = timed(
        lambda: membership.refresh(engine, settings, [SAVED_SEGMENT["name"]], now=WEEK_LATER))
    log(f"incremental refresh of {SAVED_SEGMENT['name']}: {seconds_incremental:.2f} s")
    second, seconds_second = timed(lambda: membership.refresh(engine, settings, now=WEEK_LATER, full=True))
    log(f"full refresh a week later: {seconds_second:.1f} s")

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

    def segment_rows(report: membership.RefreshReport) -> dict[str, Any]:
        return {s.segment: {"members": s.members, "entered": s.entered, "exited": s.exited,
                            "seconds": round(s.seconds, 3)}
                for s in report.segments}

    best_count = min(counts)
    return {
        "database": dialect,
        **sizes,
        "seconds_generate": round(seconds_generate, 1),
        "dormant_90d": dormant,
        "seconds_count_dormant_90d": round(best_count, 3),
        "seconds_count_dormant_90d_runs": [round(s, 3) for s in counts],
        "refresh_first": {"seconds": round(seconds_first, 2), "lead_score": first.lead_score.as_dict()
                          if first.lead_score else None, "segments": segment_rows(first)},
        "a_week_later": changes,
        "refresh_week_later": {"seconds": round(seconds_second, 2), "lead_score": second.lead_score.as_dict()
                               if second.lead_score else None, "segments": segment_rows(second)},
        "refresh_incremental": {"segment": SAVED_SEGMENT["name"], "seconds": round(seconds_incremental, 3),
                                **incremental.segments[0].as_dict()},
        "reference": {"members": len(members), "agrees_with_sql": members == set(sql_ids),
                      "seconds_load": round(seconds_load, 1), "seconds_evaluate": round(seconds_reference, 2),
                      "seconds_sql": round(seconds_sql, 3),
                      "sql_faster_by": round(seconds_reference / seconds_sql, 1) if seconds_sql else None},
        "goal": {"seconds_count_dormant_90d": GOAL_COUNT_S, "seconds_full_refresh": GOAL_REFRESH_S},
        "met": {"seconds_count_dormant_90d": best_count < GOAL_COUNT_S,
                "seconds_full_refresh": max(seconds_first, seconds_second) < GOAL_REFRESH_S},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=1_000_000, help="contacts to generate (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database", default=None,
                        help="SQLAlchemy URL of an EMPTY database (default: SQLite in the work directory)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the SQLite file goes (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory afterwards")
    args = parser.parse_args(argv)
    if args.contacts < 200:
        parser.error("--contacts must be at least 200")
    return in_workdir(args, run, cleanup=dispose_engines)


if __name__ == "__main__":
    raise SystemExit(main())
