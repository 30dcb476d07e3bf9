"""Benchmark: import a generated million-row messy spreadsheet, end to end.

    .venv/bin/python bench/import_dedupe.py [--rows N] [--seed S] [--base b2b|shop] [--database URL|postgres]

Generates a Windows-1251, ';'-separated export with `hub sample contacts`
(in a subprocess): by default a Bitrix24 export of a B2B base, where
companies' switchboards and info@ mailboxes, households' home phones and
8-800 hotlines are shared by people who are not one person. Then, each in a
forked process of its own, it measures the floor (reading and normalizing
the file alone, no database: hub.spreadsheet.read_rows + hub.identity.prepare)
and the import (schema, hub.importer.import_contacts, so its peak memory is
the import's alone), and scores the resolution against the generator's
ground truth: false merges (two real people in one contact) and split people
(one person in several contacts), with examples. Prints ONE JSON document on
stdout; progress and notes go to stderr. `--database postgres` starts a
throwaway PostgreSQL cluster (as the tests do, tests/servers.py) for the run.

The goal it measures (SQLite, 2 cores): >= 20,000 rows/s end to end, a peak
resident set below 1 GiB, and no false merge. See bench/README.md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import time
import traceback
from array import array
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout: import this checkout's hub
    sys.path.insert(0, str(ROOT))

from harness import in_workdir, log, serve_postgres  # noqa: E402  (bench/ is on sys.path when run as a script)

from sqlalchemy import func, select  # noqa: E402

from hub import identity, importer, migrations, plugins  # noqa: E402
from hub.config import load_settings  # noqa: E402
from hub.db import dispose_engines, get_engine  # noqa: E402
from hub.models import Contact, ContactMerge  # noqa: E402
from hub.sampledata.business import shared_by_design  # noqa: E402
from hub.spreadsheet import read_rows  # noqa: E402

GOAL_ROWS_PER_S = 20_000
GOAL_PEAK_RSS_MB = 1024
GOAL_FALSE_MERGES = 0
# Rows per person: the shop base yields 1 + 0.15 x 1.4 (duplicate_rate 0.15,
# one extra row 60% of the time, two 40%); the B2B base 1 + 0.25 x 1.4 plus
# a few nameless switchboard rows (hub.sampledata.business).
ROWS_PER_PERSON = {"shop": 1.21, "b2b": 1.36}
DUPLICATE_RATE = {"shop": 0.15, "b2b": 0.25}
EXAMPLES = 5  # false merges and split people of each kind shown in the output
MAX_MIXED_READ = 10_000  # false merges whose rows are read back to be told apart
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


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children: in the forked import, its reader."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def generate(csv_path: Path, truth_path: Path, people: int, seed: int, base: str) -> int:
    """Write the spreadsheet and its truth in a child process; returns the data rows written."""
    cmd = [sys.executable, "-m", "hub", "sample", "contacts", str(csv_path), "--people", str(people),
           "--seed", str(seed), "--encoding", "cp1251", "--delimiter", ";", "--today", TODAY,
           "--truth", str(truth_path), "--duplicate-rate", str(DUPLICATE_RATE[base])]
    if base == "b2b":
        cmd.append("--b2b")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"generator failed with exit code {done.returncode}")
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


def score(truth: array, placed: array) -> tuple[dict[str, int], bytearray, bytearray]:
    """hub.demo.score's numbers, computed over flat arrays instead of dicts of sets.

    A contact holding rows of two real people is a false merge; a person whose
    rows sit in several contacts is split. Person and contact ids are dense
    small integers, so one int array per side (first partner seen) plus a
    flag byte is enough (demo.score's dicts of sets take ~40 MB per 100k rows).
    Also returns the flags: mixed contacts and split people, for the examples.
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
    quality = {
        "people": sum(1 for c in first_contact if c != UNPLACED),
        "contacts": sum(1 for p in first_person if p != UNPLACED),
        "false_merges": sum(contact_mixed),
        "split_people": sum(person_split),
        "rows_unplaced": unplaced,
    }
    return quality, contact_mixed, person_split


def _shown_row(row: Any) -> dict[str, Any]:
    """A row as the examples show it: its line, name cells and the values normalization found."""
    record = row.record
    if record is None:
        return {"line": row.line, "error": row.error}
    name = " ".join(filter(None, (record.last_name, record.first_name, record.middle_name)))
    return {"line": row.line, "name": name, "phones": record.phones, "emails": record.emails}


def explain(csv_path: Path, source: str, region: str, truth: array, placed: array, contact_mixed: bytearray,
            person_split: bytearray, base: str) -> dict[str, Any]:
    """Examples of false merges and split people, and which splits the file made unavoidable.

    One more pass over the file, keeping only the rows of split people and of
    the first mixed contacts. A split person's rows are grouped by the values
    that are theirs alone (hub.sampledata.business.shared_by_design tells a
    switchboard, a home phone, a hotline or a role mailbox from a person's
    own): if all their rows are joined by own values and still sit in several
    contacts, the resolver missed evidence it had ("avoidable"); otherwise
    some row held nothing of the person's own (a nameless switchboard row, a
    hotline typed instead of a number) or their rows' own values never meet
    (a phone in one row, an email in another), and no personal evidence was
    missed ("expected"; a shared value may still join such rows when the
    names agree). In the shop base every value is one person's.
    """
    shared = shared_by_design if base == "b2b" else (lambda kind, value: False)
    mixed_shown = set()
    for contact, flag in enumerate(contact_mixed):
        if flag:
            mixed_shown.add(contact)
            if len(mixed_shown) >= MAX_MIXED_READ:
                break
    by_person: dict[int, list[tuple[int, frozenset[tuple[str, str]]]]] = {}
    merged_rows: dict[int, list[dict[str, Any]]] = {contact: [] for contact in mixed_shown}
    shown_rows: dict[int, dict[str, Any]] = {}  # rows of split people: a few percent of the file
    for row in read_rows(csv_path, source=source):
        line = row.line
        if line >= len(truth):
            continue
        person, contact = truth[line], placed[line]
        in_split = person != UNPLACED and person_split[person]
        in_mixed = contact in merged_rows
        if not (in_split or in_mixed):
            continue
        own: frozenset[tuple[str, str]] = frozenset()
        if row.record is not None:
            prepared = identity.prepare(row.record, region)
            own = frozenset((i.kind, i.value) for i in prepared.identifiers
                            if i.valid and not shared(i.kind, i.value))
        if in_split:
            by_person.setdefault(person, []).append((line, own))
            shown_rows[line] = _shown_row(row)
        if in_mixed:
            merged_rows[contact].append({"person": person, **_shown_row(row)})

    avoidable = [person for person, rows in by_person.items() if _joined_by_own_values([own for _, own in rows])]
    missed = set(avoidable)
    expected = [person for person in by_person if person not in missed]
    split_examples = [{
        "person": person,
        "avoidable": person in missed,
        "rows": [{"contact": placed[line], **shown_rows[line]} for line, _ in by_person[person]],
    } for person in avoidable[:EXAMPLES] + expected[:EXAMPLES]]
    # A false merge through rows with no name at all (only a switchboard) differs in kind from
    # one that joined two named people: list the named ones first.
    named = [contact for contact, rows in merged_rows.items()
             if len({row["person"] for row in rows if row.get("name")}) > 1]
    nameless = [contact for contact in merged_rows if contact not in set(named)]
    return {
        "split_people_avoidable": len(avoidable),
        "split_people_expected": len(by_person) - len(avoidable),
        "false_merges_of_named_rows": len(named),
        "false_merge_examples": [{"contact": contact, "rows": merged_rows[contact]}
                                 for contact in named[:EXAMPLES] + nameless[:EXAMPLES]],
        "split_examples": split_examples,
    }


def _joined_by_own_values(rows: list[frozenset[tuple[str, str]]]) -> bool:
    """Whether every row holds an own value and the rows form one group through shared own values."""
    if any(not own for own in rows):
        return False
    group = set(rows[0])
    left = rows[1:]
    while left:
        joined = [own for own in left if own & group]
        if not joined:
            return False
        for own in joined:
            group |= own
        left = [own for own in left if not (own & group)]
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000,
                        help="about this many spreadsheet rows (default 1,000,000; the exact count is reported)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--base", choices=("b2b", "shop"), default="b2b",
                        help="b2b: a Bitrix24 export with companies, households and hotlines (default); "
                             "shop: a shop's own customers, every phone and email one person's")
    parser.add_argument("--database", default=None,
                        help="SQLAlchemy URL of an EMPTY database (default: SQLite in the work directory); "
                             "'postgres' starts a throwaway PostgreSQL cluster for the run")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the CSV, truth and SQLite file go (default: a new temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory afterwards")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")

    if args.database == "postgres":
        log("starting a throwaway PostgreSQL cluster (tests/servers.py)")
        with serve_postgres() as url:
            args.database = url
            return in_workdir(args, run)
    return in_workdir(args, run)


