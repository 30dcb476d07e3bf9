"""The stored amoCRM connection and the one place its tokens are refreshed.

amoCRM's access tokens live 24 hours and its refresh tokens three months,
and a refresh token works once: every refresh returns a new pair and kills
the old refresh token, so a second worker refreshing with the same one gets
401 "Token has been revoked" and the connection is lost. Hence:

- the pair is stored encrypted (hub.credentials, name "amocrm") and refreshed
  only in `refresh_stored`, under a lock that holds across processes: the
  credentials row's write lock (a row lock on PostgreSQL, the database write
  lock on SQLite), plus a Redis lock when HUB_REDIS_URL is set;
- under the lock the stored pair is read again: if another worker already
  refreshed, its token is used and nothing is sent;
- otherwise the refresh is sent and the new pair saved in the same
  transaction, which commits before anyone uses the new token;
- an idle connection is kept alive by `keep_alive`, which refreshes once the
  refresh token is older than 75 days (of its 90).

A long-lived token (private integrations) has no refresh token and never
refreshes. No message or log line here contains a token or the client secret.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import secrets
import threading
from typing import Any, Iterator

import requests
from sqlalchemy import Engine

from hub.api import N_, Settings, load_credentials, lock_credentials, save_credentials, utcnow
from hub.api import gettext as _
from plugins.amocrm.client import AmoAuthError, AmoError, check_base_url

NAME = "amocrm"
ACCESS_LIFETIME = dt.timedelta(hours=24)
REFRESH_LIFETIME = dt.timedelta(days=90)
KEEP_ALIVE_AFTER = dt.timedelta(days=75)  # refresh an idle connection's pair once it is this old
EARLY = dt.timedelta(seconds=60)  # refresh this long before the access token expires
RECONNECT = N_("connect again with `hub connect amocrm` (a new authorization code or token pair)")


class NotConnected(AmoAuthError):
    """No amoCRM connection is stored."""


def plugin_settings(settings: Settings) -> dict[str, Any]:
    """The [amocrm] table of hub.toml (rate, concurrency, overlap_s, fields, task_type_id, ...)."""
    table = settings.extra.get("amocrm") or {}
    return dict(table) if isinstance(table, dict) else {}


def load(engine: Engine, settings: Settings) -> tuple[dict[str, Any], int]:
    """The stored connection and its version."""
    with engine.connect() as conn:
        found = load_credentials(conn, NAME, settings.require_secret_key())
    if found is None:
        raise NotConnected(_("amoCRM is not connected; run `hub connect amocrm --base-url URL --client-id ID "
                             "--client-secret S --redirect-uri U` with --code, a token pair or --long-lived-token"))
    return found


def save(engine: Engine, settings: Settings, data: dict[str, Any]) -> int:
    """Store the connection whole (connecting); keeps the webhook secret of an earlier connection."""
    key = settings.require_secret_key()
    with engine.begin() as conn:
        lock_credentials(conn, NAME)
        found = load_credentials(conn, NAME, key)
        if found and found[0].get("webhook_secret") and not data.get("webhook_secret"):
            data = {**data, "webhook_secret": found[0]["webhook_secret"]}
        data.setdefault("webhook_secret", secrets.token_urlsafe(24))
        return save_credentials(conn, NAME, data, key)


def update(engine: Engine, settings: Settings, **fields: Any) -> int:
    """Change some non-token fields (e.g. the account's details) without racing a refresh."""
    key = settings.require_secret_key()
    with engine.begin() as conn:
        lock_credentials(conn, NAME)
        found = load_credentials(conn, NAME, key)
        if found is None:
            raise NotConnected(_("amoCRM is not connected; run `hub connect amocrm`"))
        return save_credentials(conn, NAME, {**found[0], **fields}, key)


def jwt_expiry(token: str) -> dt.datetime | None:
    """The `exp` of a JWT access token (amoCRM's are JWTs), read without checking the signature."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return dt.datetime.fromtimestamp(int(claims["exp"]), dt.timezone.utc)
    except (IndexError, KeyError, TypeError, ValueError):
        return None


def oauth_connection(base_url: str, client_id: str, client_secret: str, redirect_uri: str, *,
                     access_token: str, refresh_token: str, expires_at: dt.datetime | None = None) -> dict[str, Any]:
    now = utcnow()
    expires = expires_at or jwt_expiry(access_token)
    return {"kind": "oauth", "base_url": check_base_url(base_url), "client_id": client_id,
            "client_secret": client_secret, "redirect_uri": redirect_uri, "access_token": access_token,
            "refresh_token": refresh_token, "expires_at": expires.isoformat() if expires else None,
            "refreshed_at": now.isoformat(), "refresh_expires_at": (now + REFRESH_LIFETIME).isoformat()}


def long_lived_connection(base_url: str, token: str, *, client_id: str | None = None,
                          client_secret: str | None = None, redirect_uri: str | None = None) -> dict[str, Any]:
    expires = jwt_expiry(token)
    return {"kind": "long_lived", "base_url": check_base_url(base_url), "client_id": client_id,
            "client_secret": client_secret, "redirect_uri": redirect_uri, "access_token": token,
            "refresh_token": None, "expires_at": expires.isoformat() if expires else None,
            "refreshed_at": utcnow().isoformat(), "refresh_expires_at": None}


def request_tokens(base_url: str, body: dict[str, Any], *, session: requests.Session | None = None,
                   limiter: Any = None) -> dict[str, Any]:
    """POST /oauth2/access_token (grant authorization_code or refresh_token); the fields Hub stores."""
    url = check_base_url(base_url) + "/oauth2/access_token"
    if limiter is not None:
        limiter.acquire()
    try:
        response = (session or requests).post(url, json=body, timeout=(5, 30))
    except requests.ConnectTimeout:
        raise AmoError(_("amoCRM %(url)s: could not connect to the token endpoint; check the address and "
                         "try again", url=url)) from None
    except requests.RequestException as exc:
        raise AmoError(_("amoCRM %(url)s: %(error)s waiting for the token endpoint; if this keeps happening, "
                         "%(reconnect)s", url=url, error=type(exc).__name__, reconnect=_(RECONNECT))) from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code != 200 or not isinstance(answer, dict) or not answer.get("access_token"):
        hint = ""
        if isinstance(answer, dict):
            hint = str(answer.get("hint") or answer.get("detail") or answer.get("title") or "")
        grant = body.get("grant_type")
        status = f"HTTP {response.status_code}" + (f": {hint}" if hint else "")
        if response.status_code in (400, 401, 403) and grant == "refresh_token":
            raise AmoAuthError(_("amoCRM refused the stored refresh token (%(status)s); %(reconnect)s",
                                 status=status, reconnect=_(RECONNECT)), status=response.status_code)
        if response.status_code in (400, 401, 403):
            raise AmoAuthError(_("amoCRM refused the authorization (%(status)s); check the client id, client secret "
                                 "and redirect URI, and use a fresh code (a code works once, for 20 minutes)",
                                 status=status), status=response.status_code)
        raise AmoError(_("amoCRM token endpoint answered %(status)s", status=status), status=response.status_code)
    now = utcnow()
    expires_in = int(answer.get("expires_in") or ACCESS_LIFETIME.total_seconds())
    return {"access_token": answer["access_token"], "refresh_token": answer.get("refresh_token"),
            "expires_at": (now + dt.timedelta(seconds=expires_in)).isoformat(),
            "refreshed_at": now.isoformat(), "refresh_expires_at": (now + REFRESH_LIFETIME).isoformat()}


def exchange_code(base_url: str, client_id: str, client_secret: str, redirect_uri: str, code: str) -> dict[str, Any]:
    """A new connection from an authorization code (valid once, for 20 minutes)."""
    tokens = request_tokens(base_url, {"client_id": client_id, "client_secret": client_secret,
                                       "grant_type": "authorization_code", "code": code,
                                       "redirect_uri": redirect_uri})
    data = oauth_connection(base_url, client_id, client_secret, redirect_uri,
                            access_token=tokens["access_token"], refresh_token=tokens["refresh_token"])
    data.update(tokens)
    return data


def _expiring(data: dict[str, Any], now: dt.datetime | None = None) -> bool:
    expires = data.get("expires_at")
    if not expires:
        return False
    return dt.datetime.fromisoformat(expires) - (now or utcnow()) < EARLY


@contextlib.contextmanager
def _redis_lock(settings: Settings) -> Iterator[None]:
    """Redis's lock when workers share Redis; the database lock below holds either way."""
    if not settings.redis_url:
        yield
        return
    from hub.api import redis_connection

    lock = redis_connection(settings).lock(f"hub:lock:{NAME}:refresh", timeout=120, blocking_timeout=120)
    if not lock.acquire():
        raise AmoError(_("amoCRM: another worker has held the token refresh lock for two minutes; try again"))
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            lock.release()


def refresh_stored(engine: Engine, settings: Settings, stale: str | None, *, force: bool = False,
                   session: requests.Session | None = None, limiter: Any = None) -> tuple[dict[str, Any], int, bool]:
    """The connection with a working access token: (data, version, whether this call refreshed).

    `stale` is the access token the caller found refused or expiring. If the
    stored token is another one and not about to expire, a worker already
    refreshed and its pair is returned untouched; otherwise the refresh is sent
    here, under the lock, and saved before the lock is let go.
    """
    key = settings.require_secret_key()
    with _redis_lock(settings), engine.begin() as conn:
        lock_credentials(conn, NAME)
        found = load_credentials(conn, NAME, key, for_update=True)
        if found is None:
            raise NotConnected(_("amoCRM is not connected; run `hub connect amocrm`"))
        data, version = found
        if not force and data.get("access_token") != stale and not _expiring(data):
            return data, version, False
        if data.get("kind") != "oauth" or not data.get("refresh_token"):
            raise AmoAuthError(_("amoCRM refused the long-lived token (HTTP 401); create a new one in the "
                                 "integration's settings and run `hub connect amocrm --long-lived-token ...` again"),
                               status=401)
        tokens = request_tokens(data["base_url"], {
            "client_id": data["client_id"], "client_secret": data["client_secret"], "grant_type": "refresh_token",
            "refresh_token": data["refresh_token"], "redirect_uri": data["redirect_uri"]},
            session=session, limiter=limiter)
        data = {**data, **tokens}
        version = save_credentials(conn, NAME, data, key)
    return data, version, True


class TokenKeeper:
    """The client's Auth for the stored connection: one token per process, refreshed in one place."""

    def __init__(self, engine: Engine, settings: Settings, data: dict[str, Any], *,
                 session: requests.Session | None = None, limiter: Any = None) -> None:
        self.engine = engine
        self.settings = settings
        self.data = data
        self.refreshes = 0
        self._session = session
        self._limiter = limiter
        self._lock = threading.Lock()

    def token(self) -> str:
        with self._lock:
            if self.data.get("kind") == "oauth" and _expiring(self.data):
                self._refresh(self.data["access_token"])
            return str(self.data["access_token"])

    def refresh(self, stale: str) -> str:
        with self._lock:
            if self.data.get("access_token") == stale:
                self._refresh(stale)
            return str(self.data["access_token"])

    def _refresh(self, stale: str) -> None:
        self.data, _version, refreshed = refresh_stored(self.engine, self.settings, stale,
                                                        session=self._session, limiter=self._limiter)
        if refreshed:
            self.refreshes += 1


def keep_alive(engine: Engine, settings: Settings, *, force: bool = False) -> bool:
    """Refresh an idle OAuth connection before its refresh token runs out; True if it refreshed."""
    data, _version = load(engine, settings)
    if data.get("kind") != "oauth":
        return False
    refreshed_at = dt.datetime.fromisoformat(data["refreshed_at"]) if data.get("refreshed_at") else None
    if not force and refreshed_at is not None and utcnow() - refreshed_at < KEEP_ALIVE_AFTER:
        return False
    _data, _version, refreshed = refresh_stored(engine, settings, data.get("access_token"), force=True)
    return refreshed


def scheduled_keep_alive(run: Any) -> dict[str, Any]:
    """The daily check of `hub scheduler` (`run` is a ``hub.schedule.ScheduledRun``)."""
    try:
        refreshed = keep_alive(run.engine, run.settings)
    except NotConnected:
        return {"connected": False}
    return {"refreshed": refreshed}
