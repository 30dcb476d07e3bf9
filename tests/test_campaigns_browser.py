"""A marketer's one-off campaign in headless Chromium, from the empty form to the letter at a real SMTP server.

The marketer builds the campaign on a seeded segment, reads the preview's
numbers, sees the letter in its sandboxed frame with its own inline styles
applied, sends a test to themself (it arrives once), schedules it for
tomorrow 10:00 local time, cancels it, builds it again and sends it now: the
one person in the segment gets it once. A viewer sees the same page with no
buttons. Refused POSTs and hostile input are in tests/test_campaigns_admin.py.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select

from hub import message_templates
from hub.db import utcnow
from tests.browser import Browser
from tests.support.admin import AdminEnv, admin_env  # noqa: F401
from tests.support.admin_browser import sign_in
from tests.test_campaigns_admin import seed_campaign_world
from workflows import campaigns, ticks
from workflows.models import Campaign

pytestmark = pytest.mark.both_databases

PROMO_HTML = ('<div id="hello" style="color: rgb(200, 0, 0); font-size: 22px">Здравствуйте, {{ contact.first_name }}!'
              '</div><p>Ваш промокод: <b id="code">{{ promo.code }}</b></p>')


@pytest.fixture
def env(admin_env: AdminEnv, mailbox: Any) -> AdminEnv:  # noqa: F811
    """The admin with email going to the test's SMTP server, a Moscow segment and a letter with a promo code."""
    _box, port = mailbox
    admin_env.settings = replace(admin_env.settings, extra={
        **admin_env.settings.extra, "smtp_url": f"smtp://127.0.0.1:{port}",
        "mail_from": "Цветочная лавка <shop@example.ru>", "public_url": "https://hub.example.ru"})
    admin_env.app.config["HUB_SETTINGS"] = admin_env.settings
    seed_campaign_world(admin_env)
    with admin_env.engine.begin() as conn:
        message_templates.save(conn, admin_env.settings, message_templates.Template(
            name="spring_promo", channel="email", subject="Весна, {{ contact.first_name }}: скидка для вас",
            text="Здравствуйте, {{ contact.first_name }}! Ваш промокод: {{ promo.code }}", html=PROMO_HTML))
    return admin_env


def fill_campaign(browser: Browser, title: str) -> None:
    browser.wait(lambda: browser.exists("#campaign-form"), "the campaign form")
    browser.fill("#title", title)
    browser.select("#segment", "moscow")
    browser.select("#channel", "email")
    browser.select("#template", "spring_promo")
    browser.click("#promo")
    browser.fill("#discount", "15")
    browser.fill("#valid", "14")
    browser.fill("#prefix", "SPRING")
    browser.click("#save-campaign")
    browser.wait(lambda: browser.exists("#campaign-facts"), "the campaign's page")


def confirm_text(browser: Browser) -> str:
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser.driver, 30).until(ec.alert_is_present(), "no confirmation dialog opened")
    alert = browser.driver.switch_to.alert
    question = str(alert.text)
    alert.accept()
    return question


def status_of(env: AdminEnv, title: str) -> tuple[str, str, dt.datetime | None]:
    with env.engine.connect() as conn:
        row = conn.execute(select(Campaign.name, Campaign.status, Campaign.scheduled_at)
                           .where(Campaign.title == title).order_by(Campaign.id.desc())).first()
    assert row is not None
    return row.name, row.status, row.scheduled_at


