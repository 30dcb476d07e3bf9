"""Driving a source plugin: pages of records in, contacts and orders out.

A source reads its system page by page from a cursor. Each page is written in
one transaction together with the cursor that follows it, so a run killed at
any point resumes from the last committed page and writes nothing twice
(contacts are matched by external reference and identifiers, orders by their
(source, external id) key, both with on-conflict upserts).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import json
import os
import secrets
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Iterable, Iterator, Literal, Protocol, Sequence

from sqlalchemy import Connection, Engine, and_, delete, select, update
from sqlalchemy.exc import IntegrityError

from hub import activities, companies, custom_fields, formats, identity
from hub.config import Settings
from hub.db import among, bulk_insert, chunks, insert_for, utcnow, whole_number
from hub.i18n import N_
from hub.i18n import gettext as _
from hub.models import CONTACT_TEXT_LENGTHS, EXCLUSIVE_RUN_KINDS, Contact, ExternalRef, Order, SyncRun, SyncState
from hub.plugins import get_pm, sources
from hub.readahead import ReadAhead
from hub.records import ActivityRecord, CompanyRecord, ContactRecord, Deletion, FieldDefinition, OrderRecord

Record = ContactRecord | OrderRecord | CompanyRecord | ActivityRecord | FieldDefinition | Deletion
orders_t = Order.__table__
refs_t = ExternalRef.__table__
contacts_t = Contact.__table__
state_t = SyncState.__table__
runs_t = SyncRun.__table__
CHUNK = 2000
# Records read ahead of the writing that wait in memory (a few tens of MB); beyond, in a temporary file.
READ_AHEAD_RECORDS = 50_000
ORDER_STATUSES = ("won", "lost", "open")
# What a sync run did, as sync_runs.kind records it (and --json shows it), and as people call it.
RUN_KINDS = {"full": N_("full sync"), "incremental": N_("changes only"), "event": N_("webhook event"),
             "reconcile": N_("reconciliation"), "import": N_("import")}


def kind_title(kind: Any) -> str:
    """A sync run's kind in the reader's words ("полная синхронизация"); a kind Hub does not know as it is."""
    return _(RUN_KINDS[kind]) if kind in RUN_KINDS else str(kind)


@dataclass
class Page:
    """Records read from a source and the cursor to resume from after them."""

    records: Sequence[Record]
    cursor: str | None


class Source(Protocol):
    """What a source plugin's factory returns."""

    name: str

    def entities(self) -> Sequence[str]:
        """Entities in the order they should sync, e.g. ("contacts", "orders")."""

    def read(self, entity: str, cursor: str | None, full: bool) -> Iterator[Page]:
        """Pages of records after `cursor` (None: from the beginning)."""

    def checkpoint(self, entity: str) -> str | None:
        """The incremental cursor to continue from after a full sync that starts now."""


class TargetedSource(Protocol):
    """A source that can read chosen records, for webhook events that carry only an id."""

    def fetch(self, entity: str, ids: Sequence[str]) -> list[Record]:
        """The records with these ids that still exist; missing ones are treated as deleted."""


class ReconcilingSource(Protocol):
    """A source that can list every id it still holds, to find deletions no event reported."""

    def live_ids(self, entity: str) -> Iterator[list[str]]:
        """All ids of `entity` in the source system, in batches."""


# A source's entity and what a Deletion of one of its records names. "fields" (custom field
# definitions) has no deletions: a field removed in the CRM simply stops being offered.
ENTITY_KIND: dict[str, Literal["contact", "order", "company", "activity"]] = {
    "contacts": "contact", "orders": "order", "companies": "company", "activities": "activity"}


class SyncError(RuntimeError):
    """A run that stopped; the cursor stays at the last committed page."""


@dataclass
class Counts:
    """Running totals of one sync or import, shaped like the CLI's JSON summary."""

    contacts: dict[str, int] = field(default_factory=lambda: {"created": 0, "updated": 0, "deleted": 0, "merged": 0,
                                                              "refused": 0})
    orders: dict[str, int] = field(default_factory=lambda: {"created": 0, "updated": 0, "deleted": 0, "refused": 0})
    companies: dict[str, int] = field(default_factory=lambda: {"created": 0, "updated": 0, "deleted": 0})
    activities: dict[str, int] = field(default_factory=lambda: {"created": 0, "updated": 0, "deleted": 0,
                                                                "refused": 0})
    fields: int = 0  # custom field definitions read
    invalid_phones: int = 0
    invalid_emails: int = 0
    shared_values: int = 0  # phones and emails found to be several people's (they join nobody)
    errors: list[dict[str, Any]] = field(default_factory=list)
    analyzed_at: int = 0  # rows written when PostgreSQL's statistics were last refreshed (keep_statistics)

    def as_dict(self) -> dict[str, Any]:
        return {"contacts": dict(self.contacts), "orders": dict(self.orders), "companies": dict(self.companies),
                "activities": dict(self.activities), "fields": self.fields,
                "invalid_phones": self.invalid_phones, "invalid_emails": self.invalid_emails,
                "shared_values": self.shared_values, "errors": len(self.errors)}


def write_contacts(conn: Connection, records: Sequence[ContactRecord], settings: Settings, counts: Counts,
                   *, prepared: Sequence[identity.Prepared] | None = None) -> identity.Resolution:
    """Resolve and store contact records (one chunk), then tell plugins."""
    pm = get_pm()
    for r in records:
        _fit(r)
    if prepared is None:
        prepared = [identity.prepare(r, settings.default_region) for r in records]
    result = identity.resolve(conn, prepared, settings=settings)
    counts.contacts["created"] += len(result.created)
    counts.contacts["updated"] += len(result.updated)
    counts.contacts["merged"] += len(result.merged)
    counts.contacts["refused"] += result.refused
    counts.invalid_phones += result.invalid_phones
    counts.invalid_emails += result.invalid_emails
    counts.shared_values += len(result.shared)
    if records:
        ids = sorted({c for c in result.contact_ids if c is not None})
        pm.hook.contact_synced(conn=conn, settings=settings, source=records[0].source, contact_ids=ids,
                               created_ids=result.created)
    return result


