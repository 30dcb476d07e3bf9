"""The API's chore: answers kept for Idempotency-Keys are forgotten after 24 hours, on the scheduler."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from hub import schedule
from hub.db import utcnow
from hub.models import ApiRequest
from hub.plugins import get_pm
from hub.schedule import ScheduledRun
from hub.webapi import chores, idempotency, keys
from tests.conftest import HubDB


def test_kept_answers_are_forgotten_after_a_day(hub_db: HubDB) -> None:
    with hub_db.engine.begin() as conn:
        key = keys.create(conn, "site", ["events:write"], actor="tests")
        assert idempotency.claim(conn, key.id, "old", "f" * 64) is None
        idempotency.keep(conn, key.id, "old", 200, {"ok": 1})
        assert idempotency.claim(conn, key.id, "new", "e" * 64) is None
        idempotency.keep(conn, key.id, "new", 200, {"ok": 2})
        conn.execute(ApiRequest.__table__.update().where(ApiRequest.__table__.c.idempotency_key == "old")
                     .values(created_at=utcnow() - dt.timedelta(hours=25)))
    assert chores.prune_kept_answers(ScheduledRun(hub_db.settings, hub_db.engine, utcnow())) == {"forgotten": 1}
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ApiRequest)).scalar() == 1
        assert idempotency.claim(conn, key.id, "new", "e" * 64) == (200, {"body": {"ok": 2}})


def test_the_chore_is_on_the_scheduler(hub_db: HubDB) -> None:
    assert "api_idempotency" in schedule.schedules(hub_db.settings, get_pm())