def test_a_marketer_builds_tests_schedules_cancels_and_sends_a_campaign(env: AdminEnv, live: str, browser: Browser,
                                                                         mailbox: Any) -> None:
    box, _port = mailbox
    sign_in(browser, live, "marketer", "/campaigns/")
    browser.click("#new-campaign")
    fill_campaign(browser, "Весенняя распродажа")
    assert browser.text("#members") == "1" and browser.text("#will-receive") == "1"
    assert "Анна Иванова" in browser.text("#sample") and "anna@example.ru" in browser.text("#sample")
    assert "нет согласия на такие сообщения" in browser.text("#held-back")
    assert "0 из них — после окончания тихих часов" in browser.text("#quiet-hours")

    # The letter in its sandboxed frame: its inline styles apply there, whatever the admin's own policy.
    frame = browser.find("#letter-frame")
    assert frame.get_attribute("sandbox") == "allow-popups"
    browser.driver.switch_to.frame(frame)
    try:
        browser.wait(lambda: browser.exists("#hello"), "the letter in its frame")
        assert "Здравствуйте, Анна!" in browser.text("#hello")
        assert browser.script("return getComputedStyle(document.getElementById('hello')).color") == "rgb(200, 0, 0)"
        assert browser.script("return getComputedStyle(document.getElementById('hello')).fontSize") == "22px"
        assert browser.text("#code").strip()  # a sample code: the real one is issued when the letter goes
    finally:
        browser.driver.switch_to.default_content()

    # A test to the marketer's own address (shown, not typed): it arrives once.
    assert browser.find("#test-to").get_attribute("value") == "marketer@shop.example"
    assert not browser.exists('#test-form input[name="to"]')
    browser.click("#send-test")
    browser.wait_text(".flash.ok", "marketer@shop.example")
    assert [r.rcpt_tos for r in box.received] == [["marketer@shop.example"]]
    assert "Весна, Анна" in str(box.received[0].message["Subject"])

    # Tomorrow 10:00 in Hub's time zone (the form offers it; the zone is named on the page).
    zone = env.settings.tz
    tomorrow = dt.datetime.now(zone).date() + dt.timedelta(days=1)
    assert browser.find("#schedule-date").get_attribute("value") == tomorrow.isoformat()
    assert browser.find("#schedule-time").get_attribute("value") == "10:00"
    assert "Europe/Moscow" in browser.text("#schedule-zone")
    browser.click("#schedule-campaign")
    browser.wait_text(".flash.ok", "10:00")
    name, status, at = status_of(env, "Весенняя распродажа")
    assert status == "scheduled"
    assert at is not None and at.replace(tzinfo=dt.timezone.utc) == dt.datetime.combine(
        tomorrow, dt.time(10, 0), tzinfo=zone).astimezone(dt.timezone.utc)
    assert tomorrow.strftime("%d.%m.%Y") in browser.text("#scheduled-at")

    browser.click("#cancel-campaign")
    assert "Отменить рассылку?" in confirm_text(browser)
    browser.wait(lambda: browser.exists('.campaign-status[data-status="cancelled"]'), "the campaign cancelled")
    assert not browser.exists("#send-now")
    assert status_of(env, "Весенняя распродажа")[1] == "cancelled"

    # Built again and sent now: the confirmation names the number; the one person gets it once.
    browser.open(live + "/campaigns/new")
    fill_campaign(browser, "Весенняя распродажа, снова")
    browser.click("#send-now")
    assert confirm_text(browser) == "Отправить 1 получателю?"
    browser.wait_text(".flash.ok", "Рассылка запускается…")
    # Without Redis the button itself sends: no `hub scheduler` or `hub worker` runs in this test.
    browser.wait(lambda: browser.exists('.campaign-status[data-status="done"]'), "the campaign sent")
    assert 'data-status="sent"' in browser.find("#message-counts").get_attribute("innerHTML")
    again, status, _at = status_of(env, "Весенняя распродажа, снова")
    assert status == "done"
    assert Counter(r for got in box.received[1:] for r in got.rcpt_tos) == Counter({"anna@example.ru": 1})
    with pytest.raises(campaigns.CampaignError):  # a second start is refused and sends nobody twice
        campaigns.send_now(env.engine, env.settings, again, actor="test")
    ticks.advance_due(env.engine, env.settings, now=utcnow())
    to = Counter(r for got in box.received[1:] for r in got.rcpt_tos)
    assert to == Counter({"anna@example.ru": 1})
    browser.open(f"{live}/campaigns/{again}")
    browser.wait_text("#message-counts", "1")
    assert f"/messages/?origin=campaign_{again}" in browser.find("#message-log").get_attribute("href")
    browser.wait(lambda: browser.find("#daily-chart").get_attribute("data-rendered") == "30", "the daily chart drawn")
    assert name != again


def test_a_viewer_sees_the_campaign_and_no_buttons(env: AdminEnv, live: str, browser: Browser) -> None:
    made = campaigns.create(env.engine, env.settings, campaigns.Draft(
        title="Весна для всех", segment="moscow", channel="email", template="spring_letter"), actor="admin:m")
    sign_in(browser, live, "viewer", "/campaigns/")
    browser.wait_text("#campaigns", "Весна для всех")
    assert not browser.exists("#new-campaign")
    browser.click(f'#campaigns tr[data-name="{made["name"]}"] a')
    browser.wait(lambda: browser.exists("#will-receive"), "the preview")
    assert browser.text("#will-receive") == "1"
    for button in ("#send-now", "#schedule-campaign", "#cancel-campaign", "#edit-campaign", "#send-test"):
        assert not browser.exists(button), button
    assert browser.exists("#letter-frame")