def _fit(record: ContactRecord) -> None:
    """A contact's texts cut to what their columns hold (CONTACT_TEXT_LENGTHS), not refused: a page that
    raises is written by no later sync either, and PostgreSQL refuses a text longer than its column."""
    for name, most in CONTACT_TEXT_LENGTHS.items():
        value = getattr(record, name)
        if type(value) is str and len(value) > most:
            setattr(record, name, value[:most].rstrip() or None)


def write_orders(conn: Connection, records: Sequence[OrderRecord], counts: Counts,
                 settings: Settings | None = None, *, refresh: bool = True) -> None:
    """Upsert orders by (source, external id) and keep the contacts' stats current.

    `refresh=False` leaves the stats to the caller: a full sync recomputes them
    once for the whole source at its end (identity.refresh_source_stats)
    instead of once per page for contacts whose deals span many pages.
    """
    refused: set[int] = set()
    if records:
        for answer in get_pm().hook.refuse_orders(conn=conn, settings=settings, orders=list(records)):
            refused.update(answer or ())
    if refused:
        counts.orders["refused"] += len(refused)
        records = [r for i, r in enumerate(records) if i not in refused]
    unique: dict[tuple[str, str], dict[str, Any]] = {}
    now = utcnow()
    # A first sync writes hundreds of thousands of rows that repeat a few funnels, stages, managers,
    # companies and sets of custom field values: each distinct one is cut (or made plain) once.
    long, short, plain = companies.Cut(200), companies.Cut(64), _PlainAlike()
    moment = dt.datetime
    for r in records:
        status, amount, closed, created, entered = r.status, r.amount, r.closed_at, r.created_at, r.stage_entered_at
        if not (status in ORDER_STATUSES and type(amount) is Decimal  # what a source's mapping gives: no checks
                and (closed is None or (type(closed) is moment and closed.tzinfo is not None))
                and (created is None or (type(created) is moment and created.tzinfo is not None))
                and (entered is None or (type(entered) is moment and entered.tzinfo is not None))):
            problem = _order_problem(r)
            if problem:
                counts.errors.append({"entity": "order", "id": r.external_id, "error": problem})
                continue
            amount = amount if type(amount) is Decimal else Decimal(amount)
        key = (r.source, str(r.external_id))
        unique[key] = {
            "source": key[0], "external_id": key[1], "contact_external_id": r.contact_external_id,
            "amount": amount, "currency": (r.currency or "RUB").upper()[:3], "status": status, "title": r.title,
            "promo_code": r.promo_code, "closed_at": closed, "created_at": created or now, "updated_at": now,
            "company_external_id": long(r.company_external_id), "pipeline": long(r.pipeline),
            "stage": long(r.stage), "stage_entered_at": entered, "responsible_id": short(r.responsible_id),
            "attributes": plain(r.attributes) if r.attributes else {}}
    if not unique:
        return
    rows = [unique[key] for key in sorted(unique)]  # in key order, as upsert_orders writes: no deadlock
    by_source: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row["contact_external_id"]:
            by_source[row["source"]].add(row["contact_external_id"])
    contact_of: dict[tuple[str, str], int] = {}
    for source, ids in by_source.items():
        for part in chunks(sorted(ids), identity.LOOKUP_CHUNK):
            for ext, cid in conn.execute(select(refs_t.c.external_id, refs_t.c.contact_id).where(
                    refs_t.c.source == source, among(conn, refs_t.c.external_id, part))).all():
                contact_of[(source, ext)] = cid
    touched: set[int] = set()
    firms: set[int] = set()  # companies whose won deals may have changed
    existing: set[tuple[str, str]] = set()
    stored: dict[tuple[str, str], tuple[Any, ...]] = {}  # what Hub holds, to count only real changes
    held_columns = [orders_t.c[name] for name in _COMPARED]
    for source in {r["source"] for r in rows}:
        keys = [r["external_id"] for r in rows if r["source"] == source]
        for part in chunks(keys, identity.LOOKUP_CHUNK):
            for ext, *held in conn.execute(select(orders_t.c.external_id, *held_columns).where(
                    orders_t.c.source == source, among(conn, orders_t.c.external_id, part))).all():
                existing.add((source, ext))
                stored[(source, ext)] = tuple(held)
                cid, firm = held[_CONTACT_AT], held[_COMPANY_AT]
                if cid is not None:
                    touched.add(cid)
                if firm is not None:
                    firms.add(firm)
    company_of = companies.ids_of(conn, {(r["source"], r["company_external_id"]) for r in rows
                                         if r["company_external_id"]})
    # New orders (all of them in a first sync) take the bulk path; known ones are upserted.
    fresh: list[dict[str, Any]] = []
    known: list[dict[str, Any]] = []
    for row in rows:
        source = row["source"]
        company_ext, contact_ext = row["company_external_id"], row["contact_external_id"]
        row["company_id"] = firm = company_of.get((source, company_ext)) if company_ext else None
        if firm is not None:
            firms.add(firm)
        row["contact_id"] = cid = contact_of.get((source, contact_ext)) if contact_ext else None
        if cid is not None:
            touched.add(cid)
        before = stored.get((source, row["external_id"])) if stored else None
        if before is None:
            fresh.append(row)
            continue
        known.append(row)
        if before != tuple(row[name] for name in _COMPARED):  # an overlap window re-reads unchanged deals
            counts.orders["updated"] += 1
    counts.orders["created"] += len(fresh)
    bulk_insert(conn, orders_t, fresh, ignore_conflicts=True)
    if known:
        upsert_orders(conn, known)
    # Calls logged on these deals before they arrived, or on a deal that changed hands, reach its contact.
    activities.follow_orders(conn, [(r["source"], r["external_id"]) for r in rows])
    if refresh:
        identity.refresh_stats(conn, touched)
        companies.refresh_stats(conn, firms)


