"""What the machines of tests/test_deploy_workers.py run besides Hub itself.

- A plugin file (copied into each `hub scheduler`'s plugins_dir): a schedule
  that tells the test's counter server which scheduler ran it, every
  PROBE_EVERY_S seconds, so the test counts the runs from outside.
"""

from __future__ import annotations

import datetime as dt
import os
import urllib.request
from typing import Any, Callable

from hub.api import Schedule, ScheduledRun, hookimpl

PROBE_EVERY_S = 2.0


@hookimpl
def register_schedules(register: Callable[[str, Any], None], settings: Any) -> None:
    url = str(settings.extra["probe_url"])

    def ping(run: ScheduledRun) -> dict[str, int]:
        with urllib.request.urlopen(f"{url}/{os.getpid()}", timeout=10) as answer:
            answer.read()
        return {"pinged": 1}

    register("probe", Schedule(dt.timedelta(seconds=PROBE_EVERY_S), ping, "tell the test's counter"))
