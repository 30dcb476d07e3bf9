"""A deal (lead) deleted in the CRM takes the calls, meetings and notes logged on it alone with it.

Bitrix24 deletes a deal's activities that are bound to nothing else and only unbinds those
also bound to a contact or company (crm.deal.delete); an amoCRM note or task belongs to one
lead. Hub does the same whichever way it learns of the deletion (an event's fetch, the
amoCRM events log, --reconcile), and the contact's call figures follow at once.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Iterator

import pytest
import requests
from sqlalchemy import select

import plugins.amocrm
import plugins.bitrix24 as bitrix24_plugin
from hub import sync
from hub.db import utcnow
from hub.models import Activity, ExternalRef, Order
from hub.records import ActivityRecord, ContactRecord, Deletion, OrderRecord
from hub.segments import store
from hub.segments.evaluate import Segments
from plugins.amocrm.sandbox import Account
from plugins.amocrm.sandbox import SandboxServer as AmoServer
from plugins.bitrix24 import mapping as b24_mapping
from plugins.bitrix24.sandbox import Portal, SandboxServer
from tests.conftest import HubDB
from tests.support.cli import cli, run_ok


def calls_in_30_days(db: HubDB, contact_id: int) -> int:
    """The contact's `calls.count.30d` as a segment rule reads it (the lead score's input too)."""
    with db.engine.begin() as conn:
        for n in range(0, 20):
            rule = {"field": "calls.count.30d", "op": "eq", "value": n}
            segments = Segments(conn, db.settings, now=utcnow())
            store.add(conn, segments.registry, {"name": "probe", "rule": rule})
            segments = Segments(conn, db.settings, now=utcnow())
            inside = contact_id in set(segments.member_ids("probe"))
            store.remove(conn, segments.registry, "probe")
            if inside:
                return n
    raise AssertionError("more than 19 calls")


def held(db: HubDB, source: str) -> dict[str, tuple[int | None, str | None]]:
    """external id -> (contact id, deal) of every activity Hub holds from `source`."""
    a = Activity.__table__.c
    with db.engine.connect() as conn:
        return {r.external_id: (r.contact_id, r.order_external_id) for r in conn.execute(
            select(a.external_id, a.contact_id, a.order_external_id).where(a.source == source))}


def contact_of(db: HubDB, source: str, external_id: str) -> int:
    with db.engine.connect() as conn:
        return conn.execute(select(ExternalRef.contact_id).where(
            ExternalRef.source == source, ExternalRef.external_id == external_id)).scalar_one()


def orders(db: HubDB, source: str) -> set[str]:
    with db.engine.connect() as conn:
        return set(conn.execute(select(Order.external_id).where(Order.source == source)).scalars())


# --- write_deletions -----------------------------------------------------------------------------------

AT = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(days=2)


def call(ext: str, order: str | None, contact: str | None = None, company: str | None = None) -> ActivityRecord:
    return ActivityRecord(source="crm", external_id=ext, kind="call", at=AT, direction="out", duration_s=60,
                          contact_external_id=contact, company_external_id=company, order_external_id=order)


def write(db: HubDB, *records: Any) -> sync.Counts:
    counts = sync.Counts()
    with db.engine.begin() as conn:
        sync.write_page(conn, list(records), db.settings, counts)
    return counts


@pytest.mark.both_databases
def test_a_page_deleting_a_deal_drops_its_own_calls_and_unbinds_those_of_a_person(hub_db: HubDB) -> None:
    write(hub_db, ContactRecord(source="crm", external_id="1", first_name="Анна", last_name="Смирнова",
                                phones=["+79035550001"]),
          OrderRecord(source="crm", external_id="d1", contact_external_id="1"),
          OrderRecord(source="crm", external_id="d2", contact_external_id="1"),
          call("on-deal", "d1"), call("with-anna", "d1", contact="1"), call("other-deal", "d2"),
          call("unknown-deal", "d404"), call("with-firm", "d1", company="c9"),
          call("with-someone-new", "d1", contact="7"))
    anna = contact_of(hub_db, "crm", "1")
    # The last two reach Anna through the deal: the firm is no person, person 7 is not in Hub yet.
    assert calls_in_30_days(hub_db, anna) == 5
    counts = write(hub_db, Deletion("crm", "order", "d1"), Deletion("crm", "order", "d404"))
    assert counts.orders["deleted"] == 1 and counts.activities["deleted"] == 2
    # The call logged on the deal alone went with it; one also bound to Anna stays hers, without the deal;
    # one bound to a company or to someone else no longer reaches Anna through a deal that is gone.
    left = {"with-anna": (anna, None), "other-deal": (anna, "d2"), "with-firm": (None, None),
            "with-someone-new": (None, None)}
    assert held(hub_db, "crm") == left
    assert orders(hub_db, "crm") == {"d2"}
    assert calls_in_30_days(hub_db, anna) == 2
    # Deleting it again (an event and a reconcile both tell) changes nothing more.
    again = write(hub_db, Deletion("crm", "order", "d1"))
    assert again.activities["deleted"] == 0 and again.orders["deleted"] == 0
    assert held(hub_db, "crm") == left
    # Person 7 arriving later gets the call that was with them.
    write(hub_db, ContactRecord(source="crm", external_id="7", first_name="Олег", last_name="Петров",
                                phones=["+79035550007"]))
    assert held(hub_db, "crm")["with-someone-new"] == (contact_of(hub_db, "crm", "7"), None)


def test_a_bitrix24_deal_call_bound_to_a_company_names_it() -> None:
    row = {"ID": "9", "OWNER_TYPE_ID": "2", "OWNER_ID": "77", "TYPE_ID": "2", "DIRECTION": "2", "COMPLETED": "Y",
           "START_TIME": "2024-08-15T10:00:00+03:00",
           "BINDINGS": [{"OWNER_TYPE_ID": "2", "OWNER_ID": "77"}, {"OWNER_TYPE_ID": "4", "OWNER_ID": "5"}]}
    record = b24_mapping.activity(row)
    assert record is not None
    assert (record.order_external_id, record.company_external_id, record.contact_external_id) == ("77", "5", None)


# --- Bitrix24 through its emulator ----------------------------------------------------------------------

@pytest.fixture
def portal() -> Iterator[SandboxServer]:
    server = SandboxServer(Portal(contacts=12, seed=7, today=dt.date.today(), activities=0, companies=0)).start()
    yield server
    server.stop()
    server.portal.close()


def b24_call(deal_id: int, when: dt.datetime) -> dict[str, Any]:
    return {"OWNER_TYPE_ID": 2, "OWNER_ID": deal_id, "TYPE_ID": 2, "PROVIDER_ID": "VOXIMPLANT_CALL",
            "DIRECTION": 2, "SUBJECT": "Исходящий звонок", "START_TIME": when.isoformat(),
            "END_TIME": (when + dt.timedelta(minutes=2)).isoformat(), "COMPLETED": "Y"}


@pytest.mark.both_databases
def test_bitrix24_a_deleted_deal_takes_its_call_on_the_event_and_reconcile_agrees(
        hub_db: HubDB, plugin_manager: Any, portal: SandboxServer) -> None:
    plugin_manager.register(bitrix24_plugin, name="bitrix24")
    bitrix24_plugin.register_commands(cli)
    p = portal.portal
    run_ok("connect", "bitrix24", "--webhook", portal.webhook_url)
    run_ok("sync", "bitrix24", "--full", "--json")
    person = p.contact_ids()[0]
    anna = contact_of(hub_db, "bitrix24", str(person))
    before = calls_in_30_days(hub_db, anna)
    # A call logged on a deal before it had a contact is bound to the deal alone; one logged after
    # the contact was set is bound to the deal and to the person (BINDINGS), as a portal binds them.
    deal_id = p.add_deal({"TITLE": "Кухня под заказ", "OPPORTUNITY": 90000})
    when = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(hours=3)
    alone = str(p.add_activity(b24_call(deal_id, when)))
    p.update_deal(deal_id, {"CONTACT_ID": person})
    both = str(p.add_activity(b24_call(deal_id, when + dt.timedelta(hours=1))))
    assert p.logged_activity(int(both))["BINDINGS"] == [{"OWNER_TYPE_ID": "2", "OWNER_ID": str(deal_id)},
                                                         {"OWNER_TYPE_ID": "3", "OWNER_ID": str(person)}]
    run_ok("sync", "bitrix24", "--json")
    assert {k: held(hub_db, "bitrix24")[k] for k in (alone, both)} == {alone: (anna, str(deal_id)),
                                                                         both: (anna, str(deal_id))}
    assert calls_in_30_days(hub_db, anna) == before + 2

    p.delete_deal(deal_id)
    # The portal drops the call bound to the deal alone and keeps the other, now owned by the person.
    live = portal_activities(portal)
    assert alone not in live and both in live
    assert p.logged_activity(int(both))["OWNER_TYPE_ID"] == "3"
    # ONCRMDEALDELETE queues this fetch (plugins/bitrix24/webhooks.py -> hub.jobs.fetch_records).
    report = sync.fetch(hub_db.engine, hub_db.settings, "bitrix24", "orders", [str(deal_id)])
    assert report.counts.orders["deleted"] == 1 and report.counts.activities["deleted"] == 1
    after_event = held(hub_db, "bitrix24")
    assert alone not in after_event and after_event[both] == (anna, None)
    assert calls_in_30_days(hub_db, anna) == before + 1
    assert set(after_event) == live

    swept = json.loads(run_ok("sync", "bitrix24", "--reconcile", "--json").output)
    assert held(hub_db, "bitrix24") == after_event, swept
    again = json.loads(run_ok("sync", "bitrix24", "--json").output)
    assert held(hub_db, "bitrix24") == after_event, again
    assert calls_in_30_days(hub_db, anna) == before + 1


def portal_activities(portal: SandboxServer) -> set[str]:
    """The ids crm.activity.list gives for deals, contacts and companies (the walk Hub's sync does)."""
    answer = requests.post(portal.webhook_url + "crm.activity.list", timeout=30, json={
        "filter": {"@OWNER_TYPE_ID": [2, 3, 4]}, "select": ["ID"], "order": {"ID": "ASC"}})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert "next" not in body  # one page in these small portals
    return {str(row["ID"]) for row in body["result"]}


@pytest.mark.both_databases
def test_bitrix24_a_deal_deleted_while_no_event_came_goes_with_its_call_on_reconcile(
        hub_db: HubDB, plugin_manager: Any, portal: SandboxServer) -> None:
    plugin_manager.register(bitrix24_plugin, name="bitrix24")
    bitrix24_plugin.register_commands(cli)
    p = portal.portal
    run_ok("connect", "bitrix24", "--webhook", portal.webhook_url)
    person = p.contact_ids()[1]
    deal_id = p.add_deal({"TITLE": "Ремонт", "OPPORTUNITY": 5000})
    when = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(hours=3)
    alone = str(p.add_activity(b24_call(deal_id, when)))
    p.update_deal(deal_id, {"CONTACT_ID": person})
    run_ok("sync", "bitrix24", "--full", "--json")
    anna = contact_of(hub_db, "bitrix24", str(person))
    assert held(hub_db, "bitrix24")[alone] == (anna, str(deal_id))
    before = calls_in_30_days(hub_db, anna)
    p.delete_deal(deal_id)
    run_ok("sync", "bitrix24", "--reconcile", "--json")
    assert alone not in held(hub_db, "bitrix24") and str(deal_id) not in orders(hub_db, "bitrix24")
    assert calls_in_30_days(hub_db, anna) == before - 1


# --- amoCRM through its emulator ------------------------------------------------------------------------

@pytest.fixture
def account() -> Iterator[AmoServer]:
    acc = Account(contacts=12, seed=5, activities=0, rate_limit=None, today=dt.date.today())
    with AmoServer(acc) as server:
        yield server
    acc.close()


@pytest.mark.both_databases
def test_amocrm_a_deleted_lead_takes_its_call_note_through_the_events_log_and_reconcile_agrees(
        hub_db: HubDB, plugin_manager: Any, account: AmoServer) -> None:
    plugin_manager.register(plugins.amocrm)
    plugins.amocrm.register_commands(cli)
    acc = account.account
    run_ok("connect", "amocrm", "--base-url", account.base_url, "--long-lived-token", acc.issue_long_lived_token())
    run_ok("sync", "amocrm", "--full", "--json")
    person = acc.contact_ids()[0]
    anna = contact_of(hub_db, "amocrm", str(person))
    before = calls_in_30_days(hub_db, anna)
    lead_id = acc.add_lead(name="Кухня под заказ", price=90000, contact_id=person)
    on_lead = f"note:{acc.add_call('leads', lead_id, incoming=False, duration=120, call_status=4)}"
    on_person = f"note:{acc.add_call('contacts', person, incoming=True, duration=30, call_status=4)}"
    run_ok("sync", "amocrm", "--json")
    assert {k: held(hub_db, "amocrm")[k] for k in (on_lead, on_person)} == {on_lead: (anna, str(lead_id)),
                                                                             on_person: (anna, None)}
    assert calls_in_30_days(hub_db, anna) == before + 2

    acc.delete_lead(lead_id)
    assert all(note["entity_id"] != lead_id for note in acc.calls("leads"))  # the account drops it too
    # The incremental run reads lead_deleted from the events log.
    report = json.loads(run_ok("sync", "amocrm", "--json").output)
    assert report["orders"]["deleted"] == 1 and report["activities"]["deleted"] == 1
    after_events = held(hub_db, "amocrm")
    assert on_lead not in after_events and after_events[on_person] == (anna, None)
    assert calls_in_30_days(hub_db, anna) == before + 1

    run_ok("sync", "amocrm", "--reconcile", "--json")
    assert held(hub_db, "amocrm") == after_events
    assert calls_in_30_days(hub_db, anna) == before + 1


def test_the_amocrm_emulator_drops_a_deleted_leads_notes_and_tasks() -> None:
    acc = Account(contacts=6, seed=3, activities=40, rate_limit=None, today=dt.date.today())
    try:
        lead_tasks = [t for t in acc.seeded_tasks if t["entity_type"] == "leads"]
        lead_calls = acc.calls("leads")
        assert lead_tasks or lead_calls
        lead_id = (lead_tasks[0] if lead_tasks else lead_calls[0])["entity_id"]
        count = acc.activities_count
        mine = (sum(t["entity_id"] == lead_id for t in lead_tasks)
                + sum(c["entity_id"] == lead_id for c in lead_calls))
        acc.delete_lead(lead_id)
        assert all(t["entity_id"] != lead_id for t in acc.seeded_tasks if t["entity_type"] == "leads")
        assert all(c["entity_id"] != lead_id for c in acc.calls("leads"))
        assert acc.activities_count == count - mine
    finally:
        acc.close()
