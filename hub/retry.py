"""Trying a request to another system again: which failures are worth it, and how long to wait.

CRM APIs drop connections, time out, answer 5xx and now and then cut an answer
off mid-body (a proxy restarts, a connection is reset, the body is shorter
than its Content-Length). An answer that never arrived whole is as transient
as one that never arrived at all: a read is simply asked again. Each client
decides what else is transient for its API (error codes, statuses) and what
may not be repeated (a write whose outcome is unknown); the waiting, the
counting and the giving up are the same for every client, and live here.
"""

from __future__ import annotations

import http.client
import random
import time
from typing import Callable

import requests
import urllib3.exceptions

from hub.i18n import gettext, ngettext

# The answer started but never arrived whole: the connection broke mid-body, the body
# was shorter than announced, or its compression was corrupt. requests wraps urllib3's
# errors in its own; the unwrapped ones are here for code that reads a raw stream.
CUT_OFF_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.DecodeError,
    http.client.IncompleteRead,
)

# Transport failures another try may cure: no connection, no answer in time, a cut-off answer.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (requests.ConnectionError, requests.Timeout, *CUT_OFF_ERRORS)

BASE_DELAY_S = 0.5
MAX_DELAY_S = 30.0


def is_cut_off(exc: BaseException) -> bool:
    """True when `exc` says an answer began to arrive and then broke off (so the request was received)."""
    return isinstance(exc, CUT_OFF_ERRORS)


def backoff_delay(attempt: int, *, base: float = BASE_DELAY_S, cap: float = MAX_DELAY_S) -> float:
    """Seconds to wait before retry number `attempt + 1`: exponential, capped, with jitter.

    The jitter (50-150%) keeps several workers that failed together from
    coming back together.
    """
    return min(cap, base * 2 ** attempt) * (0.5 + random.random())


def back_off(attempt: int, max_retries: int, reason: str, *, give_up: Callable[[str], BaseException],
             sleep: Callable[[float], None] | None = time.sleep) -> int:
    """Wait before trying again and return the next attempt number, or raise once retries are spent.

    `attempt` counts the retries made so far (0 for the first failure);
    after `max_retries` of them, `give_up` builds the exception to raise
    from `reason` (which must name no secret). `sleep=None` retries at once,
    for callers that have already waited for a reason of their own (a
    server-given reset time).
    """
    if attempt >= max_retries:
        raise give_up(ngettext("%(reason)s; gave up after %(num)s attempt",
                               "%(reason)s; gave up after %(num)s attempts", attempt + 1, reason=reason))
    if sleep is not None:
        sleep(backoff_delay(attempt))
    return attempt + 1


class Retries:
    """The retries one request has left, for a client's request loop.

    A request loop meets several kinds of failure worth another try (no
    connection, a 5xx, a cut-off answer, an API's own "busy" code) and must
    count them together against one `max_retries`; this keeps that count so
    the loop only says why it tries again. `on_retry` runs after each wait
    (a client's statistics), never when the retries are spent.
    """

    def __init__(self, max_retries: int, *, give_up: Callable[[str], BaseException],
                 sleep: Callable[[float], None] | None = time.sleep,
                 on_retry: Callable[[], None] | None = None) -> None:
        self.max_retries = max_retries
        self.give_up = give_up
        self.sleep = sleep
        self.on_retry = on_retry
        self.attempt = 0

    def again(self, reason: str, *, wait: bool = True) -> None:
        """Wait (unless `wait` is False: the caller already waited for a reason of its own) or give up."""
        self.attempt = back_off(self.attempt, self.max_retries, reason, give_up=self.give_up,
                                sleep=self.sleep if wait else None)
        if self.on_retry is not None:
            self.on_retry()


class TimedRetries:
    """One request's retries, bounded by their count (Retries) and by the time they take (`budget` seconds).

    A portal that accepts connections and never answers would otherwise hold
    a sync for count × timeout. The time is read from `clock` and the waits
    go through `sleep`, so a test's manual clock drives both; a wait that
    would end past the budget is not waited: the request gives up at once.
    `give_up(reason, silent, attempts, seconds)` makes the error: `silent`
    is the last failure when the other side never answered at all (no
    connection, no answer in time), so the client can say what to check.
    """

    def __init__(self, max_retries: int, *, budget: float, clock: Callable[[], float],
                 sleep: Callable[[float], None],
                 give_up: Callable[[str, BaseException | None, int, int], BaseException],
                 on_retry: Callable[[], None] | None = None) -> None:
        self.budget = budget
        self.clock = clock
        self.started = clock()
        self.silent: BaseException | None = None
        self._sleep_with = sleep
        self._make_error = give_up
        self.retries = Retries(max_retries, give_up=self._give_up, sleep=self._sleep, on_retry=on_retry)

    @property
    def attempt(self) -> int:
        return self.retries.attempt

    def left(self) -> float:
        return self.budget - (self.clock() - self.started)

    def timeout(self, configured: float | tuple[float, float]) -> tuple[float, float]:
        """(connect, read) timeouts, the read cut to what is left of the budget (but to no less than a second)."""
        connect, read = configured if isinstance(configured, tuple) else (configured, configured)
        return connect, min(read, max(1.0, self.left()))

    def again(self, reason: str, *, silent: BaseException | None = None, wait: bool = True) -> None:
        """Wait and try again, or raise the client's error; `silent` when there was no answer at all."""
        self.silent = silent
        self.retries.again(reason, wait=wait)

    def _sleep(self, seconds: float) -> None:
        if seconds >= self.left():
            raise self._give_up(ngettext("out of retry time after %(num)s attempt",
                                         "out of retry time after %(num)s attempts", self.attempt + 1))
        self._sleep_with(seconds)

    def _give_up(self, reason: str) -> BaseException:
        spent = max(0, round(self.clock() - self.started))
        return self._make_error(reason, self.silent, self.attempt + 1, spent)


def no_answer(exc: BaseException) -> str:
    """Why a request got no answer, in words: refused, timed out, or silent."""
    if isinstance(exc, requests.ConnectTimeout):
        return gettext("no connection in time")
    if isinstance(exc, requests.Timeout):
        return gettext("no answer in time")
    return gettext("could not connect")
