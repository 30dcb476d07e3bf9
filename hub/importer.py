"""Spreadsheet imports, through the same identity path as a CRM sync.

Two kinds: contacts (a customer list exported from Excel or 1C) and consent
(consent collected elsewhere: a paper form, an old mailing tool). Both report
every skipped row with its line and reason and keep going: a bad row never
stops an import, and nothing that could be kept is dropped.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import datetime as dt
import gc
import hashlib
import itertools
import multiprocessing
import operator
import os
import pickle
import queue
import signal
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generator, Iterator

from sqlalchemy import Connection, Engine

from hub import consent, i18n, identity, normalize, sync
from hub.config import Settings
from hub.db import utcnow
from hub.i18n import gettext as _
from hub.normalize import Identifier
from hub.identity import Prepared
from hub.records import ContactRecord
from hub.spreadsheet import Layout, Row, SpreadsheetError, check_file, check_text_file, read_rows

# Rows resolved together (one lookup of their values, one union-find): where chunks begin decides which rows
# are compared with which, so it is part of what an import produces.
CHUNK = 10000
# On SQLite the chunks of this many seconds share one transaction (_Transaction): fewer, larger commits.
COMMIT_SECONDS = 3.0
# The first chunk is smaller: the importing process waits for it (it comes after the whole file's
# check), while the later ones are read as it writes.
FIRST_CHUNK = 2000
# Below this size a second process costs more to start than it saves.
PARALLEL_FROM_BYTES = 4 * 1024 * 1024
# Chunks the reader process may read ahead of the import (pickled, about 3 MB each): enough to keep
# reading while this process checks the whole file, so that it starts with work waiting.
READ_AHEAD = 16
# Objects left after chunks (caches, the cycles chunks leave) that make the importing process collect.
GC_SURVIVORS = 1_000_000
MAX_LISTED = 1000  # skipped rows and warnings listed in a report; all are counted


@dataclass
class ImportReport:
    file: str
    source: str
    rows: int = 0
    imported: int = 0
    created: int = 0
    updated: int = 0
    merged: int = 0
    contacts_merged: int = 0
    refused: int = 0
    invalid_phones: int = 0
    invalid_emails: int = 0
    shared_values: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    skipped_count: int = 0
    warnings: list[dict[str, Any]] = field(default_factory=list)
    duration_s: float = 0.0
    # How the file was read (hub.spreadsheet.Layout): where the header was,
    # what each column became, and which columns Hub does not use.
    header_row: int | None = None
    sheet: str | None = None
    columns: list[dict[str, Any]] = field(default_factory=list)
    attribute_columns: dict[str, str] = field(default_factory=dict)
    unused_columns: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)

    def skip(self, line: int, reason: str) -> None:
        self.skipped_count += 1
        if len(self.skipped) < MAX_LISTED:
            self.skipped.append({"line": line, "reason": reason})

    def warn(self, line: int, message: str) -> None:
        if len(self.warnings) < MAX_LISTED:
            self.warnings.append({"line": line, "warning": message})

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file, "source": self.source, "rows": self.rows, "imported": self.imported,
            "created": self.created, "updated": self.updated, "merged": self.merged,
            "contacts_merged": self.contacts_merged, "refused": self.refused, "invalid_phones": self.invalid_phones,
            "invalid_emails": self.invalid_emails, "shared_values": self.shared_values,
            "skipped_count": self.skipped_count, "skipped": self.skipped,
            "warnings": self.warnings, "duration_s": round(self.duration_s, 3), "header_row": self.header_row,
            "sheet": self.sheet, "columns": self.columns, "attribute_columns": self.attribute_columns,
            "unused_columns": self.unused_columns, "ignored_columns": self.ignored_columns,
        }

    def read_as(self, layout: Layout) -> None:
        """Take in how the file was read; a header with no rows under it is a warning of its own."""
        self.header_row, self.sheet = layout.header_row, layout.sheet
        self.columns, self.attribute_columns = layout.columns, layout.attributes
        self.unused_columns, self.ignored_columns = layout.unused, layout.ignored
        if self.rows == 0 and layout.header_row is not None:
            self.warn(layout.header_row, _("the column headers are on this row, but no data rows were found "
                                           "under them; nothing was imported"))


def default_source(path: str | os.PathLike[str]) -> str:
    return f"import:{Path(path).name}"


def import_contacts(
    engine: Engine,
    settings: Settings,
    path: str | os.PathLike[str],
    *,
    source: str | None = None,
    mapping: dict[str, str] | None = None,
    progress: Callable[[int], None] | None = None,
    placed: Callable[[list[int], list[int | None]], None] | None = None,
    parallel: bool | None = None,
    header_row: int | None = None,
    sheet: str | None = None,
) -> ImportReport:
    """Import a CSV or XLSX file of contacts; chunks of rows commit every few seconds (_Transaction).

    The file is checked whole before its first chunk is read (see
    hub.spreadsheet.check_csv / check_xlsx): a file that cannot be imported
    whole raises SpreadsheetError before anything, not even the sync run
    record, is written. That pre-pass is a fraction of the import's time,
    where importing into a staging table would write every row twice, and it
    keeps chunked commits, which keep the write lock short for everyone else.

    `placed(lines, contact_ids)` is told which contact each row went to, for
    reports that check resolution against known truth (the demo, benchmarks).
    `parallel` reads and normalizes in a second process while this one writes;
    by default it does so for files large enough to repay starting it.
    `header_row` and `sheet` are hub.spreadsheet.read_rows's: where the
    headers are (found by default) and which workbook sheet to read.
    """
    source = source or default_source(path)
    if parallel is None:
        parallel = (os.cpu_count() or 1) > 1 and Path(path).stat().st_size >= PARALLEL_FROM_BYTES
    report = ImportReport(file=str(path), source=source)
    started = time.monotonic()
    counts = sync.Counts()
    layout = Layout()
    reading = _Reading(mapping, header_row, sheet, layout)
    chunks = (_chunks_in_reader_process if parallel else _chunks_here)(path, source, reading,
                                                                       settings.default_region)
    try:
        with _fewer_gc_passes():
            # The first chunk comes only after the whole file passed its checks.
            first = next(chunks, None)
        run_id = sync.start_run(engine, source, "import")
    except BaseException:
        chunks.close()
        raise
    try:
        with _fewer_gc_passes():
            _import_chunks(engine, settings, itertools.chain([first] if first else [], chunks), report, counts,
                           progress, placed)
    except Exception as exc:
        sync.finish_run(engine, run_id, counts, error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise
    finally:
        chunks.close()
    report.duration_s = time.monotonic() - started
    report.read_as(layout)
    counts.errors = report.skipped
    sync.finish_run(engine, run_id, counts)
    return report


@contextmanager
def _fewer_gc_passes() -> Iterator[None]:
    """Run the cyclic garbage collector between chunks instead of by allocation counts while importing.

    An import allocates millions of objects without cycles, and a chunk's
    objects live until the chunk is written: a collection by count walks
    them all again and again (at the default threshold that cost a third of
    a million-row import; at a 50,000 threshold still a sixth of the
    importing process's time). Once a chunk is written its objects are gone;
    what outlives it (names in caches, a few hundred objects in cycles) is
    collected by _import_chunks once GC_SURVIVORS of it have piled up, by
    which time most of it has left the caches again. Restored afterwards.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Transaction:
    """The import's write transaction: one a chunk, or on SQLite one for the chunks of COMMIT_SECONDS.

    A chunk is still resolved on its own, seeing what the chunks before it
    wrote, so what the import produces does not depend on where it commits.
    But each SQLite commit writes every page the transaction changed to the
    WAL, and ten thousand rows change most pages of the identity and name
    indexes once the base is large: at a million rows, commits per chunk
    wrote 7.6 GB to the WAL and the database file. A commit every few
    seconds writes each of those pages once for several chunks (3.5 to 4.2
    GB in all), and still lets another writer in well within the busy
    timeout (30 s).
    On PostgreSQL each chunk commits, so that keep_statistics' ANALYZE sees
    what it wrote.
    """

    def __init__(self, engine: Engine, counts: sync.Counts) -> None:
        self._engine = engine
        self._seconds = COMMIT_SECONDS if engine.dialect.name == "sqlite" else 0.0
        self._open: ExitStack | None = None
        self._conn: Connection | None = None
        self._since = 0.0
        self._counts = counts
        self._committed = copy.deepcopy(counts)  # what a failure sets the run's totals back to

    def connection(self) -> Connection:
        if self._conn is None:
            self._open = ExitStack()
            self._conn = self._open.enter_context(self._engine.begin())
            self._since = time.monotonic()
        return self._conn

    def chunk_written(self) -> None:
        """Commit when the transaction has been open long enough (at once on PostgreSQL)."""
        if self._conn is not None and time.monotonic() - self._since >= self._seconds:
            self.commit()

    def commit(self) -> None:
        if self._open is not None:
            opened, self._open, self._conn = self._open, None, None
            opened.close()
        self._committed = copy.deepcopy(self._counts)
        sync.keep_statistics(self._engine, self._counts)  # what it wrote is visible to ANALYZE now

    def roll_back(self, exc: BaseException) -> None:
        """Undo the chunks written since the last commit, and their counts (the run's record keeps them)."""
        if self._open is not None:
            opened, self._open, self._conn = self._open, None, None
            opened.__exit__(type(exc), exc, exc.__traceback__)
        vars(self._counts).update(vars(self._committed))


def _import_chunks(engine: Engine, settings: Settings, chunks: Iterator[Chunk], report: ImportReport,
                   counts: sync.Counts, progress: Callable[[int], None] | None,
                   placed: Callable[[list[int], list[int | None]], None] | None) -> None:
    transaction = _Transaction(engine, counts)
    try:
        _write_chunks(transaction, settings, chunks, report, counts, progress, placed)
        transaction.commit()
    except BaseException as exc:
        transaction.roll_back(exc)
        raise


def _write_chunks(transaction: _Transaction, settings: Settings, chunks: Iterator[Chunk],
                  report: ImportReport, counts: sync.Counts, progress: Callable[[int], None] | None,
                  placed: Callable[[list[int], list[int | None]], None] | None) -> None:
    for chunk in chunks:
        lines: list[int] = []
        batch: list[identity.Prepared] = []
        for line, error, warnings, prepared in chunk:
            if warnings:
                for warning in warnings:
                    report.warn(line, warning)
            if prepared is None:
                report.skip(line, error or _("unreadable row"))
            else:
                lines.append(line)
                batch.append(prepared)
        report.rows += len(chunk)
        if batch:
            _flush(transaction, settings, lines, batch, report, counts, placed)
        if progress:
            progress(len(chunk))
        del chunk, batch, lines
        if gc.get_count()[0] > GC_SURVIVORS:
            gc.collect(1)  # the cycles chunks left, a few hundred objects each (_fewer_gc_passes)


# A chunk's rows as the importing process needs them: (line, error, warnings, prepared or None).
Chunk = list[tuple[int, "str | None", "list[str]", "identity.Prepared | None"]]


def _prepare_row(row: Row, region: str) -> identity.Prepared:
    assert row.record is not None
    prepared = identity.prepare(row.record, region)
    if row.record.external_id is None and not any(identity.finds_a_person(i) for i in prepared.identifiers):
        # Without an id, a mobile or an email of the person's own (an office line, a home landline,
        # an 8-800 line or info@ finds nobody by itself), only the row itself can tell a re-import
        # of it from a namesake: its line and content.
        row.record.external_id = _row_key(row)
    return prepared


@dataclass
class _Reading:
    """How to read the file (read_rows's options) and, once read, its Layout."""

    mapping: dict[str, str] | None
    header_row: int | None
    sheet: str | None
    layout: Layout
    checked: bool = False  # the file passed hub.spreadsheet.check_file already


def _chunks_here(path: str | os.PathLike[str], source: str, reading: _Reading,
                 region: str) -> Generator[Chunk, None, None]:
    """Rows read and normalized in this process, CHUNK at a time (the first FIRST_CHUNK)."""
    chunk: Chunk = []
    size = min(FIRST_CHUNK, CHUNK)
    for row in read_rows(path, source=source, mapping=reading.mapping, header_row=reading.header_row,
                         sheet=reading.sheet, layout=reading.layout, checked=reading.checked):
        chunk.append((row.line, row.error, row.warnings,
                      _prepare_row(row, region) if row.record is not None else None))
        if len(chunk) >= size:
            yield chunk
            chunk = []
            size = CHUNK
    if chunk:
        yield chunk


def _chunks_in_reader_process(path: str | os.PathLike[str], source: str, reading: _Reading,
                              region: str) -> Generator[Chunk, None, None]:
    """The same chunks, read and normalized by a second process.

    Rows cross the process boundary as flat tuples: pickling them as
    dataclasses would cost more than the work it moves. The reader pickles
    each chunk itself (the queue's feeder thread only sends the bytes, not
    competing for its interpreter), and a bounded queue keeps it at most
    READ_AHEAD chunks ahead, so memory stays flat. The file's Layout comes
    once, ahead of its first chunk (or of the end).

    This process checks the whole file (hub.spreadsheet.check_file) while
    the reader starts reading: nothing is taken from the reader, and so
    nothing written, before the file passed, as when the reader checks.
    """
    # fork: the reader needs nothing from this process but its arguments and
    # touches nothing it shares; spawn would re-run the caller's main module.
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork") if "fork" in methods else multiprocessing.get_context("spawn")
    chunks: Any = ctx.Queue(maxsize=READ_AHEAD)
    reader = ctx.Process(target=_reader_main, args=(str(path), source, dataclasses.replace(reading, checked=True),
                                                    region, chunks, i18n.current_language()),
                         daemon=True, name="hub-import-reader")
    reader.start()
    try:
        check_file(path, reading.sheet)
        while True:
            try:
                item = chunks.get(timeout=1)
            except queue.Empty:
                if not reader.is_alive():
                    raise RuntimeError(_("the spreadsheet reader stopped unexpectedly (exit code %(code)s)",
                                         code=reader.exitcode)) from None
                continue
            if item is None:
                return
            if isinstance(item, str):
                raise SpreadsheetError(item)
            if isinstance(item, Layout):
                for told in dataclasses.fields(Layout):
                    setattr(reading.layout, told.name, getattr(item, told.name))
                continue
            yield _unpack(pickle.loads(item), source)
    finally:
        if reader.is_alive():
            reader.terminate()
        reader.join(timeout=10)
        if reader.is_alive():  # (terminate is SIGTERM, which a reader could only ignore by mistake)
            reader.kill()
            reader.join()


def _reader_main(path: str, source: str, reading: _Reading, region: str, chunks: Any,
                 language: str = i18n.DEFAULT_LANGUAGE) -> None:
    # Stopped by this process's terminate() when the import fails or ends early: at once, whatever SIGTERM
    # handler it was forked with (a test run's, an RQ worker's), so it never waits on its queue's unread chunks.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    gc.disable()  # collected between chunks, as the importing process does (_fewer_gc_passes); nothing to restore
    i18n.activate(language)  # rows' problems are told in the language of whoever imports
    try:
        told = False
        for chunk in _chunks_here(path, source, reading, region):
            if not told:
                chunks.put(reading.layout)
                told = True
            chunks.put(pickle.dumps(_pack(chunk), pickle.HIGHEST_PROTOCOL))
            del chunk
            if gc.get_count()[0] > GC_SURVIVORS:
                gc.collect(1)
        if not told:
            chunks.put(reading.layout)
        chunks.put(None)
    except SpreadsheetError as exc:
        chunks.put(str(exc))
    except Exception as exc:  # noqa: BLE001 - reported in the importing process, which owns the run record
        chunks.put(f"{Path(path).name}: {type(exc).__name__}: {exc}")


# Every ContactRecord field but the source (its first), which is the same for the whole file.
_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(ContactRecord) if f.name != "source")


