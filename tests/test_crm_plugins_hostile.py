"""Hostile answers from the CRMs: one malformed record is reported and skipped, never an exception that
fails its page (a sync cannot get past a page that raises, so one bad record would block every later run).
Also amoCRM's erasure emptying the contact's call notes, and Bitrix24's score write saying what it wrote
before a refusal.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any, Iterator

import pytest

from hub.api import without_nul
import responses

from hub.api import CompanyRecord, ContactRecord, FieldDefinition, OrderRecord, Settings
from hub.ratelimit import LocalBucket
from plugins.amocrm import mapping as amo_mapping
from plugins.amocrm.client import AmoClient, StaticAuth
from plugins.amocrm.sandbox import Account, SandboxServer
from plugins.amocrm.source import AmoSource
from plugins.bitrix24 import fields, mapping
from plugins.bitrix24.client import Bitrix24Error, Client, WebhookAuth
from plugins.bitrix24.source import Bitrix24Source
from plugins.gdpr import erasure

HOOK = "https://shop.bitrix24.ru/rest/1/s3cr3tc0de/"
TIME = {"start": 1724916859.4, "finish": 1724916859.5, "duration": 0.1, "processing": 0.05}
BASE = "https://shop.amocrm.ru"
NOW = 1_700_000_000


def b24(**options: Any) -> Bitrix24Source:
    settings = Settings(extra={"bitrix24": options}) if options else Settings()
    return Bitrix24Source(settings, client=Client(WebhookAuth(HOOK), LocalBucket(1000, 1000), sleep=lambda s: None))


def batch(results: dict[str, Any], errors: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"result": {"result": results or [], "result_error": errors or [], "result_total": [],
                       "result_next": [], "result_time": []}, "time": TIME}


def amo(**options: Any) -> AmoSource:
    settings = Settings(database_url="sqlite://", extra={"amocrm": {"fields": {"lead_score": 777002}, **options}})
    client = AmoClient(BASE, StaticAuth("tok"), LocalBucket(10_000, 10_000), sleep=lambda s: None)
    return AmoSource(settings, client=client, account={"currency": "RUB", "customers_mode": "disabled"},
                     clock=lambda: NOW)


NUMBER = FieldDefinition(source="bitrix24", entity="contact", code="UF_CRM_SCORE", name="Оценка", type="number")


# --- Bitrix24 ----------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", ["sNaN", "NaN", "Infinity", "-Infinity", "1e100000", "1E16", "-1e400"])
def test_bitrix24_numbers_no_one_typed_are_dropped(raw: str) -> None:
    assert fields.typed(NUMBER, raw) is None
    assert fields.attributes({"UF_CRM_SCORE": raw}, {"UF_CRM_SCORE": NUMBER}) == {}


def test_bitrix24_ordinary_numbers_still_read() -> None:
    assert [fields.typed(NUMBER, v) for v in ("42", "1.5", "-7", "1e3", "999999999999999")] == [
        42, 1.5, -7, 1000, 999_999_999_999_999]


def test_bitrix24_definitions_tolerate_items_that_are_no_list() -> None:
    described = {
        "UF_CRM_A": {"type": "enumeration", "isMultiple": False, "formLabel": "Канал", "items": 5},
        "UF_CRM_B": {"type": "enumeration", "isMultiple": False, "formLabel": "Тип",
                     "items": {"0": {"ID": "1", "VALUE": "Опт\u0000"}, "1": "мусор"}},
        "UF_CRM_C": {"type": "string", "formLabel": "Заметка\u0000"},
    }
    found = {d.code: d for d in fields.definitions("contact", described)}
    assert found["UF_CRM_A"].options == []
    assert found["UF_CRM_B"].options == [{"id": "1", "value": "Опт"}]
    assert found["UF_CRM_C"].name == "Заметка"


@pytest.mark.parametrize("row", [{}, {"ID": None}, {"ID": ""}, {"ID": "  "}, {"TITLE": "ООО «Вектор»"}])
def test_bitrix24_a_row_without_id_is_no_record(row: dict[str, Any]) -> None:
    for make in (mapping.contact, mapping.deal, mapping.company):
        with pytest.raises(ValueError, match="no ID"):
            make(row)
    with pytest.raises(ValueError, match="no ID"):
        mapping.activity({**row, "TYPE_ID": "2", "START_TIME": "2024-08-15T10:38:21+03:00"})


def test_bitrix24_huge_amounts_are_not_kept() -> None:
    for amount in ("1e100000", "Infinity", "NaN"):
        with pytest.raises(ValueError, match="OPPORTUNITY"):
            mapping.deal({"ID": "5", "OPPORTUNITY": amount})
    assert mapping.deal({"ID": "5", "OPPORTUNITY": "не число"}).amount == "не число"  # the core reports it


def test_bitrix24_text_loses_nul() -> None:
    record = without_nul(mapping.contact({
        "ID": "9", "NAME": "Ан\u0000на", "LAST_NAME": "\u0000", "ADDRESS_CITY": "Мо\u0000сква",
        "PHONE": [{"VALUE_TYPE": "MOBILE", "VALUE": "+7 916\u0000 123-45-67"}]},
        custom={"UF_CRM_NOTE": "при\u0000вет", "UF_CRM_TAGS": ["a\u0000b"]}))
    assert (record.first_name, record.last_name, record.city) == ("Анна", None, "Москва")
    assert record.phones == ["+7 916 123-45-67"] and record.labels == {"+7 916 123-45-67": "mobile"}
    assert record.attributes["UF_CRM_NOTE"] == "привет" and record.attributes["UF_CRM_TAGS"] == ["ab"]
    activity = mapping.activity({"ID": "3", "TYPE_ID": "2", "START_TIME": "2024-08-15T10:38:21+03:00",
                                 "SUBJECT": "Звонок\u0000", "OWNER_TYPE_ID": "3", "OWNER_ID": "9"})
    assert activity is not None and activity.subject == "Звонок"
    deal = mapping.deal({"ID": "4", "STAGE_ID": "C1:NEW"}, stages={"C1:NEW": "Но\u0000вая"})
    assert without_nul(deal).stage == "Новая"


@responses.activate
def test_bitrix24_a_page_with_bad_rows_goes_in_and_the_rows_are_reported() -> None:
    s = b24()
    rows = [{"ID": "1", "NAME": "Анна\u0000", "UF_CRM_SCORE": "sNaN"},
            {"NAME": "без ID"},
            {"ID": None, "NAME": "None"},
            "не запись",
            {"ID": "4", "NAME": "Борис", "UF_CRM_SCORE": "1e100000", "BIRTHDATE": ["список"]}]
    responses.post(HOOK + "batch", json=batch({  # the directories (they name the fields to select), the page
        "contact": {"UF_CRM_SCORE": {"type": "double", "formLabel": "Оценка", "isDynamic": True}},
        "company": [], "order": [], "categories": [], "stages": []}))
    responses.post(HOOK + "batch", json=batch({"p0": rows}))
    responses.post(HOOK + "batch", json=batch({}))  # and the contacts' companies: none
    (page,) = list(s.read("contacts", None, True))
    records = [r for r in page.records if isinstance(r, ContactRecord)]
    assert [(r.external_id, r.first_name, r.attributes.get("UF_CRM_SCORE")) for r in records] == [
        ("1", "Анна", None), ("4", "Борис", None)]
    assert page.cursor == "4"
    problems = s.stats()["problems"]
    assert [(p["entity"], p["id"]) for p in problems] == [("contact", "None"), ("contact", "None")]
    assert all("no ID" in p["error"] for p in problems)


@responses.activate
def test_bitrix24_companies_without_id_are_reported_not_stored_as_none() -> None:
    s = b24()
    s._directory = {"fields": {}, "pipelines": {}, "stages": {}}
    responses.post(HOOK + "batch", json=batch({"p0": [{"ID": "7", "RQ_INN": "7701234560", "ENTITY_ID": "7"}]}))
    records = s._records("companies", [{"ID": None, "TITLE": "Призрак"}, {"ID": "7", "TITLE": "ООО\u0000 «Вектор»"}])
    assert [(r.external_id, r.name, r.inn) for r in records if isinstance(r, CompanyRecord)] == [
        ("7", "ООО «Вектор»", "7701234560")]
    assert s.stats()["problems"][0]["entity"] == "company"


@responses.activate
def test_bitrix24_set_fields_names_what_was_written_before_a_refusal() -> None:
    s = b24(fields={"lead_score": "UF_CRM_SCORE"})
    responses.post(HOOK + "batch", json=batch({f"u{i}": True for i in range(1, 51)}))
    responses.post(HOOK + "batch", json=batch(
        {f"u{i}": True for i in range(51, 60)} | {"u61": True},
        {"u60": {"error": "ACCESS_DENIED", "error_description": "Access denied"}}))
    with pytest.raises(Bitrix24Error, match="crm.contact.update 60") as refused:
        s.set_fields([(str(i), "lead_score", i) for i in range(1, 62)])
    assert refused.value.written == [str(i) for i in range(1, 60)] + ["61"]
    responses.replace(responses.POST, HOOK + "batch", status=503, body="down")
    with pytest.raises(Bitrix24Error) as down:
        s.set_fields([("1", "lead_score", 1)])
    assert down.value.written == []


# --- amoCRM ------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", ["1e100000", "NaN", "Infinity", "-1e16", "sNaN"])
def test_amocrm_numbers_no_one_typed_stay_as_amocrm_sent_them(raw: str) -> None:
    with pytest.raises((ValueError, ArithmeticError)):
        amo_mapping.number(raw)
    field = {"field_id": 3, "field_name": "Сумма", "field_type": "numeric", "values": [{"value": raw}]}
    assert amo_mapping._attribute(field) == raw
    assert amo_mapping.number("1 500,50") == 1500.5 and amo_mapping.number("999999999999999") == 999_999_999_999_999


def test_amocrm_huge_prices_skip_the_lead_with_a_problem() -> None:
    problems: list[amo_mapping.Problem] = []
    assert amo_mapping.lead({"id": 8, "price": "1e100000"}, problems=problems) is None
    assert problems[0].entity == "order" and problems[0].id == "8"


def test_amocrm_odd_field_definitions_are_reported_and_the_rest_kept() -> None:
    problems: list[amo_mapping.Problem] = []
    rows = [{"id": 1, "name": "Источник", "code": 12345, "type": "text"},
            {"id": 2, "name": "Канал\u0000", "type": "select", "enums": 7},
            {"id": 3, "name": "Размер", "type": "select", "enums": [{"id": 5, "value": "M\u0000"}]}]
    definitions, keys = amo_mapping.field_definitions(rows, "contacts", problems)
    assert [(d.code, d.name, d.options) for d in definitions] == [
        ("12345", "Источник", []), ("Канал", "Канал", []), ("Размер", "Размер", [{"id": "5", "value": "M"}])]
    assert keys == {"1": "12345", "2": "Канал", "3": "Размер"} and problems == []
    definitions, _ = amo_mapping.field_definitions([{"id": 9, "name": object(), "type": "text", "code": None},
                                                    {"id": 10, "name": "Город", "type": "text"}], "leads", problems)
    assert [d.code for d in definitions][-1] == "Город"


@pytest.mark.parametrize("created_at", [10 ** 30, "10000000000000000000", float("inf"), "soon", -10 ** 20])
def test_amocrm_status_moves_at_impossible_moments_are_ignored(created_at: Any) -> None:
    event = {"type": "lead_status_changed", "entity_id": 5, "created_at": created_at,
             "value_after": [{"lead_status": {"id": 142, "pipeline_id": 1}}]}
    assert amo_mapping.status_change(event) is None
    assert amo_mapping.status_change({**event, "value_after": 5}) is None


def test_amocrm_text_loses_nul() -> None:
    record = without_nul(amo_mapping.contact({
        "id": 4, "name": "Ан\u0000на", "custom_fields_values": [
            {"field_id": 1, "field_code": "PHONE", "values": [{"value": "+7916\u00001234567", "enum_code": "MOB"}]},
            {"field_id": 2, "field_name": "Заметка", "field_type": "text", "values": [{"value": "при\u0000вет"}]}]}))
    assert record.first_name == "Анна" and record.phones == ["+79161234567"]
    assert record.labels == {"+79161234567": "mobile"} and record.attributes["Заметка"] == "привет"
    note = amo_mapping.call_note({"id": 3, "note_type": "call_in", "entity_id": 4, "created_at": NOW,
                                  "params": {"call_result": "Перезвонить\u0000", "duration": 5}}, "contacts")
    assert note is not None and without_nul(note).subject == "Перезвонить"


@responses.activate
def test_amocrm_a_page_with_bad_records_goes_in_and_they_are_reported() -> None:
    s = amo()
    rows: list[dict[str, Any]] = [{"id": 1, "name": "Анна\u0000", "updated_at": NOW},
            {"name": "без id"},
            {"id": 3, "name": "Борис", "created_at": 10 ** 30,
             "custom_fields_values": [{"field_id": 7, "field_name": "Сумма", "field_type": "numeric",
                                       "values": [{"value": "1e100000"}]}]}]
    records = [r for r in s._contacts(rows) if isinstance(r, ContactRecord)]
    assert [(r.external_id, r.first_name, r.created_at, r.attributes.get("Сумма")) for r in records] == [
        ("1", "Анна", None, None), ("3", "Борис", None, "1e100000")]
    assert {(p["entity"], p["id"]) for p in s.stats()["problems"]} >= {("contact", "None"), ("contact", "3")}


@responses.activate
def test_amocrm_definitions_and_moves_do_not_stop_the_read() -> None:
    s = amo()
    for entity in ("contacts", "companies", "leads"):
        responses.get(f"{BASE}/api/v4/{entity}/custom_fields", json={"_embedded": {"custom_fields": [
            {"id": 1, "name": "Источник", "code": 77, "type": "text"}, {"id": 2, "name": "Ок", "type": "text"}]}})
    (page,) = list(s.read("fields", None, True))
    assert {(d.entity, d.code) for d in page.records if isinstance(d, FieldDefinition)} >= {
        ("contact", "77"), ("order", "Ок")}
    responses.get(f"{BASE}/api/v4/leads/pipelines", json={"_embedded": {"pipelines": [
        {"id": 1, "name": "Продажи", "_embedded": {"statuses": [{"id": 10, "name": "Новая"}]}}]}})
    responses.get(f"{BASE}/api/v4/events", json={"_embedded": {"events": [
        {"type": "lead_status_changed", "entity_id": 5, "created_at": 10 ** 30,
         "value_after": [{"lead_status": {"id": 10, "pipeline_id": 1}}]},
        {"type": "lead_status_changed", "entity_id": 6, "created_at": NOW,
         "value_after": [{"lead_status": {"id": 10, "pipeline_id": 1}}]}]}})
    moves = s._status_moves()
    assert list(moves) == ["6"]


# --- amoCRM erasure: the contact's call notes lose the phone, the result and the recording --------------

@pytest.fixture
def account() -> Iterator[SandboxServer]:
    account = Account(contacts=30, seed=5, activities=300, today=dt.date(2025, 6, 1), rate_limit=None)
    server = SandboxServer(account).start()
    yield server
    server.stop()
    server.account.close()


def sandbox_source(server: SandboxServer, **options: Any) -> AmoSource:
    settings = Settings(database_url="sqlite://", extra={"amocrm": dict(options)})
    client = AmoClient(server.base_url, StaticAuth(server.account.issue_long_lived_token()),
                       LocalBucket(10_000, 10_000), sleep=lambda s: None)
    return AmoSource(settings, client=client, account={"currency": "RUB", "customers_mode": "disabled"})


def calls_of(server: SandboxServer, contact_id: int) -> list[dict[str, Any]]:
    return [c for c in server.account.calls("contacts") if c["entity_id"] == contact_id]


def busiest(server: SandboxServer) -> int:
    owners = [c["entity_id"] for c in server.account.calls("contacts")]
    return max(set(owners), key=owners.count)


def test_erasure_empties_the_contacts_call_notes_in_the_emulator(account: SandboxServer) -> None:
    target = busiest(account)
    account.account.add_call("contacts", target, incoming=True, duration=30, call_status=4, phone="+79160001122")
    before = calls_of(account, target)
    assert len(before) >= 2 and all(c["params"]["phone"] for c in before)
    others = [c for c in account.account.calls("contacts") if c["entity_id"] != target]
    assert sandbox_source(account).erase_contact(str(target)) == "anonymised"
    after = calls_of(account, target)
    assert [c["id"] for c in after] == [c["id"] for c in before]
    assert all(c["params"]["phone"] == "" and c["params"]["call_result"] == "" for c in after)
    # The calls themselves stay.
    assert [c["params"]["duration"] for c in after] == [b["params"]["duration"] for b in before]
    assert [c["params"]["phone"] for c in account.account.calls("contacts") if c["entity_id"] != target] == [
        c["params"]["phone"] for c in others]
    # Read back through the API as the sync reads it, too.
    client = sandbox_source(account).client
    listed = [n for _, rows in client.pages(f"/api/v4/contacts/{target}/notes", [], "notes") for n in rows]
    assert listed and all(n["params"]["phone"] == "" for n in listed if n["note_type"] in ("call_in", "call_out"))


def test_a_call_note_amocrm_will_not_edit_is_said_not_hidden(account: SandboxServer) -> None:
    target = busiest(account)
    notes = calls_of(account, target)
    account.account.lock_note(notes[0]["id"])
    answer = sandbox_source(account).erase_contact(str(target))
    assert answer == erasure.CALLS_KEPT
    after = {c["id"]: c for c in calls_of(account, target)}
    assert after[notes[0]["id"]]["params"]["phone"] == notes[0]["params"]["phone"]
    assert all(after[n["id"]]["params"]["phone"] == "" for n in notes[1:])
    assert "still hold the phone" in erasure.describe({"source": "amocrm", "result": answer}) or \
        "остался номер" in erasure.describe({"source": "amocrm", "result": answer})


@responses.activate
def test_call_notes_are_cleared_in_batches_of_50_in_the_documented_shape() -> None:
    s = amo()
    responses.get(f"{BASE}/api/v4/contacts/42", json={"id": 42, "name": "Анна", "custom_fields_values": None})
    responses.patch(f"{BASE}/api/v4/contacts", json={"_embedded": {"contacts": [{"id": 42}]}})
    page = [{"id": 100 + i, "entity_id": 42, "note_type": "call_in" if i % 2 else "call_out",
             "params": {"uniq": f"u{i}", "duration": 10, "source": "Телефония", "link": "https://rec/1.mp3",
                        "phone": "+79160000000", "call_status": 4, "call_result": "Договорились"}}
            for i in range(60)] + [{"id": 999, "entity_id": 42, "note_type": "call_in",
                                    "params": {"phone": "", "duration": 0}}]
    responses.get(f"{BASE}/api/v4/contacts/42/notes", json={"_embedded": {"notes": page}})

    def edited(request: Any) -> tuple[int, dict[str, str], str]:
        items = json.loads(request.body)
        return 200, {}, json.dumps({"_embedded": {"notes": [{"id": i["id"], "entity_id": 42} for i in items]}})

    responses.add_callback(responses.PATCH, f"{BASE}/api/v4/contacts/notes", callback=edited)
    assert s.erase_contact("42") == "anonymised"
    sent = [json.loads(c.request.body or b"null") for c in responses.calls
            if c.request.method == "PATCH" and str(c.request.url).endswith("/contacts/notes")]
    assert [len(b) for b in sent] == [50, 10]  # the note holding nothing is not sent
    first = sent[0][0]
    assert first == {"id": 100, "entity_id": 42, "note_type": "call_out", "params": {
        "uniq": "u0", "duration": 10, "source": "Телефония", "link": "", "phone": "", "call_status": 4,
        "call_result": ""}}
    listing = next(str(c.request.url) for c in responses.calls if "/contacts/42/notes" in str(c.request.url))
    assert "filter%5Bnote_type%5D%5B%5D=call_in" in listing


@responses.activate
def test_a_refused_batch_of_notes_is_tried_note_by_note() -> None:
    s = amo()
    responses.get(f"{BASE}/api/v4/contacts/42", json={"id": 42, "name": "Анна", "custom_fields_values": None})
    responses.patch(f"{BASE}/api/v4/contacts", json={"_embedded": {"contacts": [{"id": 42}]}})
    responses.get(f"{BASE}/api/v4/contacts/42/notes", json={"_embedded": {"notes": [
        {"id": n, "entity_id": 42, "note_type": "call_in", "params": {"phone": "+79160000000"}} for n in (1, 2, 3)]}})

    def edit(request: Any) -> tuple[int, dict[str, str], str]:
        items = json.loads(request.body)
        if any(i["id"] == 2 for i in items):
            return 400, {}, json.dumps({"title": "Bad Request", "status": 400, "validation-errors": [
                {"request_id": "0", "errors": [{"code": "AccessDenied", "path": "id", "detail": "Access denied."}]}]})
        return 200, {}, json.dumps({"_embedded": {"notes": [{"id": i["id"]} for i in items]}})

    responses.add_callback(responses.PATCH, f"{BASE}/api/v4/contacts/notes", callback=edit)
    assert s.erase_contact("42") == erasure.CALLS_KEPT
    sizes = [len(json.loads(c.request.body or b"null")) for c in responses.calls
             if c.request.method == "PATCH" and str(c.request.url).endswith("/contacts/notes")]
    assert sizes == [3, 1, 1, 1]


def test_the_erasure_sentence_for_kept_call_notes_reads_in_both_languages() -> None:
    from hub.i18n import use_language

    item = {"source": "amocrm", "result": erasure.CALLS_KEPT}
    with use_language("ru"):
        assert erasure.describe(item) == ("обезличен в amoCRM, но в некоторых примечаниях о звонках там остался "
                                          "номер телефона: очистите их в amoCRM вручную")
    with use_language("en"):
        assert "some call notes there still hold the phone" in erasure.describe(item)
    assert erasure.CALLS_KEPT not in erasure.CONFIRMED  # asked again by the next erasure


def test_records_are_typed_dataclasses_the_scrub_understands() -> None:
    order = OrderRecord(source="amocrm", external_id="1", contact_external_id=None, amount=Decimal(0), title="\u0000")
    assert without_nul(order).title is None and without_nul(order).external_id == "1"
