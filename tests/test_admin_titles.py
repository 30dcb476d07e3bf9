"""Values stored in technical words (sync run kinds, consent, roles, audit actions, rule operators) read as
people call them, from one title per value set, while forms, rules and JSON keep the values themselves."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from hub import consent, dedupe, formats, i18n, identity, sync, users
from hub.admin import create_app
from hub.admin import audit as admin_audit
from hub.admin.filters import details
from hub.models import SyncRun
from hub.segments import explain, scoring
from hub.segments.evaluate import Segments
from tests.conftest import HubDB
from tests.plugins import sample_source
from tests.plugins.sample_source import FakeCRM
from tests.support.admin import AdminEnv, admin_env, client_as, plain, post, sign_in, text  # noqa: F401


def kinds(db: HubDB) -> list[str]:
    with db.engine.connect() as conn:
        return list(conn.execute(select(SyncRun.kind).order_by(SyncRun.id)).scalars())


def test_a_first_sync_is_recorded_as_full_though_changes_only_were_asked(hub_db: HubDB, plugin_manager) -> None:
    crm = FakeCRM()
    sample_source.CRM = crm
    plugin_manager.register(sample_source)
    crm.add_contact(1, first="Имя", phones=["8 916 000-00-01"])
    report = sync.run(hub_db.engine, hub_db.settings, "sample")  # never synced: every entity is read in full
    assert report.kind == "full" and kinds(hub_db) == ["full"]
    sync.run(hub_db.engine, hub_db.settings, "sample")
    assert kinds(hub_db) == ["full", "incremental"]


def test_every_value_set_has_one_title_in_both_languages() -> None:
    assert sync.kind_title("full") == "полная синхронизация" and sync.kind_title("incremental") == "только изменения"
    assert sync.kind_title("reconcile") == "сверка" and sync.kind_title("plugin_kind") == "plugin_kind"
    assert consent.status_title("granted") == "дано" and consent.channel_title("phone") == "Звонки"
    assert consent.purpose_title("marketing") == "Акции и специальные предложения"
    assert users.role_title("admin") == "Администратор" and identity.kind_title("phone") == "телефон"
    assert dedupe.evidence_title("same city") == "тот же город"
    with i18n.use_language("en"):
        assert sync.kind_title("reconcile") == "reconciliation" and consent.purpose_title("news") == "News"
        assert users.role_title("viewer") == "Viewer" and explain.op_title("gte") == "≥"
        assert explain.op_title("before") == "before" and explain.group_title("all") == "all of these"
    assert explain.op_title("before") == "до" and explain.group_title("any") == "любое из условий"
    assert explain.op_title("a_plugins_op") == "a_plugins_op"


def test_details_read_as_words_with_phones_formatted_and_unknown_keys_as_they_are() -> None:
    shown = details({"file": "согласия.csv", "line": 3, "phone": "+79634044244", "batch": "b7", "note": None})
    assert shown == "файл: согласия.csv, строка: 3, телефон: +7 963 404-42-44, batch: b7"
    assert details('{"channel": "sms", "status": "withdrawn", "role": "marketer"}') == \
        "канал: SMS, статус: отозвано, роль: Маркетолог"
    assert details({"confirmed_by_person": False, "removed": {"orders": 2}}) == \
        "подтверждено самим человеком: нет, удалено: (orders: 2)"
    assert details(None) == "" and details({}) == ""
    with i18n.use_language("en"):
        assert details({"file": "a.csv", "line": 3}) == "file: a.csv, line: 3"


def test_connections_and_dashboard_name_every_run_kind(admin_env: AdminEnv) -> None:  # noqa: F811
    for kind in ("full", "incremental", "reconcile"):
        sync.finish_run(admin_env.engine, sync.start_run(admin_env.engine, "bitrix24", kind), sync.Counts())
    viewer = client_as(admin_env, "viewer")
    page = text(viewer.get("/connections/"))
    assert 'data-kind="full">полная синхронизация<' in page and 'data-kind="incremental">только изменения<' in page
    assert 'data-kind="reconcile">сверка<' in page and "reconcile<" not in page
    assert "Начат (" in page
    dashboard = text(viewer.get("/"))
    shown = re.sub(r"<[^>]*>", " ", dashboard)  # what a person reads: the schedules' codes stay in attributes
    assert "сверка, " in shown and "reconcile" not in shown


def test_the_card_names_consent_in_words_and_keeps_values_in_the_form(admin_env: AdminEnv) -> None:  # noqa: F811
    anna = admin_env.ids["anna"]
    with admin_env.engine.begin() as conn:
        consent.record(conn, anna, "sms", "marketing", "withdrawn", source="import:согласия.csv",
                       settings=admin_env.settings,
                       evidence={"file": "согласия.csv", "line": 3, "phone": "+79634044244", "x": "<b>"})
    page = text(client_as(admin_env, "marketer").get(f"/contacts/{anna}"))
    assert '<option value="sms">SMS</option>' in page and '<option value="phone">Звонки</option>' in page
    assert '<option value="marketing">Акции и специальные предложения</option>' in page
    assert '<td data-value="sms">SMS</td><td data-value="marketing">Акции и специальные предложения</td>' in page
    assert "файл: согласия.csv, строка: 3, телефон: +7 963 404-42-44, x: &lt;b&gt;" in page
    assert "<b>" not in page and '{"file"' not in page
    assert 'data-topic="sms/marketing">SMS / Акции и специальные предложения</span>: отозвано' in page
    gdpr = text(client_as(admin_env, "viewer").get("/gdpr/"))
    assert "файл: согласия.csv, строка: 3, телефон: +7 963 404-42-44" in gdpr and '{"file"' not in gdpr
    zone = formats.zone_name(admin_env.settings.tz)
    assert f"Когда ({zone})" in gdpr and "Ждёт подтверждения" not in gdpr and ">отозвано<" in gdpr
    with admin_env.engine.connect() as conn:
        at = consent.history(conn, anna)[-1]["at"]
    assert formats.moment(at, admin_env.settings.tz) in gdpr
    answer = post(client_as(admin_env, "marketer"), f"/contacts/{anna}/consent",
                  {"channel": "phone", "purpose": "surveys", "status": "granted", "note": "звонок 5 декабря"},
                  token_from=f"/contacts/{anna}",
                  follow_redirects=True)
    assert "Звонки/Опросы" in plain(answer)
    with admin_env.engine.connect() as conn:
        assert consent.current(conn, anna)[("phone", "surveys")] == "granted"


def test_the_audit_log_names_actions_and_actors_and_reads_details(admin_env: AdminEnv) -> None:  # noqa: F811
    with admin_env.engine.begin() as conn:
        admin_audit.record(conn, "scheduler", "gdpr.retention", messages=2, sync_runs=0)
        admin_audit.record(conn, "boss@shop.example", "consent.granted", channel="sms", purpose="news")
        admin_audit.record(conn, "boss@shop.example", users.LOGIN, ip="10.0.0.1")
        admin_audit.record(conn, "boss@shop.example", "plugin.own_action", user="anna@shop.example")
    page = text(client_as(admin_env, "admin").get("/users/audit"))
    assert ">очистка по сроку хранения<" in page and ">планировщик<" in page
    assert "2 сообщения обезличены" in page and "sync_runs" not in page  # the plugin's sentence, not its keys
    assert ">согласие дано<" in page and "канал: SMS, цель: Новости" in page
    assert '<td data-action="login">вход</td>' in page and "IP-адрес: 10.0.0.1" in page
    assert ">plugin.own_action<" in page and "пользователь: anna@shop.example" in page
    zone = formats.zone_name(admin_env.settings.tz)
    assert f"Когда ({zone})" in page and not re.search(r"\d\d:\d\d:\d\d<", page)
    english = sign_in(create_app(replace(admin_env.settings, language="en")).test_client(),
                      admin_env.users["admin"])
    page = text(english.get("/users/audit"))
    assert ">retention run<" in page and ">signed in<" in page and "IP address: 10.0.0.1" in page
    assert "2 messages anonymized" in page


def test_explain_shows_operators_groups_and_values_in_words(admin_env: AdminEnv) -> None:  # noqa: F811
    anna = admin_env.ids["anna"]
    page = text(client_as(admin_env, "viewer").get(f"/segments/dormant_90d/explain?contact={anna}"))
    tree = page[page.index('id="explain-tree"'):page.index("</ul>", page.index('id="explain-tree"'))]
    assert 'data-kind="all">все условия<' in tree and 'data-op="gte">≥<' in tree
    assert 'data-op="before">до<' in tree or 'data-op="within_last">' in tree
    assert "gte " not in tree and ">all<" not in tree and "T00:00:00" not in tree.split('data-value')[0]
    zone = formats.zone_name(admin_env.settings.tz)
    assert zone in tree
    with admin_env.engine.connect() as conn:  # the machine answer stays as it was
        data = explain.explain(Segments(conn, admin_env.settings), "dormant_90d", anna)
    ops = re.findall(r"'op': '(\w+)'", str(data["rule"]))
    assert "gte" in ops and "op_title" not in str(data) and data["rule"]["kind"] == "all"


def test_explain_names_consent_values_by_their_titles() -> None:
    tz = ZoneInfo("Europe/Moscow")
    assert explain.value_text("granted", tz) == "дано" and explain.value_text("none", tz) == "нет ответа"
    assert explain.value_text("2026-01-03", tz) == "03.01.2026" and explain.value_text(1500, tz) == formats.number(1500)
    assert explain.value_text("2026-01-03T00:00:00+00:00", tz) == formats.moment(
        dt.datetime(2026, 1, 3, tzinfo=dt.timezone.utc), tz, zone=True)
    assert "МСК" in explain.value_text("2026-01-03T00:00:00+00:00", tz)
    assert explain.value_text(None, tz) == "—" and explain.value_text("vip", tz) != "vip"
    assert explain.value_text("-90d", tz) == "90 дней назад" and explain.value_text("+7d", tz) == "через 7 дней"
    assert explain.value_text("30d", tz) == "30 дней"


def test_the_card_and_explain_agree_on_the_lead_score(admin_env: AdminEnv) -> None:  # noqa: F811
    anna = admin_env.ids["anna"]
    with admin_env.engine.connect() as conn:
        live = explain.explain(Segments(conn, admin_env.settings), "dormant_90d", anna)["lead_score"]
    assert live["score"] > 0 and not live["stored"], "anna's sample data should score before any refresh"
    viewer = client_as(admin_env, "viewer")
    card = text(viewer.get(f"/contacts/{anna}"))
    assert f'id="lead-score">{formats.number(live["score"])}<' in card
    assert 'id="stored-lead-score"' in card and "(в сегментах пока 0 — до следующего пересчёта)" in card
    page = text(viewer.get(f"/segments/dormant_90d/explain?contact={anna}"))
    assert f"Оценка лида: {formats.number(live['score'])}" in page and 'id="stored-lead-score"' in page
    assert "(в сегментах пока 0 — до следующего пересчёта)" in page
    with admin_env.engine.begin() as conn:
        segments = Segments(conn, admin_env.settings)
        model = scoring.load_model(segments.registry, segments.catalog.definitions)
        scoring.refresh(conn, segments.compiler, model, at=segments.now)
    card = text(viewer.get(f"/contacts/{anna}"))
    assert f'id="lead-score">{formats.number(live["score"])}<' in card and 'id="stored-lead-score"' not in card


@pytest.mark.parametrize("module", ["hub.admin.filters", "hub.admin.connections", "hub.commands.dedupe",
                                    "hub.commands.contacts", "hub.demo", "plugins.gdpr.topics",
                                    "plugins.gdpr.admin"])
def test_no_second_list_of_titles_is_kept(module: str) -> None:
    import importlib

    found = vars(importlib.import_module(module))
    for name in ("ROLE_TITLES", "EVIDENCE", "IDENTITY_KINDS", "SYNC_KINDS", "RUN_KINDS", "KINDS", "CHANNEL_LABELS",
                 "PURPOSE_LABELS", "STATUS_LABELS"):
        assert name not in found, f"{module}.{name}"
