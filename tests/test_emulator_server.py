"""hub.api.BackgroundServer: the HTTP server every emulator (Hub's and a stranger's) runs on a thread."""

from __future__ import annotations

import socket
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
import requests

from hub.api import BackgroundServer, EmulatorHTTPServer, serve_until_interrupted


class _Counter:
    def __init__(self) -> None:
        self.hits = 0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EmulatorHTTPServer

    def do_GET(self) -> None:
        counter: _Counter = self.server.emulator
        counter.hits += 1
        body = str(counter.hits).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_serves_the_emulator_on_a_free_port_until_stopped():
    counter = _Counter()
    server = BackgroundServer(_Handler, emulator=counter, name="test-emulator")
    assert server.port > 0 and server.base_url == f"http://127.0.0.1:{server.port}"  # known before start()

    with server:
        assert requests.get(server.base_url + "/", timeout=5).text == "1"
        assert requests.get(server.base_url + "/again", timeout=5).text == "2"
        assert server.start() is server  # a second start changes nothing

    assert counter.hits == 2
    with pytest.raises(requests.ConnectionError):
        requests.get(server.base_url + "/", timeout=5)
    server.stop()  # stopping twice is harmless
    with pytest.raises(RuntimeError):
        server.start()


def test_the_port_is_free_again_after_stop():
    server = BackgroundServer(_Handler, emulator=_Counter()).start()
    port = server.port
    server.stop()

    again = BackgroundServer(_Handler, port=port, emulator=_Counter()).start()
    try:
        assert requests.get(again.base_url + "/", timeout=5).text == "1"
    finally:
        again.stop()


def test_a_server_never_started_can_be_stopped():
    server = BackgroundServer(_Handler)
    server.stop()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", server.port))  # the port was released


def test_a_foreground_emulator_is_closed_when_interrupted(monkeypatch: pytest.MonkeyPatch) -> None:
    import hub.sandbox

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt  # what Ctrl+C does to the waiting command

    monkeypatch.setattr(hub.sandbox.time, "sleep", interrupted)
    with BackgroundServer(BaseHTTPRequestHandler, name="interrupted") as server:
        port = server.port
        serve_until_interrupted(server.stop)  # returns instead of raising, having stopped the server
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # the port is free again
