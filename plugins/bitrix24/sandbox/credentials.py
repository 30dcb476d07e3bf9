"""Who may call: incoming webhooks, the OAuth application, its codes and tokens."""

from __future__ import annotations

import random
import string
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from plugins.bitrix24.sandbox.protocol import ApiError, _json_answer, _not_found_method, php_intval
from plugins.bitrix24.sandbox.state import PortalState

CODE_LIFETIME = 30  # seconds an authorization code stays valid
REFRESH_LIFETIME = 180 * 86_400
OAUTH_SERVER_DOMAIN = "oauth.bitrix.info"  # what the token answer calls its "domain"


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


def _token(rng: random.Random, length: int = 32, alphabet: str = string.ascii_lowercase + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


class Credentials(PortalState):
    """Webhooks and the OAuth server, and the check of every REST call's credentials (part of `Portal`)."""

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

    # ------------------------------------------------------------------ checking a REST call

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
