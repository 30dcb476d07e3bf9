"""After an erasure, calls logged on the erased person's deals stay out of Hub, whichever sync brings them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

import plugins.gdpr
from hub import sync
from hub.activities import write_activities
from hub.models import Activity
from hub.records import ActivityRecord, ContactRecord, OrderRecord
from plugins.gdpr import erasure
from tests.conftest import HubDB

AT = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def hub(hub_db: HubDB, plugin_manager: Any) -> HubDB:
    plugin_manager.register(plugins.gdpr, name="gdpr")
    return hub_db


def call(external_id: str, deal: str, subject: str) -> ActivityRecord:
    return ActivityRecord(source="crm", external_id=external_id, kind="call", at=AT, direction="in",
                          order_external_id=deal, subject=subject)


def test_a_call_on_an_erased_persons_deal_is_refused_and_a_call_on_anothers_is_kept(hub: HubDB) -> None:
    with hub.engine.begin() as conn:
        counts = sync.Counts()
        sync.write_contacts(conn, [ContactRecord(source="crm", external_id="1", first_name="Пётр",
                                                 emails=["petr@example.ru"]),
                                   ContactRecord(source="crm", external_id="2", first_name="Анна",
                                                 emails=["anna@example.ru"])], hub.settings, counts)
        sync.write_orders(conn, [OrderRecord(source="crm", external_id="D1", contact_external_id="1",
                                             amount=Decimal(100), status="open"),
                                 OrderRecord(source="crm", external_id="D2", contact_external_id="2",
                                             amount=Decimal(100), status="open")], counts, settings=hub.settings)
        petr_id = conn.execute(select(sync.refs_t.c.contact_id).where(sync.refs_t.c.source == "crm",
                                                                      sync.refs_t.c.external_id == "1")).scalar()
    assert petr_id is not None
    erasure.erase(hub.engine, hub.settings, petr_id)

    counts = sync.Counts()
    with hub.engine.begin() as conn:
        write_activities(conn, [call("n1", "D1", "Пётр просил перезвонить, паспорт 4510 123456"),
                                call("n2", "D2", "Анна: доставка в среду")], counts, settings=hub.settings)
    assert counts.activities["refused"] == 1 and counts.activities["created"] == 1
    with hub.engine.connect() as conn:
        subjects = conn.execute(select(Activity.subject)).scalars().all()
    assert subjects == ["Анна: доставка в среду"]
