"""The amoCRM source's reads and writes against recorded answers (responses)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import responses

from hub.config import Settings
from hub.ratelimit import LocalBucket
from hub.records import ContactRecord, Deletion, OrderRecord
from hub.writeback import WriteBack, WriteBackError
from plugins.amocrm.client import AmoClient, StaticAuth
from plugins.amocrm.source import AmoSource

BASE = "https://shop.amocrm.ru"
NOW = 1_700_000_000


def make_source(account: dict[str, Any] | None = None, **options: Any) -> AmoSource:
    settings = Settings(extra={"amocrm": {"fields": {"promo_code": 777001}, **options}})
    client = AmoClient(BASE, StaticAuth("tok"), LocalBucket(10_000, 10_000), sleep=lambda s: None)
    return AmoSource(settings, client=client, account=account or {"currency": "RUB", "customers_mode": "disabled"},
                     clock=lambda: NOW)


def contact(i: int, updated: int) -> dict[str, Any]:
    return {"id": i, "name": f"C{i}", "first_name": f"Имя{i}", "last_name": "", "updated_at": updated,
            "created_at": updated - 100, "custom_fields_values": [
                {"field_id": 1, "field_code": "PHONE", "field_type": "multitext",
                 "values": [{"value": f"+7916000{i:04d}", "enum_code": "MOB"}]}], "_embedded": {"tags": []}}


def listing(key: str, items: list[dict[str, Any]], more: bool) -> dict[str, Any]:
    links: dict[str, Any] = {"self": {"href": f"{BASE}/api/v4/{key}?page=1"}}
    if more:
        links["next"] = {"href": f"{BASE}/api/v4/{key}?page=2"}
    return {"_page": 1, "_links": links, "_embedded": {key: items}}


def test_the_source_offers_write_back() -> None:
    assert isinstance(make_source(), WriteBack)


@responses.activate
def test_an_incremental_run_of_a_hundred_changes_costs_three_requests() -> None:
    source = make_source()
    responses.get(f"{BASE}/api/v4/contacts",
                  json=listing("contacts", [contact(i, NOW - 50) for i in range(100)], False))
    responses.get(f"{BASE}/api/v4/events", json=listing("events", [
        {"id": "01a", "type": "contact_deleted", "entity_id": 555, "entity_type": "contact", "created_at": NOW - 10},
        {"id": "01b", "type": "lead_deleted", "entity_id": 777, "entity_type": "lead", "created_at": NOW - 9}], False))
    responses.get(f"{BASE}/api/v4/leads", status=204, body="")
    cursor = json.dumps({"since": NOW - 600, "events": NOW - 600})
    pages = list(source.read("contacts", cursor, False)) + list(source.read("orders", json.dumps({"since": NOW - 600}),
                                                                            False))
    assert len(responses.calls) == 3
    contacts = [r for p in pages for r in p.records if isinstance(r, ContactRecord)]
    deletions = [r for p in pages for r in p.records if isinstance(r, Deletion)]
    assert len(contacts) == 100
    assert deletions == [Deletion("amocrm", "contact", "555"), Deletion("amocrm", "order", "777")]
    query = responses.calls[0].request.params
    assert query["filter[updated_at][from]"] == str(NOW - 600 - 120)
    assert query["filter[updated_at][to]"] == str(NOW) and query["order[updated_at]"] == "asc"
    assert json.loads(pages[1].cursor) == {"since": NOW, "events": NOW}
    assert responses.calls[1].request.params["filter[type]"] == "contact_deleted,lead_deleted,company_deleted"


@responses.activate
def test_incremental_pages_by_keyset_so_nothing_shifts_away() -> None:
    source = make_source()
    first = [contact(i, NOW - 300 + i) for i in range(250)]  # updated_at rising to NOW - 51
    second = [contact(249, NOW - 51), contact(250, NOW - 51), contact(251, NOW - 40)]
    responses.get(f"{BASE}/api/v4/contacts", json=listing("contacts", first, True),
                  match=[responses.matchers.query_param_matcher({"filter[updated_at][from]": str(NOW - 1000 - 120)},
                                                                strict_match=False)])
    responses.get(f"{BASE}/api/v4/contacts", json=listing("contacts", second, False),
                  match=[responses.matchers.query_param_matcher({"filter[updated_at][from]": str(NOW - 52),
                                                                 "page": "1"}, strict_match=False)])
    responses.get(f"{BASE}/api/v4/events", status=204, body="")
    pages = list(source.read("contacts", json.dumps({"since": NOW - 1000}), False))
    ids = [r.external_id for p in pages for r in p.records]
    assert ids == [str(i) for i in range(252)]  # 249 was not handed over twice
    assert json.loads(pages[0].cursor)["since"] == NOW - 51


@responses.activate
def test_customers_on_a_plan_without_them_are_skipped_with_a_note() -> None:
    source = make_source({"currency": "USD", "customers_mode": "segments"})
    responses.get(f"{BASE}/api/v4/leads", json=listing("leads", [
        {"id": 5, "price": 10, "status_id": 142, "closed_at": NOW - 5, "created_at": NOW - 50,
         "_embedded": {"contacts": [{"id": 1, "is_main": True}]}}], False))
    responses.get(f"{BASE}/api/v4/customers/transactions", status=402,
                  json={"title": "Payment Required", "status": 402, "detail": "Customers are not available"})
    responses.get(f"{BASE}/api/v4/leads/pipelines", json={"_embedded": {"pipelines": []}})
    pages = list(source.read("orders", None, True))
    orders = [r for p in pages for r in p.records]
    closed = dt.datetime.fromtimestamp(NOW - 5, dt.timezone.utc)
    assert orders == [OrderRecord("amocrm", "5", "1", amount=orders[0].amount, currency="USD", status="won",
                                  closed_at=closed, created_at=dt.datetime.fromtimestamp(NOW - 50, dt.timezone.utc),
                                  stage="142", stage_entered_at=closed)]
    assert source.stats()["notes"] == ["Customers purchases skipped: the account's amoCRM plan does not include "
                                       "Customers (HTTP 402)"]


@responses.activate
def test_bad_records_are_reported_and_the_page_goes_on() -> None:
    source = make_source()
    responses.get(f"{BASE}/api/v4/contacts", json=listing("contacts", [
        contact(1, NOW), {"name": "no id"}, contact(2, NOW)], False))
    (page,) = list(source.read("contacts", None, True))
    assert [r.external_id for r in page.records] == ["1", "2"]
    assert source.stats()["problems"] == [{"entity": "contact", "id": "None", "error": "KeyError: 'id'"}]


@responses.activate
def test_field_writes_go_in_batches_of_fifty_with_only_what_changes() -> None:
    source = make_source()
    responses.patch(f"{BASE}/api/v4/contacts", json={"_links": {}, "_embedded": {"contacts": []}})
    source.update_contacts([{"id": i, "custom_fields_values": [
        {"field_id": 777001, "values": [{"value": f"SALE-{i}"}]}]} for i in range(1, 121)])
    bodies = [json.loads(c.request.body) for c in responses.calls]
    assert [len(b) for b in bodies] == [50, 50, 20]
    assert bodies[0][0] == {"id": 1, "custom_fields_values": [{"field_id": 777001, "values": [{"value": "SALE-1"}]}]}
    source.update_contacts([{"id": "9", "tags_to_add": [{"name": "vip"}], "created_by": 1, "updated_by": 2}])
    assert json.loads(responses.calls[-1].request.body) == [{"id": 9, "tags_to_add": [{"name": "vip"}]}]


@responses.activate
def test_a_refused_write_names_the_path() -> None:
    source = make_source()
    responses.patch(f"{BASE}/api/v4/contacts", status=400, json={
        "validation-errors": [{"request_id": "0", "errors": [
            {"code": "NotSupportedChoice", "path": "custom_fields_values.0.field_id",
             "detail": "The value you selected is not a valid choice."}]}],
        "title": "Bad Request", "type": "https://httpstatus.es/400", "status": 400,
        "detail": "Request validation failed"})
    with pytest.raises(WriteBackError, match="custom_fields_values.0.field_id: NotSupportedChoice"):
        source.set_field("1", "promo_code", "X")
    with pytest.raises(WriteBackError, match=r"add its field id to hub.toml, e.g. \[amocrm\] fields = \{birthday"):
        source.set_field("1", "birthday", "X")


@responses.activate
def test_notes_and_tasks_for_the_responsible_user() -> None:
    source = make_source()
    responses.post(f"{BASE}/api/v4/contacts/42/notes", json={"_embedded": {"notes": [{"id": 9001, "entity_id": 42}]}})
    responses.get(f"{BASE}/api/v4/contacts/42", json={"id": 42, "responsible_user_id": 6100002})
    responses.post(f"{BASE}/api/v4/tasks", json={"_embedded": {"tasks": [{"id": 8001, "request_id": "0"}]}})
    assert source.add_comment("42", "Выдан промокод SALE-1") == "9001"
    due = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.timezone.utc)
    assert source.add_task("42", "Позвонить", due_at=due, description="Не покупал 90 дней") == "8001"
    note = json.loads(responses.calls[0].request.body)
    task = json.loads(responses.calls[2].request.body)
    assert note == [{"note_type": "common", "params": {"text": "Выдан промокод SALE-1"}}]
    assert task == [{"text": "Позвонить\nНе покупал 90 дней", "complete_till": int(due.timestamp()), "entity_id": 42,
                     "entity_type": "contacts", "task_type_id": 1, "responsible_user_id": 6100002}]
