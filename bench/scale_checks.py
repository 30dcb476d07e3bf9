"""What people do on a base of millions, measured on a built PostgreSQL database: search, GDPR export, a workflow.

bench/scale_postgres.py builds the base (5,000,000 contacts) and calls
`run_checks(engine, settings, info)` after its own measurements; this file can
also be run alone on any built base:

    .venv/bin/python bench/scale_checks.py --database URL [--entries 100000,1000000] [--queries 50]

It measures

- the admin's contact search (`hub.admin.contact_search.find`, a page of 50
  as the contacts page asks for it) for five kinds of typing: the last seven
  digits of a phone as "555-66-77", a whole email, the part of an email before
  "@", a full name "Фамилия Имя Отчество", two words "Фамилия Имя" and the
  surname alone (tens of thousands of matches: past the count's cap);
  p50/p95/max over `--queries` queries of each kind, beside the floor: the bare
  indexed lookup of the same people (ids only, LIMIT 50, no total, no ranking,
  no card), timed right after each query on the same connection;
- the GDPR export of one person (`plugins.gdpr.export.export`) who has the most
  orders, beside the floor: the same tables read with one plain SELECT each;
- the reactivation workflow entering `--entries` people the way the
  scheduler's tick does (`workflows.triggers.fire` on the segment trigger, the
  segment taken as refreshed): runs created, the holdout kept, in a process of
  its own, with its peak resident memory; beside the floor: one INSERT ...
  SELECT of the same run rows. Then the first `--advance` runs are advanced as
  the tick does without Redis (`workflows.runner.advance`): promo codes issued
  and letters written to the outbox.

`info` keys read (all optional; anything missing is read from the base with a
quick query): `sample_phones` (E.164 or as typed: only the digits are used),
`sample_emails`, `sample_names` (full names, "Фамилия Имя Отчество"; those of
three words make the full-name queries), `export_contact_id` or the first of
`sample_busy_contact_ids` (someone with many orders; else the contact with
the most orders). The check adds a segment and a workflow of its own (names starting
with `scale_check`) and removes them, with their runs, codes and messages,
when it ends.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from sqlalchemy import Engine, text

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

QUERIES = 50
PAGE = 50  # the contacts page's page of matches (hub.admin.contacts.FOUND_PAGE_SIZE)
ENTRIES = (100_000, 1_000_000)
ADVANCE = 5_000
PREFIX = "scale_check"
GOAL_SEARCH_P95_MS = 150.0
GOAL_EXPORT_S = 1.0
BENCH_SECRET = "scale-checks-bench-secret-0123456789"  # signs the letters' links in a throwaway base only


def log(message: str) -> None:
    print(f"[scale_checks] {message}", file=sys.stderr, flush=True)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _quantiles(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return {"p50_ms": _ms(statistics.median(ordered)), "p95_ms": _ms(p95), "max_ms": _ms(ordered[-1])}


# --- samples -----------------------------------------------------------------------------

def samples(engine: Engine, info: dict[str, Any], count: int) -> dict[str, list[str]]:
    """Phones, emails and full names that exist: from `info`, else read from contacts spread over the id range."""
    out = {key: [str(v) for v in info.get(key) or []][:count]
           for key in ("sample_phones", "sample_emails", "sample_names")}
    if all(len(v) >= count for v in out.values()):
        return out
    with engine.connect() as conn:
        top = int(conn.execute(text("SELECT coalesce(max(id), 0) FROM contacts")).scalar_one())
        ids = sorted({1 + (k * 7_919_333) % max(1, top) for k in range(1, count * 4)})
        people = conn.execute(text(
            "SELECT id, last_name, first_name, middle_name FROM contacts WHERE id = ANY(:ids) "
            "AND deleted_at IS NULL AND last_name <> '' AND first_name <> '' AND middle_name <> '' ORDER BY id"),
            {"ids": ids}).all()
        values = conn.execute(text(
            "SELECT kind, min(value) FROM contact_identities WHERE contact_id = ANY(:ids) AND valid "
            "AND shared IS NULL GROUP BY contact_id, kind ORDER BY contact_id"), {"ids": ids}).all()
    if len(out["sample_names"]) < count:
        out["sample_names"] = [f"{p.last_name} {p.first_name} {p.middle_name}" for p in people][:count]
    if len(out["sample_phones"]) < count:
        out["sample_phones"] = [v for k, v in values if k == "phone"][:count]
    if len(out["sample_emails"]) < count:
        out["sample_emails"] = [v for k, v in values if k == "email"][:count]
    return out


def phone_fragment(value: str) -> str:
    """The last seven digits as people type them: "555-66-77"."""
    digits = "".join(ch for ch in value if ch.isdigit())[-7:]
    return f"{digits[:3]}-{digits[3:5]}-{digits[5:]}"


def _folded(word: str) -> str:
    return word.lower().replace("ё", "е")


# --- search ------------------------------------------------------------------------------

def _floor_sql(kind: str, typed: str) -> tuple[str, dict[str, Any]]:
    """The bare indexed lookup of the people a query finds: ids only, LIMIT 50."""
    if kind == "phone_fragment":
        digits = "".join(ch for ch in typed if ch.isdigit())
        return ("SELECT contact_id FROM contact_identities WHERE kind = 'phone' AND value LIKE :p LIMIT 50",
                {"p": f"%{digits}"})
    if kind == "email_whole":
        # The person's own address, through the partial unique index that holds it (kind, value WHERE valid
        # AND shared IS NULL): "value = :v" alone implies no partial index, and PostgreSQL used the trigram one.
        return ("SELECT contact_id FROM contact_identities WHERE kind = 'email' AND valid AND shared IS NULL "
                "AND value = :v LIMIT 50", {"v": typed.lower()})
    if kind == "email_piece":
        return ("SELECT contact_id FROM contact_identities WHERE kind = 'email' AND value LIKE :p LIMIT 50",
                {"p": f"%{typed.lower()}%"})
    words = typed.split()
    if kind == "surname":
        return ("SELECT id FROM contacts WHERE name_key LIKE :p AND deleted_at IS NULL LIMIT 50",
                {"p": _folded(words[0]) + " %"})
    # A full name or two words: the index of the beginnings of a name's words (migration 0018), every word
    # one key of it, as the search reads it; the floor neither ranks the name typed whole first nor counts.
    # The indexed expression is the models' own, rendered: a copy that drifted would miss the index.
    from sqlalchemy.dialects import postgresql

    from hub.models import NAME_PREFIXES

    prefixes = NAME_PREFIXES.compile(dialect=postgresql.dialect())
    return (f"SELECT id FROM contacts WHERE {prefixes} @> CAST(:words AS text[]) AND deleted_at IS NULL LIMIT 50",
            {"words": [_folded(w) for w in words]})


def search_check(engine: Engine, settings: Any, picked: dict[str, list[str]], count: int) -> dict[str, Any]:
    from hub.admin import contact_search

    kinds: dict[str, list[str]] = {
        "phone_fragment": [phone_fragment(p) for p in picked["sample_phones"]],
        "email_whole": list(picked["sample_emails"]),
        "email_piece": [e.split("@", 1)[0] for e in picked["sample_emails"]],
        "full_name": [n for n in picked["sample_names"] if len(n.split()) == 3],
        "two_words": [" ".join(n.split()[:2]) for n in picked["sample_names"] if len(n.split()) >= 2],
        "surname": [n.split()[0] for n in picked["sample_names"] if n.split()],
    }
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        for kind, queries in kinds.items():
            queries = [q for q in queries if q][:count]
            if not queries:
                out[kind] = {"queries": 0}
                continue
            times: list[float] = []
            floors: list[float] = []
            totals: list[int] = []
            capped = 0
            found_self = 0
            for q in queries:
                started = time.perf_counter()
                found = contact_search.find(conn, settings, q, limit=PAGE)
                times.append(time.perf_counter() - started)
                totals.append(found.total)
                capped += bool(getattr(found, "more", False))
                found_self += bool(found.rows)
                sql, params = _floor_sql(kind, q)
                started = time.perf_counter()
                conn.execute(text(sql), params).all()
                floors.append(time.perf_counter() - started)
            conn.rollback()
            figures = _quantiles(times)
            floor = _quantiles(floors)
            out[kind] = {
                "queries": len(queries), "example": queries[0], **figures,
                "matches_median": int(statistics.median(totals)), "matches_max": max(totals),
                "capped": capped,  # queries whose count stopped at the cap ("more than 1 000")
                "found_something": found_self,
                "floor": floor,
                "ratio": {"p50": round(figures["p50_ms"] / max(floor["p50_ms"], 0.01), 1),
                          "p95": round(figures["p95_ms"] / max(floor["p95_ms"], 0.01), 1)},
                "met": figures["p95_ms"] < GOAL_SEARCH_P95_MS,
            }
            log(f"search {kind}: p50 {figures['p50_ms']} ms, p95 {figures['p95_ms']} ms "
                f"(floor p50 {floor['p50_ms']} ms), matches median {out[kind]['matches_median']}")
    return out


# --- GDPR export -------------------------------------------------------------------------

def export_check(engine: Engine, settings: Any, info: dict[str, Any]) -> dict[str, Any]:
    from plugins.gdpr import export as gdpr_export

    busy = info.get("sample_busy_contact_ids") or []
    contact_id = info.get("export_contact_id") or (busy[0] if busy else None)
    with engine.connect() as conn:
        if contact_id is None:
            contact_id = conn.execute(text(
                "SELECT contact_id FROM orders WHERE contact_id IS NOT NULL GROUP BY contact_id "
                "ORDER BY count(*) DESC LIMIT 1")).scalar()
        if contact_id is None:
            return {"error": "no orders"}
        tables = list(conn.execute(text(
            "SELECT table_name FROM information_schema.columns WHERE column_name = 'contact_id' "
            "AND table_schema = current_schema() ORDER BY table_name")).scalars())
    runs = []
    floors = []
    sections: dict[str, int] = {}
    for _ in range(3):  # the first run reads the tables' definitions cold; all three are reported
        started = time.perf_counter()
        data = gdpr_export.export(engine, settings, int(contact_id), actor="bench")
        runs.append(time.perf_counter() - started)
        sections = {k: len(v) for k, v in data.items() if isinstance(v, list)}
        started = time.perf_counter()
        with engine.connect() as conn:
            conn.execute(text("SELECT * FROM contacts WHERE id = :id"), {"id": contact_id}).all()
            for name in tables:
                conn.execute(text(f'SELECT * FROM "{name}" WHERE contact_id = :id'), {"id": contact_id}).all()
        floors.append(time.perf_counter() - started)
    size = len(json.dumps(data, ensure_ascii=False))
    result = {"contact_id": int(contact_id), "orders": sections.get("orders", 0), "sections": sections,
              "json_bytes": size, "seconds": [round(s, 3) for s in runs], "seconds_best": round(min(runs), 3),
              "floor": {"tables": len(tables) + 1, "seconds_best": round(min(floors), 4)},
              "ratio": {"seconds": round(min(runs) / max(min(floors), 1e-4), 1)},
              "met": max(runs[1:]) < GOAL_EXPORT_S}
    log(f"export of #{contact_id}: {result['seconds']} s, {result['orders']} orders, floor {result['floor']}")
    return result


# --- workflow entry ----------------------------------------------------------------------

def _setup_entry(engine: Engine, settings: Any, size: int) -> tuple[str, str]:
    """A segment of `size` live contacts (members written directly, as a refresh would) and a copy of
    reactivation_90d whose trigger is that segment; returns their names."""
    from hub.segments.store import builtin_documents
    from workflows import store

    segment, workflow = f"{PREFIX}_{size}", f"{PREFIX}_reactivation_{size}"
    _cleanup(engine, segment, workflow)
    document = dict(builtin_documents()["dormant_90d"], name=segment)
    now = dt.datetime.now(dt.timezone.utc)
    with engine.begin() as conn:
        seg_id = conn.execute(text(
            "INSERT INTO segments (name, title, definition, builtin, created_at, updated_at) "
            "VALUES (:n, :t, CAST(:d AS json), false, :now, :now) RETURNING id"),
            {"n": segment, "t": segment, "d": json.dumps(document, ensure_ascii=False), "now": now}).scalar_one()
        conn.execute(text(
            "INSERT INTO segment_members (segment_id, contact_id, entered_at) "
            "SELECT :s, id, :now FROM contacts WHERE deleted_at IS NULL ORDER BY id LIMIT :n"),
            {"s": seg_id, "now": now, "n": size})
        flow = dict(store.library_documents()["reactivation_90d"], name=workflow,
                    trigger={"segment": segment})
        store.install_library(conn)
        store.add(conn, settings, flow)
    return segment, workflow


def _cleanup(engine: Engine, segment: str, workflow: str) -> None:
    with engine.begin() as conn:
        wid = conn.execute(text("SELECT id FROM workflows WHERE name = :n"), {"n": workflow}).scalar()
        if wid is not None:
            conn.execute(text("DELETE FROM messages WHERE id IN (SELECT message_id FROM step_results s JOIN "
                              "workflow_runs r ON r.id = s.run_id WHERE r.workflow_id = :w)"), {"w": wid})
            conn.execute(text("DELETE FROM promo_codes WHERE workflow_id = :w"), {"w": wid})
            conn.execute(text("DELETE FROM workflow_runs WHERE workflow_id = :w"), {"w": wid})
            conn.execute(text("DELETE FROM workflows WHERE id = :w"), {"w": wid})
        sid = conn.execute(text("SELECT id FROM segments WHERE name = :n"), {"n": segment}).scalar()
        if sid is not None:
            conn.execute(text("DELETE FROM segment_members WHERE segment_id = :s"), {"s": sid})
            conn.execute(text("DELETE FROM segments WHERE id = :s"), {"s": sid})


def _environ(url: str) -> dict[str, str]:
    """The settings' environment for a run on its own: a bench-only secret key unless one is set."""
    return {"HUB_SECRET_KEY": BENCH_SECRET, **os.environ, "HUB_DATABASE_URL": url}


