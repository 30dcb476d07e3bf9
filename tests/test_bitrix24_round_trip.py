"""Bitrix24's round trip: custom fields, companies, activities and stage history in; erasure, scores and
tasks out. Unit tests answer with payloads in the documented shapes (`responses`); the end-to-end ones
run the real CLI against the plugin's portal emulator.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from typing import Any, Iterator

import pytest
import responses
from sqlalchemy import select

import plugins.bitrix24 as bitrix24_plugin
from hub.api import CompanyRecord, FieldDefinition, OrderRecord, Settings
from hub.models import Activity, Company, ContactCompany, CustomField, ExternalRef, Order
from hub.ratelimit import LocalBucket
from plugins.bitrix24 import fields, mapping
from plugins.bitrix24.client import Bitrix24Error, Client, WebhookAuth
from plugins.bitrix24.sandbox import Portal, SandboxServer
from plugins.bitrix24.source import Bitrix24Source
from tests.conftest import HubDB
from tests.support.cli import cli, run_ok

HOOK = "https://shop.bitrix24.ru/rest/1/s3cr3tc0de/"
TIME = {"start": 1724916859.4, "finish": 1724916859.5, "duration": 0.1, "processing": 0.05}
UTC = dt.timezone.utc


def source(**options: Any) -> Bitrix24Source:
    settings = Settings(extra={"bitrix24": options}) if options else Settings()
    return Bitrix24Source(settings, client=Client(WebhookAuth(HOOK), LocalBucket(1000, 1000), sleep=lambda s: None))


def batch(results: dict[str, Any], errors: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"result": {"result": results or [], "result_error": errors or [], "result_total": [],
                       "result_next": [], "result_time": []}, "time": TIME}


def sent(call: Any) -> dict[str, Any]:
    return json.loads(call.request.body)


def method(call: Any) -> str:
    return str(call.request.url).rsplit("/", 1)[-1]


# crm.contact.fields as the documentation shows custom fields (labels in the portal's language).
CONTACT_FIELDS = {
    "ID": {"type": "integer", "isMultiple": False, "isDynamic": False, "title": "ID"},
    "UF_CRM_CHANNEL": {"type": "enumeration", "isMultiple": False, "isDynamic": True, "title": "UF_CRM_CHANNEL",
                       "listLabel": "Откуда узнал", "formLabel": "Откуда узнал", "filterLabel": "Откуда узнал",
                       "items": [{"ID": "44", "VALUE": "Выставка"}, {"ID": "45", "VALUE": "Сайт"}]},
    "UF_CRM_INTERESTS": {"type": "enumeration", "isMultiple": True, "isDynamic": True, "title": "UF_CRM_INTERESTS",
                         "formLabel": "Интересы", "items": [{"ID": "52", "VALUE": "Одежда"},
                                                            {"ID": "53", "VALUE": "Обувь"}]},
    "UF_CRM_VIP": {"type": "boolean", "isMultiple": False, "isDynamic": True, "title": "UF_CRM_VIP",
                   "listLabel": "VIP"},
    "UF_CRM_FIRST_VISIT": {"type": "date", "isMultiple": False, "isDynamic": True, "title": "UF_CRM_FIRST_VISIT",
                           "formLabel": "Первый визит"},
    "UF_CRM_CALLBACK_AT": {"type": "datetime", "isMultiple": False, "isDynamic": True,
                           "title": "UF_CRM_CALLBACK_AT", "formLabel": "Перезвонить"},
    "UF_CRM_SCORE": {"type": "double", "isMultiple": False, "isDynamic": True, "title": "UF_CRM_SCORE",
                     "formLabel": "Оценка"},
    "UF_CRM_PHOTO": {"type": "file", "isMultiple": False, "isDynamic": True, "title": "UF_CRM_PHOTO"},
    "UF_CRM_NOTE": {"type": "string", "isMultiple": False, "isDynamic": True, "title": "UF_CRM_NOTE"},
}


def test_field_definitions_are_typed_and_named_as_the_portal_shows_them() -> None:
    found = {d.code: d for d in fields.definitions("contact", CONTACT_FIELDS)}
    assert set(found) == {"UF_CRM_CHANNEL", "UF_CRM_INTERESTS", "UF_CRM_VIP", "UF_CRM_FIRST_VISIT",
                          "UF_CRM_CALLBACK_AT", "UF_CRM_SCORE", "UF_CRM_NOTE"}  # files carry no usable value
    channel = found["UF_CRM_CHANNEL"]
    assert (channel.name, channel.type, channel.multiple) == ("Откуда узнал", "list", False)
    assert channel.options == [{"id": "44", "value": "Выставка"}, {"id": "45", "value": "Сайт"}]
    assert found["UF_CRM_INTERESTS"].multiple and found["UF_CRM_VIP"].name == "VIP"
    assert [found[c].type for c in ("UF_CRM_VIP", "UF_CRM_FIRST_VISIT", "UF_CRM_CALLBACK_AT", "UF_CRM_SCORE")] == [
        "boolean", "date", "datetime", "number"]
    assert found["UF_CRM_NOTE"].name == "UF_CRM_NOTE"  # no label given: the code
    row = {"UF_CRM_CHANNEL": "45", "UF_CRM_INTERESTS": ["52", "53", "99"], "UF_CRM_VIP": "1",
           "UF_CRM_FIRST_VISIT": "2024-05-01T03:00:00+03:00", "UF_CRM_CALLBACK_AT": "2024-05-02T10:30:00+03:00",
           "UF_CRM_SCORE": "42", "UF_CRM_NOTE": "  ", "UF_CRM_PHOTO": {"id": 5}}
    assert fields.attributes(row, found) == {
        "UF_CRM_CHANNEL": "Сайт", "UF_CRM_INTERESTS": ["Одежда", "Обувь"], "UF_CRM_VIP": True,
        "UF_CRM_FIRST_VISIT": "2024-05-01", "UF_CRM_CALLBACK_AT": "2024-05-02T07:30:00+00:00", "UF_CRM_SCORE": 42}
    assert fields.attributes({"UF_CRM_VIP": "0", "UF_CRM_SCORE": "1.5", "UF_CRM_INTERESTS": []}, found) == {
        "UF_CRM_VIP": False, "UF_CRM_SCORE": 1.5}
    assert fields.attributes({"UF_CRM_VIP": "N", "UF_CRM_SCORE": "не число", "UF_CRM_CHANNEL": "<b>1</b>"},
                             found) == {"UF_CRM_VIP": False}


@responses.activate
def test_the_directories_cost_one_request_and_the_fields_entity_yields_them() -> None:
    s = source()
    responses.post(HOOK + "batch", json=batch({
        "contact": CONTACT_FIELDS, "company": {"UF_CRM_SEGMENT": {"type": "enumeration", "isMultiple": False,
                                                                  "formLabel": "Сегмент", "items": []}},
        "order": {"UF_CRM_PROMO_CODE": {"type": "string", "isMultiple": False, "formLabel": "Промокод"}},
        "categories": {"categories": [{"id": 0, "name": "Общая"}, {"id": 1, "name": "Опт"}]},
        "stages": [{"ENTITY_ID": "DEAL_STAGE_1", "STATUS_ID": "C1:EXECUTING", "NAME": "В работе"},
                   {"ENTITY_ID": "SOURCE", "STATUS_ID": "WEB", "NAME": "Веб-сайт"}]}))
    (page,) = list(s.read("fields", None, True))
    codes = {(d.entity, d.code) for d in page.records if isinstance(d, FieldDefinition)}
    assert codes >= {("company", "UF_CRM_SEGMENT"), ("order", "UF_CRM_PROMO_CODE"), ("contact", "UF_CRM_VIP")}
    directory = s.directory()
    assert directory["pipelines"] == {"0": "Общая", "1": "Опт"} and directory["stages"] == {"C1:EXECUTING": "В работе"}
    assert len(responses.calls) == 1
    assert set(sent(responses.calls[0])["cmd"]) == {"contact", "company", "order", "categories", "stages"}


def test_companies_map_with_their_inn_phones_and_manager() -> None:
    row = {"ID": "7", "TITLE": "ООО «Вектор»", "ADDRESS_CITY": "Москва", "ASSIGNED_BY_ID": "3",
           "DATE_CREATE": "2024-08-15T10:38:21+03:00", "DATE_MODIFY": "2024-08-16T10:00:00+03:00",
           "PHONE": [{"ID": "1", "VALUE_TYPE": "WORK", "VALUE": "+7 (495) 123-40-00"}],
           "EMAIL": [{"ID": "2", "VALUE_TYPE": "WORK", "VALUE": "info@vektor-m.ru"}]}
    company = mapping.company(row, "7701234560", {"UF_CRM_SEGMENT": "Опт"})
    assert (company.external_id, company.name, company.inn, company.city) == ("7", "ООО «Вектор»", "7701234560",
                                                                              "Москва")
    assert company.phones == ["+7 (495) 123-40-00"] and company.emails == ["info@vektor-m.ru"]
    assert company.responsible_id == "3" and company.attributes == {"UF_CRM_SEGMENT": "Опт"}
    assert company.created_at == dt.datetime(2024, 8, 15, 7, 38, 21, tzinfo=UTC)
    person = mapping.contact({"ID": "9", "NAME": "Ирина", "COMPANY_ID": "7", "COMPANY_IDS": ["7", "8"],
                              "ASSIGNED_BY_ID": "2"})
    assert person.company_external_ids == ["7", "8"] and person.responsible_id == "2"
    assert mapping.contact({"ID": "10", "COMPANY_ID": "0", "ASSIGNED_BY_ID": ""}).company_external_ids == []


@responses.activate
def test_a_page_of_companies_costs_one_more_request_for_all_their_requisites() -> None:
    s = source()
    s._directory = {"fields": {}, "pipelines": {}, "stages": {}}
    responses.post(HOOK + "batch", json=batch({"p0": [
        {"ID": "101", "ENTITY_ID": "7", "RQ_INN": ""}, {"ID": "102", "ENTITY_ID": "7", "RQ_INN": "7701234560"},
        {"ID": "103", "ENTITY_ID": "8", "RQ_INN": "7801234564"}, {"ID": "104", "ENTITY_ID": "8", "RQ_INN": "1"},
        {"ID": "105", "ENTITY_ID": "12", "RQ_INN": "500100732259"}]}))
    rows = [{"ID": str(i), "TITLE": f"Компания {i}"} for i in (7, 8, 9, 10)]
    records = [r for r in s._records("companies", rows) if isinstance(r, CompanyRecord)]
    assert [r.inn for r in records] == ["7701234560", "7801234564", None, None]  # 12 is not on this page
    (call,) = responses.calls
    command = sent(call)["cmd"]["p0"]
    assert command.startswith("crm.requisite.list?") and "ENTITY_TYPE_ID%5D=4" in command
    assert "%3E%3DENTITY_ID%5D=7" in command and "%3C%3DENTITY_ID%5D=10" in command


def call_row(**extra: Any) -> dict[str, Any]:
    row = {"ID": "501", "OWNER_TYPE_ID": "3", "OWNER_ID": "12", "TYPE_ID": "2", "PROVIDER_ID": "VOXIMPLANT_CALL",
           "DIRECTION": "2", "SUBJECT": "Исходящий звонок", "START_TIME": "2024-08-15T10:00:00+03:00",
           "END_TIME": "2024-08-15T10:03:20+03:00", "COMPLETED": "Y", "RESPONSIBLE_ID": "3", "SETTINGS": [],
           "CREATED": "2024-08-15T10:00:00+03:00", "LAST_UPDATED": "2024-08-15T10:03:21+03:00"}
    row.update(extra)
    return row


def test_activities_map_kind_direction_duration_and_missed_calls() -> None:
    out = mapping.activity(call_row())
    assert out is not None
    assert (out.kind, out.direction, out.duration_s, out.missed, out.done) == ("call", "out", 200, False, True)
    assert out.contact_external_id == "12" and out.company_external_id is None and out.responsible_id == "3"
    assert out.at == dt.datetime(2024, 8, 15, 7, 0, tzinfo=UTC) and out.subject == "Исходящий звонок"
    missed = mapping.activity(call_row(DIRECTION="1", END_TIME="2024-08-15T10:00:00+03:00", COMPLETED="N",
                                       SETTINGS={"MISSED_CALL": True}, SUBJECT="Пропущенный звонок"))
    assert missed is not None and (missed.direction, missed.missed, missed.duration_s, missed.done) == (
        "in", True, 0, False)
    # No SETTINGS mark: an open incoming call of no length is missed too; an answered one is not.
    assert mapping.missed(call_row(DIRECTION="1", END_TIME="2024-08-15T10:00:00+03:00", COMPLETED="N"))
    assert not mapping.missed(call_row(DIRECTION="1"))
    meeting = mapping.activity(call_row(TYPE_ID="1", PROVIDER_ID="CRM_MEETING", DIRECTION="0", OWNER_TYPE_ID="4"))
    assert meeting is not None and (meeting.kind, meeting.direction, meeting.duration_s) == ("meeting", None, None)
    assert meeting.company_external_id == "12" and meeting.contact_external_id is None
    email = mapping.activity(call_row(TYPE_ID="4", PROVIDER_ID="CRM_EMAIL", DIRECTION="1"))
    todo = mapping.activity(call_row(TYPE_ID="6", PROVIDER_ID="CRM_TODO", COMPLETED="N"))
    assert email is not None and todo is not None
    assert (email.kind, email.direction) == ("email", "in") and (todo.kind, todo.done) == ("task", False)
    assert mapping.activity(call_row(TYPE_ID="6", PROVIDER_ID="REST_APP")) is None  # an app's own kind
    assert mapping.activity(call_row(START_TIME="", CREATED="")) is None


@responses.activate
def test_deals_keep_pipeline_stage_manager_and_when_they_entered_the_stage() -> None:
    s = source()
    s._directory = {"fields": {}, "pipelines": {"0": "Общая", "1": "Опт"}, "stages": {"C1:EXECUTING": "В работе"}}
    moved = {"ID": "1", "CONTACT_ID": "5", "COMPANY_ID": "7", "CATEGORY_ID": "1", "STAGE_ID": "C1:EXECUTING",
             "STAGE_SEMANTIC_ID": "P", "CLOSED": "N", "ASSIGNED_BY_ID": "3", "MOVED_TIME": "2024-08-01T12:00:00+03:00",
             "OPPORTUNITY": "1500.00"}
    unmoved = {**moved, "ID": "2", "MOVED_TIME": "", "CATEGORY_ID": "0", "STAGE_ID": "PREPARATION"}
    # crm.stagehistory.list, newest first: deal 2 came back to PREPARATION on 5 August.
    responses.post(HOOK + "batch", json=batch({"h0": {"items": [
        {"ID": "31", "OWNER_ID": "2", "STAGE_ID": "PREPARATION", "CREATED_TIME": "2024-08-05T09:00:00+03:00"},
        {"ID": "30", "OWNER_ID": "2", "STAGE_ID": "NEW", "CREATED_TIME": "2024-08-04T09:00:00+03:00"},
        {"ID": "29", "OWNER_ID": "2", "STAGE_ID": "PREPARATION", "CREATED_TIME": "2024-08-03T09:00:00+03:00"}]}}))
    first, second = [r for r in s._records("orders", [moved, unmoved]) if isinstance(r, OrderRecord)]
    assert (first.pipeline, first.stage, first.company_external_id, first.responsible_id) == (
        "Опт", "В работе", "7", "3")
    assert first.stage_entered_at == dt.datetime(2024, 8, 1, 9, 0, tzinfo=UTC)
    assert (second.pipeline, second.stage) == ("Общая", "PREPARATION")  # a stage the directory lacks keeps its id
    assert second.stage_entered_at == dt.datetime(2024, 8, 5, 6, 0, tzinfo=UTC)
    (call,) = responses.calls  # only the deal without MOVED_TIME is looked up
    command = sent(call)["cmd"]["h0"]
    assert command.startswith("crm.stagehistory.list?") and "entityTypeId=2" in command
    assert "OWNER_ID%5D%5B%5D=2" in command and "OWNER_ID%5D%5B%5D=1" not in command


@responses.activate
def test_erasing_deletes_the_contact_and_a_contact_already_gone_counts_as_deleted() -> None:
    s = source()
    responses.post(HOOK + "crm.contact.delete", json={"result": True, "time": TIME})
    responses.post(HOOK + "crm.contact.delete", status=400,
                   json={"error": "", "error_description": "Contact is not found"})
    responses.post(HOOK + "crm.contact.delete", status=400,
                   json={"error": "ACCESS_DENIED", "error_description": "Access denied."})
    assert s.erase_contact("12") == "deleted"
    assert sent(responses.calls[0])["id"] == 12
    assert s.erase_contact("13") == "deleted"
    with pytest.raises(Bitrix24Error):
        s.erase_contact("14")
    with pytest.raises(Bitrix24Error, match="not a contact id"):
        s.erase_contact("1; DROP")
    assert len(responses.calls) == 3


@responses.activate
def test_scores_go_out_fifty_contacts_a_request_and_unmapped_names_are_skipped() -> None:
    s = source(fields={"lead_score": "UF_CRM_SCORE", "lifecycle": "UF_CRM_STAGE"})
    values = [(str(i), "lead_score", i) for i in range(1, 61)] + [("1", "lifecycle", "regular"),
                                                                    ("2", "nps", 9)]
    responses.post(HOOK + "batch", json=batch({f"u{i}": True for i in range(1, 51)}))
    responses.post(HOOK + "batch", json=batch(
        {f"u{i}": True for i in range(51, 60)},
        {"u60": {"error": "", "error_description": "Contact is not found"}}))
    written = s.set_fields(values)
    assert written == [str(i) for i in range(1, 60)]  # 60 was deleted in the portal meanwhile
    assert len(responses.calls) == 2
    first = sent(responses.calls[0])["cmd"]
    assert len(first) == 50 and "UF_CRM_SCORE%5D=1" in first["u1"] and "UF_CRM_STAGE%5D=regular" in first["u1"]
    assert "nps" not in json.dumps(first) and "UF_CRM_STAGE" not in first["u2"]
    assert source().set_fields([("1", "lead_score", 5)]) == []  # nothing mapped: nothing sent
    assert s.set_fields([("x1", "lead_score", 5), ("", "lead_score", 5)]) == []  # not portal ids
    assert len(responses.calls) == 2


@responses.activate
def test_a_task_for_the_known_manager_costs_one_request() -> None:
    s = source()
    responses.post(HOOK + "crm.activity.todo.add", json={"result": {"id": 77}, "time": TIME})
    responses.post(HOOK + "crm.contact.get", json={"result": {"ID": "5", "ASSIGNED_BY_ID": "4"}, "time": TIME})
    due = dt.datetime(2024, 9, 1, 9, tzinfo=UTC)
    assert s.add_task("5", "Позвонить", due_at=due, responsible_id="3") == "77"
    assert [method(c) for c in responses.calls] == ["crm.activity.todo.add"]
    assert sent(responses.calls[0])["responsibleId"] == 3
    assert s.add_task("5", "Позвонить", due_at=due) == "77"  # unknown manager: looked up first
    assert [method(c) for c in responses.calls[1:]] == ["crm.contact.get", "crm.activity.todo.add"]
    assert sent(responses.calls[2])["responsibleId"] == 4


# --- end to end, against the emulator, through the CLI ---------------------------------------------------

TODAY = dt.date(2025, 6, 1)


@pytest.fixture
def portal() -> Iterator[SandboxServer]:
    server = SandboxServer(Portal(contacts=120, seed=7, today=TODAY, b2b=True, activities=400)).start()
    yield server
    server.stop()
    server.portal.close()


@pytest.fixture
def hub(hub_db: HubDB, plugin_manager: Any) -> HubDB:
    plugin_manager.register(bitrix24_plugin, name="bitrix24")
    bitrix24_plugin.register_commands(cli)
    return hub_db


def sync_json(*extra: str) -> dict[str, Any]:
    return json.loads(run_ok("sync", "bitrix24", "--json", *extra).output)


@pytest.mark.both_databases
def test_a_full_sync_brings_companies_activities_and_custom_fields(hub: HubDB, portal: SandboxServer) -> None:
    p = portal.portal
    run_ok("connect", "bitrix24", "--webhook", portal.webhook_url)
    report = sync_json("--full")
    assert report["errors"] == 0 and report["rate_limited"] == 0
    assert report["companies"]["created"] == p.company_count
    assert report["fields"] >= 12
    with hub.engine.connect() as conn:
        activities = conn.execute(select(Activity.__table__)).mappings().all()
        companies = {r.external_id: r for r in conn.execute(select(Company.__table__)).mappings()}
        defined = {r.code: r for r in conn.execute(select(CustomField.__table__)).mappings()}
        links = conn.execute(select(ContactCompany.__table__)).mappings().all()
        refs = {r.external_id: r for r in conn.execute(select(ExternalRef.__table__).where(
            ExternalRef.source == "bitrix24")).mappings()}
        orders = conn.execute(select(Order.__table__)).mappings().all()
    # Contacts' and companies' activities arrive; Hub writes them all.
    assert len(activities) == report["activities"]["created"] == p.activity_count
    assert {a.kind for a in activities} == {"call", "meeting", "email", "task"}
    missed = [a for a in activities if a.missed]
    assert missed and all(a.kind == "call" and a.direction == "in" for a in missed)
    assert any(a.duration_s and a.duration_s > 0 for a in activities if a.kind == "call")
    vector = companies["1"]
    assert vector.name == "ООО «Вектор»" and vector.inn == p.company_inn(1) == "7701234560"
    assert vector.city == "Москва" and "+74951234000" in vector.phones
    assert defined["UF_CRM_CHANNEL"].name == "Откуда узнал" and defined["UF_CRM_CHANNEL"].type == "list"
    assert defined["UF_CRM_INTERESTS"].multiple and defined["UF_CRM_SEGMENT"].entity == "company"
    assert links  # who works where
    # A contact's custom field values arrive typed, and their manager is kept for tasks.
    held = p.contact(1)
    ref = refs["1"]
    assert ref.responsible_id == held["ASSIGNED_BY_ID"]
    open_deals = [o for o in orders if o.status == "open"]
    assert open_deals and all(o.pipeline and o.stage and o.stage_entered_at for o in open_deals)
    assert {o.pipeline for o in orders} <= {"Общая", "Опт", "Повторные продажи"}


def test_an_incremental_sync_picks_up_a_new_missed_call(hub: HubDB, portal: SandboxServer) -> None:
    p = portal.portal
    run_ok("connect", "bitrix24", "--webhook", portal.webhook_url)
    sync_json("--full")
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    call_id = p.add_activity({"OWNER_TYPE_ID": 3, "OWNER_ID": 2, "TYPE_ID": 2, "PROVIDER_ID": "VOXIMPLANT_CALL",
                              "DIRECTION": 1, "SUBJECT": "Пропущенный звонок", "START_TIME": now.isoformat(),
                              "END_TIME": now.isoformat(), "COMPLETED": "N", "SETTINGS": {"MISSED_CALL": True}})
    report = sync_json()
    assert report["activities"]["created"] == 1 and report["requests"] <= 5
    with hub.engine.connect() as conn:
        row = conn.execute(select(Activity.__table__).where(Activity.external_id == str(call_id))).mappings().one()
    assert (row.kind, row.direction, row.missed, row.contact_external_id) == ("call", "in", True, "2")


def test_erasure_and_scores_reach_the_portal(hub: HubDB, portal: SandboxServer) -> None:
    p = portal.portal
    run_ok("connect", "bitrix24", "--webhook", portal.webhook_url)
    mapped = {"fields": {"lead_score": "UF_CRM_SCORE", "lifecycle": "UF_CRM_STAGE"}}
    s = Bitrix24Source(replace(hub.settings, extra={**hub.settings.extra, "bitrix24": mapped}))
    assert s.set_fields([("3", "lead_score", 42), ("3", "lifecycle", "regular"), ("4", "lead_score", 7)]) == [
        "3", "4"]
    assert p.contact(3)["UF_CRM_SCORE"] == "42.0" and p.contact(3)["UF_CRM_STAGE"] == "regular"
    assert s.stats()["requests"] == 1
    assert s.erase_contact("5") == "deleted" and 5 not in p.contact_ids()
    assert s.erase_contact("5") == "deleted"  # already gone
