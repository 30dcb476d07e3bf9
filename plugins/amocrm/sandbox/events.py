"""What the account tells the outside: the events log (GET /api/v4/events) and webhooks sent out."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests

from plugins.amocrm.sandbox.data import (
    ACCOUNT_ID,
    ADMIN_USER,
    CUSTOM_FIELDS,
    link,
)
from plugins.amocrm.sandbox.protocol import (
    EVENT_ENTITY,
    EVENT_ENTITY_PLURAL,
    MAX_EVENTS_LIMIT,
    NO_CONTENT,
    BadRequest,
    Response,
    _as_list,
    _error,
    _hal_page,
    _in_range,
    _int,
    _json_response,
    _problem,
    _range,
    _validation_failed,
)
from plugins.amocrm.sandbox.state import AccountState

WEBHOOK_TIMEOUT = 2.0                 # the real service waits about two seconds for a 2xx

WEBHOOK_SETTINGS = (
    "add_contact", "update_contact", "delete_contact",
    "add_company", "update_company", "delete_company",
    "add_lead", "update_lead", "delete_lead", "status_lead",
)


@dataclass(slots=True)
class _Webhook:
    id: int
    destination: str
    settings: tuple[str, ...]
    created_at: int
    sort: int = 10
    disabled: bool = False


@dataclass(slots=True)
class _Notification:
    """One change as webhooks carry it: a settings name, a form section and its fields."""

    setting: str
    section: str
    pairs: list[tuple[str, str]]


class Events(AccountState):
    """The events log and outgoing webhooks (part of `Account`)."""

    def _event(self, kind: str, entity: str, entity_id: int,
               before: list[Any] | None = None, after: list[Any] | None = None) -> None:
        now = self.clock()
        self._event_counter += 1
        self._events.append({
            "id": _ulid(int(now * 1000), self._event_counter),
            "type": kind,
            "entity_id": entity_id,
            "entity_type": EVENT_ENTITY[entity],
            "created_by": ADMIN_USER,
            "created_at": int(now),
            "value_after": after or [],
            "value_before": before or [],
            "account_id": ACCOUNT_ID,
        })

    def _seed_moves(self, moves: list[tuple[int, int, int, int, int | None, int | None]]) -> None:
        """Past lead_status_changed events (round_trip.status_moves), oldest first, before any live one."""
        for at, lead_id, pipeline_id, status_id, old_status, old_pipeline in moves:
            self._event_counter += 1
            self._events.append({
                "id": _ulid(at * 1000, self._event_counter), "type": "lead_status_changed", "entity_id": lead_id,
                "entity_type": EVENT_ENTITY["leads"], "created_by": ADMIN_USER, "created_at": at,
                "value_after": [{"lead_status": {"id": status_id, "pipeline_id": pipeline_id}}],
                "value_before": [{"lead_status": {"id": old_status, "pipeline_id": old_pipeline}}],
                "account_id": ACCOUNT_ID,
            })

    def _render_event(self, event: dict[str, Any], base: str) -> dict[str, Any]:
        plural = EVENT_ENTITY_PLURAL[event["entity_type"]]
        return {
            **event,
            "_links": link(base, f"/api/v4/events/{event['id']}"),
            "_embedded": {"entity": {"id": event["entity_id"],
                                     "_links": link(base, f"/api/v4/{plural}/{event['entity_id']}")}},
        }

    def _list_events(self, params: dict[str, Any], base: str) -> Response:
        """Newest first, at most 100 a page, 204 when nothing matches."""
        page, limit = self._page_params(params, MAX_EVENTS_LIMIT)
        filters = params["filter"] if isinstance(params.get("filter"), dict) else {}
        types = set(_comma_list(filters.get("type")))
        entities = {EVENT_ENTITY.get(name, name) for name in _comma_list(filters.get("entity"))}
        entity_ids = {_int(v, "filter[entity_id]") for v in _comma_list(filters.get("entity_id"))}
        event_ids = set(_comma_list(filters.get("id")))
        created = _range(filters.get("created_at"), "filter[created_at]")
        moved_into = _leads_statuses(filters.get("value_after"))
        with self._lock:
            matched = [
                event for event in reversed(self._events)
                if (not types or event["type"] in types
                    or ("custom_field_value_changed" in types and event["type"].startswith("custom_field_")))
                and (not entities or event["entity_type"] in entities)
                and (not entity_ids or event["entity_id"] in entity_ids)
                and (not event_ids or event["id"] in event_ids)
                and (created is None or _in_range(event["created_at"], created))
                and (moved_into is None or _moved_into(event, moved_into))
            ]
            offset = (page - 1) * limit
            chunk = matched[offset:offset + limit]
            if not chunk:
                return NO_CONTENT
            has_next = offset + limit < len(matched) or (self.next_on_full_last_page and len(chunk) == limit)
            items = [self._render_event(event, base) for event in chunk]
        return _json_response(200, _hal_page(base, "/api/v4/events", params, page, limit, has_next, "events", items))

    def _get_event(self, event_id: str, base: str) -> Response:
        with self._lock:
            for event in self._events:
                if event["id"] == event_id:
                    return _json_response(200, self._render_event(event, base))
        return NO_CONTENT

    # -- webhooks -----------------------------------------------------------

    def register_webhook(self, destination: str, settings: Sequence[str] = WEBHOOK_SETTINGS) -> None:
        """Subscribe `destination` to changes, as the integration settings or POST /api/v4/webhooks do."""
        unknown = set(settings) - set(WEBHOOK_SETTINGS)
        if unknown:
            raise ValueError(f"unknown webhook settings: {sorted(unknown)}")
        with self._lock:
            self._webhooks = [hook for hook in self._webhooks if hook.destination != destination]
            self._webhooks.append(_Webhook(len(self._webhooks) + 1, destination, tuple(settings), self.now()))

    def unregister_webhook(self, destination: str) -> None:
        with self._lock:
            self._webhooks = [hook for hook in self._webhooks if hook.destination != destination]

    @property
    def webhook_deliveries(self) -> list[dict[str, Any]]:
        """Every attempted post: destination, body (form-encoded), status or error, duplicate/dropped flags."""
        with self._webhook_idle:
            return list(self._deliveries)

    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        """Block until every queued webhook has been posted (or dropped); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._webhook_idle:
            while self._webhook_pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._webhook_idle.wait(remaining)
        return True

    def close(self) -> None:
        """Stop the webhook sender thread (queued posts are still delivered first)."""
        thread = self._webhook_thread
        if thread is not None:
            self._webhook_queue.put(None)
            thread.join(timeout=self.webhook_timeout * 2 + 5)
            self._webhook_thread = None

    def _webhook_fields(self, entity: str, row: Any) -> list[tuple[str, str]]:
        """The entity as webhooks flatten it: legacy names (date_create, last_modified, custom_fields)."""
        pairs = [("id", str(row.id)), ("name", row.name)]
        if entity == "leads":
            pairs += [("status_id", str(row.status_id)), ("price", str(row.price))]
        pairs += [("responsible_user_id", str(row.responsible_user_id))]
        if entity == "leads":
            pairs += [("last_modified", str(row.updated_at)), ("modified_user_id", str(row.updated_by)),
                      ("created_user_id", str(row.created_by)), ("date_create", str(row.created_at)),
                      ("pipeline_id", str(row.pipeline_id)), ("account_id", str(ACCOUNT_ID))]
        else:
            pairs += [("date_create", str(row.created_at)), ("last_modified", str(row.updated_at)),
                      ("created_user_id", str(row.created_by)), ("modified_user_id", str(row.updated_by)),
                      ("account_id", str(ACCOUNT_ID))]
        definitions = CUSTOM_FIELDS[entity]
        for index, (field_id, values) in enumerate(row.fields.items()):
            definition = definitions[field_id]
            prefix = f"custom_fields[{index}]"
            pairs += [(f"{prefix}[id]", str(field_id)), (f"{prefix}[name]", definition.name)]
            for position, (value, enum_id) in enumerate(values):
                pairs.append((f"{prefix}[values][{position}][value]", str(value)))
                if enum_id is not None:
                    pairs.append((f"{prefix}[values][{position}][enum]", str(enum_id)))
            if definition.code:
                pairs.append((f"{prefix}[code]", definition.code))
        for index, tag_id in enumerate(row.tags):
            pairs += [(f"tags[{index}][id]", str(tag_id)),
                      (f"tags[{index}][name]", self._tags[entity].name(tag_id) or "")]
        pairs += [("created_at", str(row.created_at)), ("updated_at", str(row.updated_at))]
        if entity != "leads":
            pairs.append(("type", EVENT_ENTITY[entity]))
        return pairs

    def _notify(self, notifications: list[_Notification]) -> None:
        """Queue one form-encoded post per subscribed webhook for this batch of changes."""
        if not notifications or not self._webhooks:
            return
        for hook in self._webhooks:
            if hook.disabled:
                continue
            sections: dict[str, list[list[tuple[str, str]]]] = {}
            for notification in notifications:
                if notification.setting in hook.settings:
                    sections.setdefault(notification.section, []).append(notification.pairs)
            if not sections:
                continue
            form: list[tuple[str, str]] = []
            for section, items in sections.items():
                for index, pairs in enumerate(items):
                    form += [(f"{section}[{index}][{key.split('[', 1)[0]}]{_rest(key)}", value) for key, value in pairs]
            form += [("account[subdomain]", self.subdomain), ("account[id]", str(ACCOUNT_ID)),
                     ("account[_links][self]", self.base_url)]
            self._enqueue(hook.destination, urlencode(form))

    def _enqueue(self, destination: str, body: str) -> None:
        with self._webhook_idle:
            self._webhook_pending += 1
            if self._webhook_thread is None:
                self._webhook_thread = threading.Thread(target=self._send_webhooks, name="amocrm-sandbox-webhooks",
                                                        daemon=True)
                self._webhook_thread.start()
        self._webhook_queue.put((destination, body))

    def _send_webhooks(self) -> None:
        session = requests.Session()
        while True:
            job = self._webhook_queue.get()
            if job is None:
                return
            destination, body = job
            roll = self._webhook_rng.random()
            copies = 0 if roll < self.webhook_drop_rate else (
                2 if self._webhook_rng.random() < self.webhook_duplicate_rate else 1)
            records: list[dict[str, Any]] = []
            if copies == 0:
                records.append({"destination": destination, "body": body, "status": None, "error": None,
                                "dropped": True, "duplicate": False})
            for copy in range(copies):
                record: dict[str, Any] = {"destination": destination, "body": body, "status": None, "error": None,
                                          "dropped": False, "duplicate": copy > 0}
                try:
                    answer = session.post(destination, data=body.encode(), timeout=self.webhook_timeout, headers={
                        "Content-Type": "application/x-www-form-urlencoded", "User-Agent": "amoCRM-Webhooks/3.0"})
                    record["status"] = answer.status_code
                except requests.RequestException as error:
                    record["error"] = type(error).__name__
                records.append(record)
            with self._stats_lock:
                self._stats["webhooks_dropped"] += int(copies == 0)
                self._stats["webhooks_duplicated"] += int(copies == 2)
                self._stats["webhooks_sent"] += sum(1 for r in records if r["status"] is not None)
                self._stats["webhooks_failed"] += sum(
                    1 for r in records if not r["dropped"] and (r["status"] is None or not 200 <= r["status"] < 300))
            with self._webhook_idle:
                self._deliveries.extend(records)
                self._webhook_pending -= 1
                self._webhook_idle.notify_all()

    def _webhooks_route(self, method: str, payload: Any, base: str) -> Response:
        if method == "GET":
            with self._lock:
                hooks = [self._render_webhook(hook) for hook in self._webhooks]
            if not hooks:
                return NO_CONTENT
            return _json_response(200, {"_total_items": len(hooks), "_links": link(base, "/api/v4/webhooks"),
                                        "_embedded": {"webhooks": hooks}})
        if not isinstance(payload, dict) or not isinstance(payload.get("destination"), str):
            return _validation_failed([("0", [_error("FieldMissing", "destination", "This field is missing.")])])
        if method == "POST":
            settings = payload.get("settings")
            if not isinstance(settings, list) or not settings or not set(settings) <= set(WEBHOOK_SETTINGS):
                return _validation_failed([("0", [_error("NotSupportedChoice", "settings",
                                                         "The value you selected is not a valid choice.")])])
            self.register_webhook(payload["destination"], settings)
            with self._lock:
                hook = next(h for h in self._webhooks if h.destination == payload["destination"])
                return _json_response(200, self._render_webhook(hook))
        if method == "DELETE":
            self.unregister_webhook(payload["destination"])
            return NO_CONTENT
        return _problem(405, "Method Not Allowed", "Unsupported method")

    def _render_webhook(self, hook: _Webhook) -> dict[str, Any]:
        return {"id": hook.id, "destination": hook.destination, "created_at": hook.created_at,
                "updated_at": hook.created_at, "account_id": ACCOUNT_ID, "created_by": ADMIN_USER,
                "sort": hook.sort, "disabled": hook.disabled, "settings": list(hook.settings)}


