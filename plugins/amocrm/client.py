"""Talking to an amoCRM account over API v4: auth, the 7 requests/s limit, retries and fast paging.

What amoCRM enforces, and how this client stays inside it:

- At most 7 requests per second per account. Every request first draws from
  a bucket of that rate (hub.ratelimit, shared by all threads, and by all
  workers through Redis when configured), so a 429 is a rare exception. A 429
  comes as an HTML page without Retry-After: the client waits a fixed pause
  and tries again.
- Repeated abuse gets the account's API blocked, answered by a 403 with an
  HTML page. The client stops at once, in every thread, and says so: going on
  would only lengthen the block.
- 5xx answers and timeouts are retried with exponential back-off and jitter
  when the request is safe to repeat (reads, PATCH). A POST whose answer was
  lost may or may not have been carried out: it is reported as such
  (AmoOutcomeUnknown), never silently sent again.
- A 401 means the access token died: the client asks its Auth for a fresh one
  once (Auth does the one-place, locked refresh) and repeats the call.

Lists have no total count. A page answers `_links.next` while more may
follow, and an empty page answers HTTP 204 with no body, also right after a
full last page. With 150 ms of latency one request at a time cannot reach
7/s, so `pages` fetches numbered pages through a small thread pool, in order,
and stops at the first 204 or short page. No message ever holds a token.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence
from urllib.parse import urlsplit

import requests

from hub.ratelimit import Limiter, SlidingWindow

MAX_PAGE = 250  # the documented maximum `limit` for contacts, leads, customers
MAX_EVENTS_PAGE = 100  # the events list allows at most 100 a page
MAX_PATCH = 50  # contacts changed per PATCH request
DEFAULT_RATE = 7.0  # requests per second amoCRM allows
# Share of the allowed rate the client paces itself to. Requests leave evenly
# spaced but are counted on arrival, after network and server-side delays
# that vary by tens of milliseconds, and amoCRM refuses the eighth request
# within any second: at 95% a request may arrive up to ~50 ms late relative
# to the one seven before it without a 429.
PACE_SHARE = 0.97
# ... and never more than 7 requests leave within this many seconds, measured
# at the moment each is sent: the margin absorbs network and server delays.
WINDOW_S = 1.06
DEFAULT_CONCURRENCY = 4
DEFAULT_PAUSE_429 = 1.0  # seconds; amoCRM sends no Retry-After


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
        raise AmoAuthError("amoCRM refused the access token (HTTP 401) and it cannot be refreshed; "
                           "create a new long-lived token and run `hub connect amocrm` again", status=401)


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
        raise ValueError(f"--base-url {url!r} is not an account address; it must look like "
                         "https://SUBDOMAIN.amocrm.ru (or https://SUBDOMAIN.kommo.com)")
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
                 timeout: tuple[float, float] = (5.0, 60.0), max_retries: int = 6, max_rate_limited: int = 20,
                 pause_429: float = DEFAULT_PAUSE_429, concurrency: int = DEFAULT_CONCURRENCY,
                 window: SlidingWindow | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = check_base_url(base_url)
        self.host = urlsplit(self.base_url).netloc
        self.auth = auth
        self.limiter = limiter
        self.window = window
        self.session = session or requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=max(10, concurrency * 2))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_rate_limited = max_rate_limited
        self.pause_429 = pause_429
        self.concurrency = max(1, concurrency)
        self.stats = Stats()
        self._sleep = sleep
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
        attempt = 0
        limited = 0
        while True:
            if self._blocked is not None:
                raise self._blocked
            self.limiter.acquire()
            if self.window is not None:
                self.window.acquire()
            if self._blocked is not None:
                raise self._blocked
            if cancel is not None and cancel():
                raise Cancelled()
            token = self.auth.token()
            self._count("requests")
            try:
                response = self.session.request(method, url, params=params, json=json, timeout=self.timeout,
                                                headers={"Authorization": f"Bearer {token}",
                                                         "Accept": "application/json"})
            except requests.ConnectTimeout as exc:  # never reached amoCRM: safe to send again
                attempt = self._backoff(attempt, f"{type(exc).__name__} connecting to {self.host}")
                continue
            except (requests.Timeout, requests.ConnectionError) as exc:
                if not idempotent:
                    raise AmoOutcomeUnknown(f"amoCRM {self.host}: {what}: {type(exc).__name__} after sending; "
                                            "it may or may not have been carried out, so it is not repeated") from None
                attempt = self._backoff(attempt, f"{type(exc).__name__} talking to {self.host}")
                continue
            status = response.status_code
            if status == 204:
                return None
            if status == 401:
                if refreshed:
                    raise AmoAuthError(f"amoCRM {self.host} refused a freshly refreshed access token (HTTP 401); "
                                       "connect again with `hub connect amocrm`", status=401)
                self.auth.refresh(token)
                refreshed = True
                continue
            if status == 429:
                self._count("rate_limited")
                limited += 1
                if limited > self.max_rate_limited:
                    raise AmoUnavailable(f"amoCRM {self.host}: {what}: still 429 Too Many Requests after "
                                         f"{limited} tries", status=429)
                self._sleep(self.pause_429)
                continue
            if status == 403 and _is_html(response):
                self._blocked = AmoBlocked(
                    f"amoCRM blocked API access for {self.host} (HTTP 403 with an HTML page): too many requests "
                    "or requests it finds suspicious. Hub stopped at once; wait before syncing again, and check "
                    "the account's integrations in amoCRM", status=403)
                raise self._blocked
            if status >= 500:
                if not idempotent:
                    raise AmoOutcomeUnknown(f"amoCRM {self.host}: {what}: HTTP {status}; it may or may not have "
                                            "been carried out, so it is not repeated", status=status)
                attempt = self._backoff(attempt, f"amoCRM {self.host}: {what}: HTTP {status}")
                continue
            body = _json(response)
            if status == 402:
                raise AmoPaymentRequired(f"amoCRM {self.host}: {what}: the account's plan does not include this "
                                         "(HTTP 402 Payment Required)", status=402)
            if status == 400 and isinstance(body, dict) and body.get("validation-errors"):
                errors = list(body["validation-errors"])
                raise AmoValidationError(f"amoCRM {self.host} refused {what}: {describe_validation(errors)}", errors)
            if status >= 400:
                raise AmoError(f"amoCRM {self.host}: {what}: HTTP {status}{_detail(body)}", status=status)
            if body is None:
                if not idempotent:
                    raise AmoOutcomeUnknown(f"amoCRM {self.host}: {what}: HTTP {status} with an answer that is "
                                            "not JSON; not repeated", status=status)
                attempt = self._backoff(attempt, f"amoCRM {self.host}: {what}: HTTP {status} with an answer "
                                                 "that is not JSON")
                continue
            return body

    def _backoff(self, attempt: int, reason: str) -> int:
        if attempt >= self.max_retries:
            raise AmoUnavailable(f"{reason}; gave up after {attempt + 1} attempts")
        self._count("retries")
        self._sleep(min(30.0, 0.5 * 2 ** attempt) * (0.5 + random.random()))
        return attempt + 1

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
                    queue.append((following, pool.submit(fetch, following)))
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


def _detail(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    text = body.get("detail") or body.get("title") or body.get("hint")
    return f": {text}" if text else ""
