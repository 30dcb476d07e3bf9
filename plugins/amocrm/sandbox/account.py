"""The account: its state, the parts that answer for it, and the routing of each request to one of them."""

from __future__ import annotations

import json
import queue
import random
import string
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from datetime import date
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from plugins.amocrm.sandbox.credentials import (
    ACCESS_TOKEN_TTL,
    AUTH_CODE_TTL,
    LONG_LIVED_TOKEN_TTL,
    REFRESH_TOKEN_TTL,
    Credentials,
    Integration,
    _AccessToken,
    _AuthCode,
    _RefreshToken,
)
from plugins.amocrm.sandbox.data import (
    SUBDOMAIN,
    TagRegistry,
    b2b_rows,
    contact_id_for,
    render_pipelines,
    seed_rows,
)
from plugins.amocrm.sandbox.events import WEBHOOK_TIMEOUT, Events, _Webhook
from plugins.amocrm.sandbox.limits import (
    ABUSE_THRESHOLD,
    ABUSE_WINDOW,
    BLOCK_SECONDS,
    BLOCKED_PAGE,
    RATE_LIMIT,
    TOO_MANY_REQUESTS_PAGE,
    Limits,
)
from plugins.amocrm.sandbox.links import Links
from plugins.amocrm.sandbox.notes import Notes
from plugins.amocrm.sandbox.protocol import (
    HTML,
    NO_CONTENT,
    OAUTH_BAD_REQUEST_DETAIL,
    PAYMENT_REQUIRED,
    UNAUTHORIZED,
    BadRequest,
    Response,
    _decode_params,
    _error,
    _json_response,
    _oauth_problem,
    _problem,
    _validation_failed,
    parse_query,
)
from plugins.amocrm.sandbox import round_trip
from plugins.amocrm.sandbox.reading import Reading
from plugins.amocrm.sandbox.writing import MAX_BATCH, Writing


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


class Account(Credentials, Limits, Reading, Writing, Links, Notes, Events):
    """A thread-safe amoCRM account: data, credentials, limits, events and webhooks.

    Seeded with `contacts` people from `hub.sampledata` (after skipping
    `first_person`), with their orders as leads. `clock` returns unix seconds
    and drives every expiry, rate window and timestamp, so tests can pass a
    `ManualClock` instead of sleeping. `b2b` adds companies' employees, a
    household, hotline callers and one person entered three ways
    (`sandbox.b2b`) after the sampledata people. `companies` seeds that
    many companies they work at (one per twelve people unless told; 0: none),
    and `activities` calls and tasks (two per contact unless told), with fields of every type and the open leads'
    stage moves (`sandbox.round_trip`). `leads` keeps only the first that many leads (by id), before the
    companies, stage moves and activities are seeded, so those all belong to leads the account holds.
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
        b2b: bool = False,
        companies: int | None = None,
        activities: int | None = None,
        leads: int | None = None,
    ) -> None:
        if oversize_limit not in ("default", "clamp"):
            raise ValueError("oversize_limit must be 'default' or 'clamp'")
        rng = random.Random(f"amocrm-sandbox:{seed}")
        self.integration = Integration(
            client_id=client_id or str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            client_secret=client_secret or "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(64)),
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
        self._tags = {"contacts": TagRegistry(100_001), "companies": TagRegistry(200_001),
                      "leads": TagRegistry(300_001)}
        seeded_contacts, seeded_leads = seed_rows(
            contacts, seed, first_person=first_person, today=today,
            contact_tags=self._tags["contacts"], lead_tags=self._tags["leads"],
        )
        if b2b:
            first_id = (seeded_contacts[-1].id if seeded_contacts else contact_id_for(first_person + contacts)) + 1
            seeded_contacts += b2b_rows(seeded_contacts, first_id, today)
        if leads is not None:
            seeded_leads = sorted(seeded_leads, key=lambda row: row.id)[:leads]
        seeded_companies = round_trip.seed_companies(seeded_contacts, seeded_leads, seed, companies)
        round_trip.seed_values(seeded_contacts, seeded_leads, seed)
        self._stores: dict[str, dict[int, Any]] = {
            "contacts": {row.id: row for row in seeded_contacts},
            "companies": {row.id: row for row in seeded_companies},
            "leads": {row.id: row for row in seeded_leads},
        }
        self._call_time_cache: dict[str, list[int]] = {}
        self._calls, self._seeded_tasks = round_trip.seed_activities(
            len(seeded_contacts) * round_trip.ACTIVITIES_PER_CONTACT if activities is None else activities,
            seed, seeded_contacts, seeded_companies, today, seeded_leads)
        self._next_ids = {
            "contacts": max(self._stores["contacts"], default=contact_id_for(first_person + contacts)) + 1,
            "companies": max(self._stores["companies"], default=35_000_000) + 1,
            "leads": max(self._stores["leads"], default=40_000_000) + 1,
        }
        self._versions = Counter[str]()
        self._order_cache: dict[tuple[str, str], tuple[int, list[int], list[int]]] = {}

        self._access_tokens: dict[str, _AccessToken] = {}
        self._refresh_tokens: dict[str, _RefreshToken] = {}
        self._codes: dict[str, _AuthCode] = {}

        self._events: list[dict[str, Any]] = []
        self._event_counter = 0
        self._seed_moves(round_trip.status_moves(seeded_leads, seed))
        self._notes: list[dict[str, Any]] = []
        self._call_edits: dict[int, dict[str, Any]] = {}
        self._locked_notes: set[int] = set()
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
                return self._field_definitions(head, params, base)
            if head == "leads" and rest[:1] == ["pipelines"] and method == "GET":
                return _json_response(200, render_pipelines(base))
            if rest == ["notes"]:
                if method == "GET":
                    return self._list_notes(head, None, params, base)
                return self._notes_route(method, head, None, payload, base)
            if rest in (["link"], ["unlink"]):
                return self._links_route(method, head, None, rest[0], payload, base)
            if len(rest) == 2 and rest[1] in ("link", "unlink", "links") and rest[0].isdigit():
                return self._links_route(method, head, int(rest[0]), rest[1], payload, base)
            if len(rest) == 2 and rest[1] == "notes" and rest[0].isdigit():
                if method == "GET":
                    return self._list_notes(head, int(rest[0]), params, base)
                return self._notes_route(method, head, int(rest[0]), payload, base)
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
                        return _validation_failed(
                            [("0", [_error("InvalidType", "", "This value should be of type array.")])])
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
                return self._list_all_tasks(params, base)
        if head == "account" and not rest and method == "GET":
            return _json_response(200, self._account_info(base))
        if head == "webhooks" and not rest:
            return self._webhooks_route(method, payload, base)
        return _problem(404, "Not Found", "Unknown route")