_fields_of = operator.attrgetter(*_RECORD_FIELDS)


def _pack(chunk: Chunk) -> list[tuple[Any, ...]]:
    """A chunk as plain tuples, the cheapest objects to pickle and unpickle; no warnings is None."""
    return [(line, error, warnings or None, None, None) if prepared is None else
            (line, error, warnings or None, _fields_of(prepared.record), [tuple(i) for i in prepared.identifiers])
            for line, error, warnings, prepared in chunk]


def _unpack(packed: list[tuple[Any, ...]], source: str) -> Chunk:
    """The chunk _pack made, with its records and identifiers rebuilt (positionally: the cheapest way).

    The chunk's identifiers are made in one call (map runs tuple.__new__ without a Python frame
    per identifier), then sliced out record by record.
    """
    flat = [i for row in packed if row[4] for i in row[4]]
    made = list(map(tuple.__new__, itertools.repeat(Identifier, len(flat)), flat))
    chunk: Chunk = []
    add = chunk.append
    at = 0
    for line, error, warnings, fields, idents in packed:
        if fields is None:
            add((line, error, warnings or [], None))
            continue
        end = at + len(idents)
        add((line, error, warnings or [], Prepared(ContactRecord(source, *fields), made[at:end])))
        at = end
    return chunk


def _flush(transaction: _Transaction, settings: Settings, lines: list[int], prepared: list[identity.Prepared],
           report: ImportReport, counts: sync.Counts,
           placed: Callable[[list[int], list[int | None]], None] | None) -> None:
    batch = prepared
    before = (counts.contacts["created"], counts.contacts["updated"], counts.contacts["merged"])
    result = sync.write_contacts(transaction.connection(), [p.record for p in prepared], settings, counts,
                                 prepared=prepared)
    transaction.chunk_written()
    if placed:
        placed(lines, result.contact_ids)
    created = counts.contacts["created"] - before[0]
    report.imported += len(batch) - result.refused
    report.created += created
    report.updated += counts.contacts["updated"] - before[1]
    report.contacts_merged += counts.contacts["merged"] - before[2]
    report.refused += result.refused
    report.merged += len(batch) - created - result.refused
    report.invalid_phones = counts.invalid_phones
    report.invalid_emails = counts.invalid_emails
    report.shared_values = counts.shared_values


