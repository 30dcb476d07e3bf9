"""What the segment registry reads from the database, kept a few seconds per database.

The registry is built for every rule checked and every builder page; the
lists it reads from the database (event names received, custom fields the
CRMs define) change rarely, so each is read once per `ttl` seconds per
database URL. A database that does not exist yet reads as empty (asking
must not leave an empty SQLite file behind), and so does one whose table a
migration has not made yet.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Generic, TypeVar

from sqlalchemy import Connection

from hub.config import Settings

T = TypeVar("T")


class PerDatabase(Generic[T]):
    """A list read with `read(conn)`, reused for `ttl` seconds per database."""

    def __init__(self, read: Callable[[Connection], list[T]], ttl: float) -> None:
        self.read, self.ttl = read, ttl
        self._kept: dict[str, tuple[float, list[T]]] = {}
        self._lock = threading.Lock()

    def get(self, settings: Settings) -> list[T]:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import SQLAlchemyError

        from hub.db import get_engine

        url = settings.database_url
        with self._lock:
            kept = self._kept.get(url)
        if kept is not None and time.monotonic() - kept[0] < self.ttl:
            return kept[1]
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") \
                and not Path(parsed.database).exists():
            return []
        try:
            with get_engine(url).connect() as conn:
                found = self.read(conn)
        except SQLAlchemyError:  # the table is not there yet (a database before its migration)
            found = []
        with self._lock:
            self._kept[url] = (time.monotonic(), found)
        return found

    def forget(self, settings: Settings, unless: Callable[[list[T]], bool] | None = None) -> None:
        """Read afresh next time (unless what is kept still passes `unless`)."""
        with self._lock:
            kept = self._kept.get(settings.database_url)
            if kept is not None and (unless is None or not unless(kept[1])):
                del self._kept[settings.database_url]
