"""A local Bitrix24 portal that speaks the documented REST protocol, limits and quirks.

The demo, the end-to-end tests and the benchmarks talk to this emulator instead
of a cloud portal, and the Bitrix24 plugin is checked against it, so it is
written from the public REST documentation rather than from the plugin's
expectations: where the plugin and a real portal could disagree, the emulator
sides with the portal.

What it reproduces:

- Addresses: incoming webhooks ``/rest/USER_ID/CODE/METHOD[.json]`` and OAuth
  calls ``/rest/METHOD?auth=TOKEN``; parameters in the query string, a
  form-encoded body with PHP-style keys (``filter[>ID]=5``, ``select[]=PHONE``)
  or a JSON body.
- Errors in the portal's shapes and HTTP statuses (see ``ApiError`` uses).
- OAuth 2.0: ``/oauth/authorize/`` and ``/oauth/token/`` with authorization
  codes that live 30 seconds, access tokens of a configurable lifetime and
  refresh tokens that are replaced on every refresh.
- List semantics: 50 per page, ``total`` and ``next``; ``start=-1`` skips the
  count (the answer then carries ``total: 0`` and no ``next``); multifields
  (PHONE, EMAIL, WEB, IM) only when named in ``select``.
- Limits: a leaky bucket per client address (503 QUERY_LIMIT_EXCEEDED) and the
  per-method operating limit (429 OPERATION_TIME_LIMIT), including the server
  time a counted list spends in proportion to the rows its filter matches -
  accounted, never slept unless asked to.
- ``batch`` with ``$result[...]`` substitution, PHP's ``[]`` for empty maps,
  and one leaky-bucket unit for the whole batch.
- Events: handlers bound with ``event.bind`` (apps only) or outgoing webhooks
  receive form-encoded POSTs from a background thread, never retried.

`Portal` holds the state and answers requests in-process (`Portal.handle_http`);
`SandboxServer` serves it over HTTP; `serve` runs one from the command line.
"""

from __future__ import annotations

import collections
import datetime as dt
import email.parser
import json
import queue
import random
import re
import secrets
import string
import threading
import time
import urllib.error
import urllib.request
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from plugins.bitrix24 import sandbox_data as data

MOSCOW = dt.timezone(dt.timedelta(hours=3), "MSK")
PAGE_SIZE = 50
MAX_BATCH = 50
# The REST docs measured a counted crm.lead.list over 2,387,743 rows at 49.9 s of server time.
COUNT_SECONDS_PER_ROW = 49.9 / 2_387_743
PLANS = {"standard": (2.0, 50), "enterprise": (5.0, 250)}  # leaky bucket: drain per second, burst
OPERATING_LIMIT = 480.0  # seconds of server time per method ...
OPERATING_WINDOW = 600.0  # ... within this many seconds
CODE_LIFETIME = 30  # seconds an authorization code stays valid
REFRESH_LIFETIME = 180 * 86_400
OAUTH_SERVER_DOMAIN = "oauth.bitrix.info"  # what the token answer calls its "domain"
EVENTS = {
    "ONCRMCONTACTADD": ("contact", "add"), "ONCRMCONTACTUPDATE": ("contact", "update"),
    "ONCRMCONTACTDELETE": ("contact", "delete"), "ONCRMDEALADD": ("deal", "add"),
    "ONCRMDEALUPDATE": ("deal", "update"), "ONCRMDEALDELETE": ("deal", "delete"),
}
OWNER_TYPES = {2: "deal", 3: "contact"}  # CRM entity type ids used by crm.activity.todo.add
JSON_TYPE = "application/json; charset=utf-8"


class ApiError(Exception):
    """An error answer: HTTP status plus the portal's ``error`` and ``error_description``."""

    def __init__(self, status: int, code: str, description: str = "") -> None:
        super().__init__(f"{status} {code}: {description}")
        self.status = status
        self.code = code
        self.description = description

    def body(self) -> dict[str, str]:
        return {"error": self.code, "error_description": self.description}