def _row_key(row: Row) -> str:
    r = row.record
    assert r is not None
    content = "\x1f".join(str(v) for v in (row.line, r.last_name, r.first_name, r.middle_name, r.birthday,
                                             r.city, *r.phones, *r.emails))
    return "row:" + hashlib.sha1(content.encode()).hexdigest()[:16]


# --- consent import -----------------------------------------------------------------------

CONSENT_COLUMNS = {
    "email": ("email", "e-mail", "почта", "эл. почта", "электронная почта"),
    "phone": ("phone", "телефон", "тел", "тел.", "mobile"),
    "channel": ("channel", "канал"),
    "purpose": ("purpose", "цель", "тема", "topic"),
    "status": ("status", "статус", "согласие", "consent"),
    "source": ("source", "источник"),
    "date": ("date", "at", "дата", "when"),
}
STATUS_WORDS = {
    "granted": "granted", "yes": "granted", "да": "granted", "1": "granted", "true": "granted",
    "согласен": "granted", "согласие": "granted", "opt-in": "granted", "subscribed": "granted",
    "withdrawn": "withdrawn", "no": "withdrawn", "нет": "withdrawn", "0": "withdrawn", "false": "withdrawn",
    "отказ": "withdrawn", "отписан": "withdrawn", "opt-out": "withdrawn", "unsubscribed": "withdrawn",
    "pending": "pending", "ожидает": "pending",
}


