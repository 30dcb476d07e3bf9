"""Where a webhook may point, and a POST that cannot be turned against Hub's own network or outlast its lease.

A webhook URL is typed by a person, so without a check it is a way to make
Hub's server send requests inside its own network: a cloud metadata service
(169.254.169.254), Redis on 127.0.0.1:6379, an admin page on 10.0.0.5. As
GitLab, Mattermost and Discourse do, Hub refuses:

- always: link-local (169.254/16 with the metadata address, fe80::/10),
  unspecified (0.0.0.0, ::), multicast and reserved addresses;
- unless the setting `webhooks_allow_private` (HUB_WEBHOOKS_ALLOW_PRIVATE=1)
  is on: loopback (127/8, ::1), private ranges (10/8, 172.16/12,
  192.168/16, fc00::/7) and shared address space (100.64/10) — a receiver on
  the same machine or the office network.

The check runs twice. When a webhook is added, its host is resolved and
every address it resolves to must pass (`check_url`), so a person learns at
once. When a delivery connects, the address the socket actually connected
to is checked before a single byte is sent (`GuardedAdapter`): a host whose
DNS answer changed since (DNS rebinding), or a redirect, cannot reach a
refused address. Checking the connected peer, rather than resolving first and
connecting to that IP, keeps TLS certificate checks and SNI exactly as
requests does them. Proxies from the environment are not used: the peer
would be the proxy, not the receiver.

An attempt also has one deadline for everything (connect, send, the answer's
headers and the few bytes read of its body): requests' timeout counts per
socket operation, so a receiver trickling a byte every few seconds would
hold the attempt past its lease and have the delivery sent twice. When the
deadline passes, the attempt's sockets are shut down, which ends any read in
progress.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from hub.config import Settings

SETTING = "webhooks_allow_private"
ENV = "HUB_WEBHOOKS_ALLOW_PRIVATE"

_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: inside someone's network


def allow_private(settings: Settings) -> bool:
    """Whether the setting lets webhooks point at loopback and private addresses (off by default)."""
    value = settings.extra.get(SETTING)
    if isinstance(value, bool):
        return value
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")


def refusal(address: str, allow_private: bool) -> str | None:
    """Why a webhook may not connect to `address` ("always" or "private"), or None when it may."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "always"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_link_local or ip.is_unspecified or ip.is_multicast:
        return "always"
    if ip.is_loopback:  # before `reserved`: ::1 lies in the reserved ::/8
        return None if allow_private else "private"
    if ip.is_reserved:
        return "always"
    if ip.is_private or ip in _SHARED or not ip.is_global:
        return None if allow_private else "private"
    return None


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (an IP literal is its own); OSError when it does not resolve."""
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


# --- the guarded POST ----------------------------------------------------------------------

class Guard:
    """One attempt's rules: which addresses it may reach, and the moment it must be over."""

    def __init__(self, allow_private: bool, total_s: float) -> None:
        self.allow_private = allow_private
        self.deadline = time.monotonic() + total_s
        self.refused: str | None = None  # "always" / "private" once a connection was refused
        self.expired = False
        self.private_peer = False  # connected to a loopback or private address (allowed by the setting)
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(total_s, self._expire)
        self._timer.daemon = True

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def admit(self, sock: socket.socket) -> None:
        """Check the connected peer; raise OSError (and remember why) when it is refused."""
        peer = sock.getpeername()[0]
        why = refusal(peer, self.allow_private)
        if why is not None:
            self.refused = why
            raise OSError("the receiver's address is refused")
        if refusal(peer, False) is not None:
            self.private_peer = True
        with self._lock:
            if self.expired:
                raise OSError("the attempt's deadline has passed")
            self._sockets.append(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # ends a read in progress in the attempt's thread
                except OSError:
                    pass

    def __enter__(self) -> "Guard":
        self._timer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._timer.cancel()


_current = threading.local()


def _guard() -> Guard:
    guard = getattr(_current, "guard", None)
    if guard is None:
        raise OSError("a webhook connection outside guarded()")
    return guard


@contextmanager
def guarded(guard: Guard) -> Iterator[Guard]:
    """Make `guard` the rules of the connections this thread opens while inside."""
    _current.guard = guard
    try:
        with guard:
            yield guard
    finally:
        _current.guard = None


class _Checked:
    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        try:
            _guard().admit(sock)
        except OSError:
            sock.close()
            raise
        return sock


class _CheckedHTTPConnection(_Checked, HTTPConnection):
    pass


class _CheckedHTTPSConnection(_Checked, HTTPSConnection):
    pass


class _CheckedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _CheckedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """requests' adapter whose connections check their peer against the current Guard before sending."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _CheckedHTTPPool, "https": _CheckedHTTPSPool}
