"""Benchmark: Hub on PostgreSQL at five million contacts and fifteen million orders.

    .venv/bin/python bench/scale_postgres.py [--contacts N] [--seed S] [--database URL] [--keep | --reuse DIR]
                                             [--build-only] [--counts K] [--skip-migration] [--skip-checks]

Starts a throwaway PostgreSQL cluster sized for the machine (bench/scale_cluster.py;
or uses --database: an empty database, or one holding a base, measured as it is),
creates the schema with Hub's migrations,
loads --contacts contacts with their identities, CRM references, ~3 orders each
over three years and the consent ledger with COPY (bench/scale_data.py), then
VACUUM ANALYZE. It times migrations 0014, 0015, 0017 and 0018 on the full base (their indexes dropped,
then their upgrades run again), counts every shipped segment, recomputes lead
scores and refreshes every shipped segment in full (from nothing, then again
with nothing changed), each beside its floor: hand-written SQL doing the same
logical work in the same run (bench/scale_floors.py), and the peak RSS of this
process during each. Finally it runs bench/scale_checks.py's `run_checks` if
that module exists. Prints ONE JSON document on stdout; progress on stderr.

`--keep` keeps the cluster's directory and prints how to reuse it; `--reuse DIR`
starts that cluster again and skips the build (derived state, segment members
and lead scores, is cleared first so each run measures the same work).

Goals (2 cores): dormant_90d counted in under 2 s; a full refresh of the shipped
segments in under 60 s. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
import traceback
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, TypeVar

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout: import this checkout's hub
    sys.path.insert(0, str(ROOT))

from harness import log  # noqa: E402  (bench/ is on sys.path when run as a script)

import scale_data  # noqa: E402
import scale_floors  # noqa: E402
from alembic import command  # noqa: E402
from sqlalchemy import Engine, inspect, text  # noqa: E402

from hub import consent, migrations, plugins  # noqa: E402
from hub.config import Settings, load_settings  # noqa: E402
from hub.db import dispose_engines, get_engine  # noqa: E402
from hub.segments import membership, scoring  # noqa: E402
from hub.segments.compile import compiler_for  # noqa: E402
from hub.segments.evaluate import Segments  # noqa: E402
from hub.segments.lifecycle import Thresholds  # noqa: E402

GOAL_COUNT_DORMANT_S = 2.0
GOAL_FULL_REFRESH_S = 60.0
SECRET = "bench-secret-key-0123456789"
NOW = scale_data.NOW
MIGRATION = "0014"
FULL_NAME_MIGRATION = "0015"  # the admin search's index on the folded whole name, timed after 0014
CONSENT_STATES_MIGRATION = "0017"  # the current consent answers filled from the ledger, timed after 0016
NAME_WORDS_MIGRATION = "0018"  # the admin search's index on the beginnings of a name's words, timed after 0017
T = TypeVar("T")


# --- what a measurement costs ---------------------------------------------------------------

def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def reset_peak() -> None:
    """Start a new peak-RSS window (Linux: writing 5 to clear_refs resets VmHWM to the current RSS)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_mb() -> float:
    """The highest RSS of this process since the last reset_peak(), in MB."""
    return round(_status_kb("VmHWM") / 1024, 1)


def timed(fn: Callable[[], T]) -> tuple[T, float, float]:
    """(result, seconds, peak RSS MB during the call)."""
    reset_peak()
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started, peak_mb()


def ratio(value: float, floor: float) -> float | None:
    return round(value / floor, 2) if floor > 0 else None


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- the steps -------------------------------------------------------------------------------

