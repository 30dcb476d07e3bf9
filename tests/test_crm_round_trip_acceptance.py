"""The CRM round trip, complete: issue 23 checked as a Bitrix24 and an amoCRM user would.

A small B2B base lives in both emulators, each a real HTTP server speaking its
CRM's protocol: a company with a switchboard and the people who work there,
a customer whose calls (one incoming call missed) and a meeting the managers
logged, custom fields of several types with values, and an open deal that has
sat in one stage for 20 days. Everything Hub does goes through the `hub`
command line: it syncs both CRMs, and then

- companies, calls and meetings, custom fields (found by the name the CRM
  shows) and the stuck deal select the right people in segments;
- a promo code issued to an amoCRM contact lands in their field with a note,
  and the leads that carry it (in a field, or a tag) redeem it, once;
- an erased contact disappears from Bitrix24, is anonymised in amoCRM, and
  no later sync brings them back;
- lead scores and lifecycle stages appear in both CRMs' fields, and a change
  for one person writes that one record only.

Assertions read what the CLI prints, the database, and the emulators' own
state (their Python state objects and /_sandbox/stats). Nothing of Hub's own
is mocked; the story of each test reads top to bottom, the base and the
helpers are at the bottom.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import select

import plugins.amocrm as amocrm_plugin
import plugins.bitrix24 as bitrix24_plugin
import plugins.gdpr as gdpr_plugin
from hub import consent
from hub.models import (Activity, AuditEntry, Company, Contact, ContactCompany, ContactIdentity, CustomField,
                        ExternalRef, LeadScore, Order)
from plugins.amocrm.sandbox import Account, SandboxServer as AmoServer
from plugins.amocrm.sandbox import b2b as amo_b2b
from plugins.amocrm.sandbox.data import (CONTACT_PROMO, INDUSTRY, LEAD_SCORE, LEAD_SOURCE, LIFECYCLE, PIPELINES,
                                         PROMO_CODE, USERS, WON_STATUS_ID)
from plugins.bitrix24.sandbox import Portal, SandboxServer as BitrixServer
from tests.conftest import HubDB
from tests.support.cli import cli
from tests.support.shop import use_workflows

pytestmark = pytest.mark.both_databases

DAY = 86_400
VECTOR = "ООО «Вектор»"
SWITCHBOARD = "+7 (495) 123-40-00"
SALES = PIPELINES[0]  # «Продажи»: first contact, negotiations, ...
MANAGER = USERS[2]  # the amoCRM manager of the customer whose deal is stuck
HUB_TOML = f"""\
[bitrix24]
fields = {{ lead_score = "UF_CRM_SCORE", lifecycle = "UF_CRM_STAGE" }}

[amocrm]
promo_field = {PROMO_CODE.id}
promo_tag_prefix = "promo:"
fields = {{ promo_code = {CONTACT_PROMO.id}, lead_score = {LEAD_SCORE.id}, lifecycle = {LIFECYCLE.id} }}

[workflows]
promo_crm_field = "promo_code"
"""
PROMO_WORKFLOW = """\
name: amo_spring_codes
title: Весенний промокод клиентам из amoCRM
trigger: {segment: amo_spring}
steps:
  - promo_code: {discount: 15%, valid_for: 14d, prefix: SPRING}
