"""The admin's Webhooks page: admins only, the secret shown once, switching back on, the deliveries log, notices."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select, update

from hub import queue
from hub.db import utcnow
from hub.models import AuditEntry, Webhook, WebhookDelivery
from hub.webhooks import deliver, publish, store
from tests.browser import Browser
from tests.support.admin import AdminEnv, client_as, csrf_token, plain, text
from tests.support.admin_browser import sign_in
from tests.test_admin_language import choose

webhooks_t = Webhook.__table__


def add(client: Any, url: str, events: list[str], token_from: str = "/webhooks/") -> Any:
    return client.post("/webhooks/", data={"csrf_token": csrf_token(client, token_from), "url": url,
                                           "events": events})


def allow_private(env: AdminEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """Let webhooks point at 127.0.0.1, where these tests' receivers listen (docs/webhooks.md)."""
    env.settings = replace(env.settings, extra={**env.settings.extra, "webhooks_allow_private": True})
    env.app.config["HUB_SETTINGS"] = env.settings
    monkeypatch.setenv("HUB_WEBHOOKS_ALLOW_PRIVATE", "1")


def hooks(env: AdminEnv) -> list[Any]:
    with env.engine.connect() as conn:
        return list(conn.execute(select(webhooks_t).order_by(webhooks_t.c.id)))


@pytest.mark.parametrize("role", ["viewer", "marketer"])
def test_only_admins_see_and_use_the_page(admin_env: AdminEnv, role: str) -> None:
    client = client_as(admin_env, role)
    assert client.get("/webhooks/").status_code == 403
    assert 'href="/webhooks/"' not in text(client.get("/"))
    refused = client.post("/webhooks/", data={"csrf_token": csrf_token(client, "/"), "url": "https://a.example/h",
                                              "events": ["message.sent"]})
    assert refused.status_code == 403 and hooks(admin_env) == []
    assert client_as(admin_env, None).get("/webhooks/").status_code in (302, 401)
    assert 'href="/webhooks/"' in text(client_as(admin_env, "admin").get("/"))


def test_an_admin_adds_a_webhook_and_sees_its_secret_once(admin_env: AdminEnv) -> None:
    admin = client_as(admin_env, "admin")
    page = add(admin, "https://shop.example/hooks/8f14e45fceea167a?token=topsecret", ["segment.entered",
                                                                                       "promo.redeemed"])
    assert page.status_code == 200
    secret = re.search(r'<code id="secret">(whsec_[^<]+)</code>', text(page))
    assert secret is not None and "Вебхук 1 добавлен" in plain(page)
    with admin_env.engine.connect() as conn:
        assert store.secret_of(conn, 1, admin_env.settings.require_secret_key()) == secret.group(1)
        audit = conn.execute(select(AuditEntry.__table__).where(AuditEntry.__table__.c.action == "webhook_added")).one()
    assert "topsecret" not in str(audit.details) and secret.group(1) not in str(audit.details)
    again = text(admin.get("/webhooks/"))
    assert secret.group(1) not in again and "topsecret" not in again
    assert "https://shop.example/hooks/***?token=***" in again and "segment.entered, promo.redeemed" in again
    assert hooks(admin_env)[0].events == ["segment.entered", "promo.redeemed"]


@pytest.mark.parametrize("url, events, words", [
    ("ftp://shop.example/x", ["message.sent"], "http:// или https://"),
    ("https://shop.example/x", ["message.sent", "no.such"], "no.such"),
    ("https://shop.example/x", [], "выберите хотя бы одно событие"),
    ("https://" + "a" * 3000 + ".example/", ["message.sent"], "слишком длинный"),
    ("http://169.254.169.254/latest/meta-data", ["message.sent"], "никогда"),
    ("http://127.0.0.1:6379/", ["message.sent"], "webhooks_allow_private"),
    ("http://localhost:6379/", ["message.sent"], "webhooks_allow_private"),
])
def test_a_bad_webhook_is_refused_with_the_reason(admin_env: AdminEnv, url: str, events: list[str],
                                                  words: str) -> None:
    refused = add(client_as(admin_env, "admin"), url, events)
    assert refused.status_code == 422 and words in plain(refused)
    assert hooks(admin_env) == []


def test_a_post_without_the_csrf_token_is_refused(admin_env: AdminEnv) -> None:
    admin = client_as(admin_env, "admin")
    forged = admin.post("/webhooks/", data={"url": "https://a.example/h", "events": ["message.sent"],
                                            "csrf_token": "forged"})
    assert forged.status_code == 400 and hooks(admin_env) == []


def test_english_on_request(admin_env: AdminEnv) -> None:
    admin = client_as(admin_env, "admin")
    assert "Добавить вебхук" in plain(admin.get("/webhooks/"))
    choose(admin, "en", "/webhooks/")
    page = plain(admin.get("/webhooks/"))
    assert "Add a webhook" in page and "Receiver's URL" in page and "Добавить" not in page