def _memory_mb(field: str) -> float:
    """A line of /proc/self/status in MB: VmRSS (resident now) or VmHWM (the peak, which starts afresh at exec).

    Not getrusage's ru_maxrss: Linux carries the peak of the image a process
    replaced at exec over into it, so the entry's child reported its parent's
    165 MB (the setup, the floor and the previous size's advance) as its own
    peak while its own VmHWM stayed at 116 MB.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def enter_in_this_process(url: str, workflow: str, segment: str) -> dict[str, Any]:
    """The tick's entry for one workflow (its segment taken as refreshed), with this process's memory."""
    from hub.config import load_settings
    from hub.db import get_engine
    from workflows import store, triggers

    settings = load_settings(_environ(url))
    engine = get_engine(url)
    with engine.connect() as conn:
        row, flow = store.current(conn, settings, workflow)
    rss_before = _memory_mb("VmRSS")
    started = time.perf_counter()
    report = triggers.fire(engine, settings, row, flow, now=dt.datetime.now(dt.timezone.utc), refreshed={segment})
    seconds = time.perf_counter() - started
    peak = _memory_mb("VmHWM")
    return {"seconds": round(seconds, 2), **report.as_dict(), "rss_before_mb": round(rss_before, 1),
            "peak_rss_mb": round(peak, 1)}


def _floor_entry(engine: Engine, segment: str, workflow: str) -> float:
    """One INSERT ... SELECT of the same run rows (cycle 0, so none collides), rolled back."""
    with engine.connect() as conn:
        with conn.begin() as tx:
            started = time.perf_counter()
            conn.execute(text(
                "INSERT INTO workflow_runs (workflow_id, version, contact_id, cycle, holdout, status, step, next_at, "
                "attempts, trigger, context, started_at, updated_at) "
                "SELECT w.id, w.version, m.contact_id, 0, false, 'running', 0, now(), 0, 'floor', '{}', now(), now() "
                "FROM segment_members m JOIN segments s ON s.id = m.segment_id, workflows w "
                "WHERE s.name = :s AND w.name = :w"), {"s": segment, "w": workflow})
            seconds = time.perf_counter() - started
            tx.rollback()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM workflow_runs"))  # the rolled-back rows are not left for the entry to read
    return seconds


def entry_check(engine: Engine, settings: Any, sizes: Sequence[int], advance: int) -> dict[str, Any]:
    url = engine.url.render_as_string(hide_password=False)
    out: dict[str, Any] = {}
    for size in sizes:
        segment, workflow = _setup_entry(engine, settings, size)
        try:
            floor = _floor_entry(engine, segment, workflow)
            child = subprocess.run([sys.executable, __file__, "--database", url, "--enter", workflow,
                                    "--segment", segment], capture_output=True, text=True, check=False)
            if child.returncode != 0:
                out[str(size)] = {"error": child.stderr.strip()[-2000:]}
                continue
            entered = json.loads(child.stdout)
            with engine.connect() as conn:
                runs, held = conn.execute(text(
                    "SELECT count(*), count(*) FILTER (WHERE holdout) FROM workflow_runs r JOIN workflows w "
                    "ON w.id = r.workflow_id WHERE w.name = :w"), {"w": workflow}).one()
                ids = list(conn.execute(text(
                    "SELECT r.id FROM workflow_runs r JOIN workflows w ON w.id = r.workflow_id "
                    "WHERE w.name = :w AND r.status = 'running' ORDER BY r.id LIMIT :n"),
                    {"w": workflow, "n": advance}).scalars())
            result: dict[str, Any] = {
                "members": size, **entered, "runs": int(runs), "holdout": int(held),
                "holdout_share": round(int(held) / max(1, int(runs)), 4),
                "runs_per_s": round(int(runs) / max(entered["seconds"], 1e-3)),
                "floor": {"seconds": round(floor, 2), "runs_per_s": round(int(runs) / max(floor, 1e-3))},
                "ratio": {"seconds": round(entered["seconds"] / max(floor, 1e-3), 1)},
            }
            out[str(size)] = result
            log(f"entry {size:,}: {result}")
            result["advanced"] = _guarded("advance", functools.partial(_advance, engine, settings, workflow, ids))
        finally:
            _cleanup(engine, segment, workflow)
    if len(sizes) >= 2 and all("peak_rss_mb" in out.get(str(s), {}) for s in sizes):
        small, big = out[str(sizes[0])], out[str(sizes[-1])]
        out["memory_growth_mb"] = round(big["peak_rss_mb"] - small["peak_rss_mb"], 1)
        out["memory_bounded"] = out["memory_growth_mb"] < 0.1 * small["peak_rss_mb"] + 20
    return out


def _advance(engine: Engine, settings: Any, workflow: str, ids: list[int]) -> dict[str, Any]:
    """The first runs taken as far as they go now (code, letter, then the 7-day wait), as the tick does."""
    from workflows import runner

    started = time.perf_counter()
    # dispatch=False: the letters stay in the outbox (removed with the rest), no channel is called
    moved = runner.advance(engine, settings, ids, dispatch=False).as_dict() if ids else {}
    seconds = time.perf_counter() - started
    with engine.connect() as conn:
        codes = conn.execute(text("SELECT count(*) FROM promo_codes p JOIN workflows w "
                                  "ON w.id = p.workflow_id WHERE w.name = :w"), {"w": workflow}).scalar_one()
    log(f"advanced {len(ids):,} runs in {seconds:.1f} s: {codes:,} codes")
    return {"runs": len(ids), "seconds": round(seconds, 2), "codes_issued": int(codes),
            "codes_per_s": round(int(codes) / max(seconds, 1e-3)),
            **{k: v for k, v in moved.items() if isinstance(v, int)}}


# --- together ----------------------------------------------------------------------------

def _guarded(name: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 - a failed check is reported in the JSON; the others still run
        log(f"{name} failed: {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"[:2000]}


def run_checks(engine: Engine, settings: Any, info: dict[str, Any] | None = None, *, queries: int = QUERIES,
               entries: Sequence[int] = ENTRIES, advance: int = ADVANCE) -> dict[str, Any]:
    """Search, export and workflow entry on the built base; one dict for the benchmark's JSON."""
    info = dict(info or {})
    picked = samples(engine, info, queries)
    return {
        "search": _guarded("search", lambda: search_check(engine, settings, picked, queries)),
        "gdpr_export": _guarded("export", lambda: export_check(engine, settings, info)),
        "workflow_entry": _guarded("entry", lambda: entry_check(engine, settings, entries, advance)),
        "goal": {"search_p95_ms": GOAL_SEARCH_P95_MS, "export_s": GOAL_EXPORT_S,
                 "entry": "peak RSS does not grow with the number entered"},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True, help="SQLAlchemy URL of a built PostgreSQL base")
    parser.add_argument("--queries", type=int, default=QUERIES)
    parser.add_argument("--entries", default=",".join(str(n) for n in ENTRIES),
                        help="comma-separated segment sizes to enter (default 100000,1000000)")
    parser.add_argument("--advance", type=int, default=ADVANCE, help="runs advanced after entry (codes issued)")
    parser.add_argument("--only", choices=("search", "export", "entry"), help="run one check")
    parser.add_argument("--enter", help=argparse.SUPPRESS)  # the child process of the entry check
    parser.add_argument("--segment", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.enter:
        print(json.dumps(enter_in_this_process(args.database, args.enter, args.segment)))
        return 0
    from hub.config import load_settings
    from hub.db import get_engine

    settings = load_settings(_environ(args.database))
    engine = get_engine(args.database)
    sizes = [int(n) for n in args.entries.split(",") if n.strip()]
    if args.only == "search":
        result: dict[str, Any] = {"search": search_check(engine, settings, samples(engine, {}, args.queries),
                                                         args.queries)}
    elif args.only == "export":
        result = {"gdpr_export": export_check(engine, settings, {})}
    elif args.only == "entry":
        result = {"workflow_entry": entry_check(engine, settings, sizes, args.advance)}
    else:
        result = run_checks(engine, settings, {}, queries=args.queries, entries=sizes, advance=args.advance)
    result["database"] = engine.dialect.name
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
