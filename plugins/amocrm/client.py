"""Talking to an amoCRM account over API v4: auth, the 7 requests/s limit, retries and fast paging.

What amoCRM enforces, and how this client stays inside it:

- At most 7 requests per second per account. Every request first draws from
  a bucket of slightly less than that rate (hub.ratelimit, shared by all
  threads, and by all workers through Redis when configured), which spaces
  requests evenly; then it takes a place in a `SendWindow`, which lets at
  most 7 leave in any WINDOW_S seconds, stamped when their bytes have been
  written to the socket. A 429 is a rare exception. It comes as an HTML page
  without Retry-After: the client waits a fixed pause and tries again.
- Repeated abuse gets the account's API blocked, answered by a 403 with an
  HTML page. The client stops at once, in every thread, and says so: going on
  would only lengthen the block.
- 5xx answers, timeouts, dropped connections and answers cut off mid-body
  (truncated JSON, a connection closed before Content-Length bytes) are
  retried with exponential back-off and jitter (hub.api.Retries) when the
  request is safe to repeat (reads, PATCH). A POST whose answer was lost may
  or may not have been carried out: it is reported as such
  (AmoOutcomeUnknown), never silently sent again.
- A 401 means the access token died: the client asks its Auth for a fresh one
  once (Auth does the one-place, locked refresh) and repeats the call.

Lists have no total count. A page answers `_links.next` while more may
follow, and an empty page answers HTTP 204 with no body, also right after a
full last page. With 150 ms of latency one request at a time cannot reach
7/s, so `pages` fetches numbered pages through a small thread pool, in order,
and stops at the first 204 or short page. No message ever holds a token.

Retrying is bounded in time as well as in count: an account address that
refuses connections, or accepts them and never answers, would otherwise keep
a sync waiting for many minutes. Each request has a retry budget (the
timeouts and budgets below); once it is spent the request fails with
AmoUnreachable, one line that says what to check.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence
from urllib.parse import urlsplit

import requests
import urllib3.connection
import urllib3.connectionpool

from hub.api import TRANSIENT_ERRORS, Limiter, SendWindow, TimedRetries, is_cut_off, no_answer
from hub.api import gettext as _
# not in hub.api on purpose: Place: the client settles its turn in the shared limiter on the socket
from hub.ratelimit import Place

MAX_PAGE = 250  # the documented maximum `limit` for contacts, leads, customers
MAX_EVENTS_PAGE = 100  # the events list allows at most 100 a page
MAX_PATCH = 50  # contacts changed per PATCH request
CONNECT_TIMEOUT_S = 5.0  # an account that is up accepts a connection at once
READ_TIMEOUT_S = 60.0
# How long one request goes on retrying. Until the account has answered once, a wrong
# address or an account that is down should be said in seconds, not minutes; once it
# has answered, a hiccup in the middle of a long sync is worth riding out.
FIRST_CONTACT_BUDGET_S = 30.0
RETRY_BUDGET_S = 180.0
DEFAULT_RATE = 7.0  # requests per second amoCRM allows
# Never more than 7 requests leave within this many seconds, by this
# process's clock, each stamped once its bytes are written (SendWindow).
# amoCRM counts them on arrival, so the 40 ms beyond one second are for what
# happens after the write: the network's jitter, and any delay before the
# server stamps a request. Measured over 800-page syncs as "how much more
# the first of eight requests took from write to stamp than the eighth":
# under 1 ms against the emulator, which stamps the kernel's receive time;
# with a server that stamps once a thread reads the request, 5 ms on a quiet
# machine, 20 ms with one of the two cores kept busy, 50 ms when other
# processes competed as well. 40 ms is twice the busy-core figure; each
# 10 ms costs about 1% of a full sync's time.
WINDOW_S = 1.04
# Share of the allowed rate the shared bucket paces to: 7 intervals at 97%
# of 7/s take 1.031 s, just under WINDOW_S, so requests leave evenly spaced
# and the window only holds back one that catches up after a delay.
PACE_SHARE = 0.97
DEFAULT_CONCURRENCY = 4
DEFAULT_PAUSE_429 = 1.0  # seconds; amoCRM sends no Retry-After


# The place of the request this thread is sending, for the connection to settle once it has written it.
_PLACE: ContextVar[Place | None] = ContextVar("amocrm_place", default=None)


class _ReportsWrite:
    """Connection mix-in: settle the sending thread's Place right after the request line and headers are written.

    A new connection is opened first, outside the place: connecting is not
    sending, and a slow handshake must not hold other requests back.
    """

    sock: Any

    def endheaders(self, message_body: Any = None, *, encode_chunked: bool = False) -> None:
        place = _PLACE.get()
        if place is None or place.settled:
            super().endheaders(message_body, encode_chunked=encode_chunked)  # type: ignore[misc]
            return
        if self.sock is None:
            self.connect()  # type: ignore[attr-defined]
        try:
            super().endheaders(message_body, encode_chunked=encode_chunked)  # type: ignore[misc]
        finally:
            place.sent()


class _HTTPConnection(_ReportsWrite, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_ReportsWrite, urllib3.connection.HTTPSConnection):
    pass


class _HTTPConnectionPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSConnectionPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _Adapter(requests.adapters.HTTPAdapter):
    """requests' adapter whose connections report when a request has been written (see SendWindow)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPConnectionPool, "https": _HTTPSConnectionPool}


