"""Issue 19's acceptance, end to end in headless Chromium, as a marketer who has never seen YAML.

The marketer builds "Moscow customers who bought twice or more and not in 60
days" with the rule builder, opens who is in it and downloads them as CSV and
XLSX; writes a letter with a personal promo code (from the variable picker)
and a button styled inline, sees it in the preview frame and sends a test to
themself; builds a campaign of that segment and that letter with a promo
code, reads who is held back and why, and schedules it for tomorrow 10:00
Moscow time. The time then comes without waiting: the scheduler's own entry
point is called as of tomorrow 10:01, twice. Every letter is then found in
the message log (through the campaign's link), at the SMTP server and on the
person's card, once each, each with a code of its own; nobody else got one.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections import Counter
from dataclasses import replace
from decimal import Decimal
from typing import Any

import openpyxl
import pytest
from sqlalchemy import select

from hub import consent, messaging, sync
from hub.db import utcnow
from hub.models import ExternalRef, Message
from hub.records import ContactRecord, OrderRecord
from tests.browser import Browser
from tests.support.admin import AdminEnv, admin_env  # noqa: F401
from tests.support.admin_browser import sign_in
from workflows import campaigns, ticks
from workflows.models import Campaign, PromoCode

pytestmark = pytest.mark.both_databases

SEGMENT = "moscow_twice_dormant"
TEMPLATE = "winter_promo"
CODE = re.compile(r"ZIMA-[A-Z0-9]+")
# name, city, email, days since each won order, marketing email consent, address suppressed
PEOPLE = {
    "maria": ("Мария", "Соколова", "Москва", "maria@example.ru", (300, 200, 90), True, False),
    "olga": ("Ольга", "Белова", "Москва", "olga@example.ru", (400, 75), True, False),
    "boris": ("Борис", "Носогласов", "Москва", "boris@example.ru", (200, 100), False, False),  # no consent
    "semyon": ("Семён", "Отписанный", "Москва", "semyon@example.ru", (210, 110), True, True),  # suppressed
    "oleg": ("Олег", "Орлов", "Москва", "oleg@example.ru", (100,), True, False),  # one order
    "dmitry": ("Дмитрий", "Свежий", "Москва", "dmitry@example.ru", (200, 10), True, False),  # bought lately
    "sveta": ("Светлана", "Невская", "Санкт-Петербург", "sveta@example.ru", (200, 100), True, False),  # elsewhere
}
IN_SEGMENT = ("anna", "maria", "olga", "boris", "semyon")
GET_IT = ("anna", "maria", "olga")
BUTTON = ('<p>Здравствуйте! Зима пришла, а с ней скидка для вас.</p>'
          '<p><a id="buy" href="https://shop.example/winter" style="background-color: #dd3333; color: #ffffff; '
          'padding: 12px 24px; border-radius: 6px">Выбрать подарок</a></p><p>Ваш промокод: <b id="code">')
RED = "rgb(221, 51, 51)"


def seed_base(env: AdminEnv) -> dict[str, int]:
    """Beside Anna (Москва, two orders, the last 120 days ago, consent): the right people and the decoys."""
    now = utcnow()
    records: list[Any] = []
    for key, (first, last, city, email, days, _agreed, _suppressed) in PEOPLE.items():
        records.append(ContactRecord(source="bitrix24", external_id=f"desk-{key}", first_name=first, last_name=last,
                                     city=city, emails=[email]))
        for n, ago in enumerate(days):
            records.append(OrderRecord(source="bitrix24", external_id=f"desk-{key}-{n}",
                                       contact_external_id=f"desk-{key}", amount=Decimal("2000"), status="won",
                                       closed_at=now - dt.timedelta(days=ago)))
    with env.engine.begin() as conn:
        sync.write_page(conn, records, env.settings, sync.Counts())
        ids = {"anna": env.ids["anna"]}
        for key in PEOPLE:
            ids[key] = conn.execute(select(ExternalRef.contact_id).where(
                ExternalRef.source == "bitrix24", ExternalRef.external_id == f"desk-{key}")).scalar_one()
        for key, (_f, _l, _c, email, _d, agreed, suppressed) in PEOPLE.items():
            if agreed:
                consent.record(conn, ids[key], "email", "marketing", "granted", source="site form",
                               settings=env.settings, evidence={"form": "подписка на сайте"})
            if suppressed:
                consent.suppress(conn, "email", email, reason="bounce", source="test",
                                 secret=env.settings.require_secret_key())
    return ids


@pytest.fixture
def env(admin_env: AdminEnv, mailbox: Any) -> AdminEnv:  # noqa: F811
    """The admin with email going to the test's SMTP server, over the seeded base."""
    _box, port = mailbox
    admin_env.settings = replace(admin_env.settings, extra={
        **admin_env.settings.extra, "smtp_url": f"smtp://127.0.0.1:{port}",
        "mail_from": "Цветочная лавка <shop@example.ru>", "public_url": "https://hub.example.ru"})
    admin_env.app.config["HUB_SETTINGS"] = admin_env.settings
    admin_env.ids.update(seed_base(admin_env))
    return admin_env


