"""Talking to a Bitrix24 portal: auth, the portal's limits, retries, batches and fast paging.

What the portal enforces, and how this client stays inside it:

- A leaky bucket per portal (2 requests/s drained, 50 in a burst; Enterprise
  5/s and 250): the client draws from its own bucket of the same shape first
  (shared across workers through Redis when configured), so 503
  QUERY_LIMIT_EXCEEDED is an exception that is backed off, not the pacing.
- Server time per method (480 s in 10 minutes, reported as ``time.operating``):
  the client slows down before the portal blocks, and waits until
  ``operating_reset_at`` when it does (429 OPERATION_TIME_LIMIT).
- Counting is expensive: every list call here passes ``start=-1`` and pages by
  ``ID > last`` instead, chaining 50 list calls in one ``batch`` request so one
  HTTP request brings up to 2,500 records.

Errors only the user can fix (a wrong webhook, a missing scope) stop at once
with a message saying what to do; transient ones (limits, 5xx, timeouts, a
dropped connection, an answer cut off mid-body) are retried with exponential
back-off and jitter (hub.api.Retries). A method that adds something is not
repeated after its answer was cut off: the portal received it and may have
carried it out (OutcomeUnknown). No message ever contains the webhook code or
a token.

Retrying is bounded in time as well as in count: a portal that refuses
connections or accepts them and never answers would otherwise keep a sync
waiting for many minutes. Each call has a retry budget (CONNECT_TIMEOUT_S,
READ_TIMEOUT_S and the budgets below); once it is spent the call fails with
Unreachable, one line that says what to check.
"""

from __future__ import annotations

import datetime as dt
import contextvars
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Protocol
from urllib.parse import quote, urlsplit

import requests

from hub.api import N_, TRANSIENT_ERRORS, Limiter, TimedRetries, is_cut_off, no_answer
from hub.api import gettext as _

PAGE = 50  # records per list call; fixed by the portal
MAX_BATCH = 50  # commands per batch; fixed by the portal
OPERATING_LIMIT = 480.0  # seconds of server time per method per 10 minutes
SLOW_DOWN_AT = 0.75  # share of the operating limit after which we wait for the reset
CONNECT_TIMEOUT_S = 10.0  # a portal that is up accepts a connection at once
READ_TIMEOUT_S = 60.0  # a batch of 50 list calls on a busy portal may take a while
# How long one call goes on retrying. Until the portal has answered once, a wrong
# address or a portal that is down should be said in seconds, not minutes; once it
# has answered, a hiccup in the middle of a long sync is worth riding out.
FIRST_CONTACT_BUDGET_S = 30.0
RETRY_BUDGET_S = 180.0

# Errors the user must fix, with what to tell them.
USER_ACTION = {
    "NO_AUTH_FOUND": N_("the portal found no valid credentials: the webhook was deleted or its code is wrong; "
                        "create a new incoming webhook and run `hub connect bitrix24` again"),
    "invalid_token": N_("the portal rejected the access token; connect the app again (`hub connect bitrix24`)"),
    "INVALID_CREDENTIALS": N_("the portal did not accept the credentials: the webhook was deleted, its code or "
                              "user id is wrong, or its user lost access; check it in Bitrix24 and run "
                              "`hub connect bitrix24` again"),
    "ACCESS_DENIED": N_("the portal refuses REST calls (the REST API is available only on commercial plans)"),
    "insufficient_scope": N_("the webhook or app lacks a permission (scope); edit it in Bitrix24 and add 'crm'"),
    "WRONG_AUTH_TYPE": N_("this needs an app (OAuth), not an incoming webhook"),
    "PAYMENT_REQUIRED": N_("the portal's plan does not allow this call"),
    "OVERLOAD_LIMIT": N_("Bitrix24 blocked REST calls to this portal for overload; contact Bitrix24 support"),
    "INVALID_REQUEST": N_("the portal requires https; give the https address"),
    "invalid_grant": N_("the refresh token is no longer valid; connect the app again (`hub connect bitrix24`)"),
}
TRANSIENT = {"QUERY_LIMIT_EXCEEDED", "INTERNAL_SERVER_ERROR", "ERROR_UNEXPECTED_ANSWER", "OPERATION_TIME_LIMIT"}