"""


# --- 1. companies, calls and meetings, custom fields, stuck deals: in, and usable in segments ---------

def test_both_companies_arrive_with_the_people_who_work_there(base: Base) -> None:
    b, a = base.bitrix, base.amo
    vector = base.company("bitrix24", str(b.vector))
    assert (vector.name, vector.city, vector.inn) == (VECTOR, "Москва", "7701234560")
    assert "+74951234000" in vector.phones
    assert vector.orders_count == 3  # its three won deals
    technosfera = base.company("amocrm", str(a.technosfera))
    assert (technosfera.name, technosfera.city) == (amo_b2b.TECHNOSFERA, "Москва")

    # Two colleagues behind one switchboard stay two people, each linked to their company.
    kovalev, belova = base.contact("bitrix24", b.kovalev), base.contact("bitrix24", b.belova)
    assert kovalev != belova
    assert base.works_at(vector.id) == {kovalev, belova}
    employees = {base.contact("amocrm", i) for i in a.employees}
    assert len(employees) == 3 and base.works_at(technosfera.id) == employees

    assert base.members({"field": "company.name", "op": "eq", "value": VECTOR}) == {kovalev, belova}
    assert base.members({"field": "company.name", "op": "eq", "value": amo_b2b.TECHNOSFERA}) == employees
    assert base.members({"field": "company.won_deals", "op": "gte", "value": 3}) == {kovalev, belova}
    assert base.members({"field": "company.inn", "op": "eq", "value": "7701234560"}) == {kovalev, belova}


def test_an_amocrm_company_counts_the_leads_won_with_it(base: Base) -> None:
    # A manager adds a wholesale client through the API, links two people to it (one from the company's side,
    # one in bulk from the contact's), and three won leads are created with the company, as amoCRM allows.
    a = base.amo
    (made,) = a.api("POST", "/api/v4/companies", [{"name": "ООО «Меридиан-Опт»"}])["_embedded"]["companies"]
    company = made["id"]
    linked = a.api("POST", f"/api/v4/companies/{company}/link",
                   [{"to_entity_id": a.lebedeva, "to_entity_type": "contacts"}])["_embedded"]["links"]
    assert linked == [{"entity_id": company, "entity_type": "companies", "to_entity_id": a.lebedeva,
                       "to_entity_type": "contacts", "metadata": None}]
    a.api("POST", "/api/v4/contacts/link",
          [{"entity_id": a.mironov, "to_entity_id": company, "to_entity_type": "companies"}])
    for n in range(3):
        a.api("POST", "/api/v4/leads", [{
            "name": f"Поставка №{n + 1}", "price": 90_000, "pipeline_id": SALES.id, "status_id": WON_STATUS_ID,
            "_embedded": {"contacts": [{"id": a.lebedeva, "is_main": True}], "companies": [{"id": company}]}}])
    report = base.hub("sync", "amocrm")
    assert (report["companies"]["created"], report["orders"]["created"]) == (1, 3), report
    held = base.company("amocrm", str(company))
    assert (held.name, held.orders_count) == ("ООО «Меридиан-Опт»", 3)
    people = {base.contact("amocrm", a.lebedeva), base.contact("amocrm", a.mironov)}
    assert base.works_at(held.id) == people
    won = base.members({"field": "company.won_deals", "op": "gte", "value": 3})
    assert won >= people and base.contact("amocrm", a.orekhov) not in won


def test_calls_and_meetings_select_the_customer_the_managers_talk_to(base: Base) -> None:
    callers = {base.contact("bitrix24", base.bitrix.sokolova), base.contact("amocrm", base.amo.smirnova)}
    for caller in callers:
        logged = base.activities(caller)
        assert sorted((row.kind, row.direction, row.missed) for row in logged) == [
            ("call", "in", True), ("call", "out", False), ("meeting", None, False)]
        assert next(row.duration_s for row in logged if row.direction == "out") == 200
    assert base.members({"field": "calls.last_at", "op": "within_last", "value": "7d"}) == callers
    assert base.members({"field": "calls.count.30d", "op": "gte", "value": 1}) == callers
    assert base.members({"field": "calls.missed_incoming.30d", "op": "eq", "value": 1}) == callers
    assert base.members({"field": "calls.unanswered.30d", "op": "gte", "value": 1}) == callers  # not called back
    assert base.members({"field": "meetings.last_at", "op": "within_last", "value": "30d"}) == callers


def test_bitrix24_custom_fields_are_found_by_the_name_the_portal_shows(base: Base) -> None:
    offered = {f["field"]: f for f in base.hub("segments", "fields")}
    channel = base.field_named(offered, "bitrix24", "contact", "Откуда узнал")  # a list
    vip = base.field_named(offered, "bitrix24", "contact", "VIP")  # yes/no
    visit = base.field_named(offered, "bitrix24", "contact", "Первый визит")  # a date
    staff = base.field_named(offered, "bitrix24", "company", "Сотрудников")  # a number, on the company
    assert channel["type"] == "choice" and "Выставка" in channel["choices"]
    kovalev, belova = base.contact("bitrix24", base.bitrix.kovalev), base.contact("bitrix24", base.bitrix.belova)

    assert base.members({"field": channel["field"], "op": "eq", "value": "Выставка"}) == {kovalev}
    assert base.members({"field": channel["field"], "op": "eq", "value": "Сайт"}) == {belova}
    assert base.members({"field": vip["field"], "op": "eq", "value": "true"}) == {
        base.contact("bitrix24", base.bitrix.sokolova)}
    assert base.members({"field": visit["field"], "op": "before", "value": "2025-01-01"}) == {
        base.contact("bitrix24", base.bitrix.zakharov)}
    assert base.members({"field": staff["field"], "op": "gte", "value": 40}) == {kovalev, belova}


def test_amocrm_custom_fields_are_found_by_the_name_the_account_shows(base: Base) -> None:
    offered = {f["field"]: f for f in base.hub("segments", "fields")}
    source = base.field_named(offered, "amocrm", "contact", "Источник")  # a select
    industry = base.field_named(offered, "amocrm", "company", "Отрасль")  # a select, on the company
    assert source["type"] == "choice" and "Выставка" in source["choices"]
    assert base.members({"field": source["field"], "op": "eq", "value": "Выставка"}) == {
        base.contact("amocrm", base.amo.smirnova)}
    held = values_of(base.amo.account.company(base.amo.technosfera), INDUSTRY.id)
    assert base.members({"field": industry["field"], "op": "eq", "value": held[0]}) >= {
        base.contact("amocrm", i) for i in base.amo.employees}


def test_a_deal_stuck_in_one_stage_for_twenty_days_selects_its_customer(base: Base) -> None:
    stuck = {base.contact("bitrix24", base.bitrix.zakharov), base.contact("amocrm", base.amo.orekhov)}
    assert base.members({"field": "deals.open_stuck_days", "op": "gte", "value": 14}) == stuck
    assert base.members({"field": "deals.open_stuck_days", "op": "in", "value": [19, 20, 21]}) == stuck
    assert base.hub("segments", "count", "deal_stuck_14d") == {"segment": "deal_stuck_14d", "count": 2}
    assert base.members({"field": "deals.open_stage", "op": "eq", "value": "Переговоры"}) == {
        base.contact("amocrm", base.amo.orekhov)}
    assert base.members({"field": "deals.open_stage", "op": "eq", "value": "Подготовка документов"}) == {
        base.contact("bitrix24", base.bitrix.zakharov)}


def test_a_stuck_deal_gives_its_manager_a_task_in_each_crm_without_looking_them_up(base: Base) -> None:
    b, a = base.bitrix, base.amo
    b.reset_stats()
    before = len(a.account.tasks)  # Ольга's meeting
    switched_on = CliRunner().invoke(cli, ["workflows", "enable", "stuck_deal_followup"], catch_exceptions=False)
    assert switched_on.exit_code == 0, switched_on.output
    base.hub("workflows", "tick")
    todos = b.portal.activities()
    assert len(todos) == 1, todos
    (todo,) = todos
    assert (todo["ownerTypeId"], todo["ownerId"], todo["responsibleId"]) == (3, b.zakharov, 3)
    assert todo["title"] == ("Сделка «Оборудование для склада» 20 дней в этапе «Подготовка документов»: "
                             "позвоните клиенту")
    tasks = a.account.tasks[before:]
    assert len(tasks) == 1, tasks
    (task,) = tasks
    assert (task["entity_type"], task["entity_id"], task["responsible_user_id"]) == ("contacts", a.orekhov, MANAGER)
    assert "«Оптовый заказ» 20 дней в этапе «Переговоры»" in task["text"]
    # The manager is known from the sync: the portal was asked for nothing but the to-do.
    assert "crm.contact.get" not in b.stats()["methods"], b.stats()


# --- 2. a promo code issued to an amoCRM contact is redeemed by the lead that carries it -------------

def test_a_promo_code_issued_in_amocrm_is_redeemed_by_the_leads_that_carry_it(base: Base) -> None:
    a = base.amo
    lebedeva, mironov = base.contact("amocrm", a.lebedeva), base.contact("amocrm", a.mironov)
    base.hub("segments", "add", str(base.file("amo_spring.yaml", "name: amo_spring\nrule: {field: contact.last_name, "
                                                               "op: in, value: [Лебедева, Миронов]}\n")))
    base.hub("workflows", "add", str(base.file("amo_spring_codes.yaml", PROMO_WORKFLOW)), "--enable", "--yes")
    base.hub("workflows", "run", "amo_spring_codes")
    codes = base.promo_codes()
    assert set(codes) == {lebedeva, mironov}

    # The scheduler's tick writes each code to the contact's «Промокод» field, with a note for the manager.
    tick = base.hub("workflows", "tick")
    assert tick["promo_written_back"]["written"] == 2, tick
    for external, person in ((a.lebedeva, lebedeva), (a.mironov, mironov)):
        held = a.account.contact(external)
        assert values_of(held, CONTACT_PROMO.id) == [codes[person]]
        notes = [n for n in a.account.notes if n["entity_id"] == external and n["note_type"] == "common"]
        assert len(notes) == 1 and codes[person] in notes[0]["params"]["text"]

    # The customers buy: Лебедева's lead carries the code in its field (typed in lower case), Миронов's in a tag.
    a.account.add_lead(name="Заказ по промокоду", contact_id=a.lebedeva, price=4_200, status_id=WON_STATUS_ID,
                       promo_code=codes[lebedeva].lower())
    a.account.add_lead(name="Заказ с тегом", contact_id=a.mironov, price=2_900, status_id=WON_STATUS_ID,
                       tags=["опт", f"promo:{codes[mironov]}"])
    assert base.hub("sync", "amocrm")["orders"]["created"] == 2
    assert base.hub("workflows", "tick")["redeemed"] == 2
    for person in (lebedeva, mironov):
        shown = base.hub("promo", "show", codes[person])
        assert (shown["status"], shown["redeemed_by"], shown["contact_id"]) == ("redeemed", "order:amocrm", person)

    # Nothing new in the CRM: a second sync changes nothing, and nothing is redeemed twice.
    orders, issued = base.orders(), base.promo_rows()
    again = base.hub("sync", "amocrm")
    assert again["errors"] == 0 and again["orders"]["created"] == again["contacts"]["created"] == 0
    assert base.hub("workflows", "tick")["redeemed"] == 0
    assert base.orders() == orders and base.promo_rows() == issued


# --- 3. erasure reaches the CRMs and the person never comes back --------------------------------------

def test_an_erased_person_leaves_bitrix24_is_anonymised_in_amocrm_and_never_comes_back(base: Base) -> None:
    b, a = base.bitrix, base.amo
    sokolova, smirnova = base.contact("bitrix24", b.sokolova), base.contact("amocrm", a.smirnova)
    phones, emails = ["+79165551020", "+79174443322"], ["maria.sokolova.1985@mail.ru", "olga.smirnova.1988@mail.ru"]

    first = base.hub("gdpr", "erase", str(sokolova), "--delete-in-crm", "--yes")
    assert [(s["source"], s["external_id"], s["result"]) for s in first["sources"]] == [
        ("bitrix24", str(b.sokolova), "deleted")]
    assert b.sokolova not in b.portal.contact_ids()

    second = base.hub("gdpr", "erase", str(smirnova), "--delete-in-crm", "--yes")
    assert [(s["source"], s["external_id"], s["result"]) for s in second["sources"]] == [
        ("amocrm", str(a.smirnova), "anonymised")]
    held = a.account.contact(a.smirnova)
    assert held is not None and held["name"] == "Удалённый контакт"
    assert (held["first_name"], held["last_name"]) == ("", "")
    assert not held["custom_fields_values"]  # phones, emails, «Источник»: all gone
    assert "удалён по запросу" in [t["name"] for t in held["_embedded"]["tags"]]
    assert base.audited() == [[{"source": "bitrix24", "result": "deleted"}],
                              [{"source": "amocrm", "result": "anonymised"}]]

    # Syncs of both CRMs afterwards, incremental and full: neither person, nor their phone, email or name, is back.
    for source in ("bitrix24", "amocrm"):
        for how in ((), ("--full",)):
            report = base.hub("sync", source, *how)
            assert report["errors"] == 0 and report["contacts"]["created"] == 0, report
    assert base.identities() & {*phones, *emails} == set()
    names = base.names()
    assert not names & {("Мария", "Соколова"), ("Ольга", "Смирнова"), ("Удалённый", "контакт"),
                        ("Удалённый контакт", None)}
    assert base.refs("amocrm", a.smirnova) == [] and base.refs("bitrix24", b.sokolova) == []
    listed = json.dumps(base.hub("contacts", "list"), ensure_ascii=False)
    assert not any(value in listed for value in (*phones, *emails, "Смирнова", "Соколова", "Удалённый"))
    # Suppression holds: the phones and addresses stay on the suppression list for good.
    assert base.suppressed(phones, emails)
    # What managers logged with them goes with them, and a sync that reads the anonymised amoCRM contact's
    # call notes again brings none of it back.
    assert base.activities_of("amocrm", a.smirnova) == base.activities_of("bitrix24", b.sokolova) == []
    assert base.activities(smirnova) + base.activities(sokolova) == []


# --- 4. scores and stages go back to the CRMs' fields --------------------------------------------------

def test_lead_scores_appear_in_both_crms_and_a_change_writes_only_that_record(base: Base) -> None:
    b, a = base.bitrix, base.amo
    # The emulators count every 429/503 since they started, the seeding's own requests included (this
    # test's helpers wait those out): what counts here is what Hub's pushes and syncs meet from now on.
    throttled = (b.stats()["status_503"], a.stats()["too_many_requests"])
    base.hub("segments", "refresh")
    first = base.hub("crm", "push")
    for source, ids in (("bitrix24", b.contact_ids), ("amocrm", a.contact_ids)):
        part = first["sources"][source]
        assert part["changed"] == part["written"] == len(ids) and part["failed"] == 0, first
    scores = base.scores()
    for external in b.contact_ids:
        held = b.portal.contact(external)
        assert float(held["UF_CRM_SCORE"]) == scores[base.contact("bitrix24", external)]
        assert held["UF_CRM_STAGE"] in ("potential", "new", "regular", "vip", "dormant", "inactive", "dead")
    for external in a.contact_ids:
        card = a.account.contact(external)
        assert values_of(card, LEAD_SCORE.id) == [str(scores[base.contact("amocrm", external)])]
        assert len(values_of(card, LIFECYCLE.id)) == 1
    # The caller's interactions count: a call that got through and a meeting, less the missed call not returned.
    assert scores[base.contact("bitrix24", b.sokolova)] == scores[base.contact("amocrm", a.smirnova)] == 5 + 10 - 10

    # Захаров meets his manager: the next sync brings the meeting, the refresh his new score, the push writes him.
    before = scores[base.contact("bitrix24", b.zakharov)]
    b.meeting(b.zakharov, days_ago=1)
    assert base.hub("sync", "bitrix24")["activities"]["created"] == 1
    base.hub("segments", "refresh")
    assert base.scores()[base.contact("bitrix24", b.zakharov)] == before + 10
    assert b.stats()["status_503"] == throttled[0]  # the first push and the sync met no 503
    b.reset_stats()
    a_writes = len(a.account.patches)
    second = base.hub("crm", "push")
    assert (second["sources"]["bitrix24"]["changed"], second["sources"]["bitrix24"]["written"]) == (1, 1)
    assert second["sources"]["amocrm"]["changed"] == 0
    assert float(b.portal.contact(b.zakharov)["UF_CRM_SCORE"]) == before + 10
    stats = b.stats()  # the portal's own count: one request, one contact updated
    assert (stats["requests"], stats["batch_methods"]) == (1, {"crm.contact.update": 1}), stats
    assert len(a.account.patches) == a_writes  # amoCRM: nothing to write, no request
    third = base.hub("crm", "push")
    assert third["written"] == 0 and all(p["changed"] == 0 for p in third["sources"].values())
    # Within the limits: neither CRM answered "too many requests" at any point.
    assert (b.stats()["status_503"], a.stats()["too_many_requests"]) == (0, throttled[1])


# --- the base ----------------------------------------------------------------------------------------

@dataclass
class Clock:
    """The emulators' clock: the real time, moved back while the past is seeded."""

    offset: float = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def days_ago(self, days: float) -> None:
        self.offset = -days * DAY


