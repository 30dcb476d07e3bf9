"""Reserved primary keys never repeat, even after the newest row is deleted."""

from __future__ import annotations

from sqlalchemy import delete

from hub.db import reserve_ids
from hub.models import Contact
from tests.conftest import HubDB


def test_reserved_ids_are_fresh_and_never_reused(hub_db: HubDB) -> None:
    table = Contact.__table__
    with hub_db.engine.begin() as conn:
        first = reserve_ids(conn, table, 3)
        conn.execute(table.insert(), [{"id": i, "tags": [], "attributes": {}, "provenance": {}} for i in first])
        conn.execute(delete(table).where(table.c.id == first[-1]))
        second = reserve_ids(conn, table, 2)
    assert len(first) == 3 and first == sorted(first)
    assert min(second) > max(first)
