"""The banner on every admin page while the work behind the pages is not being done.

Automations, scheduled campaigns, held letters and syncs move only while
`hub scheduler` runs, and with Redis only while a `hub worker` takes the
queued jobs. Both are processes of their own, so nothing on a page would
otherwise say that they stopped: a marketer switches an automation on and
nothing ever happens. Every admin page therefore says so at the top, to
signed-in users (public pages and the sign-in page never show it).

A source whose last sync failed is said there too, to those who work with
the data (marketers and admins), with a link to its connection page: a
failing sync otherwise shows only on the dashboard, below the fold.

Who reads it decides what it asks of them: an admin is told which command
to start (in <code>); everybody else is told to tell an admin, never to run
a command in a terminal.

It is asked on every page, so it costs a few small queries and, with Redis,
one look at Redis, and the answer is kept for CACHE_S seconds per process. Anything
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
from flask import Flask, has_request_context, request, url_for
from markupsafe import Markup

from hub import formats, i18n, queue, schedule
from hub.config import Settings
from hub.db import get_engine, utcnow
from hub.i18n import N_
from hub.i18n import gettext as _

log = logging.getLogger(__name__)
CACHE_S = 10.0
ERROR_CHARS = 160  # a sync's error on the banner: one short line; the connection page has it whole


@dataclass(frozen=True)
class FailedSync:
    """A source whose latest sync run failed: when, and its error as the sync pages show it (no secrets)."""

    source: str
    at: dt.datetime
    error: str


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
    failed_syncs: tuple[FailedSync, ...] = ()

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
    failed: tuple[FailedSync, ...] = ()
    try:
        heartbeat = schedule.scheduler_alive(get_engine(settings.database_url), settings, now=at)
    except Exception as exc:  # noqa: BLE001 - a bad setting or the database away: the banner says so
        log.warning("cannot read the scheduler's heartbeat: %s", exc)
        heartbeat_error = _why(exc)
    else:
        try:
            failed = failed_syncs(get_engine(settings.database_url))
        except Exception as exc:  # noqa: BLE001 - the syncs are the dashboard's to show; the banner goes on
            log.warning("cannot read the last syncs: %s", exc)
    if settings.redis_url:
        try:
            workers = queue.workers(settings)
        except Exception as exc:  # noqa: BLE001 - Redis down: the banner says so instead of the page failing
            log.warning("cannot count the queue workers: %s", exc)
            redis_error = _why(exc)
    return Health(at, heartbeat, heartbeat_error, workers, redis_error, failed)


def failed_syncs(engine: Any) -> tuple[FailedSync, ...]:
    """The installed sources whose latest sync run failed (as the dashboard's «last sync per CRM» says)."""
    from hub.admin import overview

    with engine.connect() as conn:
        found = overview.last_syncs(conn)
    return tuple(FailedSync(s["source"], s["run"]["finished_at"] or s["run"]["started_at"], s["run"]["error"] or "")
                 for s in found if s["installed"] and s["failing"])


_cache: dict[tuple[str, str | None], tuple[float, Health]] = {}
_cache_lock = threading.Lock()
_refreshing: dict[tuple[str, str | None], threading.Lock] = {}


def current(settings: Settings) -> Health:
    """The answer of the last CACHE_S seconds for this database and Redis, or a fresh one.

    One request at a time asks again; the others meanwhile use the previous
    answer (when there is one) instead of queueing behind a slow Redis or
    database: a stale banner for a moment, never every admin page waiting.
    """
    key = (settings.database_url, settings.redis_url)
    with _cache_lock:
        kept = _cache.get(key)
        refreshing = _refreshing.setdefault(key, threading.Lock())
    if kept is not None and time.monotonic() - kept[0] < CACHE_S:
        return kept[1]
    if kept is not None and not refreshing.acquire(blocking=False):
        return kept[1]  # another request is asking now
    if kept is None:  # nothing to show meanwhile: wait for the one asking, then use its answer
        refreshing.acquire()
        with _cache_lock:
            kept = _cache.get(key)
        if kept is not None and time.monotonic() - kept[0] < CACHE_S:
            refreshing.release()
            return kept[1]
    try:
        found = read(settings)
        with _cache_lock:
            _cache[key] = (time.monotonic(), found)
    finally:
        refreshing.release()
    return found


def forget() -> None:
    """Drop the kept answers, so the next page asks again (tests; a page that must see a change at once)."""
    with _cache_lock:
        _cache.clear()


def ago(when: dt.datetime, now: dt.datetime) -> str:
    """How long ago, as the reader says it: «3 часа назад», «1 минуту назад»; «через 5 минут» for a later moment."""
    locale = i18n.normalize(i18n.current_language())
    return format_timedelta(when - now, add_direction=True, threshold=0.95, locale=locale)


def _command(name: str, markup: bool) -> str:
    return Markup("<code>%s</code>") % name if markup else name


def _say(message: str, markup: bool, **variables: Any) -> str:
    """`message` in the reader's language; as Markup (its variables escaped unless they are Markup) for a page."""
    if markup:
        return Markup.escape(_(message)) % variables if variables else Markup.escape(_(message))
    return _(message, **variables)


def messages(health: Health, tz: ZoneInfo, *, admin: bool = True, markup: bool = False) -> list[tuple[str, str]]:
    """The banner's lines in the reader's language, each with what it is about ("scheduler", "workers");
    none while everything runs.

    An admin is told what to start (the command in <code> when `markup`, for a
    page; as plain words for the command line); anybody else is told to tell
    an admin.
    """
    out = []
    beat = health.heartbeat
    if beat is None:
        out.append(("scheduler", _say(N_("Cannot tell whether the scheduler is running: its state could not be read "
                                         "(%(error)s)."), markup, error=health.heartbeat_error or "?")))
    elif not beat.alive:
        if beat.last_started_at is None:
            said = _say(N_("The scheduler is not running: workflows and scheduled campaigns do not work. "
                           "Last run: never."), markup)
        else:
            said = _say(N_("The scheduler is not running: workflows and scheduled campaigns do not work. "
                           "Last run: %(when)s (%(ago)s)."), markup,
                        when=formats.moment(beat.last_started_at, tz, zone=True),
                        ago=ago(beat.last_started_at, health.at))
        todo = (_say(N_("Start %(command)s."), markup, command=_command("hub scheduler", markup)) if admin
                else _say(N_("Tell an administrator: the scheduler (hub scheduler) must be started."), markup))
        out.append(("scheduler", said + " " + todo))
    if health.redis_error is not None:
        said = _say(N_("Redis cannot be reached (%(error)s): letters and steps cannot be queued, and whether a "
                       "queue worker (hub worker) runs is unknown."), markup, error=health.redis_error)
        out.append(("workers", said if admin else said + " " + _say(N_("Tell an administrator."), markup)))
    elif health.workers == 0:
        said = _say(N_("No queue worker is running (hub worker): letters and steps wait in the queue."), markup)
        todo = (_say(N_("Start %(command)s."), markup, command=_command("hub worker", markup)) if admin
                else _say(N_("Tell an administrator: a queue worker (hub worker) must be started."), markup))
        out.append(("workers", said + " " + todo))
    return out


def sync_lines(health: Health, tz: ZoneInfo) -> list[tuple[str, str]]:
    """One short line per source whose last sync failed, linking to its connection page (for a page only)."""
    from hub.admin import connections, filters

    pages = connections.source_pages()
    out: list[tuple[str, str]] = []
    for failed in health.failed_syncs:
        error = " ".join(failed.error.split())
        if len(error) > ERROR_CHARS:
            error = error[:ERROR_CHARS - 1].rstrip() + "…"
        page = pages.get(failed.source)
        href = url_for(page.endpoint) if page is not None else url_for("connections.index")
        said = _say(N_("The %(source)s sync failed on %(when)s: %(error)s"), True,
                    source=filters.source_title(failed.source), when=formats.moment(failed.at, tz), error=error)
        out.append(("sync", said + Markup(' <a href="%s">%s</a>') % (href, _("Open the connection"))))
    return out


def for_page() -> list[tuple[str, str]]:
    """The banner of this page: only on admin pages, only for a signed-in user, and never a failed page."""
    from hub.admin.access import can, current_user, page_of
    from hub.admin.app import current_settings

    if not has_request_context() or current_user() is None or page_of(request.endpoint) is None:
        return []
    settings = current_settings()
    try:
        health = current(settings)
        lines = messages(health, settings.tz, admin=can("admin"), markup=True)
        return lines + (sync_lines(health, settings.tz) if can("marketer") else [])
    except Exception as exc:  # the banner must never take the page down with it
        log.exception("health banner failed")
        return [("scheduler", _("Cannot tell whether the scheduler is running: its state could not be read "
                                "(%(error)s).", error=_why(exc)))]


def _context() -> dict[str, Any]:
    return {"health_banner": for_page}


def install(app: Flask) -> None:
    """Give every template `health_banner()`: asked only where base.html draws it, so other pages pay nothing."""
    app.context_processor(_context)