class _PlainAlike:
    """custom_fields.plain for one chunk's records, one result per distinct set of values.

    A portal's deals repeat a few patterns of custom field values (a delivery
    method, a date): rows made alike share one dict, which the bulk insert
    encodes as JSON once (hub.db). Only texts, whole numbers, flags and None
    are compared this way (equal values of another type, 1.0 and 1 or two
    Decimals, can be written differently); other sets are made plain each time.
    """

    def __init__(self) -> None:
        self._done: dict[Any, dict[str, Any]] = {}

    def __call__(self, attributes: Any) -> dict[str, Any]:
        if type(attributes) is not dict:
            return custom_fields.plain(attributes)
        types = tuple(map(type, attributes.values()))
        if not _SIMPLE.issuperset(types) or not _TEXT.issuperset(map(type, attributes)):
            return custom_fields.plain(attributes)
        key = (tuple(attributes.items()), types)
        found = self._done.get(key)
        if found is None:
            found = self._done[key] = custom_fields.plain(attributes)
        return found


_SIMPLE = frozenset({str, int, bool, type(None)})
_TEXT = frozenset({str})
# The columns an order's update may change (updated_at, Hub's own write time, aside).
_COMPARED = ("contact_external_id", "contact_id", "amount", "currency", "status", "title", "promo_code", "closed_at",
             "company_external_id", "company_id", "pipeline", "stage", "stage_entered_at", "responsible_id",
             "attributes")
_CONTACT_AT, _COMPANY_AT = _COMPARED.index("contact_id"), _COMPARED.index("company_id")


