"""The banner on every admin page while the work behind the pages is not being done.

Automations, scheduled campaigns, held letters and syncs move only while
`hub scheduler` runs, and with Redis only while a `hub worker` takes the
queued jobs. Both are processes of their own, so nothing on a page would
otherwise say that they stopped: a marketer switches an automation on and
nothing ever happens. Every admin page therefore says so at the top, to
signed-in users (public pages and the sign-in page never show it).

It is asked on every page, so it costs one query and, with Redis, one look
at Redis, and the answer is kept for CACHE_S seconds per process. Anything
that cannot be read (Redis down, the database away) becomes the banner's
text, never a failed page.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_timedelta
from flask import Flask, has_request_context, request

from hub import formats, i18n, queue, schedule
from hub.config import Settings
from hub.db import get_engine, utcnow
from hub.i18n import gettext as _

log = logging.getLogger(__name__)
CACHE_S = 10.0


@dataclass(frozen=True)
class Health:
    """What the banner is drawn from: the scheduler's heartbeat and, with Redis, the listening workers.

    `heartbeat` is None when it could not be read (`heartbeat_error` says why);
    `workers` is None without Redis, or when Redis could not be asked (`redis_error`).
    """

    at: dt.datetime
    heartbeat: schedule.Heartbeat | None = None
    heartbeat_error: str | None = None
    workers: int | None = None
    redis_error: str | None = None

    @property
    def ok(self) -> bool:
        return (self.heartbeat is not None and self.heartbeat.alive and self.redis_error is None
                and self.workers != 0)


def _why(exc: Exception) -> str:
    """The kind of failure only: a driver's message may quote a query or a host, and this is shown on every page."""
    return type(exc).__name__


def read(settings: Settings) -> Health:
    """Ask now (no cache): the heartbeat from the database and, with Redis, how many workers listen."""
    at = utcnow()
    heartbeat, heartbeat_error, workers, redis_error = None, None, None, None
    try:
        heartbeat = schedule.scheduler_alive(get_engine(settings.database_url), settings, now=at)
    except Exception as exc:  # noqa: BLE001 - a bad setting or the database away: the banner says so
        log.warning("cannot read the scheduler's heartbeat: %s", exc)
        heartbeat_error = _why(exc)
    if settings.redis_url:
        try:
            workers = queue.workers(settings)
        except Exception as exc:  # noqa: BLE001 - Redis down: the banner says so instead of the page failing
            log.warning("cannot count the queue workers: %s", exc)
            redis_error = _why(exc)
    return Health(at, heartbeat, heartbeat_error, workers, redis_error)


_cache: dict[tuple[str, str | None], tuple[float, Health]] = {}
_cache_lock = threading.Lock()


def current(settings: Settings) -> Health:
    """The answer of the last CACHE_S seconds for this database and Redis, or a fresh one."""
    key = (settings.database_url, settings.redis_url)
    with _cache_lock:
        kept = _cache.get(key)
    if kept is not None and time.monotonic() - kept[0] < CACHE_S:
        return kept[1]
    found = read(settings)
    with _cache_lock:
        _cache[key] = (time.monotonic(), found)
    return found


def forget() -> None:
    """Drop the kept answers, so the next page asks again (tests; a page that must see a change at once)."""
    with _cache_lock:
        _cache.clear()


def ago(when: dt.datetime, now: dt.datetime) -> str:
    """How long ago, as the reader says it: «3 часа назад», «1 минуту назад»; «через 5 минут» for a later moment."""
    locale = i18n.normalize(i18n.current_language())
    return format_timedelta(when - now, add_direction=True, threshold=0.95, locale=locale)


def messages(health: Health, tz: ZoneInfo) -> list[tuple[str, str]]:
    """The banner's lines in the reader's language, each with what it is about ("scheduler", "workers");
    none while everything runs."""
    out = []
    beat = health.heartbeat
    if beat is None:
        out.append(("scheduler", _("Cannot tell whether the scheduler is running: its state could not be read "
                                   "(%(error)s).", error=health.heartbeat_error or "?")))
    elif not beat.alive:
        if beat.last_started_at is None:
            out.append(("scheduler", _("The scheduler is not running: automations and scheduled campaigns do not "
                                       "work. Last run: never. Start `hub scheduler`.")))
        else:
            out.append(("scheduler", _("The scheduler is not running: automations and scheduled campaigns do not "
                                       "work. Last run: %(when)s (%(ago)s). Start `hub scheduler`.",
                                       when=formats.moment(beat.last_started_at, tz, zone=True),
                                       ago=ago(beat.last_started_at, health.at))))
    if health.redis_error is not None:
        out.append(("workers", _("Redis cannot be reached (%(error)s): letters and steps cannot be queued, "
                                 "and whether a queue worker (hub worker) runs is unknown.",
                                 error=health.redis_error)))
    elif health.workers == 0:
        out.append(("workers", _("No queue worker is running (hub worker): letters and steps wait in the queue.")))
    return out


def for_page() -> list[tuple[str, str]]:
    """The banner of this page: only on admin pages, only for a signed-in user, and never a failed page."""
    from hub.admin.access import current_user, page_of
    from hub.admin.app import current_settings

    if not has_request_context() or current_user() is None or page_of(request.endpoint) is None:
        return []
    settings = current_settings()
    try:
        return messages(current(settings), settings.tz)
    except Exception as exc:  # the banner must never take the page down with it
        log.exception("health banner failed")
        return [("scheduler", _("Cannot tell whether the scheduler is running: its state could not be read "
                                "(%(error)s).", error=_why(exc)))]


def _context() -> dict[str, Any]:
    return {"health_banner": for_page}


def install(app: Flask) -> None:
    """Give every template `health_banner()`: asked only where base.html draws it, so other pages pay nothing."""
    app.context_processor(_context)
