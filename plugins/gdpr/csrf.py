"""CSRF protection for the public pages' forms, without sessions or logins.

A double-submit token: the browser gets a random cookie (HttpOnly,
SameSite=Lax) with the first page, and every form on it carries an HMAC of
that cookie and the page it was made for, keyed with HUB_SECRET_KEY. A post
from another site brings neither the cookie (SameSite) nor a token that
matches it, so it is refused. The RFC 8058 one-click unsubscribe is the one
state-changing post exempt from this: mail providers send it without cookies.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from flask import g, request
from werkzeug.wrappers import Response

from hub.api import current_settings

COOKIE = "hub_public_csrf"
FIELD = "csrf_token"


def _nonce() -> str:
    nonce = g.get("gdpr_csrf_nonce")
    if nonce is None:
        nonce = request.cookies.get(COOKIE) or ""
        if len(nonce) < 32:
            nonce = secrets.token_urlsafe(32)
            g.gdpr_csrf_new = True
        g.gdpr_csrf_nonce = nonce
    return nonce


def _sign(nonce: str, scope: str) -> str:
    key = hashlib.sha256(b"hub.gdpr.csrf:" + current_settings().require_secret_key().encode()).digest()
    return hmac.new(key, f"{nonce}\x1f{scope}".encode(), hashlib.sha256).hexdigest()


def token(scope: str) -> str:
    """The hidden field for a form on this page (`scope` names the page, e.g. its link)."""
    return _sign(_nonce(), scope)


def valid(scope: str) -> bool:
    """Whether this post carries the cookie and a token made for it and for `scope`."""
    nonce = request.cookies.get(COOKIE) or ""
    given = request.form.get(FIELD) or ""
    return len(nonce) >= 32 and hmac.compare_digest(_sign(nonce, scope), given)


def set_cookie(response: Response) -> Response:
    """after_request: hand out the cookie a token on this page was made with."""
    if g.get("gdpr_csrf_new"):
        response.set_cookie(COOKIE, g.gdpr_csrf_nonce, httponly=True, samesite="Lax", secure=request.is_secure,
                            path="/")
    return response
