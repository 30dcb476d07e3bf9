"""What the CRMs add to the contact card: companies, deals in progress, calls and meetings, the NPS answer.

The rows are written straight into the tables the sync fills (companies,
contact_companies, activities, orders' stage columns) and the workflows'
interactions (an NPS answer), so the card is tested on its own. A viewer reads
it all in Russian (English on request); hostile text a CRM holds (markup in a
company's name or a call's subject, a subject as long as a letter) is shown
escaped and clipped. `hub contacts show` prints the same and --json gives the
keys scripts build on.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from decimal import Decimal
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select, update

from hub.db import utcnow
from hub.hookspecs import hookimpl
from hub.models import Activity, Company, Contact, ContactCompany, CustomField, Order
from tests.browser import Browser
from tests.support.admin import AdminEnv, client_as, plain, post, text
from tests.support.admin_browser import sign_in
from tests.support.cli import cli
from workflows.models import Interaction

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
LONG = "Очень длинная тема " * 600  # 11,400 characters: a CRM's subject field that held a whole letter


def fill(env: AdminEnv, *, long_subject: bool = True) -> dict[str, Any]:
    """Anna works at two companies, has an open deal 16 days in its stage, calls and a meeting, an NPS answer."""
    now = utcnow()
    anna = env.ids["anna"]
    with env.engine.begin() as conn:
        romashka = conn.execute(insert(Company).values(
            source="bitrix24", external_id="c7", name="ООО «Ромашка»", inn="7701234567", city="Москва",
            phones=["+74951112233"], emails=[], orders_count=3, revenue=Decimal("45000"), attributes={})
            .returning(Company.id)).scalar_one()
        hostile = conn.execute(insert(Company).values(
            source="bitrix24", external_id="c8", name=HOSTILE, inn=None, city="Тула", phones=[], emails=[],
            orders_count=0, revenue=Decimal(0), attributes={}).returning(Company.id)).scalar_one()
        gone = conn.execute(insert(Company).values(
            source="bitrix24", external_id="c9", name="Закрытая фирма", phones=[], emails=[], attributes={},
            deleted_at=now).returning(Company.id)).scalar_one()
        for company in (romashka, hostile, gone):
            conn.execute(insert(ContactCompany).values(contact_id=anna, company_id=company, source="bitrix24"))
        conn.execute(insert(Order).values(
            source="bitrix24", external_id="d5", contact_external_id="101", contact_id=anna, amount=Decimal("90000"),
            currency="RUB", status="open", title="Поставка стульев", pipeline="Опт", stage="Согласование КП",
            stage_entered_at=now - dt.timedelta(days=16, hours=2), responsible_id="7", attributes={}))
        activities: list[dict[str, Any]] = [
            dict(external_id="a1", kind="call", direction="out", missed=False, at=now - dt.timedelta(hours=3),
                 duration_s=192, subject="Уточнили доставку"),
            dict(external_id="a2", kind="call", direction="in", missed=True, at=now - dt.timedelta(days=2),
                 duration_s=0, subject=HOSTILE),
            dict(external_id="a3", kind="meeting", direction=None, missed=False, at=now - dt.timedelta(days=5),
                 duration_s=3600, subject="Встреча в офисе"),
            dict(external_id="a4", kind="call", direction="in", missed=True, at=now - dt.timedelta(days=45),
                 duration_s=None, subject="Давний пропущенный"),
            dict(external_id="a5", kind="call", direction="out", missed=False, at=now - dt.timedelta(days=1),
                 duration_s=30, subject="Удалён в CRM", deleted_at=now),
        ]
        if long_subject:  # SQLite keeps what it is given; PostgreSQL's column holds 300 characters
            activities.append(dict(external_id="a6", kind="email", direction="out", missed=False,
                                   at=now - dt.timedelta(days=7), duration_s=None, subject=LONG))
        for a in activities:
            conn.execute(insert(Activity).values(source="bitrix24", contact_external_id="101", contact_id=anna,
                                                 done=True, **a))
        conn.execute(insert(Interaction).values(contact_id=anna, kind="nps", value=9,
                                                comment="Всё понравилось, <b>спасибо</b>", source="survey link",
                                                meta={}, at=now - dt.timedelta(days=1)))
    return {"anna": anna, "romashka": romashka}


def test_a_viewer_reads_the_company_deals_calls_and_nps_in_russian(admin_env: AdminEnv) -> None:
    found = fill(admin_env)
    viewer = client_as(admin_env, "viewer")
    page = plain(viewer.get(f"/contacts/{found['anna']}"))
    companies = page.split('id="companies"')[1].split("</section>")[0]
    assert "Компании" in companies and "ООО «Ромашка»" in companies and "7701234567" in companies
    assert "Москва" in companies and "Закрытая фирма" not in companies  # deleted in the CRM: gone from the card
    assert f'data-company="{found["romashka"]}"' in companies and "45\u00a0000" in companies
    deals = page.split('id="open-deals"')[1].split("</section>")[0]
    assert "Поставка стульев" in deals and "Опт" in deals and "Согласование КП" in deals
    assert "в этапе 16 дней" in deals
    calls = page.split('id="activities"')[1].split("</section>")[0]
    assert "Звонки и встречи" in calls
    assert 'id="calls-30d">2<' in calls and 'id="missed-30d">1<' in calls  # the deleted and the old one not counted
    assert "3 мин 12 с" in calls and "1 ч 0 мин" in calls and "исходящий" in calls and "входящий" in calls
    assert "пропущенный" in calls and "Встреча" in calls and "Звонок" in calls
    assert "Удалён в CRM" not in calls and "Давний пропущенный" in calls
    assert 'id="nps-score" data-score="9">9 из 10<' in page and "Всё понравилось" in page
    assert "Изменить" not in calls  # read-only: nothing to press


def test_hostile_text_from_a_crm_is_escaped_and_clipped(admin_env: AdminEnv) -> None:
    found = fill(admin_env)
    raw = text(client_as(admin_env, "viewer").get(f"/contacts/{found['anna']}"))
    assert "<script>alert" not in raw and "<img src=x" not in raw and "<b>спасибо</b>" not in raw
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in raw
    assert LONG[:150] in raw and LONG[:400] not in raw  # clipped to about 200 characters
    assert len(raw) < 200_000


@pytest.mark.both_databases
def test_the_card_reads_on_both_databases_and_in_english(admin_env: AdminEnv) -> None:
    found = fill(admin_env, long_subject=False)
    marketer = client_as(admin_env, "marketer")
    post(marketer, "/language", {"language": "en"})
    page = plain(marketer.get(f"/contacts/{found['anna']}"))
    assert "Calls and meetings" in page and "3 min 12 s" in page and "in the stage for 16 days" in page
    assert "Companies" in page and "ООО «Ромашка»" in page and "9 of 10" in page and "missed" in page
    assert "Deals in progress" in page and "Calls in 30 days" in page


def test_a_contact_with_nothing_from_the_crms_says_so(admin_env: AdminEnv) -> None:
    page = plain(client_as(admin_env, "viewer").get(f"/contacts/{admin_env.ids['petrov_1']}"))
    assert 'id="companies"' not in page and 'id="open-deals"' not in page and 'id="nps"' not in page
    assert "В CRM нет звонков и встреч с этим человеком." in page


def test_a_merged_away_id_leads_to_the_survivors_card(admin_env: AdminEnv) -> None:
    found = fill(admin_env)
    other = admin_env.ids["petrov_1"]
    from hub import dedupe

    dedupe.merge_by_hand(admin_env.engine, found["anna"], other, actor="test", settings=admin_env.settings)
    gone = client_as(admin_env, "viewer").get(f"/contacts/{other}", follow_redirects=True)
    assert gone.status_code == 200 and "ООО «Ромашка»" in plain(gone)


def hub_cli(*args: str, language: str = "ru") -> Any:
    return CliRunner().invoke(cli, list(args), env={"HUB_LANGUAGE": language, "COLUMNS": "200"})


def test_contacts_show_prints_and_gives_json(admin_env: AdminEnv) -> None:
    found = fill(admin_env)
    shown = hub_cli("contacts", "show", str(found["anna"]))
    assert shown.exit_code == 0, shown.output
    out = shown.output
    assert "работает в ООО «Ромашка» (ИНН 7701234567, Москва, 3 выигранные сделки), из bitrix24" in out
    assert "сделка Поставка стульев: Опт / Согласование КП, в этапе 16 дней" in out
    assert "звонков за 30 дней: 2, пропущенных входящих: 1" in out
    assert "Звонок исходящий" in out and "3 мин 12 с — Уточнили доставку" in out
    assert "Ответ NPS: 9 из 10" in out and "Всё понравилось" in out
    assert "Очень длинная тема Очень" in out and LONG[:200] not in out  # one line, cut
    data = json.loads(hub_cli("contacts", "show", str(found["anna"]), "--json").output)
    companies = {c["external_id"]: c for c in data["companies"]}
    assert set(companies) == {"c7", "c8"}
    assert {"id", "source", "external_id", "name", "inn", "city"} <= set(companies["c7"])
    assert companies["c7"]["inn"] == "7701234567" and companies["c8"]["name"] == HOSTILE
    act = data["activities"]
    assert {"last_call_at", "calls_30d", "missed_incoming_30d", "recent"} <= set(act)
    assert act["calls_30d"] == 2 and act["missed_incoming_30d"] == 1 and len(act["recent"]) == 5
    assert {"kind", "direction", "missed", "at", "duration_s", "subject"} <= set(act["recent"][0])
    assert act["recent"][0]["external_id"] == "a1" and act["recent"][0]["duration_s"] == 192
    assert set(data["nps"]) == {"score", "comment", "at"} and data["nps"]["score"] == 9
    (deal,) = data["open_deals"]
    assert deal["stage"] == "Согласование КП" and deal["days_in_stage"] == 16
    english = hub_cli("contacts", "show", str(found["anna"]), language="en").output
    assert "works at ООО «Ромашка» (INN 7701234567, Москва, 3 won deals)" in english
    assert "NPS answer: 9 of 10" in english and "in the stage for 16 days" in english


def test_contacts_show_json_of_a_contact_without_crm_data(admin_env: AdminEnv) -> None:
    data = json.loads(hub_cli("contacts", "show", str(admin_env.ids["petrov_1"]), "--json").output)
    assert data["companies"] == [] and data["nps"] is None and data["open_deals"] == []
    assert data["activities"] == {"last_call_at": None, "calls_30d": 0, "missed_incoming_30d": 0, "recent": []}
    listed = json.loads(hub_cli("contacts", "list", "--json").output)
    assert "companies" not in listed[0] and "activities" not in listed[0]  # the list's contract is unchanged


def test_activities_deleted_in_the_crm_leave_the_card_and_its_counts(admin_env: AdminEnv) -> None:
    found = fill(admin_env, long_subject=False)
    with admin_env.engine.begin() as conn:
        conn.execute(update(Activity).where(Activity.contact_id == found["anna"]).values(deleted_at=utcnow()))
        assert conn.execute(select(Activity.id).where(Activity.deleted_at.is_(None),
                                                      Activity.contact_id == found["anna"])).first() is None
    page = plain(client_as(admin_env, "viewer").get(f"/contacts/{found['anna']}"))
    assert 'id="calls-30d">0<' in page


def test_the_card_shows_the_company_and_a_call_in_a_browser(live: str, browser: Browser,
                                                            admin_env: AdminEnv) -> None:
    found = fill(admin_env, long_subject=False)
    sign_in(browser, live, "viewer", f"/contacts/{found['anna']}")
    companies = browser.text("#companies")
    assert "ООО «Ромашка»" in companies and "7701234567" in companies
    assert HOSTILE in companies  # shown as text, never run
    calls = browser.text("#activities")
    assert "Звонок" in calls and "3 мин 12 с" in calls and "Уточнили доставку" in calls
    assert browser.script("return window.__xss === undefined && document.querySelectorAll('#companies img').length")\
        == 0
    assert not browser.exists("#activities form") and not browser.exists("#activities button")


class LoyaltyPlugin:
    """A plugin adding a key of its own to the card, and trying to overwrite one the core filled."""

    @hookimpl
    def contact_card_facts(self, conn: Any, contact_id: int) -> dict[str, Any]:
        return {"loyalty_points": 120, "first_name": "Подмена", "companies": ["чужое"]}


def test_a_plugin_adds_facts_to_the_card_but_never_replaces_the_cores(admin_env: AdminEnv,
                                                                      plugin_manager: Any) -> None:
    # hook:contact_card_facts
    from hub.contacts import card

    found = fill(admin_env, long_subject=False)
    plugin_manager.register(LoyaltyPlugin(), name="loyalty")
    with admin_env.engine.connect() as conn:
        data = card(conn, found["anna"])
    assert data is not None
    assert data["loyalty_points"] == 120 and data["first_name"] == "Анна"
    assert sorted(c["external_id"] for c in data["companies"]) == ["c7", "c8"]
    assert data["nps"]["score"] == 9  # the workflows plugin's answer
    shown = json.loads(hub_cli("contacts", "show", str(found["anna"]), "--json").output)
    assert shown["loyalty_points"] == 120


# --- custom fields by their CRM name; a stage entered "in year 1" ------------------------------

LONG_VALUE = "Комментарий менеджера. " * 450  # 10,350 characters in a CRM's text field


def fill_fields(env: AdminEnv) -> int:
    """Anna's CRM custom fields, keyed by code as the sync stores them, and their names in custom_fields."""
    anna = env.ids["anna"]
    with env.engine.begin() as conn:
        for code, name, ftype, multiple in [("UF_CRM_CHANNEL", "Откуда узнал", "list", False),
                                            ("UF_CRM_KINDS", "Каналы продаж", "list", True),
                                            ("UF_CRM_VIP", "VIP-клиент", "boolean", False),
                                            ("UF_CRM_SINCE", "Клиент с", "date", False),
                                            ("UF_CRM_NOTE", "Комментарий", "string", False),
                                            ("UF_CRM_HTML", "<i>Поле</i>", "string", False)]:
            conn.execute(insert(CustomField).values(source="bitrix24", entity="contact", code=code, name=name,
                                                    type=ftype, multiple=multiple, options=[]))
        conn.execute(update(Contact).where(Contact.id == anna).values(attributes={
            "UF_CRM_CHANNEL": "Выставка", "UF_CRM_KINDS": ["опт", "розница", "сайт"], "UF_CRM_VIP": True,
            "UF_CRM_SINCE": "2024-03-01", "UF_CRM_NOTE": LONG_VALUE, "UF_CRM_HTML": HOSTILE,
            "responsible_id": "2", "type": "CLIENT", "position": "Закупщик"}))
        conn.execute(insert(Order).values(
            source="bitrix24", external_id="d9", contact_external_id="101", contact_id=anna, amount=Decimal("100"),
            currency="RUB", status="open", title="Сделка из прошлого", pipeline="Опт", stage="Новая",
            stage_entered_at=dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc), attributes={}))
    return anna


