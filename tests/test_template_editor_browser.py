"""The template editor in headless Chromium: a marketer writes a letter, previews it, tests it, versions it."""

from __future__ import annotations

import pytest

from dataclasses import replace
from typing import Any

from sqlalchemy import select

from hub.models import Message, MessageTemplateVersion
from tests.browser import Browser
from tests.support.admin import AdminEnv
from tests.support.admin_browser import sign_in

pytestmark = pytest.mark.both_databases  # what a marketer sees must not depend on the database

RED = "rgb(221, 51, 51)"
BUTTON = ('<p>Здравствуйте, {{ contact.first_name }}!</p>'
          '<a id="buy" href="https://shop.example/sale" style="background-color: #dd3333; color: #fff; '
          'padding: 12px">Купить</a> Код: ')


def in_frame(browser: Browser, script: str) -> Any:
    """Run `script` inside the letter's frame (its own page, its own policy) and come back."""
    browser.driver.switch_to.frame(browser.find("#preview-html"))
    try:
        return browser.script(script)
    finally:
        browser.driver.switch_to.default_content()


def frame_has(browser: Browser, needle: str) -> bool:
    return needle in str(in_frame(browser, "return document.body ? document.body.innerText : ''"))


def test_a_marketer_writes_previews_tests_and_versions_a_letter(live: str, browser: Browser, admin_env: AdminEnv,
                                                               mailbox) -> None:
    box, port = mailbox
    settings = admin_env.app.config["HUB_SETTINGS"]
    admin_env.app.config["HUB_SETTINGS"] = replace(settings, extra={
        **settings.extra, "smtp_url": f"smtp://127.0.0.1:{port}", "mail_from": "Лавка <shop@example.ru>"})
    sign_in(browser, live, "marketer", "/templates/new")
    browser.fill("#name", "spring")
    browser.fill("#subject", "Весна, {{ contact.first_name }}")
    browser.type("#html", BUTTON)
    # The promo code from the variable picker, inserted where the cursor is.
    browser.click("details.variable-group:nth-of-type(4) summary")
    browser.wait(lambda: browser.find('button.variable[data-insert="{{ promo.code }}"]').is_displayed(),
                 "the promo variables")
    browser.click('button.variable[data-insert="{{ promo.code }}"]')
    assert browser.find("#html").get_attribute("value").endswith("Код: {{ promo.code }}")
    # A ready button from the picker's "Insert" group, no HTML written by hand.
    browser.click("#insert-blocks summary")
    browser.wait(lambda: browser.find("#insert-button").is_displayed(), "the ready blocks")
    browser.click("#insert-button")
    html = browser.find("#html").get_attribute("value")
    assert html.startswith(BUTTON) and "Код: {{ promo.code }}<p><a href=" in html
    assert html.endswith("Перейти в магазин</a></p>")
    browser.wait(lambda: frame_has(browser, "Перейти в магазин"), "the inserted button in the letter")
    assert in_frame(browser, "return getComputedStyle(document.querySelector('a[href=\"https://example.ru/\"]'))"
                             ".backgroundColor") == "rgb(43, 108, 176)"

    browser.wait(lambda: not browser.find("#preview-html").get_attribute("hidden")
                 and "/templates/frame/" in (browser.find("#preview-html").get_attribute("src") or ""), "the frame")
    browser.wait(lambda: frame_has(browser, "ANNA-7K2Q"), "the promo code in the letter")
    # The inline style applies inside the frame: the letter's own policy, not the admin's.
    assert in_frame(browser, "return getComputedStyle(document.getElementById('buy')).backgroundColor") == RED
    assert in_frame(browser, "return getComputedStyle(document.getElementById('buy')).paddingTop") == "12px"
    assert browser.script("return getComputedStyle(document.body).backgroundColor") != RED
    assert "Текстовая версия (создана автоматически)" in browser.text("#preview-text-title")
    assert "Купить (https://shop.example/sale) Код: ANNA-7K2Q" in browser.text("#preview-text")
    assert "Весна, Анна" in browser.text("#preview-subject")

    desktop = browser.script("return document.getElementById('preview-html').getBoundingClientRect().width")
    browser.click('#preview-widths button[data-width="phone"]')
    phone = browser.script("return document.getElementById('preview-html').getBoundingClientRect().width")
    assert phone == 375 and desktop == 800
    assert browser.find('#preview-widths button[data-width="phone"]').get_attribute("aria-pressed") == "true"
    assert int(in_frame(browser, "return document.documentElement.clientWidth")) <= 375

    # A test of the unsaved letter, to the marketer's own address.
    assert browser.find("#test-to").get_attribute("value") == "marketer@shop.example"
    browser.click("#test-send-button")
    browser.wait_text("#test-result", "Тестовое письмо отправлено на marketer@shop.example.")
    assert len(box.received) == 1 and box.received[0].rcpt_tos == ["marketer@shop.example"]
    assert box.received[0].message["Subject"] == "[Тест] Весна, Анна"
    assert browser.find("#test-to").tag_name == "output"  # shown, not typed: a test goes to oneself only

    # Two saves, the diff between them, and back to the first.
    browser.click("#save-button")
    browser.wait_text(".flash", "Шаблон spring сохранён")
    browser.type("#html", "<p>До встречи!</p>")
    browser.click("#save-button")
    browser.wait(lambda: len(browser.find_all("#version-list tbody tr")) == 2, "two versions")
    browser.click('#version-list tr[data-version="2"] a')
    browser.wait_text("#diff", "+ ")
    assert "До встречи!" in browser.text("pre.diff .diff-line.added")
    assert "Сравнение с версией 1." in browser.text("#compared-with")
    browser.click("form.inline button.secondary")  # version 2 is the current one: nothing to restore
    browser.accept_confirm()
    browser.wait_text(".flash", "В шаблоне spring ничего не изменилось: текущей остаётся версия 2.")
    browser.click('#version-list tr[data-version="1"] form.inline button')
    browser.accept_confirm()
    browser.wait_text(".flash", "Версия 1 шаблона spring восстановлена как версия 3.")
    browser.click('#version-list tr[data-version="2"] form.inline button')
    browser.accept_confirm()
    browser.wait_text(".flash", "Версия 2 шаблона spring восстановлена как версия 4.")
    with admin_env.engine.connect() as conn:
        rows = conn.execute(select(MessageTemplateVersion.version, MessageTemplateVersion.body_html)
                            .order_by(MessageTemplateVersion.version)).all()
        assert conn.execute(select(Message.id)).first() is None  # the test letter never touched the outbox
    assert [r.version for r in rows] == [1, 2, 3, 4] and rows[3].body_html == rows[1].body_html

    # A viewer sees the versions and the diff, but nothing that changes them.
    sign_in(browser, live, "viewer", "/templates/spring")
    assert len(browser.find_all("#version-list tbody tr")) == 4
    assert not browser.exists("#save-button") and not browser.exists("#test-send-button")
    assert not browser.exists("#version-list form") and not browser.exists("button.variable")
    browser.click('#version-list tr[data-version="2"] a')
    browser.wait_text("#diff", "До встречи!")
    assert not browser.exists("form.inline")