def run(args: argparse.Namespace, workdir: Path) -> dict:
    people = max(1, round(args.rows / ROWS_PER_PERSON[args.base]))
    csv_path, truth_path = workdir / "customers.csv", workdir / "customers.csv.truth"

    log(f"generating ~{args.rows:,} rows ({people:,} people, {args.base} base, seed {args.seed}) into {csv_path}")
    started = time.perf_counter()
    rows = generate(csv_path, truth_path, people, args.seed, args.base)
    seconds_generate = time.perf_counter() - started
    log(f"generated {rows:,} rows, {csv_path.stat().st_size / 2**20:.0f} MiB, in {seconds_generate:.1f} s")

    url = args.database or f"sqlite:///{workdir / 'hub.db'}"
    floor = in_child(read_floor, workdir, csv_path)
    log(f"floor: read and normalized {floor['rows']:,} rows in {floor['seconds']:.1f} s "
        f"({floor['rows_per_s']:,} rows/s, one process, no database)")
    measured = in_child(import_and_score, url, workdir, csv_path, truth_path, rows, args.base)
    ratio = measured["rows_per_s"] / floor["rows_per_s"] if floor["rows_per_s"] else 0.0
    result = {"rows": measured.pop("rows"), "people": people, "base": args.base,
              "contacts": measured.pop("contacts"), "seconds_generate": round(seconds_generate, 2)}
    goal, met = measured.pop("goal"), measured.pop("met")
    examples = {key: measured.pop(key) for key in ("false_merge_examples", "split_examples")}
    result.update(measured)
    result["floor"] = floor
    result["ratio"] = {"rows_per_s": round(ratio, 3)}
    result["goal"], result["met"] = goal, met
    # What else the machine was doing: the rates follow it, the ratio much less.
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    result["cpus"] = os.cpu_count()
    result.update(examples)
    return result


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


