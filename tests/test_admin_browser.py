"""The admin in headless Chromium, used the way its people use it.

Each test signs in through the real form and clicks through a task: find a
contact by a phone typed another way, fix a typo in a segment while the page
checks it, preview a template for a chosen contact, connect both CRMs (amoCRM
through its OAuth redirect and back), merge duplicates, and see that a viewer
can change nothing and a form without its CSRF token is refused. Chromium
missing is a failure with instructions (tests/browser.py), never a skip.
"""

from __future__ import annotations

import pytest

from hub import queue
from tests.browser import Browser
from tests.support.admin import AdminEnv
from tests.support.admin_browser import sign_in


def nav_labels(browser: Browser) -> list[str]:
    return [a.text for a in browser.find_all("header nav a")]


def test_each_role_signs_in_and_sees_its_menu(live: str, browser: Browser) -> None:
    browser.open(live + "/contacts/")
    browser.fill("#email", "viewer@shop.example")
    browser.fill("#password", "wrong password")
    browser.click("form.stack button[type=submit]")
    assert "Неверный email или пароль" in browser.text("#login-error")
    # The menu is what the core and the loaded plugins registered, in Russian unless HUB_LANGUAGE says otherwise.
    everyone = ["Обзор", "Контакты", "Сегменты", "Рассылки", "Сценарии", "Шаблоны", "Сообщения", "Подключения",
                "GDPR и согласия"]
    expected = {"viewer": everyone, "marketer": everyone, "admin": [*everyone, "Вебхуки", "API-ключи", "Пользователи"]}
    for role, menu in expected.items():
        sign_in(browser, live, role, "/contacts/")
        assert browser.url == live + "/contacts/"  # back where they were going
        assert nav_labels(browser) == menu
        assert f"{role}@shop.example" in browser.text(".who")
        browser.click(".who button")
        browser.wait(lambda: "/login" in browser.url, "the sign-in page after signing out")
        assert "Вы вышли из системы" in browser.text()
        browser.open(live + "/")
        assert "/login" in browser.url


def test_dashboard_draws_the_lifecycle_chart(live: str, browser: Browser) -> None:
    sign_in(browser, live, "viewer")
    assert browser.text("#base-size") == "4"
    rendered = browser.wait(lambda: browser.find("#lifecycle-chart").get_attribute("data-rendered"),
                            "Chart.js to draw the lifecycle chart")
    assert rendered == "6"
    assert "bitrix24" in browser.text("#syncs") and "amocrm" in browser.text("#syncs")


def test_find_a_contact_by_a_phone_typed_differently(live: str, browser: Browser, admin_env: AdminEnv) -> None:
    sign_in(browser, live, "viewer", "/contacts/")
    browser.fill("#q", "+7 916 1234567")  # stored from "8 (916) 123-45-67"
    browser.click("form.search button")
    browser.wait_text("h2", "1 контакт по запросу")
    browser.click("#results tbody a")
    browser.wait(lambda: "/contacts/" in browser.url and browser.exists("#identities"), "the contact card")
    identities = browser.text("#identities")
    assert "+7 916 123-45-67" in identities and "8 (916) 123-45-67" in identities and "Битрикс24" in identities
    assert browser.find("#identities a[href^='tel:']").get_attribute("href") == "tel:+79161234567"
    assert "paper form" in browser.text("#consent-history")
    assert "Зимняя куртка" in browser.text("#orders")


def test_merge_suggested_duplicates(live: str, browser: Browser, admin_env: AdminEnv) -> None:
    sign_in(browser, live, "marketer", "/contacts/duplicates")
    assert "тот же город" in browser.text()
    browser.click("button.merge")
    browser.accept_confirm()
    browser.wait(lambda: browser.exists("#merges"), "the survivor's card")
    assert f"Контакт #{admin_env.ids['petrov_2']} объединён с #{admin_env.ids['petrov_1']}" in browser.text(".flash")
    assert "объединено вручную" in browser.text("#merges")
    assert "+7 495 222-33-44" in browser.text("#identities")


def test_a_segment_with_a_typo_shows_the_error_as_you_type(live: str, browser: Browser) -> None:
    sign_in(browser, live, "marketer", "/segments/new")
    browser.wait(lambda: browser.find("#check-result").get_attribute("data-state") == "ok",
                 "the starting example to check")
    area = browser.find("#document")
    area.clear()
    browser.type("#document", "name: tula\ntitle: Из Тулы\nrule: {field: contact.cty, op: eq, value: Тула}\n")
    problems = browser.wait_text("#check-result .problems", "может быть, 'contact.city'")
    assert "rule.field" in problems
    area.clear()
    browser.type("#document", "name: tula\ntitle: Из Тулы\nrule: {field: contact.city, op: eq, value: Тула}\n")
    assert "2 контакта подходят сейчас" in browser.wait_text("#live-count", "2 контакта")
    browser.click("#segment-form button[type=submit]")
    browser.wait_text(".flash", "Сегмент tula сохранён")
    assert browser.url.endswith("/segments/tula")
    browser.fill("input[name=contact]", "1")
    browser.click("section form.row button")
    browser.wait(lambda: browser.exists("#explain-tree"), "the explanation")
    assert "contact.city равно Тула" in browser.text("#explain-tree")