def node(path: str) -> str:
    return f'#segment-builder [data-path="{path}"]'


def pick_field(browser: Browser, path: str, search: str, pattern: str) -> None:
    browser.click(f"{node(path)} .field-button")
    browser.fill(f"{node(path)} .field-search", search)
    browser.click(f'{node(path)} .field-option[data-pattern="{pattern}"]')
    browser.wait(lambda: browser.find(f"{node(path)} .field-button").get_attribute("data-field") == pattern,
                 f"{pattern} to be chosen at {path}")


def pick_operator(browser: Browser, path: str, op: str) -> None:
    browser.select(f"{node(path)} select.op", op)
    browser.wait(lambda: browser.find(f"{node(path)} select.op").get_attribute("value") == op, f"{op} at {path}")


def in_frame(browser: Browser, frame_css: str, script: str) -> Any:
    browser.driver.switch_to.frame(browser.find(frame_css))
    try:
        return browser.script(script)
    finally:
        browser.driver.switch_to.default_content()


def confirm_text(browser: Browser) -> str:
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser.driver, 30).until(ec.alert_is_present(), "no confirmation dialog opened")
    alert = browser.driver.switch_to.alert
    question = str(alert.text)
    alert.accept()
    return question


def console_errors(browser: Browser) -> list[str]:
    """What the pages wrote to the console as errors (a broken script, a blocked inline style)."""
    try:
        entries = browser.driver.get_log("browser")
    except Exception:  # noqa: BLE001 - a driver without the log: nothing to report
        return []
    return [e["message"] for e in entries if e.get("level") == "SEVERE" and "favicon" not in e["message"]]


def build_segment(browser: Browser, live: str, env: AdminEnv) -> None:
    """The rule from the builder's menus, suggestions and typed values; never the text form."""
    sign_in(browser, live, "marketer", "/segments/")
    browser.open(live + "/segments/new")
    browser.wait(lambda: browser.find("#check-result").get_attribute("data-state") == "ok", "the example to check")
    browser.fill("#builder-name", SEGMENT)
    browser.fill("#builder-title", "Москва: два заказа и больше, но не за 60 дней")

    pick_field(browser, "rule.all[0]", "город", "contact.city")
    pick_operator(browser, "rule.all[0]", "eq")
    browser.fill(f"{node('rule.all[0]')} .value-input", "")
    browser.type(f"{node('rule.all[0]')} .value-input", "Мос")
    suggestion = f'{node("rule.all[0]")} .suggestion[data-value="Москва"]'
    browser.wait(lambda: browser.exists(suggestion), "Москва among the suggestions")
    browser.click(suggestion)
    browser.wait(lambda: browser.find(f"{node('rule.all[0]')} .value-input").get_attribute("value") == "Москва",
                 "Москва chosen")

    pick_field(browser, "rule.all[1]", "заказ", "orders.count")
    pick_operator(browser, "rule.all[1]", "gte")
    browser.fill(f"{node('rule.all[1]')} .value-input", "2")

    browser.click('#segment-builder [data-path="rule"] > .node-body > .builder-add .add-condition')
    browser.wait(lambda: browser.exists(node("rule.all[2]")), "a third condition")
    pick_field(browser, "rule.all[2]", "последний", "orders.last_at")
    pick_operator(browser, "rule.all[2]", "before")
    browser.wait(lambda: browser.exists(f"{node('rule.all[2]')} .value-input"), "the value box for «до»")
    browser.fill(f"{node('rule.all[2]')} .value-input", "-60d")
    browser.wait_text(f"{node('rule.all[2]')} .value-hint", "60 дней назад")
    assert "5 контактов подходят сейчас" in browser.wait_text("#live-count", "5 контактов")

    browser.click("#segment-form button[type=submit]")
    browser.wait_text(".flash", f"Сегмент {SEGMENT} сохранён")
    assert browser.url.endswith(f"/segments/{SEGMENT}")


