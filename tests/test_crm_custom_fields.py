"""Custom field definitions from the CRMs: stored by (source, entity, code), typed, found by the name people
know them by; and their values stored as JSON holds them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from hub import custom_fields, sync
from hub.models import Order
from hub.records import FieldDefinition, OrderRecord
from tests.conftest import HubDB

pytestmark = pytest.mark.both_databases  # upserts on a three-column key

SOURCE_OPTIONS = [{"id": "44", "value": "Выставка"}, {"id": "45", "value": "Сарафанное радио"}]


def field(code: str, name: str, type_: str = "string", *, source: str = "bitrix24", entity: str = "contact",
          **extra: Any) -> FieldDefinition:
    return FieldDefinition(source=source, entity=entity, code=code, name=name, type=type_, **extra)  # type: ignore[arg-type]


def write(db: HubDB, *records: Any) -> sync.Counts:
    counts = sync.Counts()
    with db.engine.begin() as conn:
        sync.write_page(conn, list(records), db.settings, counts)
    return counts


def test_definitions_are_upserted_and_read_back(hub_db: HubDB) -> None:
    counts = write(hub_db, field("UF_CRM_1712345", "Источник", "list", options=SOURCE_OPTIONS),
                   field("UF_CRM_2", "День рождения компании", "date", entity="company"),
                   field("512077", "Источник", "list", source="amocrm", multiple=True, options=SOURCE_OPTIONS[:1]))
    assert counts.fields == 3 and counts.errors == []
    again = write(hub_db, field("UF_CRM_1712345", "Откуда пришёл", "list", options=SOURCE_OPTIONS[:1]))
    assert again.fields == 1
    with hub_db.engine.connect() as conn:
        everything = custom_fields.definitions(conn)
        contacts = custom_fields.definitions(conn, entity="contact")
        bitrix = custom_fields.definitions(conn, source="bitrix24", entity="contact")
    assert len(everything) == 3 and {d.code for d in contacts} == {"UF_CRM_1712345", "512077"}
    (renamed,) = bitrix
    assert (renamed.name, renamed.type, renamed.options) == ("Откуда пришёл", "list", SOURCE_OPTIONS[:1])
    assert [d for d in everything if d.source == "amocrm"][0].multiple is True


def test_a_field_is_found_by_its_crm_name_any_case_and_yo_or_by_its_code(hub_db: HubDB) -> None:
    write(hub_db, field("UF_CRM_1", "Пришёл  с выставки", "boolean"),
          field("77", "пришел с выставки", "boolean", source="amocrm"),
          field("UF_CRM_9", "Пришёл с выставки", "boolean", entity="order"))
    with hub_db.engine.connect() as conn:
        by_name = custom_fields.find(conn, "ПРИШЕЛ С ВЫСТАВКИ", "contact")
        by_code = custom_fields.find(conn, "uf_crm_1", "contact")
        none = custom_fields.find(conn, "Бюджет", "contact")
        blank = custom_fields.find(conn, "  ", "contact")
    assert {(d.source, d.code) for d in by_name} == {("bitrix24", "UF_CRM_1"), ("amocrm", "77")}
    assert [d.code for d in by_code] == ["UF_CRM_1"]
    assert none == [] and blank == []


def test_a_definition_hub_cannot_type_is_an_error_naming_it(hub_db: HubDB) -> None:
    counts = write(hub_db, field("UF_CRM_5", "Адрес на карте", "geo"), field("", "Без кода"),
                   field("UF_CRM_6", "Кто", entity="lead"), field("X" * 500, "Длинный код"),
                   field("UF_CRM_7", "<script>alert(1)</script>" + "я" * 1000))
    assert counts.fields == 1
    errors = [e["error"] for e in counts.errors]
    assert errors[0] == "field 'UF_CRM_5' ('Адрес на карте'): type 'geo' is not one of " + ", ".join(
        ("string", "number", "date", "datetime", "list", "boolean"))
    assert errors[1] == "the field has no code" and "entity 'lead'" in errors[2] and "longer than 100" in errors[3]
    with hub_db.engine.connect() as conn:
        (kept,) = custom_fields.definitions(conn)
    assert kept.name.startswith("<script>") and len(kept.name) == 300


def test_values_are_stored_as_json_holds_them(hub_db: HubDB) -> None:
    assert custom_fields.plain({"n": Decimal("3"), "x": Decimal("2.5"), "d": dt.date(2026, 12, 7),
                                "when": dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC), "many": ("a", "b"),
                                "inf": Decimal("Infinity"), "flag": True, "obj": object}) == {
        "n": 3, "x": 2.5, "d": "2026-12-07", "when": "2026-12-07T10:00:00+00:00", "many": ["a", "b"],
        "inf": None, "flag": True, "obj": str(object)}
    assert custom_fields.plain(None) == {}
    write(hub_db, OrderRecord(source="bitrix24", external_id="1", contact_external_id=None,
                              attributes={"UF_CRM_BUDGET": Decimal("150000.00"), "UF_CRM_DAY": dt.date(2026, 1, 2)}))
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(Order.attributes)).scalar_one() == {"UF_CRM_BUDGET": 150000,
                                                                       "UF_CRM_DAY": "2026-01-02"}


def test_reconcile_passes_over_field_definitions(hub_db: HubDB) -> None:
    class WithFields:
        name = "bitrix24"

        def entities(self) -> tuple[str, ...]:
            return ("fields", "contacts")

        def live_ids(self, entity: str) -> Any:
            assert entity == "contacts"
            yield ["1"]

    report = sync.reconcile(hub_db.engine, hub_db.settings, "bitrix24", source=WithFields())
    assert report.counts.contacts["deleted"] == 0