class AmoError(RuntimeError):
    """amoCRM answered with an error, or could not be reached; `status` is the HTTP status if any."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AmoAuthError(AmoError):
    """The stored credentials no longer work; only connecting again helps."""


class AmoBlocked(AmoError):
    """amoCRM blocked API access for this account (403 with an HTML page); nothing is sent after it."""


class AmoPaymentRequired(AmoError):
    """HTTP 402: the account's plan lacks this feature (e.g. Customers)."""


class AmoOutcomeUnknown(AmoError):
    """A write was sent but its answer was lost: it may or may not have been carried out."""


class AmoUnavailable(AmoError):
    """amoCRM kept failing (429s, 5xx, timeouts) after every retry."""


class AmoUnreachable(AmoUnavailable):
    """The account gave no answer at all (no connection, or silence) for a request's whole retry budget."""


class Cancelled(Exception):
    """A request dropped before sending because its answer is no longer needed."""


class AmoValidationError(AmoError):
    """HTTP 400 with `validation-errors`: each error names the request and the path amoCRM refused."""

    def __init__(self, message: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(message, status=400)
        self.errors = errors


class Auth(Protocol):
    """Where the bearer token comes from."""

    def token(self) -> str:
        """The access token to send now."""

    def refresh(self, stale: str) -> str:
        """A fresh token after `stale` was refused; raises AmoAuthError when none can be had."""


class StaticAuth:
    """A token that cannot be refreshed (a long-lived token, or a test)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def token(self) -> str:
        return self._token

    def refresh(self, stale: str) -> str:
        raise AmoAuthError(_("amoCRM refused the access token (HTTP 401) and it cannot be refreshed; "
                             "create a new long-lived token and run `hub connect amocrm` again"), status=401)


@dataclass
class Stats:
    requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    refreshes: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def check_base_url(url: str) -> str:
    """The account address as scheme://host, or a clear error; a path after the host is dropped."""
    parts = urlsplit((url or "").strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(_("--base-url %(url)r is not an account address; it must look like "
                           "https://SUBDOMAIN.amocrm.ru (or https://SUBDOMAIN.kommo.com)", url=url))
    return f"{parts.scheme}://{parts.netloc}"


def _is_html(response: requests.Response) -> bool:
    kind = response.headers.get("Content-Type", "")
    head = response.content[:200].lstrip().lower()
    return "html" in kind or head.startswith((b"<!doctype", b"<html"))


def _json(response: requests.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def describe_validation(errors: list[dict[str, Any]]) -> str:
    """`request 0: custom_fields_values.0.field_id: NotSupportedChoice (The value ...)` joined by '; '."""
    parts = []
    for item in errors[:10]:
        request_id = item.get("request_id")
        for err in item.get("errors") or []:
            text = f"{err.get('path') or '?'}: {err.get('code') or 'error'}"
            if err.get("detail"):
                text += f" ({err['detail']})"
            parts.append(f"request {request_id}: {text}" if request_id is not None else text)
    return "; ".join(parts) or "validation failed"


class AmoClient:
    """One account: one connection pool, one rate limit, one token."""

    def __init__(self, base_url: str, auth: Auth, limiter: Limiter, *, session: requests.Session | None = None,
                 timeout: tuple[float, float] | None = None, max_retries: int = 6,
                 max_rate_limited: int = 20, pause_429: float = DEFAULT_PAUSE_429,
                 concurrency: int = DEFAULT_CONCURRENCY, window: SendWindow | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 retry_budget: float | None = None, first_contact_budget: float | None = None) -> None:
        self.base_url = check_base_url(base_url)
        self.host = urlsplit(self.base_url).netloc
        self.auth = auth
        self.limiter = limiter
        self.window = window
        self.session = session or requests.Session()
        adapter = _Adapter(pool_connections=2, pool_maxsize=max(10, concurrency * 2))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.timeout = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S) if timeout is None else timeout
        self.max_retries = max_retries
        self.max_rate_limited = max_rate_limited
        self.pause_429 = pause_429
        self.concurrency = max(1, concurrency)
        self.stats = Stats()
        self._sleep = sleep
        self._clock = clock
        # Read when the client is made (not when this module is), so settings and tests can change them.
        self.retry_budget = RETRY_BUDGET_S if retry_budget is None else retry_budget
        self.first_contact_budget = FIRST_CONTACT_BUDGET_S if first_contact_budget is None else first_contact_budget
        self.answered = False  # the account has answered this client at least once
        self._stats_lock = threading.Lock()
        self._blocked: AmoBlocked | None = None

    def _count(self, name: str) -> None:
        with self._stats_lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    # --- single requests ----------------------------------------------------------------

    def request(self, method: str, path: str, *, params: Any = None, json: Any = None,
                idempotent: bool | None = None, cancel: Callable[[], bool] | None = None) -> Any:
        """Send one request and return the decoded JSON, or None for 204 No Content.

        `cancel`, when it answers True, drops the request before it is sent (a
        page past the end a page walk already found); it then raises Cancelled.
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "PATCH")
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        what = f"{method} {urlsplit(url).path}"
        refreshed = False
        retries = _attempts(self)
        limited = 0
        while True:
            if self._blocked is not None:
                raise self._blocked
            if cancel is not None and cancel():
                raise Cancelled()
            self.limiter.acquire()
            token = self.auth.token()  # a refresh is a request of its own: before taking a place
            place = self.window.reserve() if self.window is not None else None
            if self._blocked is not None or (cancel is not None and cancel()):
                if place is not None:
                    place.cancel()
                if self._blocked is not None:
                    raise self._blocked
                raise Cancelled()
            self._count("requests")
            try:
                response = self._send(place, method, url, params, json, token, retries.timeout(self.timeout))
            except requests.ConnectTimeout as exc:  # never reached amoCRM: safe to send again
                retries.again(f"{type(exc).__name__} connecting to {self.host}", silent=exc)
                continue
            except TRANSIENT_ERRORS as exc:
                if not idempotent:
                    raise AmoOutcomeUnknown(f"amoCRM {self.host}: {what}: {type(exc).__name__} after sending; "
                                            "it may or may not have been carried out, so it is not repeated") from None
                if is_cut_off(exc):
                    retries.again(f"{type(exc).__name__} talking to {self.host} (the answer was cut off mid-body)")
                else:
                    retries.again(f"{type(exc).__name__} talking to {self.host}", silent=exc)
                continue
            self.answered = True
            status = response.status_code
            if status == 204:
                return None
            if status == 401:
                if refreshed:
                    raise AmoAuthError(_("amoCRM %(host)s refused a freshly refreshed access token (HTTP 401); "
                                         "connect again with `hub connect amocrm`", host=self.host), status=401)
                self.auth.refresh(token)
                refreshed = True
                continue
            if status == 429:
                self._count("rate_limited")
                limited += 1
                if limited > self.max_rate_limited:
                    raise AmoUnavailable(_("amoCRM %(host)s: %(what)s: still 429 Too Many Requests after "
                                           "%(tries)s tries", host=self.host, what=what, tries=limited), status=429)
                self._sleep(self.pause_429)
                continue
            if status == 403 and _is_html(response):
                self._blocked = AmoBlocked(_(
                    "amoCRM blocked API access for %(host)s (HTTP 403 with an HTML page): too many requests "
                    "or requests it finds suspicious. Hub stopped at once; wait before syncing again, and check "
                    "the account's integrations in amoCRM", host=self.host), status=403)
                raise self._blocked
            if status >= 500:
                if not idempotent:
                    raise AmoOutcomeUnknown(f"amoCRM {self.host}: {what}: HTTP {status}; it may or may not have "
                                            "been carried out, so it is not repeated", status=status)
                retries.again(f"amoCRM {self.host}: {what}: HTTP {status}")
                continue
            body = _json(response)
            if status == 402:
                raise AmoPaymentRequired(_("amoCRM %(host)s: %(what)s: the account's plan does not include this "
                                           "(HTTP 402 Payment Required)", host=self.host, what=what), status=402)
            if status == 400 and isinstance(body, dict) and body.get("validation-errors"):
                errors = list(body["validation-errors"])
                raise AmoValidationError(f"amoCRM {self.host} refused {what}: {describe_validation(errors)}", errors)
            if status >= 400:
                raise AmoError(f"amoCRM {self.host}: {what}: HTTP {status}{_detail(body)}", status=status)
            if body is None:
                if not idempotent:
                    raise AmoOutcomeUnknown(f"amoCRM {self.host}: {what}: HTTP {status} with an answer that is "
                                            "not JSON; not repeated", status=status)
                retries.again(f"amoCRM {self.host}: {what}: HTTP {status} with an answer that is not JSON")
                continue
            return body

    def _send(self, place: Place | None, method: str, url: str, params: Any, json: Any,
              token: str, timeout: tuple[float, float] | None = None) -> requests.Response:
        """One HTTP exchange; `place` is settled by the connection once written, else here at the latest."""
        reset = _PLACE.set(place)
        try:
            return self.session.request(method, url, params=params, json=json, timeout=timeout or self.timeout,
                                        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
        except requests.ConnectTimeout:
            if place is not None:
                place.cancel()  # never connected, so nothing was sent
            raise
        finally:
            _PLACE.reset(reset)
            if place is not None:
                place.sent()  # a transport that did not report the write: count it now (no-op otherwise)

    def get(self, path: str, params: Any = None) -> Any:
        return self.request("GET", path, params=params)

    # --- lists ----------------------------------------------------------------------------

    def list_page(self, path: str, params: Sequence[tuple[str, Any]], key: str, page: int,
                  limit: int = MAX_PAGE, cancel: Callable[[], bool] | None = None) -> tuple[list[dict[str, Any]], bool]:
        """One numbered page: its items and whether amoCRM says more may follow."""
        body = self.request("GET", path, params=[*params, ("page", page), ("limit", limit)], cancel=cancel)
        if not body:
            return [], False
        items = ((body.get("_embedded") or {}).get(key)) or []
        more = bool(((body.get("_links") or {}).get("next") or {}).get("href")) and len(items) >= limit
        return list(items), more

    def pages(self, path: str, params: Sequence[tuple[str, Any]], key: str, *, start: int = 1,
              limit: int = MAX_PAGE) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """(page number, items) for every page from `start`, in order, fetched `concurrency` at a time.

        The first page goes alone, so a small list costs one request. When it
        says more follow, up to `concurrency` requests are kept in flight (and
        a few finished pages buffered ahead of the consumer); the first 204 or
        short page ends the walk, and pages beyond it that are not yet sent
        are cancelled. Pages are yielded strictly in order, so a consumer can
        take a page number as a resume point once it has stored the page.
        """
        items, more = self.list_page(path, params, key, start, limit)
        if not items:
            return
        yield start, items
        if not more:
            return
        if self.concurrency == 1:
            page = start + 1
            while True:
                items, more = self.list_page(path, params, key, page, limit)
                if not items:
                    return
                yield page, items
                if not more:
                    return
                page += 1
        end = [float("inf")]  # the first page known to be the last; later ones are never sent
        end_lock = threading.Lock()

        def fetch(page: int) -> tuple[list[dict[str, Any]], bool]:
            try:
                items, more = self.list_page(path, params, key, page, limit, cancel=lambda: page > end[0])
            except Cancelled:
                return [], False
            if not items or not more:
                with end_lock:
                    end[0] = min(end[0], page)
            return items, more

        ahead = self.concurrency * 2
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="amocrm-page")
        queue: deque[tuple[int, Future[tuple[list[dict[str, Any]], bool]]]] = deque()
        following = start + 1
        try:
            while True:
                while len(queue) < ahead:
                    queue.append((following, pool.submit(contextvars.copy_context().run, fetch, following)))
                    following += 1
                page, future = queue.popleft()
                items, more = future.result()
                if not items:
                    return
                yield page, items
                if not more:
                    return
        finally:
            end[0] = float("-inf")
            for _, future in queue:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)


def _attempts(client: AmoClient) -> TimedRetries:
    """One request's retries, bounded by their count and by the time they take (hub.api.TimedRetries)."""
    def give_up(reason: str, silent: BaseException | None, attempts: int, seconds: int) -> AmoError:
        if silent is None:
            return AmoUnavailable(reason)
        return AmoUnreachable(_(
            "amoCRM at %(host)s does not answer (%(why)s; attempts: %(attempts)s in %(seconds)s s). Check the "
            "address, that the account is up, and its token (`hub connect amocrm` with the current one).",
            host=client.host, why=no_answer(silent), attempts=attempts, seconds=seconds))

    return TimedRetries(client.max_retries, budget=client.retry_budget if client.answered else
                        client.first_contact_budget, clock=client._clock, sleep=client._sleep, give_up=give_up,
                        on_retry=lambda: client._count("retries"))


def _detail(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    text = body.get("detail") or body.get("title") or body.get("hint")
    return f": {text}" if text else ""