def bench_settings(workdir: Path, url: str):
    # A hub.toml that does not exist: neither the environment nor a stray
    # config file in the current directory changes what is measured.
    return replace(load_settings(environ={}, config_path=str(workdir / "no-such-hub.toml")),
                   database_url=url, secret_key=SECRET)


def read_floor(workdir: Path, csv_path: Path) -> dict[str, Any]:
    """The same file read and normalized alone, in one process: what no import can beat by much.

    The import reads and normalizes in a second process while it writes, so
    on two cores it may come close to this floor; the ratio shows how much
    the database and the resolution cost on top.
    """
    region = bench_settings(workdir, "sqlite://").default_region
    source = importer.default_source(csv_path)
    started = time.perf_counter()
    rows = 0
    for row in read_rows(csv_path, source=source):
        rows += 1
        if row.record is not None:
            identity.prepare(row.record, region)
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds) if seconds else 0}


def import_and_score(url: str, workdir: Path, csv_path: Path, truth_path: Path, rows: int, base: str) -> dict:
    settings = bench_settings(workdir, url)
    plugins.configure(settings)
    engine = get_engine(url)
    try:
        return _import_and_score(engine, settings, csv_path, truth_path, rows, base)
    finally:
        dispose_engines()


def _import_and_score(engine, settings, csv_path: Path, truth_path: Path, rows: int, base: str) -> dict:
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
    cpu_before, children_before = time.process_time(), children_cpu()
    started = time.perf_counter()
    report = importer.import_contacts(engine, settings, csv_path, placed=remember, progress=progress)
    seconds_import = time.perf_counter() - started
    cpu = {"importer": round(time.process_time() - cpu_before, 2),
           "reader": round(children_cpu() - children_before, 2) if _FORKED else None}
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
    truth = read_truth(truth_path, rows + 2)
    quality, contact_mixed, person_split = score(truth, placed)
    with engine.connect() as conn:
        in_base = conn.execute(select(func.count()).select_from(Contact)).scalar_one() - existing
    if in_base != quality["contacts"]:
        log(f"note: {in_base:,} new contacts in the base, {quality['contacts']:,} hold the imported rows")
    if quality["rows_unplaced"]:
        log(f"note: {quality['rows_unplaced']:,} rows were not placed in any contact (skipped rows)")
    details = explain(csv_path, report.source, settings.default_region, truth, placed, contact_mixed, person_split,
                      base)
    log(f"scored in {time.perf_counter() - started:.1f} s: {quality}, "
        f"{details['split_people_avoidable']:,} of the splits avoidable")

    unused = getattr(report, "unused_columns", None)
    return {
        "rows": report.rows,
        "contacts": quality["contacts"],
        "seconds_import": round(seconds_import, 2),
        "rows_per_s": round(rows_per_s),
        "cpu_seconds_import": cpu,
        "peak_rss_mb": round(peak, 1),
        "false_merges": quality["false_merges"],
        "false_merges_of_named_rows": details["false_merges_of_named_rows"],
        "split_people": quality["split_people"],
        "split_people_avoidable": details["split_people_avoidable"],
        "split_people_expected": details["split_people_expected"],
        "invalid_phones": report.invalid_phones,
        "invalid_emails": report.invalid_emails,
        "skipped": report.skipped_count,
        **({"unused_columns": unused} if unused is not None else {}),
        "database": engine.dialect.name,
        "goal": {"rows_per_s": GOAL_ROWS_PER_S, "peak_rss_mb": GOAL_PEAK_RSS_MB, "false_merges": GOAL_FALSE_MERGES},
        "met": {"rows_per_s": rows_per_s >= GOAL_ROWS_PER_S, "peak_rss_mb": peak < GOAL_PEAK_RSS_MB,
                "false_merges": quality["false_merges"] <= GOAL_FALSE_MERGES},
        "false_merge_examples": details["false_merge_examples"],
        "split_examples": details["split_examples"],
    }


if __name__ == "__main__":
    raise SystemExit(main())