def see_and_export_members(browser: Browser, live: str, env: AdminEnv) -> None:
    ids = env.ids
    want = {ids[k] for k in IN_SEGMENT}
    browser.click("#segment-members-link")
    browser.wait(lambda: browser.url.endswith(f"/segments/{SEGMENT}/members"), "the members page")
    # Saving the segment counted its members (in-process the refresh runs at once): no refresh by hand.
    assert browser.text("#members-total") == "5 контактов"
    shown = {int(r.get_attribute("data-contact")) for r in browser.find_all("#members tbody tr[data-contact]")}
    assert shown == want
    assert "Соколова" in browser.text("#members") and "Свежий" not in browser.text("#members")

    for old in browser.downloads.iterdir():  # the browser is shared by both databases' runs
        old.unlink()
    stamp = utcnow().astimezone(env.settings.tz).strftime("%Y-%m-%d")
    browser.click("#export-csv")
    body = browser.downloaded(f"segment-{SEGMENT}-{stamp}.csv").read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(body), delimiter=";"))
    assert rows[0][0] == "Номер контакта" and len(rows) == 1 + len(want)
    assert {int(r[0]) for r in rows[1:]} == want
    assert any("Соколова" in cell for r in rows[1:] for cell in r)
    browser.click("#export-xlsx")
    sheet = openpyxl.load_workbook(browser.downloaded(f"segment-{SEGMENT}-{stamp}.xlsx")).worksheets[0]
    table = list(sheet.iter_rows(values_only=True))
    assert table[0][0] == "Номер контакта" and len(table) == 1 + len(want)
    assert {int(str(r[0])) for r in table[1:]} == want


def write_letter(browser: Browser, live: str, box: Any) -> None:
    """A new email template: subject and HTML typed, the first name and the promo code from the picker."""
    browser.open(live + "/templates/new")
    browser.wait(lambda: browser.exists("#template-form"), "the template editor")
    browser.fill("#name", TEMPLATE)
    browser.select("#channel", "email")
    browser.click("#subject")
    browser.type("#subject", "Зимний подарок, ")
    browser.click('button.variable[data-insert="{{ contact.first_name }}"]')
    assert browser.find("#subject").get_attribute("value") == "Зимний подарок, {{ contact.first_name }}"
    browser.click("#html")
    browser.type("#html", BUTTON)
    promo_button = 'button.variable[data-insert="{{ promo.code }}"]'
    for summary in browser.find_all("details.variable-group summary"):
        if "промо" in summary.text.lower():
            summary.click()
    browser.wait(lambda: browser.find(promo_button).is_displayed(), "the promo variables in the picker")
    browser.click(promo_button)
    browser.type("#html", "</b></p>")
    assert browser.find("#html").get_attribute("value").endswith('Ваш промокод: <b id="code">{{ promo.code }}</b></p>')

    frame = "#preview-html"
    browser.wait(lambda: not browser.find(frame).get_attribute("hidden")
                 and "/templates/frame/" in (browser.find(frame).get_attribute("src") or ""), "the preview frame")
    assert browser.find(frame).get_attribute("sandbox") == "allow-popups"
    browser.wait(lambda: in_frame(browser, frame, "var b = document.getElementById('code');"
                                                  "return b ? b.textContent : ''"), "the sample code in the letter")
    assert in_frame(browser, frame, "return getComputedStyle(document.getElementById('buy')).backgroundColor") == RED
    assert in_frame(browser, frame, "return getComputedStyle(document.getElementById('buy')).paddingLeft") == "24px"
    assert "Выбрать подарок" in browser.text("#preview-text")

    assert browser.find("#test-to").get_attribute("value") == "marketer@shop.example"
    browser.click("#test-send-button")
    browser.wait_text("#test-result", "Тестовое письмо отправлено на marketer@shop.example.")
    assert [r.rcpt_tos for r in box.received] == [["marketer@shop.example"]]
    assert str(box.received[0].message["Subject"]).startswith("[Тест] Зимний подарок, ")

    browser.click("#save-button")
    browser.wait_text(".flash", f"Шаблон {TEMPLATE} сохранён")


