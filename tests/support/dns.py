"""A tiny real DNS server on loopback (UDP) that answers TXT questions from records a test sets.

Queries and answers are real DNS packets built with dnspython's dns.message,
so what `hub mail check` reads went through a resolver exactly as it would
against the shop's DNS host. Unknown names get NXDOMAIN; other types an
empty answer.
"""

from __future__ import annotations

import socket
import threading
from contextlib import contextmanager
from typing import Iterator

import dns.exception
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


def _chunks(text: str) -> list[str]:
    """A TXT value as character-strings of at most 255 octets, as DNS hosts split long DKIM keys."""
    data = text.encode("utf-8")
    return [data[i:i + 255].decode("utf-8", "ignore") for i in range(0, len(data), 255)] or [""]


class DnsServer:
    def __init__(self) -> None:
        self.txt: dict[str, list[str]] = {}  # name (no trailing dot, lower case) -> TXT values
        self.queries: list[str] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="test-dns", daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        self.queries.append(name)
        values = self.txt.get(name)
        if values is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.TXT:
            quoted = [" ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in _chunks(v))
                      for v in values]
            response.answer.append(dns.rrset.from_text_list(question.name, 300, dns.rdataclass.IN,
                                                            dns.rdatatype.TXT, quoted))
        return response.to_wire()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                self._sock.sendto(self._answer(wire), peer)
            except (dns.exception.DNSException, IndexError, ValueError, OSError):
                # A malformed query gets no answer, as from a real server.
                continue

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


@contextmanager
def dns_server() -> Iterator[DnsServer]:
    server = DnsServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def closed_port() -> int:
    """A loopback UDP port nobody listens on: a name server that cannot be reached."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