def _rest(key: str) -> str:
    return key[len(key.split("[", 1)[0]):]


_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def _leads_statuses(value_after: Any) -> set[tuple[int, int]] | None:
    """filter[value_after][leads_statuses][i][pipeline_id|status_id]: the (pipeline, status) pairs asked for."""
    if not isinstance(value_after, dict) or not isinstance(value_after.get("leads_statuses"), dict):
        return None
    pairs = set()
    for entry in value_after["leads_statuses"].values():
        if not isinstance(entry, dict):
            raise BadRequest("filter[value_after][leads_statuses] needs pipeline_id and status_id")
        pairs.add((_int(entry.get("pipeline_id"), "filter[value_after][leads_statuses][pipeline_id]"),
                   _int(entry.get("status_id"), "filter[value_after][leads_statuses][status_id]")))
    return pairs


def _moved_into(event: dict[str, Any], pairs: set[tuple[int, int]]) -> bool:
    for item in event.get("value_after") or []:
        moved = item.get("lead_status") if isinstance(item, dict) else None
        if isinstance(moved, dict) and (moved.get("pipeline_id"), moved.get("id")) in pairs:
            return True
    return False


def _ulid(milliseconds: int, counter: int) -> str:
    """Event ids look like ULIDs (26 lowercase base32 characters) and sort by time."""
    value = (milliseconds << 80) | (counter & ((1 << 80) - 1))
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def _comma_list(value: Any) -> list[Any]:
    """A filter's values as the API documents them, "1,2,3" (its official library sends that), or as an array."""
    return [part.strip() if isinstance(part, str) else part
            for item in _as_list(value) for part in (item.split(",") if isinstance(item, str) else [item])
            if not (isinstance(part, str) and not part.strip())]