def test_preview_a_template_for_a_chosen_contact(live: str, browser: Browser, admin_env: AdminEnv) -> None:
    sign_in(browser, live, "marketer", "/templates/reactivation_email")
    assert "образца контакта" in browser.text("#preview-for")
    browser.fill("#preview-contact", str(admin_env.ids["anna"]))
    browser.click("#preview-button")
    browser.wait_text("#preview-for", f"контакта №{admin_env.ids['anna']}")
    assert "Здравствуйте, Анна!" in browser.text("#preview-text")
    assert "Анна" in browser.text("#preview-subject")
    browser.driver.switch_to.frame(browser.find("#preview-html"))
    try:
        assert "Анна" in browser.text("body")
    finally:
        browser.driver.switch_to.default_content()
    browser.type("#text", "{{ contact.frist_name }}")
    assert "frist_name" in browser.wait_text("#preview-error", "frist_name")
    # A name that is markup shows as text, in the text part and in the HTML frame.
    browser.fill("#preview-contact", str(admin_env.ids["markup"]))
    browser.find("#text").clear()
    browser.type("#text", "Привет, {{ contact.first_name }}!")
    browser.wait_text("#preview-text", "Привет, <script>alert(1)</script>!")


def test_workflow_dry_run_and_switching_on(live: str, browser: Browser) -> None:
    sign_in(browser, live, "marketer", "/workflows/")
    browser.click("#workflows a[href='/workflows/reactivation_90d']")
    browser.wait(lambda: browser.exists("#forecast-form"), "the workflow's page")
    rendered = browser.wait(lambda: browser.find("#funnel-chart").get_attribute("data-rendered"),
                            "Chart.js to draw the funnel")
    assert rendered == str(len(browser.find_all("#steps tbody tr")))  # one bar per step
    assert browser.find("#uplift-chart").get_attribute("data-rendered") == "2"
    browser.fill("#forecast-form input[name=days]", "7")
    browser.click("#forecast-form button")
    browser.wait(lambda: browser.exists("#forecast-summary"), "the forecast")
    assert "Ничего не записано и ничего не отправлено" in browser.text()
    summary = browser.text("#forecast-summary")
    assert "Было бы запущено" in summary and "Контрольная группа" in summary
    browser.open(live + "/workflows/")
    row = next(r for r in browser.find_all("#workflows tbody tr") if "reactivation_90d" in r.text)
    row.find_element("css selector", "a.toggle").click()  # switching on asks first, with the forecast's numbers
    browser.wait(lambda: browser.exists("#enable-form"), "the confirmation page")
    browser.click("#enable-confirm")
    assert "«Вернуть клиентов, которые не покупали 90 дней» включён" in browser.wait_text(".flash", "включён")


def test_connect_both_crms_and_sync(live: str, browser: Browser, admin_env: AdminEnv) -> None:
    from plugins.amocrm.sandbox import Account, SandboxServer as AmoServer
    from plugins.bitrix24.sandbox import Portal, SandboxServer as PortalServer

    sign_in(browser, live, "admin", "/connections/")
    browser.click("#source-bitrix24 a.source-page")  # each source's own page: its status and connect form
    browser.wait(lambda: browser.url == live + "/connections/bitrix24", "the Bitrix24 page")
    with PortalServer(Portal(contacts=4, seed=2)) as portal:
        browser.fill("#bitrix24-form input[name=webhook]", portal.webhook_url)
        browser.click("#bitrix24-form button")
        assert "Подключено к Битрикс24" in browser.wait_text(".flash", "Подключено к Битрикс24")
        assert portal.webhook_url.rstrip("/").rpartition("/")[2] not in browser.text()
        browser.click("#source-bitrix24 .sync-form button")
        browser.wait_text(".flash", "Синхронизация Битрикс24 запущена")
        queue.drain(timeout=120)
    browser.open(live + "/connections/")
    runs = browser.text("#source-bitrix24 .runs")
    assert "успешно" in runs and "новых: 4" in runs, runs

    callback = live + "/connections/amocrm/callback"
    browser.open(live + "/connections/amocrm")
    assert browser.text("#amocrm-redirect-uri") == callback
    with AmoServer(Account(contacts=3, seed=4, redirect_uri=callback)) as amo:
        browser.fill("#amocrm-form input[name=base_url]", amo.base_url)
        browser.fill("#amocrm-form input[name=client_id]", amo.client_id)
        browser.fill("#amocrm-form input[name=client_secret]", amo.client_secret)
        browser.click("#amocrm-form button")
        browser.wait(lambda: browser.exists("#amocrm-continue"), "the link to amoCRM's consent page")
        browser.click("#amocrm-continue")
        # The account's consent page sends the browser back with a code.
        browser.wait(lambda: browser.url == live + "/connections/amocrm" and browser.exists(".flash"),
                     "the way back from amoCRM's consent page")
        flash = browser.text(".flash")
        assert "Подключено к аккаунту amoCRM" in flash and "обновляются автоматически" in flash, flash
        assert amo.client_secret not in browser.text()
        browser.click("#source-amocrm .sync-form button")
        browser.wait_text(".flash", "Синхронизация amoCRM запущена")
        queue.drain(timeout=120)
        browser.open(live + "/connections/")
        assert "новых: 3" in browser.text("#source-amocrm .runs")
    browser.open(live + "/users/audit")
    assert browser.text("#audit").count("подключён источник") == 2


