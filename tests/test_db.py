"""Reserved primary keys never repeat, even after the newest row is deleted."""

from __future__ import annotations

import pytest
from sqlalchemy import delete

from hub.db import reserve_ids
from hub.models import Contact
from tests.conftest import HubDB

pytestmark = pytest.mark.both_databases  # reserved keys on each database


def test_reserved_ids_are_fresh_and_never_reused(hub_db: HubDB) -> None:
    table = Contact.__table__
    with hub_db.engine.begin() as conn:
        first = reserve_ids(conn, table, 3)
        conn.execute(table.insert(), [{"id": i, "tags": [], "attributes": {}, "provenance": {}} for i in first])
        conn.execute(delete(table).where(table.c.id == first[-1]))
        second = reserve_ids(conn, table, 2)
    assert len(first) == 3 and first == sorted(first)
    assert min(second) > max(first)


def test_bulk_insert_stores_what_the_ordinary_insert_stores(hub_db: HubDB) -> None:
    import datetime as dt

    from sqlalchemy import select

    from hub.db import bulk_insert

    table = Contact.__table__
    now = dt.datetime(2024, 8, 15, 10, 38, 21, 123456, tzinfo=dt.timezone(dt.timedelta(hours=3)))
    row = {"first_name": "Ёлка", "birthday": dt.date(1985, 3, 14), "tags": ["vip"], "attributes": {},
           "provenance": {"first_name": "import:a.csv"}, "created_at": now, "updated_at": now,
           "orders_count": 2, "revenue": 1500.5}
    with hub_db.engine.begin() as conn:
        ids = reserve_ids(conn, table, 2)
        conn.execute(table.insert(), [{**row, "id": ids[0]}])
        bulk_insert(conn, table, [{**row, "id": ids[1]}])
        bulk_insert(conn, table, [{**row, "id": ids[1]}], ignore_conflicts=True)  # a conflict is skipped
        a, b = (conn.execute(select(table).where(table.c.id == i)).one()._asdict() for i in ids)
    assert {k: v for k, v in a.items() if k != "id"} == {k: v for k, v in b.items() if k != "id"}
    assert b["created_at"] == now and b["tags"] == ["vip"] and b["attributes"] == {}



def test_sqlite_writes_one_after_another_keep_one_connection_and_its_page_cache(sqlite_db: HubDB) -> None:
    """A connection that finds the database changed by another drops its whole page cache, so consecutive
    transactions must not take the pool's connections in turn once a read beside a write opened two."""
    engine = sqlite_db.engine
    reading = engine.connect()
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    reading.close()
    used = set()
    for i in range(6):
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (?)", (i,))
            used.add(id(conn.connection.driver_connection))
    assert len(used) == 1, "each transaction took another pooled connection, on a cold page cache"