@dataclass
class Bitrix:
    """The Bitrix24 portal and the records the base put in it."""

    server: BitrixServer
    vector: int = 0
    kovalev: int = 0
    belova: int = 0
    sokolova: int = 0
    zakharov: int = 0
    contact_ids: list[int] = field(default_factory=list)

    @property
    def portal(self) -> Portal:
        return self.server.portal

    def seed(self, clock: Clock) -> None:
        p = self.portal
        clock.days_ago(25)
        self.vector = p.add_company({
            "TITLE": VECTOR, "ADDRESS_CITY": "Москва", "UF_CRM_SEGMENT": 72, "UF_CRM_STAFF": 40,
            "PHONE": [{"VALUE_TYPE": "WORK", "VALUE": SWITCHBOARD}],
            "EMAIL": [{"VALUE_TYPE": "WORK", "VALUE": "info@vektor-m.ru"}]}, inn="7701234560")
        self.kovalev = p.add_contact({
            "NAME": "Андрей", "LAST_NAME": "Ковалёв", "POST": "Директор", "COMPANY_ID": self.vector,
            "ASSIGNED_BY_ID": 2, "UF_CRM_CHANNEL": 44,
            "PHONE": [{"VALUE_TYPE": "WORK", "VALUE": SWITCHBOARD},
                      {"VALUE_TYPE": "MOBILE", "VALUE": "+7 903 101-22-33"}],
            "EMAIL": [{"VALUE_TYPE": "WORK", "VALUE": "a.kovalev@vektor-m.ru"}]})
        self.belova = p.add_contact({
            "NAME": "Ирина", "LAST_NAME": "Белова", "POST": "Бухгалтер", "COMPANY_ID": self.vector,
            "ASSIGNED_BY_ID": 2, "UF_CRM_CHANNEL": 45,
            "PHONE": [{"VALUE_TYPE": "WORK", "VALUE": "8 495 123 40 00"},
                      {"VALUE_TYPE": "MOBILE", "VALUE": "8-905-202-33-44"}],
            "EMAIL": [{"VALUE_TYPE": "WORK", "VALUE": "info@vektor-m.ru"}]})
        self.sokolova = p.add_contact({
            "NAME": "Мария", "LAST_NAME": "Соколова", "ASSIGNED_BY_ID": 3, "UF_CRM_VIP": 1,
            "PHONE": [{"VALUE_TYPE": "MOBILE", "VALUE": "+7 916 555-10-20"}],
            "EMAIL": [{"VALUE_TYPE": "HOME", "VALUE": "maria.sokolova.1985@mail.ru"}]})
        self.zakharov = p.add_contact({
            "NAME": "Олег", "LAST_NAME": "Захаров", "ASSIGNED_BY_ID": 3, "UF_CRM_FIRST_VISIT": "2024-05-01",
            "PHONE": [{"VALUE_TYPE": "MOBILE", "VALUE": "+7 926 321-54-76"}],
            "EMAIL": [{"VALUE_TYPE": "HOME", "VALUE": "oleg.zakharov.77@yandex.ru"}]})
        self.contact_ids = [self.kovalev, self.belova, self.sokolova, self.zakharov]
        for n in range(3):  # ООО «Вектор» has bought three times
            p.add_deal({"TITLE": f"Поставка №{n + 1}", "CONTACT_ID": self.kovalev, "COMPANY_ID": self.vector,
                        "CATEGORY_ID": 0, "STAGE_ID": "WON", "OPPORTUNITY": 120_000, "ASSIGNED_BY_ID": 2})
        stuck = p.add_deal({"TITLE": "Оборудование для склада", "CONTACT_ID": self.zakharov, "CATEGORY_ID": 0,
                            "STAGE_ID": "NEW", "OPPORTUNITY": 250_000, "ASSIGNED_BY_ID": 3})
        clock.days_ago(20)
        p.update_deal(stuck, {"STAGE_ID": "PREPARATION"})  # ... and has stood there since
        clock.days_ago(0)
        p.add_deal({"TITLE": "Новый заказ", "CONTACT_ID": self.kovalev, "COMPANY_ID": self.vector, "CATEGORY_ID": 0,
                    "STAGE_ID": "NEW", "OPPORTUNITY": 60_000, "ASSIGNED_BY_ID": 2})  # opened today: not stuck
        # Мария: an answered outgoing call three days ago, a meeting, and yesterday an incoming call nobody took.
        self.call(self.sokolova, days_ago=3, incoming=False, seconds=200)
        self.meeting(self.sokolova, days_ago=5)
        self.call(self.sokolova, days_ago=1, incoming=True, seconds=0)

    def call(self, contact: int, *, days_ago: float, incoming: bool, seconds: int) -> int:
        start = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(days=days_ago)
        missed = incoming and not seconds
        row: dict[str, Any] = {
            "OWNER_TYPE_ID": 3, "OWNER_ID": contact, "TYPE_ID": 2, "PROVIDER_ID": "VOXIMPLANT_CALL",
            "PROVIDER_TYPE_ID": "CALL", "DIRECTION": 1 if incoming else 2, "START_TIME": start.isoformat(),
            "END_TIME": (start + dt.timedelta(seconds=seconds)).isoformat(), "COMPLETED": "N" if missed else "Y",
            "SUBJECT": "Пропущенный звонок" if missed else "Исходящий звонок"}
        if missed:
            row["SETTINGS"] = {"MISSED_CALL": True}
        return self.portal.add_activity(row, user_id=3)

    def meeting(self, contact: int, *, days_ago: float) -> int:
        start = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(days=days_ago)
        return self.portal.add_activity({
            "OWNER_TYPE_ID": 3, "OWNER_ID": contact, "TYPE_ID": 1, "PROVIDER_ID": "CRM_MEETING",
            "PROVIDER_TYPE_ID": "MEETING", "DIRECTION": 0, "SUBJECT": "Встреча в офисе",
            "START_TIME": start.isoformat(), "END_TIME": (start + dt.timedelta(hours=1)).isoformat(),
            "COMPLETED": "Y"}, user_id=3)

    def stats(self) -> dict[str, Any]:
        answer = requests.get(f"{self.server.base_url}/_sandbox/stats", timeout=30)
        answer.raise_for_status()
        return dict(answer.json())

    def reset_stats(self) -> None:
        requests.post(f"{self.server.base_url}/_sandbox/reset-stats", timeout=30).raise_for_status()


