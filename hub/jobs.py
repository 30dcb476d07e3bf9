"""Job functions the queue runs; each reads its settings afresh in the worker.

Arguments are plain names and ids, never live objects, so a job means the same
thing whether it runs in this process or on an RQ worker started later.
"""

from __future__ import annotations

from typing import Any

from hub import sync
from hub.config import load_settings
from hub.db import get_engine


def sync_source(source_name: str, full: bool = False) -> dict[str, Any]:
    """Run one sync of a source and return its summary."""
    settings = load_settings()
    report = sync.run(get_engine(settings.database_url), settings, source_name, full=full)
    return report.as_dict()


def fetch_records(source_name: str, entity: str, ids: list[str]) -> dict[str, Any]:
    """Read chosen records again after a webhook event (which carries only their ids)."""
    settings = load_settings()
    report = sync.fetch(get_engine(settings.database_url), settings, source_name, entity, ids)
    return report.as_dict()


def reconcile_source(source_name: str) -> dict[str, Any]:
    """Mark as deleted what the source no longer lists."""
    settings = load_settings()
    return sync.reconcile(get_engine(settings.database_url), settings, source_name).as_dict()