def upsert_orders(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert orders, or update the ones held by (source, external id): every order write goes through here.

    Rows are written in key order: two writers whose batches overlap then
    take the row locks in the same order and never wait on each other in a circle.
    """
    if not rows:
        return
    rows = sorted(rows, key=lambda row: (row["source"], row["external_id"]))
    ins = insert_for(conn, orders_t)
    changing = tuple(c for c in ("contact_external_id", "contact_id", "amount", "currency", "status", "title",
                                 "promo_code", "closed_at", "updated_at", "company_external_id", "company_id",
                                 "pipeline", "stage", "stage_entered_at", "responsible_id", "attributes")
                     if c in rows[0])
    conn.execute(ins.on_conflict_do_update(index_elements=["source", "external_id"],
                                           set_={c: ins.excluded[c] for c in changing}), list(rows))


def _order_problem(r: OrderRecord) -> str | None:
    if r.status not in ORDER_STATUSES:
        return f"status {r.status!r} is not one of won, lost, open"
    if type(r.amount) is not Decimal:  # what a source's mapping gives; anything else is read as a number
        try:
            Decimal(r.amount)
        except (InvalidOperation, TypeError, ValueError):
            return f"amount {r.amount!r} is not a number"
    for name, value in (("closed_at", r.closed_at), ("created_at", r.created_at),
                        ("stage_entered_at", r.stage_entered_at)):
        if value is None:
            continue
        if not isinstance(value, dt.datetime):
            return f"{name} is not a date and time"
        if value.tzinfo is None:
            return f"{name} has no time zone"
    return None


def write_deletions(conn: Connection, records: Sequence[Deletion], counts: Counts) -> None:
    """Mark what a source deleted: a contact goes when no source holds them any more."""
    now = utcnow()
    for d in records:
        if d.entity == "company":
            if companies.delete_company(conn, d.source, d.external_id, now):
                counts.companies["deleted"] += 1
            continue
        if d.entity == "activity":
            if activities.delete_activity(conn, d.source, d.external_id):
                counts.activities["deleted"] += 1
            continue
        if d.entity == "order":
            # Its calls, meetings and notes go with it unless a contact or company of their own holds them.
            counts.activities["deleted"] += activities.drop_with_order(conn, d.source, d.external_id)
            row = conn.execute(select(orders_t.c.id, orders_t.c.contact_id, orders_t.c.company_id).where(
                orders_t.c.source == d.source, orders_t.c.external_id == d.external_id)).first()
            if row:
                conn.execute(delete(orders_t).where(orders_t.c.id == row.id))
                counts.orders["deleted"] += 1
                if row.contact_id:
                    identity.refresh_stats(conn, [row.contact_id])
                if row.company_id:
                    companies.refresh_stats(conn, [row.company_id])
            continue
        contact_id = conn.execute(select(refs_t.c.contact_id).where(
            refs_t.c.source == d.source, refs_t.c.external_id == d.external_id, refs_t.c.deleted_at.is_(None))).scalar()
        if contact_id is None:
            continue
        conn.execute(update(refs_t).where(refs_t.c.source == d.source, refs_t.c.external_id == d.external_id)
                     .values(deleted_at=now))
        live = conn.execute(select(refs_t.c.id).where(refs_t.c.contact_id == contact_id,
                                                      refs_t.c.deleted_at.is_(None))).first()
        if live is None:
            conn.execute(update(contacts_t).where(contacts_t.c.id == contact_id).values(deleted_at=now))
        counts.contacts["deleted"] += 1


def write_page(conn: Connection, records: Iterable[Record], settings: Settings, counts: Counts, *,
               order_stats: bool = True) -> None:
    """Write a page in the order things link: field definitions, companies, contacts (who work
    at them), orders and activities (which name both), then deletions.

    `order_stats=False`: see write_orders(refresh=False).
    """
    definitions: list[FieldDefinition] = []
    firms: list[CompanyRecord] = []
    contacts: list[ContactRecord] = []
    orders: list[OrderRecord] = []
    logged: list[ActivityRecord] = []
    deletions: list[Deletion] = []
    for r in records:
        if isinstance(r, ContactRecord):
            contacts.append(r)
        elif isinstance(r, OrderRecord):
            orders.append(r)
        elif isinstance(r, CompanyRecord):
            firms.append(r)
        elif isinstance(r, ActivityRecord):
            logged.append(r)
        elif isinstance(r, FieldDefinition):
            definitions.append(r)
        elif isinstance(r, Deletion):
            deletions.append(r)
        else:
            counts.errors.append({"error": f"unknown record type {type(r).__name__}"})
    if definitions:
        custom_fields.write_definitions(conn, definitions, counts)
    for part in chunks(firms, CHUNK):
        companies.write_companies(conn, part, settings, counts)
    for part in chunks(contacts, CHUNK):
        write_contacts(conn, part, settings, counts)
    for part in chunks(orders, CHUNK):
        write_orders(conn, part, counts, settings, refresh=order_stats)
    for part in chunks(logged, CHUNK):
        activities.write_activities(conn, part, counts, settings)
    if deletions:
        write_deletions(conn, deletions, counts)


# --- runs ---------------------------------------------------------------------------------

# A live run renews its lease with every page it commits (`heartbeat`); see interrupt_stale_runs.
RUN_LEASE = dt.timedelta(minutes=30)
_HOST = socket.gethostname()[:100]
_PROCESS = secrets.token_hex(6)  # tells this process from an earlier one that had the same pid
_active_runs: set[int] = set()
_active_lock = threading.Lock()


def _owner() -> str:
    return f"{_HOST}/{os.getpid()}/{_PROCESS}"


def _process_alive(pid: int) -> bool:
    if os.name == "nt":  # signal 0 is CTRL_C_EVENT there, not a probe: a run is judged by its lease alone
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except OSError:
        return False
    return True


def _why_stale(row: Any, now: dt.datetime) -> str | None:
    """Why this 'running' row's run is dead, or None while it may be alive (the rule: interrupt_stale_runs)."""
    host, _, rest = (row.owner or "").partition("/")
    pid_text, _, process = rest.partition("/")
    pid_number = whole_number(pid_text) if host == _HOST else None
    if pid_number is not None:
        pid = pid_number
        if pid == os.getpid():
            if process != _PROCESS:
                return "the process that ran it is gone"
            with _active_lock:
                if row.id not in _active_runs:
                    return "it stopped without finishing"
            return None
        if not _process_alive(pid):
            return f"the process that ran it (pid {pid}) is gone"
    seen = row.heartbeat_at or row.started_at
    if seen is not None and now - seen > RUN_LEASE:
        return f"no progress for more than {int(RUN_LEASE.total_seconds() // 60)} minutes"
    return None


def interrupt_stale_runs(conn: Connection, source: str) -> list[int]:
    """Mark `source`'s dead 'running' runs as 'interrupted' (with the reason in `error`); their ids.

    A run row says 'running' until its run finishes, and a process killed
    mid-run (kill -9, an OOM kill, a lost machine) never finishes it; without
    this the row would say 'running' forever. Every new run of a source calls
    this first. A 'running' row is taken for dead when
      - its owner (host/pid/process token, written at start) is on this host
        and that process is gone, or is this very process but no longer
        running it (same pid and token, not among this process's live runs);
      - or it showed no progress for RUN_LEASE: each committed page renews
        `heartbeat_at`, and no page of a live sync takes that long, whatever
        the source's rate-limit waits. A run on another host is judged by the
        lease alone, and so is one whose pid was since reused.
    A live run marked by mistake (silent past the lease) loses nothing: its
    next page marks it running again and its end records ok or failed as
    usual. The data needs no repair either way: a killed run's pages were
    committed with their cursor, and the next run resumes from there.
    """
    now = utcnow()
    rows = conn.execute(select(runs_t.c.id, runs_t.c.owner, runs_t.c.heartbeat_at, runs_t.c.started_at).where(
        runs_t.c.source == source, runs_t.c.status == "running").order_by(runs_t.c.id)).all()
    marked = []
    for row in rows:
        reason = _why_stale(row, now)
        if reason is None:
            continue
        done = conn.execute(update(runs_t).where(runs_t.c.id == row.id, runs_t.c.status == "running").values(
            status="interrupted", error=f"interrupted: {reason}", finished_at=now))
        if done.rowcount:
            marked.append(row.id)
    return marked


@dataclass(frozen=True)
class LiveRun:
    """A running sync of a source that holds it (see SyncBusy): which run, since when, where."""

    id: int
    kind: str
    started_at: dt.datetime | None
    host: str | None
    pid: int | None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "host": self.host, "pid": self.pid,
                "started_at": self.started_at.isoformat() if self.started_at else None}