@dataclass
class Amo:
    """The amoCRM account and the records the base put in it."""

    server: AmoServer
    token: str = ""
    technosfera: int = 0
    employees: list[int] = field(default_factory=list)
    smirnova: int = 0
    orekhov: int = 0
    lebedeva: int = 0
    mironov: int = 0
    contact_ids: list[int] = field(default_factory=list)

    @property
    def account(self) -> Account:
        return self.server.account

    def seed(self, clock: Clock) -> None:
        a = self.account
        # The B2B part of the account: ООО «Техносфера» and its three employees behind one switchboard.
        (self.technosfera,) = [c for c in a.company_ids()
                               if (a.company(c) or {}).get("name") == amo_b2b.TECHNOSFERA]
        held = a.company(self.technosfera, with_contacts=True) or {}
        self.employees = sorted(c["id"] for c in held["_embedded"]["contacts"])
        clock.days_ago(25)
        self.orekhov = a.add_contact(first_name="Денис", last_name="Орехов", phones=[("+7 915 777-88-99", "MOB")],
                                     emails=[("denis.orekhov@yandex.ru", "PRIV")], responsible_user_id=MANAGER)
        stuck = a.add_lead(name="Оптовый заказ", contact_id=self.orekhov, price=180_000, pipeline_id=SALES.id,
                           status_id=SALES.statuses[0].id, responsible_user_id=MANAGER)
        clock.days_ago(20)
        a.update_lead(stuck, status_id=SALES.statuses[1].id)  # into «Переговоры», and there since
        clock.days_ago(0)
        self.smirnova = a.add_contact(first_name="Ольга", last_name="Смирнова",
                                      phones=[("+7 917 444-33-22", "MOB")],
                                      emails=[("olga.smirnova.1988@mail.ru", "PRIV")])
        self.lebedeva = a.add_contact(first_name="Татьяна", last_name="Лебедева",
                                      phones=[("+7 912 345-67-01", "MOB")],
                                      emails=[("tatiana.lebedeva.90@mail.ru", "PRIV")])
        self.mironov = a.add_contact(first_name="Игорь", last_name="Миронов", phones=[("+7 912 345-67-02", "MOB")],
                                     emails=[("igor.mironov.83@yandex.ru", "PRIV")])
        self.contact_ids = a.contact_ids()
        # Ольга: an answered outgoing call three days ago, yesterday an incoming call nobody took (telephony logs
        # both as call notes), a meeting held five days ago, and «Источник» = «Выставка» on her card.
        clock.days_ago(3)
        a.add_call("contacts", self.smirnova, incoming=False, duration=200, call_status=4, phone="+79174443322")
        clock.days_ago(1)
        a.add_call("contacts", self.smirnova, incoming=True, duration=0, call_status=6, phone="+79174443322")
        clock.days_ago(0)

    def connect(self) -> None:
        self.token = self.account.issue_long_lived_token()
        exhibition = next(i for i, name in LEAD_SOURCE.enums if name == "Выставка")
        self.api("PATCH", "/api/v4/contacts", [{"id": self.smirnova, "custom_fields_values": [
            {"field_id": LEAD_SOURCE.id, "values": [{"enum_id": exhibition}]}]}])
        held = int(time.time()) - 5 * DAY
        self.api("POST", "/api/v4/tasks", [{
            "task_type_id": 2, "text": "Встреча в офисе", "entity_type": "contacts", "entity_id": self.smirnova,
            "complete_till": held, "duration": 3_600, "is_completed": True, "created_at": held - DAY,
            "updated_at": held, "result": {"text": "Договорились о поставке"}}])

    def stats(self) -> dict[str, Any]:
        answer = requests.get(f"{self.server.base_url}/_sandbox/stats", timeout=30)
        answer.raise_for_status()
        return dict(answer.json())

    def api(self, method: str, path: str, body: Any) -> Any:
        """One request as an integration makes it; a 429 (Hub's sync may have just used the second) is waited out."""
        for _attempt in range(5):
            answer = requests.request(method, self.server.base_url + path, json=body, timeout=30,
                                      headers={"Authorization": f"Bearer {self.token}"})
            if answer.status_code != 429:
                break
            time.sleep(1.1)
        assert answer.status_code == 200, (method, path, answer.status_code, answer.text[:1000])
        return answer.json()