class Bitrix24Error(RuntimeError):
    """The portal answered with an error; `code` is the portal's error code. `written` names the
    records a many-record write had already written when the portal refused (see `set_fields`)."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.written: list[str] = []


class NeedsUserAction(Bitrix24Error):
    """Only the user can fix this (credentials, permissions, plan); retrying will not help."""


class Unavailable(Bitrix24Error):
    """The portal kept failing (limits, 5xx, timeouts, HTML pages) after every retry."""


class Unreachable(Unavailable):
    """The portal gave no answer at all (no connection, or silence) for a call's whole retry budget."""


class OutcomeUnknown(Bitrix24Error):
    """A method that adds something got a cut-off answer: it may or may not have been carried out."""


def adds_something(method: str) -> bool:
    """Methods that create a record (crm.timeline.comment.add, crm.activity.todo.add): a repeat makes a second one."""
    return method.rsplit(".", 1)[-1].lower() == "add"


class Auth(Protocol):
    """Where a method is called and with what credentials."""

    host: str

    def endpoint(self, method: str) -> str: ...

    def params(self) -> dict[str, Any]: ...

    def refresh(self) -> None:
        """Get a fresh access token (OAuth); raise NeedsUserAction when that is impossible."""


class WebhookAuth:
    """An incoming webhook: the secret code is part of the URL, https://PORTAL/rest/USER/CODE/."""

    def __init__(self, url: str) -> None:
        self.url = check_webhook_url(url)
        self.host = urlsplit(self.url).netloc

    def endpoint(self, method: str) -> str:
        return self.url + method

    def params(self) -> dict[str, Any]:
        return {}

    def refresh(self) -> None:
        raise NeedsUserAction(_(USER_ACTION["NO_AUTH_FOUND"]), code="NO_AUTH_FOUND")


class TokenAuth:
    """An OAuth app: the access token travels as `auth`; `renew` returns a fresh one."""

    def __init__(self, client_endpoint: str, access_token: str, renew: Callable[[], tuple[str, str]]) -> None:
        self.client_endpoint = client_endpoint.rstrip("/") + "/"
        self.host = urlsplit(self.client_endpoint).netloc
        self.access_token = access_token
        self._renew = renew

    def endpoint(self, method: str) -> str:
        return self.client_endpoint + method

    def params(self) -> dict[str, Any]:
        return {"auth": self.access_token}

    def refresh(self) -> None:
        self.access_token, endpoint = self._renew()
        if endpoint:
            self.client_endpoint = endpoint.rstrip("/") + "/"


def check_webhook_url(url: str) -> str:
    """The webhook URL with a trailing slash, or a clear error naming what is wrong (never the code)."""
    parts = urlsplit(url.strip())
    segments = [s for s in parts.path.split("/") if s]
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(_("the webhook URL must look like https://PORTAL/rest/USER_ID/CODE/"))
    # The portal shows the URL with an example method after it (…/CODE/profile.json); drop that.
    at = segments.index("rest") if "rest" in segments else -1
    if at < 0 or len(segments) < at + 3 or not segments[at + 1].isdigit():
        raise ValueError(_("the webhook URL for %(host)s must look like https://%(host)s/rest/USER_ID/CODE/",
                           host=parts.netloc))
    base = "/".join(segments[:at + 3])
    return f"{parts.scheme}://{parts.netloc}/{base}/"


@dataclass
class Stats:
    requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    batch_commands: int = 0
    refreshes: int = 0
    operating_waits: int = 0
    http_s: float = 0.0  # waiting for the portal's answers
    paced_s: float = 0.0  # waiting for our own rate limit

    def as_dict(self) -> dict[str, int | float]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in self.__dict__.items()}


@dataclass
class Batch:
    """A batch answer with the PHP quirk undone: empty maps arrive as [] and are read as {}."""

    result: dict[str, Any]
    errors: dict[str, Any]
    total: dict[str, Any]
    time: dict[str, Any] = field(default_factory=dict)
    holds_nul: bool = True  # whether the answer held a NUL character anywhere (see Rows)


class Rows(list[dict[str, Any]]):
    """One page of a list's records, and whether the portal's answer held a NUL character anywhere.

    JSON can carry a NUL only as the escape \\u0000, so one look at the answer's
    bytes tells; a reader whose rows hold none can skip scrubbing every value
    of every record (hub.api.without_nul) and still never store one.
    """

    holds_nul: bool = True


