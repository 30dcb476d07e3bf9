"""The admin's Bitrix24 and amoCRM pages speak the reader's language: Russian by default, English when chosen.

Labels, hints, form errors and flash messages come from the plugins' own
catalogs; a time on the page is local and says its zone.
"""

from __future__ import annotations

import re
from dataclasses import replace

from hub.admin import create_app
from plugins.amocrm import tokens
from tests.support.admin import AdminEnv, admin_env, client_as, post, sign_in, text

__all__ = ["admin_env"]  # the fixture, used by name


def test_the_bitrix24_page_and_its_form_errors_are_in_russian(admin_env: AdminEnv) -> None:
    admin = client_as(admin_env, "admin")
    page = text(admin.get("/connections/bitrix24"))
    assert "<h1>Битрикс24</h1>" in page and "Не подключено." in page
    assert "Адрес входящего вебхука" in page and "Разработчикам → Другое → Входящий вебхук" in page
    empty = post(admin, "/connections/bitrix24", {"webhook": ""}, follow_redirects=True)
    assert "Битрикс24: Вставьте адрес вебхука из Битрикс24." in text(empty)
    not_a_url = post(admin, "/connections/bitrix24", {"webhook": "портал"}, follow_redirects=True)
    assert "Битрикс24: Это не адрес." in text(not_a_url)


def test_the_amocrm_page_shows_the_token_expiry_locally_with_its_zone(admin_env: AdminEnv) -> None:
    data = tokens.oauth_connection("http://127.0.0.1:9", "id", "secret", "http://localhost/cb",
                                   access_token="a", refresh_token="r")
    tokens.save(admin_env.engine, admin_env.settings, data)
    page = text(client_as(admin_env, "viewer").get("/connections/amocrm"))
    assert "способ: OAuth (обновляется автоматически)." in page
    assert re.search(r"Токен обновления действует до \d\d\.\d\d\.\d{4} \d\d:\d\d \S+\. Адрес вебхука:", page), page


def test_the_pages_are_in_english_when_chosen(admin_env: AdminEnv) -> None:
    app = create_app(replace(admin_env.settings, language="en"))
    admin = sign_in(app.test_client(), admin_env.users["admin"])
    page = text(admin.get("/connections/bitrix24"))
    assert "Not connected." in page and "Incoming webhook URL" in page and "Connect Bitrix24" in page
    empty = post(admin, "/connections/bitrix24", {"webhook": ""}, follow_redirects=True)
    assert "Bitrix24: Paste the webhook URL from Bitrix24." in text(empty)
    amocrm = text(admin.get("/connections/amocrm"))
    assert "Connect amoCRM" in amocrm and "Integration ID" in amocrm and "Settings → Integrations" in amocrm
    declined = admin.get("/connections/amocrm/callback?error=access_denied", follow_redirects=True)
    assert "amoCRM did not grant access (the request was declined). Nothing was stored." in text(declined)
