"""amoCRM as a Hub source: contacts and leads in; fields, tags, notes and tasks out.

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
  (contact_deleted and lead_deleted, in one request when nothing was
  deleted). The cursor moves to `now` only when everything up to it is stored.

A hundred changed contacts cost three requests: one page of contacts, one of
events, one of leads (204 when none changed).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Sequence
from urllib.parse import urlsplit

from hub.api import ContactRecord, Deletion, OrderRecord, Page, Settings, WriteBackError, get_engine, limiter
from hub.api import whole_number
from plugins.amocrm import mapping, tokens
from plugins.amocrm.client import (
    DEFAULT_CONCURRENCY, DEFAULT_PAUSE_429, DEFAULT_RATE, MAX_EVENTS_PAGE, MAX_PAGE, MAX_PATCH, PACE_SHARE, WINDOW_S,
    AmoClient, AmoError, AmoOutcomeUnknown, AmoPaymentRequired, SendWindow, StaticAuth,
)

DEFAULT_OVERLAP_S = 120
CUSTOMER_MODES = ("segments", "periodicity", "dynamic")  # account.customers_mode values with Customers on
Record = ContactRecord | OrderRecord | Deletion
MAX_PROBLEMS = 200


def client_for(settings: Settings, data: dict[str, Any] | None = None) -> AmoClient:
    """A client for the stored connection (or for `data`), with the shared limiter and token keeper."""
    engine = get_engine(settings.database_url)
    if data is None:
        data, _ = tokens.load(engine, settings)
    options = tokens.plugin_settings(settings)
    host = urlsplit(data["base_url"]).netloc
    rate = float(options.get("rate", DEFAULT_RATE)) * PACE_SHARE
    bucket = limiter(settings, f"amocrm:{host}", rate, 1)
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
        return ("contacts", "orders")

    def checkpoint(self, entity: str) -> str:
        now = int(self._clock())
        return json.dumps({"since": now, "events": now} if entity == "contacts" else {"since": now})

    def read(self, entity: str, cursor: str | None, full: bool) -> Iterator[Page]:
        if entity not in ("contacts", "orders"):
            raise ValueError(f"amoCRM: unknown entity {entity!r} (expected contacts or orders)")
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
        for rows, latest in self._changed("/api/v4/leads", [("with", "contacts")], "leads", since, now):
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
        query = [("filter[type]", "contact_deleted,lead_deleted"),
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

    # --- targeted reads and the reconcile ----------------------------------------------

    def fetch(self, entity: str, ids: Sequence[str]) -> list[Record]:
        """The contacts or leads with these ids (250 per request); missing ones are simply absent."""
        path, key, extra = (("/api/v4/contacts", "contacts", ("with", "leads")) if entity == "contacts"
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
            records += self._contacts(rows) if entity == "contacts" else self._leads(rows)
        return records

    def live_ids(self, entity: str) -> Iterator[list[str]]:
        if entity == "contacts":
            for _, rows in self.client.pages("/api/v4/contacts", [("order[id]", "asc")], "contacts"):
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
                out.append(record)
        return out

    def _contacts(self, rows: Iterable[dict[str, Any]]) -> list[Record]:
        return self._each("contact", rows, lambda r: mapping.contact(r, self.fields, self.problems))

    def _leads(self, rows: Iterable[dict[str, Any]]) -> list[Record]:
        return self._each("order", rows, lambda r: mapping.lead(r, self.currency, self.problems))

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

    # --- writing back ---------------------------------------------------------------------

    def _field_id(self, name: str) -> int:
        field_id = self.fields.get(name)
        number = whole_number(str(field_id)) if field_id is not None else None
        if number is None:
            raise WriteBackError(f"amoCRM: no custom field is configured for {name!r}; add its field id to hub.toml, "
                                 f"e.g. [amocrm] fields = {{{name} = 123456}}")
        return number

    def update_contacts(self, changes: Sequence[dict[str, Any]]) -> list[str]:
        """PATCH contacts in batches of 50; each change holds `id` and only the keys that change."""
        done: list[str] = []
        for start in range(0, len(changes), MAX_PATCH):
            batch = [dict(c) for c in changes[start:start + MAX_PATCH]]
            for c in batch:
                c["id"] = int(c["id"])
                for echo in ("created_by", "updated_by", "created_at", "account_id", "_links", "_embedded"):
                    c.pop(echo, None)
            try:
                body = self.client.request("PATCH", "/api/v4/contacts", json=batch)
            except AmoError as exc:
                raise WriteBackError(str(exc)) from exc
            done += [str(c.get("id")) for c in ((body or {}).get("_embedded") or {}).get("contacts") or []]
        return done

    def set_fields(self, values: Sequence[tuple[str, str, Any]]) -> list[str]:
        """(contact id, logical field name, value) triples, written in batches of 50."""
        changes: dict[str, dict[str, Any]] = {}
        for external_id, name, value in values:
            change = changes.setdefault(str(external_id), {"id": int(external_id), "custom_fields_values": []})
            change["custom_fields_values"].append({"field_id": self._field_id(name), "values": [{"value": value}]})
        return self.update_contacts(list(changes.values()))

    def set_field(self, external_id: str, name: str, value: Any) -> str | None:
        """Set a contact's custom field; logical names map through `[amocrm] fields` (promo_code = FIELD_ID)."""
        done = self.set_fields([(external_id, name, value)])
        return done[0] if done else str(external_id)

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
        """A common note on the contact."""
        return self._post(f"/api/v4/contacts/{int(external_id)}/notes",
                          [{"note_type": "common", "params": {"text": text}}], "notes")

    def add_task(self, external_id: str, title: str, *, due_at: dt.datetime, description: str = "") -> str | None:
        """A task on the contact for its responsible user (a call by default; `[amocrm] task_type_id`)."""
        task: dict[str, Any] = {"text": f"{title}\n{description}".strip(), "complete_till": int(due_at.timestamp()),
                                "entity_id": int(external_id), "entity_type": "contacts",
                                "task_type_id": int(self.options.get("task_type_id", 1))}
        try:
            owner = self.client.get(f"/api/v4/contacts/{int(external_id)}")
        except AmoError as exc:
            raise WriteBackError(str(exc)) from exc
        if owner and owner.get("responsible_user_id"):
            task["responsible_user_id"] = int(owner["responsible_user_id"])
        return self._post("/api/v4/tasks", [task], "tasks")