def build(engine: Engine, url: str, contacts: int, seed: int) -> dict[str, Any]:
    """The base by COPY into the schema Hub's migrations made, then VACUUM ANALYZE."""
    conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    log(f"loading {contacts:,} contacts with COPY")
    rows, seconds_copy, rss = timed(lambda: scale_data.generate(conninfo, contacts, seed, log))
    # COPY wrote the ledger past hub.consent: its current answers are filled from it, as migration 0017 does.
    _, seconds_states, _ = timed(lambda: _rebuild_consent_states(engine))
    log(f"loaded {rows} in {seconds_copy:.0f} s, consent states in {seconds_states:.0f} s; VACUUM ANALYZE")
    _, seconds_vacuum, _ = timed(lambda: vacuum(engine))
    log(f"VACUUM ANALYZE: {seconds_vacuum:.0f} s")
    return {"rows": rows, "seconds_copy": round(seconds_copy, 1),
            "rows_per_s": round(sum(rows.values()) / seconds_copy), "peak_rss_mb": rss,
            "seconds_consent_states": round(seconds_states, 1), "seconds_vacuum_analyze": round(seconds_vacuum, 1)}


def _rebuild_consent_states(engine: Engine) -> None:
    with engine.begin() as conn:
        consent.rebuild_states(conn)


def vacuum(engine: Engine) -> None:
    """What autovacuum would have done by the time anyone asks (statistics, the visibility map)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))


def time_migration(engine: Engine) -> dict[str, Any]:
    """Migrations 0014, 0015, 0017 and 0018 on the full base: down to 0013 (their indexes and table dropped),
    then up.

    0014's figures are the top level (as before 0015 existed); 0015's are under "migration_0015", 0017's
    under "migration_0017", 0018's under "migration_0018" (0016, one column on activities, is run between
    them untimed).
    """
    config = migrations.alembic_config(engine)
    with engine.connect() as conn:
        at = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    if at != NAME_WORDS_MIGRATION:
        return {"skipped": f"the core is at {at}, not {NAME_WORDS_MIGRATION}"}
    log(f"migration {MIGRATION}: dropping its indexes, then running its upgrade on the full base")
    _, seconds_down, _ = timed(lambda: command.downgrade(config, "0013"))
    _, seconds_up, rss = timed(lambda: command.upgrade(config, MIGRATION))
    log(f"migration {MIGRATION}: {seconds_up:.1f} s")
    _, seconds_name, rss_name = timed(lambda: command.upgrade(config, FULL_NAME_MIGRATION))
    log(f"migration {FULL_NAME_MIGRATION}: {seconds_name:.1f} s")
    command.upgrade(config, "0016")
    _, seconds_states, rss_states = timed(lambda: command.upgrade(config, CONSENT_STATES_MIGRATION))
    log(f"migration {CONSENT_STATES_MIGRATION}: {seconds_states:.1f} s; VACUUM ANALYZE")
    # What autovacuum does within a minute of 0017's inserts (statistics, the visibility map), as after a build.
    vacuum(engine)
    _, seconds_words, rss_words = timed(lambda: command.upgrade(config, NAME_WORDS_MIGRATION))
    log(f"migration {NAME_WORDS_MIGRATION}: {seconds_words:.1f} s")
    return {"seconds_upgrade": round(seconds_up, 1), "seconds_downgrade": round(seconds_down, 1), "peak_rss_mb": rss,
            "migration_0015": {"seconds_upgrade": round(seconds_name, 1), "peak_rss_mb": rss_name},
            "migration_0017": {"seconds_upgrade": round(seconds_states, 1), "peak_rss_mb": rss_states},
            "migration_0018": {"seconds_upgrade": round(seconds_words, 1), "peak_rss_mb": rss_words}}


def index_sizes(engine: Engine) -> dict[str, Any]:
    """The size of each index migrations 0014, 0015 and 0018 make."""
    names = ["ix_orders_open_stage", "ix_consent_events_answers", "ix_contacts_live_last_order",
             "ix_contact_identities_value_trgm", "ix_contact_identities_raw_trgm",
             "ix_contacts_name_key_trgm", "ix_contacts_middle_name_trgm", "ix_contacts_name_prefixes"]
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT relname, pg_relation_size(oid) FROM pg_class WHERE relname = ANY(:names)"),
                            {"names": names}).all()
    return {"indexes_mb": {name: round(size / 2**20, 1) for name, size in rows}}


def clear_derived(engine: Engine) -> None:
    """Forget earlier refreshes (a reused cluster): every run's first refresh starts from nothing."""
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE segment_members, lead_scores, segment_sizes"))
        conn.execute(text("UPDATE segments SET refreshed_at = NULL, refreshed_event_id = NULL"))


