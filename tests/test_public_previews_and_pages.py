"""Previews never carry a person's signed link; the public pages stay Russian and the logs stay clean.

Previews are read by staff, so a real link in one would let staff act as the
customer. Public paths a customer can mistype or overfill answer with the
customer's Russian page, not the admin's English one. Refused requests are
logged without the client's address or anything the sender typed.
"""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import urlsplit

from typing import Any

import pytest
from click.testing import CliRunner

import plugins.mailing
from hub import links, message_templates, sync
from hub.records import ContactRecord
from tests.conftest import HubDB
from tests.support.cli import cli
from tests.support.admin import AdminEnv, client_as, csrf_token

LINK_TEXT = "{{ unsubscribe_url }} {{ preferences_url }} {{ confirm_url }}"
READERS = {"u": links.read_unsubscribe, "preferences": links.read_preferences, "confirm": links.read_confirm}


def tokens_in(rendered: str) -> list[tuple[str, str]]:
    found = re.findall(r"/(u|preferences|confirm)/([^\s\"'<>]+)", rendered)
    assert len(found) == 3, rendered
    return found


def assert_no_working_token(env: AdminEnv, rendered: str) -> None:
    for kind, token in tokens_in(rendered):
        with pytest.raises(links.LinkError):
            READERS[kind](env.settings, token)


def test_an_admin_preview_for_a_contact_has_no_signed_links(admin_env: AdminEnv) -> None:
    marketer = client_as(admin_env, "marketer")
    token = csrf_token(marketer, "/templates/new")
    anna = admin_env.ids["anna"]
    for channel, extra in (("email", {"subject": "Привет", "html": f"<p>{LINK_TEXT}</p>"}), ("sms", {})):
        out = marketer.post("/templates/preview", data={
            "csrf_token": token, "name": "links", "channel": channel,
            "text": f"{{{{ contact.first_name }}}} {LINK_TEXT}",
            "contact": anna, **extra}).get_json()
        assert out["text"].startswith("Анна "), out
        assert_no_working_token(admin_env, out["text"])
        if out.get("html"):
            assert_no_working_token(admin_env, out["html"])
    page = marketer.get("/templates/double_opt_in_email", query_string={"contact": anna}).get_data(as_text=True)
    assert "/confirm/preview" in page
    for kind, token in re.findall(r"/(u|preferences|confirm)/([A-Za-z0-9_.\-]+)", page):
        with pytest.raises(links.LinkError):
            READERS[kind](admin_env.settings, token)


def test_a_cli_preview_for_a_contact_has_no_signed_links(hub_db: HubDB, plugin_manager: Any) -> None:
    plugin_manager.register(plugins.mailing, name="mailing")
    plugin_manager.hook.register_commands(cli=cli)
    with hub_db.engine.begin() as conn:
        cid = sync.write_contacts(conn, [ContactRecord(source="t", first_name="Ольга", emails=["olga@example.ru"])],
                                  hub_db.settings, sync.Counts()).contact_ids[0]
        message_templates.save(conn, hub_db.settings,
                               message_templates.Template(name="links_sms", channel="sms", text=LINK_TEXT))
    out = CliRunner().invoke(cli, ["templates", "preview", "links_sms", "--contact", str(cid), "--json"])
    assert out.exit_code == 0, out.output
    for kind, token in tokens_in(json.loads(out.output)["text"]):
        with pytest.raises(links.LinkError):
            READERS[kind](hub_db.settings, token)


def test_a_preview_link_opens_a_page_that_says_so(admin_env: AdminEnv) -> None:
    client = admin_env.app.test_client()
    for path in ("/u/preview", "/preferences/preview", "/confirm/preview"):
        page = client.get(path)
        assert page.status_code == 200
        assert "предпросмотр" in page.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/u/", "/u/TOKEN/", "/u/a/b", "/preferences/", "/preferences/x/",
                                  "/confirm/", "/confirm/x/y", "/consent/", "/consent/form/"])
def test_a_mangled_public_link_gets_the_russian_page(admin_env: AdminEnv, path: str) -> None:
    client = admin_env.app.test_client()
    for answer in (client.get(path), client.post(path)):
        body = answer.get_data(as_text=True)
        assert answer.status_code == 404
        assert "Ссылка не работает" in body and "Back to the dashboard" not in body and "Not found" not in body


