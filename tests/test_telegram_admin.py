"""The «Telegram» admin page and the Telegram part of a contact's card, in Russian and English, read-only."""

from __future__ import annotations

from dataclasses import replace
from typing import Iterator

import pytest

from hub import plugins, queue, users
from hub.admin import create_app
from hub.db import utcnow
from plugins.telegram import linking, payload
from plugins.telegram.sandbox import TOKEN, Sandbox
from tests.browser import Browser, LiveServer
from tests.support.admin import ADMIN_PLUGINS, AdminEnv, admin_env, client_as, plain, post, sign_in  # noqa: F401
from tests.support.admin_browser import sign_in as sign_in_browser


@pytest.fixture
def tg_admin(admin_env: AdminEnv) -> Iterator[AdminEnv]:  # noqa: F811
    with Sandbox() as sandbox:
        extra = {**admin_env.settings.extra, "telegram_bot_token": TOKEN, "telegram_api_url": sandbox.url}
        settings = replace(admin_env.settings, plugins=(*ADMIN_PLUGINS, "telegram"), extra=extra)
        plugins.use(plugins.build(settings))
        yield replace(admin_env, settings=settings, app=create_app(settings))


def test_a_viewer_reads_the_page_in_russian_and_english(tg_admin: AdminEnv) -> None:
    anna = tg_admin.ids["anna"]
    with tg_admin.engine.begin() as conn:
        linking.link_chat(conn, anna, 1001, user_id=1001, username="anna_t", update_id=None, now=utcnow())
    viewer = client_as(tg_admin, "viewer")
    page = plain(viewer.get("/telegram/"))
    assert "Бот <strong>@hub_shop_bot</strong> подключён." in page and "Подключённых чатов: 1" in page
    assert "сообщения боту читаются по расписанию" in page and TOKEN not in page
    card = plain(viewer.get(f"/contacts/{anna}"))
    assert "Чат подключён: @anna_t" in card and "https://t.me/hub_shop_bot?start=" in card
    shown = card.split("https://t.me/hub_shop_bot?start=", 1)[1].split("<", 1)[0]
    assert payload.read(tg_admin.settings, shown, max_days=1) == anna
    other = plain(viewer.get(f"/contacts/{tg_admin.ids['markup']}"))
    assert "Чат не подключён." in other
    with tg_admin.engine.begin() as conn:
        english = users.set_language(conn, tg_admin.users["viewer"].id, "en")
    page = plain(sign_in(tg_admin.app.test_client(), english).get("/telegram/"))
    assert "Bot <strong>@hub_shop_bot</strong> is connected." in page and "Linked chats: 1" in page


def test_the_page_changes_nothing(tg_admin: AdminEnv) -> None:
    for role in ("viewer", "admin"):
        client = client_as(tg_admin, role)
        page = plain(client.get("/telegram/"))
        assert "<form" not in page.split("<main", 1)[-1].split("</main>", 1)[0]
        refused = post(client, "/telegram/", {"anything": "1"})
        assert refused.status_code in (403, 405) and "Traceback" not in plain(refused)


def test_a_bot_that_does_not_answer_is_said_so(tg_admin: AdminEnv) -> None:
    extra = {**tg_admin.settings.extra, "telegram_api_url": "http://127.0.0.1:9", "telegram_timeout": "2"}
    settings = replace(tg_admin.settings, extra=extra)
    env = replace(tg_admin, settings=settings, app=create_app(settings))
    page = plain(client_as(env, "viewer").get("/telegram/"))
    assert "Бот не отвечает: Telegram could not be reached (ConnectionError)" in page
    unset = replace(settings, extra={k: v for k, v in extra.items() if not k.startswith("telegram_")})
    env = replace(tg_admin, settings=unset, app=create_app(unset))
    page = plain(client_as(env, "viewer").get("/telegram/"))
    assert "Бот не настроен." in page


def test_a_name_with_markup_is_shown_as_text_on_the_card(tg_admin: AdminEnv) -> None:
    anna = tg_admin.ids["anna"]
    with tg_admin.engine.begin() as conn:
        linking.link_chat(conn, anna, 1001, user_id=1001, username="<img src=x onerror=alert(1)>", update_id=None,
                          now=utcnow())
    page = client_as(tg_admin, "viewer").get(f"/contacts/{anna}").get_data(as_text=True)
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_a_viewer_finds_the_page_in_the_menu_in_chromium(tg_admin: AdminEnv, browser: Browser) -> None:
    anna = tg_admin.ids["anna"]
    with tg_admin.engine.begin() as conn:
        linking.link_chat(conn, anna, 1001, user_id=1001, username="anna_t", update_id=None, now=utcnow())
    with LiveServer(tg_admin.app) as server:
        browser.open(server.url + "/healthz")
        sign_in_browser(browser, server.url, "viewer", "/")
        browser.click("nav a[href='/telegram/']")
        browser.wait_text("#telegram-chats", "Подключённых чатов: 1")
        assert "подключён" in browser.text("#telegram-bot")
        browser.open(f"{server.url}/contacts/{anna}")
        browser.wait_text("#telegram-contact", "Чат подключён: @anna_t")
        assert browser.text("#telegram-link").startswith("https://t.me/hub_shop_bot?start=")
        assert not browser.exists("#telegram-contact form") and not browser.exists("#telegram-bot form")
    queue.drain(timeout=120)


def test_the_preference_centre_offers_telegram_until_the_chat_is_linked(tg_admin: AdminEnv) -> None:
    # hook:preference_links
    from hub import links

    anna = tg_admin.ids["anna"]
    client = tg_admin.app.test_client()
    url = links.preferences_url(tg_admin.settings, anna).split("://", 1)[1].split("/", 1)[1]
    page = plain(client.get("/" + url))
    assert "Подключить Telegram" in page and "https://t.me/hub_shop_bot?start=" in page
    shown = page.split("https://t.me/hub_shop_bot?start=", 1)[1].split('"', 1)[0]
    assert payload.read(tg_admin.settings, shown, max_days=1) == anna
    with tg_admin.engine.begin() as conn:
        linking.link_chat(conn, anna, 1001, user_id=1001, username=None, update_id=None, now=utcnow())
    assert "Подключить Telegram" not in plain(client.get("/" + url))
    unset = replace(tg_admin.settings, extra={k: v for k, v in tg_admin.settings.extra.items()
                                              if not k.startswith("telegram_")})
    page = plain(create_app(unset).test_client().get("/" + url))
    assert "Подключить Telegram" not in page and "Настройки рассылок" in page
