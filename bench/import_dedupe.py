"""Benchmark: import a generated million-row messy spreadsheet, end to end.

    .venv/bin/python bench/import_dedupe.py [--rows N] [--seed S] [--database URL]

Generates a Windows-1251, ';'-separated customer export with `hub sample contacts`
(in a subprocess), then, in a forked process of its own so that its peak
memory is the import's alone, creates the schema, times
hub.importer.import_contacts on the file and scores the resolution against
the generator's ground truth. Prints ONE JSON document on stdout; progress
and notes go to stderr.

The goal it measures (SQLite, 2 cores): >= 20,000 rows/s end to end and a
peak resident set below 1 GiB. See bench/README.md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import resource
import subprocess
import sys
import time
import traceback
from array import array
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout: import this checkout's hub
    sys.path.insert(0, str(ROOT))

from harness import in_workdir, log  # noqa: E402  (bench/ is on sys.path when run as a script)

from sqlalchemy import func, select  # noqa: E402

from hub import importer, migrations, plugins  # noqa: E402
from hub.config import load_settings  # noqa: E402
from hub.db import dispose_engines, get_engine  # noqa: E402
from hub.models import Contact, ContactMerge  # noqa: E402

GOAL_ROWS_PER_S = 20_000
GOAL_PEAK_RSS_MB = 1024
# The generator yields 1 + 0.15 x 1.4 rows per person on average (sampledata:
# duplicate_rate 0.15, one extra row 60% of the time, two 40%).
ROWS_PER_PERSON = 1.21
# A fixed "today" makes the generated file byte-identical on every day.
TODAY = "2025-06-01"
SECRET = "bench-secret-key-0123456789"
UNPLACED = -1
_FORKED = False  # set in the forked import process, whose children are only the importer's own



def peak_rss_mb() -> tuple[float, float]:
    """(this process, its largest finished child) peak resident set, in MiB."""
    # ru_maxrss is KiB on Linux (bytes on macOS).
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / scale)


def generate(csv_path: Path, truth_path: Path, people: int, seed: int) -> int:
    """Write the spreadsheet and its truth in a child process; returns the data rows written."""
    cmd = [sys.executable, "-m", "hub", "sample", "contacts", str(csv_path), "--people", str(people),
           "--seed", str(seed), "--encoding", "cp1251", "--delimiter", ";", "--today", TODAY,
           "--truth", str(truth_path)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"generator failed with exit code {done.returncode}")
    match = re.search(r"(\d+) rows for", done.stdout)
    if match:
        return int(match.group(1))
    with truth_path.open("rb") as f:
        return sum(1 for _ in f) - 1


def read_truth(truth_path: Path, size: int) -> array:
    """person id per spreadsheet line (header is line 1), as a flat array."""
    truth = array("l", [UNPLACED]) * size
    with truth_path.open(encoding="utf-8") as f:
        next(f)
        for text in f:
            line, _, person = text.partition(",")
            truth[int(line)] = int(person)
    return truth


def follow_merges(engine, placed: array) -> None:
    """Point rows at the contact they live in now: a later chunk may merge a contact a row was placed in."""
    with engine.connect() as conn:
        moved = dict(conn.execute(select(ContactMerge.merged_id, ContactMerge.survivor_id)).all())
    if not moved:
        return
    final: dict[int, int] = {}
    for merged in moved:
        target = merged
        while target in moved:
            target = moved[target]
        final[merged] = target
    for i, contact in enumerate(placed):
        if contact in final:
            placed[i] = final[contact]


def score(truth: array, placed: array) -> dict[str, int]:
    """hub.demo.score's numbers, computed over flat arrays instead of dicts of sets.

    A contact holding rows of two real people is a false merge; a person whose
    rows sit in several contacts is split. Person and contact ids are dense
    small integers, so one int array per side (first partner seen) plus a
    flag byte is enough (demo.score's dicts of sets take ~40 MB per 100k rows).
    """
    max_person = max(truth) if truth else 0
    max_contact = max(placed) if placed else 0
    first_person = array("l", [UNPLACED]) * (max_contact + 1)
    first_contact = array("l", [UNPLACED]) * (max_person + 1)
    contact_mixed = bytearray(max_contact + 1)
    person_split = bytearray(max_person + 1)
    unplaced = 0
    for line, person in enumerate(truth):
        if person == UNPLACED:
            continue
        contact = placed[line]
        if contact == UNPLACED:
            unplaced += 1
            continue
        seen = first_person[contact]
        if seen == UNPLACED:
            first_person[contact] = person
        elif seen != person:
            contact_mixed[contact] = 1
        seen = first_contact[person]
        if seen == UNPLACED:
            first_contact[person] = contact
        elif seen != contact:
            person_split[person] = 1
    return {
        "people": sum(1 for c in first_contact if c != UNPLACED),
        "contacts": sum(1 for p in first_person if p != UNPLACED),
        "false_merges": sum(contact_mixed),
        "split_people": sum(person_split),
        "rows_unplaced": unplaced,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000,
                        help="about this many spreadsheet rows (default 1,000,000; the exact count is reported)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database", default=None,
                        help="SQLAlchemy URL of an EMPTY database (default: SQLite in the work directory)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the CSV, truth and SQLite file go (default: a new temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory afterwards")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")

    return in_workdir(args, run)


def run(args: argparse.Namespace, workdir: Path) -> dict:
    people = max(1, round(args.rows / ROWS_PER_PERSON))
    csv_path, truth_path = workdir / "customers.csv", workdir / "customers.csv.truth"

    log(f"generating ~{args.rows:,} rows ({people:,} people, seed {args.seed}) into {csv_path}")
    started = time.perf_counter()
    rows = generate(csv_path, truth_path, people, args.seed)
    seconds_generate = time.perf_counter() - started
    log(f"generated {rows:,} rows, {csv_path.stat().st_size / 2**20:.0f} MiB, in {seconds_generate:.1f} s")

    url = args.database or f"sqlite:///{workdir / 'hub.db'}"
    measured = in_child(import_and_score, url, workdir, csv_path, truth_path, rows)
    return {"rows": measured["rows"], "people": people, "contacts": measured["contacts"],
            "seconds_generate": round(seconds_generate, 2), **{k: v for k, v in measured.items()
                                                             if k not in ("rows", "contacts")}}


def in_child(fn, *args):
    """fn(*args) in a forked process, so its peak memory and its own workers' are measured alone.

    The generator ran as another child of this process; a process forked
    afterwards has only the import's children (if the importer ever starts
    workers), whose peak RUSAGE_CHILDREN then reports.
    """
    if "fork" not in mp.get_all_start_methods():
        return fn(*args)
    ctx = mp.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)

    def target() -> None:
        global _FORKED
        _FORKED = True
        try:
            send.send(("ok", fn(*args)))
        except BaseException:  # noqa: BLE001 - reported by the parent
            send.send(("error", traceback.format_exc()))
        finally:
            send.close()

    process = ctx.Process(target=target, name="hub-bench-import")
    process.start()
    send.close()
    try:
        status, value = receive.recv()
    except EOFError:
        status, value = "error", "the import process died without a result"
    process.join()
    if status != "ok":
        sys.stderr.write(str(value))
        raise SystemExit(f"import failed (exit code {process.exitcode})")
    return value


def import_and_score(url: str, workdir: Path, csv_path: Path, truth_path: Path, rows: int) -> dict:
    # A hub.toml that does not exist: neither the environment nor a stray
    # config file in the current directory changes what is measured.
    settings = replace(load_settings(environ={}, config_path=str(workdir / "no-such-hub.toml")),
                       database_url=url, secret_key=SECRET)
    plugins.configure(settings)
    engine = get_engine(url)
    try:
        return _import_and_score(engine, settings, csv_path, truth_path, rows)
    finally:
        dispose_engines()


def _import_and_score(engine, settings, csv_path: Path, truth_path: Path, rows: int) -> dict:
    migrations.upgrade(engine)
    with engine.connect() as conn:
        existing = conn.execute(select(func.count()).select_from(Contact)).scalar_one()
    if existing:
        log(f"warning: the database already holds {existing:,} contacts; numbers are not comparable")

    placed = array("l", [UNPLACED]) * (rows + 2)  # contact id per line; line 1 is the header
    done = 0
    next_note = 100_000

    def remember(lines: list[int], contact_ids: list[int | None]) -> None:
        for line, contact in zip(lines, contact_ids, strict=True):
            if contact is not None:
                placed[line] = contact

    def progress(n: int) -> None:
        nonlocal done, next_note
        done += n
        if done >= next_note:
            elapsed = time.perf_counter() - started
            log(f"  {done:,} rows in {elapsed:.1f} s ({done / elapsed:,.0f} rows/s, "
                f"peak RSS {peak_rss_mb()[0]:.0f} MB)")
            next_note += 100_000

    log(f"importing into {engine.dialect.name} (RSS before import: {peak_rss_mb()[0]:.0f} MB)")
    started = time.perf_counter()
    report = importer.import_contacts(engine, settings, csv_path, placed=remember, progress=progress)
    seconds_import = time.perf_counter() - started
    own, workers = peak_rss_mb()  # before the scoring below can add to it
    if not _FORKED:
        workers = 0.0  # in-process fallback: the children were the generator, not the import
    # An upper bound when the importer has worker processes: their peaks need not coincide.
    peak = own + workers
    rows_per_s = report.rows / seconds_import if seconds_import else 0.0
    log(f"imported {report.rows:,} rows in {seconds_import:.1f} s ({rows_per_s:,.0f} rows/s), peak RSS "
        f"{own:.0f} MB" + (f" + {workers:.0f} MB in worker processes" if workers else ""))
    if report.rows != rows:
        log(f"warning: the importer read {report.rows:,} rows, the generator wrote {rows:,}")

    started = time.perf_counter()
    follow_merges(engine, placed)
    quality = score(read_truth(truth_path, rows + 2), placed)
    with engine.connect() as conn:
        in_base = conn.execute(select(func.count()).select_from(Contact)).scalar_one() - existing
    if in_base != quality["contacts"]:
        log(f"note: {in_base:,} new contacts in the base, {quality['contacts']:,} hold the imported rows")
    if quality["rows_unplaced"]:
        log(f"note: {quality['rows_unplaced']:,} rows were not placed in any contact (skipped rows)")
    log(f"scored in {time.perf_counter() - started:.1f} s: {quality}")

    return {
        "rows": report.rows,
        "contacts": quality["contacts"],
        "seconds_import": round(seconds_import, 2),
        "rows_per_s": round(rows_per_s),
        "peak_rss_mb": round(peak, 1),
        "false_merges": quality["false_merges"],
        "split_people": quality["split_people"],
        "invalid_phones": report.invalid_phones,
        "invalid_emails": report.invalid_emails,
        "skipped": report.skipped_count,
        "database": engine.dialect.name,
        "goal": {"rows_per_s": GOAL_ROWS_PER_S, "peak_rss_mb": GOAL_PEAK_RSS_MB},
        "met": {"rows_per_s": rows_per_s >= GOAL_ROWS_PER_S, "peak_rss_mb": peak < GOAL_PEAK_RSS_MB},
    }


if __name__ == "__main__":
    raise SystemExit(main())
