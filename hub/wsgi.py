"""Hub's web side as a WSGI application, its access log, and the production server `hub admin` runs.

`hub admin` serves the admin, the public consent routes and the CRM webhook
receivers with waitress: a production WSGI server in pure Python that runs
the same on Linux and Windows, with a pool of threads, which suits Hub's
synchronous SQLAlchemy code (each request holds one thread and one pooled
database connection). People who run their own server point it at this
module's ``app`` (``gunicorn hub.wsgi:app``, ``waitress-serve hub.wsgi:app``);
it is built from the environment (HUB_* and hub.toml) on first use, so
importing the module costs nothing.

The access log never holds personal data or secrets: it names the route a
request matched (``/u/<token>``, ``/contacts/17``), never the query string
(a contact search for a phone or an email lives there) nor a token in the
path; a request that matched no route is logged with long or personal-looking
path segments blanked.
"""

from __future__ import annotations

import errno
import logging
import re
import signal
import threading
import time
from typing import Any, Callable, Iterable

access_log = logging.getLogger("hub.access")

# The WSGI environ key where the Flask app leaves the route a request matched, for the access log.
ROUTE_KEY = "hub.route"
DEFAULT_THREADS = 8


def default_threads(database_url: str) -> int:
    """Threads for `hub admin` when not told: 4 on SQLite, DEFAULT_THREADS elsewhere.

    SQLite lets one writer in at a time and makes the others poll for the lock
    with growing sleeps, so past a few threads more of them only queue for the
    lock and stretch the slowest answers (a burst of unsubscribes measured a
    p99 of 0.2 s with 4 threads, 0.6 s with 8 and 1.1 s with 16); PostgreSQL
    writes in parallel.
    """
    return 4 if database_url.startswith("sqlite") else DEFAULT_THREADS

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class PortInUse(OSError):
    """`hub admin` cannot listen where it was told: the port is taken, not allowed, or the host not ours."""


def loggable_rule(rule: str, values: dict[str, Any] | None) -> str:
    """A route for the log: whole numbers (ids) filled in, every other part left as its name (`<token>`)."""
    values = values or {}

    def fill(m: re.Match[str]) -> str:
        converter, name = m.group(1), m.group(2)
        value = values.get(name)
        if converter == "int" and isinstance(value, int):
            return str(value)
        return f"<{name}>"

    return _RULE_PART.sub(fill, rule)


_RULE_PART = re.compile(r"<(?:([a-zA-Z_]+)(?:\([^)]*\))?:)?([a-zA-Z_][a-zA-Z0-9_]*)>")
# A path segment that may be a token, an email or a phone number: not logged as it is.
_SENSITIVE = re.compile(r"@|%40|\d{5,}|[^/]{33,}")


def redacted_path(path: str) -> str:
    """`path` with every segment that could be a secret or personal data replaced by '…'."""
    return "/".join("…" if _SENSITIVE.search(part) else part for part in path.split("/"))


class AccessLog:
    """WSGI middleware: one line per request, "METHOD route status duration", nothing personal.

    Written when the response has been sent (or the client went away), so the
    duration covers the whole answer.
    """

    def __init__(self, app: WSGIApp, logger: logging.Logger = access_log) -> None:
        self.app = app
        self.logger = logger

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        status: list[str] = []

        def recording_start_response(code: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            status[:] = [code.split(" ", 1)[0]]
            return start_response(code, headers, *exc_info)

        try:
            body = self.app(environ, recording_start_response)
        except BaseException:
            self._log(environ, "500", started)
            raise
        return _Closing(body, lambda: self._log(environ, status[0] if status else "-", started))

    def _log(self, environ: dict[str, Any], status: str, started: float) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        path = environ.get(ROUTE_KEY) or redacted_path(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
        self.logger.info("%s %s %s %.0fms", environ.get("REQUEST_METHOD", "-"), path, status,
                         (time.perf_counter() - started) * 1000)


class _Closing:
    """A response body that calls `done` once the server has closed it (the end of the request)."""

    def __init__(self, body: Iterable[bytes], done: Callable[[], None]) -> None:
        self._body = body
        self._done = done

    def __iter__(self) -> Any:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._done()


def create(settings: Any = None) -> WSGIApp:
    """The whole web side (admin, public routes, webhook receivers) behind the access log."""
    from hub.admin import create_app

    return AccessLog(create_app(settings))


def serve(app: WSGIApp, host: str = "127.0.0.1", port: int = 5000, *, threads: int = DEFAULT_THREADS,
          ready: Callable[[str], None] | None = None) -> None:
    """Serve `app` with waitress until interrupted; a taken address is a PortInUse, said in one line."""
    import waitress.server

    try:
        # X-Forwarded-* headers pass through untouched: the app trusts them only as far as
        # admin_proxy_hops says (werkzeug's ProxyFix), wherever it is served.
        server = waitress.server.create_server(app, host=host, port=port, threads=threads, ident="hub",
                                               clear_untrusted_proxy_headers=False)
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            raise PortInUse(exc.errno, exc.strerror) from None
        raise
    if ready is not None:
        ready(f"http://{host}:{getattr(server, 'effective_port', port)}")
    previous = None
    if threading.current_thread() is threading.main_thread():
        # A service manager stops with SIGTERM: end like Ctrl+C, closing the sockets.
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


_app: WSGIApp | None = None


def __getattr__(name: str) -> Any:
    # `app` (and `application`, the name mod_wsgi looks for) is built on first use.
    global _app
    if name in ("app", "application"):
        if _app is None:
            _app = create()
        return _app
    raise AttributeError(f"module 'hub.wsgi' has no attribute {name!r}")
