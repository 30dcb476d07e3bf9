"""A local amoCRM account that speaks API v4 the way the real service does.

The demo, the end-to-end tests and the benchmarks cannot use a real account,
and a friendly fake would let the plugin pass while failing in production. So
this emulator follows the documented protocol and keeps its sharp edges:

- OAuth 2.0 on POST /oauth2/access_token: authorization codes live 20 minutes
  and work once; access tokens (JWT-shaped) expire after 24 hours; refresh
  tokens are single-use and rotate, and a reused one answers 401 "Token has
  been revoked"; a refresh also revokes the access token it replaces.
  Long-lived tokens of private integrations are accepted as Bearer too.
- Lists (contacts, leads, companies, events, tasks) are HAL: `_page`,
  `_links.self`/`next` and `_embedded`, never a total count. An empty page
  answers 204 with an empty body, including the page after a full last page.
  `limit` above the maximum (250; 100 for events) does not raise an error:
  the API falls back to its default page of 50.
- At most 7 requests per second per integration: the next one gets an nginx
  HTML 429 with no Retry-After. Clients that keep hammering get the account
  blocked for a while (HTML 403). Requests are counted when they arrived:
  on Linux the time the kernel received them, so the emulator's own delays
  (a thread encoding a large page, a garbage collection, another process on
  the same cores) never bunch requests a client sent well spaced.
- Writes validate like the real API (400 with `validation-errors` naming the
  path), customers answer 402 when the plan lacks them, deletions leave
  events, and changes are pushed to registered webhooks as form-encoded
  posts from a background thread, optionally duplicated or dropped.

Everything is also reachable from Python (`Account`) so tests can seed,
mutate, issue credentials and inspect what a client wrote, and `/_sandbox/stats`
reports request counts for out-of-process benchmarks.
"""

from __future__ import annotations

import base64
import bisect
import gc
import io
import json
import os
import queue
import random
import re
import secrets
import socket
import struct
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests

from plugins.amocrm.sandbox_data import (
    ACCOUNT_ID,
    ADMIN_USER,
    CITY,
    CUSTOM_FIELDS,
    EMAIL,
    LOST_STATUS_ID,
    PHONE,
    PIPELINES,
    PIPELINES_BY_ID,
    PROMO_CODE,
    SUBDOMAIN,
    USERS,
    WON_STATUS_ID,
    ContactRow,
    CustomField,
    FieldValues,
    LeadRow,
    TagRegistry,
    account_midnight,
    contact_id_for,
    link,
    render_contact,
    render_field_definitions,
    render_lead,
    render_pipelines,
    seed_rows,
)

DAY = 86_400
ACCESS_TOKEN_TTL = DAY
REFRESH_TOKEN_TTL = 90 * DAY          # "3 months"
AUTH_CODE_TTL = 20 * 60
LONG_LIVED_TOKEN_TTL = 5 * 365 * DAY
DEFAULT_LIMIT = 50
MAX_LIMIT = 250
MAX_EVENTS_LIMIT = 100
MAX_BATCH = 50
RATE_LIMIT = 7                        # requests per second per integration
ABUSE_THRESHOLD = 20                  # 429s within ABUSE_WINDOW that get the account blocked
ABUSE_WINDOW = 10.0
ADMITTED_KEPT_S = 5.0                 # arrival times kept for the rate limit (longer than any request waits)
BLOCK_SECONDS = 60.0
WEBHOOK_TIMEOUT = 2.0                 # the real service waits about two seconds for a 2xx

HAL_JSON = "application/hal+json"
PROBLEM_JSON = "application/problem+json"
HTML = "text/html; charset=UTF-8"
OAUTH_PROBLEM_TYPE = "https://developers.amocrm.ru/v3/errors/OAuthProblemJson"
OAUTH_BAD_REQUEST_DETAIL = "В запросе отсутствует ряд параметров или параметры невалидны"

WEBHOOK_SETTINGS = (
    "add_contact", "update_contact", "delete_contact",
    "add_company", "update_company", "delete_company",
    "add_lead", "update_lead", "delete_lead", "status_lead",
)
NOTE_TYPES = frozenset({
    "common", "call_in", "call_out", "service_message", "extended_service_message",
    "message_cashier", "geolocation", "sms_in", "sms_out", "attachment",
})
TASK_ENTITY_TYPES = frozenset({"leads", "contacts", "companies", "customers"})
EVENT_ENTITY = {"contacts": "contact", "companies": "company", "leads": "lead"}
EVENT_ENTITY_PLURAL = {value: key for key, value in EVENT_ENTITY.items()}


def _nginx_page(status: str, message: str = "") -> bytes:
    extra = f"<center>{message}</center>\r\n" if message else ""
    return (
        f"<html>\r\n<head><title>{status}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status}</h1></center>\r\n{extra}<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()


TOO_MANY_REQUESTS_PAGE = _nginx_page("429 Too Many Requests")
BLOCKED_PAGE = _nginx_page("403 Forbidden", "Account blocked: too many requests")


class ManualClock:
    """A clock tests move by hand, so expiry and rate windows need no sleeping."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


@dataclass(slots=True)
class Response:
    """What the account answers; the HTTP layer only writes it out."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _encode(payload: Any) -> bytes:
    """`payload` as compact JSON; the lists under a HAL `_embedded` are encoded one item at a time.

    json.dumps runs in C and holds the GIL for the whole call: a page of 250
    contacts (about 300 KB) takes 4-13 ms, and meanwhile no other emulator
    thread can read a request that has just arrived (nor stamp it, where the
    kernel gives no receive time) or answer one. Item by item, the
    interpreter can hand the GIL over between items. The bytes are the same
    as one json.dumps call would give.
    """
    embedded = payload.get("_embedded") if isinstance(payload, dict) else None
    if not isinstance(embedded, dict) or not any(isinstance(v, list) for v in embedded.values()):
        return _dumps(payload).encode()
    parts = []
    for key, value in payload.items():
        if key == "_embedded":
            inner = [f"{_dumps(name)}:[{','.join(_dumps(item) for item in items)}]" if isinstance(items, list)
                     else f"{_dumps(name)}:{_dumps(items)}" for name, items in value.items()]
            parts.append(f'"_embedded":{{{",".join(inner)}}}')
        else:
            parts.append(f"{_dumps(str(key))}:{_dumps(value)}")
    return ("{" + ",".join(parts) + "}").encode()


def _json_response(status: int, payload: Any, content_type: str = HAL_JSON) -> Response:
    return Response(status, _encode(payload), content_type)


def _problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    payload = {**extra, "title": title, "type": f"https://httpstatus.es/{status}", "status": status, "detail": detail}
    return _json_response(status, payload, PROBLEM_JSON)


def _oauth_problem(status: int, title: str, detail: str, hint: str | None = None) -> Response:
    payload: dict[str, Any] = {"hint": hint} if hint else {}
    payload.update({"title": title, "type": OAUTH_PROBLEM_TYPE, "status": status, "detail": detail})
    return _json_response(status, payload, PROBLEM_JSON)


def _validation_failed(errors: list[tuple[str, list[dict[str, str]]]]) -> Response:
    return _problem(
        400, "Bad Request", "Request validation failed",
        **{"validation-errors": [{"request_id": request_id, "errors": errs} for request_id, errs in errors]},
    )


def _error(code: str, path: str, detail: str) -> dict[str, str]:
    return {"code": code, "path": path, "detail": detail}


NO_CONTENT = Response(204)
UNAUTHORIZED = _problem(401, "Unauthorized", "Неверный логин или пароль")
PAYMENT_REQUIRED = _problem(402, "Payment Required", "Тариф не позволяет включать покупателей")


class BadRequest(Exception):
    """A malformed parameter: answered with a 400 problem."""


# ---------------------------------------------------------------------------
# Query strings: PHP-style brackets, as amoCRM clients send them.
# ---------------------------------------------------------------------------

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")


def parse_query(query: str) -> dict[str, Any]:
    """`filter[id][]=1&filter[id][]=2&order[id]=asc` -> nested dicts; `[]` and `[0]` both index."""
    result: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        match = _KEY.match(key)
        if not match:
            result[key] = value
            continue
        parts = [match.group(1), *_PART.findall(match.group(2))]
        node = result
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {} if child is None else {"0": child}
                node[part] = child
            node = child
        last = parts[-1]
        if last == "":
            last = str(len(node))
        node[last] = value
    return result


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, dict):
        def position(key: str) -> tuple[bool, int]:
            return (not key.isdigit(), int(key) if key.isdigit() else 0)

        return [str(value[key]) for key in sorted(value, key=position)]
    return [part for part in str(value).split(",") if part != ""]