def encode(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Flatten params the way PHP reads a query string: filter[>ID]=5, select[]=PHONE."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, Mapping):
            pairs += encode(value, name)
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    pairs += encode(item, f"{name}[{i}]")
                else:
                    pairs.append((f"{name}[]", _scalar(item)))
        elif value is not None:
            pairs.append((name, _scalar(value)))
    return pairs


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, dt.datetime):
        return portal_time(value)
    return str(value)


def portal_time(moment: dt.datetime) -> str:
    """A moment as the REST API documents its datetime: YYYY-MM-DDThh:mm:ss±hh:mm, no fraction of a second."""
    return moment.isoformat(timespec="seconds")


def command(method: str, params: Mapping[str, Any], raw: Mapping[str, str] | None = None) -> str:
    """One batch command, method?query; `raw` values (like $result[...] references) are not encoded."""
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in encode(params))
    for key, value in (raw or {}).items():
        query += f"&{quote(key, safe='')}={value}"
    return f"{method}?{query}"


def _as_map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class Client:
    """One portal, one connection pool, one rate limit."""

    def __init__(self, auth: Auth, limiter: Limiter, *, session: requests.Session | None = None,
                 timeout: float | tuple[float, float] | None = None, max_retries: int = 8,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time,
                 retry_budget: float | None = None, first_contact_budget: float | None = None) -> None:
        self.auth = auth
        self.limiter = limiter
        self.session = session or requests.Session()
        self.timeout = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S) if timeout is None else timeout
        self.max_retries = max_retries
        # Read when the client is made (not when this module is), so settings and tests can change them.
        self.retry_budget = RETRY_BUDGET_S if retry_budget is None else retry_budget
        self.first_contact_budget = FIRST_CONTACT_BUDGET_S if first_contact_budget is None else first_contact_budget
        self.answered = False  # the portal has answered this client at least once
        self.stats = Stats()
        self._sleep = sleep
        self._clock = clock
        self._operating: dict[str, tuple[float, float]] = {}  # method -> (operating, reset_at)

    # --- single calls -------------------------------------------------------------------

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Call a method and return the whole answer (result, next, total, time)."""
        return self._call(method, params)[0]

    def _call(self, method: str, params: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], bool]:
        """`call`, and whether the answer held a NUL character (Rows)."""
        refreshed = False
        retries = _attempts(self)
        while True:
            self._respect_operating(method)
            self.stats.paced_s += self.limiter.acquire()
            self.stats.requests += 1
            sent = time.monotonic()
            try:
                response = self.session.post(self.auth.endpoint(method), json={**(params or {}), **self.auth.params()},
                                             timeout=retries.timeout(self.timeout))
            except requests.ConnectTimeout as exc:  # never reached the portal: safe to send again
                retries.again(f"{type(exc).__name__} talking to {self.auth.host}", silent=exc)
                continue
            except TRANSIENT_ERRORS as exc:
                # The portal may have carried the call out before the answer was lost (a read
                # timeout, a dropped connection, a body cut off): reads are repeated, adds are not.
                if adds_something(method):
                    raise OutcomeUnknown(f"Bitrix24 {self.auth.host}: {method}: no whole answer "
                                         f"({type(exc).__name__}); it may or may not have been carried out, "
                                         "so it is not repeated") from None
                if is_cut_off(exc):
                    retries.again(f"{self.auth.host}: {method}: the answer was cut off mid-body "
                                  f"({type(exc).__name__})")
                else:
                    retries.again(f"{type(exc).__name__} talking to {self.auth.host}", silent=exc)
                continue
            finally:
                self.stats.http_s += time.monotonic() - sent
            self.answered = True
            body = _json(response)
            if body is None:  # an HTML error page, or JSON cut short by a proxy
                if adds_something(method) and response.status_code < 300:
                    raise OutcomeUnknown(f"Bitrix24 {self.auth.host}: {method}: HTTP {response.status_code} with an "
                                         "answer that is not JSON; it may or may not have been carried out, "
                                         "so it is not repeated", status=response.status_code)
                retries.again(f"{self.auth.host} answered HTTP {response.status_code} "
                              "with a page that is not JSON")
                continue
            # The documented refusals often carry an empty code ({"error": "", "error_description":
            # "Access denied."}, HTTP 400): a present "error" key or an HTTP error status is a refusal.
            if not _refused(body, response.status_code):
                self._note_time(method, body.get("time"))
                return body, _holds_nul(response)
            code = str(body.get("error") or "") if isinstance(body, dict) else ""
            if code == "expired_token" and not refreshed:
                self.auth.refresh()
                self.stats.refreshes += 1
                refreshed = True
                continue
            if code in USER_ACTION or response.status_code in (401, 403):
                hint = _(USER_ACTION[code]) if code in USER_ACTION else _describe(body)
                raise NeedsUserAction(f"Bitrix24 {self.auth.host}: {hint}",
                                      code=code, status=response.status_code)
            if code == "QUERY_LIMIT_EXCEEDED":
                self.stats.rate_limited += 1
            if code == "OPERATION_TIME_LIMIT":
                self.stats.rate_limited += 1
                self._wait_for_reset(method, body)
                retries.again(f"{self.auth.host}: {method} used up its server time", wait=False)
                continue
            if code in TRANSIENT or response.status_code >= 500:
                retries.again(f"{self.auth.host}: {_describe(body)}")
                continue
            raise Bitrix24Error(f"Bitrix24 {self.auth.host}: {method}: {_describe(body)}", code=code,
                                status=response.status_code)

    def _count_retry(self) -> None:
        self.stats.retries += 1


    def _note_time(self, method: str, block: Any) -> None:
        if isinstance(block, dict) and "operating" in block:
            try:
                self._operating[method] = (float(block["operating"]), _reset_at(block.get("operating_reset_at")))
            except (TypeError, ValueError):
                pass

    def _respect_operating(self, method: str) -> None:
        operating, reset_at = self._operating.get(method, (0.0, 0.0))
        if operating >= SLOW_DOWN_AT * OPERATING_LIMIT and reset_at > self._clock():
            self.stats.operating_waits += 1
            self._sleep(reset_at - self._clock())
            self._operating.pop(method, None)

    def _wait_for_reset(self, method: str, body: dict[str, Any]) -> None:
        block = body["time"] if isinstance(body.get("time"), dict) else {}
        reset_at = _reset_at(block.get("operating_reset_at")) or self._operating.get(method, (0, 0))[1]
        wait = reset_at - self._clock() if reset_at else 60.0
        self._sleep(min(max(wait, 1.0), 600.0))
        self._operating.pop(method, None)

    # --- batches ------------------------------------------------------------------------

    def batch(self, commands: Mapping[str, str], *, halt: bool = False) -> Batch:
        """Run up to 50 commands in one request; each command's errors come back in `errors`."""
        if len(commands) > MAX_BATCH:
            raise ValueError(f"a batch holds at most {MAX_BATCH} commands, got {len(commands)}")
        self.stats.batch_commands += len(commands)
        body, holds_nul = self._call("batch", {"halt": 1 if halt else 0, "cmd": dict(commands)})
        inner = _as_map(body.get("result"))
        return Batch(result=_as_map(inner.get("result")), errors=_as_map(inner.get("result_error")),
                     total=_as_map(inner.get("result_total")), time=_as_map(body.get("time")), holds_nul=holds_nul)

    def batch_all(self, commands: Mapping[str, str]) -> Batch:
        """Any number of commands, in as few batches as the limit allows, their answers merged."""
        merged = Batch(result={}, errors={}, total={}, holds_nul=False)
        keys = list(commands)
        for start in range(0, len(keys), MAX_BATCH):
            answer = self.batch({key: commands[key] for key in keys[start:start + MAX_BATCH]})
            merged.result.update(answer.result)
            merged.errors.update(answer.errors)
            merged.total.update(answer.total)
            merged.holds_nul = merged.holds_nul or answer.holds_nul
        return merged

    def pages(self, method: str, *, select: list[str], filter: Mapping[str, Any] | None = None,
              after_id: int = 0, chain: int = MAX_BATCH, grow: int = 1) -> Iterator[list[dict[str, Any]]]:
        """Every record matching `filter` with ID > `after_id`, in ID order, one list per request.

        The documented fast mode for large data: order by ID, filter ID > last,
        start=-1 so the portal never counts, and 50 such calls chained in one
        batch, each starting after the last ID of the one before. A short page
        ends the data; whatever the batch returned after it is discarded (its
        reference pointed at a row that does not exist). `chain` sets how many
        calls the first batch chains and `grow` multiplies it for the next ones,
        so a small incremental read costs one request and a large one quickly
        reaches 2,500 records a request.
        """
        base = {"order": {"ID": "ASC"}, "filter": dict(filter or {}), "select": select, "start": -1}
        size = max(1, min(chain, MAX_BATCH))

        def fetch(after: int, size: int) -> tuple[Rows, bool]:
            commands = {}
            for i in range(size):
                previous = str(after) if i == 0 else f"$result[p{i - 1}][{PAGE - 1}][ID]"
                commands[f"p{i}"] = command(method, base, raw={"filter[>ID]": previous})
            answer = self.batch(commands)
            records = Rows()
            records.holds_nul = answer.holds_nul
            for i in range(size):
                key = f"p{i}"
                if key in answer.errors:
                    raise Bitrix24Error(f"Bitrix24 {self.auth.host}: {method}: {_describe(answer.errors[key])}",
                                        code=str(_as_map(answer.errors[key]).get("error")))
                page = answer.result.get(key) or []
                if isinstance(page, dict):  # a PHP array with non-sequential keys
                    page = list(page.values())
                records += page
                if len(page) < PAGE:
                    return records, True
            return records, False

        # The next request goes out while the caller writes this one's records:
        # it needs only the last ID, which the answer already gave.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bitrix24-page") as ahead:
            records, finished = fetch(after_id, size)
            while True:
                upcoming = None
                if not finished and records:
                    size = min(MAX_BATCH, size * max(1, grow))
                    upcoming = ahead.submit(contextvars.copy_context().run, fetch, int(records[-1]["ID"]), size)
                try:
                    if records:
                        yield records
                except BaseException:  # the caller stopped reading: don't wait for a page nobody wants
                    if upcoming is not None:
                        upcoming.cancel()
                    raise
                if upcoming is None:
                    return
                records, finished = upcoming.result()



