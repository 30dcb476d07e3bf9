"""Talking to the shop's JSON API: bearer token, pacing, retries, and errors a person can act on.

Every request waits for the shop's rate limit first (a bucket shared by the
threads of this process, or by every worker through Redis when Hub has one),
so Hub never floods a small shop's server. A 429 is still respected: the
request waits as long as the shop asks and goes again.

Reads are retried on 5xx answers and network failures with a growing pause.
A write is retried only when it carries an idempotency key: the shop then
recognises the repeat and answers it without doing the work twice.

Errors name what is wrong and where (the shop's address and the endpoint),
never the token.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit, urlunsplit

import requests

from hub.api import N_, Settings, SettingsError, get_engine, limiter, load_credentials, save_credentials
from hub.api import gettext as _

NAME = "shop"  # the source's name, the key of its stored credentials, the prefix of its settings
RETRYABLE = (500, 502, 503, 504)
MAX_RETRY_AFTER = 60.0  # seconds: a longer wait asked for by the shop fails the call instead
MAX_RATE_LIMITED = 10  # 429s in a row before giving up on one call
CONNECT_HINT = N_("run `hub connect shop --url URL --token TOKEN`")


class ShopError(RuntimeError):
    """A call to the shop that did not succeed.

    `status` is the HTTP status when the shop answered; `permanent` says that
    trying again later will not help (a refused token, a wrong address, a
    request the shop rejects), as opposed to an outage or a timeout.
    """

    def __init__(self, message: str, *, status: int | None = None, permanent: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.permanent = permanent


# --- settings -------------------------------------------------------------------------------

DEFAULTS: dict[str, float] = {"rate": 10.0, "burst": 10, "timeout": 30.0, "retries": 4, "backoff": 0.5,
                              "page_size": 500}


def option(settings: Settings, key: str) -> float:
    """A number from the [shop] table of hub.toml or HUB_SHOP_<KEY>, else its default.

    Read from both places because a table is the tidy way in hub.toml and an
    environment variable the only way in a container.
    """
    table = settings.extra.get(NAME)
    raw = table.get(key) if isinstance(table, Mapping) and key in table else settings.extra.get(f"{NAME}_{key}")
    if raw is None:
        return DEFAULTS[key]
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = -1.0
    whole = key in ("burst", "retries", "page_size")
    if value < 0 or (whole and value != int(value)) or (key in ("rate", "burst", "timeout", "page_size")
                                                        and value <= 0):
        kind = "a whole number" if whole else "a number"
        raise SettingsError(f"HUB_SHOP_{key.upper()} ([shop] {key}): {raw!r} is not {kind} above 0")
    return value


def check_url(url: str) -> str:
    """The shop's API address without a trailing slash; refuses what cannot be one.

    A token pasted into the address would end up in logs and error texts, so
    an address with user information is refused rather than cleaned.
    """
    text = (url or "").strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(_("%(address)r is not the shop's address; expected e.g. https://shop.example.ru",
                           address=text))
    if parts.username or parts.password:
        raise ValueError(_("the address must not contain a user name or password; give the token with --token"))
    if parts.query or parts.fragment:
        raise ValueError(_("the address must not have a query (?…) or fragment (#…)"))
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


# --- the client ---------------------------------------------------------------------------------

class ShopClient:
    """Requests to one shop; `stats` counts requests, 429 answers and retries for the sync report."""

    def __init__(self, url: str, token: str, *, bucket: Any = None, timeout: float = 30.0, retries: int = 4,
                 backoff: float = 0.5, sleep: Callable[[float], None] = time.sleep) -> None:
        self.url = check_url(url)
        parts = urlsplit(self.url)
        self.where = f"{parts.scheme}://{parts.netloc}"  # what error texts show
        self._token = token
        self.bucket = bucket
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        self.session = requests.Session()
        self.stats = {"requests": 0, "rate_limited": 0, "retried": 0}

    def __repr__(self) -> str:  # the token stays out of tracebacks and debug output
        return f"ShopClient({self.url!r})"

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """GET a JSON object; retried on outages, since reading twice changes nothing."""
        return self._call("GET", path, params=params)

    def post(self, path: str, body: Mapping[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        """POST with an Idempotency-Key, so a retry after a lost answer is recognised by the shop."""
        if not idempotency_key:
            raise ValueError("a write to the shop needs an idempotency key")
        return self._call("POST", path, body=body, key=idempotency_key)

    def close(self) -> None:
        self.session.close()

    def _call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
              body: Mapping[str, Any] | None = None, key: str | None = None) -> dict[str, Any]:
        what = f"{method} {self.where}{path}"
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        if key is not None:
            headers["Idempotency-Key"] = key
        failures = limited = 0
        while True:
            if self.bucket is not None:
                self.bucket.acquire()
            self.stats["requests"] += 1
            try:
                answer = self.session.request(method, self.url + path, params=params, json=body, headers=headers,
                                              timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if failures < self.retries:
                    failures += 1
                    self._pause(failures)
                    continue
                reason = (N_("%(what)s: the shop timed out (%(error)s) after %(attempts)s attempts; check the "
                             "address and that the shop is up")
                          if isinstance(exc, requests.Timeout) else
                          N_("%(what)s: the shop could not be reached (%(error)s) after %(attempts)s attempts; check "
                             "the address and that the shop is up"))
                raise ShopError(_(reason, what=what, error=type(exc).__name__, attempts=failures + 1),
                                permanent=False) from None
            status = answer.status_code
            if status == 429:  # not processed: safe to send again, writes included
                self.stats["rate_limited"] += 1
                limited += 1
                wait = _retry_after(answer.headers.get("Retry-After"))
                if limited > MAX_RATE_LIMITED or wait > MAX_RETRY_AFTER:
                    raise ShopError(_("%(what)s: the shop keeps answering 429 Too Many Requests; lower "
                                      "HUB_SHOP_RATE (now %(rate)s)", what=what, rate=self._rate_text()),
                                    status=429, permanent=False)
                self._sleep(wait)
                continue
            if status in RETRYABLE:
                if failures < self.retries:
                    failures += 1
                    self._pause(failures)
                    continue
                raise ShopError(_("%(what)s: the shop answered %(status)s %(times)s times in a row", what=what,
                                  status=f"{status} {answer.reason or ''}".rstrip(), times=failures + 1),
                                status=status, permanent=False)
            return self._answer(what, answer)

    def _pause(self, failures: int) -> None:
        self.stats["retried"] += 1
        self._sleep(self.backoff * 2 ** (failures - 1))

    def _rate_text(self) -> str:
        rate = getattr(self.bucket, "rate", None)
        return f"{rate:g}/s" if rate else _("unlimited")

    def _answer(self, what: str, answer: requests.Response) -> dict[str, Any]:
        status = answer.status_code
        if status == 401:
            raise ShopError(_("%(what)s: the shop refused the API token (401); %(hint)s with a valid token",
                              what=what, hint=_(CONNECT_HINT)), status=401)
        if status == 403:
            raise ShopError(_("%(what)s: the API token may not do this (403); give it read access to customers and "
                              "orders and write access to coupons", what=what), status=403)
        if status == 404:
            raise ShopError(_("%(what)s: not found (404); is %(url)s the shop's API address?", what=what,
                              url=self.url), status=404)
        try:
            data = answer.json()
        except ValueError:
            kind = answer.headers.get("Content-Type", "no content type")
            raise ShopError(_("%(what)s: the shop answered HTTP %(status)s with something that is not JSON "
                              "(%(kind)s, %(size)s bytes); is %(url)s the shop's API address?", what=what,
                              status=status, kind=kind, size=len(answer.content), url=self.url),
                            status=status) from None
        if not isinstance(data, dict):
            raise ShopError(f"{what}: expected a JSON object, got {type(data).__name__}", status=status)
        if status >= 400:
            detail = ": ".join(str(data[k]) for k in ("error", "message") if data.get(k))
            raise ShopError(_("%(what)s: the shop refused the request (%(status)s)", what=what,
                              status=f"{status}, {detail}" if detail else status), status=status)
        return data


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 1.0
    except ValueError:
        return 1.0


# --- the stored connection -----------------------------------------------------------------------

def save_connection(settings: Settings, engine: Any, url: str, token: str) -> None:
    """Store the shop's address and token, encrypted with HUB_SECRET_KEY."""
    with engine.begin() as conn:
        save_credentials(conn, NAME, {"url": check_url(url), "token": token}, settings.require_secret_key())


def load_connection(settings: Settings, engine: Any = None) -> dict[str, Any]:
    """The stored address and token; a clear instruction when there are none."""
    engine = engine or get_engine(settings.database_url)
    with engine.connect() as conn:
        found = load_credentials(conn, NAME, settings.require_secret_key())
    if found is None:
        raise ShopError(_("the shop is not connected; %(hint)s", hint=_(CONNECT_HINT)))
    data, _version = found
    return data


def client_for(settings: Settings, engine: Any = None, *, url: str | None = None, token: str | None = None,
               retries: int | None = None) -> ShopClient:
    """A client for the stored connection (or for `url` and `token`, to check them before storing)."""
    if url is None or token is None:
        data = load_connection(settings, engine)
        url, token = data["url"], data["token"]
    rate, burst = option(settings, "rate"), int(option(settings, "burst"))
    host = urlsplit(check_url(url)).netloc
    return ShopClient(url, token, bucket=limiter(settings, f"{NAME}:{host}", rate, burst),
                      timeout=option(settings, "timeout"),
                      retries=int(option(settings, "retries")) if retries is None else retries,
                      backoff=option(settings, "backoff"))