def counts(engine: Engine, settings: Settings, repeat: int) -> dict[str, Any]:
    """Every shipped segment counted by Hub and by its hand-written floor, best of `repeat` each."""
    wheres = scale_floors.segment_where(NOW, settings.tz, Thresholds.from_settings(settings.extra))
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        shipped = sorted(n for n, d in Segments(conn, settings, now=NOW).catalog.definitions.items() if d.builtin)
    for name in shipped:
        hub_runs, floor_runs, rss = [], [], 0.0
        n = floor_n = -1
        for _ in range(repeat):
            with engine.connect() as conn:
                n, seconds, peak = timed(lambda: Segments(conn, settings, now=NOW).count(name))  # noqa: B023
            hub_runs.append(seconds)
            rss = max(rss, peak)
            if name in wheres:
                with engine.connect() as conn:
                    floor_n, seconds, _ = timed(lambda: scale_floors.count(conn, wheres[name], NOW))  # noqa: B023
                floor_runs.append(seconds)
        row: dict[str, Any] = {"members": n, "seconds": round(min(hub_runs), 3),
                               "runs": [round(s, 3) for s in hub_runs], "peak_rss_mb": rss}
        if floor_runs:
            row["floor"] = {"members": floor_n, "seconds": round(min(floor_runs), 3),
                            "runs": [round(s, 3) for s in floor_runs]}
            row["ratio"] = ratio(min(hub_runs), min(floor_runs))
            row["agrees_with_floor"] = n == floor_n
        out[name] = row
        log(f"count {name}: {n:,} in {min(hub_runs):.3f} s (floor {row.get('floor', {}).get('seconds')} s)")
    return out


def lead_score(engine: Engine, settings: Settings) -> dict[str, Any]:
    """hub.segments.scoring.refresh from nothing (everyone's score written), beside the floor."""
    with engine.connect() as conn:
        base = Segments(conn, settings, now=NOW)
    model = scoring.load_model(base.registry, base.catalog.definitions)

    def run() -> scoring.ScoreRefresh:
        with engine.begin() as conn:
            compiler = compiler_for(conn, base.registry, now=NOW, segments=base.catalog.definitions)
            return scoring.refresh(conn, compiler, model, at=NOW)

    result, seconds, rss = timed(run)
    with engine.begin() as conn:
        written, floor_seconds, _ = timed(lambda: scale_floors.write_scores(conn, NOW))
    log(f"lead score: {seconds:.1f} s (floor {floor_seconds:.1f} s)")
    return {**result.as_dict(), "seconds": round(seconds, 2), "peak_rss_mb": rss,
            "floor": {"contacts": written, "seconds": round(floor_seconds, 2)}, "ratio": ratio(seconds, floor_seconds)}


def full_refresh(engine: Engine, settings: Settings, floor: float, counted: dict[str, Any]) -> dict[str, Any]:
    """membership.refresh(full=True) of every segment and the lead scores (side by side on PostgreSQL), and its floor.

    `agrees_with_floor`: every shipped segment holds as many members as its hand-written floor counted.
    """
    def progress(one: membership.SegmentRefresh) -> None:
        log(f"  {one.segment}: {one.members:,} members, +{one.entered:,} -{one.exited:,} in {one.seconds:.1f} s")

    report, seconds, rss = timed(lambda: membership.refresh(engine, settings, now=NOW, full=True, progress=progress))
    log(f"full refresh: {seconds:.1f} s (floor {floor:.1f} s)")
    floors = {name: row["floor"]["members"] for name, row in counted.items() if "floor" in row}
    agrees = all(s.members == floors[s.segment] for s in report.segments if s.segment in floors)
    return {"seconds": round(seconds, 2), "peak_rss_mb": rss, "agrees_with_floor": agrees,
            "workers": membership.workers_for(engine, settings, len(report.segments) + 1),
            "lead_score": report.lead_score.as_dict() if report.lead_score else None,
            "segments": {s.segment: {"members": s.members, "entered": s.entered, "exited": s.exited,
                                     "seconds": round(s.seconds, 2)} for s in report.segments},
            "broken": dict(report.broken), "ratio": ratio(seconds, floor)}


