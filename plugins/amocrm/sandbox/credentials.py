"""OAuth 2.0 as amoCRM runs it: codes, rotating refresh tokens, JWT-shaped access tokens, long-lived tokens."""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from plugins.amocrm.sandbox.data import (
    ACCOUNT_ID,
    ADMIN_USER,
)
from plugins.amocrm.sandbox.protocol import OAUTH_BAD_REQUEST_DETAIL, Response, _json_response, _oauth_problem, _problem
from plugins.amocrm.sandbox.state import AccountState

DAY = 86_400
ACCESS_TOKEN_TTL = DAY
REFRESH_TOKEN_TTL = 90 * DAY          # "3 months"
AUTH_CODE_TTL = 20 * 60
LONG_LIVED_TOKEN_TTL = 5 * 365 * DAY


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


class Credentials(AccountState):
    """The account's OAuth server and its Bearer check (part of `Account`)."""

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