@pytest.mark.both_databases
def test_custom_fields_read_by_their_crm_name_on_the_card(admin_env: AdminEnv) -> None:
    anna = fill_fields(admin_env)
    viewer = client_as(admin_env, "viewer")
    raw = text(viewer.get(f"/contacts/{anna}"))
    page = html.unescape(re.sub(r"<[^>]+>", "", raw))
    assert "Откуда узнал Выставка" in page and "UF_CRM_CHANNEL" not in page
    assert "Каналы продаж опт, розница, сайт" in page and "['опт'" not in page
    assert "VIP-клиент да" in page and "True" not in page
    assert "Клиент с 01.03.2024" in page
    assert "type CLIENT" in page and "Должность Закупщик" in page
    assert "responsible_id" not in raw  # the manager's internal id is Hub's bookkeeping
    assert LONG_VALUE[:250] in page and LONG_VALUE[:400] not in page and "…" in page  # clipped to 300
    assert "<script>alert" not in raw and "<i>Поле</i>" not in raw and "&lt;i&gt;Поле&lt;/i&gt;" in raw
    deals = page.split("Сделки в работе")[1]
    assert "Сделка из прошлого" in deals and "739" not in deals and "0001" not in deals
    post(viewer, "/language", {"language": "en"})
    english = html.unescape(re.sub(r"<[^>]+>", "", text(viewer.get(f"/contacts/{anna}"))))
    assert "VIP-клиент yes" in english and "Откуда узнал Выставка" in english and "Mar 1, 2024" in english


