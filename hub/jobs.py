"""Job functions the queue runs; each reads its settings afresh in the worker.

Arguments are plain names and ids, never live objects, so a job means the same
thing whether it runs in this process or on an RQ worker started later.

A sync or reconcile job that finds another run of its source live (a
`hub sync` typed by hand, a cron job, the admin's "Sync now") skips quietly:
it is refused before it reads anything (hub.sync.SyncBusy), logged at info,
and returns what was live instead of counts; the next scheduled pass tries
again. Event fetches read only the records an event names and are never
refused: Bitrix24 does not send an event twice, so a refused fetch would lose
the change.
"""

from __future__ import annotations

import logging
from typing import Any

from hub import sync
from hub.config import load_settings
from hub.db import get_engine

log = logging.getLogger(__name__)


def _skipped(busy: sync.SyncBusy, what: str) -> dict[str, Any]:
    log.info("%s of %s skipped: run #%s of it is live (%s on %s)", what, busy.source, busy.live.id,
             busy.live.kind, busy.live.host or "?")
    return {"skipped": busy.code, "source": busy.source, "running_run": busy.live.as_dict()}


def sync_source(source_name: str, full: bool = False) -> dict[str, Any]:
    """Run one sync of a source and return its summary (or, when another run of it is live, that it skipped)."""
    settings = load_settings()
    try:
        report = sync.run(get_engine(settings.database_url), settings, source_name, full=full)
    except sync.SyncBusy as busy:
        return _skipped(busy, "sync")
    return report.as_dict()


def fetch_records(source_name: str, entity: str, ids: list[str]) -> dict[str, Any]:
    """Read chosen records again after a webhook event (which carries only their ids)."""
    settings = load_settings()
    report = sync.fetch(get_engine(settings.database_url), settings, source_name, entity, ids)
    return report.as_dict()


def reconcile_source(source_name: str) -> dict[str, Any]:
    """Mark as deleted what the source no longer lists (skipped while a sync of it is live)."""
    settings = load_settings()
    try:
        return sync.reconcile(get_engine(settings.database_url), settings, source_name).as_dict()
    except sync.SyncBusy as busy:
        return _skipped(busy, "reconcile")
