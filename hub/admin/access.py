"""Who may open which page and press which button: checked before every request, denied by default.

Every view of an admin page (the core's own and those plugins register
through register_admin_pages) declares what it needs with
`@allow(read=..., write=...)`: the least role for GET (reading) and for any
other method (changing something). A view that declares nothing is refused
for everyone, so a forgotten declaration fails closed, and a test walks
every route with every role. The page's own roles (AdminPage.read_role,
write_role) are a ceiling: the stricter of page and view applies.
Blueprints that plugins add through register_routes (webhook receivers,
unsubscribe links) are public: no login and no global CSRF check; each
checks its callers itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit

from flask import Flask, abort, current_app, g, redirect, request, session, url_for
from sqlalchemy import Engine

from hub import users
from hub.admin.registry import PUBLIC, AdminPage, stricter
from hub.db import get_engine

F = TypeVar("F", bound=Callable[..., Any])
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
ADMIN_BLUEPRINTS = "HUB_ADMIN_BLUEPRINTS"


@dataclass(frozen=True, slots=True)
class Policy:
    """The least role for reading (GET) and for changing (POST); None: that kind of request is refused."""

    read: str | None
    write: str | None


def allow(read: str | None = "viewer", write: str | None = None) -> Callable[[F], F]:
    """Declare who may use a view: `read` for GET, `write` for POST (roles, or PUBLIC)."""
    for role in (read, write):
        if role is not None and role != PUBLIC and role not in users.RANK:
            raise ValueError(f"unknown role {role!r}")

    def mark(view: F) -> F:
        view.hub_policy = Policy(read, write)  # type: ignore[attr-defined]
        return view

    return mark


def policy_of(app: Flask, endpoint: str) -> Policy | None:
    return getattr(app.view_functions.get(endpoint), "hub_policy", None)


def engine() -> Engine:
    """The database engine of the app handling this request."""
    from hub.admin.app import current_settings

    return get_engine(current_settings().database_url)


def current_user() -> users.Account | None:
    """The signed-in user of this request (None when nobody is)."""
    return g.get("user")


def reader() -> users.Account | None:
    """The signed-in user, read now if sign-in has not been checked yet: a refused CSRF token is answered
    before it is, and the answer is still in the language that person chose."""
    if "user" not in g:
        g.user = _load_user() if page_of(request.endpoint) is not None else None
    return current_user()


def actor() -> str:
    """How audit entries and merges name the person acting."""
    user = current_user()
    return f"admin:{user.email}" if user else "admin"


def _load_user() -> users.Account | None:
    uid = session.get("uid")
    if not isinstance(uid, int):
        return None
    with engine().connect() as conn:
        user = users.get(conn, uid)
    if not users.session_valid(user, session.get("auth")):
        session.clear()
        return None
    return user


def page_of(endpoint: str | None) -> AdminPage | None:
    """The admin page an endpoint belongs to: by its top blueprint, so a blueprint nested inside
    an admin page's is as guarded as the page itself (Flask names its views outer.inner.view)."""
    if not endpoint or "." not in endpoint:
        return None
    pages: dict[str, AdminPage] = current_app.config[ADMIN_BLUEPRINTS]
    return pages.get(endpoint.partition(".")[0])


def enforce() -> Any:
    """before_request: sign-in and role checks for every admin page's blueprint."""
    endpoint = request.endpoint
    if endpoint is None or endpoint.rpartition(".")[2] == "static":
        return None  # a 404 or 405 follows, or static files (the core's or a page's own CSS and JS)
    page = page_of(endpoint)
    if page is None:
        return None  # a plugin's public route
    g.user = _load_user()
    policy = policy_of(current_app, endpoint)
    if policy is None:
        abort(403)
    if request.method in SAFE_METHODS:
        need = stricter(policy.read, page.read_role)
    else:
        need = stricter(policy.write, page.write_role)
    if need == PUBLIC:
        return None
    if g.user is None:
        if request.method in SAFE_METHODS and not request.path.endswith(".json"):
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        abort(401)
    if need is None or not g.user.can(need):
        abort(403)
    return None


def local_path(target: str | None, default: str) -> str:
    """`target` if it is a path on this site, else `default`: never send anyone on to another site."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


def can(role: str) -> bool:
    """For templates: whether the signed-in user may do what needs `role` (buttons are shown only then)."""
    if role == PUBLIC:
        return True
    user = current_user()
    return user is not None and user.can(role)
