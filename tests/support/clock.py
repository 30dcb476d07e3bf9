"""The tests' clock for code that reads seconds (`time.time`/`time.monotonic`-like) and sleeps.

Time stands still until a test moves it, so rate limits, expiry and back-off are
tested without sleeping and without depending on how busy the machine is. Code
that reads Hub's datetime clock (`hub.db.utcnow`) is moved with the `hub_clock`
fixture of hub.testing instead.
"""

from __future__ import annotations

import threading

START = 1_750_000_000.0  # 2025-06-15, an ordinary moment in the past


class ManualClock:
    """Seconds that move only by `advance` or `sleep`: pass it as `clock=`, and `clock.sleep` as `sleep=`."""

    def __init__(self, start: float = START) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> float:
        with self._lock:
            self.now += seconds
            return self.now

    def sleep(self, seconds: float) -> None:
        """What waiting does on this clock: time passes at once."""
        self.advance(seconds)
