"""Events out: handlers bound with event.bind or outgoing webhooks, posted from a background thread."""

from __future__ import annotations

import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from plugins.bitrix24.sandbox.credentials import _Call, _Token, _token
from plugins.bitrix24.sandbox.protocol import ApiError, php_intval
from plugins.bitrix24.sandbox.state import PortalState

EVENTS = {
    "ONCRMCONTACTADD": ("contact", "add"), "ONCRMCONTACTUPDATE": ("contact", "update"),
    "ONCRMCONTACTDELETE": ("contact", "delete"), "ONCRMDEALADD": ("deal", "add"),
    "ONCRMDEALUPDATE": ("deal", "update"), "ONCRMDEALDELETE": ("deal", "delete"),
    "ONCRMCOMPANYADD": ("company", "add"), "ONCRMCOMPANYUPDATE": ("company", "update"),
    "ONCRMCOMPANYDELETE": ("company", "delete"), "ONCRMACTIVITYADD": ("activity", "add"),
    "ONCRMACTIVITYUPDATE": ("activity", "update"), "ONCRMACTIVITYDELETE": ("activity", "delete"),
}


@dataclass
class EventDelivery:
    """One POST to an event handler and how it went (the portal never retries)."""

    event: str
    handler: str
    payload: list[tuple[str, str]]
    status: int | None = None
    error: str | None = None


class _EventSender:
    """Sends queued event POSTs from one background thread, like the portal's event queue."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.deliveries: list[EventDelivery] = []
        self._queue: queue.Queue[EventDelivery | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def send(self, delivery: EventDelivery) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="bitrix24-sandbox-events", daemon=True)
                self._thread.start()
        self._queue.put(delivery)

    def _run(self) -> None:
        while True:
            delivery = self._queue.get()
            try:
                if delivery is None:
                    return
                self._post(delivery)
            finally:
                self._queue.task_done()

    def _post(self, delivery: EventDelivery) -> None:
        body = urlencode(delivery.payload).encode()
        request = urllib.request.Request(delivery.handler, data=body, method="POST", headers={
            "Content-Type": "application/x-www-form-urlencoded", "User-Agent": "Bitrix24 Webhook Engine"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                delivery.status = response.status
        except urllib.error.HTTPError as error:
            delivery.status, delivery.error = error.code, str(error)
        except Exception as error:  # noqa: BLE001 - a handler that is down or slow is logged and forgotten
            delivery.error = repr(error)
        with self._lock:
            self.deliveries.append(delivery)

    def drain(self, timeout: float) -> bool:
        """Wait until every queued event was attempted; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def stop(self) -> None:
        with self._lock:
            thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(timeout=self.timeout + 1)


class Events(PortalState):
    """event.bind/unbind/get and raising events on changes (part of `Portal`)."""

    def add_outgoing_webhook(self, handler: str, events: Iterable[str]) -> str:
        """Set up an outgoing webhook (no application) and return its application token.

        Its POSTs carry only auth[domain], auth[member_id] and
        auth[application_token], as the portal documents for outgoing webhooks.
        """
        names = [name.upper() for name in events]
        unknown = [name for name in names if name not in EVENTS]
        if unknown:
            raise ValueError(f"unknown events: {unknown}")
        token = _token(self._secret_rng, 32)
        with self._lock:
            self._outgoing.append({"handler": handler, "events": set(names), "application_token": token})
        return token

    def event_handlers(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(item) for item in self._handlers]

    @property
    def event_deliveries(self) -> list[EventDelivery]:
        with self._events._lock:
            return list(self._events.deliveries)

    def drain_events(self, timeout: float = 10.0) -> bool:
        """Wait until every event raised so far was POSTed (or failed); False on timeout."""
        return self._events.drain(timeout)

    def close(self) -> None:
        """Stop the event thread."""
        self._events.stop()

    # ---- events

    def _require_app(self, call: _Call) -> None:
        if call.kind != "oauth":
            raise ApiError(403, "WRONG_AUTH_TYPE", "Current authorization type is denied for this method")

    def _m_event_bind(self, call: _Call, params: dict[str, Any]) -> bool:
        self._require_app(call)
        event = str(params.get("event") or params.get("EVENT") or "").upper()
        handler = str(params.get("handler") or params.get("HANDLER") or "")
        if event not in EVENTS:
            raise ApiError(400, "ERROR_EVENT_NOT_FOUND", "Event not found")
        if not handler:
            raise ApiError(400, "ERROR_ARGUMENT", "Argument 'handler' is null or empty")
        auth_type = php_intval(params.get("auth_type", params.get("AUTH_TYPE", 0)))
        with self._lock:
            if any(item["event"] == event and item["handler"] == handler and item["auth_type"] == auth_type
                   for item in self._handlers):
                raise ApiError(400, "ERROR_HANDLER_ALREADY_EXIST", "Handler already exists!")
            self._handlers.append({"id": self._next_handler_id, "event": event, "handler": handler,
                                   "auth_type": auth_type, "offline": 0})
            self._next_handler_id += 1
        return True

    def _m_event_unbind(self, call: _Call, params: dict[str, Any]) -> dict[str, int]:
        self._require_app(call)
        event = str(params.get("event") or params.get("EVENT") or "").upper()
        handler = str(params.get("handler") or params.get("HANDLER") or "")
        auth_type = params.get("auth_type", params.get("AUTH_TYPE"))
        with self._lock:
            keep, removed = [], 0
            for item in self._handlers:
                hit = ((not event or item["event"] == event) and (not handler or item["handler"] == handler)
                       and (auth_type in (None, "") or item["auth_type"] == php_intval(auth_type)))
                if hit:
                    removed += 1
                else:
                    keep.append(item)
            self._handlers = keep
        return {"count": removed}

    def _m_event_get(self, call: _Call, params: dict[str, Any]) -> list[dict[str, Any]]:
        self._require_app(call)
        with self._lock:
            return [{"event": item["event"], "handler": item["handler"], "auth_type": str(item["auth_type"]),
                     "offline": item["offline"]} for item in self._handlers]

    def _raise_event(self, entity: str, action: str, row_id: int, call: _Call | None) -> None:
        event = next(name for name, target in EVENTS.items() if target == (entity, action))
        now = str(int(self.clock()))
        for item in self._handlers:
            if item["event"] != event:
                continue
            auth: list[tuple[str, str]] = []
            user_id = item["auth_type"] or (call.user_id if call else 0)
            if user_id:  # the change can be tied to a user: the handler gets that user's token
                access = _token(self._secret_rng)
                self._tokens[access] = _Token(user_id, self.clock() + self.token_lifetime)
                auth += [("access_token", access), ("expires_in", str(self.token_lifetime))]
            auth += [("scope", ",".join(sorted(self.app.scopes))), ("domain", self.domain),
                     ("server_endpoint", f"{self.base_url}/rest/"), ("status", "L"),
                     ("client_endpoint", f"{self.base_url}/rest/"), ("member_id", self.member_id),
                     ("application_token", self.app.application_token)]
            payload = [("event", event), ("event_handler_id", str(item["id"])), ("data[FIELDS][ID]", str(row_id)),
                       ("ts", now)] + [(f"auth[{key}]", value) for key, value in auth]
            self._events.send(EventDelivery(event, item["handler"], payload))
        for hook in self._outgoing:
            if event in hook["events"]:
                payload = [("event", event), ("data[FIELDS][ID]", str(row_id)), ("ts", now),
                           ("auth[domain]", self.domain), ("auth[member_id]", self.member_id),
                           ("auth[application_token]", hook["application_token"])]
                self._events.send(EventDelivery(event, hook["handler"], payload))

