"""Lists and single entities as API v4 returns them (HAL pages, filters, ordering), and what tests read from Python."""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

from plugins.amocrm.sandbox.data import (
    ACCOUNT_ID,
    ADMIN_USER,
    link,
    render_contact,
    render_field_definitions,
    render_lead,
)
from plugins.amocrm.sandbox.round_trip import CallRow, render_call
from plugins.amocrm.sandbox.protocol import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    NO_CONTENT,
    BadRequest,
    Response,
    _as_list,
    _hal_page,
    _in_range,
    _int,
    _json_response,
    _range,
)
from plugins.amocrm.sandbox.state import AccountState

MAX_FIELDS_LIMIT = 50  # custom field definitions a page


class Reading(AccountState):
    """GET contacts/leads/companies and the account, paged like the real API (part of `Account`)."""

    def _page_params(self, params: dict[str, Any], maximum: int) -> tuple[int, int]:
        page = params.get("page")
        limit = params.get("limit")
        page_number = int(page) if isinstance(page, str) and page.isdigit() and int(page) > 0 else 1
        size = int(limit) if isinstance(limit, str) and limit.isdigit() and int(limit) > 0 else DEFAULT_LIMIT
        if size > maximum:
            size = maximum if self.oversize_limit == "clamp" else DEFAULT_LIMIT
        return page_number, size

    def _ordered(self, entity: str, order_field: str) -> tuple[list[int], list[int]]:
        """Ids sorted by (field, id) ascending, cached until the entity changes."""
        version = self._versions[entity]
        cached = self._order_cache.get((entity, order_field))
        if cached and cached[0] == version:
            return cached[1], cached[2]
        store = self._stores[entity]
        if order_field == "id":
            ids = list(store)  # ids are handed out ascending, so insertion order is id order
            keys = ids
        else:
            pairs = sorted((getattr(row, order_field), row.id) for row in store.values())
            ids = [row_id for _, row_id in pairs]
            keys = [key for key, _ in pairs]
        self._order_cache[(entity, order_field)] = (version, ids, keys)
        return ids, keys

    def _list_entities(self, entity: str, params: dict[str, Any], headers: dict[str, str], base: str) -> Response:
        page, limit = self._page_params(params, MAX_LIMIT)
        order = params.get("order")
        order_field, descending = "id", False
        if isinstance(order, dict) and order:
            name, direction = next(iter(order.items()))
            if name in ("id", "updated_at", "created_at"):
                order_field, descending = name, str(direction).lower() == "desc"
        filters = params["filter"] if isinstance(params.get("filter"), dict) else {}
        ids_filter = {_int(v, "filter[id]") for v in _as_list(filters.get("id"))} if "id" in filters else None
        updated = _range(filters.get("updated_at"), "filter[updated_at]")
        created = _range(filters.get("created_at"), "filter[created_at]")
        since = headers.get("if-modified-since")
        if since:
            try:
                moment = int(parsedate_to_datetime(since).timestamp())
            except (TypeError, ValueError):
                raise BadRequest("If-Modified-Since is not an HTTP date") from None
            low = moment if updated is None or updated[0] is None else max(moment, updated[0])
            updated = (low, None if updated is None else updated[1])
        query = str(params.get("query", "")).strip().lower()
        with_ = set(_as_list(params.get("with")))
        with self._lock:
            store = self._stores[entity]
            ids, keys = self._ordered(entity, order_field)
            if order_field == "updated_at" and updated is not None:
                first, last = updated
                start = bisect.bisect_left(keys, first) if first is not None else 0
                stop = bisect.bisect_right(keys, last) if last is not None else len(keys)
                ids = ids[start:stop]
                updated = None
            predicates: list[Callable[[Any], bool]] = []
            if ids_filter is not None:
                if order_field == "id":
                    ids = sorted(i for i in ids_filter if i in store)
                else:
                    predicates.append(lambda row: row.id in ids_filter)
            if updated is not None:
                predicates.append(lambda row: _in_range(row.updated_at, updated))
            if created is not None:
                predicates.append(lambda row: _in_range(row.created_at, created))
            if query:
                predicates.append(lambda row: _matches(row, query))
            if entity == "leads":
                predicates.extend(_lead_filters(filters))
            if predicates:
                ids = [i for i in ids if all(check(store[i]) for check in predicates)]
            if descending:
                ids = ids[::-1]
            offset = (page - 1) * limit
            chunk = ids[offset:offset + limit]
            if not chunk:
                return NO_CONTENT
            has_next = offset + limit < len(ids) or (self.next_on_full_last_page and len(chunk) == limit)
            items = [self._render(entity, store[i], base, with_) for i in chunk]
        return _json_response(200, _hal_page(base, f"/api/v4/{entity}", params, page, limit, has_next, entity, items))

    def _render(self, entity: str, row: Any, base: str, with_: set[str]) -> dict[str, Any]:
        if entity == "leads":
            return render_lead(row, base, self._tags["leads"], with_contacts="contacts" in with_)
        return render_contact(row, base, self._tags[entity], entity=entity, with_leads="leads" in with_,
                              with_contacts="contacts" in with_)

    def _field_definitions(self, entity: str, params: dict[str, Any], base: str) -> Response:
        """GET /api/v4/{entity}/custom_fields: at most 50 a page, 204 past the last."""
        page, limit = self._page_params(params, MAX_FIELDS_LIMIT)
        body = render_field_definitions(entity, base)
        fields = body["_embedded"]["custom_fields"]
        offset = (page - 1) * limit
        chunk = fields[offset:offset + limit]
        if not chunk:
            return NO_CONTENT
        return _json_response(200, {"_total_items": len(fields), **_hal_page(
            base, f"/api/v4/{entity}/custom_fields", params, page, limit, offset + limit < len(fields),
            "custom_fields", chunk)})

    def _list_notes(self, entity: str, entity_id: int | None, params: dict[str, Any], base: str) -> Response:
        """Notes of an entity type (or of one record): filter[note_type], filter[updated_at], filter[id],
        order[id] or order[updated_at]; the seeded calls first (older, lower ids), then notes written since."""
        page, limit = self._page_params(params, MAX_LIMIT)
        filters = params["filter"] if isinstance(params.get("filter"), dict) else {}
        types = set(_as_list(filters.get("note_type")))
        updated = _range(filters.get("updated_at"), "filter[updated_at]")
        ids = {_int(v, "filter[id]") for v in _as_list(filters.get("id"))}
        order = params.get("order")
        descending = isinstance(order, dict) and any(str(v).lower() == "desc" for v in order.values())
        with self._lock:
            seeded = self._calls.get(entity, [])
            if (entity_id is not None or ids or (types and not types >= {"call_in", "call_out"})):
                calls = [row for row in seeded if (entity_id is None or row.entity_id == entity_id)
                         and (not ids or row.id in ids) and (not types or row.note_type in types)
                         and (updated is None or _in_range(row.created_at, updated))]
                first, last = 0, len(calls)
            else:  # by time alone: a slice of the list, found by bisection
                calls = seeded
                low, high = updated if updated is not None else (None, None)
                times = self._call_times(entity)
                first = bisect.bisect_left(times, low) if low is not None else 0
                last = bisect.bisect_right(times, high) if high is not None else len(calls)
            written = [note for note in self._notes if note["entity_type"] == entity
                       and (entity_id is None or note["entity_id"] == entity_id) and (not ids or note["id"] in ids)
                       and (not types or note["note_type"] in types)
                       and (updated is None or _in_range(note["updated_at"], updated))]
            total = max(0, last - first) + len(written)
            offset = (page - 1) * limit
            positions = range(offset, min(offset + limit, total))
            if descending:
                positions = range(total - 1 - offset, max(total - 1 - offset - limit, -1), -1)
            items = []
            for position in positions:
                if position < last - first:
                    row = calls[first + position]
                    item = render_call(row, entity, base)
                    edit = self._call_edits.get(row.id)
                    if edit is not None:  # edited through PATCH .../notes
                        item.update(params={**item["params"], **edit["params"]}, updated_at=edit["updated_at"])
                    items.append(item)
                else:
                    note = written[position - (last - first)]
                    items.append({**note, "_links": link(base, f"/api/v4/{entity}/{note['entity_id']}/notes/"
                                                               f"{note['id']}")})
        if not items:
            return NO_CONTENT
        path = f"/api/v4/{entity}/{entity_id}/notes" if entity_id is not None else f"/api/v4/{entity}/notes"
        return _json_response(200, _hal_page(base, path, params, page, limit, offset + limit < total, "notes", items))

    def _call_times(self, entity: str) -> list[int]:
        cached = self._call_time_cache.get(entity)
        if cached is None:
            cached = self._call_time_cache[entity] = [row.created_at for row in self._calls.get(entity, [])]
        return cached

    def _list_all_tasks(self, params: dict[str, Any], base: str) -> Response:
        """GET /api/v4/tasks: the seeded tasks, then those added since; filter[entity_type], filter[entity_id],
        filter[updated_at], filter[is_completed], filter[task_type][]; ordered by id."""
        page, limit = self._page_params(params, MAX_LIMIT)
        filters = params["filter"] if isinstance(params.get("filter"), dict) else {}
        entity_types = set(_as_list(filters.get("entity_type")))
        entity_ids = {_int(v, "filter[entity_id]") for v in _as_list(filters.get("entity_id"))}
        task_types = {_int(v, "filter[task_type]") for v in _as_list(filters.get("task_type"))}
        updated = _range(filters.get("updated_at"), "filter[updated_at]")
        completed = filters.get("is_completed")
        with self._lock:
            tasks = [task for task in (*self._seeded_tasks, *self._tasks)
                     if (not entity_types or task["entity_type"] in entity_types)
                     and (not entity_ids or task["entity_id"] in entity_ids)
                     and (not task_types or task["task_type_id"] in task_types)
                     and (updated is None or _in_range(task["updated_at"], updated))
                     and (completed is None or bool(task["is_completed"]) == (str(completed) in ("1", "true")))]
        offset = (page - 1) * limit
        chunk = tasks[offset:offset + limit]
        if not chunk:
            return NO_CONTENT
        items = [{**task, "_links": link(base, f"/api/v4/tasks/{task['id']}")} for task in chunk]
        return _json_response(200, _hal_page(base, "/api/v4/tasks", params, page, limit,
                                             offset + limit < len(tasks), "tasks", items))

    def _get_entity(self, entity: str, entity_id: int, params: dict[str, Any], base: str) -> Response:
        with self._lock:
            row = self._stores[entity].get(entity_id)
            if row is None:
                return NO_CONTENT
            return _json_response(200, self._render(entity, row, base, set(_as_list(params.get("with")))))

    def _account_info(self, base: str) -> dict[str, Any]:
        return {
            "id": ACCOUNT_ID,
            "name": "Hub sandbox",
            "subdomain": self.subdomain,
            "created_at": 1_577_836_800,
            "created_by": ADMIN_USER,
            "updated_at": 1_577_836_800,
            "updated_by": ADMIN_USER,
            "current_user_id": ADMIN_USER,
            "country": "RU",
            "currency": "RUB",
            "currency_symbol": "₽",
            "customers_mode": "segments" if self.customers_enabled else "disabled",
            "is_unsorted_on": False,
            "is_loss_reason_enabled": True,
            "is_helpbot_enabled": False,
            "is_technical_account": False,
            "contact_name_display_order": 1,
            "_links": link(base, "/api/v4/account"),
        }

    # -- inspection ---------------------------------------------------------

    def contact(self, contact_id: int, *, with_leads: bool = False) -> dict[str, Any] | None:
        """The contact exactly as GET /api/v4/contacts/{id} renders it, or None."""
        with self._lock:
            row = self._stores["contacts"].get(contact_id)
            return None if row is None else render_contact(row, self.base_url, self._tags["contacts"],
                                                           with_leads=with_leads)

    def lead(self, lead_id: int, *, with_contacts: bool = False) -> dict[str, Any] | None:
        with self._lock:
            row = self._stores["leads"].get(lead_id)
            return None if row is None else render_lead(row, self.base_url, self._tags["leads"],
                                                        with_contacts=with_contacts)

    def contact_ids(self) -> list[int]:
        with self._lock:
            return list(self._stores["contacts"])

    def lead_ids(self) -> list[int]:
        with self._lock:
            return list(self._stores["leads"])

    def person_id(self, contact_id: int) -> int | None:
        """The sample person a seeded contact renders (None for contacts added later)."""
        with self._lock:
            row = self._stores["contacts"].get(contact_id)
            return None if row is None else row.person_id

    def company(self, company_id: int, *, with_contacts: bool = False) -> dict[str, Any] | None:
        """The company exactly as GET /api/v4/companies/{id} renders it, or None."""
        with self._lock:
            row = self._stores["companies"].get(company_id)
            return None if row is None else render_contact(row, self.base_url, self._tags["companies"],
                                                           entity="companies", with_contacts=with_contacts)

    @property
    def seeded_tasks(self) -> list[dict[str, Any]]:
        """The tasks the account was seeded with (`tasks` lists those added through the API)."""
        with self._lock:
            return [dict(task) for task in self._seeded_tasks]

    def company_ids(self) -> list[int]:
        with self._lock:
            return list(self._stores["companies"])

    def calls(self, entity: str = "contacts") -> list[dict[str, Any]]:
        """The seeded call notes of contacts, companies or leads, as the notes list renders them."""
        with self._lock:
            out = [render_call(row, entity, self.base_url) for row in self._calls.get(entity, [])]
            for item in out:
                edit = self._call_edits.get(item["id"])
                if edit is not None:
                    item.update(params={**item["params"], **edit["params"]}, updated_at=edit["updated_at"])
            return out

    def add_call(self, entity: str, entity_id: int, *, incoming: bool = True, duration: int = 0,
                 call_status: int = 6, phone: str = "") -> int:
        """A call logged now (as telephony would), for incremental reads; returns the note's id."""
        with self._lock:
            rows = self._calls.setdefault(entity, [])
            number = self._next_note_id
            self._next_note_id += 1
            owner = self._stores[entity][entity_id]
            rows.append(CallRow(number, entity_id, self.now(), "call_in" if incoming else "call_out", duration,
                                call_status, owner.responsible_user_id, phone))
            self._call_time_cache.pop(entity, None)
            return number

    @property
    def contacts_count(self) -> int:
        return len(self._stores["contacts"])

    @property
    def leads_count(self) -> int:
        return len(self._stores["leads"])

    @property
    def companies_count(self) -> int:
        return len(self._stores["companies"])

    @property
    def activities_count(self) -> int:
        """Calls and tasks the account holds: seeded, logged since (add_call) and added through the API."""
        with self._lock:
            return sum(len(rows) for rows in self._calls.values()) + len(self._seeded_tasks) + len(self._tasks)

    @property
    def notes(self) -> list[dict[str, Any]]:
        """Notes written through the API, oldest first."""
        with self._lock:
            return [dict(note) for note in self._notes]

    @property
    def tasks(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(task) for task in self._tasks]

    @property
    def writes(self) -> list[dict[str, Any]]:
        """Every accepted POST/PATCH of contacts, companies and leads: entity, method, body, at."""
        with self._lock:
            return list(self._writes)

    @property
    def patches(self) -> list[dict[str, Any]]:
        with self._lock:
            return [write for write in self._writes if write["method"] == "PATCH"]

    @property
    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(event) for event in self._events]


