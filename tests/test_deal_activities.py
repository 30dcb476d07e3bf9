"""Calls and tasks logged on a deal (Bitrix24) or a lead (amoCRM) reach the contact the deal belongs to:
whichever of activity, deal and contact arrives first, once, and following the deal when it changes hands."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from sqlalchemy import select

import plugins.amocrm
import plugins.bitrix24 as bitrix24_plugin
from hub import sync
from hub.api import Settings
from hub.db import utcnow
from hub.models import Activity, ExternalRef
from hub.ratelimit import LocalBucket
from hub.records import ActivityRecord, ContactRecord, OrderRecord
from hub.segments import store
from hub.segments.evaluate import Segments
from plugins.amocrm.client import AmoClient, StaticAuth
from plugins.amocrm.sandbox import Account
from plugins.amocrm.sandbox import SandboxServer as AmoServer
from plugins.amocrm.source import AmoSource
from plugins.bitrix24 import mapping as b24_mapping
from plugins.bitrix24.client import Client, WebhookAuth
from plugins.bitrix24.sandbox import Portal, SandboxServer
from plugins.bitrix24.source import Bitrix24Source
from tests.conftest import HubDB
from tests.support.cli import cli, run_ok

WHEN = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)


def call(ext: str, order: str | None, contact: str | None = None, **extra: Any) -> ActivityRecord:
    return ActivityRecord(source="crm", external_id=ext, kind="call", at=WHEN, contact_external_id=contact,
                          order_external_id=order, direction="in", duration_s=40, **extra)


def person(ext: str, phone: str) -> ContactRecord:
    return ContactRecord(source="crm", external_id=ext, first_name="Анна", last_name="Смирнова", phones=[phone])


def deal(ext: str, contact: str | None) -> OrderRecord:
    return OrderRecord(source="crm", external_id=ext, contact_external_id=contact)


def page(db: HubDB, *records: Any) -> sync.Counts:
    counts = sync.Counts()
    with db.engine.begin() as conn:
        sync.write_page(conn, list(records), db.settings, counts)
    return counts


def linked(db: HubDB) -> dict[str, int | None]:
    with db.engine.connect() as conn:
        return {r.external_id: r.contact_id for r in conn.execute(select(Activity.external_id, Activity.contact_id))}


def contact_of(db: HubDB, ext: str) -> int:
    with db.engine.connect() as conn:
        return conn.execute(select(ExternalRef.contact_id).where(ExternalRef.external_id == ext)).scalar_one()


@pytest.mark.both_databases
def test_a_call_on_a_deal_reaches_the_deals_contact_in_one_page(hub_db: HubDB) -> None:
    counts = page(hub_db, person("1", "+79035550001"), deal("d1", "1"), call("a1", "d1"),
                  call("a2", "d1", contact="1"), call("a3", "d404"))
    assert counts.activities["created"] == 3 and not counts.errors
    anna = contact_of(hub_db, "1")
    assert linked(hub_db) == {"a1": anna, "a2": anna, "a3": None}
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(Activity.order_external_id).where(Activity.external_id == "a1")).scalar() == "d1"


@pytest.mark.both_databases
def test_a_call_before_its_deal_and_its_contact_is_linked_whichever_comes_next(hub_db: HubDB) -> None:
    page(hub_db, call("a1", "d1"), call("a2", "d2"))
    assert linked(hub_db) == {"a1": None, "a2": None}
    # The deal first (its contact not there yet), then the contact.
    page(hub_db, deal("d1", "1"))
    assert linked(hub_db)["a1"] is None
    page(hub_db, person("1", "+79035550001"))
    assert linked(hub_db)["a1"] == contact_of(hub_db, "1")
    # The contact first, then the deal.
    page(hub_db, person("2", "+79035550002"))
    assert linked(hub_db)["a2"] is None
    counts = page(hub_db, deal("d2", "2"))
    assert linked(hub_db)["a2"] == contact_of(hub_db, "2") and counts.orders["created"] == 1


@pytest.mark.both_databases
def test_a_deal_that_changes_hands_takes_its_calls_but_not_those_of_a_person(hub_db: HubDB) -> None:
    page(hub_db, person("1", "+79035550001"), person("2", "+79035550002"), deal("d1", "1"),
         call("a1", "d1"), call("a2", "d1", contact="1"))
    anna, other = contact_of(hub_db, "1"), contact_of(hub_db, "2")
    assert linked(hub_db) == {"a1": anna, "a2": anna}
    page(hub_db, deal("d1", "2"))
    # a1 belongs to the person only through the deal; a2 was logged with its own contact.
    assert linked(hub_db) == {"a1": other, "a2": anna}
    again = page(hub_db, call("a1", "d1"), call("a2", "d1", contact="1"))
    assert again.activities == {"created": 0, "updated": 0, "deleted": 0, "refused": 0}


# --- Bitrix24: deal-owned rows of the same crm.activity.list walk ------------------------------------

HOOK = "https://shop.bitrix24.ru/rest/1/s3cr3tc0de/"
TIME = {"start": 1724916859.4, "finish": 1724916859.5, "duration": 0.1, "processing": 0.05}


def b24_row(activity_id: int, owner_type: str, owner: str, **extra: Any) -> dict[str, Any]:
    """A crm.activity.list row as the documentation shows it (strings, the portal's offset)."""
    row = {"ID": str(activity_id), "OWNER_TYPE_ID": owner_type, "OWNER_ID": owner, "TYPE_ID": "2",
           "PROVIDER_ID": "VOXIMPLANT_CALL", "DIRECTION": "1", "SUBJECT": "Входящий звонок",
           "START_TIME": "2024-08-15T10:00:00+03:00", "END_TIME": "2024-08-15T10:02:00+03:00", "COMPLETED": "Y",
           "RESPONSIBLE_ID": "3", "SETTINGS": [], "CREATED": "2024-08-15T10:00:00+03:00",
           "LAST_UPDATED": "2024-08-15T10:02:01+03:00"}
    row.update(extra)
    return row


@responses.activate
def test_bitrix24_reads_deal_activities_in_the_same_walk_and_names_deal_and_person() -> None:
    source = Bitrix24Source(Settings(), client=Client(WebhookAuth(HOOK), LocalBucket(1000, 1000),
                                                      sleep=lambda s: None))
    rows = [b24_row(501, "2", "77", BINDINGS=[{"OWNER_TYPE_ID": "2", "OWNER_ID": "77"},
                                              {"OWNER_TYPE_ID": "3", "OWNER_ID": "12"}]),
            b24_row(502, "2", "78"),  # a portal that leaves BINDINGS out: the deal's contact is found by Hub
            b24_row(503, "3", "12", BINDINGS=[{"entityTypeId": 3, "entityId": 12},
                                              {"entityTypeId": 2, "entityId": 77}]),
            b24_row(504, "4", "9")]
    responses.post(HOOK + "batch", json={"result": {"result": {"p0": rows}, "result_error": [], "result_total": [],
                                                    "result_next": [], "result_time": []}, "time": TIME})
    pages = list(source.read("activities", None, True))
    records = [r for p in pages for r in p.records if isinstance(r, ActivityRecord)]
    assert [(r.external_id, r.contact_external_id, r.order_external_id, r.company_external_id) for r in records] == [
        ("501", "12", "77", None), ("502", None, "78", None), ("503", "12", "77", None), ("504", None, None, "9")]
    assert len(responses.calls) == 1  # one walk, no request per record
    command = json.loads(responses.calls[0].request.body or b"")["cmd"]["p0"]
    query = parse_qs(urlsplit(command).query)
    assert query["filter[@OWNER_TYPE_ID][]"] == ["2", "3", "4"]  # "@" is IN; a bare list would be "="
    assert {"BINDINGS", "COMMUNICATIONS"} <= set(query["select[]"])


def test_bitrix24_bindings_read_either_documented_shape_and_ignore_junk() -> None:
    assert b24_mapping.bound({"BINDINGS": [{"OWNER_TYPE_ID": "2", "OWNER_ID": "5"}, {"entityTypeId": 3,
                                                                                     "entityId": 8}, "x", {}]}) == {
        "2": "5", "3": "8"}
    assert b24_mapping.bound({"BINDINGS": {"2": 5}}) == {} and b24_mapping.bound({}) == {}


# --- amoCRM: notes of leads, and the tasks list that already covers every entity type -------------------

BASE = "https://shop.amocrm.ru"
NOW = 1_700_000_000


def amo_listing(key: str, path: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"_page": 1, "_links": {"self": {"href": f"{BASE}/api/v4/{path}?page=1"}}, "_embedded": {key: items}}


def amo_note(note_id: int, lead: int, note_type: str = "call_in", **params: Any) -> dict[str, Any]:
    return {"id": note_id, "entity_id": lead, "created_by": 6100002, "updated_by": 6100002, "created_at": NOW - 60,
            "updated_at": NOW - 60, "responsible_user_id": 6100002, "group_id": 0, "note_type": note_type,
            "params": {"uniq": f"u{note_id}", "source": "Телефония", "phone": "+79161234567", "link": "",
                       "duration": 0, "call_status": 6, **params}, "account_id": 1}


@responses.activate
def test_amocrm_incremental_reads_lead_calls_in_one_more_list_and_lead_tasks_in_the_tasks_one() -> None:
    client = AmoClient(BASE, StaticAuth("tok"), LocalBucket(10_000, 10_000), sleep=lambda s: None)
    source = AmoSource(Settings(extra={"amocrm": {}}), client=client,
                       account={"currency": "RUB", "customers_mode": "disabled"}, clock=lambda: NOW)
    responses.get(f"{BASE}/api/v4/contacts/notes", status=204, body="")
    responses.get(f"{BASE}/api/v4/companies/notes", status=204, body="")
    responses.get(f"{BASE}/api/v4/leads/notes", json=amo_listing("notes", "leads/notes", [amo_note(31, 4001)]))
    responses.get(f"{BASE}/api/v4/tasks", json=amo_listing("tasks", "tasks", [
        {"id": 41, "entity_id": 4001, "entity_type": "leads", "task_type_id": 1, "is_completed": False,
         "complete_till": NOW + 3600, "text": "Перезвонить", "responsible_user_id": 6100002},
        {"id": 42, "entity_id": 7, "entity_type": "contacts", "task_type_id": 2, "is_completed": True,
         "complete_till": NOW - 3600, "text": "Встреча"}]))
    pages = list(source.read("activities", json.dumps({"since": NOW - 600}), False))
    records = {r.external_id: r for p in pages for r in p.records if isinstance(r, ActivityRecord)}
    call_on_lead, task_on_lead, own = records["note:31"], records["task:41"], records["task:42"]
    assert (call_on_lead.order_external_id, call_on_lead.contact_external_id, call_on_lead.missed) == (
        "4001", None, True)
    assert (task_on_lead.order_external_id, task_on_lead.kind, task_on_lead.done) == ("4001", "call", False)
    assert (own.contact_external_id, own.order_external_id) == ("7", None)
    paths = [urlsplit(str(c.request.url)).path for c in responses.calls]
    assert paths == ["/api/v4/contacts/notes", "/api/v4/companies/notes", "/api/v4/leads/notes", "/api/v4/tasks"]
    queries = [parse_qs(urlsplit(str(c.request.url)).query) for c in responses.calls]
    assert "filter[entity_type]" not in queries[-1]  # every entity type at once
    assert queries[2]["filter[note_type][]"] == ["call_in", "call_out"]


# --- end to end, against each emulator ---------------------------------------------------------------

def called_since(db: HubDB, contact_id: int, since: dt.datetime) -> bool:
    """Whether the segment rule "last call after `since`" holds for the contact, as a marketer writes it."""
    rule = {"field": "calls.last_at", "op": "after", "value": since.isoformat()}
    with db.engine.begin() as conn:
        segments = Segments(conn, db.settings, now=utcnow())
        store.add(conn, segments.registry, {"name": "probe", "rule": rule})
        segments = Segments(conn, db.settings, now=utcnow())
        ids = set(segments.member_ids("probe"))
        store.remove(conn, segments.registry, "probe")
    return contact_id in ids


def activity(db: HubDB, source: str, external_id: str) -> Any:
    with db.engine.connect() as conn:
        return conn.execute(select(Activity.__table__).where(
            Activity.source == source, Activity.external_id == external_id)).mappings().one()


def refs(db: HubDB, source: str) -> dict[str, int]:
    with db.engine.connect() as conn:
        return {ext: cid for ext, cid in conn.execute(select(ExternalRef.external_id, ExternalRef.contact_id).where(
            ExternalRef.source == source))}


@pytest.fixture
def portal() -> Iterator[SandboxServer]:
    server = SandboxServer(Portal(contacts=80, seed=11, today=dt.date(2025, 6, 1), activities=300)).start()
    yield server
    server.stop()
    server.portal.close()


@pytest.mark.both_databases
def test_bitrix24_a_call_on_a_deal_is_the_contacts_last_call_once(hub_db: HubDB, plugin_manager: Any,
                                                                  portal: SandboxServer) -> None:
    plugin_manager.register(bitrix24_plugin, name="bitrix24")
    bitrix24_plugin.register_commands(cli)
    p = portal.portal
    run_ok("connect", "bitrix24", "--webhook", portal.webhook_url)
    report = json.loads(run_ok("sync", "bitrix24", "--full", "--json").output)
    on_deals = [row for row in (p.logged_activity(i) for i in range(1, p.activity_count + 1))
                if row["OWNER_TYPE_ID"] == "2"]
    assert on_deals and report["activities"]["created"] == p.activity_count  # each once, deal ones included
    ids = refs(hub_db, "bitrix24")
    for row in on_deals[:20]:
        held = activity(hub_db, "bitrix24", row["ID"])
        assert held.order_external_id == row["OWNER_ID"]
        assert held.contact_id == ids[str(p.deal(int(row["OWNER_ID"]))["CONTACT_ID"])]
    # A call logged on a deal card now: the next incremental run brings it to the deal's contact.
    deal_id = int(on_deals[0]["OWNER_ID"])
    person = ids[str(p.deal(deal_id)["CONTACT_ID"])]
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    assert not called_since(hub_db, person, now - dt.timedelta(minutes=1))
    call_id = p.add_activity({"OWNER_TYPE_ID": 2, "OWNER_ID": deal_id, "TYPE_ID": 2, "PROVIDER_ID": "VOXIMPLANT_CALL",
                              "DIRECTION": 2, "SUBJECT": "Исходящий звонок", "START_TIME": now.isoformat(),
                              "END_TIME": (now + dt.timedelta(minutes=3)).isoformat(), "COMPLETED": "Y"})
    again = json.loads(run_ok("sync", "bitrix24", "--json").output)
    assert again["kind"] == "incremental" and again["activities"]["created"] == 1
    held = activity(hub_db, "bitrix24", str(call_id))
    assert (held.contact_id, held.order_external_id, held.duration_s) == (person, str(deal_id), 180)
    assert called_since(hub_db, person, now - dt.timedelta(minutes=1))
    with hub_db.engine.connect() as conn:
        assert len(conn.execute(select(Activity.id).where(Activity.source == "bitrix24")).all()) == p.activity_count


@pytest.fixture
def account() -> Iterator[AmoServer]:
    held = Account(contacts=60, seed=5, activities=300, rate_limit=None, today=dt.date(2025, 6, 1))
    with AmoServer(held) as server:
        yield server
    held.close()


@pytest.mark.both_databases
def test_amocrm_a_call_on_a_lead_is_the_contacts_last_call_once(hub_db: HubDB, plugin_manager: Any,
                                                                account: AmoServer) -> None:
    plugin_manager.register(plugins.amocrm)
    plugins.amocrm.register_commands(cli)
    held = account.account
    run_ok("connect", "amocrm", "--base-url", account.base_url, "--long-lived-token", held.issue_long_lived_token())
    report = json.loads(run_ok("sync", "amocrm", "--full", "--json").output)
    lead_calls = held.calls("leads")
    lead_tasks = [t for t in held.seeded_tasks if t["entity_type"] == "leads"]
    assert lead_calls and lead_tasks
    assert report["activities"]["created"] == held.activities_count  # each once, those on leads included
    ids = refs(hub_db, "amocrm")
    for note in lead_calls[:20]:
        main = (held.lead(note["entity_id"], with_contacts=True) or {})["_embedded"]["contacts"][0]["id"]
        stored = activity(hub_db, "amocrm", f"note:{note['id']}")
        assert (stored.order_external_id, stored.contact_id) == (str(note["entity_id"]), ids[str(main)])
    lead_id = lead_calls[0]["entity_id"]
    main = (held.lead(lead_id, with_contacts=True) or {})["_embedded"]["contacts"][0]["id"]
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(minutes=1)
    assert not called_since(hub_db, ids[str(main)], before)
    note_id = held.add_call("leads", lead_id, incoming=True, duration=0, call_status=6)
    again = json.loads(run_ok("sync", "amocrm", "--json").output)
    assert again["kind"] == "incremental" and again["activities"]["created"] == 1
    stored = activity(hub_db, "amocrm", f"note:{note_id}")
    assert (stored.contact_id, stored.missed, stored.direction) == (ids[str(main)], True, "in")
    assert called_since(hub_db, ids[str(main)], before)
    # Read again by the next run's overlap window, it stays one row.
    third = json.loads(run_ok("sync", "amocrm", "--json").output)
    assert third["activities"]["created"] == 0 and activity(hub_db, "amocrm", f"note:{note_id}").id == stored.id


# --- the emulators serve the documented shapes --------------------------------------------------------

def test_the_bitrix24_emulator_binds_deal_calls_to_deal_and_person_and_drops_them_with_the_deal(
        portal: SandboxServer) -> None:
    def listed(**params: Any) -> list[dict[str, Any]]:
        answer = requests.post(portal.webhook_url + "crm.activity.list", json=params, timeout=30)
        assert answer.status_code == 200, answer.text
        return list(answer.json()["result"])

    p = portal.portal
    on_deals = listed(filter={"OWNER_TYPE_ID": 2}, select=["ID", "OWNER_ID", "BINDINGS"])
    assert on_deals
    first = on_deals[0]
    contact = str(p.deal(int(first["OWNER_ID"]))["CONTACT_ID"])
    assert first["BINDINGS"] == [{"OWNER_TYPE_ID": "2", "OWNER_ID": first["OWNER_ID"]},
                                 {"OWNER_TYPE_ID": "3", "OWNER_ID": contact}]
    assert "BINDINGS" not in listed(filter={"ID": first["ID"]}, select=["*"])[0]  # only when named
    everything = listed(filter={"OWNER_TYPE_ID": [2, 3, 4]}, select=["ID"], order={"ID": "ASC"}, start=-1)
    assert len({row["ID"] for row in everything}) == len(everything)  # one row an activity
    p.delete_deal(int(first["OWNER_ID"]))
    assert not listed(filter={"OWNER_TYPE_ID": 2, "OWNER_ID": first["OWNER_ID"]}, select=["ID"])


def test_the_amocrm_emulator_lists_lead_call_notes_and_lead_tasks() -> None:
    held = Account(contacts=40, seed=3, activities=200, rate_limit=None, today=dt.date(2025, 6, 1))
    headers = {"Authorization": f"Bearer {held.issue_long_lived_token()}"}
    try:
        answer = held.handle("GET", "/api/v4/leads/notes?filter[note_type][]=call_in&filter[note_type][]=call_out"
                                    "&limit=250", headers=headers)
        assert answer.status == 200, answer.body
        notes = answer.json()["_embedded"]["notes"]
        assert notes and {n["note_type"] for n in notes} <= {"call_in", "call_out"}
        assert all(n["entity_id"] in held.lead_ids() and "call_status" in n["params"] for n in notes)
        tasks = held.handle("GET", "/api/v4/tasks?filter[entity_type]=leads&limit=250", headers=headers).json()
        assert tasks["_embedded"]["tasks"] and {t["entity_type"] for t in tasks["_embedded"]["tasks"]} == {"leads"}
        assert held.activities_count == 200
    finally:
        held.close()
