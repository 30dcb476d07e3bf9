"""The admin in words a reader knows: paging, where a message shows, names instead of keys, zones named."""

from __future__ import annotations


import re

import yaml
from click.testing import CliRunner
from sqlalchemy import select

from hub import consent, credentials, i18n, sync
from hub.admin import audit
from hub.api import ContactRecord
from hub.models import ConsentEvent
from hub.segments import store
from hub.segments.evaluate import Segments
from tests.support.admin import AdminEnv, admin_env, client_as, plain  # noqa: F401 - the fixture
from tests.support.cli import cli
from workflows import showcase


def test_contacts_pages_through_the_base_with_a_total(admin_env: AdminEnv) -> None:  # noqa: F811
    records = [ContactRecord(source="import:many.csv", first_name=f"Имя{i}", last_name="Листов",
                             phones=[f"+7 916 500-{i // 100:02d}-{i % 100:02d}"]) for i in range(41)]
    with admin_env.engine.begin() as conn:
        sync.write_page(conn, records, admin_env.settings, sync.Counts())
    client = client_as(admin_env, "viewer")
    first, second, third = (plain(client.get(f"/contacts/?page={n}")) for n in (1, 2, 3))
    assert "1–20 из 45" in first and "страница 1 из 3" in first and 'rel="next"' in first and 'rel="prev"' not in first
    assert "21–40 из 45" in second and 'rel="prev"' in second and 'rel="next"' in second
    assert "41–45 из 45" in third and 'rel="next"' not in third
    newest_first = {line for line in first.split("/contacts/") if line[:1].isdigit()}
    newest_second = {line for line in second.split("/contacts/") if line[:1].isdigit()}
    assert newest_first and newest_second and not newest_first & newest_second
    assert "Иванова Анна<" in third and "Иванова Анна<" not in first  # the oldest person is on the last page
    assert "41–45 из 45" in plain(client.get("/contacts/?page=99"))  # past the end: the last page


def test_a_missing_contact_is_told_on_its_own_page_not_the_next(admin_env: AdminEnv) -> None:  # noqa: F811
    client = client_as(admin_env, "admin")
    missing = client.get("/gdpr/person?contact=99999")
    assert missing.status_code == 404 and "Контакта с номером 99999 нет." in plain(missing)
    assert "Контакта с номером 99999 нет." not in plain(client.get("/gdpr/"))


def test_an_undecryptable_connection_says_what_to_do_without_a_class_name(admin_env: AdminEnv) -> None:  # noqa: F811
    with admin_env.engine.begin() as conn:
        for name in ("bitrix24", "amocrm"):
            credentials.save(conn, name, {"kind": "webhook", "refresh_token": "x"}, "another key " * 4)
    client = client_as(admin_env, "viewer")
    for path in ("/connections/bitrix24", "/connections/amocrm"):
        page = plain(client.get(path))
        assert "HUB_SECRET_KEY изменился" in page and "Подключитесь заново" in page, path
        assert "CredentialError" not in page, path


def _box(page: str) -> dict:
    found = re.search(r"<textarea[^>]*>(.*?)</textarea>", page, re.S)
    assert found, "no YAML box on the page"
    return yaml.safe_load(found.group(1))


def test_a_shipped_segment_is_shown_and_copied_in_the_readers_language(admin_env: AdminEnv) -> None:  # noqa: F811
    shipped = store.builtin_documents()["dormant_90d"]
    client = client_as(admin_env, "marketer")
    shown = _box(plain(client.get("/segments/dormant_90d")))
    copied = _box(plain(client.get("/segments/new?copy=dormant_90d")))
    for document in (shown, copied):
        assert document["title"] == "Не покупали 90 дней, письма разрешены"
        assert document["description"] != shipped["description"] and re.search("[а-я]", document["description"])
        assert document["rule"] == shipped["rule"]  # the rule stays as it is written
    assert shown["name"] == "dormant_90d" and copied["name"] == "my_dormant_90d"


def test_a_marketers_own_segment_is_shown_as_written(admin_env: AdminEnv) -> None:  # noqa: F811
    document = {"name": "my_vip", "title": "VIP from Tula", "description": "Written in English on purpose.",
                "rule": {"field": "contact.city", "op": "eq", "value": "Тула"}}
    with admin_env.engine.begin() as conn:
        definition, _created = store.add(conn, Segments(conn, admin_env.settings).registry, document)
    assert store.shown_document(definition) == definition.document
    shown = _box(plain(client_as(admin_env, "marketer").get("/segments/my_vip")))
    assert shown["title"] == "VIP from Tula" and shown["description"] == "Written in English on purpose."
    with admin_env.engine.connect() as conn:
        builtin = Segments(conn, admin_env.settings).get("dormant_90d")
    with i18n.use_language("en"):
        assert "title: Dormant for 90 days, email allowed" in store.shown_yaml(builtin)
    assert "title: Не покупали 90 дней, письма разрешены" in store.shown_yaml(builtin)