class SyncBusy(SyncError):
    """A sync or reconcile pass refused before it read anything: another run of its source is live.

    Two at once would each pace themselves alone against the CRM's rate limit
    (amoCRM blocks an account after repeated 429s) and write the same pages.
    The database holds the rule (the partial unique index on sync_runs over
    EXCLUSIVE_RUN_KINDS), so it holds across processes and hosts; a dead run
    does not hold it, as interrupt_stale_runs marks it first.
    """

    code = "sync_running"  # the --json key's value: stable, whatever the language

    def __init__(self, source: str, live: LiveRun, tz: Any = None) -> None:
        self.source, self.live = source, live
        started = formats.moment(live.started_at, tz or "UTC", zone=True) if live.started_at else "?"
        super().__init__(_(
            "%(source)s is already being synced: run #%(run)s (%(kind)s), started %(started)s on %(host)s "
            "by process %(pid)s. Wait until it ends, then run `hub sync %(source)s` again if you still need to; "
            "if its process died, it is marked interrupted on its own (at once on that machine, elsewhere after "
            "%(minutes)s minutes without progress).", source=source, run=live.id, kind=kind_title(live.kind),
            started=started, host=live.host or "?", pid=live.pid if live.pid is not None else "?",
            minutes=int(RUN_LEASE.total_seconds() // 60)))

    def as_dict(self) -> dict[str, Any]:
        """What a --json caller or a skipped job reports: English keys, the live run's facts."""
        return {"error": self.code, "source": self.source, "running_run": self.live.as_dict()}


def live_run(conn: Connection, source: str) -> LiveRun | None:
    """The running sync or reconcile pass of `source` (call interrupt_stale_runs first to drop dead ones)."""
    row = conn.execute(select(runs_t.c.id, runs_t.c.kind, runs_t.c.started_at, runs_t.c.owner).where(
        runs_t.c.source == source, runs_t.c.status == "running", runs_t.c.kind.in_(EXCLUSIVE_RUN_KINDS))
        .order_by(runs_t.c.id).limit(1)).first()
    if row is None:
        return None
    host, _sep, rest = (row.owner or "").partition("/")
    return LiveRun(row.id, row.kind, row.started_at, host or None, whole_number(rest.partition("/")[0]))


def begin_run(engine: Engine, source: str, kind: str, *, tz: Any = None) -> tuple[int, list[int]]:
    """Record a new run of `source` as running; also the ids of its earlier runs found dead and marked interrupted.

    A sync or reconcile pass (EXCLUSIVE_RUN_KINDS) while another of the same
    source is live raises SyncBusy, in the time zone `tz` if given. Checking
    first gives the message; the unique index decides a race (two
    processes past the check at once on PostgreSQL): the loser's insert fails
    and it is refused the same way.
    """
    interrupted: list[int] = []
    for _attempt in range(3):
        run_id = None
        live = None
        try:
            with engine.begin() as conn:  # BEGIN IMMEDIATE on SQLite: one writer here at a time
                interrupted += interrupt_stale_runs(conn, source)
                if kind in EXCLUSIVE_RUN_KINDS:
                    live = live_run(conn, source)
                if live is None:
                    now = utcnow()
                    run_id = conn.execute(runs_t.insert().returning(runs_t.c.id), {
                        "source": source, "kind": kind, "status": "running", "counts": {}, "errors": [],
                        "started_at": now, "owner": _owner(), "heartbeat_at": now}).scalar_one()
                    with _active_lock:  # before the row is visible, so no other thread here takes it for dead
                        _active_runs.add(run_id)
        except IntegrityError:
            if run_id is not None:
                with _active_lock:
                    _active_runs.discard(run_id)
            with engine.connect() as conn:
                live = live_run(conn, source)
            if live is None:
                continue  # the winner already ended: try again
        except BaseException:
            if run_id is not None:
                with _active_lock:
                    _active_runs.discard(run_id)
            raise
        if live is not None:  # refused after the stale runs' marks were committed
            raise SyncBusy(source, live, tz)
        assert run_id is not None
        return run_id, interrupted
    raise SyncError(_("%(source)s: could not record a new run (other runs kept starting)", source=source))


def start_run(engine: Engine, source: str, kind: str, *, tz: Any = None) -> int:
    """Record a new run of `source` (marking its dead earlier runs interrupted); its id. SyncBusy: see begin_run."""
    return begin_run(engine, source, kind, tz=tz)[0]


def heartbeat(conn: Connection, run_id: int) -> None:
    """The run made progress: renew its lease (and take back 'interrupted' if it was silent past the lease).

    A run marked interrupted by mistake whose source another run has started
    since cannot take its row back (one live sync per source): it stops here,
    this page rolled back, and the newer run goes on from the saved cursor.
    """
    now = utcnow()
    if conn.execute(update(runs_t).where(runs_t.c.id == run_id, runs_t.c.status == "running")
                    .values(heartbeat_at=now)).rowcount:
        return
    other = runs_t.alias("other")
    newer = (select(other.c.id).where(other.c.source == runs_t.c.source, other.c.status == "running",
                                      other.c.kind.in_(EXCLUSIVE_RUN_KINDS), other.c.id != runs_t.c.id)
             .exists())
    taken = conn.execute(update(runs_t).where(
        runs_t.c.id == run_id, runs_t.c.status == "interrupted",
        ~and_(runs_t.c.kind.in_(EXCLUSIVE_RUN_KINDS), newer)).values(
        status="running", heartbeat_at=now, error=None, finished_at=None)).rowcount
    if taken:
        return
    row = conn.execute(select(runs_t.c.source, runs_t.c.status).where(runs_t.c.id == run_id)).first()
    if row is not None and row.status == "interrupted":
        raise SyncError(_("run #%(run)s of %(source)s made no progress for too long and another run of %(source)s "
                          "started meanwhile; this one stops, that one goes on from the last saved page",
                          run=run_id, source=row.source))


def _interrupted(engine: Engine, run_id: int, counts: Counts, reason: str) -> None:
    try:
        with engine.begin() as conn:
            conn.execute(update(runs_t).where(runs_t.c.id == run_id).values(
                status="interrupted", counts=counts.as_dict(), errors=counts.errors[:1000],
                error=f"interrupted: {reason}", finished_at=utcnow()))
    except Exception:  # noqa: BLE001 - the process is stopping; the next run will mark it instead
        pass
    finally:
        with _active_lock:
            _active_runs.discard(run_id)


# Rows a run must have written before PostgreSQL's planner statistics are refreshed at its end.
ANALYZE_AFTER_ROWS = 10_000
# What an import or a sync writes most and what segments, search, workflows and identity read.
_ANALYZED = ("contacts", "contact_identities", "external_refs", "orders", "companies", "contact_companies",
             "activities", "consent_events", "consent_states")


def _written(counts: Counts) -> int:
    return sum(sum(n for k, n in part.items() if k != "refused")
               for part in (counts.contacts, counts.orders, counts.companies, counts.activities))


def keep_statistics(engine: Engine, counts: Counts) -> None:
    """Refresh PostgreSQL's planner statistics each time what this run wrote has doubled (from 5,000 rows).

    Into an empty or small base a first import or sync writes far more than
    the statistics say the tables hold, and autovacuum looks only once a
    minute: the identity lookups of each chunk were planned as scans of
    "empty" tables that held tens of thousands of rows (80% of an import's
    time on PostgreSQL, growing with the square of its size). Doubling keeps
    it to a few ANALYZEs a run, each a sample of a few seconds at most.
    """
    if engine.dialect.name != "postgresql":
        return
    written = _written(counts)
    if written < max(ANALYZE_GROWTH_FROM, 2 * counts.analyzed_at):
        return
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE " + ", ".join(_ANALYZED))
    counts.analyzed_at = written


ANALYZE_GROWTH_FROM = 5_000


def finish_run(engine: Engine, run_id: int, counts: Counts, error: str | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(update(runs_t).where(runs_t.c.id == run_id).values(
            status="failed" if error else "ok", counts=counts.as_dict(), errors=counts.errors[:1000],
            error=error, finished_at=utcnow(), heartbeat_at=utcnow()))
    with _active_lock:
        _active_runs.discard(run_id)
    written = _written(counts)
    if engine.dialect.name == "postgresql" and written >= ANALYZE_AFTER_ROWS and written != counts.analyzed_at:
        # Right after a first large import the planner has no statistics (autovacuum looks only once a
        # minute) and a segment refresh can pick a nested loop over thousands of contacts that runs
        # for minutes; ANALYZE samples each table and takes seconds even at millions of rows.
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE " + ", ".join(_ANALYZED))
        counts.analyzed_at = written


def _load_state(conn: Connection, source: str, entity: str) -> tuple[str | None, dict[str, Any] | None]:
    row = conn.execute(select(state_t.c.cursor, state_t.c.full_cursor).where(
        state_t.c.source == source, state_t.c.entity == entity)).first()
    if row is None:
        return None, None
    return row.cursor, (json.loads(row.full_cursor) if row.full_cursor else None)


def _save_state(conn: Connection, source: str, entity: str, *, cursor: str | None,
                full: dict[str, Any] | None) -> None:
    ins = insert_for(conn, state_t)
    values = {"source": source, "entity": entity, "cursor": cursor,
              "full_cursor": json.dumps(full) if full is not None else None, "updated_at": utcnow()}
    conn.execute(ins.on_conflict_do_update(index_elements=["source", "entity"],
                                           set_={k: ins.excluded[k] for k in ("cursor", "full_cursor", "updated_at")}),
                 values)


@dataclass
class SyncReport:
    source: str
    run_id: int
    kind: str
    counts: Counts
    duration_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = {"source": self.source, "run": self.run_id, "kind": self.kind, **self.counts.as_dict(),
               "duration_s": round(self.duration_s, 3)}
        out.update(self.extra)
        return out


# Young collections while a sync runs: every 200,000 allocations instead of Python's 700. Each one walks
# every young object still alive (the records and rows of the pages being written); run less often,
# most of them are freed before it comes. bench/sync_bitrix24.py's first sync of 133,201 records ran 9-10
# young collections costing 0.10-0.24 CPU-s at 50,000 and one costing 0.01-0.03 at 200,000; its peak
# memory followed the machine's load, not the setting.
SYNC_GC_THRESHOLD = (200_000, 20, 20)
_collector_lock = threading.Lock()
_collector_users = 0
_collector_saved: tuple[int, int, int] | None = None


@contextlib.contextmanager
def bulk_collector() -> Iterator[None]:
    """Python's cyclic garbage collector set for a bulk run, and put back when the last such run ends.

    A sync allocates millions of short-lived objects (decoded rows, records,
    row dicts) that reference counting frees at once; the cyclic collector
    still walks every object that outlives a young collection, and each full
    pass walks everything the process holds (modules, phone number metadata,
    caches): a quarter of a first sync's CPU time, measured. While a run lasts,
    what existed before it is frozen (gc.freeze: left out of every pass) and
    young collections come less often; cycles made during the run are still
    collected. Runs in several threads share one setting: the first sets it,
    the last puts it back.
    """
    global _collector_users, _collector_saved
    with _collector_lock:
        if _collector_users == 0:
            _collector_saved = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(*SYNC_GC_THRESHOLD)
        _collector_users += 1
    try:
        yield
    finally:
        with _collector_lock:
            _collector_users -= 1
            if _collector_users == 0:
                if _collector_saved is not None:
                    gc.set_threshold(*_collector_saved)
                gc.unfreeze()


@bulk_collector()
def run(
    engine: Engine,
    settings: Settings,
    source_name: str,
    *,
    full: bool = False,
    source: Source | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> SyncReport:
    """Sync one source: a full read when asked or never synced, else from the stored cursors.

    The source is read by a thread of its own (hub.readahead) while this one
    writes, entity after entity: the next pages, and the next entity's, are
    on their way while a page is stored, so a sync takes about the longer of
    reading and writing rather than their sum.
    """
    if source is None:
        source = _source(settings, source_name)
    started = time.monotonic()
    counts = Counts()
    run_id, interrupted = begin_run(engine, source_name, "full" if full else "incremental", tz=settings.tz)
    try:
        steps = _steps(engine, source, source_name, full)
        if not full and any(step.full for step in steps):
            # Recorded as "incremental" when asked for changes only; a never-synced entity is read in
            # full all the same (the first sync of a source), and the history must say so.
            with engine.begin() as conn:
                conn.execute(update(runs_t).where(runs_t.c.id == run_id).values(kind="full"))
        with ReadAhead(lambda: _read(source, steps), weight=_weight, in_memory=READ_AHEAD_RECORDS,
                       name=f"hub-sync-{source_name}") as read:
            for index, item in read:
                step = steps[index]
                if isinstance(item, Page):
                    _write(engine, settings, source_name, step, item, counts, run_id)
                    if progress:
                        progress(step.entity, len(item.records))
                elif isinstance(item, _Begin):
                    step.stats_writes = _stats_writes(counts)
                    if progress:  # shown before the first page: a source that does not answer is seen waiting
                        progress(step.entity, 0)
                    if item.state is not None:
                        _begin_full(engine, source_name, step, item.state)
                else:
                    _end(engine, source_name, step, counts)
    except Exception as exc:
        message = _describe(exc)
        finish_run(engine, run_id, counts, error=message)
        wrote = counts.as_dict() != Counts().as_dict()
        if wrote:  # the reason's own full stop would sit before the semicolon
            raise SyncError(_("sync %(source)s failed: %(error)s; the next run resumes from the last saved page",
                              source=source_name, error=message.rstrip("."))) from exc
        raise SyncError(_("sync %(source)s failed: %(error)s", source=source_name, error=message)) from exc
    except BaseException:  # Ctrl-C, a worker told to stop: say so now rather than at the next run
        _interrupted(engine, run_id, counts, "stopped before it finished")
        raise
    finish_run(engine, run_id, counts)
    kind = "full" if full or any(step.full for step in steps) else "incremental"
    extra = dict(getattr(source, "stats", lambda: {})())
    if interrupted:
        extra["interrupted"] = interrupted
    return SyncReport(source_name, run_id, kind, counts, time.monotonic() - started, extra)


@dataclass
class _Step:
    """One entity of a run: read in full (from `state`, a full pass under way) or from `cursor`."""

    entity: str
    full: bool
    cursor: str | None
    state: dict[str, Any] | None  # a full pass: {"page": resume point, "then": the cursor after it}
    resumed: bool = False  # a full pass an earlier run began
    stats_writes: int = 0  # _stats_writes(counts) when this run reached the entity


@dataclass
class _Begin:
    """What the reader hands over before an entity's pages: the state of a full pass it starts, if it does."""

    state: dict[str, Any] | None


_END = "end"  # what the reader hands over after an entity's pages


def _steps(engine: Engine, source: Source, source_name: str, full: bool) -> list[_Step]:
    """Each entity's stored cursor, read before anything runs: writing one entity never changes another's."""
    steps = []
    with engine.connect() as conn:
        for entity in source.entities():
            cursor, full_state = _load_state(conn, source_name, entity)
            steps.append(_Step(entity, full or cursor is None or full_state is not None, cursor, full_state,
                               resumed=full_state is not None))
    return steps


def _read(source: Source, steps: Sequence[_Step]) -> Iterator[tuple[int, Page | _Begin | str]]:
    """Every entity's pages in order, each framed by a _Begin and _END (runs in the reader thread).

    Items name their step by its place in `steps` (what waits in the spool is a pickled copy; the
    writer keeps the steps themselves), and the reader only reads the steps as they were at the start.
    """
    for index, step in enumerate(steps):
        if not step.full:
            yield index, _Begin(None)
            yield from ((index, page) for page in source.read(step.entity, step.cursor, False))
        elif step.state is not None:  # a full pass under way: resumed after its last stored page
            yield index, _Begin(None)
            yield from ((index, page) for page in source.read(step.entity, step.state["page"], True))
        else:
            # Taken before reading, so changes made during a long full sync are
            # picked up by the next incremental run.
            yield index, _Begin({"page": None, "then": source.checkpoint(step.entity)})
            yield from ((index, page) for page in source.read(step.entity, None, True))
        yield index, _END


def _weight(item: tuple[int, Page | _Begin | str]) -> int:
    return len(item[1].records) if isinstance(item[1], Page) else 0


def _begin_full(engine: Engine, source_name: str, step: _Step, state: dict[str, Any]) -> None:
    """Record that a full pass of the entity started, so a run killed in it resumes the pass."""
    step.state = state
    with engine.begin() as conn:
        previous, _full = _load_state(conn, source_name, step.entity)
        _save_state(conn, source_name, step.entity, cursor=previous, full=state)


def _write(engine: Engine, settings: Settings, source_name: str, step: _Step, page: Page, counts: Counts,
           run_id: int) -> None:
    """One page and the point to resume after it, in one transaction."""
    with engine.begin() as conn:
        if step.full:
            assert step.state is not None
            step.state = {"page": page.cursor, "then": step.state["then"]}
            write_page(conn, page.records, settings, counts, order_stats=False)
            _save_state(conn, source_name, step.entity, cursor=None, full=step.state)
        else:
            write_page(conn, page.records, settings, counts)
            if page.cursor is not None:
                step.cursor = page.cursor
            _save_state(conn, source_name, step.entity, cursor=step.cursor, full=None)
        heartbeat(conn, run_id)
    keep_statistics(engine, counts)


def _stats_writes(counts: Counts) -> int:
    """Writes so far that can change contacts' and companies' order stats (orders, and whom they belong to)."""
    return (sum(counts.contacts[k] for k in ("created", "updated", "deleted", "merged"))
            + sum(counts.orders[k] for k in ("created", "updated", "deleted"))
            + sum(counts.companies[k] for k in ("created", "updated", "deleted")))


def _end(engine: Engine, source_name: str, step: _Step, counts: Counts) -> None:
    """A full pass done: the contacts' and companies' order stats, once for the whole source, and the cursor.

    The stats are recomputed after a pass that wrote contacts, orders or
    companies, and after one an earlier run began (killed and resumed: what
    it wrote then is not in this run's counts); a pass of custom fields or of
    calls changes none of them, and recomputing every contact of the source
    for nothing is most of what such a pass costs.
    """
    if not step.full:
        return
    assert step.state is not None
    with engine.begin() as conn:
        if step.resumed or _stats_writes(counts) != step.stats_writes:
            identity.refresh_source_stats(conn, source_name)
            companies.refresh_source_stats(conn, source_name)
        _save_state(conn, source_name, step.entity, cursor=step.state["then"] or "", full=None)


def _source(settings: Settings, source_name: str) -> Source:
    factories = sources()
    if source_name not in factories:
        known = ", ".join(sorted(factories)) or _("none installed")
        raise SyncError(_("unknown source %(source)r (available: %(known)s)", source=source_name, known=known))
    return factories[source_name](settings)


def fetch(engine: Engine, settings: Settings, source_name: str, entity: str, ids: Sequence[str], *,
          source: Any = None) -> SyncReport:
    """Read chosen records again (after a webhook event) and write them; ids the source no
    longer has are recorded as deleted, so an add, update and delete arriving in any order
    end in the source's current state."""
    source = source or _source(settings, source_name)
    kind = ENTITY_KIND.get(entity)
    if kind is None:
        raise SyncError(_("%(source)s: unknown entity %(entity)r (expected one of %(known)s)", source=source_name,
                          entity=entity, known=", ".join(ENTITY_KIND)))
    started = time.monotonic()
    counts = Counts()
    run_id = start_run(engine, source_name, "event")
    wanted = list(dict.fromkeys(str(i) for i in ids))
    try:
        records = list(source.fetch(entity, wanted))
        found = {r.external_id for r in records if not isinstance(r, Deletion)}
        records += [Deletion(source_name, kind, i) for i in wanted if i not in found]
        with engine.begin() as conn:
            write_page(conn, records, settings, counts)
    except Exception as exc:
        finish_run(engine, run_id, counts, error=_describe(exc))
        raise SyncError(_("%(source)s: fetching %(entity)s %(ids)s failed: %(error)s", source=source_name,
                          entity=entity, ids=", ".join(wanted[:10]), error=_describe(exc))) from exc
    finish_run(engine, run_id, counts)
    return SyncReport(source_name, run_id, "event", counts, time.monotonic() - started,
                      dict(getattr(source, "stats", lambda: {})()))


def reconcile(engine: Engine, settings: Settings, source_name: str, *, source: Any = None,
              entities: Sequence[str] | None = None) -> SyncReport:
    """Mark as deleted whatever Hub holds from a source that the source no longer lists.

    Events can be lost (Bitrix24 never retries them), so a periodic pass over
    the bare ids is what makes deletions certain. A source that suddenly lists
    nothing at all is refused rather than believed: that is a lost permission,
    not an empty CRM.
    """
    source = source or _source(settings, source_name)
    started = time.monotonic()
    counts = Counts()
    run_id = start_run(engine, source_name, "reconcile", tz=settings.tz)
    try:
        for entity in entities or source.entities():
            if entity not in ENTITY_KIND:
                continue  # field definitions are read whole each sync: nothing of theirs to reconcile
            kind = ENTITY_KIND[entity]
            live: set[str] = set()
            for batch in source.live_ids(entity):
                live.update(str(i) for i in batch)
            with engine.connect() as conn:
                held = _held_ids(conn, source_name, kind)
            gone = sorted(held - live)
            if gone and not live:
                raise SyncError(_("%(source)s lists no %(entity)s at all while Hub holds %(held)s; not marking "
                                  "them deleted (check the connection's permissions)", source=source_name,
                                  entity=entity, held=len(held)))
            for part in chunks(gone, CHUNK):
                with engine.begin() as conn:
                    write_deletions(conn, [Deletion(source_name, kind, i) for i in part], counts)
    except Exception as exc:
        finish_run(engine, run_id, counts, error=_describe(exc))
        if isinstance(exc, SyncError):
            raise
        raise SyncError(_("%(source)s: reconcile failed: %(error)s", source=source_name,
                          error=_describe(exc))) from exc
    finish_run(engine, run_id, counts)
    return SyncReport(source_name, run_id, "reconcile", counts, time.monotonic() - started,
                      dict(getattr(source, "stats", lambda: {})()))


def _held_ids(conn: Connection, source_name: str, kind: str) -> set[str]:
    if kind == "company":
        return companies.held_ids(conn, source_name)
    if kind == "activity":
        return activities.held_ids(conn, source_name)
    if kind == "order":
        q = select(orders_t.c.external_id).where(orders_t.c.source == source_name)
    else:
        q = select(refs_t.c.external_id).where(refs_t.c.source == source_name, refs_t.c.deleted_at.is_(None))
    return {row[0] for row in conn.execute(q)}


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]


def last_runs(conn: Connection, limit: int = 20) -> list[dict[str, Any]]:
    rows = conn.execute(select(runs_t).order_by(runs_t.c.id.desc()).limit(limit))
    return [dict(r._mapping) for r in rows]


def contact_external_ids(conn: Connection, contact_id: int) -> list[tuple[str, str]]:
    rows = conn.execute(select(refs_t.c.source, refs_t.c.external_id).where(
        and_(refs_t.c.contact_id == contact_id, refs_t.c.deleted_at.is_(None))))
    return [(s, e) for s, e in rows]