def refresh_floor(engine: Engine, settings: Settings) -> dict[str, Any]:
    wheres = scale_floors.segment_where(NOW, settings.tz, Thresholds.from_settings(settings.extra))
    with engine.begin() as conn:
        members, seconds, _ = timed(lambda: scale_floors.write_members(conn, wheres, NOW))
    log(f"refresh floor: {members:,} members written in {seconds:.1f} s")
    return {"members_written": members, "seconds": round(seconds, 2)}


def checks(engine: Engine, settings: Settings, info: dict[str, Any]) -> dict[str, Any]:
    """bench/scale_checks.py's run_checks, when it exists; its failure is reported, not raised."""
    if not (Path(__file__).parent / "scale_checks.py").is_file():
        return {"skipped": "bench/scale_checks.py does not exist"}
    try:
        import scale_checks  # type: ignore[import-not-found,unused-ignore]

        reset_peak()
        result = dict(scale_checks.run_checks(engine, settings, info))
        result.setdefault("peak_rss_mb_of_this_process", peak_mb())
        return result
    except BaseException as exc:  # a crash there must not lose the figures above
        if isinstance(exc, KeyboardInterrupt):
            raise
        return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}


def run(args: argparse.Namespace, url: str, workdir: Path | None) -> dict[str, Any]:
    settings = replace(load_settings(environ={"HUB_DATABASE_URL": url, "HUB_SECRET_KEY": SECRET}), config_path=None)
    plugins.use(plugins.build(settings))
    engine = get_engine(url)
    if engine.dialect.name != "postgresql":
        raise SystemExit("this benchmark measures PostgreSQL; give --database a postgresql:// URL")
    started_load = load_average()
    built = migration = None
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        before = conn.execute(text("SELECT version_num FROM alembic_version")).scalar() \
            if "alembic_version" in tables else None
    if before == "0013":  # a base kept before migration 0014: its first run on the full base is the figure
        log(f"migration {MIGRATION} on the base as it is")
        _, seconds, rss = timed(lambda: migrations.upgrade(engine))
        migration = {"seconds_upgrade": round(seconds, 1), "peak_rss_mb": rss, "from": "0013"}
    elif before == CONSENT_STATES_MIGRATION:  # a base kept before 0018: its upgrade on the full base is the figure
        log(f"migration {NAME_WORDS_MIGRATION} on the base as it is")
        _, seconds, rss = timed(lambda: migrations.upgrade(engine))
        log(f"migration {NAME_WORDS_MIGRATION}: {seconds:.1f} s")
        migration = {"migration_0018": {"seconds_upgrade": round(seconds, 1), "peak_rss_mb": rss,
                                        "from": CONSENT_STATES_MIGRATION}}
    else:
        migrations.upgrade(engine)  # the schema of an empty database (or a kept base made later)
    with engine.connect() as conn:
        loaded = conn.execute(text("SELECT EXISTS (SELECT 1 FROM contacts)")).scalar()
    if args.reuse is None and not loaded:
        built = build(engine, url, args.contacts, args.seed)
    elif args.reuse is None:
        log("the database already holds a base: measuring it as it is (no build)")
    with engine.connect() as conn:
        sizes = {t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in scale_data.TABLES}
        server = {name: conn.execute(text(f"SHOW {name}")).scalar() for name in
                  ("server_version", "shared_buffers", "work_mem", "maintenance_work_mem", "max_wal_size",
                   "effective_cache_size", "max_parallel_workers_per_gather", "random_page_cost", "jit")}
        sample = scale_data.samples(conn.connection.driver_connection, sizes["contacts"])
    log(f"base: {sizes}")
    if args.build_only:
        return {"benchmark": "scale_postgres", "database": "postgresql", "sizes": sizes, "build": built,
                "server": server, "load_average": {"start": started_load, "end": load_average()}}
    if migration is None:
        migration = time_migration(engine) if not args.skip_migration else {"skipped": "--skip-migration"}
    migration.update(index_sizes(engine))
    clear_derived(engine)
    counted = counts(engine, settings, args.counts)
    score = lead_score(engine, settings)
    floor = refresh_floor(engine, settings)
    # A full refresh recomputes the lead scores first: its floor is the members' and the scores' together.
    floor["seconds_with_scores"] = round(floor["seconds"] + score["floor"]["seconds"], 2)
    clear_derived(engine)
    first = full_refresh(engine, settings, floor["seconds_with_scores"], counted)
    again = full_refresh(engine, settings, floor["seconds_with_scores"], counted)
    info = {"contacts": sizes["contacts"], "orders": sizes["orders"], "consent_events": sizes["consent_events"],
            "now": NOW.isoformat(), **sample}
    log("measured: " + json.dumps({"counts": {k: [v["seconds"], v.get("ratio")] for k, v in counted.items()},
                                   "lead_score": score, "refresh_floor": floor, "first": first["seconds"],
                                   "again": again["seconds"], "agrees_with_floor": [first["agrees_with_floor"],
                                                                                     again["agrees_with_floor"]],
                                   "migration": migration}))
    checked = checks(engine, settings, info) if not args.skip_checks else {"skipped": "--skip-checks"}
    dormant = counted.get("dormant_90d", {})
    slower = max(first["seconds"], again["seconds"])
    result: dict[str, Any] = {
        "benchmark": "scale_postgres",
        "database": "postgresql",
        "contacts": sizes["contacts"],
        "sizes": sizes,
        "server": server,
        "cluster": "own" if args.database is None else "given",
        "reused": args.reuse is not None,
        "build": built,
        "migration_0014": migration,
        "counts": counted,
        "lead_score": score,
        "refresh_floor": floor,
        "refresh_first": first,
        "refresh_again": again,
        "checks": checked,
        "goal": {"seconds_count_dormant_90d": GOAL_COUNT_DORMANT_S, "seconds_full_refresh": GOAL_FULL_REFRESH_S},
        "met": {"seconds_count_dormant_90d": dormant.get("seconds", 1e9) < GOAL_COUNT_DORMANT_S,
                "seconds_full_refresh": slower < GOAL_FULL_REFRESH_S},
        "load_average": {"start": started_load, "end": load_average()},
        "cpus": os.cpu_count(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if workdir is not None and args.keep:
        result["kept"] = str(workdir)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=5_000_000, help="contacts to load (default 5,000,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database", default=None, help="SQLAlchemy URL of an empty PostgreSQL database, or of one "
                                                         "holding a base to measure as it is (default: a throwaway "
                                                         "cluster of the benchmark's own)")
    parser.add_argument("--keep", action="store_true", help="keep the cluster's directory (and its data) afterwards")
    parser.add_argument("--reuse", type=Path, default=None, help="start the cluster kept in DIR and skip the build")
    parser.add_argument("--counts", type=int, default=3, help="count each segment this many times, keep the best")
    parser.add_argument("--skip-migration", action="store_true", help="do not time migrations 0014, 0015 on the base")
    parser.add_argument("--build-only", action="store_true", help="build the base (with --keep) and stop there")
    parser.add_argument("--skip-checks", action="store_true", help="do not run bench/scale_checks.py")
    args = parser.parse_args(argv)
    if args.contacts < 1000:
        parser.error("--contacts must be at least 1,000")
    if args.database and (args.reuse or args.keep):
        parser.error("--keep and --reuse apply to the benchmark's own cluster, not to --database")
    from scale_cluster import cluster

    owned = cluster(args.reuse, keep=args.keep) if args.database is None else nullcontext(None)
    with owned as pg:
        try:
            url = args.database if pg is None else pg.url
            result = run(args, url, pg.workdir if pg is not None else None)
        finally:
            dispose_engines()
            if pg is not None and args.keep and args.reuse is None:
                log(f"cluster kept in {pg.workdir}; run again without rebuilding: "
                    f"python bench/scale_postgres.py --reuse {pg.workdir}")
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