@dataclass
class Base:
    """Hub with both CRMs connected and synced once, and what a test asks of it."""

    db: HubDB
    bitrix: Bitrix
    amo: Amo
    folder: Path

    def hub(self, *args: str) -> Any:
        """`hub ARGS --json`: what it printed, parsed."""
        result = CliRunner().invoke(cli, [*args, "--json"], catch_exceptions=False)
        assert result.exit_code == 0, f"hub {' '.join(args)}: {result.output[-3000:]}"
        return json.loads(result.stdout)

    def file(self, name: str, text: str) -> Path:
        path = self.folder / name
        path.write_text(text, encoding="utf-8")
        return path

    def members(self, rule: dict[str, Any]) -> set[int]:
        """Who a segment of this rule holds, saved and read back through the CLI."""
        self.hub("segments", "add", str(self.file("probe.json", json.dumps({"name": "probe", "rule": rule}))))
        return {row["id"] for row in self.hub("segments", "members", "probe")}

    def field_named(self, offered: dict[str, Any], source: str, entity: str, label: str) -> dict[str, Any]:
        """The segment field a person picks by the name their CRM shows."""
        found = [f for name, f in offered.items() if name.startswith(f"crm.{source}.{entity}.") and
                 f.get("label") == label]
        with self.db.engine.connect() as conn:
            synced = conn.execute(select(CustomField.entity, CustomField.code, CustomField.name).where(
                CustomField.source == source)).all()
        assert len(found) == 1, (f"no segment field for {source}'s {entity} field «{label}»", synced)
        return dict(found[0])

    def contact(self, source: str, external_id: int) -> int:
        with self.db.engine.connect() as conn:
            found = conn.execute(select(ExternalRef.contact_id).where(
                ExternalRef.source == source, ExternalRef.external_id == str(external_id),
                ExternalRef.deleted_at.is_(None))).scalar_one_or_none()
        assert found is not None, f"{source} contact {external_id} is not in Hub"
        return int(found)

    def refs(self, source: str, external_id: int) -> list[Any]:
        with self.db.engine.connect() as conn:
            return list(conn.execute(select(ExternalRef.id).where(
                ExternalRef.source == source, ExternalRef.external_id == str(external_id))).scalars())

    def company(self, source: str, external_id: str) -> Any:
        with self.db.engine.connect() as conn:
            return conn.execute(select(Company.__table__).where(Company.source == source,
                                                                Company.external_id == external_id)).one()

    def works_at(self, company_id: int) -> set[int]:
        with self.db.engine.connect() as conn:
            return set(conn.execute(select(ContactCompany.contact_id).where(
                ContactCompany.company_id == company_id)).scalars())

    def activities(self, contact_id: int) -> list[Any]:
        with self.db.engine.connect() as conn:
            return list(conn.execute(select(Activity.__table__).where(Activity.contact_id == contact_id,
                                                                      Activity.deleted_at.is_(None))))

    def promo_codes(self) -> dict[int, str]:
        from workflows.models import PromoCode

        with self.db.engine.connect() as conn:
            return {r.contact_id: r.code for r in conn.execute(select(PromoCode.contact_id, PromoCode.code))}

    def promo_rows(self) -> list[Any]:
        from workflows.models import PromoCode

        with self.db.engine.connect() as conn:
            return list(conn.execute(select(PromoCode.__table__).order_by(PromoCode.id)))

    def orders(self) -> list[Any]:
        """Every order as stored, but when the sync last wrote it."""
        with self.db.engine.connect() as conn:
            rows = conn.execute(select(Order.__table__).order_by(Order.id)).mappings()
            return [{k: v for k, v in row.items() if k != "updated_at"} for row in rows]

    def activities_of(self, source: str, external_id: int) -> list[Any]:
        """Activities still tied to a CRM's id of a person."""
        with self.db.engine.connect() as conn:
            return list(conn.execute(select(Activity.__table__).where(
                Activity.source == source, Activity.contact_external_id == str(external_id))))

    def scores(self) -> dict[int, int]:
        with self.db.engine.connect() as conn:
            return {r.contact_id: r.score for r in conn.execute(select(LeadScore.contact_id, LeadScore.score))}

    def identities(self) -> set[str]:
        with self.db.engine.connect() as conn:
            return set(conn.execute(select(ContactIdentity.value)).scalars())

    def names(self) -> set[tuple[str | None, str | None]]:
        with self.db.engine.connect() as conn:
            return {(r.first_name, r.last_name) for r in conn.execute(select(Contact.first_name, Contact.last_name))}

    def suppressed(self, phones: list[str], emails: list[str]) -> bool:
        with self.db.engine.connect() as conn:
            return (consent.suppressed_among(conn, self.db.settings, "phone", phones) == set(phones)
                    and consent.suppressed_among(conn, self.db.settings, "email", emails) == set(emails))

    def audited(self) -> list[Any]:
        with self.db.engine.connect() as conn:
            details = conn.execute(select(AuditEntry.details).where(AuditEntry.action == "gdpr.erase.sources")
                                   .order_by(AuditEntry.id)).scalars()
            return [[{k: s[k] for k in ("source", "result")} for s in d["results"]] for d in details]