def test_the_card_names_fields_sources_channels_and_zones(admin_env: AdminEnv) -> None:  # noqa: F811
    page = plain(client_as(admin_env, "viewer").get(f"/contacts/{admin_env.ids['anna']}"))
    provenance = page.split('id="provenance"' if 'id="provenance"' in page else "Откуда взято каждое поле")[1]
    provenance = provenance.split("</details>")[0]
    assert "имя" in provenance and "фамилия" in provenance and "город" in provenance and "создан из" in provenance
    assert not re.search(r">(first_name|last_name|city|created_from)<", provenance)
    assert "Битрикс24" in provenance and 'data-source="bitrix24"' in provenance
    assert "Битрикс24: 101" in page  # the CRM reference by the CRM's name
    assert re.search(r"Начат \(\w+", page) and re.search(r"Завершён \(\w+", page)  # workflow runs name the zone


def test_contacts_show_names_consent_in_the_readers_words(admin_env: AdminEnv) -> None:  # noqa: F811
    anna = str(admin_env.ids["anna"])
    shown = CliRunner().invoke(cli, ["contacts", "show", anna], env={"COLUMNS": "200"})
    assert "согласие Email/Акции и специальные предложения: дано" in shown.output, shown.output
    english = CliRunner().invoke(cli, ["contacts", "show", anna], env={"HUB_LANGUAGE": "en", "COLUMNS": "200"})
    assert "consent Email/Offers and special deals: granted" in english.output, english.output


def test_dashboard_names_sources_and_channels(admin_env: AdminEnv) -> None:  # noqa: F811
    sync.start_run(admin_env.engine, "bitrix24", "full")
    page = plain(client_as(admin_env, "viewer").get("/"))
    assert re.search(r'data-source="bitrix24">Битрикс24 <code class="hint">bitrix24</code>', page)
    templates = plain(client_as(admin_env, "marketer").get("/templates/"))
    assert ">email<" not in templates and ">sms<" not in templates
    editor = plain(client_as(admin_env, "marketer").get("/templates/new"))
    assert '<option value="sms">SMS</option>' in editor and '<option value="email" selected>Email</option>' in editor


def test_segments_and_forecast_name_the_zone(admin_env: AdminEnv) -> None:  # noqa: F811
    client = client_as(admin_env, "viewer")
    assert re.search(r"Обновлён \(\w+\)", plain(client.get("/segments/")))
    forecast = plain(client.get("/workflows/reactivation_90d/forecast?days=14"))
    assert re.search(r"Запланировано \(\w+\)", forecast)


def test_the_workflows_list_reads_triggers_in_words(admin_env: AdminEnv) -> None:  # noqa: F811
    page = plain(client_as(admin_env, "viewer").get("/workflows/"))
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", page, re.S)
    reactivation = next(r for r in rows if "reactivation_90d" in r)
    starts_on = re.findall(r"<td>(.*?)</td>", reactivation, re.S)[1]
    words = re.sub(r"<code.*?</code>", "", starts_on, flags=re.S)
    assert "вход в сегмент «Не покупали 90 дней" in words and "segment" not in words, words
    assert re.search(r"<code[^>]*>segment dormant_90d</code>", starts_on)  # the technical trigger, as a hint


def test_the_audit_log_names_the_language_and_the_command_line(admin_env: AdminEnv) -> None:  # noqa: F811
    with admin_env.engine.begin() as conn:
        audit.record(conn, "cli", "user_language_changed", user="a@shop.example", language="en")
    page = plain(client_as(admin_env, "admin").get("/users/audit"))
    assert "командная строка" in page and "язык: английский" in page and "язык: en" not in page


def test_demo_consent_evidence_is_written_in_the_shops_language(admin_env: AdminEnv) -> None:  # noqa: F811
    with admin_env.engine.begin() as conn, i18n.use_language("ru"):
        people, _sms = showcase._grant_demo_consent(conn)
    assert admin_env.ids["anna"] in people
    with admin_env.engine.connect() as conn:
        evidence = conn.execute(select(ConsentEvent.evidence).where(ConsentEvent.source == "demo")).scalars().all()
    assert evidence and all(e == {"note": "демо: согласие покупателей эмулированной CRM, данное при оформлении заказа"}
                            for e in evidence)
    card = plain(client_as(admin_env, "viewer").get(f"/contacts/{admin_env.ids['anna']}"))
    assert "примечание: демо: согласие покупателей эмулированной CRM" in card
    gdpr = plain(client_as(admin_env, "admin").get("/gdpr/"))
    assert "примечание: демо: согласие покупателей эмулированной CRM" in gdpr
    assert consent.channel_title("email") == "Email"
