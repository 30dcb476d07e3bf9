"""The visual rule builder in headless Chromium, used by a marketer who has never seen YAML, and by a viewer.

The marketer builds "Moscow customers who bought twice or more and not in the
last 60 days" from the field list, the suggestions and the operator menus,
watches the count and the text form follow, fixes the value the check
complains about, and saves; the saved segment holds exactly the right people.
Editing the text draws the builder again. A viewer sees the rule and can
change nothing.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from hub import sync
from hub.db import utcnow
from hub.records import ContactRecord, OrderRecord
from hub.segments.evaluate import Segments
from tests.browser import Browser
from tests.support.admin import AdminEnv
from tests.support.admin_browser import sign_in


def seed_moscow(env: AdminEnv) -> None:
    """Beside Anna (Москва, two orders, the last 120 days ago): one who bought lately, one who bought once."""
    now = utcnow()
    records: list[Any] = [
        ContactRecord(source="bitrix24", external_id="201", first_name="Мария", last_name="Соколова", city="Москва",
                      emails=["maria@example.ru"]),
        ContactRecord(source="bitrix24", external_id="202", first_name="Олег", last_name="Орлов", city="Москва",
                      emails=["oleg@example.ru"]),
    ]
    for n, days in enumerate((300, 200, 10)):
        records.append(OrderRecord(source="bitrix24", external_id=f"m{n}", contact_external_id="201",
                                   amount=Decimal("1000"), status="won", closed_at=now - dt.timedelta(days=days)))
    records.append(OrderRecord(source="bitrix24", external_id="o9", contact_external_id="202", amount=Decimal("900"),
                               status="won", closed_at=now - dt.timedelta(days=100)))
    with env.engine.begin() as conn:
        sync.write_page(conn, records, env.settings, sync.Counts())


def node(path: str) -> str:
    return f'#segment-builder [data-path="{path}"]'


def pick_field(browser: Browser, path: str, search: str, pattern: str) -> None:
    browser.click(f"{node(path)} .field-button")
    browser.fill(f"{node(path)} .field-search", search)
    browser.click(f'{node(path)} .field-option[data-pattern="{pattern}"]')
    browser.wait(lambda: browser.find(f"{node(path)} .field-button").get_attribute("data-field") == pattern,
                 f"{pattern} to be chosen at {path}")


@pytest.mark.both_databases
def test_a_marketer_builds_a_segment_without_yaml(live: str, browser: Browser, admin_env: AdminEnv) -> None:
    seed_moscow(admin_env)
    sign_in(browser, live, "marketer", "/segments/new")
    browser.wait(lambda: browser.find("#check-result").get_attribute("data-state") == "ok", "the example to check")
    assert browser.find("#segment-builder").is_displayed()
    browser.fill("#builder-name", "moscow_twice")
    browser.fill("#builder-title", "Москва: два заказа и больше, но не за 60 дней")

    # The city, from the spellings the base holds
    pick_field(browser, "rule.all[0]", "город", "contact.city")
    assert "текст" in browser.text(f"{node('rule.all[0]')} .field-button")
    assert browser.find(f"{node('rule.all[0]')} select.op").get_attribute("value") == "eq"
    browser.type(f"{node('rule.all[0]')} .value-input", "мо")
    browser.wait(lambda: browser.exists(f'{node("rule.all[0]")} .suggestion[data-value="Москва"]'),
                 "Москва among the suggestions")
    assert "3" in browser.text(f'{node("rule.all[0]")} .suggestion[data-value="Москва"]')
    browser.click(f'{node("rule.all[0]")} .suggestion[data-value="Москва"]')

    # The example's consent condition reads in words: no codes, no English
    consent = browser.text(f"{node('rule.all[1]')} .node-body")
    assert "(granted)" not in consent and "marketing" not in consent and "none" not in consent, consent
    assert browser.find(f"{node('rule.all[1]')} select.op").get_attribute("aria-label") == "Как сравнить"

    # Orders: two or more (the consent condition of the example becomes the order count), found by a marketer's words
    pick_field(browser, "rule.all[1]", "число заказов", "orders.count")
    browser.select(f"{node('rule.all[1]')} select.op", "gte")
    browser.wait(lambda: browser.find(f"{node('rule.all[1]')} select.op").get_attribute("value") == "gte",
                 "the operator «не меньше»")
    browser.type(f"{node('rule.all[1]')} .value-input", "2")

    # The last order before 60 days ago, first typed without the sign
    browser.click('#segment-builder [data-path="rule"] > .node-body > .builder-add .add-condition')
    browser.wait(lambda: browser.exists(node("rule.all[2]")), "a third condition")
    pick_field(browser, "rule.all[2]", "последний заказ", "orders.last_at")
    browser.select(f"{node('rule.all[2]')} select.op", "before")
    browser.wait(lambda: browser.exists(f"{node('rule.all[2]')} .value-input"), "the value box for «до»")
    browser.type(f"{node('rule.all[2]')} .value-input", "60d")
    problem = browser.wait_text(f"{node('rule.all[2]')} .node-problems", "нет знака")
    assert "rule.all[2]" not in problem and "-60d — 60 дней назад" in problem  # next to the condition, no path
    assert "rule.all[2].value" in browser.text("#check-result")  # the list of problems keeps it
    assert "invalid" in browser.find(f"{node('rule.all[2]')} .value-editor").get_attribute("class")
    browser.fill(f"{node('rule.all[2]')} .value-input", "-60d")
    browser.wait_text(f"{node('rule.all[2]')} .value-hint", "60 дней назад")
    assert "1 контакт подходит сейчас" in browser.wait_text("#live-count", "1 контакт")
    assert browser.text(f"{node('rule.all[2]')} .node-problems") == ""

    # The text form followed every step
    text = browser.find("#document").get_attribute("value")
    assert "name: moscow_twice" in text and "value: Москва" in text
    assert "field: orders.count\n    op: gte\n    value: 2" in text
    assert "field: orders.last_at\n    op: before\n    value: -60d" in text

    browser.click("#segment-form button[type=submit]")
    browser.wait_text(".flash", "Сегмент moscow_twice сохранён")
    assert browser.url.endswith("/segments/moscow_twice")
    with admin_env.engine.connect() as conn:
        assert Segments(conn, admin_env.settings).member_ids("moscow_twice") == [admin_env.ids["anna"]]

    # Editing the text draws the builder again
    browser.wait(lambda: browser.find("#check-result").get_attribute("data-state") in ("ok", "problems"),
                 "the saved segment to check")
    browser.find("#document").clear()
    browser.type("#document", "name: moscow_twice\ntitle: Тула или VIP\nrule:\n  any:\n"
                              "    - {field: contact.city, op: eq, value: Тула}\n    - {segment: vip}\n")
    browser.wait(lambda: browser.exists(f"{node('rule.any[1]')}.node-segment"), "the builder drawn from the text")
    assert browser.find(f"{node('rule')} > .node-body > select.group-kind").get_attribute("value") == "any"
    assert browser.find(f"{node('rule.any[0]')} .value-input").get_attribute("value") == "Тула"
    assert browser.find("#builder-title").get_attribute("value") == "Тула или VIP"
    assert "2 контакта подходят сейчас" in browser.wait_text("#live-count", "2 контакта")


def test_a_rule_the_builder_cannot_draw_stays_text_and_is_kept(live: str, browser: Browser) -> None:
    sign_in(browser, live, "marketer", "/segments/new")
    browser.wait(lambda: browser.find("#check-result").get_attribute("data-state") == "ok", "the example to check")
    browser.find("#document").clear()
    browser.type("#document", "name: odd\nrule:\n  all:\n    - {field: contact.city, op: eq, value: Тула}\n"
                              "    - {feild: contact.city, op: eq, value: Москва}\n")
    browser.wait(lambda: browser.exists(f"{node('rule.all[1]')}.node-text"), "the misspelt condition kept as text")
    assert "feild" in browser.find(f"{node('rule.all[1]')} textarea").get_attribute("value")
    browser.wait_text(f"{node('rule.all[1]')} .node-problems", "Неизвестный ключ 'feild'")
    browser.fill(f"{node('rule.all[0]')} .value-input", "Москва")  # a change elsewhere in the builder…
    browser.wait(lambda: "value: Москва\n  - feild: contact.city" in browser.find("#document").get_attribute("value"),
                 "the text rewritten with the misspelt condition as it was")


def test_a_viewer_sees_the_rule_and_can_change_nothing(live: str, browser: Browser) -> None:
    sign_in(browser, live, "viewer", "/segments/dormant_90d")
    browser.wait(lambda: browser.exists(node("rule.all[2]")), "the rule drawn")
    assert "Только просмотр" in browser.text("#segment-builder")
    assert browser.find(f"{node('rule.all[1]')} .value-input").get_attribute("value") == "-90d"
    assert "90 дней назад" in browser.text(f"{node('rule.all[1]')} .value-hint")
    assert not [c for c in browser.find_all("#segment-builder input, #segment-builder select, "
                                            "#segment-builder button, #segment-builder textarea") if c.is_enabled()]
    assert not browser.exists("#segment-builder .add-condition") and not browser.exists("#segment-builder .node-moves")
    assert browser.find("#document").get_attribute("readonly") is not None
    assert not browser.exists("#segment-form button[type=submit]")
    status = browser.driver.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        "fetch('/segments/write', {method: 'POST', credentials: 'same-origin', headers: {'Content-Type': "
        "'application/json', 'X-CSRFToken': document.querySelector('meta[name=csrf-token]').content}, "
        "body: JSON.stringify({model: {name: 'mine', rule: {kind: 'segment', name: 'vip'}}})})"
        ".then(function (r) { done(r.status); });")
    assert status == 403
