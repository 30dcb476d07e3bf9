"""An incremental sync re-reads the orders of its overlap window: only those that changed count as updated."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal

import pytest

from hub import sync
from hub.records import OrderRecord
from tests.conftest import HubDB

pytestmark = pytest.mark.both_databases  # the stored values read back differ in type by database

MSK = dt.timezone(dt.timedelta(hours=3))


def _orders() -> list[OrderRecord]:
    closed = dt.datetime(2026, 11, 3, 14, 30, 15, 250, tzinfo=MSK)  # not UTC: compared as an instant
    return [
        OrderRecord("crm", "1", None, amount=Decimal("1500.50"), status="won", closed_at=closed,
                    title="Заказ «1»", pipeline="Продажи", stage="WON", stage_entered_at=closed,
                    responsible_id="7", attributes={"UF_SUM": Decimal("2.0"), "UF_DAY": dt.date(2026, 1, 2),
                                                    "UF_TAGS": ["a", "b"], "UF_VIP": True}),
        OrderRecord("crm", "2", None, amount=Decimal("999"), status="open", promo_code="ABC"),
        OrderRecord("crm", "3", None, amount=Decimal(0), status="lost"),
    ]


def _write(db: HubDB, records: list[OrderRecord]) -> sync.Counts:
    counts = sync.Counts()
    with db.engine.begin() as conn:
        sync.write_orders(conn, records, counts, db.settings)
    return counts


def test_orders_read_again_unchanged_are_not_counted_as_updated(hub_db: HubDB, plugin_manager) -> None:
    assert _write(hub_db, _orders()).orders["created"] == 3
    again = _write(hub_db, _orders())
    assert (again.orders["created"], again.orders["updated"]) == (0, 0)

    changed = _orders()
    changed[1] = replace(changed[1], amount=Decimal("1000"))
    changed[2] = replace(changed[2], attributes={"UF_NOTE": "новое"})
    third = _write(hub_db, changed)
    assert (third.orders["created"], third.orders["updated"]) == (0, 2)
    assert _write(hub_db, changed).orders["updated"] == 0
