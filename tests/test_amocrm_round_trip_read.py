"""amoCRM's read side of the CRM round trip: custom fields typed, companies, calls and tasks, stages.

Unit tests answer with the payloads amoCRM documents (responses); the end-to-end
ones sync the emulator through the `hub` command line.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Iterator

import pytest
import responses
from click.testing import CliRunner
from sqlalchemy import select

import plugins.amocrm
from hub.config import Settings
from hub.models import Activity, Company, ContactCompany, CustomField, ExternalRef, Order
from hub.ratelimit import LocalBucket
from hub.records import ActivityRecord, CompanyRecord, ContactRecord, FieldDefinition, OrderRecord
from plugins.amocrm import mapping
from plugins.amocrm.client import AmoClient, StaticAuth
from plugins.amocrm.sandbox import Account, SandboxServer
from plugins.amocrm.sandbox.data import PIPELINES
from plugins.amocrm.source import AmoSource
from tests.conftest import HubDB
from tests.support.cli import cli

BASE = "https://shop.amocrm.ru"
NOW = 1_700_000_000
UTC = dt.timezone.utc
MSK_MIDNIGHT_2024_03_08 = 1_709_845_200  # 2024-03-08 00:00 in Moscow, as amoCRM keeps a date


def make_source(**options: Any) -> AmoSource:
    settings = Settings(extra={"amocrm": dict(options)})
    client = AmoClient(BASE, StaticAuth("tok"), LocalBucket(10_000, 10_000), sleep=lambda s: None)
    return AmoSource(settings, client=client, account={"currency": "RUB", "customers_mode": "disabled"},
                     clock=lambda: NOW)


def listing(key: str, items: list[dict[str, Any]], more: bool = False, path: str | None = None) -> dict[str, Any]:
    links: dict[str, Any] = {"self": {"href": f"{BASE}/api/v4/{path or key}?page=1"}}
    if more:
        links["next"] = {"href": f"{BASE}/api/v4/{path or key}?page=2"}
    return {"_page": 1, "_links": links, "_embedded": {key: items}}


def at(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, UTC)


# --- custom fields --------------------------------------------------------------------------

CONTACT_FIELDS = [
    {"id": 1, "name": "Телефон", "code": "PHONE", "type": "multitext", "enums": [{"id": 11, "value": "WORK"}]},
    {"id": 2, "name": "Должность", "code": "POSITION", "type": "text", "enums": None},
    {"id": 3, "name": "Источник", "code": None, "type": "select",
     "enums": [{"id": 31, "value": "Выставка", "sort": 2}, {"id": 32, "value": "Сайт", "sort": 4}]},
    {"id": 4, "name": "Интересы", "code": None, "type": "multiselect", "enums": [{"id": 41, "value": "Скидки"}]},
    {"id": 5, "name": "Бонусы", "code": None, "type": "numeric", "enums": None},
    {"id": 6, "name": "Согласие на звонки", "code": None, "type": "checkbox", "enums": None},
    {"id": 7, "name": "Первый визит", "code": None, "type": "date", "enums": None},
    {"id": 8, "name": "Перезвонить", "code": None, "type": "date_time", "enums": None},
    {"id": 9, "name": "Канал", "code": None, "type": "radiobutton", "enums": [{"id": 91, "value": "Звонок"}]},
    {"id": 10, "name": "Договор", "code": None, "type": "file", "enums": None},
    {"id": 12, "name": "Комментарий", "code": None, "type": "textarea", "enums": None},
    {"id": 13, "name": "Комментарий", "code": None, "type": "url", "enums": None},
]


def test_field_definitions_are_typed_with_their_options_and_keyed_as_the_records_are() -> None:
    definitions, keys = mapping.field_definitions(CONTACT_FIELDS, "contacts")
    by_code = {d.code: d for d in definitions}
    assert "PHONE" not in by_code and "Договор" not in by_code  # the record's own phones; files are links
    assert by_code["POSITION"] == FieldDefinition("amocrm", "contact", "POSITION", "Должность", "string")
    assert by_code["Источник"] == FieldDefinition("amocrm", "contact", "Источник", "Источник", "list", False,
                                                  [{"id": "31", "value": "Выставка"}, {"id": "32", "value": "Сайт"}])
    assert by_code["Интересы"].type == "list" and by_code["Интересы"].multiple
    assert [by_code[c].type for c in ("Бонусы", "Согласие на звонки", "Первый визит", "Перезвонить", "Канал")] == [
        "number", "boolean", "date", "datetime", "list"]
    assert by_code["Комментарий"].type == "string" and by_code["Комментарий (13)"].name == "Комментарий"
    assert keys["13"] == "Комментарий (13)" and keys["3"] == "Источник"


def test_the_birthday_and_city_fields_are_the_contacts_own_and_not_offered_again() -> None:
    own = [{"id": 20, "name": "День рождения", "code": None, "type": "birthday", "enums": None},
           {"id": 21, "name": "Город", "code": None, "type": "text", "enums": None},
           {"id": 22, "name": "Город доставки", "code": None, "type": "text", "enums": None}]
    definitions, _ = mapping.field_definitions(CONTACT_FIELDS + own, "contacts")
    codes = {d.code for d in definitions}
    assert "День рождения" not in codes and "Город" not in codes and "Город доставки" in codes
    # Named in [amocrm] fields, another field is the city, and «Город» is an ordinary field again.
    definitions, _ = mapping.field_definitions(CONTACT_FIELDS + own, "contacts", fields={"city": 22})
    codes = {d.code for d in definitions}
    assert "Город" in codes and "Город доставки" not in codes and "День рождения" not in codes
    assert {d.code for d in mapping.field_definitions(own, "companies")[0]} >= {"Город"}  # a company's stays


def test_values_arrive_typed_in_the_attributes() -> None:
    row = {"id": 1, "name": "Анна", "custom_fields_values": [
        {"field_id": 3, "field_name": "Источник", "field_code": None, "field_type": "select",
         "values": [{"value": "Выставка", "enum_id": 31}]},
        {"field_id": 4, "field_name": "Интересы", "field_code": None, "field_type": "multiselect",
         "values": [{"value": "Скидки", "enum_id": 41}]},
        {"field_id": 5, "field_name": "Бонусы", "field_code": None, "field_type": "numeric",
         "values": [{"value": "1500.50"}]},
        {"field_id": 6, "field_name": "Согласие на звонки", "field_code": None, "field_type": "checkbox",
         "values": [{"value": False}]},
        {"field_id": 7, "field_name": "Первый визит", "field_code": None, "field_type": "date",
         "values": [{"value": MSK_MIDNIGHT_2024_03_08}]},
        {"field_id": 8, "field_name": "Перезвонить", "field_code": None, "field_type": "date_time",
         "values": [{"value": 1_709_900_000}]},
        {"field_id": 5, "field_name": "Бонусы", "field_code": None, "field_type": "numeric",
         "values": [{"value": "не число"}]},
    ]}
    _, keys = mapping.field_definitions(CONTACT_FIELDS, "contacts")
    record = mapping.contact(row, keys=keys)
    assert record.attributes["Источник"] == "Выставка"
    assert record.attributes["Интересы"] == ["Скидки"]  # a multiselect is a list, even of one
    assert record.attributes["Согласие на звонки"] is False
    assert record.attributes["Первый визит"] == "2024-03-08"
    assert record.attributes["Перезвонить"] == "2024-03-08T12:13:20+00:00"
    assert record.attributes["Бонусы"] == "не число"  # a value that is not its type stays as amoCRM sent it
    assert mapping.contact({**row, "custom_fields_values": row["custom_fields_values"][2:3]}).attributes == {
        "Бонусы": 1500.5}


@responses.activate
def test_the_fields_entity_reads_the_three_lists_page_by_page() -> None:
    source = make_source()
    many = [{"id": 100 + i, "name": f"Поле {i}", "code": None, "type": "text"} for i in range(50)]
    responses.get(f"{BASE}/api/v4/contacts/custom_fields",
                  json=listing("custom_fields", many, True, "contacts/custom_fields"),
                  match=[responses.matchers.query_param_matcher({"page": "1", "limit": "50"})])
    responses.get(f"{BASE}/api/v4/contacts/custom_fields",
                  json=listing("custom_fields", CONTACT_FIELDS, False, "contacts/custom_fields"),
                  match=[responses.matchers.query_param_matcher({"page": "2", "limit": "50"})])
    responses.get(f"{BASE}/api/v4/companies/custom_fields", status=204, body="")
    responses.get(f"{BASE}/api/v4/leads/custom_fields", json=listing("custom_fields", [
        {"id": 900, "name": "Срочно", "code": None, "type": "checkbox"}], False, "leads/custom_fields"))
    pages = list(source.read("fields", None, True))
    definitions = [r for p in pages for r in p.records]
    assert len(definitions) == 50 + 10 + 1
    assert definitions[-1] == FieldDefinition("amocrm", "order", "Срочно", "Срочно", "boolean")
    # An incremental run within the hour reads nothing.
    asked = len(responses.calls)
    assert list(source.read("fields", json.dumps({"since": NOW - 60}), False)) == []
    assert len(responses.calls) == asked


# --- companies ------------------------------------------------------------------------------

COMPANY = {
    "id": 501, "name": "ООО «Техносфера»", "responsible_user_id": 6100002, "created_at": NOW - 900,
    "updated_at": NOW - 100, "custom_fields_values": [
        {"field_id": 1, "field_name": "Телефон", "field_code": "PHONE", "field_type": "multitext",
         "values": [{"value": "+7 (495) 777-00-00", "enum_id": 11, "enum_code": "WORK"}]},
        {"field_id": 2, "field_name": "Email", "field_code": "EMAIL", "field_type": "multitext",
         "values": [{"value": "info@technosfera.ru", "enum_code": "WORK"}]},
        {"field_id": 20, "field_name": "Реквизиты", "field_code": None, "field_type": "legal_entity",
         "values": [{"value": {"name": "ООО «Техносфера»", "entity_type": None, "vat_id": "7701234567",
                               "tax_registration_reason_code": "770101001", "address": "Москва", "kpp": None,
                               "external_uid": None}}]},
        {"field_id": 21, "field_name": "Город", "field_code": None, "field_type": "text",
         "values": [{"value": "Москва"}]},
        {"field_id": 22, "field_name": "Сотрудников", "field_code": None, "field_type": "numeric",
         "values": [{"value": "120"}]},
    ], "_embedded": {"tags": [], "contacts": [{"id": 7}, {"id": 8}]}}


def test_a_company_brings_its_lines_inn_city_manager_and_fields() -> None:
    record = mapping.company(COMPANY)
    assert record == CompanyRecord(
        "amocrm", "501", name="ООО «Техносфера»", inn="7701234567", city="Москва",
        phones=["+7 (495) 777-00-00"], emails=["info@technosfera.ru"], responsible_id="6100002",
        attributes={"Реквизиты": "ООО «Техносфера»", "Сотрудников": 120},
        created_at=at(NOW - 900), updated_at=at(NOW - 100))


@pytest.mark.parametrize(("field", "expected"), [
    ({"field_id": 9, "field_name": "ИНН организации", "field_code": None, "field_type": "text",
      "values": [{"value": "7707 083893"}]}, "7707083893"),
    ({"field_id": 9, "field_name": "Tax", "field_code": "INN", "field_type": "text",
      "values": [{"value": "500100732259"}]}, "500100732259"),  # a sole trader's ИНН has 12 digits
    ({"field_id": 9, "field_name": "ИНН", "field_code": None, "field_type": "text",
      "values": [{"value": "не знаю"}]}, None),
    ({"field_id": 9, "field_name": "ИНН", "field_code": None, "field_type": "text",
      "values": [{"value": "12345"}]}, None),
])
def test_the_inn_comes_from_a_field_named_or_coded_so_when_it_is_one(field: dict[str, Any],
                                                                   expected: str | None) -> None:
    assert mapping.company({"id": 1, "name": "ИП Петров", "custom_fields_values": [field]}).inn == expected


@responses.activate
def test_contacts_read_after_companies_carry_their_ids_names_and_manager() -> None:
    source = make_source()
    responses.get(f"{BASE}/api/v4/companies", json=listing("companies", [COMPANY]))
    responses.get(f"{BASE}/api/v4/contacts", json=listing("contacts", [
        {"id": 7, "name": "Кирилл Орлов", "first_name": "Кирилл", "last_name": "Орлов", "responsible_user_id": 6100003,
         "_embedded": {"tags": [], "companies": [{"id": 501, "_links": {}}, {"id": 502, "_links": {}}]}}]))
    companies = [r for p in source.read("companies", None, True) for r in p.records]
    people = [r for p in source.read("contacts", None, True) for r in p.records]
    assert [c.external_id for c in companies] == ["501"]
    person = people[0]
    assert isinstance(person, ContactRecord)
    assert person.company_external_ids == ["501", "502"] and person.company == "ООО «Техносфера»"
    assert person.responsible_id == "6100003"


# --- leads: stages ---------------------------------------------------------------------------

PIPELINES_BODY = {"_embedded": {"pipelines": [
    {"id": 10, "name": "Продажи", "_embedded": {"statuses": [
        {"id": 101, "name": "Первичный контакт", "pipeline_id": 10},
        {"id": 102, "name": "Переговоры", "pipeline_id": 10},
        {"id": 142, "name": "Успешно реализовано", "pipeline_id": 10},
        {"id": 143, "name": "Закрыто и не реализовано", "pipeline_id": 10}]}},
    {"id": 20, "name": "Опт", "_embedded": {"statuses": [
        {"id": 201, "name": "Заявка", "pipeline_id": 20}, {"id": 142, "name": "Оплачено", "pipeline_id": 20},
        {"id": 143, "name": "Отказ", "pipeline_id": 20}]}},
]}}


def moved(event_id: str, lead: int, pipeline: int, status: int, when: int) -> dict[str, Any]:
    return {"id": event_id, "type": "lead_status_changed", "entity_id": lead, "entity_type": "lead",
            "created_by": 6100001, "created_at": when, "account_id": 1,
            "value_before": [{"lead_status": {"id": 101, "pipeline_id": pipeline}}],
            "value_after": [{"lead_status": {"id": status, "pipeline_id": pipeline}}]}


def lead(i: int, pipeline: int, status: int, updated: int, **extra: Any) -> dict[str, Any]:
    return {"id": i, "name": f"Сделка {i}", "price": 1000, "responsible_user_id": 6100004, "pipeline_id": pipeline,
            "status_id": status, "created_at": NOW - 90_000, "updated_at": updated, "closed_at": None,
            "_embedded": {"tags": [{"id": 1, "name": "опт"}], "companies": [{"id": 501}],
                          "contacts": [{"id": 7, "is_main": True}]}, **extra}


@responses.activate
def test_a_full_read_of_leads_gives_pipeline_and_stage_names_and_when_each_entered_its_stage() -> None:
    source = make_source()
    responses.get(f"{BASE}/api/v4/leads/pipelines", json=PIPELINES_BODY)
    responses.get(f"{BASE}/api/v4/events", json=listing("events", [
        moved("e3", 1, 10, 102, NOW - 5_000),   # the latest move of lead 1, into where it stands
        moved("e2", 2, 10, 102, NOW - 6_000),   # lead 2's known move is into a stage it has left since
        moved("e1", 1, 10, 101, NOW - 9_000),
    ]))
    responses.get(f"{BASE}/api/v4/leads", json=listing("leads", [
        lead(1, 10, 102, NOW - 1_000),
        lead(2, 10, 101, NOW - 2_000),            # no move into 101 known: counts from its last change
        lead(3, 20, 142, NOW - 3_000, closed_at=NOW - 3_000),
        lead(4, 30, 301, NOW - 4_000),            # a pipeline the account no longer lists
    ]))
    orders = [r for p in source.read("orders", None, True) for r in p.records]
    assert all(isinstance(o, OrderRecord) for o in orders)
    first, second, won, unknown = orders
    assert (first.pipeline, first.stage, first.stage_entered_at) == ("Продажи", "Переговоры", at(NOW - 5_000))
    assert (second.stage, second.stage_entered_at) == ("Первичный контакт", at(NOW - 2_000))
    assert (won.pipeline, won.stage, won.status, won.stage_entered_at) == ("Опт", "Оплачено", "won", at(NOW - 3_000))
    assert (unknown.pipeline, unknown.stage) == ("30", "301")
    assert first.company_external_id == "501" and first.responsible_id == "6100004" and first.tags == ["опт"]
    query = responses.calls[1].request.url
    assert "filter%5Btype%5D=lead_status_changed" in query
    # Only moves into open stages are asked for: three of them across both pipelines.
    assert query.count("leads_statuses") == 6 and "142" not in query.split("leads_statuses")[-1]


@responses.activate
def test_an_incremental_read_keeps_the_stage_time_of_a_lead_edited_without_moving() -> None:
    source = make_source()
    responses.get(f"{BASE}/api/v4/leads/pipelines", json=PIPELINES_BODY)
    responses.get(f"{BASE}/api/v4/leads", json=listing("leads", [
        lead(1, 10, 102, NOW - 50), lead(2, 10, 102, NOW - 40), lead(3, 10, 142, NOW - 30, closed_at=NOW - 30)]))
    # The window's moves: lead 1 moved just now.
    responses.get(f"{BASE}/api/v4/events", json=listing("events", [moved("e9", 1, 10, 102, NOW - 50)]),
                  match=[responses.matchers.query_param_matcher({"filter[created_at][from]": str(NOW - 600 - 120)},
                                                                strict_match=False)])
    # Lead 2 had only its price changed: its own latest move is asked for by id.
    responses.get(f"{BASE}/api/v4/events", json=listing("events", [moved("e1", 2, 10, 102, NOW - 500_000)]),
                  match=[responses.matchers.query_param_matcher({"filter[entity_id]": "2", "filter[entity]": "lead"},
                                                                strict_match=False)])
    pages = list(source.read("orders", json.dumps({"since": NOW - 600}), False))
    orders = {r.external_id: r for p in pages for r in p.records if isinstance(r, OrderRecord)}
    assert orders["1"].stage_entered_at == at(NOW - 50)
    assert orders["2"].stage_entered_at == at(NOW - 500_000)
    assert orders["3"].stage_entered_at == at(NOW - 30)
    assert len(responses.calls) == 4  # pipelines, leads, the window's moves, lead 2's


# --- activities -------------------------------------------------------------------------------

def note(i: int, note_type: str, created: int, **params: Any) -> dict[str, Any]:
    return {"id": i, "entity_id": 7, "created_by": 6100002, "updated_by": 6100002, "created_at": created,
            "updated_at": created, "responsible_user_id": 6100002, "group_id": 0, "note_type": note_type,
            "params": {"uniq": f"u{i}", "source": "Телефония", "phone": "+79161234567", "link": "", **params},
            "account_id": 1}


def test_call_notes_become_calls_with_direction_duration_and_missed() -> None:
    talked = mapping.call_note(note(1, "call_in", NOW, duration=95, call_status=4, call_result="Договорились"),
                               "contacts")
    missed = mapping.call_note(note(2, "call_in", NOW, duration=0, call_status=6), "contacts")
    busy = mapping.call_note(note(3, "call_in", NOW, duration=0, call_status=7), "companies")
    unreported = mapping.call_note(note(4, "call_in", NOW, duration="0"), "contacts")
    outgoing = mapping.call_note(note(5, "call_out", NOW, duration=0, call_status=6), "contacts")
    assert talked == ActivityRecord("amocrm", "note:1", "call", at(NOW), contact_external_id="7", direction="in",
                                    missed=False, duration_s=95, subject="Договорились", responsible_id="6100002",
                                    call_id="Телефония:u1")  # the telephony and its id of the call
    assert missed is not None and missed.missed and missed.duration_s == 0
    assert busy is not None and busy.missed and busy.company_external_id == "7" and busy.contact_external_id is None
    assert unreported is not None and unreported.missed  # no call_status: nobody talked for 0 seconds
    assert outgoing is not None and outgoing.direction == "out" and not outgoing.missed
    assert mapping.call_note(note(6, "common", NOW, text="Привет"), "contacts") is None
    on_lead = mapping.call_note(note(7, "call_in", NOW, duration=30, call_status=4), "leads")
    assert on_lead is not None and (on_lead.order_external_id, on_lead.contact_external_id) == ("7", None)


def test_tasks_become_calls_meetings_and_tasks_done_or_planned() -> None:
    base = {"entity_id": 7, "entity_type": "contacts", "responsible_user_id": 6100003, "created_at": NOW - 99,
            "updated_at": NOW - 50, "complete_till": NOW + 3600, "text": "Встреча в офисе", "duration": 3600}
    meeting = mapping.task({**base, "id": 1, "task_type_id": 2, "is_completed": False})
    call = mapping.task({**base, "id": 2, "task_type_id": 1, "is_completed": True, "duration": 0})
    own = mapping.task({**base, "id": 3, "task_type_id": 5012, "is_completed": False, "entity_type": "companies"})
    assert meeting == ActivityRecord("amocrm", "task:1", "meeting", at(NOW + 3600), contact_external_id="7",
                                     done=False, duration_s=3600, subject="Встреча в офисе", responsible_id="6100003")
    assert call is not None and call.kind == "call" and call.done and call.duration_s is None
    assert own is not None and own.kind == "task" and own.company_external_id == "7"
    on_lead = mapping.task({**base, "id": 4, "task_type_id": 1, "entity_type": "leads"})
    assert on_lead is not None and (on_lead.order_external_id, on_lead.contact_external_id) == ("7", None)
    assert mapping.task({**base, "id": 5, "task_type_id": 1, "entity_type": "customers"}) is None


@responses.activate
def test_activities_read_in_full_resume_after_the_last_stored_page() -> None:
    source = make_source()
    responses.get(f"{BASE}/api/v4/contacts/notes", json=listing("notes", [note(1, "call_in", NOW, duration=3)],
                                                               path="contacts/notes"))
    responses.get(f"{BASE}/api/v4/companies/notes", status=204, body="")
    responses.get(f"{BASE}/api/v4/leads/notes", status=204, body="")
    responses.get(f"{BASE}/api/v4/tasks", json=listing("tasks", [
        {"id": 9, "entity_id": 7, "entity_type": "contacts", "task_type_id": 1, "is_completed": False,
         "complete_till": NOW, "text": "Перезвонить"}]))
    pages = list(source.read("activities", None, True))
    assert [p.cursor for p in pages] == ["contact_calls:1", "contact_tasks:1", "company_tasks:1", "lead_tasks:1"]
    assert [r.external_id for p in pages for r in p.records] == ["note:1", "task:9", "task:9", "task:9"]
    assert "filter%5Bnote_type%5D%5B%5D=call_in" in responses.calls[0].request.url
    responses.reset()
    responses.get(f"{BASE}/api/v4/tasks", status=204, body="",
                  match=[responses.matchers.query_param_matcher({"page": "2"}, strict_match=False)])
    responses.get(f"{BASE}/api/v4/tasks", json=listing("tasks", [
        {"id": 10, "entity_id": 8, "entity_type": "companies", "task_type_id": 2, "is_completed": True,
         "complete_till": NOW, "text": "Встреча"}]))
    responses.get(f"{BASE}/api/v4/leads/notes", status=204, body="")
    resumed = list(source.read("activities", "contact_tasks:1", True))
    assert [p.cursor for p in resumed] == ["company_tasks:1", "lead_tasks:1"]
    assert [(c.request.params.get("filter[entity_type]"), c.request.params["page"]) for c in responses.calls] == [
        ("contacts", "2"), ("companies", "1"), (None, "1"), ("leads", "1")]


# --- end to end -------------------------------------------------------------------------------

@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    account = Account(contacts=120, seed=7, b2b=True, activities=600)
    with SandboxServer(account) as server:
        yield server
    account.close()


def rows(conn: Any, model: Any) -> list[Any]:
    """The source's rows of a table, with their columns as attributes."""
    return list(conn.execute(select(model.__table__).where(model.__table__.c.source == "amocrm")).all())


