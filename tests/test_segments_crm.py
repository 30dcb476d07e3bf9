"""Segment fields over what the CRMs hold: companies, calls and meetings, deals in progress, custom fields."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any, Iterator

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select

from hub import i18n
from tests.support.cli import cli
from hub.db import utcnow
from hub.models import Activity, Company, Contact, ContactCompany, CustomField, Order
from hub.records import ContactRecord
from hub.segments import crm_fields, fields, scoring, store
from hub.segments.evaluate import Segments
from hub.segments.explain import explain
from hub.segments.rules import RuleError
from hub.sync import Counts, write_contacts
from tests.browser import Browser
from tests.conftest import HubDB
from tests.support.segments import members as probe_members
from tests.support.admin import AdminEnv, client_as

pytestmark = pytest.mark.both_databases  # semi-joins and JSON extraction are each dialect's own SQL

NOW = utcnow().replace(microsecond=0)
SRC = "crm.bitrix24.contact.UF_SRC"


@pytest.fixture(autouse=True)
def english(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("HUB_LANGUAGE", "en")
    with i18n.use_language("en"):
        yield


def ago(days: float) -> dt.datetime:
    return NOW - dt.timedelta(days=days)


DEFINITIONS = [
    ("contact", "UF_SRC", "Источник", "list", False, [{"id": "1", "value": "Выставка"}, {"id": "2", "value": "Сайт"}]),
    ("contact", "UF_BUDGET", "Бюджет", "number", False, []),
    ("contact", "UF_VIP", "VIP-клиент", "boolean", False, []),
    ("contact", "UF_TAGS", "Каналы продаж", "list", True,
     [{"id": "7", "value": "опт"}, {"id": "8", "value": "розница"}]),
    ("contact", "UF_SINCE", "Клиент с", "date", False, []),
    ("contact", "UF_NEXT", "Следующий звонок", "datetime", False, []),
    ("contact", "UF_NOTE", "Комментарий", "string", False, []),
    ("company", "UF_INDUSTRY", "Отрасль", "string", False, []),
    ("order", "UF_DEAL_KIND", "Тип сделки", "list", False, [{"id": "3", "value": "Опт"}]),
    ("contact", "bad code'; DROP TABLE contacts; --", "Взлом", "string", False, []),
    # amoCRM keys a field that has no code by its name: Cyrillic, with spaces, stored escaped by Python's JSON
    ("contact", "Откуда узнал", "Откуда узнал", "string", False, []),
    ("contact", "Сумма заказов", "Сумма заказов", "number", False, []),
]


def seed(db: HubDB) -> dict[str, int]:
    """Anna works at a big company and talks to her manager; Boris's call was missed and never returned;
    Vera has no company link (only her own company text) and was called back; Gleb went quiet long ago."""
    names = ("anna", "boris", "vera", "gleb")
    with db.engine.begin() as conn:
        result = write_contacts(conn, [ContactRecord(source="shop", external_id=n, emails=[f"{n}@example.ru"])
                                       for n in names], db.settings, Counts())
        ids = dict(zip(names, result.contact_ids, strict=True))
        contacts = Contact.__table__
        conn.execute(contacts.update().where(contacts.c.id == ids["anna"]).values(
            company="Ромашка", attributes={"UF_SRC": "Выставка", "UF_BUDGET": 150000, "UF_VIP": True,
                                          "UF_TAGS": ["опт", "розница"], "UF_SINCE": "2024-03-01",
                                          "UF_NEXT": "2026-12-10T10:00:00+03:00", "UF_NOTE": "звонить утром",
                                          "Откуда узнал": "Выставка", "Сумма заказов": 52000}))
        conn.execute(contacts.update().where(contacts.c.id == ids["boris"]).values(
            attributes={"UF_SRC": "Сайт", "UF_BUDGET": "900.50", "UF_VIP": False, "UF_SINCE": "не помню"}))
        conn.execute(contacts.update().where(contacts.c.id == ids["vera"]).values(
            company="Ромашка ООО", attributes={"UF_BUDGET": "много", "UF_TAGS": "опт"}))
        companies = {}
        for ext, name, city, inn, won, revenue, attrs in [
                ("1", "Ромашка", "Москва", "7701234567", 5, Decimal("500000.00"), {"UF_INDUSTRY": "Ритейл"}),
                ("2", "Лютик", "Казань", None, 1, Decimal("12000.00"), {}),
                ("3", "Закрытая", "Москва", None, 9, Decimal("900000.00"), {})]:
            companies[name] = conn.execute(insert(Company.__table__).values(
                source="bitrix24", external_id=ext, name=name, city=city, inn=inn, orders_count=won, revenue=revenue,
                attributes=attrs, deleted_at=ago(1) if name == "Закрытая" else None)
                .returning(Company.__table__.c.id)).scalar_one()
        for who, company in [("anna", "Ромашка"), ("boris", "Лютик"), ("gleb", "Закрытая")]:
            conn.execute(insert(ContactCompany.__table__).values(contact_id=ids[who], company_id=companies[company],
                                                                 source="bitrix24"))
        activities = [
            ("anna", "call", "out", False, True, 5), ("anna", "meeting", None, False, True, 20),
            ("boris", "call", "in", True, True, 3),
            ("vera", "call", "in", True, True, 10), ("vera", "call", "out", False, True, 9),
            ("gleb", "call", "out", False, True, 200), ("gleb", "meeting", None, False, False, -5),
        ]
        for i, (who, kind, direction, missed, done, days) in enumerate(activities):
            conn.execute(insert(Activity.__table__).values(
                source="bitrix24", external_id=f"a{i}", contact_id=ids[who], kind=kind, direction=direction,
                missed=missed, done=done, at=ago(days)))
        conn.execute(insert(Activity.__table__).values(  # not linked to anyone yet: never counted for anybody
            source="bitrix24", external_id="orphan", contact_id=None, contact_external_id="99", kind="call",
            at=ago(1)))
        deals = [("anna", "open", "Переговоры", "Опт", 20, {"UF_DEAL_KIND": "Опт"}),
                 ("anna", "open", "Новая", "Опт", 2, {}),
                 ("boris", "open", "Новая", "Розница", 3, {}),
                 ("vera", "won", "Успех", "Розница", 30, {})]
        for i, (who, status, stage, pipeline, days, attrs) in enumerate(deals):
            conn.execute(insert(Order.__table__).values(
                source="bitrix24", external_id=f"d{i}", contact_id=ids[who], amount=Decimal(1000), status=status,
                stage=stage, pipeline=pipeline, stage_entered_at=ago(days), attributes=attrs))
        for entity, code, name, ftype, multiple, options in DEFINITIONS:
            conn.execute(insert(CustomField.__table__).values(source="bitrix24", entity=entity, code=code, name=name,
                                                              type=ftype, multiple=multiple, options=options))
    crm_fields.forget(db.settings)
    return {k: v for k, v in ids.items() if v is not None}


@pytest.fixture
def people(hub_db: HubDB) -> dict[str, int]:
    return seed(hub_db)


def members(db: HubDB, rule: dict[str, Any]) -> set[int]:
    return probe_members(db, rule, NOW)


def named(people: dict[str, int], ids: set[int]) -> set[str]:
    return {k for k, v in people.items() if v in ids}


def cond(field: str, op: str, value: Any = None) -> dict[str, Any]:
    return {"field": field, "op": op} | ({} if value is None else {"value": value})


@pytest.mark.parametrize("rule, expected", [
    # companies: any company the contact works at (a deleted company counts for nobody)
    (cond("company.won_deals", "gte", 3), {"anna"}),
    ({"not": cond("company.won_deals", "gte", 3)}, {"boris", "vera", "gleb"}),
    (cond("company.won_deals", "lt", 3), {"boris"}),
    (cond("company.name", "eq", "Ромашка"), {"anna"}),
    (cond("company.name", "matches", "ромашка"), {"anna", "vera"}),  # Vera: her own company text, no link
    (cond("company.name", "is_null"), {"gleb"}),
    (cond("company.name", "not_null"), {"anna", "boris", "vera"}),
    (cond("company.city", "eq", "Казань"), {"boris"}),
    (cond("company.city", "in", ["Москва", "Казань"]), {"anna", "boris"}),
    (cond("company.inn", "eq", "7701234567"), {"anna"}),
    (cond("company.inn", "is_null"), {"boris", "vera", "gleb"}),
    (cond("company.revenue", "gte", "100000"), {"anna"}),
    # activities
    (cond("calls.last_at", "within_last", "7d"), {"anna", "boris"}),
    (cond("calls.last_at", "before", "-30d"), {"gleb"}),
    (cond("calls.last_at", "after", "-4d"), {"boris"}),
    (cond("meetings.last_at", "is_null"), {"boris", "vera", "gleb"}),  # Gleb's meeting is still ahead
    (cond("meetings.last_at", "not_null"), {"anna"}),
    ({"not": cond("activities.last_at", "within_last", "3m")}, {"gleb"}),
    (cond("activities.last_at", "before", "-90d"), {"gleb"}),
    (cond("calls.count.30d", "gte", 1), {"anna", "vera"}),
    (cond("calls.count.30d", "eq", 0), {"boris", "gleb"}),
    (cond("calls.count.1y", "gt", 0), {"anna", "vera", "gleb"}),
    (cond("meetings.count.30d", "gte", 1), {"anna"}),
    (cond("calls.missed_incoming.30d", "gte", 1), {"boris", "vera"}),
    (cond("calls.missed_incoming.7d", "gte", 1), {"boris"}),
    (cond("calls.unanswered.30d", "gte", 1), {"boris"}),
    (cond("calls.unanswered.30d", "eq", 0), {"anna", "vera", "gleb"}),
    # deals in progress: "stuck in one stage for 14 days"
    (cond("deals.open_stuck_days", "gte", 14), {"anna"}),
    (cond("deals.open_stuck_days", "lt", 14), {"boris"}),
    (cond("deals.open_stuck_days", "eq", 20), {"anna"}),
    (cond("deals.open_stuck_days", "gt", 20), set()),
    (cond("deals.open_stuck_days", "in", [3, 4]), {"boris"}),
    (cond("deals.open_stuck_days", "is_null"), {"vera", "gleb"}),
    (cond("deals.open_stage", "eq", "Новая"), {"anna", "boris"}),
    (cond("deals.open_stage", "eq", "Успех"), set()),  # won: not in progress
    (cond("deals.open_pipeline", "eq", "Опт"), {"anna"}),
    (cond("deals.open_count", "gte", 2), {"anna"}),
    # custom fields, by code; values typed as the CRM types them
    (cond(SRC, "eq", "Выставка"), {"anna"}),
    (cond(SRC, "in", ["Выставка", "Сайт"]), {"anna", "boris"}),
    (cond(SRC, "not_in", ["Выставка"]), {"boris"}),
    (cond(SRC, "is_null"), {"vera", "gleb"}),
    (cond("crm.bitrix24.contact.UF_BUDGET", "gt", 1000), {"anna"}),
    (cond("crm.bitrix24.contact.UF_BUDGET", "lt", 1000), {"boris"}),  # "900.50" as text; "много" never passes
    (cond("crm.bitrix24.contact.UF_VIP", "eq", "true"), {"anna"}),
    (cond("crm.bitrix24.contact.UF_VIP", "eq", "false"), {"boris"}),
    (cond("crm.bitrix24.contact.UF_TAGS", "contains", "опт"), {"anna"}),  # Vera's is text, not a list
    (cond("crm.bitrix24.contact.UF_SINCE", "before", "2025-01-01"), {"anna"}),  # "не помню" is no date
    (cond("crm.bitrix24.contact.UF_SINCE", "not_null"), {"anna"}),
    (cond("crm.bitrix24.contact.UF_NEXT", "after", "2026-12-10T06:59:00+00:00"), {"anna"}),
    (cond("crm.bitrix24.contact.UF_NEXT", "before", "2026-12-10T07:01:00+00:00"), {"anna"}),
    (cond("crm.bitrix24.contact.UF_NEXT", "after", "2026-12-10T07:01:00+00:00"), set()),
    (cond("crm.bitrix24.contact.UF_NOTE", "matches", "УТРОМ"), {"anna"}),
    (cond("crm.bitrix24.company.UF_INDUSTRY", "eq", "Ритейл"), {"anna"}),
    (cond("crm.bitrix24.company.UF_INDUSTRY", "is_null"), {"boris", "vera", "gleb"}),
    (cond("crm.bitrix24.deal.UF_DEAL_KIND", "eq", "Опт"), {"anna"}),
    (cond("crm.bitrix24.contact.Откуда узнал", "eq", "Выставка"), {"anna"}),
    (cond("crm.bitrix24.contact.Сумма заказов", "gt", 50000), {"anna"}),
])
def test_rules_over_crm_data(hub_db: HubDB, people: dict[str, int], rule: dict[str, Any], expected: set[str]) -> None:
    assert named(people, members(hub_db, rule)) == expected


def test_stuck_in_one_stage_for_two_weeks_is_expressible(hub_db: HubDB, people: dict[str, int]) -> None:
    rule = {"all": [cond("deals.open_stuck_days", "gte", 14), cond("deals.open_pipeline", "eq", "Опт")]}
    assert named(people, members(hub_db, rule)) == {"anna"}


def test_a_custom_field_written_badly_is_refused_in_words(hub_db: HubDB, people: dict[str, int]) -> None:
    hostile = [
        ("crm.bitrix24.contact.Источник", "the field «Источник» is written crm.bitrix24.contact.UF_SRC"),
        ('crm.bitrix24.contact."Источник"', "the field «Источник» is written crm.bitrix24.contact.UF_SRC"),
        ("crm.bitrix24.contact.UF_SRC'\"", "is not a field"),
        ("crm." + "Я" * 10_000, "10004 characters, no field name is that long"),
    ]
    with hub_db.engine.begin() as conn:
        registry = Segments(conn, hub_db.settings, now=NOW).registry
        for name, message in hostile:
            with pytest.raises(RuleError) as refused:
                store.add(conn, registry, {"name": "x", "rule": cond(name, "eq", "x")})
            assert message in str(refused.value), str(refused.value)[:300]
            assert len(str(refused.value)) < 500
        with pytest.raises(RuleError) as option:
            store.add(conn, registry, {"name": "x", "rule": cond(SRC, "eq", "Выстака")})
        with pytest.raises(RuleError) as window:
            store.add(conn, registry, {"name": "x", "rule": cond("calls.count.30days", "gte", 1)})
    assert "did you mean 'Выставка'?" in str(option.value)
    assert "did you mean '30d'?" in str(window.value)
    # A code that reads like SQL is only ever a bound value: a rule over it matches nobody and harms nothing.
    assert named(people, members(hub_db, cond("crm.bitrix24.contact.bad code'; DROP TABLE contacts; --", "eq",
                                              "x"))) == set()
    assert named(people, members(hub_db, cond("contact.first_name", "is_null"))) == set(people)  # the table stands


def test_explain_shows_the_crm_name_and_the_values_seen(hub_db: HubDB, people: dict[str, int]) -> None:
    with hub_db.engine.begin() as conn:
        segments = Segments(conn, hub_db.settings, now=NOW)
        store.add(conn, segments.registry, {"name": "b2b_warm", "rule": {"all": [
            cond("company.won_deals", "gte", 3), cond(SRC, "eq", "Выставка"),
            cond("deals.open_stuck_days", "gte", 14), cond("calls.count.30d", "gte", 1),
            cond("company.name", "not_null")]}})
        segments = Segments(conn, hub_db.settings, now=NOW)
        anna = explain(segments, "b2b_warm", people["anna"])
        vera = explain(segments, "b2b_warm", people["vera"])
    assert anna["member"] is True
    seen = [(c["field"], c.get("label"), c["seen"]) for c in anna["rule"]["items"]]
    assert seen[0] == ("company.won_deals", None, 5)
    assert seen[1] == (SRC, "Источник", "Выставка")
    assert seen[2][2] == 20 and seen[3][2] == 1
    assert vera["member"] is False and vera["rule"]["items"][4]["seen"] == "Ромашка ООО"


def test_segments_fields_lists_custom_fields_by_their_crm_names(hub_db: HubDB, people: dict[str, int]) -> None:
    runner = CliRunner()
    answer = runner.invoke(cli, ["segments", "fields", "--json"])
    assert answer.exit_code == 0, answer.output
    listed = {f["field"]: f for f in json.loads(answer.output)}
    assert listed[SRC]["label"] == "Источник" and listed[SRC]["type"] == "choice"
    assert listed[SRC]["choices"] == ["Выставка", "Сайт"] and listed[SRC]["operators"][:4] == ["eq", "ne", "in",
                                                                                                 "not_in"]
    assert listed["crm.bitrix24.contact.UF_TAGS"]["operators"][0] == "contains"
    assert listed["crm.bitrix24.contact.UF_BUDGET"]["type"] == "number"
    assert listed["crm.bitrix24.deal.UF_DEAL_KIND"]["label"] == "Тип сделки"
    assert "gte" in listed["company.won_deals"]["operators"] and "calls.count.<window>" in listed
    # amoCRM keys a field without a code by its name: offered as it is («Взлом» here, whatever it spells).
    assert listed["crm.bitrix24.contact.bad code'; DROP TABLE contacts; --"]["label"] == "Взлом"
    table = runner.invoke(cli, ["segments", "fields"])
    assert table.exit_code == 0 and "Источник" in table.output


def test_lead_score_counts_calls_meetings_and_unanswered_calls(hub_db: HubDB, people: dict[str, int]) -> None:
    model = [
        {"title": "Calls within 30 days", "per": "calls.count.30d", "points": 5, "max": 15},
        {"title": "Meeting within 90 days", "rule": cond("meetings.count.90d", "gte", 1), "points": 10},
        {"title": "Missed call never returned", "rule": cond("calls.unanswered.30d", "gte", 1), "points": -10},
        {"title": "Stuck deal", "rule": cond("deals.open_stuck_days", "gte", 14), "points": -5},
    ]
    with hub_db.engine.begin() as conn:
        segments = Segments(conn, hub_db.settings, now=NOW)
        parsed = scoring.parse_model(model, segments.registry, {}, origin="test")
        scores = {who: scoring.score_of(conn, segments.compiler, parsed, cid) for who, cid in people.items()}
    assert scores == {"anna": 5 + 10 - 5, "boris": -10, "vera": 5, "gleb": 0}


def test_the_shipped_model_rewards_interactions(hub_db: HubDB, people: dict[str, int]) -> None:
    with hub_db.engine.begin() as conn:
        segments = Segments(conn, hub_db.settings, now=NOW)
        model = scoring.load_model(segments.registry, segments.catalog.definitions)
        titles = [line.title for line in model.lines]
        lines = {line.title: scoring.line_sql(segments.compiler, line) for line in model.lines}
        c = Contact.__table__.c
        points = {who: dict(zip(titles, conn.execute(select(*lines.values()).where(c.id == cid)).one(), strict=True))
                  for who, cid in people.items()}
    assert points["anna"]["Called within 30 days"] > 0 and points["anna"]["Met within 90 days"] > 0
    assert points["boris"]["Missed call not returned"] < 0
    assert points["gleb"]["Called within 30 days"] == 0


def test_a_registry_without_the_database_has_no_custom_fields(hub_db: HubDB, tmp_path: Any) -> None:
    settings = hub_db.settings.__class__(**{**hub_db.settings.__dict__,
                                            "database_url": f"sqlite:///{tmp_path / 'absent.db'}"})
    registry = fields.build(settings)
    assert not any(name.startswith("crm.") for name in registry.fields)
    assert not (tmp_path / "absent.db").exists()


# --- the builder --------------------------------------------------------------------------------

def test_the_builder_offers_custom_fields_by_name_grouped_by_crm_and_entity(admin_env: AdminEnv) -> None:
    seed(admin_env.db)
    viewer = client_as(admin_env, "viewer")
    with i18n.use_language("ru"):
        answer = viewer.get("/segments/builder/fields")
    assert answer.status_code == 200
    groups = {g["key"]: g for g in answer.get_json()["groups"]}
    contact_fields = {f["pattern"]: f for f in groups["crm.bitrix24.contact"]["fields"]}
    source = contact_fields[SRC]
    assert source["title"] == "Источник" and source["type"] == "choice"
    assert [c["value"] for c in source["choices"]] == ["Выставка", "Сайт"]
    assert set(source["operators"]) >= {"in", "not_in"}
    assert contact_fields["crm.bitrix24.contact.UF_VIP"]["choices"][0]["value"] == "true"
    assert "contains" in contact_fields["crm.bitrix24.contact.UF_TAGS"]["operators"]
    assert {"before", "after", "within_last"} <= set(contact_fields["crm.bitrix24.contact.UF_SINCE"]["operators"])
    assert {"gt", "lt"} <= set(contact_fields["crm.bitrix24.contact.UF_BUDGET"]["operators"])
    assert "crm.bitrix24.deal.UF_DEAL_KIND" in {f["pattern"] for f in groups["crm.bitrix24.deal"]["fields"]}
    assert "Bitrix24" in groups["crm.bitrix24.company"]["title"]
    assert "company.won_deals" in {f["pattern"] for f in groups["company"]["fields"]}
    assert "calls.count.<window>" in {f["pattern"] for f in groups["activities"]["fields"]}


ACTIVITY_RULES = [cond("calls.last_at", "within_last", "7d"), cond("activities.last_at", "before", "-90d"),
                  cond("meetings.last_at", "is_null"), cond("calls.count.30d", "gte", 1),
                  cond("calls.count.30d", "eq", 0), cond("calls.missed_incoming.7d", "gte", 1),
                  cond("calls.unanswered.30d", "gte", 1), cond("meetings.count.90d", "lt", 1)]


@pytest.mark.parametrize("rule", ACTIVITY_RULES, ids=lambda r: f"{r['field']}-{r['op']}")
def test_activity_fields_agree_with_the_reference(hub_db: HubDB, people: dict[str, int], rule: dict[str, Any]) -> None:
    from hub.segments.reference import Reference, Snapshot
    from hub.segments.rules import Parser

    with hub_db.engine.begin() as conn:
        segments = Segments(conn, hub_db.settings, now=NOW)
        node = Parser(segments.registry).rule(rule, "rule")
        assert node is not None
        expected = Reference(Snapshot.load(conn), segments.registry, now=NOW, segments={}).members(node)
    assert members(hub_db, rule) == expected


def test_a_marketer_builds_works_at_a_company_with_three_won_deals(live: str, browser: Browser,
                                                                  admin_env: AdminEnv) -> None:
    from tests.support.admin_browser import sign_in

    people = seed(admin_env.db)
    sign_in(browser, live, "marketer", "/segments/new")
    browser.wait(lambda: browser.find("#check-result").get_attribute("data-state") == "ok", "the example to check")
    browser.fill("#builder-name", "b2b_big")
    first = '#segment-builder [data-path="rule.all[0]"]'
    browser.click(f"{first} .field-button")
    browser.fill(f"{first} .field-search", "won deals of a company")
    browser.click(f'{first} .field-option[data-pattern="company.won_deals"]')
    browser.wait(lambda: browser.find(f"{first} .field-button").get_attribute("data-field") == "company.won_deals",
                 "company.won_deals to be chosen")
    browser.select(f"{first} select.op", "gte")
    browser.wait(lambda: browser.find(f"{first} select.op").get_attribute("value") == "gte", "«не меньше»")
    browser.type(f"{first} .value-input", "3")
    second = '#segment-builder [data-path="rule.all[1]"]'  # the example's second condition becomes the CRM field
    browser.click(f"{second} .field-button")
    browser.fill(f"{second} .field-search", "Источник")
    browser.click(f'{second} .field-option[data-pattern="{SRC}"]')
    browser.wait(lambda: browser.find(f"{second} .field-button").get_attribute("data-field") == SRC,
                 "the CRM's field «Источник» to be chosen")
    assert "Источник" in browser.text(f"{second} .field-button")
    # The CRM's options to choose from (the example's value is not one of them, and the check says so)
    browser.wait_text(f"{second} .node-problems", "Выставка, Сайт")
    browser.select(f"{second} select.value-choice", "Выставка")
    browser.wait(lambda: browser.find("#check-result").get_attribute("data-state") == "ok", "the rule to check")
    text = browser.find("#document").get_attribute("value")
    assert "field: company.won_deals\n    op: gte\n    value: 3" in text, text
    assert f"field: {SRC}\n    op: eq\n    value: Выставка" in text, text
    browser.click("#segment-form button[type=submit]")
    browser.wait_text(".flash", "b2b_big")
    with admin_env.engine.connect() as conn:
        assert Segments(conn, admin_env.settings).member_ids("b2b_big") == [people["anna"]]


def test_the_explain_page_names_the_crm_field_and_builder_hints_a_name_written_for_a_code(
        admin_env: AdminEnv) -> None:
    people = seed(admin_env.db)
    with admin_env.engine.begin() as conn:
        segments = Segments(conn, admin_env.settings, now=NOW)
        store.add(conn, segments.registry, {"name": "from_fair", "rule": cond(SRC, "eq", "Выставка")})
    viewer = client_as(admin_env, "viewer")
    page = viewer.get("/segments/from_fair/explain", query_string={"contact": people["anna"]})
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "«Источник»" in html and SRC in html
    marketer = client_as(admin_env, "marketer")
    hostile = marketer.get("/segments/builder/suggest",
                           query_string={"field": "crm.<script>alert(1)</script>", "prefix": "x"})
    assert hostile.status_code == 400 and hostile.mimetype == "application/json"  # words, never a page or a 500
