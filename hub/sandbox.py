"""Running emulators: what a plugin's `register_sandboxes` start function returns, and the
background HTTP server every emulator (built-in or not) serves its API from."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Self


@dataclass(frozen=True)
class RunningSandbox:
    """`source` is the source name to sync; `truth()` maps the emulator's contact ids to sample
    person ids (so the demo can prove no two people were merged); `close()` stops it."""

    source: str
    truth: Callable[[], dict[str, int]]
    close: Callable[[], None]


class EmulatorHTTPServer(ThreadingHTTPServer):
    """The standard library's threading server, set up as an emulator needs it.

    A thread per connection that never keeps the process alive, a long
    accept queue (a sync opens several connections at once), a port that can
    be bound again at once, and `emulator`: the object the request handler
    answers from (`self.server.emulator`).
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], emulator: Any = None, *,
                 backlog: int = 128) -> None:
        self.emulator = emulator
        self.request_queue_size = backlog
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up mid-answer (a timeout, a stopped run, a pool closing) is its business,
        as on a real service."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


def serve_until_interrupted(close: Callable[[], None]) -> None:
    """Keep a foreground emulator (`hub sandbox NAME`) serving until Ctrl+C, then `close()` it.

    The servers run on background threads; the command's own thread only waits.
    What the command printed (its URL, the settings to use) is flushed first: read
    through a pipe, it would otherwise wait in the buffer for as long as the emulator runs.
    """
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        close()


class BackgroundServer:
    """Serves `handler` on a background thread until `stop()`; also a context manager.

    The port is bound when the object is made (port 0: any free port), so
    `base_url` is known before `start()`:

        with BackgroundServer(MyHandler, emulator=shop) as server:
            requests.get(server.base_url + "/customers")
    """

    def __init__(self, handler: type[BaseHTTPRequestHandler], *, host: str = "127.0.0.1", port: int = 0,
                 emulator: Any = None, name: str = "emulator", backlog: int = 128) -> None:
        self.httpd = EmulatorHTTPServer((host, port), handler, emulator, backlog=backlog)
        self.name = name
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def host(self) -> str:
        return str(self.httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """http://HOST:PORT, without a trailing slash."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        """Start serving; a second call does nothing."""
        if self._closed:
            raise RuntimeError(f"{self.name}: the server was stopped; make a new one")
        if self._thread is None:
            self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                            name=self.name, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port; safe to call twice, or without `start()`."""
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        if not self._closed:
            self.httpd.server_close()
            self._closed = True

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