def create_and_schedule(browser: Browser, live: str, env: AdminEnv) -> str:
    browser.open(live + "/campaigns/")
    browser.click("#new-campaign")
    browser.wait(lambda: browser.exists("#campaign-form"), "the campaign form")
    browser.fill("#title", "Зимний подарок москвичам")
    browser.select("#segment", SEGMENT)
    browser.select("#channel", "email")
    browser.select("#template", TEMPLATE)
    assert browser.find("#purpose").get_attribute("value") == "marketing"
    browser.click("#promo")
    browser.fill("#discount", "20")
    browser.fill("#valid", "10")
    browser.fill("#prefix", "ZIMA")
    browser.click("#save-campaign")
    browser.wait(lambda: browser.exists("#campaign-facts"), "the campaign's page")
    assert "20" in browser.text("#campaign-facts") and "ZIMA" not in browser.text("#campaign-facts")

    assert browser.text("#members") == "5" and browser.text("#will-receive") == "3"
    held = {r.get_attribute("data-reason"): r for r in browser.find_all("#held-back tr[data-reason]")}
    counts = {k: r.find_element("css selector", "td.num").text for k, r in held.items()}
    assert counts["no_consent"] == "1" and counts["suppressed"] == "1"
    assert counts["holdout"] == "0" and counts["no_address"] == "0" and counts["capped"] == "0"
    assert "нет согласия на такие сообщения" in held["no_consent"].text
    assert "отписались, адрес не принимает письма" in held["suppressed"].text
    sample = browser.text("#sample")
    for key in GET_IT:
        assert browser.exists(f'#sample tr[data-contact="{env.ids[key]}"]'), key
    assert "Носогласов" not in sample and "Отписанный" not in sample

    zone = env.settings.tz
    tomorrow = dt.datetime.now(zone).date() + dt.timedelta(days=1)
    assert browser.find("#schedule-date").get_attribute("value") == tomorrow.isoformat()
    assert browser.find("#schedule-time").get_attribute("value") == "10:00"
    assert "Europe/Moscow" in browser.text("#schedule-zone")
    browser.click("#schedule-campaign")
    browser.wait_text(".flash.ok", "10:00")
    assert tomorrow.strftime("%d.%m.%Y") in browser.text("#scheduled-at")
    with env.engine.connect() as conn:
        row = conn.execute(select(Campaign.name, Campaign.status, Campaign.scheduled_at)
                           .where(Campaign.title == "Зимний подарок москвичам")).one()
    assert row.status == "scheduled"
    assert row.scheduled_at.replace(tzinfo=dt.timezone.utc) == dt.datetime.combine(
        tomorrow, dt.time(10, 0), tzinfo=zone).astimezone(dt.timezone.utc)
    return str(row.name)


def time_comes(env: AdminEnv, name: str) -> None:
    """Tomorrow 10:01 Moscow time, twice: the scheduler's start, the runner and the outbox as `hub scheduler` does."""
    zone = env.settings.tz
    at = dt.datetime.combine(dt.datetime.now(zone).date() + dt.timedelta(days=1), dt.time(10, 1), tzinfo=zone)
    assert campaigns.start_due(env.engine, env.settings, now=at - dt.timedelta(minutes=2)) == []  # 09:59: not yet
    for attempt in range(2):
        started = campaigns.start_due(env.engine, env.settings, now=at)
        assert started == ([name] if attempt == 0 else [])
        ticks.advance_due(env.engine, env.settings, now=at)
        # The messages are due at 10:01 tomorrow: the outbox is asked as of then, as the tick at that time would.
        messaging.dispatch(env.engine, env.settings, now=at)