@dataclass
class ConsentImportReport:
    file: str
    rows: int = 0
    recorded: int = 0
    already_recorded: int = 0
    contacts_created: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "rows": self.rows, "recorded": self.recorded,
                "already_recorded": self.already_recorded,
                "contacts_created": self.contacts_created, "skipped_count": len(self.skipped),
                "skipped": self.skipped[:MAX_LISTED]}


def _consent_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    if path.suffix.lower() not in (".csv", ".txt"):
        raise SpreadsheetError(_("%(file)s: consent is imported from CSV; save the sheet as CSV first",
                                file=path.name))
    check_text_file(path)  # binary junk or a broken file is refused before its first row is recorded
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1251", errors="replace")
    lines = text.splitlines()
    if not lines:
        raise SpreadsheetError(_("%(file)s: the file is empty", file=path.name))
    header = lines[0]
    delimiter = max(";,\t", key=header.count)
    reader = csv.reader(lines, delimiter=delimiter)
    headers = [h.strip().lower() for h in next(reader)]
    columns: dict[str, int] = {}
    for name, words in CONSENT_COLUMNS.items():
        for i, h in enumerate(headers):
            if h in words and name not in columns:
                columns[name] = i
    # named as the sheet's header may say it, the English word after it: «канал (channel)»
    missing = [_column_title(n) for n in ("channel", "purpose", "status") if n not in columns]
    if "email" not in columns and "phone" not in columns:
        missing.insert(0, _("%(title)s (%(names)s)", title=_("email or phone"), names="email, phone"))
    if missing:
        raise SpreadsheetError(_("%(file)s: no column for %(missing)s (found: %(found)s)", file=path.name,
                                 missing=", ".join(missing), found=", ".join(headers)))
    for line, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue
        yield line, {name: (cells[i].strip() if i < len(cells) else "") for name, i in columns.items()}


