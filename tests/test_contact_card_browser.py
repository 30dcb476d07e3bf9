"""The contact card in headless Chromium: a marketer finds a person and works on the card; a viewer only looks.

A marketer finds the person by name and patronymic, records a consent with
its evidence, adds a note, sees the person's messages and promo codes and the
link to their record in Bitrix24; a viewer sees the same card with no form;
an admin erases the person from the card.
"""

from __future__ import annotations

import pytest

import datetime as dt
from decimal import Decimal

from sqlalchemy import select

from hub import consent, contact_notes, credentials, sync
from hub.db import utcnow
from hub.models import ExternalRef, Message
from hub.records import ContactRecord
from tests.browser import Browser
from tests.support.admin import AdminEnv
from tests.support.admin_browser import sign_in
from workflows.models import PromoCode

pytestmark = pytest.mark.both_databases  # what a marketer sees must not depend on the database

PORTAL = "https://shop.bitrix24.ru"


def seed_ivan(env: AdminEnv) -> int:
    """Иван Петрович in Bitrix24 (the portal connected), with a letter sent and a promo code."""
    now = utcnow()
    with env.engine.begin() as conn:
        credentials.save(conn, "bitrix24", {"kind": "webhook", "url": f"{PORTAL}/rest/1/abc123/"},
                         env.settings.require_secret_key())
        sync.write_page(conn, [ContactRecord(source="bitrix24", external_id="202", first_name="Иван",
                                             last_name="Иванов", middle_name="Петрович",
                                             emails=["ivanov@mail.ru"], phones=["+7 903 111-22-33"])],
                        env.settings, sync.Counts())
        ivan = conn.execute(select(ExternalRef.contact_id).where(ExternalRef.external_id == "202")).scalar_one()
        conn.execute(Message.__table__.insert().values(
            idempotency_key="browser-card-1", contact_id=ivan, channel="email", template="reactivation_email",
            purpose="marketing", address="ivanov@mail.ru", subject="Мы скучаем", body_text="", status="sent",
            origin="reactivation_90d", created_at=now - dt.timedelta(days=1), updated_at=now))
        conn.execute(PromoCode.__table__.insert().values(
            code="BACK-7KX3QZ", prefix="BACK", discount=Decimal("15"), contact_id=ivan, created_at=now,
            expires_at=now + dt.timedelta(days=14)))
    return ivan


def test_a_marketer_works_on_the_card_and_a_viewer_only_sees_it(live: str, browser: Browser,
                                                               admin_env: AdminEnv) -> None:
    ivan = seed_ivan(admin_env)
    sign_in(browser, live, "marketer", "/contacts/")
    browser.fill("#q", "иван петрович")
    browser.click("form.search button")
    assert "1 контакт по запросу «иван петрович»" in browser.wait_text("#found-total", "по запросу")
    browser.click(f'#results a[href="/contacts/{ivan}"]')
    browser.wait(lambda: browser.exists("#staff-consent"), "the card with its forms")
    assert "Иванов Иван Петрович" in browser.text("#contact-name")

    # A consent the person gave by phone, with how they gave it.
    browser.select("#staff-consent select[name=channel]", "email")
    browser.select("#staff-consent select[name=purpose]", "marketing")
    browser.select("#staff-consent select[name=status]", "granted")
    browser.fill("#staff-consent input[name=note]", "по телефону 5 декабря")
    browser.click("#staff-consent button")
    assert "внёс marketer@shop.example" in browser.wait_text(".flash", "Записано")
    assert "по телефону 5 декабря" in browser.text("#consent-history")
    with admin_env.engine.connect() as conn:
        (event,) = consent.history(conn, ivan)
    assert event["evidence"]["note"] == "по телефону 5 декабря" and event["status"] == "granted"

    # A note, shown at once, signed.
    browser.fill("#add-note textarea[name=body]", "Просил перезвонить после праздников")
    browser.click("#add-note button")
    browser.wait_text(".flash", "Заметка добавлена")
    assert "Просил перезвонить после праздников" in browser.text("#note-list")
    assert "marketer@shop.example" in browser.text("#note-list")
    with admin_env.engine.connect() as conn:
        assert [n["body"] for n in contact_notes.for_contact(conn, ivan)] == ["Просил перезвонить после праздников"]

    # What the person got, and where they live in the CRM.
    assert "отправлено" in browser.text("#messages") and "reactivation_email" in browser.text("#messages")
    assert browser.find("#all-messages").get_attribute("href") == f"{live}/messages/?contact={ivan}"
    codes = browser.text("#promo-codes")
    assert "BACK-7KX3QZ" in codes and "15 %" in codes and "ещё нет: действует" in codes
    link = browser.find("#crm-links a.crm-link")
    assert link.get_attribute("href") == f"{PORTAL}/crm/contact/details/202/"
    assert link.get_attribute("target") == "_blank" and "noopener" in link.get_attribute("rel")
    assert not browser.exists("#card-erase") and not browser.exists("#card-export")

    # The promo code finds the person too.
    browser.open(live + "/contacts/?q=back-7kx3qz")
    assert browser.exists(f'#results a[href="/contacts/{ivan}"]')

    sign_in(browser, live, "viewer", f"/contacts/{ivan}")
    browser.wait(lambda: browser.exists("#identities"), "the card")
    assert "Просил перезвонить после праздников" in browser.text("#note-list")
    for form in ("#add-note", "#staff-consent", "#merge-into", "#card-erase", "#card-export", "form.unmerge"):
        assert not browser.exists(form), form


def test_an_admin_erases_the_person_from_the_card(live: str, browser: Browser, admin_env: AdminEnv) -> None:
    ivan = seed_ivan(admin_env)
    with admin_env.engine.begin() as conn:
        contact_notes.add(conn, ivan, "Любит синие куртки", author="marketer@shop.example")
    sign_in(browser, live, "admin", f"/contacts/{ivan}")
    browser.wait(lambda: browser.exists("#card-erase"), "the card's erase form")
    browser.fill("#card-erase input[name=confirm]", "ERASE")
    browser.click("#card-erase button")
    browser.accept_confirm()
    assert f"Контакт №{ivan} удалён" in browser.wait_text(".flash", "удалён")
    with admin_env.engine.connect() as conn:
        assert contact_notes.for_contact(conn, ivan) == []
