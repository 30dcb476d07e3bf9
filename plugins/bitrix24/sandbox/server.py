"""The portal over HTTP on a background thread, and ways to run it."""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from hub.api import BackgroundServer, EmulatorHTTPServer, format_number, serve_until_interrupted
from hub.api import gettext as _
from plugins.bitrix24.sandbox.credentials import OAuthAppInfo, Webhook
from plugins.bitrix24.sandbox.portal import Portal
from plugins.bitrix24.sandbox.protocol import CUT_HEADER


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EmulatorHTTPServer

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self) -> None:
        body = self._read_body()
        portal: Portal = self.server.emulator
        status, headers, payload = portal.handle_http(
            self.command, self.path, body, self.headers.get("Content-Type", ""), self.client_address[0])
        drop = headers.pop(CUT_HEADER, None) == "drop"
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if drop:  # half the promised bytes, then the connection closes (Portal.cut_answers)
            self.wfile.write(payload[: len(payload) // 2])
            self.close_connection = True
            return
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class SandboxServer:
    """Serves a `Portal` over plain HTTP from a background thread; use as a context manager.

    ``with SandboxServer(portal) as server: requests.get(server.webhook_url + "profile")``
    """

    def __init__(self, portal: Portal, host: str = "127.0.0.1", port: int = 0) -> None:
        self.portal = portal
        self._server = BackgroundServer(_RequestHandler, host=host, port=port, emulator=portal,
                                        name="bitrix24-sandbox", backlog=256)
        self.host, self.port = self._server.host, self._server.port
        portal.bind_address(self.base_url)

    @property
    def base_url(self) -> str:
        return self._server.base_url

    @property
    def webhook_url(self) -> str:
        """The default incoming webhook, e.g. http://127.0.0.1:PORT/rest/1/CODE/."""
        return self.base_url + self.portal.webhook.path

    def webhook_url_for(self, hook: Webhook) -> str:
        return self.base_url + hook.path

    @property
    def oauth_app(self) -> OAuthAppInfo:
        return self.portal.app_info()

    @property
    def stats_url(self) -> str:
        return f"{self.base_url}/_sandbox/stats"

    def start(self) -> SandboxServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        self.portal.close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(host: str = "127.0.0.1", port: int = 8024, contacts: int = 1000, seed: int = 1, *,
          first_person: int = 0, plan: str = "standard", latency: float = 0.0,
          print_fn: Callable[[str], None] | None = None, **portal_options: Any) -> None:
    """Build a portal, serve it until interrupted, and print how to reach it.

    Lines are flushed at once so a benchmark reading our stdout through a pipe
    sees the webhook URL while the server runs.
    """
    if print_fn is None:
        def print_fn(line: str) -> None:
            print(line, flush=True)
    started = time.monotonic()
    portal = Portal(contacts, seed, first_person, plan=plan, latency=latency, **portal_options)
    server = SandboxServer(portal, host, port).start()
    app = server.oauth_app
    print_fn(_("Bitrix24 sandbox: %(contacts)s contacts, %(deals)s deals (seed %(seed)s, built in %(seconds)s s)",
               contacts=format_number(portal.contact_count), deals=format_number(portal.deal_count), seed=seed,
               seconds=format_number(round(time.monotonic() - started, 1))))
    print_fn(_("               %(companies)s companies, %(activities)s calls, meetings, e-mails and tasks",
               companies=format_number(portal.company_count), activities=format_number(portal.activity_count)))
    print_fn(_("Webhook:       %(url)s", url=server.webhook_url))
    print_fn(_("OAuth app:     client_id=%(id)s client_secret=%(secret)s", id=app.client_id, secret=app.client_secret))
    print_fn(_("               authorize %(authorize)s  token %(token)s", authorize=app.authorize_url,
               token=app.token_url))
    print_fn(_("Stats:         %(url)s", url=server.stats_url))
    print_fn("")
    print_fn(_("Leave this command running (or start it with & at the end) and run, in the folder with Hub's "
               "settings:"))
    print_fn("  " + connect_command(server))
    print_fn(_("then: hub sync bitrix24. To stop the sandbox: Ctrl+C, or kill %(pid)s if it runs in the background.",
               pid=os.getpid()))
    serve_until_interrupted(server.stop)


def connect_command(server: SandboxServer) -> str:
    """`hub connect bitrix24 …` that connects Hub to this portal, ready to paste into a shell.

    A portal listening on every interface (0.0.0.0) is reached at 127.0.0.1.
    """
    url = server.webhook_url
    for wildcard in ("//0.0.0.0:", "//[::]:"):
        url = url.replace(wildcard, "//127.0.0.1:", 1)
    return f"hub connect bitrix24 --webhook {shlex.quote(url)}"


def start_connected(settings: Any, *, people: int, first_person: int = 0, seed: int = 1) -> Any:
    """Start a portal with these sample people and store a webhook connection to it (for `hub demo`)."""
    from hub.api import RunningSandbox, get_engine
    from plugins.bitrix24 import connection

    portal = Portal(contacts=people, seed=seed, first_person=first_person)
    server = SandboxServer(portal).start()
    connection.save(get_engine(settings.database_url), settings, {"kind": "webhook", "url": server.webhook_url})
    return RunningSandbox("bitrix24", lambda: {str(c): p for c, p in portal.contact_person.items()}, server.stop)

