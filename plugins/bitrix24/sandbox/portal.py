"""The portal: its state, the parts that answer for it, and the routing of each request to one of them."""

from __future__ import annotations

import datetime as dt
import email.parser
import json
import random
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from plugins.bitrix24.sandbox import business, data
from plugins.bitrix24.sandbox.credentials import Credentials, OAuthApp, Webhook, _Call, _Token, _token
from plugins.bitrix24.sandbox.events import Events, _EventSender
from plugins.bitrix24.sandbox.limits import (
    COUNT_SECONDS_PER_ROW,
    OPERATING_LIMIT,
    OPERATING_WINDOW,
    PLANS,
    Limits,
    _Bucket,
    _OperatingMeter,
)
from plugins.bitrix24.sandbox.protocol import (
    CUT_HEADER,
    JSON_TYPE,
    MOSCOW,
    ApiError,
    _Answer,
    _json_answer,
    _not_found_method,
    parse_query,
    php_params,
)
from plugins.bitrix24.sandbox.reading import Reading
from plugins.bitrix24.sandbox.tables import _Table
from plugins.bitrix24.sandbox.writing import Writing


@dataclass
class _Handler:
    name: str
    scope: str  # "basic" is open to every caller
    run: Callable[[_Call, dict[str, Any]], Any]
    upper: bool = True  # the legacy crm methods read parameters case-insensitively


def _on_table(method: Callable[[_Call, _Table, dict[str, Any]], Any],
              table: _Table) -> Callable[[_Call, dict[str, Any]], Any]:
    """A crm.contact.* / crm.deal.* method bound to its table (a closure per table, not a shared loop variable)."""
    return lambda call, params: method(call, table, params)