def test_the_admin_keeps_its_own_404(admin_env: AdminEnv) -> None:
    answer = client_as(admin_env, "viewer").get("/no-such-page")
    assert answer.status_code == 404 and "Ссылка не работает" not in answer.get_data(as_text=True)


@pytest.mark.parametrize("page", ["consent", "u", "preferences", "confirm"])
def test_an_oversized_form_gets_the_russian_page(admin_env: AdminEnv, page: str) -> None:
    anna, settings = admin_env.ids["anna"], admin_env.settings
    url = {"consent": "/consent/form", "u": links.unsubscribe_url(settings, anna),
           "preferences": links.preferences_url(settings, anna), "confirm": links.confirm_url(settings, anna)}[page]
    path = urlsplit(url).path
    big = "x" * (admin_env.app.config["MAX_CONTENT_LENGTH"] + 1)
    answer = admin_env.app.test_client().post(path, data={"email": big})
    body = answer.get_data(as_text=True)
    assert answer.status_code == 413
    assert "Форма слишком большая" in body and "Request Entity Too Large" not in body


def test_a_refused_signup_logs_only_the_site(admin_env: AdminEnv, caplog: pytest.LogCaptureFixture) -> None:
    client = admin_env.app.test_client()
    with caplog.at_level(logging.WARNING, logger="plugins.gdpr.routes"):
        for origin, shown in (("https://anna.petrova@mail.ru", "https://mail.ru"),
                              ("https://anna:secret@shop.example:8443/path?email=anna@example.ru",
                               "https://shop.example:8443")):
            caplog.clear()
            answer = client.post("/consent/form", data={"email": "anna@example.ru", "topics": "email/marketing"},
                                 headers={"Origin": origin}, environ_base={"REMOTE_ADDR": "203.0.113.9"})
            assert answer.status_code == 403
            logged = caplog.text
            assert f"posted from {shown}," in logged
            assert "anna" not in logged and "secret" not in logged and "203.0.113.9" not in logged


def test_a_wrong_api_key_is_logged_without_the_address(admin_env: AdminEnv, caplog: pytest.LogCaptureFixture) -> None:
    from dataclasses import replace

    admin_env.app.config["HUB_SETTINGS"] = replace(
        admin_env.settings, extra={**admin_env.settings.extra, "gdpr": {"api_key": "k" * 32}})
    with caplog.at_level(logging.WARNING):
        answer = admin_env.app.test_client().post("/api/consent", json={"email": "anna@example.ru"},
                                                  headers={"Authorization": "Bearer wrong"},
                                                  environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert answer.status_code == 401
    assert "wrong key" in caplog.text and "203.0.113.9" not in caplog.text


def test_refused_crm_webhooks_are_logged_without_the_address(admin_env: AdminEnv,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    from plugins.amocrm import tokens
    from plugins.bitrix24 import connection

    connection.save(admin_env.engine, admin_env.settings, {"kind": "webhook", "url": "https://shop.bitrix24.ru/rest/1/c0de/",
                                                           "application_token": "app-token-42"})
    tokens.save(admin_env.engine, admin_env.settings, {**tokens.long_lived_connection("https://shop.amocrm.ru", "llt"),
                                                       "webhook_secret": "s3cret-path-token"})
    client = admin_env.app.test_client()
    with caplog.at_level(logging.WARNING):
        refused = client.post("/hooks/amocrm/wrong-secret", data={}, environ_base={"REMOTE_ADDR": "203.0.113.9"})
        assert refused.status_code == 404 and "wrong secret" in caplog.text
        refused = client.post("/hooks/bitrix24", data={"event": "ONCRMCONTACTADD", "auth[application_token]": "x",
                                                       "auth[domain]": "anna.petrova@mail.ru"},
                              environ_base={"REMOTE_ADDR": "203.0.113.9"})
        assert refused.status_code == 401 and "an unknown portal" in caplog.text
        client.post("/hooks/bitrix24", data={"event": "ONCRMCONTACTADD", "auth[application_token]": "x",
                                             "auth[domain]": "shop.bitrix24.ru"})
        assert "from shop.bitrix24.ru refused" in caplog.text
    assert "203.0.113.9" not in caplog.text and "anna" not in caplog.text