def _attempts(client: Client) -> TimedRetries:
    """One call's retries, bounded by their count and by the time they take (hub.api.TimedRetries)."""
    def give_up(reason: str, silent: BaseException | None, attempts: int, seconds: int) -> Bitrix24Error:
        if silent is None:
            return Unavailable(f"Bitrix24 {reason}")
        return Unreachable(_(
            "Bitrix24 at %(host)s does not answer (%(why)s; attempts: %(attempts)s in %(seconds)s s). Check the "
            "address, that the portal is up, and the webhook or app (`hub connect bitrix24` with the current one).",
            host=client.auth.host, why=no_answer(silent), attempts=attempts, seconds=seconds))

    return TimedRetries(client.max_retries, budget=client.retry_budget if client.answered else
                        client.first_contact_budget, clock=client._clock, sleep=client._sleep, give_up=give_up,
                        on_retry=client._count_retry)


def _holds_nul(response: requests.Response) -> bool:
    """Whether the answer's bytes hold a NUL, escaped (JSON's only way) or raw; True when they cannot be read."""
    content = getattr(response, "content", None)
    if not isinstance(content, (bytes, bytearray)):
        return True
    return b"\\u0000" in content or b"\x00" in content


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except (ValueError, json.JSONDecodeError):
        return None


def _reset_at(value: Any) -> float:
    """operating_reset_at as a unix time; 0.0 when absent or unreadable.

    The limits page documents a unix timestamp (1778747792) and method pages show an ISO
    string ("2024-08-26T16:11:37+03:00"): both are read, and neither can stop a sync.
    """
    if isinstance(value, bool) or value in (None, ""):
        return 0.0
    try:
        return float(value)
    except (TypeError, ValueError):
        pass
    try:
        moment = dt.datetime.fromisoformat(str(value).strip())
    except ValueError:
        return 0.0
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)).timestamp()


def _refused(body: Any, status: int) -> bool:
    """Whether an answer is an error: HTTP 400 and above, or an "error" key even with an empty code."""
    return status >= 400 or (isinstance(body, dict) and body.get("error") is not None)


def _describe(body: Any) -> str:
    """The portal's reason: its error_description when the code is empty, "code: description" otherwise."""
    if not isinstance(body, dict):
        return "unexpected answer"
    code = str(body.get("error") or "").strip()
    text = str(body.get("error_description") or "").strip()
    if code and text:
        return f"{code}: {text}"
    return code or text or "error"
