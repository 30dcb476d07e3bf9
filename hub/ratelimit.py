"""Rate limits that hold across threads, and across processes when Redis is configured.

CRMs throttle by a leaky bucket (Bitrix24: 2 requests/s drained, 50 in a
burst) or a flat rate (amoCRM: 7/s), and mail relays by messages per second.
Each is the same generic cell rate algorithm (GCRA): a request may start
when the bucket's "theoretical arrival time" is no more than ``burst - 1``
intervals ahead of now. Waiting on our side is cheap; a 503 or 429 from the
other side costs a retry and, on amoCRM, risks a block.

With HUB_REDIS_URL set the bucket lives in Redis (one Lua call per request,
using Redis's own clock), so every worker on every host shares it; otherwise
it lives in this process and its threads share it.

A server that counts "N in any second" on arrival needs more than pacing:
`SendWindow` stamps each request when its bytes are written, so no N+1
requests ever leave within one window (amoCRM: 7 per second).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable, Protocol

from hub.config import Settings


class Limiter(Protocol):
    rate: float
    burst: int

    def acquire(self, cost: int = 1) -> float:
        """Block until `cost` requests may start; return the seconds waited."""

    def delay(self, cost: int = 1) -> float:
        """Take `cost` slots if they are free now and return 0, else return how long to wait (take nothing)."""


class _Bucket:
    _sleep: Callable[[float], None]

    def delay(self, cost: int = 1) -> float:
        raise NotImplementedError

    def acquire(self, cost: int = 1) -> float:
        """Block until `cost` requests may start; return the seconds waited."""
        waited = 0.0
        while (wait := self.delay(cost)) > 0:
            self._sleep(wait)
            waited += wait
        return waited


class LocalBucket(_Bucket):
    """A leaky bucket shared by the threads of one process."""

    def __init__(self, rate: float, burst: int = 1, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a rate limit needs rate > 0 and burst >= 1 (got rate={rate}, burst={burst})")
        self.rate = rate
        self.burst = burst
        self._interval = 1.0 / rate
        self._tat = 0.0
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    def delay(self, cost: int = 1) -> float:
        """Take `cost` slots if they are free now and return 0, else return how long to wait."""
        with self._lock:
            now = self._clock()
            tat = max(self._tat, now)
            allowed_at = tat + (cost - self.burst) * self._interval
            if allowed_at - now > 1e-9:  # not a float rounding artefact
                return allowed_at - now
            self._tat = tat + cost * self._interval
            return 0.0


# KEYS[1] bucket key; ARGV: interval (µs), burst, cost. Returns µs to wait (0: taken).
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local allowed_at = tat + (cost - burst) * interval
if allowed_at > now then return allowed_at - now end
local new_tat = tat + cost * interval
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return 0
"""


class RedisBucket(_Bucket):
    """The same bucket kept in Redis, so all workers on all hosts draw from one."""

    def __init__(self, redis: Any, key: str, rate: float, burst: int = 1, *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a rate limit needs rate > 0 and burst >= 1 (got rate={rate}, burst={burst})")
        self.rate = rate
        self.burst = burst
        self.key = f"hub:ratelimit:{key}"
        self._interval_us = int(1_000_000 / rate)
        self._script = redis.register_script(_GCRA)
        self._sleep = sleep

    def delay(self, cost: int = 1) -> float:
        return int(self._script(keys=[self.key], args=[self._interval_us, self.burst, cost])) / 1_000_000


class SendWindow:
    """At most `limit` requests leave in any `window` seconds, each stamped when its bytes are written.

    A stamp taken before sending is early by whatever happens between it and
    the socket: building the request, waiting for the GIL while another
    thread decodes a page or the main thread stores one, the OS running
    another process. Measured in full syncs with one core kept busy: up to
    160 ms, so eight requests stamped a full window apart could leave well
    within one second. So a request takes a place (`reserve`) just before it is sent
    and every other request waits until the connection has written it
    (`Place.sent`); its stamp is the moment after the write, never earlier
    than the real one. For any eight consecutive requests, the eighth
    therefore left at least `window` seconds after the first.

    The wait between a place and its write is normally under a millisecond;
    a transport that does not report the write (a SOCKS proxy, a test's mock
    adapter) is still kept inside the limit, only slower: the place is then
    stamped and released when the answer is back.
    """

    def __init__(self, limit: int, window: float = 1.0, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if limit < 1 or window <= 0:
            raise ValueError(f"a send window needs limit >= 1 and window > 0 (got {limit}, {window})")
        self.limit = limit
        self.window = window
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()  # guards _sent
        self._turn = threading.Lock()  # held from a place being granted until its request is written
        self._clock = clock
        self._sleep = sleep

    def reserve(self) -> Place:
        """Wait for a place and hold every other sender back until it is `sent` or `cancel`led."""
        self._turn.acquire()
        try:
            while True:
                with self._lock:
                    now = self._clock()
                    while self._sent and self._sent[0] <= now - self.window:
                        self._sent.popleft()
                    if len(self._sent) < self.limit:
                        return Place(self)
                    wait = self._sent[0] + self.window - now
                self._sleep(wait)
        except BaseException:
            self._turn.release()
            raise

    def sent_times(self) -> list[float]:
        """The stamps still inside the window (for tests and diagnostics)."""
        with self._lock:
            return list(self._sent)

    def _settle(self, sent: bool) -> None:
        if sent:
            with self._lock:
                self._sent.append(self._clock())
        self._turn.release()


class Place:
    """One request's turn in a SendWindow: `sent` once its bytes are out, or `cancel` if it never goes."""

    def __init__(self, window: SendWindow) -> None:
        self._window = window
        self.settled = False

    def sent(self) -> None:
        """Stamp the send now and let the next request have a place; later calls do nothing."""
        if not self.settled:
            self.settled = True
            self._window._settle(True)

    def cancel(self) -> None:
        """The request was not sent: give the place back without a stamp."""
        if not self.settled:
            self.settled = True
            self._window._settle(False)


_local: dict[tuple[str, float, int], LocalBucket] = {}
_local_lock = threading.Lock()


def limiter(settings: Settings, key: str, rate: float, burst: int = 1) -> Limiter:
    """The bucket called `key`: in Redis when configured, else one per process for that key."""
    if settings.redis_url:
        from hub.queue import redis_connection

        return RedisBucket(redis_connection(settings), key, rate, burst)
    with _local_lock:
        bucket = _local.get((key, rate, burst))
        if bucket is None:
            bucket = _local[(key, rate, burst)] = LocalBucket(rate, burst)
        return bucket
