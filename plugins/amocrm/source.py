"""amoCRM as a Hub source: custom fields, companies, contacts, leads, calls and tasks in; fields, tags, notes
and tasks out.

Cursors.

- A full read orders by id and walks numbered pages, several in flight at
  once (the client keeps the 7/s limit); its cursor is the last page stored,
  so a killed run resumes on the page after it. Orders are leads first, then
  Customers purchases when the account uses them ("leads:N",
  "transactions:N").
- An incremental read asks for what changed in [since - overlap, now],
  oldest first, by keyset: each next request starts at the last page's
  latest `updated_at` (one second earlier, skipping ids already handed over),
  so records changing while it runs cannot shift a page and hide another
  record. The contacts pass also reads the events list for deletions
  (contact_deleted, lead_deleted and company_deleted, in one request when
  nothing was deleted). The cursor moves to `now` only when everything up to
  it is stored.
- Custom field definitions are read whole every run (three short lists).
- A lead's time in its stage comes from lead_status_changed events into open
  statuses: a full read takes the log once before the leads; an incremental
  one the window's events, and for an open lead edited without moving, its
  own latest move (10 leads a request).
- Activities are call notes (call_in / call_out) and tasks of contacts,
  companies and leads, list after list ("contact_calls:N" ... "lead_tasks:N"
  in a full read; changed ones by `updated_at` otherwise, where one tasks
  list covers every entity type). Most calls are logged on a lead: those
  name the lead and reach its main contact (hub.activities).

A hundred changed contacts cost eight requests: one page of contacts, one of
events, one of leads (204 when none changed), and one each for changed
companies, calls of contacts, calls of companies, calls of leads and tasks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Sequence
from urllib.parse import urlsplit

from hub.api import (
    ActivityRecord, CompanyRecord, ContactRecord, Deletion, FieldDefinition, OrderRecord, Page, Settings,
    WriteBackError, get_engine, limiter,
)
from hub.api import whole_number, without_nul
from plugins.amocrm import erase, mapping, promo, tokens
from plugins.amocrm.client import (
    DEFAULT_CONCURRENCY, DEFAULT_PAUSE_429, DEFAULT_RATE, MAX_EVENTS_PAGE, MAX_PAGE, MAX_PATCH, PACE_SHARE, WINDOW_S,
    AmoClient, AmoError, AmoOutcomeUnknown, AmoPaymentRequired, AmoValidationError, SendWindow, StaticAuth,
)

DEFAULT_OVERLAP_S = 120
CUSTOMER_MODES = ("segments", "periodicity", "dynamic")  # account.customers_mode values with Customers on
Record = ContactRecord | OrderRecord | Deletion | CompanyRecord | ActivityRecord | FieldDefinition
MAX_FIELDS_PAGE = 50  # custom field definitions a page
MAX_EVENT_IDS = 10  # entity ids one events request may filter by
FIELDS_EVERY_S = 3600  # an incremental run reads the field definitions again when they are this old
# Where calls and tasks are read, in order: (cursor phase, path, filters, key of the list).
ACTIVITY_LISTS: tuple[tuple[str, str, tuple[tuple[str, str], ...], str], ...] = (
    ("contact_calls", "/api/v4/contacts/notes", (("filter[note_type][]", "call_in"),
                                                 ("filter[note_type][]", "call_out")), "notes"),
    ("company_calls", "/api/v4/companies/notes", (("filter[note_type][]", "call_in"),
                                                  ("filter[note_type][]", "call_out")), "notes"),
    ("contact_tasks", "/api/v4/tasks", (("filter[entity_type]", "contacts"),), "tasks"),
    ("company_tasks", "/api/v4/tasks", (("filter[entity_type]", "companies"),), "tasks"),
    # Those logged on leads, last: a cursor stored before they were read stays valid.
    ("lead_calls", "/api/v4/leads/notes", (("filter[note_type][]", "call_in"),
                                           ("filter[note_type][]", "call_out")), "notes"),
    ("lead_tasks", "/api/v4/tasks", (("filter[entity_type]", "leads"),), "tasks"),
)
MAX_PROBLEMS = 200
# Contacts in one PATCH of fields (scores, stages pushed on change): 250, as many as a page holds. amoCRM
# documents no size for a write; an account that refuses it (TooManyElements; nothing of the batch is
# written) gets the batch again in fifties, the size other writes use, and fifties from then on.
MAX_FIELD_PATCH = 250
_field_batches: dict[str, int] = {}  # account host -> contacts a PATCH of fields it takes


# Places a request that left late may take back from the shared bucket, in one process. The bucket
# spaces requests evenly; one that waited for the GIL or the CPU would otherwise lose its turn for
# good, and over a long sync those lost turns add up to a tenth of its time. Catching up cannot
# break amoCRM's limit: the process's SendWindow still lets at most 7 leave in any WINDOW_S. With
# Redis the bucket is shared by processes whose windows do not see each other, so it stays strict.
CATCH_UP = 3


def client_for(settings: Settings, data: dict[str, Any] | None = None) -> AmoClient:
    """A client for the stored connection (or for `data`), with the shared limiter and token keeper."""
    engine = get_engine(settings.database_url)
    if data is None:
        data, _ = tokens.load(engine, settings)
    options = tokens.plugin_settings(settings)
    host = urlsplit(data["base_url"]).netloc
    rate = float(options.get("rate", DEFAULT_RATE)) * PACE_SHARE
    bucket = limiter(settings, f"amocrm:{host}", rate, 1 if settings.redis_url else CATCH_UP)
    auth: Any
    if data.get("kind") == "oauth":
        auth = tokens.TokenKeeper(engine, settings, data, limiter=bucket)
    else:
        auth = StaticAuth(data["access_token"])
    return AmoClient(data["base_url"], auth, bucket,
                     window=_window(host, int(float(options.get("rate", DEFAULT_RATE)))),
                     concurrency=int(options.get("concurrency", DEFAULT_CONCURRENCY)),
                     pause_429=float(options.get("pause_429_s", DEFAULT_PAUSE_429)))


_windows: dict[tuple[str, int], SendWindow] = {}
_windows_lock = threading.Lock()


def _window(host: str, limit: int) -> SendWindow:
    """One window per account in this process, shared by every client and thread."""
    with _windows_lock:
        return _windows.setdefault((host, limit), SendWindow(max(1, limit), WINDOW_S))


class AmoSource:
    name = "amocrm"

    def __init__(self, settings: Settings, client: AmoClient | None = None, account: dict[str, Any] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.options = tokens.plugin_settings(settings)
        self._client = client
        self._account = account
        self._clock = clock
        self.overlap = int(self.options.get("overlap_s", DEFAULT_OVERLAP_S))
        self.fields: dict[str, Any] = dict(self.options.get("fields") or {})
        self.notes: list[str] = []
        self.problems: list[mapping.Problem] = []
        # Read in this run before the records that use them: attribute keys of custom fields by
        # entity (field id -> key), company names for contacts, the pipelines for stage names.
        self._keys: dict[str, dict[str, str]] = {}
        self._company_names: dict[str, str] = {}
        self._pipelines: mapping.Pipelines | None = None
        self._moves: dict[str, tuple[str, str, dt.datetime]] = {}  # see _status_moves
        self._window_read = False

    @property
    def client(self) -> AmoClient:
        if self._client is None:
            engine = get_engine(self.settings.database_url)
            data, _ = tokens.load(engine, self.settings)
            self._account = self._account if self._account is not None else dict(data.get("account") or {})
            self._client = client_for(self.settings, data)
        return self._client

    @property
    def account(self) -> dict[str, Any]:
        if self._account is None:
            _ = self.client  # loads the stored account details
        return self._account or {}

    @property
    def currency(self) -> str:
        return str(self.options.get("currency") or self.account.get("currency") or "RUB")

    @property
    def uses_customers(self) -> bool:
        setting = self.options.get("customers")
        if setting is not None:
            return bool(setting)
        return self.account.get("customers_mode") in CUSTOMER_MODES

    # --- the Source protocol ----------------------------------------------------------

    def entities(self) -> tuple[str, ...]:
        return ("fields", "companies", "contacts", "orders", "activities")

    def checkpoint(self, entity: str) -> str:
        now = int(self._clock())
        return json.dumps({"since": now, "events": now} if entity == "contacts" else {"since": now})

    def read(self, entity: str, cursor: str | None, full: bool) -> Iterator[Page]:
        if entity not in self.entities():
            raise ValueError(f"amoCRM: unknown entity {entity!r} (expected one of {', '.join(self.entities())})")
        if entity == "fields":
            yield from self._fields(full, cursor)
            return
        if entity == "companies":
            yield from self._read_companies(cursor, full)
            return
        if entity == "activities":
            yield from self._read_activities(cursor, full)
            return
        if full:
            yield from (self._full_contacts(cursor) if entity == "contacts" else self._full_orders(cursor))
            return
        state = json.loads(cursor) if cursor else {}
        now = int(self._clock())
        since = int(state.get("since") or 0)
        if entity == "contacts":
            events = int(state.get("events") or since)
            for rows, latest in self._changed("/api/v4/contacts", [("with", "leads")], "contacts", since, now):
                yield Page(self._contacts(rows), json.dumps({"since": max(since, latest), "events": events}))
            deleted = list(self._deletions(events, now))
            yield Page(deleted, json.dumps({"since": now, "events": now}))
            return
        window: tuple[int, int] = (max(0, since - self.overlap), now)
        for rows, latest in self._changed("/api/v4/leads", [("with", "contacts")], "leads", since, now):
            self._moves_for(rows, window)
            yield Page(self._leads(rows), json.dumps({"since": max(since, latest)}))
        if self.uses_customers:
            yield from self._changed_purchases(since, now)
        yield Page([], json.dumps({"since": now}))

    def _full_contacts(self, cursor: str | None) -> Iterator[Page]:
        start = int(cursor) + 1 if cursor else 1
        for number, rows in self.client.pages("/api/v4/contacts", [("with", "leads"), ("order[id]", "asc")],
                                              "contacts", start=start):
            yield Page(self._contacts(rows), str(number))

    def _full_orders(self, cursor: str | None) -> Iterator[Page]:
        phase, _, reached = (cursor or "leads:0").partition(":")
        start = int(reached or 0) + 1
        if phase == "leads":
            self._moves = self._status_moves()
            for number, rows in self.client.pages("/api/v4/leads", [("with", "contacts"), ("order[id]", "asc")],
                                                  "leads", start=start):
                yield Page(self._leads(rows), f"leads:{number}")
            start = 1
        if not self.uses_customers:
            return
        try:
            for number, rows in self.client.pages("/api/v4/customers/transactions", [], "transactions", start=start):
                yield Page(self._transactions(rows), f"transactions:{number}")
        except AmoPaymentRequired:
            self._no_customers()

    def _no_customers(self) -> None:
        self.notes.append("Customers purchases skipped: the account's amoCRM plan does not include Customers "
                          "(HTTP 402)")

    def _changed(self, path: str, params: Sequence[tuple[str, Any]], key: str, since: int,
                 now: int) -> Iterator[tuple[list[dict[str, Any]], int]]:
        """Rows updated in [since - overlap, now], oldest first, by keyset; with the latest updated_at of each batch."""
        start = max(0, since - self.overlap)
        page = 1
        handed: set[Any] = set()
        while True:
            query = [*params, ("filter[updated_at][from]", start), ("filter[updated_at][to]", now),
                     ("order[updated_at]", "asc")]
            rows, more = self.client.list_page(path, query, key, page)
            fresh = [r for r in rows if r.get("id") not in handed]
            if fresh:
                yield fresh, max(int(r.get("updated_at") or 0) for r in fresh)
            if not more:
                return
            # Start again one second before the last row (inclusive or not, the
            # filter then returns everything after it); skip what was handed over.
            following = int(rows[-1].get("updated_at") or 0) - 1
            if following <= start:
                handed.update(r.get("id") for r in rows)
                page += 1
            else:
                start, page = following, 1
                handed = {r.get("id") for r in rows if int(r.get("updated_at") or 0) >= following}

    def _deletions(self, since: int, now: int) -> Iterator[Deletion]:
        query = [("filter[type]", "contact_deleted,lead_deleted,company_deleted"),
                 ("filter[created_at][from]", max(0, since - self.overlap)), ("filter[created_at][to]", now)]
        page = 1
        while True:
            rows, more = self.client.list_page("/api/v4/events", query, "events", page, MAX_EVENTS_PAGE)
            for event in rows:
                found = mapping.deletion(event)
                if found is not None:
                    yield found
            if not more:
                return
            page += 1

    def _changed_purchases(self, since: int, now: int) -> Iterator[Page]:
        """Purchases of customers changed since the cursor (a purchase updates its customer)."""
        try:
            for customers, latest in self._changed("/api/v4/customers", [("with", "contacts")], "customers",
                                                   since, now):
                contacts = {str(c["id"]): mapping.main_contact(c) for c in customers}
                records: list[Record] = []
                for customer_id in contacts:
                    for _, rows in self.client.pages(f"/api/v4/customers/{customer_id}/transactions", [],
                                                     "transactions"):
                        records += self._transactions(rows, contacts)
                yield Page(records, json.dumps({"since": max(since, latest)}))
        except AmoPaymentRequired:
            self._no_customers()

    # --- custom fields, companies, stages and activities -------------------------------

    def _fields(self, full: bool, cursor: str | None = None) -> Iterator[Page]:
        """Every custom field of contacts, companies and leads (three short lists), read whole.

        amoCRM cannot say which fields changed; an incremental run reads them again
        when the last read is an hour old, so a run every few minutes costs nothing here.
        """
        now = int(self._clock())
        if not full and now - int((json.loads(cursor) if cursor else {}).get("since") or 0) < FIELDS_EVERY_S:
            return
        records: list[Record] = []
        for entity in ("contacts", "companies", "leads"):
            rows = [row for _, page in self.client.pages(f"/api/v4/{entity}/custom_fields", [], "custom_fields",
                                                         limit=MAX_FIELDS_PAGE) for row in page]
            definitions, self._keys[entity] = mapping.field_definitions(rows, entity, self.problems, self.fields)
            records += [without_nul(d) for d in definitions]
        yield Page(records, "done" if full else json.dumps({"since": now}))

    def _read_companies(self, cursor: str | None, full: bool) -> Iterator[Page]:
        """Companies, as contacts are read (full: numbered pages; else changed ones by keyset).

        Deleted companies come with the contacts' deletion events (company_deleted).
        """
        if full:
            start = int(cursor) + 1 if cursor else 1
            for number, rows in self.client.pages("/api/v4/companies", [("order[id]", "asc")], "companies",
                                                  start=start):
                yield Page(self._companies(rows), str(number))
            return
        state = json.loads(cursor) if cursor else {}
        now = int(self._clock())
        since = int(state.get("since") or 0)
        for rows, latest in self._changed("/api/v4/companies", [], "companies", since, now):
            yield Page(self._companies(rows), json.dumps({"since": max(since, latest)}))
        yield Page([], json.dumps({"since": now}))

    @property
    def pipelines(self) -> mapping.Pipelines:
        """The account's pipelines and statuses, read once a run (one request)."""
        if self._pipelines is None:
            self._pipelines = mapping.Pipelines(self.client.get("/api/v4/leads/pipelines") or {})
        return self._pipelines

    def _status_moves(self, window: tuple[int, int] | None = None,
                      lead_ids: Sequence[str] = ()) -> dict[str, tuple[str, str, dt.datetime]]:
        """Lead id -> (pipeline, status, when) of its latest move into an open status.

        From lead_status_changed events (newest first, 100 a page), only those into
        open statuses (filter[value_after][leads_statuses]): a full read takes the
        whole log once, an incremental one the window, or the leads named.
        """
        open_statuses = self.pipelines.open_statuses()
        if not open_statuses:
            return {}
        query: list[tuple[str, Any]] = [("filter[type]", "lead_status_changed")]
        for index, (pipeline_id, status_id) in enumerate(open_statuses):
            query += [(f"filter[value_after][leads_statuses][{index}][pipeline_id]", pipeline_id),
                      (f"filter[value_after][leads_statuses][{index}][status_id]", status_id)]
        if window is not None:
            query += [("filter[created_at][from]", window[0]), ("filter[created_at][to]", window[1])]
        if lead_ids:
            # A comma-separated list, as the API documents it and its official library sends it (10 at most).
            query += [("filter[entity]", "lead"), ("filter[entity_id]", ",".join(str(i) for i in lead_ids))]
        moves: dict[str, tuple[str, str, dt.datetime]] = {}
        for _, rows in self.client.pages("/api/v4/events", query, "events", limit=MAX_EVENTS_PAGE):
            for event in rows:
                try:
                    move = mapping.status_change(event)
                except Exception as exc:  # noqa: BLE001 - one odd event must not stop the leads' read
                    self.problems.append(mapping.Problem("order", str(event.get("entity_id") if isinstance(
                        event, dict) else None), f"{type(exc).__name__}: {str(exc)[:300]}"))
                    continue
                if move is not None:
                    lead, pipeline_id, status_id, when = move
                    known = moves.get(lead)
                    if known is None or when > known[2]:
                        moves[lead] = (pipeline_id, status_id, when)
        return moves

    def _moves_for(self, rows: list[dict[str, Any]], window: tuple[int, int]) -> None:
        """Moves of these changed leads: the window's events, then, for an open lead that did not move
        in it (edited otherwise), its own latest move (10 leads a request), so its time in the stage holds."""
        open_rows = [r for r in rows if mapping.status(r.get("status_id")) == "open"]
        if not open_rows:
            return
        if not self._window_read:
            self._moves.update(self._status_moves(window))
            self._window_read = True
        missing = [str(r["id"]) for r in open_rows if not self._moved_into(r)]
        for start in range(0, len(missing), MAX_EVENT_IDS):
            self._moves.update(self._status_moves(lead_ids=missing[start:start + MAX_EVENT_IDS]))

    def _moved_into(self, row: dict[str, Any]) -> dt.datetime | None:
        """When the lead entered the pipeline and status it is in now, if an event says so."""
        move = self._moves.get(str(row.get("id")))
        if move is not None and (move[0], move[1]) == (str(row.get("pipeline_id")), str(row.get("status_id"))):
            return move[2]
        return None

    def _read_activities(self, cursor: str | None, full: bool) -> Iterator[Page]:
        """Calls (call_in / call_out notes) and tasks of contacts, companies and leads, list by list.

        Full: numbered pages by id, the cursor "phase:page". Incremental: what was
        updated in [since - overlap, now]; the cursor moves to `now` once every list is read.
        """
        if full:
            phase, _, reached = (cursor or f"{ACTIVITY_LISTS[0][0]}:0").partition(":")
            names = [name for name, *_ in ACTIVITY_LISTS]
            position = names.index(phase) if phase in names else 0
            for index, (name, path, filters, key) in enumerate(ACTIVITY_LISTS[position:], position):
                start = int(reached or 0) + 1 if index == position else 1
                for number, rows in self.client.pages(path, [*filters, ("order[id]", "asc")], key, start=start):
                    yield Page(self._activities(rows, path), f"{name}:{number}")
            return
        state = json.loads(cursor) if cursor else {}
        now = int(self._clock())
        since = int(state.get("since") or 0)
        window = [("filter[updated_at][from]", max(0, since - self.overlap)), ("filter[updated_at][to]", now)]
        # Changed tasks in one list, whatever they are on (a window holds few; a customer's is dropped in
        # mapping); the notes are a list per entity type.
        lists = [entry for entry in ACTIVITY_LISTS if entry[1] != "/api/v4/tasks"] + [
            ("tasks", "/api/v4/tasks", (), "tasks")]
        for _name, path, filters, key in lists:
            for _, rows in self.client.pages(path, [*filters, *window, ("order[id]", "asc")], key):
                yield Page(self._activities(rows, path), json.dumps({"since": since}))
        yield Page([], json.dumps({"since": now}))

    def _activities(self, rows: Iterable[dict[str, Any]], path: str) -> list[Record]:
        if path.endswith("/notes"):
            entity = path.split("/")[3]
            return self._each("activity", rows, lambda r: mapping.call_note(r, entity))
        return self._each("activity", rows, mapping.task)

    def _companies(self, rows: Iterable[dict[str, Any]]) -> list[Record]:
        records = self._each("company", rows, lambda r: mapping.company(r, self.problems, self._keys.get("companies")))
        self._company_names.update({r.external_id: r.name for r in records if r.name})
        return records

    # --- targeted reads and the reconcile ----------------------------------------------

    def fetch(self, entity: str, ids: Sequence[str]) -> list[Record]:
        """The contacts, companies or leads with these ids (250 per request); missing ones are simply absent."""
        if entity not in ("contacts", "companies", "orders"):
            raise ValueError(f"amoCRM: reading {entity} by id is not supported (contacts, companies or orders)")
        path, key, extra = (("/api/v4/contacts", "contacts", ("with", "leads")) if entity == "contacts"
                            else ("/api/v4/companies", "companies", ("with", "contacts")) if entity == "companies"
                            else ("/api/v4/leads", "leads", ("with", "contacts")))
        wanted = []
        for i in ids:
            number = whole_number(str(i))
            if number is None:
                raise ValueError(f"amoCRM: {entity} id {i!r} is not a number")
            wanted.append(number)
        records: list[Record] = []
        for start in range(0, len(wanted), MAX_PAGE):
            part = wanted[start:start + MAX_PAGE]
            query = [extra, *(("filter[id][]", i) for i in part)]
            rows, _ = self.client.list_page(path, query, key, 1)
            records += (self._contacts(rows) if entity == "contacts" else self._companies(rows)
                        if entity == "companies" else self._leads(rows))
        return records

    def live_ids(self, entity: str) -> Iterator[list[str]]:
        if entity == "fields":  # definitions are read whole every time; nothing to reconcile
            return
        if entity == "activities":
            for _name, path, filters, key in ACTIVITY_LISTS:
                prefix = mapping.NOTE_PREFIX if path.endswith("/notes") else mapping.TASK_PREFIX
                for _, rows in self.client.pages(path, [*filters, ("order[id]", "asc")], key):
                    yield [prefix + str(r["id"]) for r in rows]
            return
        if entity in ("contacts", "companies"):
            for _, rows in self.client.pages(f"/api/v4/{entity}", [("order[id]", "asc")], entity):
                yield [str(r["id"]) for r in rows]
            return
        for _, rows in self.client.pages("/api/v4/leads", [("order[id]", "asc")], "leads"):
            yield [str(r["id"]) for r in rows]
        if self.uses_customers:
            try:
                for _, rows in self.client.pages("/api/v4/customers/transactions", [], "transactions"):
                    yield [mapping.TRANSACTION_PREFIX + str(r["id"]) for r in rows if not r.get("is_deleted")]
            except AmoPaymentRequired:
                self._no_customers()

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"requests": 0, "rate_limited": 0, "retries": 0, "refreshes": 0}
        if self._client is not None:
            out.update(self._client.stats.as_dict())
            out["refreshes"] = int(getattr(self._client.auth, "refreshes", 0))
        if self.notes:
            out["notes"] = list(dict.fromkeys(self.notes))
        if self.problems:
            out["problems"] = [p.as_dict() for p in self.problems[:MAX_PROBLEMS]]
        return out

    # --- mapping, one record at a time -------------------------------------------------

    def _each(self, entity: str, rows: Iterable[dict[str, Any]], make: Callable[[dict[str, Any]], Any]) -> list[Any]:
        out = []
        for row in rows:
            try:
                record = make(row)
            except Exception as exc:  # noqa: BLE001 - one odd record must not stop the page
                self.problems.append(mapping.Problem(entity, str(row.get("id")), f"{type(exc).__name__}: {exc}"))
                continue
            if record is not None:
                out.append(without_nul(record) if dataclasses.is_dataclass(record) else record)
        return out

    def _contacts(self, rows: Iterable[dict[str, Any]]) -> list[Record]:
        return self._each("contact", rows, lambda r: mapping.contact(r, self.fields, self.problems,
                                                                     keys=self._keys.get("contacts"),
                                                                     company_names=self._company_names))

    def _leads(self, rows: Iterable[dict[str, Any]]) -> list[Record]:
        _ = self.promo_reading  # a wrong promo setting stops the read, named, rather than failing every lead
        return self._each("order", rows, lambda r: self._promo(r, self._lead(r)))

    def _lead(self, row: dict[str, Any]) -> OrderRecord | None:
        return mapping.lead(row, self.currency, self.problems, pipelines=self.pipelines,
                            entered=self._moved_into(row), keys=self._keys.get("leads"))

    def _transactions(self, rows: list[dict[str, Any]],
                      contacts: dict[str, str | None] | None = None) -> list[Record]:
        if contacts is None:
            contacts = self._customer_contacts({str(r.get("customer_id") or
                                                    ((r.get("_embedded") or {}).get("customer") or {}).get("id"))
                                                for r in rows})
        return self._each("order", rows, lambda r: mapping.transaction(r, contacts, self.currency, self.problems))

    def _customer_contacts(self, customer_ids: set[str]) -> dict[str, str | None]:
        ids = sorted(i for i in customer_ids if i and i.isdigit())
        found: dict[str, str | None] = {}
        for start in range(0, len(ids), MAX_PAGE):
            query = [("with", "contacts"), *(("filter[id][]", i) for i in ids[start:start + MAX_PAGE])]
            rows, _ = self.client.list_page("/api/v4/customers", query, "customers", 1)
            found.update({str(c["id"]): mapping.main_contact(c) for c in rows})
        return found

    # --- promo codes on leads (plugins/amocrm/promo.py) --------------------------------------

    @property
    def promo_reading(self) -> tuple[int | None, str | None]:
        """(`promo_field` id, `promo_tag_prefix`); a wrong setting stops the sync with its name."""
        if self._promo_reading is None:
            self._promo_reading = promo.reading(self.options)
        return self._promo_reading

    _promo_reading: tuple[int | None, str | None] | None = None

    def _promo(self, row: dict[str, Any], record: OrderRecord | None) -> OrderRecord | None:
        """The lead's promo code from the field or a tag, when mapping did not find one."""
        if record is not None and not record.promo_code and any(self.promo_reading):
            record.promo_code = promo.lead_code(row, *self.promo_reading)
        return record

    # --- writing back ---------------------------------------------------------------------

    def _field_id(self, name: str) -> int:
        field_id = self.fields.get(name)
        number = whole_number(str(field_id)) if field_id is not None else None
        if number is None:
            raise WriteBackError(f"amoCRM: no custom field is configured for {name!r}; add its field id to hub.toml, "
                                 f"e.g. [amocrm] fields = {{{name} = 123456}}")
        return number

    def update_contacts(self, changes: Sequence[dict[str, Any]], batch_size: int = MAX_PATCH) -> list[str]:
        """PATCH contacts in batches (50, or up to 250 for fields); each change holds `id` and only what changes."""
        return self._update("/api/v4/contacts", "contacts", changes, batch_size)

    def _update(self, path: str, key: str, changes: Sequence[dict[str, Any]], batch_size: int, *,
                set_tags: bool = False) -> list[str]:
        """PATCH `changes`; what a GET answer echoes is dropped, `_embedded` too unless `set_tags` (then its
        `tags` alone are sent: the documented way to replace every tag of the record)."""
        done: list[str] = []
        start = 0
        while start < len(changes):
            batch = [dict(c) for c in changes[start:start + batch_size]]
            for c in batch:
                c["id"] = int(c["id"])
                embedded = c.get("_embedded")
                for echo in ("created_by", "updated_by", "created_at", "account_id", "_links", "_embedded"):
                    c.pop(echo, None)
                if set_tags and isinstance(embedded, dict) and "tags" in embedded:
                    c["_embedded"] = {"tags": embedded["tags"]}
            try:
                body = self.client.request("PATCH", path, json=batch)
            except AmoValidationError as exc:
                if len(batch) > MAX_PATCH and _too_many(exc):
                    batch_size = _field_batches[self.client.host] = MAX_PATCH
                    continue
                raise WriteBackError(str(exc)) from exc
            except AmoOutcomeUnknown as exc:
                raise WriteBackError(f"{exc}; check amoCRM before trying again") from exc
            except AmoError as exc:
                raise WriteBackError(str(exc)) from exc
            done += [str(c.get("id")) for c in ((body or {}).get("_embedded") or {}).get(key) or []]
            start += len(batch)
        return done

    def _changes(self, values: Sequence[tuple[str, str, Any]], *, strict: bool) -> list[dict[str, Any]]:
        """One change per contact; a name with no field id raises when `strict`, else is skipped."""
        changes: dict[str, dict[str, Any]] = {}
        for external_id, name, value in values:
            if not strict and self.fields.get(name) in (None, ""):
                continue  # not asked for in amoCRM; an id that is not a number is an error, below
            number = whole_number(str(external_id))
            if number is None:
                raise WriteBackError(f"amoCRM: contact id {external_id!r} is not a number")
            change = changes.setdefault(str(number), {"id": number, "custom_fields_values": []})
            change["custom_fields_values"].append(
                {"field_id": self._field_id(name), "values": None if value is None else [{"value": value}]})
        return list(changes.values())

    def pushes(self, name: str) -> bool:
        """Whether `hub crm push` should read `name` ("lead_score", "lifecycle") for this account at all.

        Only what `[amocrm] fields` maps to a field id: a shop that pushes nothing costs no query.
        """
        return self.fields.get(name) not in (None, "")

    def set_fields(self, values: Sequence[tuple[str, str, Any]]) -> list[str]:
        """(contact id, logical field name, value) triples, up to 250 contacts a PATCH (see MAX_FIELD_PATCH).

        Scores and lifecycle stages pushed on change come here: a logical name
        with no `[amocrm] fields` id is skipped (the shop did not ask for it in
        amoCRM), None empties the field. Each request waits its turn in the rate limiter.
        """
        changes = self._changes(values, strict=False)
        return self.update_contacts(changes, _field_batches.get(self.client.host, MAX_FIELD_PATCH)) if changes else []

    def set_field(self, external_id: str, name: str, value: Any) -> str | None:
        """Set a contact's custom field; logical names map through `[amocrm] fields` (promo_code = FIELD_ID).

        A promo code (the logical name promo_code, or `[workflows] promo_crm_field`)
        also goes to the contact's newest open lead when `[amocrm] lead_promo_field`
        is set; the note saying what it is worth is the workflows plugin's comment.
        """
        is_promo = self._is_promo(name) and isinstance(value, str) and bool(value.strip())
        lead_field = promo.lead_field(self.options) if is_promo else None  # a wrong setting refuses before writing
        done = self.update_contacts(self._changes([(external_id, name, value)], strict=True))
        if lead_field is not None:
            self._offer_on_lead(str(external_id), str(value).strip(), lead_field)
        return done[0] if done else str(external_id)

    def _is_promo(self, name: str) -> bool:
        workflows = self.settings.extra.get("workflows")
        named = workflows.get("promo_crm_field") if isinstance(workflows, dict) else None
        return name == "promo_code" or (isinstance(named, str) and name == named.strip())

    def _offer_on_lead(self, external_id: str, code: str, lead_field: int) -> None:
        lead_id = self._newest_open_lead(external_id)
        if lead_id is not None:
            self._update("/api/v4/leads", "leads", [{"id": lead_id, "custom_fields_values": [
                {"field_id": lead_field, "values": [{"value": code}]}]}], MAX_PATCH)

    def _newest_open_lead(self, external_id: str) -> int | None:
        try:
            contact = self.client.get(f"/api/v4/contacts/{int(external_id)}", [("with", "leads")])
            ids = [int(lead["id"]) for lead in ((contact or {}).get("_embedded") or {}).get("leads") or []
                   if whole_number(str(lead.get("id"))) is not None]
            rows: list[dict[str, Any]] = []
            for start in range(0, len(ids), MAX_PAGE):
                query = [("filter[id][]", i) for i in ids[start:start + MAX_PAGE]]
                page, _ = self.client.list_page("/api/v4/leads", query, "leads", 1)
                rows += page
        except AmoError as exc:
            raise WriteBackError(str(exc)) from exc
        open_ = [r for r in rows if mapping.status(r.get("status_id")) == "open"]
        newest = max(open_, key=lambda r: (int(r.get("created_at") or 0), int(r["id"])), default=None)
        return int(newest["id"]) if newest is not None else None

    def add_tags(self, external_id: str, names: Sequence[str]) -> str | None:
        done = self.update_contacts([{"id": int(external_id), "tags_to_add": [{"name": n} for n in names]}])
        return done[0] if done else str(external_id)

    def _post(self, path: str, payload: list[dict[str, Any]], key: str) -> str | None:
        try:
            body = self.client.request("POST", path, json=payload)
        except AmoOutcomeUnknown as exc:
            raise WriteBackError(f"{exc}; check amoCRM before trying again") from exc
        except AmoError as exc:
            raise WriteBackError(str(exc)) from exc
        made = ((body or {}).get("_embedded") or {}).get(key) or []
        return str(made[0]["id"]) if made and made[0].get("id") is not None else None

    def add_comment(self, external_id: str, text: str) -> str | None:
        """A common note on the contact (an NPS answer, a promo code); amoCRM refuses a blank one."""
        if not isinstance(text, str) or not text.strip():
            raise WriteBackError("amoCRM: a note needs some text")
        return self._post(f"/api/v4/contacts/{self._contact_id(external_id)}/notes",
                          [{"note_type": "common", "params": {"text": text}}], "notes")

    def add_task(self, external_id: str, title: str, *, due_at: dt.datetime, description: str = "",
                 responsible_id: str | None = None) -> str | None:
        """A task on the contact for its responsible user (a call by default; `[amocrm] task_type_id`).

        `responsible_id` is the manager the last sync read; without it one GET finds them.
        """
        contact_id = self._contact_id(external_id)
        task: dict[str, Any] = {"text": f"{title}\n{description}".strip(), "complete_till": int(due_at.timestamp()),
                                "entity_id": contact_id, "entity_type": "contacts",
                                "task_type_id": int(self.options.get("task_type_id", 1))}
        manager = whole_number(str(responsible_id)) if responsible_id not in (None, "") else None
        if manager is None:
            try:
                owner = self.client.get(f"/api/v4/contacts/{contact_id}")
            except AmoError as exc:
                raise WriteBackError(str(exc)) from exc
            if owner and owner.get("responsible_user_id"):
                manager = int(owner["responsible_user_id"])
        if manager:
            task["responsible_user_id"] = manager
        return self._post("/api/v4/tasks", [task], "tasks")

    def erase_contact(self, external_id: str) -> str:
        """Anonymise the contact (amoCRM's API cannot delete one): see plugins/amocrm/erase.py.

        "anonymised" (its call notes emptied too), "anonymised; call notes kept" when amoCRM
        would not edit some call note, or "gone" when amoCRM no longer holds it; raises
        WriteBackError with amoCRM's message when it refuses.
        """
        contact_id = self._contact_id(external_id)
        name, tag = erase.placeholder(self.settings, self.options)
        try:
            contact = self.client.get(f"/api/v4/contacts/{contact_id}", params=[("with", "leads")])
        except AmoError as exc:
            if exc.status == 404:
                return "gone"
            raise WriteBackError(str(exc)) from exc
        if not contact or not contact.get("id"):
            return "gone"  # amoCRM answers 204 for a contact that is not there
        phones = erase.phone_keys(contact)
        self._update("/api/v4/contacts", "contacts", [erase.anonymised(contact, name, tag)], 1, set_tags=True)
        kept = self._clear_calls("contacts", contact_id)
        for lead_id in erase.lead_ids(contact):
            kept += self._clear_calls("leads", lead_id, phones=phones)
        return erase.CALLS_KEPT if kept else "anonymised"

    def _clear_calls(self, entity: str, entity_id: int, *, phones: frozenset[str] | None = None) -> int:
        """Empty the phone, result text and recording link of call notes (see erase.py): all of a contact's,
        and of a lead's those made to one of `phones`; how many notes amoCRM would not edit."""
        path = f"/api/v4/{entity}/{entity_id}/notes"
        query = [("filter[note_type][]", kind) for kind in erase.CALL_NOTES]
        try:
            changes = [change for _, rows in self.client.pages(path, query, "notes")
                       for change in (erase.cleared_call(row) for row in rows
                                      if phones is None or erase.called(row, phones)) if change is not None]
        except AmoError as exc:
            raise WriteBackError(str(exc)) from exc
        kept = 0
        for start in range(0, len(changes), erase.MAX_NOTES_PATCH):
            batch = changes[start:start + erase.MAX_NOTES_PATCH]
            try:
                self._edit_notes(entity, batch)
            except WriteBackError:
                if len(batch) == 1:
                    kept += 1
                    continue
                for change in batch:  # amoCRM refuses a batch whole: find the notes it will not take
                    try:
                        self._edit_notes(entity, [change])
                    except WriteBackError:
                        kept += 1
        return kept

    def _edit_notes(self, entity: str, batch: list[dict[str, Any]]) -> None:
        try:
            body = self.client.request("PATCH", f"/api/v4/{entity}/notes", json=batch)
        except AmoOutcomeUnknown as exc:
            raise WriteBackError(f"{exc}; check amoCRM before trying again") from exc
        except AmoError as exc:
            raise WriteBackError(str(exc)) from exc
        edited = {str(n.get("id")) for n in ((body or {}).get("_embedded") or {}).get("notes") or []
                  if isinstance(n, dict)}
        if not {str(c["id"]) for c in batch} <= edited:
            raise WriteBackError("amoCRM: some call notes were not edited")

    @staticmethod
    def _contact_id(external_id: str) -> int:
        number = whole_number(str(external_id))
        if number is None:
            raise WriteBackError(f"amoCRM: contact id {external_id!r} is not a number")
        return number


def _too_many(exc: AmoValidationError) -> bool:
    """amoCRM refused the batch for its size (and so wrote none of it)."""
    return any(isinstance(error, dict) and error.get("code") == "TooManyElements"
               for item in exc.errors if isinstance(item, dict) for error in item.get("errors") or [])