def _matches(row: Any, query: str) -> bool:
    """`query`: a substring of the name or any field value; phones also match on digits alone."""
    if query in row.name.lower():
        return True
    digits = re.sub(r"\D", "", query)
    for values in row.fields.values():
        for value, _ in values:
            text = str(value)
            if query in text.lower():
                return True
            if len(digits) >= 5 and digits in re.sub(r"\D", "", text):
                return True
    return False


def _lead_filters(filters: dict[str, Any]) -> list[Callable[[Any], bool]]:
    checks: list[Callable[[Any], bool]] = []
    if "pipeline_id" in filters:
        pipelines = {_int(v, "filter[pipeline_id]") for v in _as_list(filters["pipeline_id"])}
        checks.append(lambda row: row.pipeline_id in pipelines)
    statuses = filters.get("statuses")
    if isinstance(statuses, dict):
        pairs = {
            (_int(entry.get("pipeline_id"), "filter[statuses]"), _int(entry.get("status_id"), "filter[statuses]"))
            for entry in statuses.values() if isinstance(entry, dict)
        }
        checks.append(lambda row: (row.pipeline_id, row.status_id) in pairs)
    if "closed_at" in filters:
        closed = _range(filters["closed_at"], "filter[closed_at]")
        if closed is not None:
            checks.append(lambda row: _in_range(row.closed_at, closed))
    return checks