def test_a_viewer_can_change_nothing(live: str, browser: Browser, admin_env: AdminEnv) -> None:
    sign_in(browser, live, "viewer", "/segments/new")
    assert "Нет доступа" in browser.text("h1")
    browser.open(live + "/segments/dormant_90d")
    assert browser.find("#document").get_attribute("readonly") is not None
    assert not browser.exists("#segment-form button[type=submit]")
    browser.open(live + "/templates/reactivation_email")
    assert browser.find("#text").get_attribute("readonly") is not None
    assert not browser.exists("#template-form button[type=submit]")
    browser.open(live + "/connections/")
    assert not browser.exists(".sync-form")
    browser.open(live + "/connections/bitrix24")
    assert "Не подключено" in browser.text("#source-bitrix24") and not browser.exists("#bitrix24-form")
    browser.open(live + "/contacts/duplicates")
    assert not browser.exists("button.merge")
    # Posting anyway, with a valid token, is refused by the server.
    browser.script("""
        const form = document.createElement('form');
        form.method = 'post'; form.action = '/contacts/merge';
        for (const [k, v] of [['csrf_token', document.querySelector('meta[name=csrf-token]').content],
                              ['survivor', arguments[0]], ['other', arguments[1]]]) {
            const input = document.createElement('input'); input.name = k; input.value = v; form.appendChild(input);
        }
        document.body.appendChild(form); form.submit();""", admin_env.ids["petrov_1"], admin_env.ids["petrov_2"])
    browser.wait_text("h1", "Нет доступа")
    assert "Ваша роль этого не позволяет" in browser.text("#error-message")


def test_a_form_without_its_csrf_token_is_refused(live: str, browser: Browser, admin_env: AdminEnv) -> None:
    sign_in(browser, live, "marketer", "/contacts/duplicates")
    browser.script("document.querySelectorAll('form input[name=csrf_token]').forEach(i => i.remove())")
    browser.click("button.merge")
    browser.accept_confirm()
    browser.wait_text("h1", "Форма не принята")
    assert "токен безопасности отсутствует" in browser.text("#error-message")
    browser.open(live + f"/contacts/{admin_env.ids['petrov_1']}")
    assert "С этим контактом ничего не объединяли" in browser.text("#merges")


def test_export_and_erase_a_person(live: str, browser: Browser, admin_env: AdminEnv) -> None:
    import json

    anna = admin_env.ids["anna"]
    sign_in(browser, live, "admin", "/gdpr/")
    browser.fill("#gdpr-person input[name=contact]", str(anna))
    browser.click("#gdpr-person button")
    browser.wait(lambda: browser.exists("#export-form"), "the person's GDPR page")
    browser.click("#export-form button")
    exported = json.loads(browser.downloaded(f"contact-{anna}-export.json").read_text(encoding="utf-8"))
    assert "+79161234567" in json.dumps(exported, ensure_ascii=False)
    browser.fill("#erase-form input[name=confirm]", "erase")
    browser.click("#erase-form button")
    assert "введите ERASE заглавными буквами" in browser.wait_text(".flash", "Не удалено")
    browser.fill("#erase-form input[name=confirm]", "ERASE")
    browser.click("#erase-form button")
    assert f"Контакт №{anna} удалён" in browser.wait_text(".flash", "удалён")
    assert browser.exists("#erased") and not browser.exists("#erase-form")
    browser.open(live + "/contacts/?q=8 916 123-45-67")
    assert "Никого не нашлось" in browser.text("#results")


@pytest.mark.parametrize("path", ["/", "/contacts/?q=Петров", "/segments/", "/templates/reactivation_email",
                                  "/connections/", "/connections/bitrix24", "/gdpr/"])
def test_pages_fit_a_phone_screen(live: str, browser: Browser, path: str, admin_env: AdminEnv) -> None:
    sign_in(browser, live, "admin")
    browser.driver.set_window_size(390, 844)
    browser.open(live + path)
    overflow = browser.script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{path} is {overflow}px wider than a phone screen"
