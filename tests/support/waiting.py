"""Waiting for something another process does, in tests that run real workers and servers."""

from __future__ import annotations

import time
from typing import Any, Callable


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 300) -> Any:
    """Poll until `condition()` is truthy and return it; the generous timeout only stops a broken test."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.05)