def hub_json(*args: str) -> Any:
    result = CliRunner().invoke(cli, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.both_databases
def test_a_full_sync_through_the_cli_brings_companies_fields_stages_and_calls_then_a_new_call(
        hub_db: HubDB, plugin_manager: Any, sandbox: SandboxServer) -> None:
    plugin_manager.register(plugins.amocrm)
    plugins.amocrm.register_commands(cli)
    account = sandbox.account
    connected = CliRunner().invoke(cli, ["connect", "amocrm", "--base-url", sandbox.base_url,
                                         "--long-lived-token", account.issue_long_lived_token()])
    assert connected.exit_code == 0, connected.output

    report = hub_json("sync", "amocrm", "--full")
    assert report["errors"] == 0 and report["rate_limited"] == 0, report
    calls = account.calls("contacts") + account.calls("companies") + account.calls("leads")
    assert report["companies"]["created"] == len(account.company_ids())
    assert account.calls("leads") and report["activities"]["created"] == len(calls) + len(account.seeded_tasks)
    with hub_db.engine.connect() as conn:
        companies = {c.external_id: c for c in rows(conn, Company)}
        fields = {(f.entity, f.code): f for f in rows(conn, CustomField)}
        orders = {o.external_id: o for o in rows(conn, Order)}
        links = conn.execute(select(ContactCompany.contact_id, ContactCompany.company_id)).all()
        refs = dict(conn.execute(select(ExternalRef.external_id, ExternalRef.contact_id)
                                 .where(ExternalRef.source == "amocrm")).all())
        logged = {a.external_id: a for a in rows(conn, Activity)}

    technosfera = next(c for c in companies.values() if c.name == "ООО «Техносфера»")
    assert technosfera.inn == "7701234567" and technosfera.city == "Москва"
    assert fields[("company", "Отрасль")].type == "list" and fields[("company", "Отрасль")].options
    assert fields[("contact", "Интересы")].multiple and fields[("order", "Доставка")].type == "datetime"
    assert fields[("order", "Срочно")].type == "boolean" and ("contact", "PHONE") not in fields
    company_id_by_ext = {ext: c.id for ext, c in companies.items()}
    expected_links = {(refs[str(cid)], company_id_by_ext[str(company)])
                      for company in account.company_ids()
                      for cid in [c["id"] for c in (account.company(company, with_contacts=True) or {})
                                  ["_embedded"]["contacts"]]}
    assert expected_links and expected_links <= {tuple(link) for link in links}

    names = {p.id: p.name for p in PIPELINES}
    stages = {s.id: s.name for p in PIPELINES for s in p.statuses}
    moves = {e["entity_id"]: e["created_at"] for e in account.events if e["type"] == "lead_status_changed"}
    checked = 0
    for lead_id in account.lead_ids():
        row = account.lead(lead_id) or {}
        held = orders[str(lead_id)]
        assert held.pipeline == names[row["pipeline_id"]] and held.stage == stages[row["status_id"]]
        if row["status_id"] not in (142, 143):
            entered = moves.get(lead_id, row["updated_at"])
            assert held.stage_entered_at is not None
            assert held.stage_entered_at.replace(tzinfo=UTC) == at(entered)
            checked += 1
    assert checked and any(lead_id in moves for lead_id in account.lead_ids())

    missed = [c for c in calls if c["note_type"] == "call_in" and c["params"]["call_status"] != 4]
    assert missed and all(logged[f"note:{c['id']}"].missed for c in missed)
    assert all(logged[f"note:{c['id']}"].duration_s == c["params"]["duration"] for c in calls)

    person = account.contact_ids()[0]
    note_id = account.add_call("contacts", person, incoming=True, duration=0, call_status=6)
    again = hub_json("sync", "amocrm")
    assert again["kind"] == "incremental" and again["activities"]["created"] == 1
    with hub_db.engine.connect() as conn:
        new = conn.execute(select(Activity.__table__).where(Activity.external_id == f"note:{note_id}")).one()
    assert new.kind == "call" and new.direction == "in" and new.missed and new.contact_id == refs[str(person)]


def test_the_emulator_links_companies_both_ways_and_filters_moves_and_calls_as_amocrm_does() -> None:
    account = Account(contacts=60, seed=3, b2b=True, activities=300, rate_limit=None)
    headers = {"Authorization": f"Bearer {account.issue_long_lived_token()}"}

    def get(target: str) -> Any:
        answer = account.handle("GET", target, headers=headers)
        assert answer.status in (200, 204), answer.body
        return answer.json()

    companies = get("/api/v4/companies?with=contacts&limit=250")["_embedded"]["companies"]
    technosfera = next(c for c in companies if c["name"] == "ООО «Техносфера»")
    members = [c["id"] for c in technosfera["_embedded"]["contacts"]]
    assert len(members) == 3
    person = get(f"/api/v4/contacts/{members[0]}")
    assert [c["id"] for c in person["_embedded"]["companies"]] == [technosfera["id"]]
    fields = {f["field_name"]: f for f in technosfera["custom_fields_values"]}
    assert mapping.inn(technosfera) == "7701234567" and fields["Город"]["values"][0]["value"] == "Москва"

    assert len(get("/api/v4/contacts/custom_fields?limit=5&page=1")["_embedded"]["custom_fields"]) == 5
    assert get("/api/v4/leads/custom_fields?limit=50&page=2") is None  # 204 past the last page

    seeded = [e["value_after"][0]["lead_status"] for e in account.events if e["type"] == "lead_status_changed"]
    assert seeded  # open leads past their pipeline's first stage moved there
    target = seeded[0]
    query = (f"filter[type]=lead_status_changed&filter[value_after][leads_statuses][0][pipeline_id]="
             f"{target['pipeline_id']}&filter[value_after][leads_statuses][0][status_id]={target['id']}&limit=100")
    moves = get(f"/api/v4/events?{query}")["_embedded"]["events"]
    assert [e["value_after"][0]["lead_status"] for e in moves] == [s for s in seeded if s == target]
    assert get(query.replace(f"[status_id]={target['id']}", "[status_id]=1").join(("/api/v4/events?", ""))) is None

    calls = account.calls("contacts")
    middle = calls[len(calls) // 2]["created_at"]
    window = get(f"/api/v4/contacts/notes?filter[note_type][]=call_in&filter[note_type][]=call_out"
                 f"&filter[updated_at][from]={middle}&limit=250")["_embedded"]["notes"]
    assert window and all(n["updated_at"] >= middle for n in window)
    assert len(window) == sum(1 for c in calls if c["created_at"] >= middle)
    incoming = get("/api/v4/contacts/notes?filter[note_type]=call_in&limit=250")["_embedded"]["notes"]
    assert incoming and {n["note_type"] for n in incoming} == {"call_in"}