_COLUMN_TITLES = {"channel": i18n.N_("channel"), "purpose": i18n.N_("purpose"), "status": i18n.N_("status")}


def _column_title(name: str) -> str:
    title = _(_COLUMN_TITLES[name])
    return title if title == name else _("%(title)s (%(names)s)", title=title, names=name)


def status_words() -> str:
    """The words a consent sheet's status column may hold, by the status each means, for an error message."""
    by_status: dict[str, list[str]] = {}
    for word, status in STATUS_WORDS.items():
        by_status.setdefault(status, []).append(word)
    return "; ".join(_("%(title)s: %(words)s", title=consent.status_title(status), words=", ".join(words))
                     for status, words in by_status.items())


def _parse_when(text: str, tz: dt.tzinfo) -> dt.datetime | None:
    text = text.strip()
    if not text:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d", "%d.%m.%Y %H:%M",
                "%d.%m.%Y"):
        try:
            value = dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
        if value.tzinfo is None:
            value = value.replace(tzinfo=tz)
        return value.astimezone(dt.timezone.utc)
    raise ValueError(_("date %(value)r is not a date (use 2024-03-14 or 14.03.2024)", value=text))


def import_consent(engine: Engine, settings: Settings, path: str | os.PathLike[str]) -> ConsentImportReport:
    """Record consent collected elsewhere; a person not yet in the base joins it (the mailing base)."""
    path = Path(path)
    if not path.exists():
        raise SpreadsheetError(_("%(path)s: no such file", path=path))
    report = ConsentImportReport(file=str(path))
    for line, cells in _consent_rows(path):
        report.rows += 1
        try:
            status = STATUS_WORDS.get(cells["status"].lower())
            if status is None:
                raise ValueError(_("status %(status)r is not a word the importer knows; write %(words)s",
                                   status=cells["status"], words=status_words()))
            channel, purpose = cells["channel"].lower(), cells["purpose"].lower()
            consent.validate(settings, channel, purpose, status)
            at = _parse_when(cells.get("date", ""), settings.tz)
            email = normalize.email(cells.get("email"))
            phones = [p for p in normalize.phones(cells.get("phone"), settings.default_region) if p.valid]
            found = ([email] if email is not None and email.valid else []) + phones[:1]
            if not found:
                raise ValueError(_("no valid email or phone to find the person by"))
        except (ValueError, consent.ConsentError) as exc:
            report.skipped.append({"line": line, "reason": str(exc)})
            continue
        source = cells.get("source") or "import"
        # Through the identity path, so a row naming a known phone and a new
        # email finds the person instead of creating a twin.
        record = ContactRecord(source=f"import:{path.name}", emails=[i.value for i in found if i.kind == "email"],
                               phones=[i.value for i in found if i.kind == "phone"])
        with engine.begin() as conn:
            result = sync.write_contacts(conn, [record], settings, sync.Counts())
            contact_id = result.contact_ids[0]
            report.contacts_created += len(result.created)
            if contact_id is None:  # a plugin kept the person out (erased on request)
                report.skipped.append({"line": line, "reason": _("this person was erased on request")})
                continue
            if consent.already_recorded(conn, contact_id, channel, purpose, status, source, at):
                report.already_recorded += 1
                continue
            consent.record(conn, contact_id, channel, purpose, status, source=source, settings=settings,
                           evidence={"file": path.name, "line": line, **{i.kind: i.value for i in found}},
                           at=at or utcnow())
        report.recorded += 1
    return report