def _not_found_method() -> ApiError:
    return ApiError(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")


# --------------------------------------------------------------------------- PHP-style parameters


def php_params(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Nest ``a[b][]=x`` pairs the way PHP builds $_REQUEST; arrays keyed 0..n-1 become lists.

    Clients send nested parameters three ways (query string, form body, JSON);
    folding the first two into the JSON shape lets every method read one form.
    """
    root: dict[str, Any] = {}
    for key, value in pairs:
        bracket = key.find("[")
        if bracket <= 0:
            root[key] = value
            continue
        segments = [key[:bracket]] + re.findall(r"\[([^\]]*)\]", key[bracket:])
        node = root
        for position, segment in enumerate(segments):
            if segment == "":
                numbers = [int(k) for k in node if isinstance(k, str) and k.isdigit()]
                segment = str(max(numbers) + 1 if numbers else 0)
            if position == len(segments) - 1:
                node[segment] = value
            else:
                child = node.get(segment)
                if not isinstance(child, dict):
                    child = {}
                    node[segment] = child
                node = child
    return _listify(root)


def _listify(value: Any) -> Any:
    if isinstance(value, dict):
        value = {key: _listify(item) for key, item in value.items()}
        if value and list(value) == [str(index) for index in range(len(value))]:
            return list(value.values())
    return value


def parse_query(text: str) -> dict[str, Any]:
    """A query string or form body with PHP-style keys, as nested dicts and lists."""
    return php_params(parse_qsl(text, keep_blank_values=True))


def php_truthy(value: Any) -> bool:
    """PHP's idea of true: "" and "0" are false, "false" is true."""
    if isinstance(value, str):
        return value not in ("", "0")
    return bool(value)


def php_intval(value: Any) -> int:
    """PHP's intval: leading digits of a string, 0 for anything else."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        match = re.match(r"\s*([+-]?\d+)", value)
        return int(match.group(1)) if match else 0
    return 0


def php_json(value: Any) -> Any:
    """PHP's json_encode shape: an empty map is ``[]`` and a map keyed 0..n-1 is a list."""
    if isinstance(value, dict):
        if not value:
            return []
        if list(value) == [str(index) for index in range(len(value))]:
            return [php_json(item) for item in value.values()]
        return {key: php_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [php_json(item) for item in value]
    return value


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def encode_json(payload: Any) -> bytes:
    """JSON as the portal's PHP writes it: non-ASCII as \\u escapes and slashes as \\/."""
    text = json.dumps(payload, ensure_ascii=True, separators=(",", ":"))
    return text.replace("/", "\\/").encode("ascii")


# --------------------------------------------------------------------------- values and time


_KIND_BY_TYPE = {
    "integer": "int", "user": "int", "crm_lead": "int", "crm_company": "int", "crm_contact": "int",
    "crm_quote": "int", "crm_category": "int", "double": "float", "date": "date", "datetime": "datetime",
    "crm_multifield": "multi",
}


def _parse_moment(value: Any, tz: dt.tzinfo) -> dt.datetime | None:
    """A datetime from the formats clients send: ISO 8601 (with or without offset) or DD.MM.YYYY[ HH:MM[:SS]]."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=tz)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=tz)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1) if "-" in text[:5] else text)
    except ValueError:
        match = re.fullmatch(r"(\d{1,2})\.(\d{1,2})\.(\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?", text)
        if not match:
            return None
        day, month, year, hour, minute, second = match.groups()
        try:
            moment = dt.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
        except ValueError:
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)


def _parse_date(value: Any, tz: dt.tzinfo) -> dt.date | None:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    moment = _parse_moment(value, tz)
    return moment.astimezone(tz).date() if moment else None


def _typed(kind: str, value: Any, tz: dt.tzinfo) -> Any:
    """A filter or field value converted to the Python type the records hold."""
    if kind == "int":
        return php_intval(value)
    if kind == "float":
        try:
            return float(value)
        except (TypeError, ValueError):
            return 0.0
    if kind == "datetime":
        moment = _parse_moment(value, tz)
        return None if moment is None else moment.timestamp()
    if kind == "date":
        return _parse_date(value, tz)
    if value is None:
        return None
    if isinstance(value, bool):
        return "Y" if value else "N"
    return str(value)


# --------------------------------------------------------------------------- limits


class _Bucket:
    """The leaky bucket: every request adds one, the level drains at a fixed rate."""

    __slots__ = ("level", "last")

    def __init__(self, now: float) -> None:
        self.level = 0.0
        self.last = now

    def take(self, now: float, rate: float, burst: int) -> bool:
        self.level = max(0.0, self.level - max(0.0, now - self.last) * rate)
        self.last = now
        if self.level + 1 > burst:
            return False
        self.level += 1
        return True


class _OperatingMeter:
    """Server time per method in a sliding window; a method over the limit is blocked."""

    def __init__(self, limit: float, window: float) -> None:
        self.limit = limit
        self.window = window
        self._records: dict[str, collections.deque[tuple[float, float]]] = {}
        self._sums: dict[str, float] = {}

    def _prune(self, method: str, now: float) -> None:
        records = self._records.get(method)
        while records and records[0][0] <= now - self.window:
            _, cost = records.popleft()
            self._sums[method] -= cost

    def blocked(self, method: str, now: float) -> bool:
        self._prune(method, now)
        return self._sums.get(method, 0.0) > self.limit

    def add(self, method: str, now: float, cost: float) -> tuple[float, int]:
        self._prune(method, now)
        self._records.setdefault(method, collections.deque()).append((now, cost))
        self._sums[method] = self._sums.get(method, 0.0) + cost
        return self.state(method, now)

    def state(self, method: str, now: float) -> tuple[float, int]:
        """(accumulated seconds, when part of the limit is released) for the method."""
        self._prune(method, now)
        records = self._records.get(method)
        oldest = records[0][0] if records else now
        return round(self._sums.get(method, 0.0), 6), int(oldest + self.window)


# --------------------------------------------------------------------------- records and queries


_FILTER_KEY = re.compile(r"^(>=|<=|!=|!@|!%|=%|%=|>|<|@|%|=|!)?(.+)$")


class _Table:
    """One CRM entity's records with the list query engine (filter, order, paging, counting)."""

    def __init__(self, name: str, specs: tuple[data.FieldSpec, ...], rows: dict[int, dict[str, Any]],
                 tz: dt.tzinfo) -> None:
        self.name = name
        self.specs = specs
        self.tz = tz
        self.kinds = {spec[0]: _KIND_BY_TYPE.get(spec[1], "str") for spec in specs}
        self.fields = [spec[0] for spec in specs]
        self.multi = [name for name in self.fields if self.kinds[name] == "multi"]
        self.plain = [name for name in self.fields if self.kinds[name] != "multi" and not name.startswith("UF_")]
        self.user_fields = [name for name in self.fields if name.startswith("UF_")]
        self.rows = rows
        self.ids = sorted(rows)
        self.next_id = (self.ids[-1] + 1) if self.ids else 1
        self.version = 0
        self._cache: collections.OrderedDict[tuple[Any, ...], list[int]] = collections.OrderedDict()

    # ---- values

    def value(self, row: dict[str, Any], name: str) -> Any:
        if name == "HAS_PHONE":
            return "Y" if row.get("PHONE") else "N"
        if name == "HAS_EMAIL":
            return "Y" if row.get("EMAIL") else "N"
        value = row.get(name)
        if value is None and name in data.CHAR_DEFAULTS:
            return data.CHAR_DEFAULTS[name]
        return value

    def render_value(self, row: dict[str, Any], name: str) -> Any:
        kind = self.kinds[name]
        value = self.value(row, name)
        if kind == "multi":
            return [{"ID": str(item[0]), "VALUE_TYPE": item[1], "VALUE": item[2], "TYPE_ID": name}
                    for item in value or ()]
        if name == "OPPORTUNITY" or name == "TAX_VALUE":
            return f"{value or 0:.2f}"
        if value is None:
            return "" if kind == "date" else None
        if kind == "int":
            return str(value)
        if kind == "datetime":
            return dt.datetime.fromtimestamp(value, self.tz).isoformat()
        if kind == "date":
            # Date fields come back as UTC midnight in the portal's zone, e.g. 2001-11-11T03:00:00+03:00.
            return dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc).astimezone(self.tz).isoformat()
        if kind == "float":
            return str(value)
        return value

    def render(self, row: dict[str, Any], select: list[str] | None = None) -> dict[str, Any]:
        """The record as the portal returns it; multifields only when selected and non-empty."""
        names = self.fields if select is None else select
        out: dict[str, Any] = {}
        for name in names:
            if self.kinds[name] == "multi":
                if row.get(name):
                    out[name] = self.render_value(row, name)
            else:
                out[name] = self.render_value(row, name)
        return out

    def expand_select(self, select: Any) -> list[str]:
        """'*' is every plain field, 'UF_*' every custom field; multifields only by name; ID always."""
        wanted = [str(item).strip().upper() for item in _as_list(select) if str(item).strip()]
        if not wanted:
            wanted = ["*", "UF_*"]
        chosen = {"ID"}
        for item in wanted:
            if item == "*":
                chosen.update(self.plain)
            elif item == "UF_*":
                chosen.update(self.user_fields)
            elif item in self.kinds:
                chosen.add(item)
        return [name for name in self.fields if name in chosen]

    # ---- changes

    def insert(self, row: dict[str, Any]) -> int:
        row_id = self.next_id
        self.next_id += 1
        row["ID"] = row_id
        self.rows[row_id] = row
        self.ids.append(row_id)
        self.version += 1
        return row_id

    def touched(self) -> None:
        self.version += 1

    def delete(self, row_id: int) -> None:
        del self.rows[row_id]
        index = bisect_left(self.ids, row_id)
        if index < len(self.ids) and self.ids[index] == row_id:
            del self.ids[index]
        self.version += 1

    # ---- queries

    def compile_filter(self, raw: Any) -> list[tuple[str, str, Any]]:
        if raw is None or raw == "" or isinstance(raw, list):
            return []
        if not isinstance(raw, dict):
            raise ApiError(400, "", "Parameter 'filter' must be array.")
        conditions = []
        for key, value in raw.items():
            match = _FILTER_KEY.match(str(key))
            if not match:
                continue
            op, name = match.group(1) or "=", match.group(2).upper()
            if name not in self.kinds and name not in ("HAS_PHONE", "HAS_EMAIL"):
                continue  # the portal ignores fields it does not know
            kind = self.kinds.get(name, "str")
            if op in ("@", "!@") or isinstance(value, (list, dict)):
                values = [_typed("str" if kind == "multi" else kind, item, self.tz) for item in _as_list(value)]
                conditions.append((name, "!in" if op in ("!@", "!", "!=") else "in", values))
                continue
            if op in ("%", "=%", "%=", "!%"):
                text = "" if value is None else str(value)
                if op in ("=%", "%="):
                    pattern = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in text)
                    conditions.append((name, "like", re.compile(pattern, re.IGNORECASE | re.DOTALL)))
                else:
                    conditions.append((name, "!contains" if op == "!%" else "contains", text.casefold()))
                continue
            typed = _typed("str" if kind == "multi" else kind, value, self.tz)
            if kind in ("datetime", "date") and typed is None and value not in (None, ""):
                continue  # an unreadable date does not restrict the list
            conditions.append((name, {"=": "eq", "!": "ne", "!=": "ne"}.get(op, op), typed))
        return conditions

    def _matches(self, row: dict[str, Any], conditions: list[tuple[str, str, Any]]) -> bool:
        for name, op, wanted in conditions:
            actual = self.value(row, name)
            if self.kinds.get(name) == "multi":
                values = [item[2].strip().casefold() for item in actual or ()]
                if op in ("eq", "in"):
                    targets = wanted if op == "in" else [wanted]
                    if not any(str(target).strip().casefold() in values for target in targets if target is not None):
                        return False
                elif op in ("ne", "!in"):
                    targets = wanted if op == "!in" else [wanted]
                    if any(str(target).strip().casefold() in values for target in targets if target is not None):
                        return False
                elif op == "contains":
                    if not any(wanted in value for value in values):
                        return False
                elif op == "!contains":
                    if any(wanted in value for value in values):
                        return False
                elif op == "like":
                    if not any(wanted.fullmatch(value) for value in values):
                        return False
                else:
                    return False
                continue
            if isinstance(actual, str):
                actual_cmp: Any = actual.casefold()
                wanted_cmp: Any = wanted.casefold() if isinstance(wanted, str) else wanted
                if op in ("in", "!in"):
                    wanted_cmp = [item.casefold() if isinstance(item, str) else item for item in wanted]
            else:
                actual_cmp, wanted_cmp = actual, wanted
            if op == "eq":
                if wanted_cmp in ("", None):
                    if actual_cmp not in ("", None):
                        return False
                elif actual_cmp != wanted_cmp:
                    return False
            elif op == "ne":
                if wanted_cmp in ("", None):
                    if actual_cmp in ("", None):
                        return False
                elif actual_cmp == wanted_cmp:
                    return False
            elif op == "in":
                if actual_cmp not in wanted_cmp:
                    return False
            elif op == "!in":
                if actual_cmp in wanted_cmp:
                    return False
            elif op == "contains":
                if actual_cmp is None or wanted not in str(actual_cmp):
                    return False
            elif op == "!contains":
                if actual_cmp is not None and wanted in str(actual_cmp):
                    return False
            elif op == "like":
                if actual is None or not wanted.fullmatch(str(actual)):
                    return False
            else:
                if actual_cmp is None or wanted_cmp is None:
                    return False
                try:
                    if op == ">" and not actual_cmp > wanted_cmp:
                        return False
                    if op == ">=" and not actual_cmp >= wanted_cmp:
                        return False
                    if op == "<" and not actual_cmp < wanted_cmp:
                        return False
                    if op == "<=" and not actual_cmp <= wanted_cmp:
                        return False
                except TypeError:
                    return False
        return True

    def compile_order(self, raw: Any) -> list[tuple[str, bool]]:
        if raw is None or raw == "" or isinstance(raw, list):
            return []
        if not isinstance(raw, dict):
            raise ApiError(400, "", "Parameter 'order' must be array.")
        order = []
        for key, direction in raw.items():
            name = str(key).upper()
            if name in self.kinds and self.kinds[name] != "multi":
                order.append((name, str(direction).strip().upper() == "DESC"))
        return order

    def _id_range(self, conditions: list[tuple[str, str, Any]]) -> tuple[int, int]:
        """Index bounds into self.ids implied by ID conditions, so paging by ID never scans the whole table."""
        low, high = 0, len(self.ids)
        for name, op, wanted in conditions:
            if name != "ID" or not isinstance(wanted, int):
                continue
            if op == ">":
                low = max(low, bisect_left(self.ids, wanted + 1))
            elif op == ">=":
                low = max(low, bisect_left(self.ids, wanted))
            elif op == "<":
                high = min(high, bisect_left(self.ids, wanted))
            elif op == "<=":
                high = min(high, bisect_left(self.ids, wanted + 1))
            elif op == "eq":
                low = max(low, bisect_left(self.ids, wanted))
                high = min(high, bisect_left(self.ids, wanted + 1))
        return low, high

    def _sort(self, ids: list[int], order: list[tuple[str, bool]]) -> list[int]:
        for name, descending in reversed(order):
            def key(row_id: int, name: str = name) -> tuple[bool, Any]:
                value = self.value(self.rows[row_id], name)
                if isinstance(value, str):
                    value = value.casefold()
                return (value is not None, value if value is not None else 0)
            ids = sorted(ids, key=key, reverse=descending)
        return ids

    def find(self, raw_filter: Any, raw_order: Any, start: int) -> tuple[list[dict[str, Any]], int | None]:
        """One page of matching records and, unless start < 0, the number of all matches."""
        conditions = self.compile_filter(raw_filter)
        order = self.compile_order(raw_order) or [("ID", False)]
        by_id = len(order) == 1 and order[0][0] == "ID"
        low, high = self._id_range(conditions)
        if start < 0 and by_id:
            page: list[dict[str, Any]] = []
            indexes = range(high - 1, low - 1, -1) if order[0][1] else range(low, high)
            for index in indexes:
                row = self.rows[self.ids[index]]
                if self._matches(row, conditions):
                    page.append(row)
                    if len(page) == PAGE_SIZE:
                        break
            return page, None
        key = (repr(conditions), repr(order), self.version)
        matched = self._cache.get(key)
        if matched is None:
            matched = [self.ids[index] for index in range(low, high)
                       if self._matches(self.rows[self.ids[index]], conditions)]
            if by_id:
                if order[0][1]:
                    matched.reverse()
            else:
                matched = self._sort(matched, order)
            self._cache[key] = matched
            while len(self._cache) > 8:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        offset = 0 if start < 0 else (start // PAGE_SIZE) * PAGE_SIZE
        page = [self.rows[row_id] for row_id in matched[offset:offset + PAGE_SIZE]]
        return page, (None if start < 0 else len(matched))


# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class Webhook:
    """An incoming webhook: calls run as `user_id` within `scopes`."""

    user_id: int
    code: str
    scopes: frozenset[str]

    @property
    def path(self) -> str:
        return f"/rest/{self.user_id}/{self.code}/"


@dataclass(frozen=True)
class OAuthApp:
    """The local application installed on the portal (client credentials and its event token)."""

    client_id: str
    client_secret: str
    application_token: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class OAuthAppInfo:
    """Everything a client needs to connect to the emulator as an OAuth application."""

    client_id: str
    client_secret: str
    application_token: str
    member_id: str
    scope: str
    authorize_url: str
    token_url: str
    client_endpoint: str


@dataclass
class _Token:
    """An access or refresh token: whose it is and until when it works."""

    user_id: int
    expires: float


@dataclass
class _Call:
    """Who is calling: through which credentials, as which user, within which scopes."""

    kind: str  # "webhook" | "oauth"
    user_id: int
    scopes: frozenset[str]
    client: str


@dataclass
class _Answer:
    result: Any
    total: int | None = None
    next: int | None = None
    cost: float = 0.0  # modelled server time on top of the real processing time


@dataclass
class _Handler:
    name: str
    scope: str  # "basic" is open to every caller
    run: Callable[[_Call, dict[str, Any]], Any]
    upper: bool = True  # the legacy crm methods read parameters case-insensitively


# --------------------------------------------------------------------------- events


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
        except Exception as error:  # a handler that is down or slow is logged and forgotten
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


# --------------------------------------------------------------------------- the portal


def _token(rng: random.Random, length: int = 32, alphabet: str = string.ascii_lowercase + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


class Portal:
    """A Bitrix24 portal's state and its REST answers; thread-safe.

    `contacts`, `seed` and `first_person` choose the sampledata people it holds
    (people first_person+1 .. first_person+contacts). `plan` sets the leaky
    bucket ("standard": 2/s and 50, "enterprise": 5/s and 250) unless `rate`
    and `burst` are given. `clock` (epoch seconds) drives every limit, token
    lifetime and record date, so tests can move time without sleeping.
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
        seeded = data.seed_portal(contacts, seed, first_person, today=today)
        self._contacts = _Table("contact", data.CONTACT_FIELDS, seeded.contacts, tz)
        self._deals = _Table("deal", data.DEAL_FIELDS, seeded.deals, tz)
        self._next_multifield = seeded.next_multifield_id
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
        self.reset_stats()

    # ------------------------------------------------------------------ set-up

    def add_webhook(self, user_id: int = 1, scopes: Iterable[str] = ("crm", "user"), *,
                    code: str | None = None) -> Webhook:
        """Create an incoming webhook for `user_id` with the given scopes."""
        with self._lock:
            hook = Webhook(user_id, code or _token(self._secret_rng, 16), frozenset(scopes))
            self.webhooks[(user_id, hook.code)] = hook
            return hook

    def remove_webhook(self, hook: Webhook) -> None:
        """Delete a webhook; calls with its code then fail as with any wrong code."""
        with self._lock:
            self.webhooks.pop((hook.user_id, hook.code), None)

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

    def bind_address(self, base_url: str) -> None:
        """Tell the portal where it is served, for endpoints in tokens and events."""
        self.base_url = base_url.rstrip("/")
        self.domain = urlsplit(self.base_url).netloc

    def authorization_code(self, user_id: int = 1) -> str:
        """An authorization code for the app, as the portal hands one over after the user signs in (30 s)."""
        with self._lock:
            code = _token(self._secret_rng, 32)
            self._codes[code] = (user_id, self.clock() + CODE_LIFETIME)
            return code

    def app_info(self) -> OAuthAppInfo:
        return OAuthAppInfo(
            client_id=self.app.client_id, client_secret=self.app.client_secret,
            application_token=self.app.application_token, member_id=self.member_id,
            scope=",".join(sorted(self.app.scopes)), authorize_url=f"{self.base_url}/oauth/authorize/",
            token_url=f"{self.base_url}/oauth/token/", client_endpoint=f"{self.base_url}/rest/",
        )

    # ------------------------------------------------------------------ reading state

    @property
    def contact_count(self) -> int:
        with self._lock:
            return len(self._contacts.rows)

    @property
    def deal_count(self) -> int:
        with self._lock:
            return len(self._deals.rows)

    def contact_ids(self) -> list[int]:
        with self._lock:
            return list(self._contacts.ids)

    def deal_ids(self) -> list[int]:
        with self._lock:
            return list(self._deals.ids)

    def contact(self, contact_id: int) -> dict[str, Any]:
        """The contact as crm.contact.get returns it; KeyError if there is none."""
        with self._lock:
            return self._contacts.render(self._contacts.rows[contact_id])

    def deal(self, deal_id: int) -> dict[str, Any]:
        """The deal as crm.deal.get returns it; KeyError if there is none."""
        with self._lock:
            return self._deals.render(self._deals.rows[deal_id])

    def timeline_comments(self, entity_type: str | None = None, entity_id: int | None = None) -> list[dict[str, Any]]:
        """Comments added through crm.timeline.comment.add, oldest first."""
        with self._lock:
            return [dict(item) for item in self._comments
                    if (entity_type is None or item["ENTITY_TYPE"] == entity_type)
                    and (entity_id is None or item["ENTITY_ID"] == entity_id)]

    def activities(self, owner_type_id: int | None = None, owner_id: int | None = None) -> list[dict[str, Any]]:
        """To-dos added through crm.activity.todo.add, oldest first."""
        with self._lock:
            return [dict(item) for item in self._activities
                    if (owner_type_id is None or item["ownerTypeId"] == owner_type_id)
                    and (owner_id is None or item["ownerId"] == owner_id)]

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

    # ------------------------------------------------------------------ faults

    def cut_answers(self, count: int = 1, *, method: str | None = None, mode: str = "drop") -> None:
        """Cut the next `count` REST answers (to `method` only, when given) off mid-body.

        A portal's answers break off now and then (a balancer restarts, a
        connection is reset). "drop" sends the headers with the whole
        Content-Length and half the body, then closes the connection;
        "truncate" sends half the body as if it were all of it (a proxy that
        cut it short). The call itself is carried out either way, as it is on
        the portal: only its answer is lost.
        """
        if mode not in ("drop", "truncate"):
            raise ValueError("mode must be 'drop' or 'truncate'")
        with self._lock:
            self._cuts += [(method, mode)] * count

    def _take_cut(self, method: str) -> str | None:
        with self._lock:
            for i, (wanted, mode) in enumerate(self._cuts):
                if wanted is None or wanted.lower() == method:
                    del self._cuts[i]
                    self._stats["answers_cut"] += 1
                    return mode
        return None

    # ------------------------------------------------------------------ statistics

    def reset_stats(self) -> None:
        with self._lock:
            self._stats: dict[str, Any] = {
                "requests": 0, "methods": collections.Counter(), "batches": 0, "batch_commands": 0,
                "batch_methods": collections.Counter(), "statuses": collections.Counter(),
                "query_limit_exceeded": 0, "operation_time_limit": 0, "token_requests": 0,
                "operating": collections.Counter(), "answers_cut": 0,
            }

    def stats(self) -> dict[str, Any]:
        """Request counts since the last reset: total, per method, batch commands, 503s and 429s."""
        with self._lock:
            stats = self._stats
            deliveries = self.event_deliveries
            return {
                "requests": stats["requests"],
                "methods": dict(stats["methods"]),
                "batches": stats["batches"],
                "batch_commands": stats["batch_commands"],
                "batch_methods": dict(stats["batch_methods"]),
                "statuses": {str(key): value for key, value in stats["statuses"].items()},
                "status_503": stats["statuses"].get(503, 0),
                "status_429": stats["statuses"].get(429, 0),
                "query_limit_exceeded": stats["query_limit_exceeded"],
                "operation_time_limit": stats["operation_time_limit"],
                "token_requests": stats["token_requests"],
                "operating_seconds": {key: round(value, 6) for key, value in stats["operating"].items()},
                "answers_cut": stats["answers_cut"],
                "events_sent": sum(1 for item in deliveries if item.error is None),
                "events_failed": sum(1 for item in deliveries if item.error is not None),
                "contacts": len(self._contacts.rows),
                "deals": len(self._deals.rows),
            }

    # ------------------------------------------------------------------ Python-side changes

    def add_contact(self, fields: Mapping[str, Any], *, user_id: int = 1) -> int:
        """Create a contact from REST-style fields; fires ONCRMCONTACTADD."""
        return self._add(self._contacts, dict(fields), user_id, None)

    def update_contact(self, contact_id: int, fields: Mapping[str, Any], *, user_id: int = 1) -> None:
        """Change a contact (multifields as crm.contact.update treats them); bumps DATE_MODIFY, fires ONCRMCONTACTUPDATE."""
        self._update(self._contacts, contact_id, dict(fields), user_id, None)

    def delete_contact(self, contact_id: int) -> None:
        """Delete a contact; fires ONCRMCONTACTDELETE."""
        self._delete(self._contacts, contact_id, None)

    def add_deal(self, fields: Mapping[str, Any], *, user_id: int = 1) -> int:
        """Create a deal from REST-style fields; fires ONCRMDEALADD."""
        return self._add(self._deals, dict(fields), user_id, None)

    def update_deal(self, deal_id: int, fields: Mapping[str, Any], *, user_id: int = 1) -> None:
        """Change a deal; bumps DATE_MODIFY, fires ONCRMDEALUPDATE."""
        self._update(self._deals, deal_id, dict(fields), user_id, None)

    def delete_deal(self, deal_id: int) -> None:
        """Delete a deal; fires ONCRMDEALDELETE."""
        self._delete(self._deals, deal_id, None)

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
            return 404, {"Content-Type": "text/html; charset=utf-8"}, b"<html><body><h1>404 Not Found</h1></body></html>"
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
                    payload = part.get_payload(decode=True) or b""
                    pairs.append((str(name), payload.decode("utf-8", "replace")))
            return php_params(pairs)
        return parse_query(body.decode("utf-8"))

    def _sandbox_route(self, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
        if path.rstrip("/") == "/_sandbox/stats":
            return 200, {"Content-Type": JSON_TYPE}, json.dumps(self.stats()).encode()
        if path.rstrip("/") == "/_sandbox/reset-stats" and method == "POST":
            self.reset_stats()
            return 200, {"Content-Type": JSON_TYPE}, b'{"result":true}'
        return 404, {"Content-Type": JSON_TYPE}, b'{"error":"not found"}'

    # ------------------------------------------------------------------ OAuth server

    def _token_answer(self, user_id: int) -> dict[str, Any]:
        now = self.clock()
        access = _token(self._secret_rng)
        refresh = _token(self._secret_rng)
        self._tokens[access] = _Token(user_id, now + self.token_lifetime)
        self._refresh[refresh] = _Token(user_id, now + REFRESH_LIFETIME)
        return {
            "access_token": access,
            "client_endpoint": f"{self.base_url}/rest/",
            "domain": OAUTH_SERVER_DOMAIN,
            "expires": int(now + self.token_lifetime),
            "expires_in": self.token_lifetime,
            "member_id": self.member_id,
            "refresh_token": refresh,
            "scope": ",".join(sorted(self.app.scopes)),
            "server_endpoint": f"{self.base_url}/rest/",
            "status": "L",
            "user_id": user_id,
        }

    def _oauth_token(self, params: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        status, payload = self._oauth_grant(params)
        return _json_answer(status, payload)

    def _oauth_grant(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self._stats["token_requests"] += 1
            grant = str(params.get("grant_type", ""))
            if grant not in ("authorization_code", "refresh_token"):
                return 400, {"error": "invalid_request", "error_description": "Invalid grant_type parameter"}
            if params.get("client_id") != self.app.client_id or params.get("client_secret") != self.app.client_secret:
                return 400, {"error": "invalid_client", "error_description": "Invalid client credentials"}
            now = self.clock()
            if grant == "authorization_code":
                code = str(params.get("code", ""))
                if not code:
                    return 400, {"error": "invalid_request", "error_description": 'No "code" parameter found'}
                issued = self._codes.pop(code, None)
                if issued is None or issued[1] < now:
                    return 400, {"error": "invalid_grant", "error_description": "Invalid authorization code"}
                return 200, self._token_answer(issued[0])
            refresh = str(params.get("refresh_token", ""))
            if not refresh:
                return 400, {"error": "invalid_request", "error_description": 'No "refresh_token" parameter found'}
            record = self._refresh.pop(refresh, None)  # a refresh token works once
            if record is None or record.expires < now:
                return 400, {"error": "invalid_grant", "error_description": "Invalid refresh token"}
            return 200, self._token_answer(record.user_id)

    def _oauth_authorize(self, params: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        """The user is signed in already: hand the app a code, by redirect when it asks for one."""
        if params.get("client_id") != self.app.client_id:
            return _json_answer(400, {"error": "invalid_client", "error_description": "Unknown client_id"})
        code = self.authorization_code(php_intval(params.get("user_id", 1)) or 1)
        answer = {"code": code, "state": str(params.get("state", "")), "domain": self.domain,
                  "member_id": self.member_id, "scope": ",".join(sorted(self.app.scopes)),
                  "server_domain": OAUTH_SERVER_DOMAIN}
        redirect = params.get("redirect_uri")
        if redirect:
            separator = "&" if "?" in str(redirect) else "?"
            return 302, {"Location": f"{redirect}{separator}{urlencode(answer)}", "Content-Type": "text/plain"}, b""
        return _json_answer(200, answer)

    # ------------------------------------------------------------------ REST

    def _authenticate(self, rest_path: str, params: dict[str, Any], client: str) -> tuple[_Call, str]:
        segments = rest_path.split("/")
        if segments and segments[-1] == "":
            segments = segments[:-1]
        if len(segments) == 3:
            user, code, method = segments
            hook = self.webhooks.get((php_intval(user), code)) if user.isdigit() else None
            if hook is None:
                if self.legacy_auth_errors:
                    raise ApiError(401, "NO_AUTH_FOUND", "Wrong authorization data")
                raise ApiError(401, "INVALID_CREDENTIALS", "Invalid request credentials")
            return _Call("webhook", hook.user_id, hook.scopes, client), method
        if len(segments) != 1 or not segments[0]:
            raise _not_found_method()
        auth = params.get("auth")
        if not auth or not isinstance(auth, str):
            raise ApiError(401, "NO_AUTH_FOUND", "Wrong authorization data")
        token = self._tokens.get(auth)
        if token is None:
            raise ApiError(401, "invalid_token", "Unable to get application by token")
        if token.expires <= self.clock():
            raise ApiError(401, "expired_token", "The access token provided has expired.")
        return _Call("oauth", token.user_id, self.app.scopes, client), segments[0]

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
            raise ApiError(401, "insufficient_scope", f"The request requires higher privileges than provided by the {token}")
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
        ]
        for name, table in (("contact", self._contacts), ("deal", self._deals)):
            handlers += [
                _Handler(f"crm.{name}.list", "crm", lambda call, p, t=table: self._m_list(call, t, p)),
                _Handler(f"crm.{name}.get", "crm", lambda call, p, t=table: self._m_get(call, t, p)),
                _Handler(f"crm.{name}.add", "crm", lambda call, p, t=table: self._m_add(call, t, p)),
                _Handler(f"crm.{name}.update", "crm", lambda call, p, t=table: self._m_update(call, t, p)),
                _Handler(f"crm.{name}.delete", "crm", lambda call, p, t=table: self._m_delete(call, t, p)),
                _Handler(f"crm.{name}.fields", "crm", lambda call, p, t=table: self._m_fields(t)),
            ]
        return {handler.name: handler for handler in handlers}

    # ------------------------------------------------------------------ methods

    def _m_profile(self, call: _Call, params: dict[str, Any]) -> dict[str, Any]:
        user = data.USERS.get(call.user_id, {"NAME": "", "LAST_NAME": "", "ADMIN": False, "PERSONAL_GENDER": ""})
        return {"ID": str(call.user_id), "ADMIN": user["ADMIN"], "NAME": user["NAME"],
                "LAST_NAME": user["LAST_NAME"], "PERSONAL_GENDER": user["PERSONAL_GENDER"], "TIME_ZONE": ""}

    def _m_list(self, call: _Call, table: _Table, params: dict[str, Any]) -> _Answer:
        start = php_intval(params.get("START", 0))
        with self._lock:
            select = table.expand_select(params.get("SELECT"))
            page, total = table.find(params.get("FILTER"), params.get("ORDER"), start)
            result = [table.render(row, select) for row in page]
        if total is None:
            return _Answer(result, total=0)  # start=-1: no count, no next
        offset = (start // PAGE_SIZE) * PAGE_SIZE if start > 0 else 0
        following = offset + PAGE_SIZE if offset + PAGE_SIZE < total else None
        return _Answer(result, total=total, next=following, cost=total * self.count_cost_per_row)

    @staticmethod
    def _id_param(params: dict[str, Any]) -> int:
        row_id = php_intval(params.get("ID"))
        if row_id <= 0:
            raise ApiError(400, "", "ID is not defined or invalid.")
        return row_id

    def _m_get(self, call: _Call, table: _Table, params: dict[str, Any]) -> dict[str, Any]:
        row_id = self._id_param(params)
        with self._lock:
            row = table.rows.get(row_id)
            if row is None:
                raise ApiError(400, "", "Not found")
            return table.render(row)

    def _m_add(self, call: _Call, table: _Table, params: dict[str, Any]) -> int:
        fields = params.get("FIELDS")
        if not isinstance(fields, dict):
            raise ApiError(400, "", "Parameter 'fields' must be array.")
        return self._add(table, fields, call.user_id, call)

    def _m_update(self, call: _Call, table: _Table, params: dict[str, Any]) -> bool:
        row_id = self._id_param(params)
        fields = params.get("FIELDS")
        if not isinstance(fields, dict):
            raise ApiError(400, "", "Parameter 'fields' must be array.")
        self._update(table, row_id, fields, call.user_id, call)
        return True

    def _m_delete(self, call: _Call, table: _Table, params: dict[str, Any]) -> bool:
        self._delete(table, self._id_param(params), call)
        return True

    @staticmethod
    def _m_fields(table: _Table) -> dict[str, Any]:
        described: dict[str, Any] = {}
        for name, kind, required, read_only, multiple, title, status_type in table.specs:
            item: dict[str, Any] = {"type": kind, "isRequired": required, "isReadOnly": read_only,
                                    "isImmutable": False, "isMultiple": multiple,
                                    "isDynamic": name.startswith("UF_"), "title": title}
            if status_type:
                item["statusType"] = status_type
            if name in data.USER_FIELD_LABELS:
                label = data.USER_FIELD_LABELS[name]
                item.update(listLabel=label, formLabel=label, filterLabel=label)
            described[name] = item
        return described

    def _m_status_list(self, call: _Call, params: dict[str, Any]) -> _Answer:
        rows = data.statuses()
        wanted = params.get("FILTER") if isinstance(params.get("FILTER"), dict) else {}
        for key, value in wanted.items():
            rows = [row for row in rows if str(row.get(str(key).upper())) == str(value)]
        rows.sort(key=lambda row: (row["ENTITY_ID"], int(row["SORT"])))
        return _Answer(rows, total=len(rows))

    # ---- timeline and activities

    def _m_comment_add(self, call: _Call, params: dict[str, Any]) -> int:
        fields = params.get("fields")  # only the lowercase key is accepted by current portals
        if not isinstance(fields, dict):
            raise ApiError(400, "100", "Required fields not provided")
        fields = {str(key).upper(): value for key, value in fields.items()}
        entity_type = str(fields.get("ENTITY_TYPE", "")).lower()
        entity_id = php_intval(fields.get("ENTITY_ID"))
        if not entity_type or entity_id <= 0:
            raise ApiError(400, "100", "Required fields not provided")
        comment = fields.get("COMMENT")
        if comment is None or str(comment).strip() == "":
            raise ApiError(400, "INVALID_ARG_VALUE", "Empty comment")
        with self._lock:
            table = {"contact": self._contacts, "deal": self._deals}.get(entity_type)
            if table is None or entity_id not in table.rows:
                raise ApiError(400, "NOT_FOUND", "Not found.")
            comment_id = len(self._comments) + 1
            self._comments.append({
                "ID": comment_id, "ENTITY_TYPE": entity_type, "ENTITY_ID": entity_id, "COMMENT": str(comment),
                "AUTHOR_ID": php_intval(fields.get("AUTHOR_ID")) or call.user_id, "CREATED": self.clock(),
            })
            return comment_id

    def _m_todo_add(self, call: _Call, params: dict[str, Any]) -> dict[str, int]:
        if any(params.get(name) in (None, "") for name in ("ownerTypeId", "ownerId", "deadline")):
            raise ApiError(400, "100", "Required fields are missing")
        owner_type = php_intval(params["ownerTypeId"])
        owner_id = php_intval(params["ownerId"])
        deadline = _parse_moment(params["deadline"], self.tz)
        if deadline is None:
            raise ApiError(400, "WRONG_DATETIME_FORMAT", "Wrong datetime format")
        with self._lock:
            table = {"contact": self._contacts, "deal": self._deals}.get(OWNER_TYPES.get(owner_type, ""))
            if table is None or owner_id not in table.rows:
                raise ApiError(400, "NOT_FOUND", "Not found.")
            activity_id = len(self._activities) + 1
            self._activities.append({
                "id": activity_id, "ownerTypeId": owner_type, "ownerId": owner_id,
                "deadline": deadline.isoformat(), "title": str(params.get("title") or ""),
                "description": str(params.get("description") or ""),
                "responsibleId": php_intval(params.get("responsibleId")) or call.user_id,
                "pingOffsets": [php_intval(item) for item in _as_list(params.get("pingOffsets"))],
                "colorId": params.get("colorId"), "authorId": call.user_id, "created": self.clock(),
            })
            return {"id": activity_id}

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

    # ---- writing records

    def _clean_fields(self, table: _Table, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Writable fields converted to stored values; unknown and read-only fields are ignored, as the portal does."""
        specs = {spec[0]: spec for spec in table.specs}
        clean: dict[str, Any] = {}
        for key, value in fields.items():
            name = str(key).upper()
            spec = specs.get(name)
            if spec is None or spec[3] or table.kinds[name] == "multi":
                continue
            kind = table.kinds[name]
            if kind == "date":
                clean[name] = _parse_date(value, self.tz) if value not in (None, "") else None
            elif kind == "int":
                clean[name] = php_intval(value) if value not in (None, "") else None
            elif kind == "float":
                clean[name] = _typed("float", value, self.tz)
            elif kind == "datetime":
                moment = _parse_moment(value, self.tz)
                clean[name] = None if moment is None else int(moment.timestamp())
            elif spec[1] == "char":
                clean[name] = "Y" if php_truthy(value) and str(value).upper() not in ("N", "FALSE") else "N"
            else:
                clean[name] = None if value is None else str(value)
        if "CONTACT_IDS" in {str(key).upper() for key in fields} and table is self._deals:
            ids = [php_intval(item) for item in _as_list(next(v for k, v in fields.items() if str(k).upper() == "CONTACT_IDS"))]
            clean["CONTACT_ID"] = ids[0] if ids else None
        return clean

    def _apply_multifields(self, table: _Table, row: dict[str, Any], fields: Mapping[str, Any]) -> None:
        """crm.contact.update's rules: with ID change or delete (DELETE=Y or empty VALUE), without ID add."""
        for key, value in fields.items():
            name = str(key).upper()
            if name not in table.multi or not isinstance(value, (list, dict)):
                continue
            current: list[list[Any]] = [list(item) for item in row.get(name) or ()]
            for item in _as_list(value):
                if not isinstance(item, dict):
                    continue
                item = {str(k).upper(): v for k, v in item.items()}
                item_id = php_intval(item.get("ID"))
                raw = item.get("VALUE")
                text = "" if raw is None else str(raw)
                if name == "EMAIL" and text.strip() and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", text.strip()):
                    label = {"WORK": "Work e-mail", "HOME": "Personal e-mail"}.get(str(item.get("VALUE_TYPE", "WORK")).upper(), "E-mail")
                    raise ApiError(400, "ERROR_CORE", f"The field `{label}` contains an invalid address")
                if item_id:
                    for position, existing in enumerate(current):
                        if existing[0] == item_id:
                            if str(item.get("DELETE", "")).upper() == "Y" or not text.strip():
                                del current[position]
                            else:
                                existing[2] = text
                                if item.get("VALUE_TYPE"):
                                    existing[1] = str(item["VALUE_TYPE"]).upper()
                            break
                elif text.strip():
                    current.append([self._next_multifield, str(item.get("VALUE_TYPE") or "WORK").upper(), text])
                    self._next_multifield += 1
            if current:
                row[name] = current
            else:
                row.pop(name, None)

    def _deal_stage(self, row: dict[str, Any], requested: Any, adding: bool, close_date_given: bool = False) -> None:
        """Keep STAGE_ID, CATEGORY_ID, STAGE_SEMANTIC_ID and CLOSED consistent, as the portal does."""
        category = php_intval(row.get("CATEGORY_ID") or 0)
        if category not in data.CATEGORIES:
            category = 0
        stage = str(requested) if requested not in (None, "") else None
        if stage is not None and data.category_of(stage) is None:
            stage = None  # an unknown stage is not written
        if stage is not None and data.category_of(stage) != category:
            if adding and row.get("CATEGORY_ID") is None:
                category = data.category_of(stage) or 0
            else:
                stage = None  # a stage of another funnel does not move the deal
        if stage is None:
            stage = row.get("STAGE_ID") if not adding else data.stage_id(category, "NEW")
        row["CATEGORY_ID"] = category
        semantic = data.stage_semantic(stage)
        if stage != row.get("STAGE_ID"):
            row["MOVED_TIME"] = int(self.clock())
        row["STAGE_ID"] = stage
        row["STAGE_SEMANTIC_ID"] = semantic
        closed = "N" if semantic == "P" else "Y"
        if closed == "Y" and row.get("CLOSED") != "Y" and not close_date_given:
            row["CLOSEDATE"] = dt.datetime.fromtimestamp(self.clock(), self.tz).date()  # closing dates the deal
        row["CLOSED"] = closed

    def _add(self, table: _Table, fields: dict[str, Any], user_id: int, call: _Call | None) -> int:
        with self._lock:
            now = int(self.clock())
            row = self._clean_fields(table, fields)
            row.update(DATE_CREATE=now, DATE_MODIFY=now, CREATED_BY_ID=user_id, MODIFY_BY_ID=user_id)
            row.setdefault("ASSIGNED_BY_ID", user_id)
            self._apply_multifields(table, row, fields)
            if table is self._deals:
                today = dt.datetime.fromtimestamp(now, self.tz).date()
                row.setdefault("CURRENCY_ID", "RUB")
                row.setdefault("OPPORTUNITY", 0.0)
                row.setdefault("TYPE_ID", "SALE")
                row["BEGINDATE"] = row.get("BEGINDATE") or today
                row["CLOSEDATE"] = row.get("CLOSEDATE") or today + dt.timedelta(days=7)
                row["MOVED_BY_ID"] = user_id
                self._deal_stage(row, row.pop("STAGE_ID", None), adding=True,
                                 close_date_given="CLOSEDATE" in {str(key).upper() for key in fields})
                row.setdefault("IS_NEW", "Y")
            row_id = table.insert(row)
            if table is self._deals and not row.get("TITLE"):
                row["TITLE"] = f"Сделка #{row_id}"
            self._raise_event(table.name, "add", row_id, call)
            return row_id

    def _update(self, table: _Table, row_id: int, fields: dict[str, Any], user_id: int, call: _Call | None) -> None:
        with self._lock:
            row = table.rows.get(row_id)
            if row is None:
                raise ApiError(400, "", f"{table.name.capitalize()} is not found")
            clean = self._clean_fields(table, fields)
            staged = clean.pop("STAGE_ID", None)
            clean.pop("CATEGORY_ID", None)  # the funnel is not changed by an update
            self._apply_multifields(table, row, fields)
            row.update(clean)
            if table is self._deals and staged is not None:
                previous = row.get("STAGE_ID")
                self._deal_stage(row, staged, adding=False,
                                 close_date_given="CLOSEDATE" in {str(key).upper() for key in fields})
                if row["STAGE_ID"] != previous:
                    row["MOVED_BY_ID"] = user_id
            row["DATE_MODIFY"] = max(int(self.clock()), row.get("DATE_MODIFY") or 0)
            row["MODIFY_BY_ID"] = user_id
            table.touched()
            self._raise_event(table.name, "update", row_id, call)

    def _delete(self, table: _Table, row_id: int, call: _Call | None) -> None:
        with self._lock:
            if row_id not in table.rows:
                raise ApiError(400, "", f"{table.name.capitalize()} is not found")
            table.delete(row_id)
            if table is self._contacts:
                for deal in self._deals.rows.values():
                    if deal.get("CONTACT_ID") == row_id:
                        deal["CONTACT_ID"] = None
                self._deals.touched()
            self._raise_event(table.name, "delete", row_id, call)

    # ---- batch

    _REFERENCE = re.compile(r"\$(result|result_error|result_total|result_next|result_time)((?:\[[^\]]*\])+)")

    def _m_batch(self, call: _Call, params: dict[str, Any]) -> _Answer:
        halt = php_truthy(params.get("halt", 0))
        commands = params.get("cmd")
        if isinstance(commands, list):
            commands = {str(index): item for index, item in enumerate(commands)}
        if not isinstance(commands, dict):
            commands = {}
        maps: dict[str, dict[str, Any]] = {name: {} for name in
                                           ("result", "result_error", "result_total", "result_next", "result_time")}
        modelled = 0.0  # inner server time that was accounted, not spent
        for position, (key, command) in enumerate(commands.items()):
            key = str(key)
            if position >= MAX_BATCH:
                maps["result_error"][key] = {"error": "ERROR_BATCH_LENGTH_EXCEEDED",
                                             "error_description": "Max batch length exceeded"}
                continue
            text = str(command)
            method, _, query = text.partition("?")
            method = method.strip().lower()
            started = time.perf_counter()
            try:
                inner = self._substitute(parse_query(query), maps)
                if method == "batch":
                    raise ApiError(405, "ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage")
                with self._lock:
                    self._stats["batch_commands"] += 1
                    self._stats["batch_methods"][method] += 1
                answer = self._invoke(call, method, inner)
            except ApiError as error:
                if error.code == "OPERATION_TIME_LIMIT":
                    with self._lock:
                        self._stats["operation_time_limit"] += 1
                maps["result_error"][key] = error.body()
                if halt:
                    break
                continue
            maps["result"][key] = answer.result
            if answer.total is not None:
                maps["result_total"][key] = answer.total
            if answer.next is not None:
                maps["result_next"][key] = answer.next
            maps["result_time"][key] = self._time_block(method, started, answer.cost, record=True)
            modelled += answer.cost
        with self._lock:
            self._stats["batches"] += 1
        return _Answer({name: php_json(values) for name, values in maps.items()}, cost=modelled)

    def _substitute(self, value: Any, maps: dict[str, dict[str, Any]]) -> Any:
        """Replace ``$result[key][0][ID]``-style references with earlier commands' answers."""
        if isinstance(value, dict):
            return {key: self._substitute(item, maps) for key, item in value.items()}
        if isinstance(value, list):
            return [self._substitute(item, maps) for item in value]
        if not isinstance(value, str) or "$result" not in value:
            return value
        whole = self._REFERENCE.fullmatch(value)
        if whole:
            found = self._resolve(whole, maps)
            return "" if found is None else found
        return self._REFERENCE.sub(lambda match: _scalar_text(self._resolve(match, maps)), value)

    @staticmethod
    def _resolve(match: re.Match[str], maps: dict[str, dict[str, Any]]) -> Any:
        node: Any = maps[match.group(1)]
        for segment in re.findall(r"\[([^\]]*)\]", match.group(2)):
            if isinstance(node, dict):
                node = node.get(segment)
            elif isinstance(node, list) and segment.lstrip("-").isdigit() and -len(node) <= int(segment) < len(node):
                node = node[int(segment)]
            else:
                return None
        return node


# Tells the HTTP server to cut this answer off mid-body; never sent (Portal.cut_answers).
CUT_HEADER = "X-Sandbox-Cut"


def _json_answer(status: int, payload: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": JSON_TYPE}, encode_json(payload)


def _scalar_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else ""
    return str(value)


# --------------------------------------------------------------------------- HTTP server


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._answer()

    def do_POST(self) -> None:  # noqa: N802
        self._answer()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self) -> None:
        body = self._read_body()
        status, headers, payload = self.server.portal.handle_http(
            self.command, self.path, body, self.headers.get("Content-Type", ""), self.client_address[0])
        drop = headers.pop(CUT_HEADER, None) == "drop"
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if drop:  # half the promised bytes, then the connection closes (Portal.cut_answers)
            self.wfile.write(payload[: len(payload) // 2])
            self.close_connection = True
            return
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    portal: Portal

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up mid-answer (a timeout, a stopped run) is its business, as on a real portal."""
        import sys

        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class SandboxServer:
    """Serves a `Portal` over plain HTTP from a background thread; use as a context manager.

    ``with SandboxServer(portal) as server: requests.get(server.webhook_url + "profile")``
    """

    def __init__(self, portal: Portal, host: str = "127.0.0.1", port: int = 0) -> None:
        self.portal = portal
        self._httpd = _HTTPServer((host, port), _RequestHandler)
        self._httpd.portal = portal
        self.host, self.port = self._httpd.server_address[:2]
        portal.bind_address(self.base_url)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def webhook_url(self) -> str:
        """The default incoming webhook, e.g. http://127.0.0.1:PORT/rest/1/CODE/."""
        return self.base_url + self.portal.webhook.path

    def webhook_url_for(self, hook: Webhook) -> str:
        return self.base_url + hook.path

    @property
    def oauth_app(self) -> OAuthAppInfo:
        return self.portal.app_info()

    @property
    def stats_url(self) -> str:
        return f"{self.base_url}/_sandbox/stats"

    def start(self) -> SandboxServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                            name="bitrix24-sandbox", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()
        self.portal.close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(host: str = "127.0.0.1", port: int = 8024, contacts: int = 1000, seed: int = 1, *,
          first_person: int = 0, plan: str = "standard", latency: float = 0.0,
          print_fn: Callable[[str], None] | None = None, **portal_options: Any) -> None:
    """Build a portal, serve it until interrupted, and print how to reach it.

    Lines are flushed at once so a benchmark reading our stdout through a pipe
    sees the webhook URL while the server runs.
    """
    if print_fn is None:
        def print_fn(line: str) -> None:
            print(line, flush=True)
    started = time.monotonic()
    portal = Portal(contacts, seed, first_person, plan=plan, latency=latency, **portal_options)
    server = SandboxServer(portal, host, port).start()
    app = server.oauth_app
    print_fn(f"Bitrix24 sandbox: {portal.contact_count} contacts, {portal.deal_count} deals "
             f"(seed {seed}, built in {time.monotonic() - started:.1f} s)")
    print_fn(f"Webhook:       {server.webhook_url}")
    print_fn(f"OAuth app:     client_id={app.client_id} client_secret={app.client_secret}")
    print_fn(f"               authorize {app.authorize_url}  token {app.token_url}")
    print_fn(f"Stats:         {server.stats_url}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def start_connected(settings: Any, *, people: int, first_person: int = 0, seed: int = 1) -> Any:
    """Start a portal with these sample people and store a webhook connection to it (for `hub demo`)."""
    from hub.db import get_engine
    from hub.sandbox import RunningSandbox
    from plugins.bitrix24 import connection

    portal = Portal(contacts=people, seed=seed, first_person=first_person)
    server = SandboxServer(portal).start()
    connection.save(get_engine(settings.database_url), settings, {"kind": "webhook", "url": server.webhook_url})

    def close() -> None:
        server.stop()
        portal.close()

    return RunningSandbox("bitrix24", lambda: {str(c): p for c, p in portal.contact_person.items()}, close)


__all__ = [
    "ApiError", "EventDelivery", "MOSCOW", "OAuthApp", "OAuthAppInfo", "Portal", "SandboxServer", "Webhook",
    "encode_json", "parse_query", "php_json", "php_params", "serve", "start_connected",
]
