"""What the portal does to its traffic: the leaky bucket, the per-method operating limit, cut answers, the counts."""

from __future__ import annotations

import collections
from typing import Any

from plugins.bitrix24.sandbox.state import PortalState

# The REST docs measured a counted crm.lead.list over 2,387,743 rows at 49.9 s of server time.
COUNT_SECONDS_PER_ROW = 49.9 / 2_387_743
PLANS = {"standard": (2.0, 50), "enterprise": (5.0, 250)}  # leaky bucket: drain per second, burst
OPERATING_LIMIT = 480.0  # seconds of server time per method ...
OPERATING_WINDOW = 600.0  # ... within this many seconds


class _Bucket:
    """The leaky bucket: every request adds one, the level drains at a fixed rate."""

    __slots__ = ("level", "last")

    def __init__(self, now: float) -> None:
        self.level = 0.0
        self.last = now

    def take(self, now: float, rate: float, burst: int) -> bool:
        self.level = max(0.0, self.level - max(0.0, now - self.last) * rate)
        self.last = now
        if self.level + 1 > burst:
            return False
        self.level += 1
        return True


class _OperatingMeter:
    """Server time per method in a sliding window; a method over the limit is blocked."""

    def __init__(self, limit: float, window: float) -> None:
        self.limit = limit
        self.window = window
        self._records: dict[str, collections.deque[tuple[float, float]]] = {}
        self._sums: dict[str, float] = {}

    def _prune(self, method: str, now: float) -> None:
        records = self._records.get(method)
        while records and records[0][0] <= now - self.window:
            _, cost = records.popleft()
            self._sums[method] -= cost

    def blocked(self, method: str, now: float) -> bool:
        self._prune(method, now)
        return self._sums.get(method, 0.0) > self.limit

    def add(self, method: str, now: float, cost: float) -> tuple[float, int]:
        self._prune(method, now)
        self._records.setdefault(method, collections.deque()).append((now, cost))
        self._sums[method] = self._sums.get(method, 0.0) + cost
        return self.state(method, now)

    def state(self, method: str, now: float) -> tuple[float, int]:
        """(accumulated seconds, when part of the limit is released) for the method."""
        self._prune(method, now)
        records = self._records.get(method)
        oldest = records[0][0] if records else now
        return round(self._sums.get(method, 0.0), 6), int(oldest + self.window)


class Limits(PortalState):
    """Answers cut off on demand and request statistics (part of `Portal`)."""

    def cut_answers(self, count: int = 1, *, method: str | None = None, mode: str = "drop") -> None:
        """Cut the next `count` REST answers (to `method` only, when given) off mid-body.

        A portal's answers break off now and then (a balancer restarts, a
        connection is reset). "drop" sends the headers with the whole
        Content-Length and half the body, then closes the connection;
        "truncate" sends half the body as if it were all of it (a proxy that
        cut it short). The call itself is carried out either way, as it is on
        the portal: only its answer is lost.
        """
        if mode not in ("drop", "truncate"):
            raise ValueError("mode must be 'drop' or 'truncate'")
        with self._lock:
            self._cuts += [(method, mode)] * count

    def _take_cut(self, method: str) -> str | None:
        with self._lock:
            for i, (wanted, mode) in enumerate(self._cuts):
                if wanted is None or wanted.lower() == method:
                    del self._cuts[i]
                    self._stats["answers_cut"] += 1
                    return mode
        return None

    # ------------------------------------------------------------------ statistics

    def reset_stats(self) -> None:
        with self._lock:
            self._stats: dict[str, Any] = {
                "requests": 0, "methods": collections.Counter(), "batches": 0, "batch_commands": 0,
                "batch_methods": collections.Counter(), "statuses": collections.Counter(),
                "query_limit_exceeded": 0, "operation_time_limit": 0, "token_requests": 0,
                "operating": collections.Counter(), "answers_cut": 0,
            }

    def stats(self) -> dict[str, Any]:
        """Request counts since the last reset: total, per method, batch commands, 503s and 429s."""
        with self._lock:
            stats = self._stats
            deliveries = self.event_deliveries
            return {
                "requests": stats["requests"],
                "methods": dict(stats["methods"]),
                "batches": stats["batches"],
                "batch_commands": stats["batch_commands"],
                "batch_methods": dict(stats["batch_methods"]),
                "statuses": {str(key): value for key, value in stats["statuses"].items()},
                "status_503": stats["statuses"].get(503, 0),
                "status_429": stats["statuses"].get(429, 0),
                "query_limit_exceeded": stats["query_limit_exceeded"],
                "operation_time_limit": stats["operation_time_limit"],
                "token_requests": stats["token_requests"],
                "operating_seconds": {key: round(value, 6) for key, value in stats["operating"].items()},
                "answers_cut": stats["answers_cut"],
                "events_sent": sum(1 for item in deliveries if item.error is None),
                "events_failed": sum(1 for item in deliveries if item.error is not None),
                "contacts": len(self._contacts.rows),
                "deals": len(self._deals.rows),
                "companies": len(self._companies.rows),
                "activities": len(self._activity_rows.rows),
            }