def values_of(record: dict[str, Any] | None, field_id: int) -> list[Any]:
    for f in (record or {}).get("custom_fields_values") or []:
        if f["field_id"] == field_id:
            return [v["value"] for v in f["values"]]
    return []


@pytest.fixture
def base(hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Base]:
    """Both emulators seeded with the B2B base, connected with `hub connect`, and synced in full."""
    Path("hub.toml").write_text(HUB_TOML, encoding="utf-8")
    for name, module in (("bitrix24", bitrix24_plugin), ("amocrm", amocrm_plugin), ("gdpr", gdpr_plugin)):
        plugin_manager.register(module, name=name)
        module.register_commands(cli)
    db = use_workflows(hub_db, plugin_manager, monkeypatch)
    today = dt.date.today()
    clock = Clock()
    bitrix = Bitrix(BitrixServer(Portal(contacts=0, companies=0, activities=0, today=today, clock=clock)))
    amo = Amo(AmoServer(Account(contacts=0, b2b=True, activities=0, today=today, clock=clock)))
    bitrix.seed(clock)
    amo.seed(clock)
    bitrix.server.start()
    amo.server.start()
    try:
        amo.connect()
        made = Base(db, bitrix, amo, tmp_path)
        hooked = CliRunner().invoke(cli, ["connect", "bitrix24", "--webhook", bitrix.server.webhook_url],
                                    catch_exceptions=False)
        assert hooked.exit_code == 0, hooked.output
        connected = CliRunner().invoke(cli, ["connect", "amocrm", "--base-url", amo.server.base_url,
                                             "--long-lived-token", amo.account.issue_long_lived_token()],
                                       catch_exceptions=False)
        assert connected.exit_code == 0, connected.output
        for source, companies in (("bitrix24", 1), ("amocrm", len(amo.account.company_ids()))):
            report = made.hub("sync", source, "--full")
            assert report["errors"] == 0 and report["companies"]["created"] == companies, report
        yield made
    finally:
        bitrix.server.stop()
        bitrix.server.portal.close()
        amo.server.stop()
        amo.server.account.close()