class Portal(Credentials, Limits, Reading, Writing, Events):
    """A Bitrix24 portal's state and its REST answers; thread-safe.

    `contacts`, `seed` and `first_person` choose the sampledata people it holds
    (people first_person+1 .. first_person+contacts). `plan` sets the leaky
    bucket ("standard": 2/s and 50, "enterprise": 5/s and 250) unless `rate`
    and `burst` are given. `clock` (epoch seconds) drives every limit, token
    lifetime and record date, so tests can move time without sleeping.
    `b2b` adds companies, a household, hotline callers and one person entered
    three ways (`sandbox.b2b`) after the sampledata people. `companies` (default
    one per ten people) and `activities` (default two per person) size what
    `sandbox.business` seeds: companies with requisites, who works where, logged
    calls, meetings, e-mails and tasks, custom field values and stage history.
    """

    def __init__(
        self,
        contacts: int = 1000,
        seed: int = 1,
        first_person: int = 0,
        *,
        today: dt.date | None = None,
        tz: dt.tzinfo = MOSCOW,
        plan: str = "standard",
        rate: float | None = None,
        burst: int | None = None,
        operating_limit: float = OPERATING_LIMIT,
        operating_window: float = OPERATING_WINDOW,
        count_cost_per_row: float = COUNT_SECONDS_PER_ROW,
        count_sleep_scale: float = 0.0,
        latency: float = 0.0,
        token_lifetime: int = 3600,
        webhook_scopes: Iterable[str] = ("crm", "user"),
        app_scopes: Iterable[str] = ("crm", "user"),
        webhook_code: str | None = None,
        legacy_auth_errors: bool = False,
        event_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        b2b: bool = False,
        companies: int | None = None,
        activities: int | None = None,
    ) -> None:
        self.tz = tz
        self.clock = clock
        default_rate, default_burst = PLANS[plan]
        self.rate = default_rate if rate is None else rate
        self.burst = default_burst if burst is None else burst
        self.count_cost_per_row = count_cost_per_row
        self.count_sleep_scale = count_sleep_scale
        self.latency = latency
        self.token_lifetime = token_lifetime
        self.legacy_auth_errors = legacy_auth_errors
        self.domain = "b24-sandbox.bitrix24.ru"
        self.base_url = f"https://{self.domain}"
        self._lock = threading.RLock()
        self._rng = random.Random(f"bitrix24-sandbox:{seed}")
        self._secret_rng = random.Random(secrets.randbits(64))
        seeded = data.seed_portal(contacts, seed, first_person, today=today, b2b=b2b)
        self._contacts = _Table("contact", data.CONTACT_FIELDS, seeded.contacts, tz)
        extra = business.seed(seeded.contacts, seeded.deals, seeded.next_multifield_id,
                              companies=max(1, contacts // 10) if companies is None else companies,
                              activities=2 * contacts if activities is None else activities, seed=seed,
                              today=today or dt.date.today())
        self._deals = _Table("deal", data.DEAL_FIELDS, seeded.deals, tz)
        self._companies = _Table("company", data.COMPANY_FIELDS, extra.companies, tz)
        self._requisites = _Table("requisite", data.REQUISITE_FIELDS, extra.requisites, tz)
        self._activity_rows = _Table("activity", data.ACTIVITY_FIELDS, extra.activities, tz)
        self._stage_history = extra.history
        self._next_multifield = extra.next_multifield_id
        self.contact_person: dict[int, int] = seeded.contact_person
        self.deal_order: dict[int, int] = seeded.deal_order
        self.member_id = _token(self._rng, 32, "0123456789abcdef")
        self.webhooks: dict[tuple[int, str], Webhook] = {}
        self.webhook = self.add_webhook(1, webhook_scopes, code=webhook_code or _token(self._rng, 16))
        self.app = OAuthApp(
            client_id=f"local.{_token(self._rng, 14, '0123456789abcdef')}.{_token(self._rng, 8, string.digits)}",
            client_secret=_token(self._rng, 50, string.ascii_letters + string.digits),
            application_token=_token(self._rng, 32, "0123456789abcdef"),
            scopes=frozenset(app_scopes),
        )
        self._codes: dict[str, tuple[int, float]] = {}
        self._tokens: dict[str, _Token] = {}
        self._refresh: dict[str, _Token] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._meter = _OperatingMeter(operating_limit, operating_window)
        self._handlers: list[dict[str, Any]] = []  # bound with event.bind
        self._outgoing: list[dict[str, Any]] = []  # outgoing webhooks set up in the portal's settings
        self._next_handler_id = 1
        self._comments: list[dict[str, Any]] = []
        self._activities: list[dict[str, Any]] = []
        self._events = _EventSender(event_timeout)
        self._methods = self._method_table()
        self._cuts: list[tuple[str | None, str]] = []  # answers to cut off mid-body: (method or any, mode)
        self.denied: set[str] = set()  # methods the user may not call ("crm.contact.delete"): "Access denied."
        self.reset_stats()

    # ------------------------------------------------------------------ HTTP entry point

    def handle_http(self, method: str, target: str, body: bytes = b"", content_type: str = "",
                    client: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
        """Answer one HTTP request: (status, headers, body). The server and in-process callers both use it."""
        parts = urlsplit(target)
        path = parts.path
        if path.startswith("/_sandbox/"):
            return self._sandbox_route(method, path)
        if self.latency:
            time.sleep(self.latency)
        try:
            params = parse_query(parts.query)
            params.update(self._body_params(body, content_type))
        except ValueError:
            return _json_answer(400, {"error": "INVALID_REQUEST", "error_description": "Bad request body"})
        route = path.rstrip("/")
        if route in ("/oauth/token", "/oauth/authorize"):
            with self._lock:
                self._stats["requests"] += 1
            answer = self._oauth_token(params) if route == "/oauth/token" else self._oauth_authorize(params)
            with self._lock:
                self._stats["statuses"][answer[0]] += 1
            return answer
        if not path.startswith("/rest/"):
            return (404, {"Content-Type": "text/html; charset=utf-8"},
                    b"<html><body><h1>404 Not Found</h1></body></html>")
        status, payload = self._rest(path[len("/rest/"):], params, client)
        with self._lock:
            self._stats["statuses"][status] += 1
        answer = _json_answer(status, payload)
        cut = self._take_cut(route.rsplit("/", 1)[-1].lower().removesuffix(".json")) if self._cuts else None
        if cut == "truncate":
            return answer[0], answer[1], answer[2][: len(answer[2]) // 2]
        if cut == "drop":
            return answer[0], {**answer[1], CUT_HEADER: "drop"}, answer[2]
        return answer

    @staticmethod
    def _body_params(body: bytes, content_type: str) -> dict[str, Any]:
        if not body:
            return {}
        kind = content_type.split(";", 1)[0].strip().lower()
        if kind == "application/json":
            loaded = json.loads(body.decode("utf-8"))
            return loaded if isinstance(loaded, dict) else {}
        if kind == "multipart/form-data":
            message = email.parser.BytesParser().parsebytes(
                b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
            pairs = []
            for part in message.walk():
                name = part.get_param("name", header="content-disposition")
                if name and not part.is_multipart():
                    payload = part.get_payload(decode=True)
                    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
                    pairs.append((str(name), text))
            return php_params(pairs)
        return parse_query(body.decode("utf-8"))

    def _sandbox_route(self, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
        if path.rstrip("/") == "/_sandbox/stats":
            return 200, {"Content-Type": JSON_TYPE}, json.dumps(self.stats()).encode()
        if path.rstrip("/") == "/_sandbox/reset-stats" and method == "POST":
            self.reset_stats()
            return 200, {"Content-Type": JSON_TYPE}, b'{"result":true}'
        return 404, {"Content-Type": JSON_TYPE}, b'{"error":"not found"}'


    def _rest(self, rest_path: str, params: dict[str, Any], client: str) -> tuple[int, dict[str, Any]]:
        started = time.perf_counter()
        with self._lock:
            self._stats["requests"] += 1
            try:
                call, method = self._authenticate(rest_path, params, client)
            except ApiError as error:
                return error.status, error.body()
            method = method.lower()
            if method.endswith(".json") or method.endswith(".xml"):
                method = method.rsplit(".", 1)[0]
            now = self.clock()
            bucket = self._buckets.setdefault(client, _Bucket(now))
            if not bucket.take(now, self.rate, self.burst):
                self._stats["query_limit_exceeded"] += 1
                return 503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
            self._stats["methods"][method] += 1
        params.pop("auth", None)
        try:
            answer = self._invoke(call, method, params)
        except ApiError as error:
            if error.code == "OPERATION_TIME_LIMIT":
                with self._lock:
                    self._stats["operation_time_limit"] += 1
            return error.status, error.body()
        payload: dict[str, Any] = {"result": answer.result}
        if answer.next is not None:
            payload["next"] = answer.next
        if answer.total is not None:
            payload["total"] = answer.total
        payload["time"] = self._time_block(method, started, answer.cost, record=True)
        return 200, payload

    def _time_block(self, method: str, started: float, cost: float, *, record: bool) -> dict[str, Any]:
        """The ``time`` object; records the call's server time against the method's operating limit."""
        processing = time.perf_counter() - started + cost
        with self._lock:
            finish = self.clock()
            start = finish - processing
            if record:
                operating, reset_at = self._meter.add(method, finish, processing)
                self._stats["operating"][method] += processing
            else:
                operating, reset_at = self._meter.state(method, finish)
        return {
            "start": round(start, 6),
            "finish": round(finish, 6),
            "duration": round(finish - start, 6),
            "processing": round(processing, 6),
            "date_start": dt.datetime.fromtimestamp(start, self.tz).replace(microsecond=0).isoformat(),
            "date_finish": dt.datetime.fromtimestamp(finish, self.tz).replace(microsecond=0).isoformat(),
            "operating_reset_at": reset_at,
            "operating": operating,
        }

    def _invoke(self, call: _Call, method: str, params: dict[str, Any]) -> _Answer:
        """Run one method after the scope, auth-type and operating-limit checks."""
        handler = self._methods.get(method)
        if handler is None:
            raise _not_found_method()
        if handler.scope != "basic" and handler.scope not in call.scopes:
            token = "webhook token" if call.kind == "webhook" else "access token"
            raise ApiError(401, "insufficient_scope",
                           f"The request requires higher privileges than provided by the {token}")
        if method in self.denied:  # the documented refusal: an empty code, the reason in the description
            raise ApiError(400, "", "Access denied.")
        with self._lock:
            if self._meter.blocked(method, self.clock()):
                raise ApiError(429, "OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.")
        if handler.upper:
            params = {str(key).upper(): value for key, value in params.items()}
        outcome = handler.run(call, params)
        answer = outcome if isinstance(outcome, _Answer) else _Answer(outcome)
        if answer.cost and self.count_sleep_scale:
            time.sleep(answer.cost * self.count_sleep_scale)
        return answer

    def _method_table(self) -> dict[str, _Handler]:
        handlers = [
            _Handler("profile", "basic", self._m_profile),
            _Handler("batch", "basic", self._m_batch, upper=False),
            _Handler("event.bind", "basic", self._m_event_bind, upper=False),
            _Handler("event.unbind", "basic", self._m_event_unbind, upper=False),
            _Handler("event.get", "basic", self._m_event_get, upper=False),
            _Handler("crm.status.list", "crm", self._m_status_list),
            _Handler("crm.timeline.comment.add", "crm", self._m_comment_add, upper=False),
            _Handler("crm.activity.todo.add", "crm", self._m_todo_add, upper=False),
            _Handler("crm.category.list", "crm", self._m_category_list, upper=False),
            _Handler("crm.stagehistory.list", "crm", self._m_stagehistory_list, upper=False),
            _Handler("crm.item.list", "crm", self._m_item_list, upper=False),
            _Handler("crm.requisite.list", "crm", _on_table(self._m_list, self._requisites)),
            _Handler("crm.activity.list", "crm", _on_table(self._m_list, self._activity_rows)),
            _Handler("crm.activity.get", "crm", _on_table(self._m_get, self._activity_rows)),
            _Handler("crm.activity.fields", "crm",
                     _on_table(lambda call, t, p: self._m_fields(t), self._activity_rows)),
        ]
        for name, table in (("contact", self._contacts), ("deal", self._deals), ("company", self._companies)):
            handlers += [
                _Handler(f"crm.{name}.list", "crm", _on_table(self._m_list, table)),
                _Handler(f"crm.{name}.get", "crm", _on_table(self._m_get, table)),
                _Handler(f"crm.{name}.add", "crm", _on_table(self._m_add, table)),
                _Handler(f"crm.{name}.update", "crm", _on_table(self._m_update, table)),
                _Handler(f"crm.{name}.delete", "crm", _on_table(self._m_delete, table)),
                _Handler(f"crm.{name}.fields", "crm", _on_table(lambda call, t, p: self._m_fields(t), table)),
            ]
        return {handler.name: handler for handler in handlers}