def _int(value: Any, name: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None


def _range(value: Any, name: str) -> tuple[int | None, int | None] | None:
    """`x[from]`/`x[to]`, a single timestamp (from), or "from,to" as the older docs show."""
    if value is None:
        return None
    if isinstance(value, dict) and ("from" in value or "to" in value):
        low = _int(value["from"], name) if value.get("from", "") != "" else None
        high = _int(value["to"], name) if value.get("to", "") != "" else None
        return low, high
    parts = _as_list(value)
    if not parts:
        return None
    low = _int(parts[0], name)
    high = _int(parts[1], name) if len(parts) > 1 else None
    return low, high


def _in_range(value: int | None, bounds: tuple[int | None, int | None]) -> bool:
    if value is None:
        return False
    low, high = bounds
    return (low is None or value >= low) and (high is None or value <= high)


# ---------------------------------------------------------------------------
# Credentials.
# ---------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(slots=True)
class _AccessToken:
    client_id: str
    expires_at: float
    long_lived: bool = False
    revoked: bool = False


@dataclass(slots=True)
class _RefreshToken:
    client_id: str
    access_token: str
    expires_at: float
    revoked: bool = False


@dataclass(slots=True)
class _AuthCode:
    client_id: str
    expires_at: float
    used: bool = False


@dataclass(frozen=True, slots=True)
class Integration:
    """The integration registered in the account: what a client needs to authorize."""

    client_id: str
    client_secret: str
    redirect_uri: str


# ---------------------------------------------------------------------------
# The account.
# ---------------------------------------------------------------------------


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


class Account:
    """A thread-safe amoCRM account: data, credentials, limits, events and webhooks.

    Seeded with `contacts` people from `hub.sampledata` (after skipping
    `first_person`), with their orders as leads. `clock` returns unix seconds
    and drives every expiry, rate window and timestamp, so tests can pass a
    `ManualClock` instead of sleeping.
    """

    def __init__(
        self,
        contacts: int = 0,
        seed: int = 1,
        *,
        first_person: int = 0,
        today: date | None = None,
        clock: Callable[[], float] = time.time,
        latency: float = 0.0,
        client_id: str | None = None,
        client_secret: str | None = None,
        redirect_uri: str = "http://localhost/amocrm/oauth",
        subdomain: str = SUBDOMAIN,
        access_token_ttl: float = ACCESS_TOKEN_TTL,
        refresh_token_ttl: float = REFRESH_TOKEN_TTL,
        auth_code_ttl: float = AUTH_CODE_TTL,
        long_lived_token_ttl: float = LONG_LIVED_TOKEN_TTL,
        rate_limit: int | None = RATE_LIMIT,
        abuse_threshold: int | None = ABUSE_THRESHOLD,
        abuse_window: float = ABUSE_WINDOW,
        block_seconds: float = BLOCK_SECONDS,
        customers_enabled: bool = False,
        max_batch: int = MAX_BATCH,
        oversize_limit: str = "default",
        next_on_full_last_page: bool = False,
        webhook_duplicate_rate: float = 0.0,
        webhook_drop_rate: float = 0.0,
        webhook_timeout: float = WEBHOOK_TIMEOUT,
    ) -> None:
        if oversize_limit not in ("default", "clamp"):
            raise ValueError("oversize_limit must be 'default' or 'clamp'")
        rng = random.Random(f"amocrm-sandbox:{seed}")
        self.integration = Integration(
            client_id=client_id or str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            client_secret=client_secret or "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(64)),
            redirect_uri=redirect_uri,
        )
        self.subdomain = subdomain
        self.clock = clock
        self.latency = latency
        self.access_token_ttl = access_token_ttl
        self.refresh_token_ttl = refresh_token_ttl
        self.auth_code_ttl = auth_code_ttl
        self.long_lived_token_ttl = long_lived_token_ttl
        self.rate_limit = rate_limit
        self.abuse_threshold = abuse_threshold
        self.abuse_window = abuse_window
        self.block_seconds = block_seconds
        self.customers_enabled = customers_enabled
        self.max_batch = max_batch
        self.oversize_limit = oversize_limit
        self.next_on_full_last_page = next_on_full_last_page
        self.webhook_duplicate_rate = webhook_duplicate_rate
        self.webhook_drop_rate = webhook_drop_rate
        self.webhook_timeout = webhook_timeout
        self.base_url = "http://127.0.0.1"

        self._lock = threading.RLock()
        self._tags = {"contacts": TagRegistry(100_001), "companies": TagRegistry(200_001), "leads": TagRegistry(300_001)}
        seeded_contacts, seeded_leads = seed_rows(
            contacts, seed, first_person=first_person, today=today,
            contact_tags=self._tags["contacts"], lead_tags=self._tags["leads"],
        )
        self._stores: dict[str, dict[int, Any]] = {
            "contacts": {row.id: row for row in seeded_contacts},
            "companies": {},
            "leads": {row.id: row for row in seeded_leads},
        }
        self._next_ids = {
            "contacts": max(self._stores["contacts"], default=contact_id_for(first_person + contacts)) + 1,
            "companies": 35_000_001,
            "leads": max(self._stores["leads"], default=40_000_000) + 1,
        }
        self._versions = Counter[str]()
        self._order_cache: dict[tuple[str, str], tuple[int, list[int], list[int]]] = {}

        self._access_tokens: dict[str, _AccessToken] = {}
        self._refresh_tokens: dict[str, _RefreshToken] = {}
        self._codes: dict[str, _AuthCode] = {}

        self._events: list[dict[str, Any]] = []
        self._event_counter = 0
        self._notes: list[dict[str, Any]] = []
        self._tasks: list[dict[str, Any]] = []
        self._writes: list[dict[str, Any]] = []
        self._next_note_id = 90_000_001
        self._next_task_id = 80_000_001

        self._admitted: dict[str, deque[float]] = {}
        self._rejections: deque[float] = deque()
        self._blocked_until = 0.0

        self._stats_lock = threading.Lock()
        self._stats: Counter[str] = Counter()
        self._by_path: Counter[str] = Counter()
        self._by_status: Counter[str] = Counter()
        self._in_flight = 0

        self._webhooks: list[_Webhook] = []
        self._webhook_queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._webhook_rng = random.Random(f"amocrm-webhooks:{seed}")
        self._webhook_thread: threading.Thread | None = None
        self._webhook_idle = threading.Condition()
        self._webhook_pending = 0
        self._deliveries: list[dict[str, Any]] = []
        self._cuts: list[tuple[str | None, str]] = []  # answers to cut off mid-body: (path prefix or any, mode)

    # -- time ---------------------------------------------------------------

    def now(self) -> int:
        return int(self.clock())

    # -- credentials -------------------------------------------------------

    def issue_authorization_code(self) -> str:
        """A code as the integration's settings page shows it: valid 20 minutes, usable once."""
        code = "def50200" + secrets.token_hex(96)
        with self._lock:
            self._codes[code] = _AuthCode(self.integration.client_id, self.clock() + self.auth_code_ttl)
        return code

    def issue_long_lived_token(self, ttl: float | None = None, *, client_id: str | None = None) -> str:
        """A long-lived token of a private integration; it works as a Bearer token until it expires.

        `client_id` names another integration installed in the account (the
        default is the account's own one): its requests count against a rate
        limit of their own, as amoCRM limits each integration separately.
        """
        with self._lock:
            return self._new_access_token(ttl or self.long_lived_token_ttl, long_lived=True, client_id=client_id)

    def issue_tokens(self) -> dict[str, Any]:
        """A fresh access/refresh pair without the code exchange, shaped like the OAuth answer."""
        with self._lock:
            return self._token_answer()

    def expire_access_tokens(self) -> None:
        """Make every OAuth access token expire now, as a day passing would; long-lived tokens keep working."""
        with self._lock:
            now = self.clock()
            for token in self._access_tokens.values():
                if not token.long_lived:
                    token.expires_at = min(token.expires_at, now)

    def _new_access_token(self, ttl: float, *, long_lived: bool = False, client_id: str | None = None) -> str:
        now = self.clock()
        client_id = client_id or self.integration.client_id
        payload = {
            "aud": client_id,
            "jti": secrets.token_hex(20),
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now + ttl),
            "sub": str(ADMIN_USER),
            "grant_type": "",
            "account_id": ACCOUNT_ID,
            "base_domain": "amocrm.ru",
            "version": 2,
            "scopes": ["crm", "notifications"],
        }
        header = {"typ": "JWT", "alg": "RS256"}
        token = ".".join((
            _b64url(json.dumps(header, separators=(",", ":")).encode()),
            _b64url(json.dumps(payload, separators=(",", ":")).encode()),
            _b64url(secrets.token_bytes(256)),
        ))
        self._access_tokens[token] = _AccessToken(client_id, now + ttl, long_lived=long_lived)
        return token

    def _token_answer(self) -> dict[str, Any]:
        access = self._new_access_token(self.access_token_ttl)
        refresh = "def50200" + secrets.token_hex(160)
        self._refresh_tokens[refresh] = _RefreshToken(
            self.integration.client_id, access, self.clock() + self.refresh_token_ttl
        )
        return {
            "token_type": "Bearer",
            "expires_in": int(self.access_token_ttl),
            "access_token": access,
            "refresh_token": refresh,
        }

    def _oauth(self, params: dict[str, Any]) -> Response:
        """POST /oauth2/access_token: code exchange and refresh-token rotation."""
        grant = params.get("grant_type")
        with self._stats_lock:
            self._stats[f"grant:{grant}"] += 1
            if grant == "refresh_token":
                self._stats["refresh_attempts"] += 1
        missing = [name for name in ("client_id", "client_secret", "grant_type") if not params.get(name)]
        if missing:
            return _oauth_problem(400, "Некорректный запрос", OAUTH_BAD_REQUEST_DETAIL,
                                  f'Check the `{missing[0]}` parameter')
        if grant not in ("authorization_code", "refresh_token"):
            return _oauth_problem(400, "Некорректный тип авторизации",
                                  "The authorization grant type is not supported by the authorization server.",
                                  "Check that all required parameters have been provided")
        integration = self.integration
        if params["client_id"] != integration.client_id or params["client_secret"] != integration.client_secret:
            return _oauth_problem(401, "Некорректный клиент", "Авторизация клиента не прошла")
        redirect_uri = params.get("redirect_uri")
        if grant == "authorization_code":
            if redirect_uri != integration.redirect_uri:
                return _oauth_problem(401, "Некорректный клиент", "Авторизация клиента не прошла")
            return self._exchange_code(str(params.get("code") or ""))
        if redirect_uri is not None and redirect_uri != integration.redirect_uri:
            return _oauth_problem(401, "Некорректный клиент", "Авторизация клиента не прошла")
        return self._refresh(str(params.get("refresh_token") or ""))

    def _exchange_code(self, code: str) -> Response:
        if not code:
            return _oauth_problem(400, "Некорректный запрос", OAUTH_BAD_REQUEST_DETAIL, "Check the `code` parameter")
        with self._lock:
            stored = self._codes.get(code)
            if stored is None:
                return _oauth_problem(400, "Некорректный запрос", OAUTH_BAD_REQUEST_DETAIL,
                                      "Cannot decrypt the authorization code")
            if stored.used:
                return _oauth_problem(400, "Некорректный запрос", OAUTH_BAD_REQUEST_DETAIL,
                                      "Authorization code has been revoked")
            if self.clock() >= stored.expires_at:
                return _oauth_problem(400, "Некорректный запрос", OAUTH_BAD_REQUEST_DETAIL,
                                      "Authorization code has expired")
            stored.used = True
            answer = self._token_answer()
        with self._stats_lock:
            self._stats["codes_exchanged"] += 1
        return _json_response(200, answer, "application/json")

    def _refresh(self, refresh_token: str) -> Response:
        if not refresh_token:
            return _oauth_problem(400, "Некорректный запрос", OAUTH_BAD_REQUEST_DETAIL,
                                  "Check the `refresh_token` parameter")
        with self._lock:
            stored = self._refresh_tokens.get(refresh_token)
            if stored is None:
                return _oauth_problem(401, "Некорректный запрос", OAUTH_BAD_REQUEST_DETAIL,
                                      "Cannot decrypt the refresh token")
            if stored.revoked:
                return _oauth_problem(401, "Некорректный запрос", OAUTH_BAD_REQUEST_DETAIL, "Token has been revoked")
            if self.clock() >= stored.expires_at:
                return _oauth_problem(401, "Некорректный запрос", OAUTH_BAD_REQUEST_DETAIL, "Token has expired")
            stored.revoked = True
            previous = self._access_tokens.get(stored.access_token)
            if previous is not None:
                previous.revoked = True
            answer = self._token_answer()
        with self._stats_lock:
            self._stats["refreshes"] += 1
        return _json_response(200, answer, "application/json")

    def _authorize_redirect(self, params: dict[str, Any]) -> Response:
        """GET /oauth: the consent page, approved at once, redirecting with a fresh code."""
        if params.get("client_id") != self.integration.client_id:
            return _problem(400, "Bad Request", "Unknown client_id")
        query = {
            "code": self.issue_authorization_code(),
            "state": params.get("state", ""),
            "referer": f"{self.subdomain}.amocrm.ru",
            "client_id": self.integration.client_id,
        }
        separator = "&" if "?" in self.integration.redirect_uri else "?"
        return Response(302, headers={"Location": f"{self.integration.redirect_uri}{separator}{urlencode(query)}"})

    def _authenticate(self, header: str | None) -> _AccessToken | None:
        if not header or not header.startswith("Bearer "):
            return None
        token = self._access_tokens.get(header[7:].strip())
        if token is None or token.revoked or self.clock() >= token.expires_at:
            return None
        return token

    # -- limits -------------------------------------------------------------

    def block(self, seconds: float | None = None) -> None:
        """Block the account now, as repeated limit violations would."""
        with self._lock:
            self._blocked_until = self.clock() + (self.block_seconds if seconds is None else seconds)

    def _admit(self, key: str, arrived: float | None = None) -> bool:
        """At most `rate_limit` admitted requests in any one second of arrival times; a refused one takes no slot.

        Requests are counted when they arrived (the server passes the time the
        kernel received them when it can), not when a busy emulator thread
        got round to them, as a gateway in front of the real API counts them.
        Threads may take requests out of arrival order, so a request is
        checked against every one-second span it would fall in, including
        those ending at requests admitted already that arrived after it.
        """
        if self.rate_limit is None:
            return True
        now = self.clock() if arrived is None else arrived
        window = self._admitted.setdefault(key, deque())
        while window and window[0] <= self.clock() - ADMITTED_KEPT_S:
            window.popleft()
        ends = [now, *(t for t in window if now < t < now + 1.0)]
        if any(sum(1 for t in window if end - 1.0 < t <= end) >= self.rate_limit for end in ends):
            self._rejections.append(now)
            while self._rejections and self._rejections[0] <= now - self.abuse_window:
                self._rejections.popleft()
            if self.abuse_threshold is not None and len(self._rejections) >= self.abuse_threshold:
                self._blocked_until = now + self.block_seconds
                self._rejections.clear()
            return False
        bisect.insort(window, now)
        return True

    # -- requests -------------------------------------------------------------

    def handle(
        self,
        method: str,
        target: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        client: str = "127.0.0.1",
        base_url: str | None = None,
        arrived: float | None = None,
    ) -> Response:
        """Answer one HTTP request; the server calls this, and tests may too."""
        headers = {name.lower(): value for name, value in (headers or {}).items()}
        split = urlsplit(target)
        path = split.path.rstrip("/") or "/"
        base = base_url or self.base_url
        if path.startswith("/_sandbox/"):
            if path == "/_sandbox/stats" and method == "GET":
                return _json_response(200, self.stats(), "application/json")
            return _problem(404, "Not Found", "Unknown sandbox route")
        self._count_request(method, path)
        response = self._dispatch(method, path, split.query, headers, body, client, base, arrived)
        self._count_status(response.status)
        return response

    def _dispatch(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes, client: str, base: str,
        arrived: float | None = None,
    ) -> Response:
        if path == "/oauth2/access_token":
            if method != "POST":
                return _problem(405, "Method Not Allowed", "Use POST")
            try:
                params = _decode_params(body, headers.get("content-type", ""))
            except BadRequest as error:
                return _oauth_problem(400, "Некорректный запрос", OAUTH_BAD_REQUEST_DETAIL, str(error))
            return self._oauth(params)
        if path == "/oauth" and method == "GET":
            return self._authorize_redirect(dict(parse_qsl(query)))
        if not path.startswith("/api/v4/"):
            return _problem(404, "Not Found", "Unknown route")
        with self._lock:
            if self.clock() < self._blocked_until:
                return Response(403, BLOCKED_PAGE, HTML)
            authorization = headers.get("authorization", "")
            token = self._access_tokens.get(authorization[7:].strip()) if authorization.startswith("Bearer ") else None
            key = token.client_id if token is not None else f"ip:{client}"
            if not self._admit(key, arrived):
                return Response(429, TOO_MANY_REQUESTS_PAGE, HTML)
            if self._authenticate(authorization) is None:
                return UNAUTHORIZED
        try:
            params = parse_query(query)
            payload = None
            if method in ("POST", "PATCH", "DELETE") and body.strip():
                try:
                    payload = json.loads(body)
                except ValueError:
                    raise BadRequest("Request body is not valid JSON") from None
            return self._route(method, path[len("/api/v4/"):].split("/"), params, payload, headers, base)
        except BadRequest as error:
            return _problem(400, "Bad Request", str(error))

    def _route(
        self, method: str, parts: list[str], params: dict[str, Any], payload: Any, headers: dict[str, str], base: str
    ) -> Response:
        head = parts[0]
        rest = parts[1:]
        if head in ("contacts", "companies", "leads"):
            if rest == ["custom_fields"] and method == "GET":
                return _json_response(200, render_field_definitions(head, base))
            if head == "leads" and rest[:1] == ["pipelines"] and method == "GET":
                return _json_response(200, render_pipelines(base))
            if rest == ["notes"]:
                return self._notes_route(method, head, None, params, payload, base)
            if len(rest) == 2 and rest[1] == "notes" and rest[0].isdigit():
                return self._notes_route(method, head, int(rest[0]), params, payload, base)
            if not rest:
                if method == "GET":
                    return self._list_entities(head, params, headers, base)
                if method == "PATCH":
                    return self._write(head, payload, base, update=True)
                if method == "POST":
                    return self._write(head, payload, base, update=False)
                return _problem(405, "Method Not Allowed", "Unsupported method")
            if len(rest) == 1 and rest[0].isdigit():
                if method == "GET":
                    return self._get_entity(head, int(rest[0]), params, base)
                if method == "PATCH":
                    if not isinstance(payload, dict):
                        return _validation_failed([("0", [_error("InvalidType", "", "This value should be of type array.")])])
                    response = self._write(head, [{**payload, "id": int(rest[0])}], base, update=True)
                    if response.status == 200:
                        return _json_response(200, response.json()["_embedded"][head][0])
                    return response
            return _problem(404, "Not Found", "Unknown route")
        if head == "customers":
            if not self.customers_enabled:
                return PAYMENT_REQUIRED
            return NO_CONTENT if method == "GET" else _problem(405, "Method Not Allowed", "Read-only in the sandbox")
        if head == "events":
            if not rest and method == "GET":
                return self._list_events(params, base)
            if len(rest) == 1 and method == "GET":
                return self._get_event(rest[0], base)
        if head == "tasks" and not rest:
            if method == "POST":
                return self._add_tasks(payload, base)
            if method == "GET":
                return self._list_tasks(params, base)
        if head == "account" and not rest and method == "GET":
            return _json_response(200, self._account_info(base))
        if head == "webhooks" and not rest:
            return self._webhooks_route(method, payload, base)
        return _problem(404, "Not Found", "Unknown route")

    # -- reading ------------------------------------------------------------

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
        filters = params.get("filter") if isinstance(params.get("filter"), dict) else {}
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
                low, high = updated
                start = bisect.bisect_left(keys, low) if low is not None else 0
                stop = bisect.bisect_right(keys, high) if high is not None else len(keys)
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
        return render_contact(row, base, self._tags[entity], entity=entity, with_leads="leads" in with_)

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

    # -- writing ------------------------------------------------------------

    def _batch_refused(self, payload: Any, *, empty: str = "InvalidType") -> Response | None:
        """The answer to a body that is not a JSON array of 1..max_batch items (None: it is one).

        amoCRM names an empty array NotBlank on entity writes and InvalidType on notes and tasks.
        """
        if not isinstance(payload, list) or (not payload and empty == "InvalidType"):
            return _validation_failed([("0", [_error("InvalidType", "", "This value should be of type array.")])])
        if not payload:
            return _validation_failed([("0", [_error("NotBlank", "", "This value should not be blank.")])])
        if len(payload) > self.max_batch:
            return _validation_failed([("0", [_error(
                "TooManyElements", "", f"This collection should contain {self.max_batch} elements or less.")])])
        return None

    def _write(self, entity: str, payload: Any, base: str, *, update: bool) -> Response:
        """POST/PATCH /api/v4/{entity}: a JSON array, validated as a whole before anything changes."""
        refused = self._batch_refused(payload, empty="NotBlank")
        if refused is not None:
            return refused
        with self._lock:
            errors = []
            for index, item in enumerate(payload):
                request_id = str(item.get("request_id", index)) if isinstance(item, dict) else str(index)
                item_errors = self._validate(entity, item, update=update)
                if item_errors:
                    errors.append((request_id, item_errors))
            if errors:
                return _validation_failed(errors)
            self._writes.append({"entity": entity, "method": "PATCH" if update else "POST", "body": payload,
                                 "at": self.now()})
            results = []
            notifications: list[_Notification] = []
            for index, item in enumerate(payload):
                request_id = str(item.get("request_id", index))
                changes = self._changes_from_api(entity, item)
                if update:
                    row = self._stores[entity][item["id"]]
                    notifications += self._update_row(entity, row, changes)
                    results.append({"id": row.id, "name": row.name, "updated_at": row.updated_at,
                                    "request_id": request_id, "_links": link(base, f"/api/v4/{entity}/{row.id}")})
                else:
                    row, added = self._add_row(entity, changes)
                    notifications += added
                    results.append({"id": row.id, "request_id": request_id,
                                    "_links": link(base, f"/api/v4/{entity}/{row.id}")})
            self._notify(notifications)
        return _json_response(200, {"_links": link(base, f"/api/v4/{entity}"), "_embedded": {entity: results}})

    def _validate(self, entity: str, item: Any, *, update: bool) -> list[dict[str, str]]:
        if not isinstance(item, dict):
            return [_error("InvalidType", "", "This value should be of type array.")]
        allowed = _WRITABLE[entity]
        errors = [_error("FieldNotExpected", key, "This field was not expected.") for key in item if key not in allowed]
        if update:
            if "id" not in item:
                errors.append(_error("FieldMissing", "id", "This field is missing."))
            elif not _is_int(item["id"]):
                errors.append(_error("InvalidType", "id", "This value should be of type int."))
            elif item["id"] not in self._stores[entity]:
                errors.append(_error("NotFound", "id", "Entity not found."))
        for key, kind in _FIELD_TYPES.items():
            if key in item and key in allowed and key != "id" and not _of_kind(key, item[key], kind):
                errors.append(_error("InvalidType", key, f"This value should be of type {kind}."))
        if "custom_fields_values" in item:
            errors += _validate_custom_fields(item["custom_fields_values"], CUSTOM_FIELDS[entity])
        for key in ("tags_to_add", "tags_to_delete"):
            if key in item:
                errors += _validate_tags(item[key], key)
        embedded = item.get("_embedded")
        if embedded is not None:
            if not isinstance(embedded, dict):
                errors.append(_error("InvalidType", "_embedded", "This value should be of type array."))
            else:
                for key, value in embedded.items():
                    if key == "tags":
                        if value is not None:
                            errors += _validate_tags(value, "_embedded.tags")
                    elif key == "contacts" and entity == "leads":
                        errors += self._validate_links(value, "_embedded.contacts", "contacts")
                    elif key != "companies":
                        errors.append(_error("FieldNotExpected", f"_embedded.{key}", "This field was not expected."))
        if entity == "leads":
            errors += self._validate_status(item, update=update)
        return errors

    def _validate_links(self, value: Any, path: str, entity: str) -> list[dict[str, str]]:
        if not isinstance(value, list):
            return [_error("InvalidType", path, "This value should be of type array.")]
        errors = []
        for index, linked in enumerate(value):
            if not isinstance(linked, dict) or not _is_int(linked.get("id")):
                errors.append(_error("FieldMissing", f"{path}.{index}.id", "This field is missing."))
            elif linked["id"] not in self._stores[entity]:
                errors.append(_error("NotFound", f"{path}.{index}.id", "Entity not found."))
        return errors

    def _validate_status(self, item: dict[str, Any], *, update: bool) -> list[dict[str, str]]:
        if "status_id" not in item and "pipeline_id" not in item:
            return []
        current = self._stores["leads"].get(item["id"]) if update and _is_int(item.get("id")) else None
        pipeline_id = item.get("pipeline_id", current.pipeline_id if current else PIPELINES[0].id)
        pipeline = PIPELINES_BY_ID.get(pipeline_id) if _is_int(pipeline_id) else None
        if pipeline is None:
            return [_error("NotSupportedChoice", "pipeline_id", "The value you selected is not a valid choice.")]
        status_id = item.get("status_id")
        if status_id is not None and status_id not in {status.id for status in pipeline.statuses}:
            return [_error("NotSupportedChoice", "status_id", "The value you selected is not a valid choice.")]
        return []

    def _changes_from_api(self, entity: str, item: dict[str, Any]) -> dict[str, Any]:
        tags = self._tags[entity]
        changes: dict[str, Any] = {
            key: item[key] for key in item
            if key not in ("id", "request_id", "custom_fields_values", "_embedded", "tags_to_add", "tags_to_delete")
        }
        if "custom_fields_values" in item:
            changes["fields"] = _fields_from_api(item["custom_fields_values"] or [], CUSTOM_FIELDS[entity])
        embedded = item.get("_embedded") or {}
        if "tags" in embedded:
            changes["tags"] = [_tag_id(tags, tag) for tag in embedded["tags"] or []]
        if "contacts" in embedded and entity == "leads":
            ordered = sorted(embedded["contacts"], key=lambda linked: not linked.get("is_main", False))
            changes["contact_ids"] = [linked["id"] for linked in ordered]
        if item.get("tags_to_add"):
            changes["tags_add"] = [_tag_id(tags, tag) for tag in item["tags_to_add"]]
        if item.get("tags_to_delete"):
            changes["tags_delete"] = [
                tag["id"] if "id" in tag else tags.id_for(tag["name"]) for tag in item["tags_to_delete"]
            ]
        return changes

    # -- mutation core (API and Python share it) ------------------------------

    def _add_row(self, entity: str, changes: dict[str, Any]) -> tuple[Any, list[_Notification]]:
        now = self.now()
        row_id = self._next_ids[entity]
        self._next_ids[entity] += 1
        user = changes.get("responsible_user_id", ADMIN_USER)
        common: dict[str, Any] = {
            "id": row_id,
            "responsible_user_id": user,
            "created_by": changes.get("created_by", ADMIN_USER),
            "updated_by": changes.get("updated_by", ADMIN_USER),
            "created_at": changes.get("created_at", now),
            "updated_at": changes.get("updated_at", now),
            "fields": {field_id: values for field_id, values in changes.get("fields", {}).items() if values},
            "tags": list(dict.fromkeys(changes.get("tags", []) + changes.get("tags_add", []))),
        }
        if entity == "leads":
            pipeline = PIPELINES_BY_ID[changes.get("pipeline_id", PIPELINES[0].id)]
            status_id = changes.get("status_id", pipeline.working_status_ids[0])
            closed = status_id in (WON_STATUS_ID, LOST_STATUS_ID)
            row: Any = LeadRow(
                name=changes.get("name", f"Сделка #{row_id}"), price=changes.get("price", 0), status_id=status_id,
                pipeline_id=pipeline.id, closed_at=changes.get("closed_at", now if closed else None),
                contact_ids=list(changes.get("contact_ids", [])), **common,
            )
            for contact_id in row.contact_ids:
                self._stores["contacts"][contact_id].lead_ids.append(row.id)
        else:
            first, last = changes.get("first_name", ""), changes.get("last_name", "")
            name = changes.get("name") or " ".join(part for part in (first, last) if part) or f"Контакт #{row_id}"
            row = ContactRow(name=name, first_name=first, last_name=last, **common)
        self._stores[entity][row.id] = row
        self._versions[entity] += 1
        self._event(f"{EVENT_ENTITY[entity]}_added", entity, row.id)
        setting = f"add_{EVENT_ENTITY[entity]}"
        return row, [_Notification(setting, _section(entity, "add"), self._webhook_fields(entity, row))]

    def _update_row(self, entity: str, row: Any, changes: dict[str, Any]) -> list[_Notification]:
        old_status, old_pipeline, old_name, old_price = (
            getattr(row, "status_id", None), getattr(row, "pipeline_id", None), row.name, getattr(row, "price", None)
        )
        for key in ("name", "first_name", "last_name", "responsible_user_id", "created_by", "created_at", "price",
                    "pipeline_id", "status_id", "closed_at"):
            if key in changes:
                setattr(row, key, changes[key])
        if entity != "leads" and ("first_name" in changes or "last_name" in changes) and "name" not in changes:
            row.name = " ".join(part for part in (row.first_name, row.last_name) if part) or row.name
        changed_fields = []
        for field_id, values in changes.get("fields", {}).items():
            if values:
                row.fields[field_id] = values
            else:
                row.fields.pop(field_id, None)
            changed_fields.append(field_id)
        tags_before = list(row.tags)
        if "tags" in changes:
            row.tags = list(dict.fromkeys(changes["tags"]))
        for tag_id in changes.get("tags_add", []):
            if tag_id not in row.tags:
                row.tags.append(tag_id)
        for tag_id in changes.get("tags_delete", []):
            if tag_id in row.tags:
                row.tags.remove(tag_id)
        if entity == "leads" and "contact_ids" in changes:
            for contact_id in row.contact_ids:
                contact = self._stores["contacts"].get(contact_id)
                if contact and row.id in contact.lead_ids:
                    contact.lead_ids.remove(row.id)
            row.contact_ids = list(dict.fromkeys(changes["contact_ids"]))
            for contact_id in row.contact_ids:
                self._stores["contacts"][contact_id].lead_ids.append(row.id)
        status_changed = entity == "leads" and (row.status_id != old_status or row.pipeline_id != old_pipeline)
        if status_changed and "closed_at" not in changes:
            row.closed_at = self.now() if row.status_id in (WON_STATUS_ID, LOST_STATUS_ID) else None
        row.updated_by = changes.get("updated_by", ADMIN_USER)
        row.updated_at = changes.get("updated_at", self.now())
        self._versions[entity] += 1

        noun = EVENT_ENTITY[entity]
        if row.name != old_name:
            self._event("name_field_changed", entity, row.id, [{"name_field_value": {"name": old_name}}],
                        [{"name_field_value": {"name": row.name}}])
        for field_id in changed_fields:
            self._event(f"custom_field_{field_id}_value_changed", entity, row.id, [], [{"custom_field_value": {
                "field_id": field_id, "field_type": CUSTOM_FIELDS[entity][field_id].type}}])
        for tag_id in row.tags:
            if tag_id not in tags_before:
                self._event("entity_tag_added", entity, row.id, [], [{"tag": {"name": self._tags[entity].name(tag_id)}}])
        for tag_id in tags_before:
            if tag_id not in row.tags:
                self._event("entity_tag_deleted", entity, row.id, [{"tag": {"name": self._tags[entity].name(tag_id)}}], [])
        if entity == "leads" and row.price != old_price:
            self._event("sale_field_changed", entity, row.id, [{"sale_field_value": {"sale": old_price}}],
                        [{"sale_field_value": {"sale": row.price}}])
        fields = self._webhook_fields(entity, row)
        notifications = [_Notification(f"update_{noun}", _section(entity, "update"), fields)]
        if status_changed:
            self._event("lead_status_changed", entity, row.id,
                        [{"lead_status": {"id": old_status, "pipeline_id": old_pipeline}}],
                        [{"lead_status": {"id": row.status_id, "pipeline_id": row.pipeline_id}}])
            extra = [("old_status_id", str(old_status)), ("old_pipeline_id", str(old_pipeline))]
            notifications.append(_Notification("status_lead", "leads[status]", fields + extra))
        return notifications

    def _delete_row(self, entity: str, row_id: int) -> list[_Notification]:
        row = self._stores[entity].pop(row_id, None)
        if row is None:
            raise KeyError(f"{entity} {row_id} does not exist")
        self._versions[entity] += 1
        if entity == "leads":
            for contact_id in row.contact_ids:
                contact = self._stores["contacts"].get(contact_id)
                if contact and row.id in contact.lead_ids:
                    contact.lead_ids.remove(row.id)
            pairs = [("id", str(row.id)), ("status_id", str(row.status_id)), ("pipeline_id", str(row.pipeline_id))]
        else:
            if entity == "contacts":
                for lead_id in row.lead_ids:
                    lead = self._stores["leads"].get(lead_id)
                    if lead and row.id in lead.contact_ids:
                        lead.contact_ids.remove(row.id)
            pairs = [("id", str(row.id)), ("type", EVENT_ENTITY[entity])]
        self._event(f"{EVENT_ENTITY[entity]}_deleted", entity, row.id)
        return [_Notification(f"delete_{EVENT_ENTITY[entity]}", _section(entity, "delete"), pairs)]

    # -- Python mutation API ------------------------------------------------

    def add_contact(
        self,
        *,
        name: str | None = None,
        first_name: str = "",
        last_name: str = "",
        phones: Iterable[str | tuple[str, str]] = (),
        emails: Iterable[str | tuple[str, str]] = (),
        city: str | None = None,
        tags: Iterable[str] = (),
        responsible_user_id: int = ADMIN_USER,
    ) -> int:
        """Create a contact as a manager would in the UI; fires contact_added and webhooks. Returns the id."""
        return self._add("contacts", _python_changes(
            self._tags["contacts"], name=name, first_name=first_name, last_name=last_name, phones=phones,
            emails=emails, city=city, tags=tags, responsible_user_id=responsible_user_id,
        ))

    def update_contact(
        self,
        contact_id: int,
        *,
        name: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        phones: Iterable[str | tuple[str, str]] | None = None,
        emails: Iterable[str | tuple[str, str]] | None = None,
        city: str | None = None,
        tags: Iterable[str] | None = None,
        responsible_user_id: int | None = None,
    ) -> None:
        """Change a contact (only the arguments given); bumps updated_at and fires update webhooks."""
        self._update("contacts", contact_id, _python_changes(
            self._tags["contacts"], name=name, first_name=first_name, last_name=last_name, phones=phones,
            emails=emails, city=city, tags=tags, responsible_user_id=responsible_user_id,
        ))

    def delete_contact(self, contact_id: int) -> None:
        """Delete a contact: a contact_deleted event and a delete webhook, as in the UI."""
        self._delete("contacts", contact_id)

    def add_company(self, *, name: str, phones: Iterable[str | tuple[str, str]] = (),
                    emails: Iterable[str | tuple[str, str]] = (), tags: Iterable[str] = ()) -> int:
        """Create a company; its webhooks arrive under contacts[...] with type=company."""
        return self._add("companies", _python_changes(self._tags["companies"], name=name, phones=phones,
                                                      emails=emails, tags=tags))

    def update_company(self, company_id: int, *, name: str | None = None, tags: Iterable[str] | None = None) -> None:
        self._update("companies", company_id, _python_changes(self._tags["companies"], name=name, tags=tags))

    def delete_company(self, company_id: int) -> None:
        self._delete("companies", company_id)

    def add_lead(
        self,
        *,
        name: str | None = None,
        price: int = 0,
        contact_id: int | None = None,
        pipeline_id: int | None = None,
        status_id: int | None = None,
        promo_code: str | None = None,
        tags: Iterable[str] = (),
        responsible_user_id: int = ADMIN_USER,
    ) -> int:
        """Create a deal, linked to `contact_id` as its main contact. Returns the id."""
        changes: dict[str, Any] = {"price": price, "responsible_user_id": responsible_user_id,
                                   "tags": [self._tags["leads"].id_for(tag) for tag in tags]}
        if name is not None:
            changes["name"] = name
        if contact_id is not None:
            if contact_id not in self._stores["contacts"]:
                raise KeyError(f"contacts {contact_id} does not exist")
            changes["contact_ids"] = [contact_id]
        if pipeline_id is not None:
            changes["pipeline_id"] = pipeline_id
        if status_id is not None:
            changes["status_id"] = status_id
        if promo_code:
            changes["fields"] = {PROMO_CODE.id: [(promo_code, None)]}
        return self._add("leads", changes)

    def update_lead(
        self,
        lead_id: int,
        *,
        name: str | None = None,
        price: int | None = None,
        pipeline_id: int | None = None,
        status_id: int | None = None,
        tags: Iterable[str] | None = None,
        responsible_user_id: int | None = None,
    ) -> None:
        """Change a deal; a new status fires lead_status_changed and the status webhook too."""
        changes: dict[str, Any] = {
            key: value for key, value in (("name", name), ("price", price), ("pipeline_id", pipeline_id),
                                          ("status_id", status_id), ("responsible_user_id", responsible_user_id))
            if value is not None
        }
        if tags is not None:
            changes["tags"] = [self._tags["leads"].id_for(tag) for tag in tags]
        self._update("leads", lead_id, changes)

    def delete_lead(self, lead_id: int) -> None:
        self._delete("leads", lead_id)

    def _add(self, entity: str, changes: dict[str, Any]) -> int:
        with self._lock:
            row, notifications = self._add_row(entity, changes)
            self._notify(notifications)
            return row.id

    def _update(self, entity: str, row_id: int, changes: dict[str, Any]) -> None:
        with self._lock:
            row = self._stores[entity].get(row_id)
            if row is None:
                raise KeyError(f"{entity} {row_id} does not exist")
            self._notify(self._update_row(entity, row, changes))

    def _delete(self, entity: str, row_id: int) -> None:
        with self._lock:
            self._notify(self._delete_row(entity, row_id))

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

    @property
    def contacts_count(self) -> int:
        return len(self._stores["contacts"])

    @property
    def leads_count(self) -> int:
        return len(self._stores["leads"])

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

    # -- events -------------------------------------------------------------

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
        filters = params.get("filter") if isinstance(params.get("filter"), dict) else {}
        types = set(_as_list(filters.get("type")))
        entities = {EVENT_ENTITY.get(name, name) for name in _as_list(filters.get("entity"))}
        entity_ids = {_int(v, "filter[entity_id]") for v in _as_list(filters.get("entity_id"))}
        event_ids = set(_as_list(filters.get("id")))
        created = _range(filters.get("created_at"), "filter[created_at]")
        with self._lock:
            matched = [
                event for event in reversed(self._events)
                if (not types or event["type"] in types
                    or ("custom_field_value_changed" in types and event["type"].startswith("custom_field_")))
                and (not entities or event["entity_type"] in entities)
                and (not entity_ids or event["entity_id"] in entity_ids)
                and (not event_ids or event["id"] in event_ids)
                and (created is None or _in_range(event["created_at"], created))
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

    # -- notes and tasks ----------------------------------------------------

    def _notes_route(self, method: str, entity: str, entity_id: int | None, params: dict[str, Any],
                     payload: Any, base: str) -> Response:
        if method == "GET":
            page, limit = self._page_params(params, MAX_LIMIT)
            with self._lock:
                notes = [note for note in self._notes if note["entity_type"] == entity
                         and (entity_id is None or note["entity_id"] == entity_id)]
            offset = (page - 1) * limit
            chunk = notes[offset:offset + limit]
            if not chunk:
                return NO_CONTENT
            path = f"/api/v4/{entity}/{entity_id}/notes" if entity_id is not None else f"/api/v4/{entity}/notes"
            items = [{**note, "_links": link(base, f"/api/v4/{entity}/{note['entity_id']}/notes/{note['id']}")}
                     for note in chunk]
            return _json_response(200, _hal_page(base, path, params, page, limit, offset + limit < len(notes),
                                                 "notes", items))
        if method != "POST":
            return _problem(405, "Method Not Allowed", "Unsupported method")
        refused = self._batch_refused(payload)
        if refused is not None:
            return refused
        with self._lock:
            errors = []
            for index, item in enumerate(payload):
                item_errors = self._validate_note(entity, entity_id, item)
                if item_errors:
                    errors.append((str(index), item_errors))
            if errors:
                return _validation_failed(errors)
            now = self.now()
            results = []
            for index, item in enumerate(payload):
                target = entity_id if entity_id is not None else item["entity_id"]
                note = {
                    "id": self._next_note_id,
                    "entity_id": target,
                    "entity_type": entity,
                    "created_by": item.get("created_by", ADMIN_USER),
                    "updated_by": item.get("created_by", ADMIN_USER),
                    "created_at": now,
                    "updated_at": now,
                    "responsible_user_id": item.get("responsible_user_id", ADMIN_USER),
                    "group_id": 0,
                    "note_type": item["note_type"],
                    "params": item.get("params", {}),
                    "account_id": ACCOUNT_ID,
                }
                self._next_note_id += 1
                self._notes.append(note)
                self._event(f"{item['note_type']}_note_added", entity, target, [], [{"note": {"id": note["id"]}}])
                results.append({"id": note["id"], "entity_id": target, "request_id": str(item.get("request_id", index)),
                                "_links": link(base, f"/api/v4/{entity}/{target}/notes/{note['id']}")})
        path = f"/api/v4/{entity}/{entity_id}/notes" if entity_id is not None else f"/api/v4/{entity}/notes"
        return _json_response(200, {"_links": link(base, path), "_embedded": {"notes": results}})

    def _validate_note(self, entity: str, entity_id: int | None, item: Any) -> list[dict[str, str]]:
        if not isinstance(item, dict):
            return [_error("InvalidType", "", "This value should be of type array.")]
        allowed = {"entity_id", "note_type", "params", "created_by", "responsible_user_id", "request_id",
                   "is_need_to_trigger_digital_pipeline"}
        errors = [_error("FieldNotExpected", key, "This field was not expected.") for key in item if key not in allowed]
        target = entity_id if entity_id is not None else item.get("entity_id")
        if target is None:
            errors.append(_error("FieldMissing", "entity_id", "This field is missing."))
        elif not _is_int(target) or target not in self._stores[entity]:
            errors.append(_error("NotFound", "entity_id", "Entity not found."))
        note_type = item.get("note_type")
        if note_type is None:
            errors.append(_error("FieldMissing", "note_type", "This field is missing."))
        elif note_type not in NOTE_TYPES:
            errors.append(_error("NotSupportedChoice", "note_type", "The value you selected is not a valid choice."))
        params = item.get("params")
        if note_type == "common":
            if not isinstance(params, dict) or "text" not in params:
                errors.append(_error("FieldMissing", "params.text", "This field is missing."))
            elif not isinstance(params["text"], str) or not params["text"].strip():
                errors.append(_error("NotBlank", "params.text", "This value should not be blank."))
        return errors

    def _add_tasks(self, payload: Any, base: str) -> Response:
        refused = self._batch_refused(payload)
        if refused is not None:
            return refused
        with self._lock:
            errors = []
            for index, item in enumerate(payload):
                item_errors = self._validate_task(item)
                if item_errors:
                    errors.append((str(index), item_errors))
            if errors:
                return _validation_failed(errors)
            now = self.now()
            results = []
            for index, item in enumerate(payload):
                task = {
                    "id": self._next_task_id,
                    "created_by": item.get("created_by", ADMIN_USER),
                    "updated_by": item.get("created_by", ADMIN_USER),
                    "created_at": item.get("created_at", now),
                    "updated_at": item.get("updated_at", now),
                    "responsible_user_id": item.get("responsible_user_id", ADMIN_USER),
                    "group_id": 0,
                    "entity_id": item.get("entity_id"),
                    "entity_type": item.get("entity_type"),
                    "duration": item.get("duration", 0),
                    "is_completed": item.get("is_completed", False),
                    "task_type_id": item.get("task_type_id", 1),
                    "text": item["text"],
                    "result": item.get("result", []),
                    "complete_till": item["complete_till"],
                    "account_id": ACCOUNT_ID,
                }
                self._next_task_id += 1
                self._tasks.append(task)
                results.append({"id": task["id"], "request_id": str(item.get("request_id", index)),
                                "_links": link(base, f"/api/v4/tasks/{task['id']}")})
        return _json_response(200, {"_links": link(base, "/api/v4/tasks"), "_embedded": {"tasks": results}})

    def _validate_task(self, item: Any) -> list[dict[str, str]]:
        if not isinstance(item, dict):
            return [_error("InvalidType", "", "This value should be of type array.")]
        allowed = {"responsible_user_id", "entity_id", "entity_type", "is_completed", "task_type_id", "text",
                   "duration", "complete_till", "result", "created_by", "created_at", "updated_at", "updated_by",
                   "request_id"}
        errors = [_error("FieldNotExpected", key, "This field was not expected.") for key in item if key not in allowed]
        if not isinstance(item.get("text"), str) or not item.get("text", "").strip():
            errors.append(_error("FieldMissing" if "text" not in item else "NotBlank", "text",
                                 "This field is missing." if "text" not in item else "This value should not be blank."))
        if "complete_till" not in item:
            errors.append(_error("FieldMissing", "complete_till", "This field is missing."))
        elif not _is_int(item["complete_till"]):
            errors.append(_error("InvalidType", "complete_till", "This value should be of type int."))
        for key in ("responsible_user_id", "task_type_id", "entity_id", "duration"):
            if key in item and not _is_int(item[key]):
                errors.append(_error("InvalidType", key, "This value should be of type int."))
        if "responsible_user_id" in item and _is_int(item["responsible_user_id"]) and item["responsible_user_id"] not in USERS:
            errors.append(_error("NotSupportedChoice", "responsible_user_id", "The value you selected is not a valid choice."))
        entity_type = item.get("entity_type")
        if entity_type is not None and entity_type not in TASK_ENTITY_TYPES:
            errors.append(_error("NotSupportedChoice", "entity_type", "The value you selected is not a valid choice."))
        if "entity_id" in item and entity_type is None:
            errors.append(_error("FieldMissing", "entity_type", "This field is missing."))
        if entity_type in self._stores and _is_int(item.get("entity_id")) and item["entity_id"] not in self._stores[entity_type]:
            errors.append(_error("NotFound", "entity_id", "Entity not found."))
        return errors

    def _list_tasks(self, params: dict[str, Any], base: str) -> Response:
        page, limit = self._page_params(params, MAX_LIMIT)
        filters = params.get("filter") if isinstance(params.get("filter"), dict) else {}
        entity_types = set(_as_list(filters.get("entity_type")))
        entity_ids = {_int(v, "filter[entity_id]") for v in _as_list(filters.get("entity_id"))}
        with self._lock:
            tasks = [task for task in self._tasks if (not entity_types or task["entity_type"] in entity_types)
                     and (not entity_ids or task["entity_id"] in entity_ids)]
        offset = (page - 1) * limit
        chunk = tasks[offset:offset + limit]
        if not chunk:
            return NO_CONTENT
        items = [{**task, "_links": link(base, f"/api/v4/tasks/{task['id']}")} for task in chunk]
        return _json_response(200, _hal_page(base, "/api/v4/tasks", params, page, limit,
                                             offset + limit < len(tasks), "tasks", items))

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
            pairs += [(f"tags[{index}][id]", str(tag_id)), (f"tags[{index}][name]", self._tags[entity].name(tag_id) or "")]
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
            copies = 0 if roll < self.webhook_drop_rate else (2 if self._webhook_rng.random() < self.webhook_duplicate_rate else 1)
            records = []
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

    # -- stats --------------------------------------------------------------

    def _count_request(self, method: str, path: str) -> None:
        normalized = re.sub(r"/\d+(?=/|$)", "/{id}", path)
        with self._stats_lock:
            self._stats["requests"] += 1
            self._by_path[f"{method} {normalized}"] += 1

    def _count_status(self, status: int) -> None:
        with self._stats_lock:
            self._by_status[str(status)] += 1
            if status == 429:
                self._stats["too_many_requests"] += 1
            elif status == 403:
                self._stats["blocked"] += 1
            elif status == 401:
                self._stats["unauthorized"] += 1

    def _enter(self) -> None:
        with self._stats_lock:
            self._in_flight += 1
            self._stats["max_in_flight"] = max(self._stats["max_in_flight"], self._in_flight)

    def _leave(self) -> None:
        with self._stats_lock:
            self._in_flight -= 1

    def stats(self) -> dict[str, Any]:
        """Counters for benchmarks: requests, per path and status, 429s, 403s, 401s, refreshes, webhooks."""
        with self._stats_lock:
            counters = dict(self._stats)
            snapshot: dict[str, Any] = {
                "requests": counters.get("requests", 0),
                "too_many_requests": counters.get("too_many_requests", 0),
                "blocked": counters.get("blocked", 0),
                "unauthorized": counters.get("unauthorized", 0),
                "refreshes": counters.get("refreshes", 0),
                "refresh_attempts": counters.get("refresh_attempts", 0),
                "codes_exchanged": counters.get("codes_exchanged", 0),
                "max_in_flight": counters.get("max_in_flight", 0),
                "webhooks_sent": counters.get("webhooks_sent", 0),
                "webhooks_failed": counters.get("webhooks_failed", 0),
                "webhooks_dropped": counters.get("webhooks_dropped", 0),
                "webhooks_duplicated": counters.get("webhooks_duplicated", 0),
                "answers_cut": counters.get("answers_cut", 0),
                "by_path": dict(self._by_path),
                "by_status": dict(self._by_status),
            }
        snapshot["contacts"] = self.contacts_count
        snapshot["leads"] = self.leads_count
        return snapshot

    def reset_stats(self) -> None:
        with self._stats_lock:
            self._stats.clear()
            self._by_path.clear()
            self._by_status.clear()

    # -- faults -------------------------------------------------------------

    def cut_answers(self, count: int = 1, *, path: str | None = None, mode: str = "drop") -> None:
        """Cut the next `count` API answers (to paths starting with `path`, when given) off mid-body.

        Answers break off now and then (a balancer restarts, a connection is
        reset). "drop" sends the headers with the whole Content-Length and
        half the body, then closes the connection; "truncate" sends half the
        body as if it were all of it (a proxy that cut it short). The request
        is carried out either way: only its answer is lost.
        """
        if mode not in ("drop", "truncate"):
            raise ValueError("mode must be 'drop' or 'truncate'")
        with self._stats_lock:
            self._cuts += [(path, mode)] * count

    def _take_cut(self, target: str) -> str | None:
        """The way to cut the answer to `target`, if one is due (see cut_answers)."""
        route = urlsplit(target).path
        with self._stats_lock:
            for i, (prefix, mode) in enumerate(self._cuts):
                if prefix is None or route.startswith(prefix):
                    del self._cuts[i]
                    self._stats["answers_cut"] += 1
                    return mode
        return None


# ---------------------------------------------------------------------------
# Helpers shared by the account's handlers.
# ---------------------------------------------------------------------------

_COMMON_WRITABLE = {"id", "name", "responsible_user_id", "created_by", "updated_by", "created_at", "updated_at",
                    "custom_fields_values", "_embedded", "tags_to_add", "tags_to_delete", "request_id"}
_WRITABLE = {
    "contacts": _COMMON_WRITABLE | {"first_name", "last_name"},
    "companies": set(_COMMON_WRITABLE),
    "leads": _COMMON_WRITABLE | {"price", "status_id", "pipeline_id", "closed_at", "loss_reason_id"},
}
_FIELD_TYPES = {
    "id": "int", "name": "string", "first_name": "string", "last_name": "string", "responsible_user_id": "int",
    "created_by": "int", "updated_by": "int", "created_at": "int", "updated_at": "int", "price": "int",
    "status_id": "int", "pipeline_id": "int", "closed_at": "int", "loss_reason_id": "int",
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_NULLABLE = frozenset({"closed_at", "loss_reason_id"})


def _of_kind(key: str, value: Any, kind: str) -> bool:
    if value is None:
        return key in _NULLABLE
    return _is_int(value) if kind == "int" else isinstance(value, str)


def _validate_tags(value: Any, path: str) -> list[dict[str, str]]:
    if not isinstance(value, list):
        return [_error("InvalidType", path, "This value should be of type array.")]
    errors = []
    for index, tag in enumerate(value):
        if not isinstance(tag, dict) or not (_is_int(tag.get("id")) or isinstance(tag.get("name"), str)):
            errors.append(_error("FieldMissing", f"{path}.{index}.name", "This field is missing."))
    return errors


def _validate_custom_fields(value: Any, definitions: dict[int, CustomField]) -> list[dict[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        return [_error("InvalidType", "custom_fields_values", "This value should be of type array.")]
    by_code = {d.code: d for d in definitions.values() if d.code}
    errors = []
    for index, entry in enumerate(value):
        path = f"custom_fields_values.{index}"
        if not isinstance(entry, dict):
            errors.append(_error("InvalidType", path, "This value should be of type array."))
            continue
        for key in entry:
            if key not in ("field_id", "field_code", "values"):
                errors.append(_error("FieldNotExpected", f"{path}.{key}", "This field was not expected."))
        definition = None
        if "field_id" in entry:
            definition = definitions.get(entry["field_id"]) if _is_int(entry["field_id"]) else None
            if definition is None:
                errors.append(_error("NotSupportedChoice", f"{path}.field_id",
                                     "The value you selected is not a valid choice."))
        elif "field_code" in entry:
            definition = by_code.get(entry["field_code"])
            if definition is None:
                errors.append(_error("NotSupportedChoice", f"{path}.field_code",
                                     "The value you selected is not a valid choice."))
        else:
            errors.append(_error("FieldMissing", f"{path}.field_id", "This field is missing."))
        values = entry.get("values")
        if values is None:
            continue
        if not isinstance(values, list):
            errors.append(_error("InvalidType", f"{path}.values", "This value should be of type array."))
            continue
        for position, item in enumerate(values):
            item_path = f"{path}.values.{position}"
            if not isinstance(item, dict):
                errors.append(_error("InvalidType", item_path, "This value should be of type array."))
                continue
            listed = definition is None or definition.has_enum_codes or definition.has_options
            allowed = ("value", "enum_id", "enum_code") if listed else ("value",)
            for key in item:
                if key not in allowed:
                    errors.append(_error("FieldNotExpected", f"{item_path}.{key}", "This field was not expected."))
            if "value" not in item:
                if not (definition is not None and definition.has_options and "enum_id" in item):
                    errors.append(_error("FieldMissing", f"{item_path}.value", "This field is missing."))
            elif not isinstance(item["value"], (str, int, float)) or isinstance(item["value"], bool):
                errors.append(_error("InvalidType", f"{item_path}.value", "This value should be of type string."))
            elif definition is not None and definition.holds_dates and _date_value(item["value"]) is None:
                errors.append(_error("InvalidType", f"{item_path}.value",
                                     "This value should be a unix timestamp or a date in ISO 8601."))
            elif (definition is not None and definition.has_options and "enum_id" not in item
                  and definition.enum_id(str(item["value"])) is None):
                errors.append(_error("NotSupportedChoice", f"{item_path}.value",
                                     "The value you selected is not a valid choice."))
            if definition is not None and definition.has_options and "enum_id" in item:
                if definition.enum_code(item["enum_id"]) is None:
                    errors.append(_error("NotSupportedChoice", f"{item_path}.enum_id",
                                         "The value you selected is not a valid choice."))
            if definition is not None and definition.has_enum_codes:
                if "enum_code" in item and definition.enum_id(str(item["enum_code"])) is None:
                    errors.append(_error("NotSupportedChoice", f"{item_path}.enum_code",
                                         "The value you selected is not a valid choice."))
                if "enum_id" in item and definition.enum_code(item["enum_id"]) is None:
                    errors.append(_error("NotSupportedChoice", f"{item_path}.enum_id",
                                         "The value you selected is not a valid choice."))
    return errors


def _fields_from_api(entries: list[dict[str, Any]], definitions: dict[int, CustomField]) -> dict[int, list[Any]]:
    """Validated `custom_fields_values` -> {field id: [(value, enum id)]}; an empty list clears a field."""
    by_code = {d.code: d for d in definitions.values() if d.code}
    result: dict[int, list[Any]] = {}
    for entry in entries:
        definition = definitions[entry["field_id"]] if "field_id" in entry else by_code[entry["field_code"]]
        values: list[tuple[str | int, int | None]] = []
        for item in entry.get("values") or []:
            if definition.has_enum_codes:
                enum_id = item.get("enum_id") or definition.enum_id(item.get("enum_code", "WORK"))
                values.append((str(item["value"]), enum_id))
            elif definition.has_options:
                enum_id = item.get("enum_id") or definition.enum_id(str(item.get("value")))
                values.append((definition.enum_code(enum_id) or str(item.get("value")), enum_id))
            elif definition.holds_dates:
                values.append((_date_value(item["value"]) or 0, None))
            else:
                values.append((str(item["value"]), None))
        result[definition.id] = values
    return result


def _date_value(value: Any) -> int | None:
    """A date field's value as sent (unix seconds, or ISO 8601) as stored: unix seconds; None if neither.

    A bare date means midnight in the account's zone, as the interface stores it.
    """
    if _is_int(value) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        return int(value)
    if not isinstance(value, str):
        return None
    try:
        if len(value.strip()) == 10:
            return account_midnight(date.fromisoformat(value.strip()))
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return int(moment.timestamp() if moment.tzinfo else moment.replace(tzinfo=timezone.utc).timestamp())


def _tag_id(tags: TagRegistry, tag: dict[str, Any]) -> int:
    return tag["id"] if _is_int(tag.get("id")) else tags.id_for(tag["name"])


def _python_changes(registry: TagRegistry, **given: Any) -> dict[str, Any]:
    """Keyword arguments of the Python mutation methods -> the internal change set."""
    changes: dict[str, Any] = {}
    fields: FieldValues = {}
    for key, value in given.items():
        if value is None:
            continue
        if key in ("phones", "emails"):
            definition = PHONE if key == "phones" else EMAIL
            entries = [(item, "WORK") if isinstance(item, str) else item for item in value]
            fields[definition.id] = [(raw, definition.enum_id(code)) for raw, code in entries]
        elif key == "city":
            fields[CITY.id] = [(value, None)] if value else []
        elif key == "tags":
            changes["tags"] = [registry.id_for(tag) for tag in value]
        else:
            changes[key] = value
    if fields:
        changes["fields"] = fields
    return changes


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


def _hal_page(base: str, path: str, params: dict[str, Any], page: int, limit: int, has_next: bool,
              key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    def href(number: int) -> dict[str, str]:
        return {"href": f"{base}{path}?{_page_query(params, number, limit)}"}

    links = {"self": href(page)}
    if has_next:
        links["next"] = href(page + 1)
    if page > 1:
        links["first"] = href(1)
        links["prev"] = href(page - 1)
    return {"_page": page, "_links": links, "_embedded": {key: items}}


def _page_query(params: dict[str, Any], page: int, limit: int) -> str:
    """The request's own parameters with page and limit replaced, re-encoded with brackets."""
    pairs: list[tuple[str, str]] = []

    def flatten(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                flatten(f"{prefix}[{key}]", inner)
        else:
            pairs.append((prefix, str(value)))

    for key, value in params.items():
        if key not in ("page", "limit"):
            flatten(key, value)
    pairs += [("page", str(page)), ("limit", str(limit))]
    return urlencode(pairs)


def _section(entity: str, action: str) -> str:
    """Webhook form sections: companies travel under contacts[...] with type=company."""
    return f"{'leads' if entity == 'leads' else 'contacts'}[{action}]"


def _rest(key: str) -> str:
    return key[len(key.split("[", 1)[0]):]


_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def _ulid(milliseconds: int, counter: int) -> str:
    """Event ids look like ULIDs (26 lowercase base32 characters) and sort by time."""
    value = (milliseconds << 80) | (counter & ((1 << 80) - 1))
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def _decode_params(body: bytes, content_type: str) -> dict[str, Any]:
    """OAuth bodies come as JSON (the documented examples) or form-encoded (OAuth clients)."""
    text = body.decode("utf-8", errors="replace")
    if "json" in content_type or text.lstrip().startswith("{"):
        try:
            data = json.loads(text or "{}")
        except ValueError:
            raise BadRequest("Request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise BadRequest("Request body must be an object")
        return data
    return dict(parse_qsl(text, keep_blank_values=True))


# ---------------------------------------------------------------------------
# HTTP.
# ---------------------------------------------------------------------------


# Linux reports, with each read, when the kernel received the bytes (CLOCK_REALTIME, the clock of time.time).
_SO_TIMESTAMPNS: int | None = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform.startswith("linux") else None)
_TIMESPEC = struct.Struct("@qq")
_ANCILLARY_SPACE = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0


class _StampedReader(io.RawIOBase):
    """A connection's incoming bytes, with the time the kernel received those of the latest read.

    This is when a request really arrived, whatever the emulator was doing:
    a thread serializing a large page, a garbage collection or another
    process on the same cores delays when Python reads the request, not
    when it arrived. `received_at` is None when the kernel gave no time.
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock
        self.received_at: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size, ancillary, _flags, _address = self._sock.recvmsg_into([buffer], _ANCILLARY_SPACE)
        self.received_at = None
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
                seconds, nanoseconds = _TIMESPEC.unpack_from(data)
                self.received_at = seconds + nanoseconds / 1e9
        return size


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    _arrived: float | None = None
    _stamps: _StampedReader | None = None

    def setup(self) -> None:
        super().setup()
        # Kernel receive times are wall-clock times: usable only when the account runs on the wall clock.
        if self.server.account.clock is not time.time or _SO_TIMESTAMPNS is None or not _ANCILLARY_SPACE:
            return
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        except OSError:
            return
        self.rfile.close()
        self._stamps = _StampedReader(self.connection)
        self.rfile = io.BufferedReader(self._stamps)

    def parse_request(self) -> bool:
        # The rate limit counts a request when it arrived: when the kernel
        # received the request line, if it reports that, else now, with the
        # line just read, before the headers are parsed or this thread waits
        # behind another.
        received = self._stamps.received_at if self._stamps is not None else None
        self._arrived = received if received is not None else self.server.account.clock()
        return super().parse_request()

    def _serve(self) -> None:
        arrived = self._arrived if self._arrived is not None else self.server.account.clock()
        self._arrived = None
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        account = self.server.account
        host = self.headers.get("Host") or f"{self.server.server_address[0]}:{self.server.server_address[1]}"
        is_sandbox_route = self.path.startswith("/_sandbox/")
        if not is_sandbox_route:
            account._enter()
        try:
            response = account.handle(self.command, self.path, headers=dict(self.headers.items()), body=body,
                                      client=self.client_address[0], base_url=f"http://{host}", arrived=arrived)
            if account.latency and not is_sandbox_route:
                time.sleep(account.latency)
        finally:
            if not is_sandbox_route:
                account._leave()
        body = response.body
        cut = account._take_cut(self.path) if account._cuts and not is_sandbox_route and body else None
        if cut == "truncate":
            body = body[: len(body) // 2]
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.status != 204:
            if response.content_type:
                self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Server", "nginx")
        self.end_headers()
        if cut == "drop":  # half the promised bytes, then the connection closes (Account.cut_answers)
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        if response.status != 204 and body:
            self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

    def log_message(self, format: str, *args: Any) -> None:
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], account: Account) -> None:
        self.account = account
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a timeout, a stopped run, a pool closing) is its business, as on the real API."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class SandboxServer:
    """Serves an `Account` over plain HTTP on a background thread.

    `with SandboxServer(account, port=0) as server:` binds a free port;
    `server.base_url` is what a client uses in place of https://SUBDOMAIN.amocrm.ru.
    """

    def __init__(self, account: Account, host: str = "127.0.0.1", port: int = 0) -> None:
        self.account = account
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the server is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def client_id(self) -> str:
        return self.account.integration.client_id

    @property
    def client_secret(self) -> str:
        return self.account.integration.client_secret

    @property
    def redirect_uri(self) -> str:
        return self.account.integration.redirect_uri

    def start(self) -> Self:
        self._server = _Server((self._host, self._port), self.account)
        self.account.base_url = self.base_url
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="amocrm-sandbox",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def settle_heap() -> None:
    """Take the seeded account out of the garbage collector's full passes; for a dedicated process only.

    An account of 100,000 contacts and their leads is a few million
    long-lived objects. Every full (generation 2) collection walks all of
    them and holds the GIL for about half a second, and the rendering of
    pages triggers one every 20-40 s. Nothing is read or answered during the
    pause: answers come half a second late, and where the kernel gives no
    receive times (not Linux) requests sent meanwhile are stamped when it
    ends, bunched with the next ones, so the rate limit refuses requests a
    client spaced correctly (measured: 4-6 such 429s in a full sync of 800
    pages). A real service does not stall like that. `gc.freeze` moves
    every object alive now to a generation that is never collected, which
    is right for data that lives as long as the process, and wrong for a
    process that goes on to do other things (a test run): call it only
    where the emulator is the whole process, once seeding is done.
    """
    gc.collect()
    gc.freeze()


def serve(
    host: str = "127.0.0.1",
    port: int = 8025,
    contacts: int = 1_000,
    seed: int = 1,
    *,
    first_person: int = 0,
    latency: float = 0.0,
    customers_enabled: bool = False,
    out: TextIO | None = None,
) -> None:
    """Run a seeded account until interrupted, printing how to connect to it."""
    out = out or sys.stdout
    account = Account(contacts=contacts, seed=seed, first_person=first_person, latency=latency,
                      customers_enabled=customers_enabled)
    settle_heap()
    with SandboxServer(account, host, port) as server:
        print(f"amoCRM sandbox: {server.base_url} ({account.contacts_count} contacts, {account.leads_count} leads)",
              file=out)
        print(f"client_id:        {server.client_id}", file=out)
        print(f"client_secret:    {server.client_secret}", file=out)
        print(f"redirect_uri:     {server.redirect_uri}", file=out)
        print(f"long-lived token: {account.issue_long_lived_token()}", file=out)
        print(f"auth code (20 min, single use): {account.issue_authorization_code()}", file=out)
        print(f"stats:            {server.base_url}/_sandbox/stats", file=out)
        out.flush()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            account.close()


if __name__ == "__main__":  # pragma: no cover - manual runs
    serve(port=int(os.environ.get("PORT", "8025")))


def start_connected(settings: Any, *, people: int, first_person: int = 0, seed: int = 1) -> Any:
    """Start an account with these sample people and connect Hub to it through the OAuth code flow."""
    from hub.sandbox import RunningSandbox
    from plugins.amocrm import commands, tokens

    account = Account(contacts=people, seed=seed, first_person=first_person)
    server = SandboxServer(account).start()
    data = tokens.exchange_code(server.base_url, server.client_id, server.client_secret, server.redirect_uri,
                                account.issue_authorization_code())
    commands.connect(settings, data)

    def truth() -> dict[str, int]:
        found = {str(cid): account.person_id(cid) for cid in account.contact_ids()}
        return {cid: person for cid, person in found.items() if person is not None}

    def close() -> None:
        server.stop()
        account.close()

    return RunningSandbox("amocrm", truth, close)
