"""The account over HTTP: a background server that stamps each request with when it arrived, and ways to run it."""

from __future__ import annotations

import gc
import io
import os
import shlex
import socket
import struct
import sys
import time
from http.server import BaseHTTPRequestHandler
from typing import Any, Self, TextIO

from hub.api import BackgroundServer, EmulatorHTTPServer, format_number, serve_until_interrupted
from hub.api import gettext as _
from plugins.amocrm.sandbox.account import Account

# Linux reports, with each read, when the kernel received the bytes (CLOCK_REALTIME, the clock of time.time).
_SO_TIMESTAMPNS: int | None = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform.startswith("linux") else None)
_TIMESPEC = struct.Struct("@qq")
_ANCILLARY_SPACE = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0


class _StampedReader(io.RawIOBase):
    """A connection's incoming bytes, with the time the kernel received those of the latest read.

    This is when a request really arrived, whatever the emulator was doing:
    a thread serializing a large page, a garbage collection or another
    process on the same cores delays when Python reads the request, not
    when it arrived. `received_at` is None when the kernel gave no time.
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock
        self.received_at: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size, ancillary, _flags, _address = self._sock.recvmsg_into([buffer], _ANCILLARY_SPACE)
        self.received_at = None
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
                seconds, nanoseconds = _TIMESPEC.unpack_from(data)
                self.received_at = seconds + nanoseconds / 1e9
        return size


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EmulatorHTTPServer
    _arrived: float | None = None
    _stamps: _StampedReader | None = None

    @property
    def account(self) -> Account:
        account: Account = self.server.emulator
        return account

    def setup(self) -> None:
        super().setup()
        # Kernel receive times are wall-clock times: usable only when the account runs on the wall clock.
        if self.account.clock is not time.time or _SO_TIMESTAMPNS is None or not _ANCILLARY_SPACE:
            return
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        except OSError:
            return
        self.rfile.close()
        self._stamps = _StampedReader(self.connection)
        self.rfile = io.BufferedReader(self._stamps)

    def parse_request(self) -> bool:
        # The rate limit counts a request when it arrived: when the kernel
        # received the request line, if it reports that, else now, with the
        # line just read, before the headers are parsed or this thread waits
        # behind another.
        received = self._stamps.received_at if self._stamps is not None else None
        self._arrived = received if received is not None else self.account.clock()
        return super().parse_request()

    def _serve(self) -> None:
        arrived = self._arrived if self._arrived is not None else self.account.clock()
        self._arrived = None
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        account = self.account
        host = self.headers.get("Host") or "{}:{}".format(*self.server.socket.getsockname()[:2])
        is_sandbox_route = self.path.startswith("/_sandbox/")
        if not is_sandbox_route:
            account._enter()
        try:
            response = account.handle(self.command, self.path, headers=dict(self.headers.items()), body=body,
                                      client=self.client_address[0], base_url=f"http://{host}", arrived=arrived)
            if account.latency and not is_sandbox_route:
                time.sleep(account.latency)
        finally:
            if not is_sandbox_route:
                account._leave()
        body = response.body
        cut = account._take_cut(self.path) if account._cuts and not is_sandbox_route and body else None
        if cut == "truncate":
            body = body[: len(body) // 2]
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.status != 204:
            if response.content_type:
                self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Server", "nginx")
        self.end_headers()
        if cut == "drop":  # half the promised bytes, then the connection closes (Account.cut_answers)
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        if response.status != 204 and body:
            self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

    def log_message(self, format: str, *args: Any) -> None:
        return


class SandboxServer:
    """Serves an `Account` over plain HTTP on a background thread.

    `with SandboxServer(account, port=0) as server:` binds a free port;
    `server.base_url` is what a client uses in place of https://SUBDOMAIN.amocrm.ru.
    """

    def __init__(self, account: Account, host: str = "127.0.0.1", port: int = 0) -> None:
        self.account = account
        self._host = host
        self._port = port
        self._server: BackgroundServer | None = None

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the server is not running")
        return self._server.base_url

    @property
    def client_id(self) -> str:
        return self.account.integration.client_id

    @property
    def client_secret(self) -> str:
        return self.account.integration.client_secret

    @property
    def redirect_uri(self) -> str:
        return self.account.integration.redirect_uri

    def start(self) -> Self:
        self._server = BackgroundServer(_Handler, host=self._host, port=self._port, emulator=self.account,
                                        name="amocrm-sandbox")
        self.account.base_url = self.base_url
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def settle_heap() -> None:
    """Take the seeded account out of the garbage collector's full passes; for a dedicated process only.

    An account of 100,000 contacts and their leads is a few million
    long-lived objects. Every full (generation 2) collection walks all of
    them and holds the GIL for about half a second, and the rendering of
    pages triggers one every 20-40 s. Nothing is read or answered during the
    pause: answers come half a second late, and where the kernel gives no
    receive times (not Linux) requests sent meanwhile are stamped when it
    ends, bunched with the next ones, so the rate limit refuses requests a
    client spaced correctly (measured: 4-6 such 429s in a full sync of 800
    pages). A real service does not stall like that. `gc.freeze` moves
    every object alive now to a generation that is never collected, which
    is right for data that lives as long as the process, and wrong for a
    process that goes on to do other things (a test run): call it only
    where the emulator is the whole process, once seeding is done.
    """
    gc.collect()
    gc.freeze()


def serve(
    host: str = "127.0.0.1",
    port: int = 8025,
    contacts: int = 1_000,
    seed: int = 1,
    *,
    first_person: int = 0,
    latency: float = 0.0,
    customers_enabled: bool = False,
    out: TextIO | None = None,
    b2b: bool = False,
    companies: int | None = None,
    activities: int | None = None,
) -> None:
    """Run a seeded account until interrupted, printing how to connect to it."""
    out = out or sys.stdout
    account = Account(contacts=contacts, seed=seed, first_person=first_person, latency=latency,
                      customers_enabled=customers_enabled, b2b=b2b, companies=companies, activities=activities)
    settle_heap()
    with SandboxServer(account, host, port) as server:
        long_lived = account.issue_long_lived_token()
        code = account.issue_authorization_code()
        print(_("amoCRM sandbox: %(url)s (%(contacts)s contacts, %(leads)s leads)", url=server.base_url,
                contacts=format_number(account.contacts_count), leads=format_number(account.leads_count)), file=out)
        print(_("               %(companies)s companies, %(activities)s calls and tasks",
                companies=format_number(account.companies_count),
                activities=format_number(account.activities_count)), file=out)
        print(f"client_id:        {server.client_id}", file=out)
        print(f"client_secret:    {server.client_secret}", file=out)
        print(f"redirect_uri:     {server.redirect_uri}", file=out)
        print(_("long-lived token: %(token)s", token=long_lived), file=out)
        print(_("auth code (20 min, single use): %(code)s", code=code), file=out)
        print(_("stats:            %(url)s", url=f"{server.base_url}/_sandbox/stats"), file=out)
        print("", file=out)
        print(_("Leave this command running (or start it with & at the end) and run, in the folder with Hub's "
                "settings (the code works once, within 20 minutes):"), file=out)
        print("  " + connect_command(server, code=code), file=out)
        print(_("or, at any time, with the long-lived token (never refreshed):"), file=out)
        print("  " + connect_command(server, long_lived_token=long_lived), file=out)
        print(_("then: hub sync amocrm. To stop the sandbox: Ctrl+C, or kill %(pid)s if it runs in the background.",
                pid=os.getpid()), file=out)
        out.flush()
        serve_until_interrupted(account.close)


def connect_command(server: SandboxServer, *, code: str | None = None, long_lived_token: str | None = None) -> str:
    """`hub connect amocrm …` that connects Hub to this account, ready to paste into a shell.

    With `code`, the OAuth flow a real integration uses: the account's
    address, the integration's keys and redirect URI, and an authorization
    code (single use, 20 minutes), after which Hub refreshes the tokens
    itself. With `long_lived_token`, a private integration's token. An
    account listening on every interface (0.0.0.0) is reached at 127.0.0.1.
    """
    base_url = server.base_url
    for wildcard in ("//0.0.0.0:", "//[::]:"):
        base_url = base_url.replace(wildcard, "//127.0.0.1:", 1)
    args = ["hub", "connect", "amocrm", "--base-url", base_url]
    if long_lived_token is not None:
        args += ["--long-lived-token", long_lived_token]
    else:
        args += ["--client-id", server.client_id, "--client-secret", server.client_secret,
                 "--redirect-uri", server.redirect_uri, "--code", code or server.account.issue_authorization_code()]
    return shlex.join(args)


def start_connected(settings: Any, *, people: int, first_person: int = 0, seed: int = 1) -> Any:
    """Start an account with these sample people and connect Hub to it through the OAuth code flow."""
    from hub.api import RunningSandbox
    from plugins.amocrm import commands, tokens

    account = Account(contacts=people, seed=seed, first_person=first_person)
    server = SandboxServer(account).start()
    data = tokens.exchange_code(server.base_url, server.client_id, server.client_secret, server.redirect_uri,
                                account.issue_authorization_code())
    commands.connect(settings, data)

    def truth() -> dict[str, int]:
        found = {str(cid): account.person_id(cid) for cid in account.contact_ids()}
        return {cid: person for cid, person in found.items() if person is not None}

    def close() -> None:
        server.stop()
        account.close()

    return RunningSandbox("amocrm", truth, close)


if __name__ == "__main__":  # pragma: no cover - manual runs
    serve(port=int(os.environ.get("PORT", "8025")))
