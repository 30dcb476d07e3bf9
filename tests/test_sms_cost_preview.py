"""SMS parts and the estimated cost (HUB_SMS_PRICE) in the template preview, the forecast, the switch-on
confirmation and the campaign preview; in Russian, and in English for a reader who chose it."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

import plugins.mailing
from hub import consent, message_templates, sync
from hub.config import SettingsError
from hub.messaging import sms_cost
from hub.i18n import use_language
from hub.models import Contact
from hub.records import ContactRecord
from tests.conftest import HubDB
from tests.support.admin import AdminEnv, admin_env, client_as, csrf_token, plain  # noqa: F401
from tests.support.admin_browser import sign_in
from tests.support.cli import cli
from workflows import campaigns, forecast, sms_estimate, store
from workflows.campaigns import Draft

CYRILLIC_100 = "а" * 100  # two parts of 67
LATIN_200 = "a" * 200  # two parts of 153


def flat(text: str) -> str:
    """Money is written with no-break spaces (7,00 ₽, 1 500 ₽); compared as plain spaces."""
    return text.replace("\xa0", " ").replace("\u202f", " ")


def priced(settings: Any, price: str | None = "3.50") -> Any:
    return replace(settings, extra={**settings.extra, "sms_price": price} if price else dict(settings.extra))


# --- the words ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, ru, en", [
    ("Привет", "1 SMS (до 70 символов кириллицей)", "1 SMS (up to 70 Cyrillic characters)"),
    ("Hello", "1 SMS (до 160 символов латиницей)", "1 SMS (up to 160 Latin characters)"),
    (CYRILLIC_100, "2 части по 67 символов кириллицей", "2 parts of 67 Cyrillic characters each"),
    ("б" * 200, "3 части по 67 символов кириллицей", "3 parts of 67 Cyrillic characters each"),
    (LATIN_200, "2 части по 153 символа латиницей", "2 parts of 153 Latin characters each"),
    ("ж" * 70 * 5, "6 частей по 67 символов кириллицей", "6 parts of 67 Cyrillic characters each"),
])
def test_how_a_text_is_billed(text: str, ru: str, en: str) -> None:
    with use_language("ru"):
        assert sms_cost.size_text(text) == ru
    with use_language("en"):
        assert sms_cost.size_text(text) == en


def test_cost_and_totals_in_both_languages() -> None:
    with use_language("ru"):
        assert flat(sms_cost.cost_text(2, Decimal("3.50"))) == "≈ 7,00 ₽ за сообщение"
        assert flat(sms_cost.total_text(120, 180, sms_cost.estimate(180, Decimal("3.50")))) == \
            "120 SMS (180 частей), ≈ 630,00 ₽"
        assert sms_cost.total_text(1, 1, None) == "1 SMS"  # one part each: parts go unsaid
        assert flat(sms_cost.total_text(2000, 3000, Decimal("10500"))) == "2 000 SMS (3 000 частей), ≈ 10 500,00 ₽"
    with use_language("en"):
        assert flat(sms_cost.cost_text(2, Decimal("3.50"))) == "≈ ₽7.00 per message"
        assert flat(sms_cost.total_text(120, 180, Decimal("630"))) == "120 SMS (180 parts), ≈ ₽630.00"
    assert sms_cost.cost_text(2, None) == ""


@pytest.mark.parametrize("raw, expected", [("3.50", Decimal("3.50")), ("2,8", Decimal("2.8")), (4, Decimal(4)),
                                           ("", None), (None, None)])
def test_the_price_setting(raw: Any, expected: Decimal | None) -> None:
    assert sms_cost.price(replace_extra(sms_price=raw)) == expected


@pytest.mark.parametrize("raw", ["три рубля", "-1", "NaN", "1e9", "Infinity"])
def test_a_wrong_price_is_named(raw: str) -> None:
    with use_language("ru"), pytest.raises(SettingsError, match="HUB_SMS_PRICE: .* не цена в рублях"):
        sms_cost.price(replace_extra(sms_price=raw))


def replace_extra(**extra: Any) -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(extra=extra)


# --- the template preview: the command line and the editor ------------------------------------

def test_the_cli_preview_shows_parts_and_cost(hub_db: HubDB, plugin_manager: Any, monkeypatch: Any) -> None:
    plugin_manager.register(plugins.mailing, name="mailing")
    plugin_manager.hook.register_commands(cli=cli)
    with hub_db.engine.begin() as conn:
        message_templates.save(conn, hub_db.settings, message_templates.Template(
            name="long_sms", channel="sms", text="{{ contact.first_name }}, " + CYRILLIC_100))
    monkeypatch.setenv("HUB_SMS_PRICE", "3.50")
    human = CliRunner().invoke(cli, ["templates", "preview", "long_sms"])
    assert human.exit_code == 0, human.output
    assert "2 части по 67 символов кириллицей, ≈ 7,00 ₽ за сообщение" in flat(human.output)
    data = json.loads(CliRunner().invoke(cli, ["templates", "preview", "long_sms", "--json"]).output)
    assert (data["sms_parts"], data["sms_cost"]) == (2, "7.00")
    monkeypatch.delenv("HUB_SMS_PRICE")
    bare = CliRunner().invoke(cli, ["templates", "preview", "long_sms"])
    assert "2 части по 67 символов кириллицей" in bare.output and "₽" not in bare.output
    again = CliRunner().invoke(cli, ["templates", "preview", "long_sms", "--json"])
    assert json.loads(again.output)["sms_cost"] is None
    monkeypatch.setenv("HUB_SMS_PRICE", "дёшево")
    wrong = CliRunner().invoke(cli, ["templates", "preview", "long_sms"])
    assert wrong.exit_code != 0 and "HUB_SMS_PRICE" in wrong.output and "Traceback" not in wrong.output


def editor_preview(env: AdminEnv, role: str, text: str) -> Any:
    client = client_as(env, role)
    return client.post("/templates/preview", data={"csrf_token": csrf_token(client, "/templates/new"),
                                                   "name": "promo", "channel": "sms", "subject": "", "html": "",
                                                   "text": text})


def test_the_editor_preview_shows_parts_and_cost(admin_env: AdminEnv) -> None:  # noqa: F811
    settings = admin_env.app.config["HUB_SETTINGS"]
    admin_env.app.config["HUB_SETTINGS"] = priced(settings)
    found = editor_preview(admin_env, "marketer", "{{ contact.first_name }}, " + CYRILLIC_100).get_json()
    assert flat(found["sms_cost_text"]) == "2 части по 67 символов кириллицей, ≈ 7,00 ₽ за сообщение"
    short = editor_preview(admin_env, "marketer", "<b>Hi</b> {{ contact.first_name }}").get_json()
    assert flat(short["sms_cost_text"]).startswith("1 SMS (до 70 символов кириллицей), ≈ 3,50 ₽")  # Анна is Cyrillic
    admin_env.app.config["HUB_SETTINGS"] = priced(settings, "много")
    wrong = editor_preview(admin_env, "marketer", "Привет")
    assert wrong.status_code == 200 and "HUB_SMS_PRICE" in wrong.get_json()["sms_cost_text"]
    admin_env.app.config["HUB_SETTINGS"] = settings
    assert "₽" not in editor_preview(admin_env, "marketer", "Привет").get_json()["sms_cost_text"]


def test_the_editor_page_has_the_place_for_it_and_a_viewer_cannot_post(admin_env: AdminEnv) -> None:  # noqa: F811
    page = plain(client_as(admin_env, "marketer").get("/templates/new"))
    assert 'id="preview-sms-cost"' in page
    assert editor_preview(admin_env, "viewer", "Привет").status_code in (302, 403)


# --- the forecast, the switch-on confirmation and the campaign preview -------------------------

@pytest.fixture
def shop(admin_env: AdminEnv) -> AdminEnv:  # noqa: F811
    """Ten dormant customers with a phone and an address, who agreed to letters and SMS."""
    import datetime as dt

    from hub.db import utcnow
    from hub.records import OrderRecord

    now = utcnow()
    records: list[Any] = []
    for i in range(10):
        records.append(ContactRecord(source="bitrix24", external_id=f"s{i}", first_name=f"Олеся{i}",
                                     last_name="Смс", emails=[f"s{i}@example.ru"], phones=[f"+7916555{i:04d}"]))
        records.append(OrderRecord(source="bitrix24", external_id=f"os{i}", contact_external_id=f"s{i}",
                                   amount=Decimal("900"), status="won", closed_at=now - dt.timedelta(days=120)))
    with admin_env.engine.begin() as conn:
        sync.write_page(conn, records, admin_env.settings, sync.Counts())
        for cid in conn.execute(select(Contact.id).where(Contact.last_name == "Смс")).scalars():
            for channel in ("email", "sms"):
                consent.record(conn, cid, channel, "marketing", "granted", source="test", settings=admin_env.settings)
        store.install_library(conn)
    admin_env.app.config["HUB_SETTINGS"] = priced(admin_env.app.config["HUB_SETTINGS"])
    return admin_env


def sms_parts_each(env: AdminEnv, template: str) -> int:
    with env.engine.connect() as conn:
        return sms_estimate.template_parts(conn, env.settings, template)


@pytest.mark.both_databases
def test_the_forecast_counts_parts_and_cost(shop: AdminEnv) -> None:
    settings = priced(shop.settings)
    report = forecast.forecast(shop.engine, settings, "reactivation_90d", days=14)
    sent = report["messages"]["sms"]
    assert sent > 0
    each = sms_parts_each(shop, "reactivation_sms")
    assert report["sms"] == {"messages": sent, "parts": sent * each,
                             "cost": str((Decimal("3.50") * sent * each).quantize(Decimal("0.01")))}
    numbers = forecast.switch_on_numbers(report)
    # Parts are named only when an SMS takes more than one: «9 SMS» or «9 SMS (18 частей)».
    said = f"{sent} SMS (" if each > 1 else f"{sent} SMS,"
    with use_language("ru"):
        assert said in forecast.switch_on_text(numbers) and "₽" in forecast.switch_on_text(numbers)
    with use_language("en"):
        words = forecast.switch_on_text(numbers)
        assert "Within 14 days: " in words and said in words and "₽" in words
        assert (f"({sent * each} part" in words) == (each > 1)
    bare = forecast.forecast(shop.engine, shop.settings, "reactivation_90d", days=14)
    assert bare["sms"]["cost"] is None and "₽" not in forecast.switch_on_text(forecast.switch_on_numbers(bare))


def test_the_forecast_and_confirmation_pages_show_it(shop: AdminEnv) -> None:
    marketer = client_as(shop, "marketer")
    page = plain(marketer.get("/workflows/reactivation_90d/forecast?days=14"))
    assert 'id="forecast-sms"' in page and "За 14 дней:" in page and " SMS" in page and "₽" in page
    confirm = plain(marketer.get("/workflows/reactivation_90d/enable"))
    assert " SMS" in confirm and "₽" in confirm
    viewer = plain(client_as(shop, "viewer").get("/workflows/reactivation_90d/forecast?days=14"))
    assert 'id="forecast-sms"' in viewer


@pytest.mark.both_databases
def test_the_campaign_preview_shows_parts_and_cost(shop: AdminEnv) -> None:
    settings = priced(shop.settings)
    draft = Draft(title="SMS", segment="dormant_90d", channel="sms", template="reactivation_sms",
                  purpose="marketing", promo={"discount": "15%", "valid": "14d"}, holdout=0)
    found = campaigns.preview(shop.engine, settings, draft)
    each = sms_parts_each(shop, "reactivation_sms")
    assert found["will_receive"] == 10 and found["sms"]["parts"] == 10 * each
    assert found["sms"]["cost"] == str((Decimal("3.50") * 10 * each).quantize(Decimal("0.01")))
    email = campaigns.preview(shop.engine, settings, replace(draft, channel="email", template="reactivation_email"))
    assert "sms" not in email


# --- in the browser ------------------------------------------------------------------------------

def test_a_marketer_sees_parts_and_cost_while_typing_an_sms(live: str, browser: Any,
                                                            admin_env: AdminEnv) -> None:  # noqa: F811
    admin_env.app.config["HUB_SETTINGS"] = priced(admin_env.app.config["HUB_SETTINGS"])
    sign_in(browser, live, "marketer", "/templates/new")
    browser.fill("#name", "sms_sale")
    browser.select("#channel", "sms")
    browser.type("#text", "Привет")
    browser.wait(lambda: "1 SMS (до 70 символов кириллицей), ≈ 3,50 ₽ за сообщение" in flat(
        browser.text("#preview-sms-cost")), "one part and its price")
    browser.type("#text", ", " + CYRILLIC_100)
    browser.wait(lambda: "2 части по 67 символов кириллицей, ≈ 7,00 ₽ за сообщение" in flat(
        browser.text("#preview-sms-cost")), "two parts and their price")
    sign_in(browser, live, "viewer", "/templates/new")
    assert not browser.find_all("#save-button")  # a viewer may look, not write