def test_contacts_show_names_custom_fields_and_keeps_codes_in_json(admin_env: AdminEnv) -> None:
    anna = fill_fields(admin_env)
    out = hub_cli("contacts", "show", str(anna)).output
    assert "Откуда узнал: Выставка" in out and "UF_CRM_CHANNEL" not in out
    assert "Каналы продаж: опт, розница, сайт" in out and "VIP-клиент: да" in out and "type: CLIENT" in out
    assert "responsible_id" not in out and LONG_VALUE[:250] in out and LONG_VALUE[:400] not in out
    assert "Сделка из прошлого: Опт / Новая" in out and "739" not in out
    assert "VIP-клиент: yes" in hub_cli("contacts", "show", str(anna), language="en").output
    data = json.loads(hub_cli("contacts", "show", str(anna), "--json").output)
    assert data["attributes"]["UF_CRM_CHANNEL"] == "Выставка" and data["attributes"]["UF_CRM_VIP"] is True
    fields = {f["code"]: f for f in data["custom_fields"]}
    assert fields["UF_CRM_CHANNEL"] == {"source": "bitrix24", "code": "UF_CRM_CHANNEL", "name": "Откуда узнал",
                                        "value": "Выставка"}
    assert fields["UF_CRM_KINDS"]["value"] == ["опт", "розница", "сайт"]
    assert fields["type"] == {"source": None, "code": "type", "name": "type", "value": "CLIENT"}
    assert "responsible_id" not in fields and fields["UF_CRM_NOTE"]["value"] == LONG_VALUE  # JSON is not clipped
    (deal,) = [d for d in data["open_deals"] if d["id"] == "d9"]
    assert deal["days_in_stage"] is None and deal["stage_entered_at"].startswith("0001-01-01")
