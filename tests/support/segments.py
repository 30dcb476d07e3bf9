"""Who a rule selects, asked the way the admin's preview asks: a probe segment stored and evaluated."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hub.segments import store
from hub.segments.evaluate import Segments
from tests.conftest import HubDB


def members(db: HubDB, rule: dict[str, Any], now: dt.datetime) -> set[int]:
    """The contact ids `rule` selects at `now`; the probe segment is removed again."""
    with db.engine.begin() as conn:
        segments = Segments(conn, db.settings, now=now)
        store.add(conn, segments.registry, {"name": "probe", "rule": rule})
        segments = Segments(conn, db.settings, now=now)
        ids = set(segments.member_ids("probe"))
        store.remove(conn, segments.registry, "probe")
    return ids
