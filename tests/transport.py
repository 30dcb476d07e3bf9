"""Where webhook-triggered jobs run in a test: in this process, or on Redis with a real RQ worker.

Receivers behave differently on the two paths (RQ refuses some job ids, pickles
arguments, runs jobs later), so their tests run on both.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from redis import Redis

from hub import queue
from hub.config import Settings

TRANSPORTS = ["in-process", "rq"]


@dataclass
class Transport:
    name: str
    settings: Settings

    def run_jobs(self) -> None:
        """Run every job enqueued so far: a burst RQ worker on Redis, else wait for the background thread."""
        if self.settings.redis_url:
            queue.work(self.settings, queue.DEFAULT_QUEUES, burst=True, simple=True)
            failed = {name: q["failed"] for name, q in queue.health(self.settings)["queues"].items()}
            assert not any(failed.values()), failed
        else:
            queue.drain(timeout=30)


def use_transport(request: pytest.FixtureRequest, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Transport:
    """Point `settings` and the environment (which jobs read in the worker) at the chosen transport."""
    if request.param == "rq":
        url = request.getfixturevalue("redis_url")
        Redis.from_url(url).flushdb()
        monkeypatch.setenv("HUB_REDIS_URL", url)
        return Transport("rq", replace(settings, redis_url=url))
    return Transport("in-process", settings)