def test_a_switched_off_webhook_shows_a_notice_and_can_be_switched_on(admin_env: AdminEnv) -> None:
    admin = client_as(admin_env, "admin")
    add(admin, "https://shop.example/hooks/x", ["message.sent"])
    with admin_env.engine.begin() as conn:
        conn.execute(update(webhooks_t).values(enabled=False, disabled_at=utcnow(), failing_since=utcnow(),
                                               disabled_reason=deliver.SWITCHED_OFF))
    page = plain(admin.get("/webhooks/"))
    assert "выключен" in page and "не удалась ни одна доставка" in page
    dashboard = plain(client_as(admin_env, "viewer").get("/"))
    assert "Вебхук 1 (https://shop.example/hooks/x) выключен" in dashboard
    status = client_as(admin_env, "viewer").get("/status.json").get_json()
    assert status["webhooks_switched_off"] == [1]
    done = admin.post("/webhooks/1/enable", data={"csrf_token": csrf_token(admin, "/webhooks/")})
    assert done.status_code == 302
    assert hooks(admin_env)[0].enabled and hooks(admin_env)[0].failing_since is None
    assert "выключен" not in plain(client_as(admin_env, "viewer").get("/")).split("<h1>")[1][:400]


def test_the_deliveries_log_shows_each_attempt(admin_env: AdminEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    allow_private(admin_env, monkeypatch)
    admin = client_as(admin_env, "admin")
    add(admin, "http://127.0.0.1:9/nowhere?token=topsecret", ["message.sent"])
    with admin_env.engine.begin() as conn:
        publish(conn, "message.sent", {"message_id": 3})
    queue.drain(timeout=60)
    page = plain(admin.get("/webhooks/1/deliveries"))
    assert "message.sent" in page and "не удалось соединиться" in page and "ждёт отправки" in page
    assert "topsecret" not in page
    assert admin.get("/webhooks/2/deliveries").status_code == 404
    assert client_as(admin_env, "marketer").get("/webhooks/1/deliveries").status_code == 403


def test_an_admin_removes_a_webhook_with_its_deliveries(admin_env: AdminEnv) -> None:
    admin = client_as(admin_env, "admin")
    add(admin, "https://shop.example/hooks/x", ["message.sent"])
    with admin_env.engine.begin() as conn:
        conn.execute(WebhookDelivery.__table__.insert().values(
            uid="evt_x", webhook_id=1, event="message.sent", payload={}, status="failed", attempts=1,
            next_attempt_at=utcnow(), created_at=utcnow()))
    assert admin.post("/webhooks/1/remove", data={"csrf_token": csrf_token(admin, "/webhooks/")}).status_code == 302
    assert hooks(admin_env) == []
    with admin_env.engine.connect() as conn:
        assert conn.execute(select(WebhookDelivery.__table__)).all() == []
    assert admin.post("/webhooks/1/remove", data={"csrf_token": csrf_token(admin, "/webhooks/")}).status_code == 404


def test_in_chromium_an_admin_adds_a_webhook_and_reads_its_deliveries(live: str, browser: Browser,
                                                                      admin_env: AdminEnv,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_webhooks import Receiver

    allow_private(admin_env, monkeypatch)
    with Receiver() as receiver:
        sign_in(browser, live, "admin", "/webhooks/")
        browser.fill("#add-webhook input[name=url]", receiver.url)
        browser.click("#add-webhook input[value='message.sent']")
        browser.click("#add-webhook button[type=submit]")
        receiver.secret = browser.wait_text("#secret", "whsec_")
        assert "abc123secret" not in browser.text("#webhooks")
        with admin_env.engine.begin() as conn:
            publish(conn, "message.sent", {"message_id": 1})
        queue.drain(timeout=60)
        assert len(receiver.got) == 1 and receiver.got[0]["valid"]
        browser.open(live + "/webhooks/")
        assert receiver.secret not in browser.text()
        browser.click("#webhooks a[href$='/deliveries']")
        browser.wait_text("#deliveries", "доставлено")
        assert "HTTP 200" in browser.text("#deliveries")


def test_the_dashboards_notice_reads_the_webhooks_alone(admin_env: AdminEnv) -> None:
    """The notice is on every dashboard load: it never counts the deliveries, however many are kept."""
    from sqlalchemy import event as sa_event

    admin = client_as(admin_env, "admin")
    add(admin, "https://shop.example/hooks/x", ["message.sent"])
    with admin_env.engine.begin() as conn:
        conn.execute(update(webhooks_t).values(enabled=False, disabled_at=utcnow(), failing_since=utcnow(),
                                               disabled_reason=deliver.SWITCHED_OFF))
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa_event.listen(admin_env.engine, "before_cursor_execute", seen)
    try:
        page = plain(client_as(admin_env, "viewer").get("/"))
    finally:
        sa_event.remove(admin_env.engine, "before_cursor_execute", seen)
    assert "Вебхук 1 (https://shop.example/hooks/x) выключен" in page
    assert not [s for s in statements if "webhook_deliveries" in s or "webhook_attempts" in s]
