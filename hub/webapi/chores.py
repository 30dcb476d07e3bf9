"""The API's recurring chore: forgetting answers kept for Idempotency-Keys once their 24 hours are over."""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable

from hub.config import Settings
from hub.hookspecs import hookimpl
from hub.i18n import N_
from hub.schedule import Schedule, ScheduledRun
from hub.webapi import idempotency


def prune_kept_answers(run: ScheduledRun) -> dict[str, int]:
    with run.engine.begin() as conn:
        return {"forgotten": idempotency.prune(conn, now=run.now)}


@hookimpl
def register_schedules(register: Callable[[str, Any], None], settings: Settings) -> None:
    register("api_idempotency", Schedule(dt.timedelta(hours=1), prune_kept_answers,
                                         N_("forget the API's answers kept for Idempotency-Keys after 24 hours"),
                                         N_("API housekeeping")))
