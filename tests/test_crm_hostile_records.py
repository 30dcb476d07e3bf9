"""A source's odd records become error entries, never an exception that fails the page.

A page that raises is written by no sync ever after (each run resumes at it),
so one bad record in a CRM would block every later sync of everything.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from hub import sync
from hub.models import Activity, Company, CustomField, Order
from hub.records import ActivityRecord, CompanyRecord, ContactRecord, FieldDefinition, OrderRecord
from tests.conftest import HubDB

pytestmark = pytest.mark.both_databases
WHEN = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.timezone.utc)


def nested(depth: int) -> Any:
    value: Any = "дно"
    for _ in range(depth):
        value = [value]
    return value


def test_odd_records_are_reported_and_the_rest_of_the_page_is_written(hub_db: HubDB) -> None:
    records: list[Any] = [
        FieldDefinition(source="crm", entity="contact", code="UF_OK", name="Источник\x00", type="list",
                        options={"1": "Выставка"}),  # type: ignore[arg-type]
        FieldDefinition(source=None, entity="contact", code="UF_NONE", name="x", type="string"),  # type: ignore[arg-type]
        CompanyRecord(source="crm", external_id="c1", name="ООО «Ноль\x00»",
                      attributes={"deep": nested(1000), "big": 10 ** 5000, "huge": Decimal("1e100000"),
                                  "nan": float("nan"), "nul\x00key": "a\x00b", "ok": 5, "set": {1}}),
        ContactRecord(source="crm", external_id="1", first_name="Анна", phones=["+79035550001"]),
        ActivityRecord(source="crm", external_id="a1", kind="call", at=WHEN, contact_external_id="1",
                       duration_s=float("nan"), subject="звонок\x00"),
        ActivityRecord(source="crm", external_id="a2", kind="call", at=WHEN, contact_external_id="1",
                       duration_s=float("inf")),
        ActivityRecord(source=None, external_id="a3", kind="call", at=WHEN),  # type: ignore[arg-type]
        OrderRecord(source="crm", external_id="d1", contact_external_id="1",
                    stage_entered_at="2026-12-01"),  # type: ignore[arg-type]
        OrderRecord(source="crm", external_id="d2", contact_external_id="1", stage="Новая\x00",
                    stage_entered_at=WHEN),
    ]
    counts = sync.Counts()
    with hub_db.engine.begin() as conn:
        sync.write_page(conn, records, hub_db.settings, counts)
    errors = json.dumps(counts.errors, ensure_ascii=False)
    assert "the field has no source" in errors and "the activity has no source" in errors
    assert "stage_entered_at is not a date and time" in errors
    with hub_db.engine.connect() as conn:
        field = conn.execute(select(CustomField)).one()
        company = conn.execute(select(Company)).one()
        calls = {a.external_id: a for a in conn.execute(select(Activity))}
        deals = {o.external_id: o for o in conn.execute(select(Order))}
    assert (field.code, field.name, field.options) == ("UF_OK", "Источник", [])
    assert company.name == "ООО «Ноль»"
    attrs = company.attributes
    assert attrs["ok"] == 5 and attrs["nan"] is None and attrs["huge"] is None and attrs["nulkey"] == "ab"
    assert attrs["big"] is None and attrs["set"] == [1]
    depth, value = 0, attrs["deep"]
    while isinstance(value, list) and value:
        depth, value = depth + 1, value[0]
    assert depth <= 21
    assert set(calls) == {"a1", "a2"} and calls["a1"].duration_s is None and calls["a1"].subject == "звонок"
    assert set(deals) == {"d2"} and deals["d2"].stage == "Новая"


def test_a_contact_with_texts_longer_than_their_fields_is_written_cut(hub_db: HubDB) -> None:
    from hub.models import Contact

    records: list[Any] = [
        ContactRecord(source="crm", external_id="long", first_name="Я" * 10_000, last_name="Ф" * 300,
                      middle_name="О" * 201, city="Г" * 5_000, company="К" * 1_000, phones=["+79035550009"]),
        ContactRecord(source="crm", external_id="2", first_name="Борис", phones=["+79035550010"]),
    ]
    counts = sync.Counts()
    with hub_db.engine.begin() as conn:
        sync.write_page(conn, records, hub_db.settings, counts)
    with hub_db.engine.connect() as conn:
        rows = {r.first_name[:1]: r for r in conn.execute(select(Contact))}
    long = rows["Я"]
    assert (len(long.first_name), len(long.last_name), len(long.middle_name), len(long.city), len(long.company)) == (
        200, 200, 200, 200, 300)
    assert "Б" in rows  # the rest of the page went in


def test_a_page_read_again_rewrites_and_counts_only_what_changed(hub_db: HubDB) -> None:
    page: list[Any] = [
        CompanyRecord(source="crm", external_id="c1", name="ООО «Ромашка»", inn="7707083893",
                      attributes={"Отрасль": "опт", "Сотрудников": 12}),
        CompanyRecord(source="crm", external_id="c2", name="ИП Соколов"),
        ContactRecord(source="crm", external_id="1", first_name="Анна", phones=["+79035550001"]),
        ActivityRecord(source="crm", external_id="a1", kind="call", at=WHEN, contact_external_id="1",
                       direction="in", duration_s=30, subject="звонок"),
        ActivityRecord(source="crm", external_id="a2", kind="task", at=WHEN, contact_external_id="1", done=False),
    ]

    def write(records: list[Any]) -> sync.Counts:
        counts = sync.Counts()
        with hub_db.engine.begin() as conn:
            sync.write_page(conn, records, hub_db.settings, counts)
        return counts

    first = write(page)
    assert first.companies["created"] == 2 and first.activities["created"] == 2
    with hub_db.engine.connect() as conn:
        stamped = dict(conn.execute(select(Company.external_id, Company.updated_at)).all())
    again = write(page)
    assert (again.companies["updated"], again.activities["updated"]) == (0, 0)
    with hub_db.engine.connect() as conn:
        assert dict(conn.execute(select(Company.external_id, Company.updated_at)).all()) == stamped
    page[1] = CompanyRecord(source="crm", external_id="c2", name="ИП Соколов П. А.")
    page[4] = ActivityRecord(source="crm", external_id="a2", kind="task", at=WHEN, contact_external_id="1", done=True)
    changed = write(page)
    assert changed.companies["updated"] == 1 and changed.activities["updated"] == 1
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(Company.name).where(Company.external_id == "c2")).scalar() == "ИП Соколов П. А."
        assert conn.execute(select(Activity.done).where(Activity.external_id == "a2")).scalar() is True
