"""The Bitrix24 and amoCRM plugins speak the protocol as the official documentation writes it, not only as
Hub's emulators answer: the requests carry the documented parameter names and formats, and the documented
answers (errors with an empty code, both shapes of operating_reset_at, companies read apart from the
contact list) are read right. The emulators hold to the same documents, so a plugin that drifts from them
fails against the emulators too."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from hub.api import Settings
from hub.ratelimit import LocalBucket
from hub.records import ActivityRecord, ContactRecord
from plugins.amocrm.client import AmoClient, StaticAuth
from plugins.amocrm.sandbox import Account
from plugins.amocrm.source import AmoSource
from plugins.bitrix24 import client as b24_client
from plugins.bitrix24.client import Bitrix24Error, Client, WebhookAuth
from plugins.bitrix24.sandbox import Portal, SandboxServer
from plugins.bitrix24.source import Bitrix24Source

HOOK = "https://portal.example.ru/rest/1/abc123/"
TIME = {"start": 1724677896.29, "finish": 1724677897.19, "duration": 0.9, "processing": 0.87,
        "date_start": "2024-08-26T16:11:36+03:00", "date_finish": "2024-08-26T16:11:37+03:00",
        "operating_reset_at": 1724678496, "operating": 0.01}
# api-reference: datetime is YYYY-MM-DDThh:mm:ss±hh:mm (server.time), no fraction of a second.
DOCUMENTED_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
AMO = "https://shop.amocrm.ru"


def b24_source(sleeps: list[float] | None = None) -> Bitrix24Source:
    client = Client(WebhookAuth(HOOK), LocalBucket(1000, 1000),
                    sleep=(sleeps.append if sleeps is not None else lambda s: None))
    return Bitrix24Source(Settings(), client=client)


def query_of(command: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(command).query)


class FakePortal:
    """Answers batch requests command by command from `answers` (method -> query -> result), recording
    every command, the way a portal following the documents would be asked."""

    def __init__(self, answers: dict[str, Callable[[dict[str, list[str]]], Any]]) -> None:
        self.answers = answers
        self.commands: list[str] = []
        responses.add_callback(responses.POST, HOOK + "batch", callback=self._batch)

    def _batch(self, request: Any) -> tuple[int, dict[str, str], str]:
        cmd = json.loads(request.body)["cmd"]
        result: dict[str, Any] = {}
        for key, command in cmd.items():
            self.commands.append(command)
            method = command.split("?", 1)[0]
            result[key] = self.answers.get(method, lambda q: [])(query_of(command))
        body = {"result": {"result": result, "result_error": [], "result_total": [], "result_next": [],
                           "result_time": []}, "time": TIME}
        return 200, {}, json.dumps(body)

    def sent(self, method: str) -> list[dict[str, list[str]]]:
        return [query_of(c) for c in self.commands if c.split("?", 1)[0] == method]


def contact_row(contact_id: int, **extra: Any) -> dict[str, Any]:
    return {"ID": str(contact_id), "NAME": "Анна", "LAST_NAME": "Смирнова", "COMPANY_ID": "7",
            "DATE_CREATE": "2024-08-26T16:11:36+03:00", "DATE_MODIFY": "2024-08-26T16:11:36+03:00", **extra}


# --------------------------------------------------------------------------- Bitrix24: requests


@responses.activate
def test_bitrix24_list_filters_use_the_documented_in_prefix() -> None:
    portal = FakePortal({"crm.activity.list": lambda q: []})
    source = b24_source()
    list(source.read("activities", None, True))
    source.fetch("activities", ["5", "6"])
    sent = portal.sent("crm.activity.list")
    walk, fetched = sent[0], sent[-1]
    # "@" is IN; a bare list is compared with "=", the documented default (exact match).
    assert walk["filter[@OWNER_TYPE_ID][]"] == ["2", "3", "4"] and "filter[OWNER_TYPE_ID][]" not in walk
    assert fetched["filter[@ID][]"] == ["5", "6"] and "filter[ID][]" not in fetched
    assert {"BINDINGS", "COMMUNICATIONS"} <= set(walk["select[]"])


@responses.activate
def test_bitrix24_incremental_filter_sends_the_documented_datetime() -> None:
    portal = FakePortal({"crm.activity.list": lambda q: []})
    since = dt.datetime(2026, 11, 2, 12, 0, 5, 123456, tzinfo=dt.UTC)
    list(b24_source().read("activities", json.dumps({"since": since.isoformat()}), False))
    sent = portal.sent("crm.activity.list")[0]
    (moment,) = sent["filter[>=LAST_UPDATED]"]
    assert DOCUMENTED_DATETIME.match(moment), moment
    assert dt.datetime.fromisoformat(moment) <= since  # the overlap is kept, the fraction dropped
    assert b24_client.portal_time(since) == "2026-11-02T12:00:05+00:00"


@responses.activate
def test_bitrix24_contacts_get_their_companies_from_crm_item_list_with_multiple_user_fields() -> None:
    # crm.contact.list has no COMPANY_IDS (contacts/crm-contact-fields.md); crm.item.list has companyIds.
    fields = {"UF_CRM_INTERESTS": {"type": "enumeration", "isMultiple": True, "isDynamic": True,
                                   "title": "UF_CRM_INTERESTS", "formLabel": "Интересы",
                                   "items": [{"ID": "52", "VALUE": "Одежда"}, {"ID": "53", "VALUE": "Обувь"}]},
              "UF_CRM_SCORE": {"type": "double", "isMultiple": False, "isDynamic": True, "title": "UF_CRM_SCORE"}}
    portal = FakePortal({
        "crm.contact.fields": lambda q: fields,
        "crm.contact.list": lambda q: [contact_row(15, UF_CRM_INTERESTS=["52", "53"])],
        "crm.item.list": lambda q: {"items": [{"id": 15, "companyIds": [7, 9]}]},
    })
    pages = list(b24_source().read("contacts", None, True))
    (record,) = [r for p in pages for r in p.records if isinstance(r, ContactRecord)]
    assert record.company_external_ids == ["7", "9"]
    assert record.attributes["UF_CRM_INTERESTS"] == ["Одежда", "Обувь"]
    listed = portal.sent("crm.contact.list")[0]
    # "UF_*" is "all custom fields (excluding multiple fields)": the multiple ones are named.
    assert "UF_*" in listed["select[]"] and "UF_CRM_INTERESTS" in listed["select[]"]
    assert "COMPANY_IDS" not in listed["select[]"]
    (items,) = portal.sent("crm.item.list")
    assert items["entityTypeId"] == ["3"] and items["filter[@id][]"] == ["15"]
    assert set(items["select[]"]) == {"id", "companyIds"}
    # Not counted (settings/performance/huge-data.md): counting spends server time on every match.
    assert items["start"] == ["-1"]


def test_bitrix24_an_activity_without_bindings_reaches_its_contact_through_communications() -> None:
    from plugins.bitrix24 import mapping

    row = {"ID": "20", "OWNER_ID": "77", "OWNER_TYPE_ID": "2", "TYPE_ID": "2", "PROVIDER_ID": "VOXIMPLANT_CALL",
           "START_TIME": "2020-09-27T13:25:00+03:00", "END_TIME": "2020-09-27T13:27:00+03:00", "COMPLETED": "Y",
           "DIRECTION": "2", "COMMUNICATIONS": [{"ID": "23", "TYPE": "PHONE", "VALUE": "499152222222",
                                                 "ENTITY_ID": "15", "ENTITY_TYPE_ID": "3"}]}
    record = mapping.activity(row)
    assert isinstance(record, ActivityRecord)
    assert (record.contact_external_id, record.order_external_id) == ("15", "77")
    bound = {**row, "BINDINGS": [{"OWNER_TYPE_ID": "3", "OWNER_ID": "16"}]}
    assert mapping.activity(bound).contact_external_id == "16"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- Bitrix24: answers


@responses.activate
def test_bitrix24_an_error_with_an_empty_code_is_a_refusal() -> None:
    source = b24_source()
    source.options = {"fields": {"promo_code": "UF_CRM_PROMO"}}
    denied = {"error": "", "error_description": "Access denied."}
    responses.post(HOOK + "crm.contact.delete", status=400, json=denied)
    with pytest.raises(Bitrix24Error, match="Access denied"):
        source.erase_contact("15")
    responses.post(HOOK + "crm.contact.update", status=400, json=denied)
    with pytest.raises(Bitrix24Error, match="Access denied"):
        source.set_field("15", "promo_code", "SALE10")
    responses.post(HOOK + "crm.timeline.comment.add", status=400, json=denied)
    with pytest.raises(Bitrix24Error, match="Access denied"):
        source.add_comment("15", "Спасибо за покупку")
    responses.post(HOOK + "crm.activity.todo.add", status=400, json=denied)
    with pytest.raises(Bitrix24Error, match="Access denied"):
        source.add_task("15", "Позвонить", due_at=dt.datetime(2026, 11, 3, tzinfo=dt.UTC), responsible_id="1")


@responses.activate
def test_bitrix24_a_contact_already_gone_counts_as_deleted() -> None:
    responses.post(HOOK + "crm.contact.delete", status=400,
                   json={"error": "", "error_description": "Contact is not found"})
    assert b24_source().erase_contact("15") == "deleted"
    responses.replace(responses.POST, HOOK + "crm.contact.delete", status=400,
                      json={"error": "ERROR_CORE", "error_description": "Element not found"})
    assert b24_source().erase_contact("15") == "deleted"


@pytest.mark.parametrize("reset_at", [1724678496, "2024-08-26T16:11:37+03:00", "soon", None])
@responses.activate
def test_bitrix24_operating_reset_at_is_read_in_both_documented_shapes(reset_at: Any) -> None:
    blocked = {"error": "OPERATION_TIME_LIMIT", "error_description": "Method is blocked due to operation time limit.",
               "time": {**TIME, "operating": 480.5, "operating_reset_at": reset_at}}
    responses.post(HOOK + "crm.contact.get", status=503, json=blocked)
    responses.post(HOOK + "crm.contact.get", json={"result": {"ID": "15"}, "time": {**TIME,
                                                                                    "operating_reset_at": reset_at}})
    sleeps: list[float] = []
    source = b24_source(sleeps)
    assert source.client.call("crm.contact.get", {"id": 15})["result"] == {"ID": "15"}
    assert sleeps and all(1.0 <= s <= 600.0 for s in sleeps)
    expected = {1724678496: 1724678496.0, "2024-08-26T16:11:37+03:00": 1724677897.0}.get(reset_at, 0.0)
    assert b24_client._reset_at(reset_at) == expected


# --------------------------------------------------------------------------- Bitrix24: the emulator


@pytest.fixture(scope="module")
def b24_portal() -> Iterator[SandboxServer]:
    with SandboxServer(Portal(contacts=60, seed=3, rate=1e6, burst=10**6, b2b=True)) as server:
        yield server


def b24_call(server: SandboxServer, method: str, **params: Any) -> requests.Response:
    return requests.post(server.webhook_url + method, json=params, timeout=30)


def test_bitrix24_emulator_reads_a_bare_list_as_exact_match_and_at_as_in(b24_portal: SandboxServer) -> None:
    bare = b24_call(b24_portal, "crm.contact.list", filter={"ID": [1, 2, 3]}, select=["ID"]).json()
    assert bare["result"] == []
    listed = b24_call(b24_portal, "crm.contact.list", filter={"@ID": [1, 2, 3]}, select=["ID"]).json()
    assert [row["ID"] for row in listed["result"]] == ["1", "2", "3"]
    owned = b24_call(b24_portal, "crm.activity.list", filter={"@OWNER_TYPE_ID": [2, 3, 4]}, select=["ID"]).json()
    assert owned["result"]


def test_bitrix24_emulator_keeps_company_ids_out_of_contact_reads(b24_portal: SandboxServer) -> None:
    portal = b24_portal.portal
    with portal._lock:
        linked = next(row["ID"] for row in portal._contacts.rows.values() if len(row.get("COMPANY_IDS") or ()) > 1)
        companies = list(portal._contacts.rows[linked]["COMPANY_IDS"])
    listed = b24_call(b24_portal, "crm.contact.list", filter={"ID": linked},
                      select=["ID", "COMPANY_ID", "COMPANY_IDS"]).json()["result"]
    assert listed and "COMPANY_IDS" not in listed[0]
    assert "COMPANY_IDS" not in b24_call(b24_portal, "crm.contact.get", id=linked).json()["result"]
    items = b24_call(b24_portal, "crm.item.list", entityTypeId=3, select=["id", "companyIds"],
                     filter={"@id": [linked]}).json()["result"]["items"]
    assert items == [{"id": linked, "companyIds": companies}]
    # An id list is found as an index finds it, counted (start 0) or not (start -1), at either end.
    with portal._lock:
        first, last = portal._contacts.ids[0], portal._contacts.ids[-1]
    for start in (0, -1):
        found = b24_call(b24_portal, "crm.item.list", entityTypeId=3, select=["id"], start=start,
                         filter={"@id": [last, first, 10 ** 9]}).json()["result"]["items"]
        assert [item["id"] for item in found] == [first, last]


def test_bitrix24_emulator_refuses_with_an_empty_code_and_selects_multiple_fields_by_name(
        b24_portal: SandboxServer) -> None:
    portal = b24_portal.portal
    portal.denied.add("crm.contact.delete")
    try:
        refused = b24_call(b24_portal, "crm.contact.delete", id=1)
    finally:
        portal.denied.discard("crm.contact.delete")
    assert refused.status_code == 400
    assert refused.json() == {"error": "", "error_description": "Access denied."}
    masked = b24_call(b24_portal, "crm.contact.list", select=["ID", "UF_*"], start=-1).json()["result"][0]
    named = b24_call(b24_portal, "crm.contact.list", select=["ID", "UF_*", "UF_CRM_INTERESTS"],
                     start=-1).json()["result"][0]
    assert "UF_CRM_INTERESTS" not in masked and "UF_CRM_SCORE" in masked
    assert "UF_CRM_INTERESTS" in named


# --------------------------------------------------------------------------- amoCRM


def amo_source() -> AmoSource:
    settings = Settings(database_url="sqlite://", extra={"amocrm": {}})
    client = AmoClient(AMO, StaticAuth("tok"), LocalBucket(10_000, 10_000), sleep=lambda s: None)
    return AmoSource(settings, client=client, account={"currency": "RUB", "customers_mode": "disabled"},
                     clock=lambda: 1_700_000_000)


@responses.activate
def test_amocrm_events_by_entity_send_a_comma_separated_list() -> None:
    responses.get(f"{AMO}/api/v4/leads/pipelines", json={"_embedded": {"pipelines": [{
        "id": 10, "name": "Воронка", "is_main": True,
        "_embedded": {"statuses": [{"id": 101, "name": "Первичный контакт", "type": 0}]}}]}})
    responses.get(f"{AMO}/api/v4/events", status=204)
    amo_source()._status_moves(lead_ids=["2", "3", "4"])
    (url,) = [str(c.request.url) for c in responses.calls if "/api/v4/events" in str(c.request.url)]
    query = parse_qs(urlsplit(url).query)
    assert query["filter[entity_id]"] == ["2,3,4"] and "filter[entity_id][]" not in query
    assert query["filter[entity]"] == ["lead"]


@responses.activate
def test_amocrm_erasure_replaces_the_tags_the_documented_way() -> None:
    responses.get(f"{AMO}/api/v4/contacts/42", json={"id": 42, "name": "Анна", "custom_fields_values": None,
                                                     "_embedded": {"tags": [{"id": 1, "name": "vip"}]}})
    responses.patch(f"{AMO}/api/v4/contacts", json={"_embedded": {"contacts": [{"id": 42}]}})
    responses.get(f"{AMO}/api/v4/contacts/42/notes", status=204)
    assert amo_source().erase_contact("42") == "anonymised"
    (patched,) = [json.loads(c.request.body or b"null") for c in responses.calls if c.request.method == "PATCH"]
    assert patched[0]["_embedded"] == {"tags": [{"name": "удалён по запросу"}]}
    assert "tags_to_add" not in patched[0]


def test_amocrm_emulator_reads_event_entity_ids_as_a_comma_list() -> None:
    account = Account(contacts=60, seed=7, rate_limit=None)
    try:
        leads = account.lead_ids()[:3]
        for lead_id in leads:
            account.update_lead(lead_id, name=f"Сделка {lead_id}, уточнено")
        wanted = leads[:2]
        answer = account.handle("GET", f"/api/v4/events?filter[entity]=lead&filter[entity_id]={wanted[0]},{wanted[1]}",
                                headers={"Authorization": f"Bearer {account.issue_long_lived_token()}"})
        found = {event["entity_id"] for event in answer.json()["_embedded"]["events"]}
        assert found == set(wanted)
    finally:
        account.close()
