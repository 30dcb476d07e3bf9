"""The stored connection to a portal: an incoming webhook, or an OAuth app's tokens.

Stored encrypted (hub.credentials) under the name "bitrix24". An app's
refresh token is replaced on every refresh and the old one dies, so a refresh
happens in one place only: under a lock on the credentials row, re-reading
first (another worker may have just refreshed), and the new pair is committed
before anyone uses it. Refreshing happens when the portal answers
`expired_token`, never on a timer.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import requests
from sqlalchemy import Engine

from hub.api import Settings, get_engine, limiter, load_credentials, lock_credentials, save_credentials, utcnow
from hub.api import gettext as _
from plugins.bitrix24.client import USER_ACTION, Client, NeedsUserAction, TokenAuth, WebhookAuth

NAME = "bitrix24"
OAUTH_URL = "https://oauth.bitrix.info/oauth/token/"


class NotConnected(NeedsUserAction):
    pass


def plugin_settings(settings: Settings) -> dict[str, Any]:
    """The [bitrix24] table of hub.toml (rate, burst, plan, fields, promo_field, overlap_s)."""
    table = settings.extra.get("bitrix24") or {}
    return dict(table) if isinstance(table, dict) else {}


def limits(settings: Settings) -> tuple[float, int]:
    """The portal's bucket: 2/s and 50 by default, 5/s and 250 on Enterprise, or as configured."""
    table = plugin_settings(settings)
    rate, burst = (5.0, 250) if str(table.get("plan", "")).lower() == "enterprise" else (2.0, 50)
    return float(table.get("rate", rate)), int(table.get("burst", burst))


def load(engine: Engine, settings: Settings) -> tuple[dict[str, Any], int]:
    with engine.connect() as conn:
        found = load_credentials(conn, NAME, settings.require_secret_key())
    if found is None:
        raise NotConnected(_("Bitrix24 is not connected; run `hub connect bitrix24 --webhook URL`"))
    return found


def save(engine: Engine, settings: Settings, data: dict[str, Any]) -> None:
    with engine.begin() as conn:
        save_credentials(conn, NAME, data, settings.require_secret_key())


def client(settings: Settings, engine: Engine | None = None, data: dict[str, Any] | None = None) -> Client:
    """A client for the stored connection (or for `data`, to check it before storing)."""
    engine = engine or get_engine(settings.database_url)
    version = 0
    if data is None:
        data, version = load(engine, settings)
    rate, burst = limits(settings)
    if data["kind"] == "webhook":
        auth: Any = WebhookAuth(data["url"])
    else:
        state = {"version": version}

        def renew() -> tuple[str, str]:
            token, endpoint, state["version"] = refresh(engine, settings, state["version"])
            return token, endpoint

        auth = TokenAuth(data["client_endpoint"], data["access_token"], renew)
    # Our bucket is kept a little smaller than the portal's: requests leave here
    # paced, but arrive with jitter.
    bucket = limiter(settings, f"bitrix24:{auth.host}", rate, max(1, int(burst * 0.9)))
    return Client(auth, bucket)


def refresh(engine: Engine, settings: Settings, seen_version: int) -> tuple[str, str, int]:
    """A fresh access token: the one another worker just stored, or a new one we store first."""
    key = settings.require_secret_key()
    with engine.begin() as conn:
        lock_credentials(conn, NAME)
        found = load_credentials(conn, NAME, key)
        if found is None:
            raise NotConnected(_("Bitrix24 is not connected; run `hub connect bitrix24`"))
        data, version = found
        if version != seen_version:
            return data["access_token"], data["client_endpoint"], version
        tokens = request_tokens(data.get("oauth_url") or OAUTH_URL, grant_type="refresh_token",
                                client_id=data["client_id"], client_secret=data["client_secret"],
                                refresh_token=data["refresh_token"])
        data = {**data, **tokens}
        version = save_credentials(conn, NAME, data, key)
    return data["access_token"], data["client_endpoint"], version


def request_tokens(oauth_url: str, **params: str) -> dict[str, Any]:
    """Call the token endpoint (authorization_code or refresh_token grant) and keep what Hub needs."""
    try:
        response = requests.get(oauth_url, params=params, timeout=30)
        body = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise NeedsUserAction(_("the Bitrix24 token endpoint did not answer properly (%(error)s)",
                                error=type(exc).__name__)) from None
    if not isinstance(body, dict) or body.get("error") or not body.get("access_token"):
        code = str(body.get("error")) if isinstance(body, dict) else "error"
        hint = _(USER_ACTION[code]) if code in USER_ACTION else \
            _("the token endpoint refused; check the client id, secret and code")
        raise NeedsUserAction(f"Bitrix24 OAuth: {code}: {hint}", code=code)
    expires_in = int(body.get("expires_in") or 3600)
    endpoint = body.get("client_endpoint") or (f"https://{body['domain']}/rest/" if body.get("domain") else None)
    if not endpoint:
        raise NeedsUserAction(_("Bitrix24 OAuth: the token answer names no portal (client_endpoint)"))
    return {"access_token": body["access_token"], "refresh_token": body.get("refresh_token"),
            "client_endpoint": endpoint, "domain": body.get("domain"), "member_id": body.get("member_id"),
            "expires_at": (utcnow() + dt.timedelta(seconds=expires_in)).isoformat(),
            "refreshed_at": utcnow().isoformat()}
