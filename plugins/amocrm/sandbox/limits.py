"""What the account does to its traffic: the rate limit, blocking, answers cut off on purpose, and the counts."""

from __future__ import annotations

import bisect
import re
from collections import deque
from typing import Any
from urllib.parse import urlsplit

from plugins.amocrm.sandbox.state import AccountState

RATE_LIMIT = 7                        # requests per second per integration
ABUSE_THRESHOLD = 20                  # 429s within ABUSE_WINDOW that get the account blocked
ABUSE_WINDOW = 10.0
ADMITTED_KEPT_S = 5.0                 # arrival times kept for the rate limit (longer than any request waits)
BLOCK_SECONDS = 60.0


def _nginx_page(status: str, message: str = "") -> bytes:
    extra = f"<center>{message}</center>\r\n" if message else ""
    return (
        f"<html>\r\n<head><title>{status}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status}</h1></center>\r\n{extra}<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()


TOO_MANY_REQUESTS_PAGE = _nginx_page("429 Too Many Requests")
BLOCKED_PAGE = _nginx_page("403 Forbidden", "Account blocked: too many requests")


class Limits(AccountState):
    """Rate limit and blocking, faults on demand, request statistics (part of `Account`)."""

    def block(self, seconds: float | None = None) -> None:
        """Block the account now, as repeated limit violations would."""
        with self._lock:
            self._blocked_until = self.clock() + (self.block_seconds if seconds is None else seconds)

    def _admit(self, key: str, arrived: float | None = None) -> bool:
        """At most `rate_limit` admitted requests in any one second of arrival times; a refused one takes no slot.

        Requests are counted when they arrived (the server passes the time the
        kernel received them when it can), not when a busy emulator thread
        got round to them, as a gateway in front of the real API counts them.
        Threads may take requests out of arrival order, so a request is
        checked against every one-second span it would fall in, including
        those ending at requests admitted already that arrived after it.
        """
        if self.rate_limit is None:
            return True
        now = self.clock() if arrived is None else arrived
        window = self._admitted.setdefault(key, deque())
        while window and window[0] <= self.clock() - ADMITTED_KEPT_S:
            window.popleft()
        ends = [now, *(t for t in window if now < t < now + 1.0)]
        if any(sum(1 for t in window if end - 1.0 < t <= end) >= self.rate_limit for end in ends):
            self._rejections.append(now)
            while self._rejections and self._rejections[0] <= now - self.abuse_window:
                self._rejections.popleft()
            if self.abuse_threshold is not None and len(self._rejections) >= self.abuse_threshold:
                self._blocked_until = now + self.block_seconds
                self._rejections.clear()
            return False
        bisect.insort(window, now)
        return True

    # -- stats --------------------------------------------------------------

    def _count_request(self, method: str, path: str) -> None:
        normalized = re.sub(r"/\d+(?=/|$)", "/{id}", path)
        with self._stats_lock:
            self._stats["requests"] += 1
            self._by_path[f"{method} {normalized}"] += 1

    def _count_status(self, status: int) -> None:
        with self._stats_lock:
            self._by_status[str(status)] += 1
            if status == 429:
                self._stats["too_many_requests"] += 1
            elif status == 403:
                self._stats["blocked"] += 1
            elif status == 401:
                self._stats["unauthorized"] += 1

    def _enter(self) -> None:
        with self._stats_lock:
            self._in_flight += 1
            self._stats["max_in_flight"] = max(self._stats["max_in_flight"], self._in_flight)

    def _leave(self) -> None:
        with self._stats_lock:
            self._in_flight -= 1

    def stats(self) -> dict[str, Any]:
        """Counters for benchmarks: requests, per path and status, 429s, 403s, 401s, refreshes, webhooks."""
        with self._stats_lock:
            counters = dict(self._stats)
            snapshot: dict[str, Any] = {
                "requests": counters.get("requests", 0),
                "too_many_requests": counters.get("too_many_requests", 0),
                "blocked": counters.get("blocked", 0),
                "unauthorized": counters.get("unauthorized", 0),
                "refreshes": counters.get("refreshes", 0),
                "refresh_attempts": counters.get("refresh_attempts", 0),
                "codes_exchanged": counters.get("codes_exchanged", 0),
                "max_in_flight": counters.get("max_in_flight", 0),
                "webhooks_sent": counters.get("webhooks_sent", 0),
                "webhooks_failed": counters.get("webhooks_failed", 0),
                "webhooks_dropped": counters.get("webhooks_dropped", 0),
                "webhooks_duplicated": counters.get("webhooks_duplicated", 0),
                "answers_cut": counters.get("answers_cut", 0),
                "by_path": dict(self._by_path),
                "by_status": dict(self._by_status),
            }
        snapshot["contacts"] = self.contacts_count
        snapshot["leads"] = self.leads_count
        return snapshot

    def reset_stats(self) -> None:
        with self._stats_lock:
            self._stats.clear()
            self._by_path.clear()
            self._by_status.clear()

    # -- faults -------------------------------------------------------------

    def cut_answers(self, count: int = 1, *, path: str | None = None, mode: str = "drop") -> None:
        """Cut the next `count` API answers (to paths starting with `path`, when given) off mid-body.

        Answers break off now and then (a balancer restarts, a connection is
        reset). "drop" sends the headers with the whole Content-Length and
        half the body, then closes the connection; "truncate" sends half the
        body as if it were all of it (a proxy that cut it short). The request
        is carried out either way: only its answer is lost.
        """
        if mode not in ("drop", "truncate"):
            raise ValueError("mode must be 'drop' or 'truncate'")
        with self._stats_lock:
            self._cuts += [(path, mode)] * count

    def _take_cut(self, target: str) -> str | None:
        """The way to cut the answer to `target`, if one is due (see cut_answers)."""
        route = urlsplit(target).path
        with self._stats_lock:
            for i, (prefix, mode) in enumerate(self._cuts):
                if prefix is None or route.startswith(prefix):
                    del self._cuts[i]
                    self._stats["answers_cut"] += 1
                    return mode
        return None