def test_issue_19_as_a_marketer_who_never_saw_yaml(env: AdminEnv, live: str, browser: Browser,
                                                  mailbox: Any) -> None:
    box, _port = mailbox
    ids = env.ids
    console_errors(browser)  # what earlier tests left in the log is read away

    build_segment(browser, live, env)
    see_and_export_members(browser, live, env)
    write_letter(browser, live, box)
    name = create_and_schedule(browser, live, env)
    assert console_errors(browser) == []
    assert len(box.received) == 1  # only the test so far

    time_comes(env, name)

    # At the SMTP server: each of the three once, nobody else.
    letters = box.received[1:]
    to = Counter(r for got in letters for r in got.rcpt_tos)
    assert to == Counter({"anna@example.ru": 1, "maria@example.ru": 1, "olga@example.ru": 1})
    codes_at_smtp: dict[str, str] = {}
    for got in letters:
        message = got.message
        assert "[Тест]" not in str(message["Subject"])
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        found = CODE.findall(body.get_content())
        assert len(found) == 1, body.get_content()
        codes_at_smtp[got.rcpt_tos[0]] = found[0]
    assert len(set(codes_at_smtp.values())) == 3

    # The campaign's page links to its letters in the message log.
    browser.open(f"{live}/campaigns/{name}")
    browser.wait_text("#message-counts", "3")
    assert browser.text('#message-counts tr[data-status="sent"] td.num') == "3"
    browser.click("#message-log")
    browser.wait(lambda: f"origin={campaigns.workflow_name(name)}" in browser.url, "the log filtered to the campaign")
    rows = browser.find_all("#messages-log tbody tr[data-id]")
    sent_rows = {int(r.get_attribute("data-id")): r.text for r in rows if r.get_attribute("data-status") == "sent"}
    assert len(sent_rows) == 3
    held_statuses = [r.get_attribute("data-status") for r in rows if r.get_attribute("data-status") != "sent"]
    assert len(held_statuses) <= 2 and "sent" not in held_statuses

    with env.engine.connect() as conn:
        outbox = conn.execute(select(Message.id, Message.contact_id, Message.address, Message.status)
                              .where(Message.origin == campaigns.workflow_name(name))).all()
        issued = {r.contact_id: r.code for r in conn.execute(select(PromoCode.contact_id, PromoCode.code))}
    per_person = Counter(m.contact_id for m in outbox)
    assert set(per_person.values()) == {1}
    assert {m.contact_id for m in outbox if m.status == "sent"} == {ids[k] for k in GET_IT}
    assert not {m.contact_id for m in outbox} - {ids[k] for k in IN_SEGMENT}  # no decoy outside the segment

    for message_id in sent_rows:
        browser.open(f"{live}/messages/{message_id}")
        browser.wait_text("h1", f"Сообщение #{message_id}")
        address = next(m.address for m in outbox if m.id == message_id)
        contact_id = next(m.contact_id for m in outbox if m.id == message_id)
        (code,) = CODE.findall(browser.text("#text"))
        assert code == codes_at_smtp[address] == issued[contact_id]
        frame_code = in_frame(browser, "iframe#letter", "return document.getElementById('code').textContent")
        assert frame_code == code
        browser.open(f"{live}/contacts/{contact_id}")
        browser.wait(lambda: browser.exists("#promo-codes"), "the card's promo codes")
        assert browser.exists(f'#promo-codes tr[data-code="{code}"][data-state="active"]')
        assert "20 %" in browser.text(f'#promo-codes tr[data-code="{code}"]')

    # Those held back (no consent, a suppressed address) are in the segment but got no letter;
    # the decoys outside it have neither a letter nor a code.
    for key in ("boris", "semyon"):
        assert [m.status for m in outbox if m.contact_id == ids[key]] in ([], ["suppressed"]), key
    for key in ("oleg", "dmitry", "sveta"):
        assert ids[key] not in issued, key
        browser.open(f"{live}/contacts/{ids[key]}")
        browser.wait(lambda: browser.exists("#promo-codes"), "the card's promo codes")
        assert "ZIMA-" not in browser.text("#promo-codes"), key
    assert console_errors(browser) == []
