"""The Flask application factory: the admin's pages, its protections, and plugins' public routes.

The admin is for the people who run campaigns. Each area is one blueprint,
registered as an admin page through the register_admin_pages hook: the
core's own (dashboard, contacts, segments, templates, connections, users;
hub.admin.pages) exactly like the plugins' (workflows, GDPR, each CRM's
connect page). access.py checks sign-in and role before every request to
them, Flask-WTF checks a CSRF token on every form and state-changing request,
every page is a Jinja template with autoescaping, and the menu lists what is
registered. Plugins add public routes (webhook receivers, unsubscribe links)
through the register_routes hook; those are exempt from sign-in and from the
global CSRF check and make their own checks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from flask import Flask, current_app, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import BadRequest, HTTPException
from werkzeug.routing import IntegerConverter

from hub.admin import access
from hub.config import Settings, load_settings
from hub.db import MAX_ROW_ID
from hub.i18n import N_
from hub.i18n import gettext as _
from hub.plugins import get_pm
from hub.webapi import routes as webapi
from hub.wsgi import ROUTE_KEY, loggable_rule, redacted_path

SESSION_HOURS = 12
csrf = CSRFProtect()


def _flag(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() not in ("0", "false", "no", "off", "")


class _RowIdConverter(IntegerConverter):
    """`<int:…>` in every route, bounded by the largest id a database row can have."""

    def __init__(self, url_map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_ROW_ID)
        super().__init__(url_map, *args, **kwargs)


def create_app(settings: Settings | None = None) -> Flask:
    """A Flask app for these settings, with every registered admin page and every plugin's public routes."""
    from hub.admin import filters, health_banner, language, registry

    settings = settings or load_settings()
    app = Flask("hub.admin")
    key = settings.require_secret_key()
    app.config.update(
        # A key of its own for sessions, derived from HUB_SECRET_KEY, which also encrypts credentials.
        SECRET_KEY=hashlib.sha256(b"hub-admin-session:" + key.encode()).hexdigest(),
        HUB_SETTINGS=settings,
        SESSION_COOKIE_NAME="hub_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=_flag(settings.extra.get("admin_secure_cookies"), True),
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=SESSION_HOURS),
        WTF_CSRF_TIME_LIMIT=SESSION_HOURS * 3600,
        MAX_CONTENT_LENGTH=4 * 1024 * 1024,
    )
    hops = int(settings.extra.get("admin_proxy_hops") or 0)
    if hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    # An id in a path past what the database holds is a page that does not exist (404), not a driver error.
    app.url_map.converters["int"] = _RowIdConverter
    csrf.init_app(app)
    language.install(app)
    filters.install(app)
    health_banner.install(app)

    pm = get_pm()
    pages = registry.collect(pm)
    for page in pages:
        app.register_blueprint(page.blueprint)
        if page.endpoint not in app.view_functions:  # a typo would otherwise show as a broken menu or section
            raise ValueError(f"admin page {page.endpoint!r}: blueprint {page.blueprint.name!r} has no such view")
    app.config[access.ADMIN_BLUEPRINTS] = {page.blueprint.name: page for page in pages}
    app.before_request(access.enforce)
    app.before_request(language.activate_for_reader)

    pm.hook.register_routes(app=app)
    webapi.install(app)
    for name, bp in app.blueprints.items():
        if name.partition(".")[0] not in app.config[access.ADMIN_BLUEPRINTS]:  # nested ones: outer.inner
            csrf.exempt(bp)

    app.url_value_preprocessor(_route_for_log)
    app.log_exception = _log_exception.__get__(app)  # type: ignore[method-assign]
    app.after_request(_security_headers)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)
    return app


def _route_for_log(endpoint: str | None, values: dict[str, Any] | None) -> None:
    """Leave the matched route for the access log (hub.wsgi), so tokens and queries never reach it."""
    if request.url_rule is None:
        return
    if endpoint is not None and endpoint.rpartition(".")[2] == "static":  # our own files: the path says which
        request.environ[ROUTE_KEY] = request.script_root + request.path
    else:
        request.environ[ROUTE_KEY] = request.script_root + loggable_rule(request.url_rule.rule, values)


def _log_exception(app: Flask, exc_info: Any) -> None:
    """Flask's error log line, naming the route rather than the path (which may hold a token)."""
    where = request.environ.get(ROUTE_KEY) or redacted_path(request.path)
    app.logger.error("Exception on %s [%s]", where, request.method, exc_info=exc_info)


def current_settings() -> Settings:
    """The settings of the app handling this request."""
    return current_app.config["HUB_SETTINGS"]


# Scripts and styles only from our own static files: no inline script can run,
# even if something slipped past autoescaping.
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self' https:")


def _security_headers(response: Any) -> Any:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if request.blueprint is not None and access.page_of(request.endpoint) is None:
        return response  # a plugin's public page (a signup form may be framed on the shop's site): its own headers
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", _CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")
    if request.endpoint and request.endpoint != "static":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _wants_json() -> bool:
    return request.path.endswith(".json") or request.accept_mimetypes.best == "application/json" or request.is_json


def _csrf_error(error: CSRFError) -> Any:
    from hub.admin import language

    language.activate_for_reader()  # refused before sign-in was checked: still in the reader's own language
    message = _("The form was refused: its security token is missing or has expired. "
                "Reload the page and send it again.")
    if _wants_json():
        return {"error": message}, 400
    return render_template("error.html", code=400, title=_("Form refused"), message=message,
                           bare=access.current_user() is None), 400


# Marked here, translated when shown: each request in its reader's language.
_MESSAGES = {
    400: (N_("Request refused"), N_("The request could not be understood. Go back and try again.")),
    401: (N_("Sign in first"), N_("This needs you to be signed in.")),
    403: (N_("Not allowed"), N_("Your role does not allow this. Ask an admin if you need it.")),
    404: (N_("Not found"), N_("There is nothing at this address.")),
    405: (N_("Not allowed here"), N_("This address does not accept that kind of request.")),
    413: (N_("Too large"), N_("What was sent is too large: at most 4 MB.")),
}
_OTHER = (N_("Something went wrong"), N_("The request could not be handled. Try again, or tell an admin."))


def _http_error(error: HTTPException) -> Any:
    from hub.admin import language

    if webapi.is_api_request():
        return webapi.http_error(error)  # problem+json, also for a route /api/v1 does not have
    if request.blueprint and access.page_of(request.endpoint) is None:
        return error  # a plugin's public route answers in its own way
    language.activate_for_reader()  # refused before the reader's language was chosen (sign-in, role)
    code = error.code or 500
    title, message = (_(text) for text in _MESSAGES.get(code, _OTHER))
    if code == 400 and error.description and error.description != BadRequest.description:
        message = error.description  # a view's own explanation (already in the reader's language)
    if _wants_json():
        return {"error": message}, code
    # Nobody signed in: the page holds no form, so it starts no session. A browser's stray request (its
    # /favicon.ico) must not set a session cookie that races the sign-in page's and voids its CSRF token.
    return render_template("error.html", code=code, title=title, message=message,
                           bare=access.current_user() is None), code
