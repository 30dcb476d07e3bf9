"""The export's other tables: any table with a contact_id column, read with its own column types.

Tables other modules and plugins add are found by their contact_id column
and read as they are; their columns' types come from the database catalog
(read once for all tables), so dates, JSON and flags come out the same on
SQLite and PostgreSQL, ordered by the table's primary key.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Iterator

import pytest
from sqlalchemy import JSON, Boolean, Column, DateTime, Integer, MetaData, Numeric, String, Table

from hub import sync
from hub.records import ContactRecord
from plugins.gdpr import export
from tests.conftest import HubDB

pytestmark = pytest.mark.both_databases

UTC = dt.timezone.utc


@pytest.fixture
def loyalty(hub_db: HubDB) -> Iterator[Table]:
    """A plugin's table that names contacts, with a two-column primary key listed out of order."""
    table = Table("loyalty_cards", MetaData(),
                  Column("card", String(20), primary_key=True), Column("year", Integer, primary_key=True),
                  Column("contact_id", Integer), Column("issued_at", DateTime(timezone=True)),
                  Column("active", Boolean), Column("balance", Numeric(10, 2)), Column("data", JSON))
    table.create(hub_db.engine)
    yield table
    table.drop(hub_db.engine)


def test_a_plugins_table_is_exported_with_its_types_in_key_order(hub_db: HubDB, loyalty: Table) -> None:
    with hub_db.engine.begin() as conn:
        sync.write_page(conn, [ContactRecord(source="shop", external_id="a", first_name="Анна",
                                             emails=["anna@example.ru"]),
                               ContactRecord(source="shop", external_id="b", first_name="Борис",
                                             emails=["boris@example.ru"])], hub_db.settings, sync.Counts())
        anna, boris = [r.id for r in conn.execute(
            Table("contacts", MetaData(), autoload_with=conn).select().order_by("id"))]
        issued = dt.datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
        conn.execute(loyalty.insert(), [
            {"card": "Z-1", "year": 2025, "contact_id": anna, "issued_at": issued, "active": True,
             "balance": Decimal("150.50"), "data": {"level": "золото"}},
            {"card": "A-9", "year": 2026, "contact_id": anna, "issued_at": issued, "active": False,
             "balance": Decimal("0.00"), "data": ["x"]},
            {"card": "A-9", "year": 2025, "contact_id": anna, "issued_at": None, "active": None,
             "balance": None, "data": None},
            {"card": "B-1", "year": 2026, "contact_id": boris, "issued_at": issued, "active": True,
             "balance": Decimal("1.00"), "data": {}},
        ])
    with hub_db.engine.connect() as conn:
        data = export.collect(conn, anna)
    rows = data["loyalty_cards"]
    assert [(r["card"], r["year"]) for r in rows] == [("A-9", 2025), ("A-9", 2026), ("Z-1", 2025)]
    first, second, third = rows
    assert first == {"card": "A-9", "year": 2025, "contact_id": anna, "issued_at": None, "active": None,
                     "balance": None, "data": None}
    assert second["active"] is False and second["data"] == ["x"] and second["balance"] == "0.00"
    assert third["active"] is True and third["data"] == {"level": "золото"} and third["balance"] == "150.50"
    assert dt.datetime.fromisoformat(third["issued_at"]).replace(tzinfo=UTC) == issued
