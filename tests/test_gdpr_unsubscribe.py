"""Leaving and choosing, from a received email: one-click unsubscribe (RFC 8058) and the preference centre.

Marketing mail goes through a real SMTP server on loopback; the links are
taken from the letter's List-Unsubscribe header and body, and posted the way
a mail provider or a browser posts them.
"""

from __future__ import annotations

import email
import email.policy
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

import plugins.gdpr
import plugins.mailing
from hub import consent, links, messaging, sync
from hub.admin import create_app
from hub.config import load_settings
from hub.models import Message
from hub.records import ContactRecord
from plugins.gdpr import erasure
from tests.conftest import HubDB
from tests.support.public import PUBLIC, csrf_of, state
from tests.support.smtp import Mailbox


@pytest.fixture
def site(hub_db: HubDB, plugin_manager: Any, mailbox: tuple[Mailbox, int], monkeypatch: pytest.MonkeyPatch) -> Any:
    _, port = mailbox
    for name, value in {"HUB_SMTP_URL": f"smtp://127.0.0.1:{port}",
                        "HUB_MAIL_FROM": "Цветочная лавка <shop@example.ru>",
                        "HUB_PUBLIC_URL": PUBLIC, "HUB_COMPANY_NAME": "Цветочная лавка",
                        "HUB_COMPANY_EMAIL": "privacy@example.ru"}.items():
        monkeypatch.setenv(name, value)
    plugin_manager.register(plugins.mailing, name="mailing")
    plugin_manager.register(plugins.gdpr, name="gdpr")
    hub_db.settings = load_settings()
    return create_app(hub_db.settings)


def customer(db: HubDB, address: str = "anna@example.ru", phone: str | None = None, *,
             granted: tuple[str, ...] = ("email/marketing",)) -> int:
    with db.engine.begin() as conn:
        cid = sync.write_contacts(conn, [ContactRecord(source="t", first_name="Анна", emails=[address],
                                                       phones=[phone] if phone else [])],
                                  db.settings, sync.Counts()).contact_ids[0]
        for topic in granted:
            channel, purpose = topic.split("/")
            consent.record(conn, cid, channel, purpose, "granted", source="paper form")
    return cid


def mail_welcome(db: HubDB, box: Mailbox, contact_id: int, key: str) -> email.message.EmailMessage:
    before = len(box.received)
    row = messaging.send(db.engine, db.settings, contact_id=contact_id, channel="email", template="welcome_email",
                         key=key, purpose="marketing")
    assert row["status"] == "sent", row["error"]
    (got,) = box.received[before:]
    return email.message_from_bytes(got.data, policy=email.policy.default)  # type: ignore[return-value]


def events(db: HubDB, contact_id: int) -> list[dict[str, Any]]:
    with db.engine.connect() as conn:
        return consent.history(conn, contact_id)


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_unsubscribe_from_a_received_email(hub_db: HubDB, site: Any, mailbox, encoding: str) -> None:
    box, _ = mailbox
    cid = customer(hub_db)
    letter = mail_welcome(hub_db, box, cid, "welcome:1")
    https = letter["List-Unsubscribe"].split(",")[0].strip(" <>")
    assert letter["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" and https.startswith(f"{PUBLIC}/u/")

    provider = site.test_client(use_cookies=False)  # a mail provider: no cookies, no page, no CSRF token
    answer = provider.post(urlsplit(https).path, data={"List-Unsubscribe": "One-Click"},
                           content_type="multipart/form-data" if encoding == "multipart" else None,
                           headers={"User-Agent": "Mail.Ru Unsubscribe"}, environ_base={"REMOTE_ADDR": "198.51.100.9"})
    assert answer.status_code == 200 and "Set-Cookie" not in answer.headers and answer.location is None
    assert state(hub_db, cid) == {("email", "marketing"): "withdrawn"}
    last = events(hub_db, cid)[-1]
    assert last["source"] == "unsubscribe_link"
    assert (last["evidence"]["ip"], last["evidence"]["user_agent"], last["evidence"]["method"]) == (
        "198.51.100.9", "Mail.Ru Unsubscribe", "one-click")
    assert set(last["evidence"]) >= {"ip", "user_agent", "form_id", "text_version"}

    # Providers may post twice: nothing more is recorded.
    assert provider.post(urlsplit(https).path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert len(events(hub_db, cid)) == 2

    # The next marketing letter is refused at send time.
    row = messaging.send(hub_db.engine, hub_db.settings, contact_id=cid, channel="email", template="welcome_email",
                         key="welcome:2", purpose="marketing")
    assert row["status"] == "suppressed" and "withdrawn" in row["error"]
    assert len(box.received) == 1


def test_the_unsubscribe_link_opened_in_a_browser_asks_first(hub_db: HubDB, site: Any, mailbox) -> None:
    box, _ = mailbox
    cid = customer(hub_db)
    letter = mail_welcome(hub_db, box, cid, "welcome:1")
    text = letter.get_body(("plain",)).get_content()
    path = urlsplit(re.search(rf"{re.escape(PUBLIC)}/u/\S+", text).group(0)).path  # type: ignore[union-attr]
    browser = site.test_client()
    page = browser.get(path)
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and body.count("<button") == 1 and "«Акции и специальные предложения»" in body
    assert 'name="viewport"' in body and '<html lang="ru">' in body
    assert state(hub_db, cid) == {("email", "marketing"): "granted"}  # looking changes nothing

    forged = site.test_client().post(path, data={"csrf_token": "x" * 64})
    assert forged.status_code == 400 and state(hub_db, cid)[("email", "marketing")] == "granted"

    done = browser.post(path, data={"csrf_token": csrf_of(page)})
    assert done.status_code == 200 and "Вы отписаны" in done.get_data(as_text=True)
    assert state(hub_db, cid) == {("email", "marketing"): "withdrawn"}
    assert events(hub_db, cid)[-1]["evidence"]["method"] == "page"
    assert "Вы уже отписаны" in browser.get(path).get_data(as_text=True)


def test_a_bad_unsubscribe_link_gets_a_page_not_a_traceback(hub_db: HubDB, site: Any) -> None:
    client = site.test_client()
    page = client.get("/u/not-a-token")
    assert page.status_code == 404 and "Ссылка не работает" in page.get_data(as_text=True)
    assert client.post("/u/not-a-token", data={"List-Unsubscribe": "One-Click"}).status_code == 404
    preferences_token = urlsplit(links.preferences_url(hub_db.settings, 1)).path.rsplit("/", 1)[1]
    assert client.get(f"/u/{preferences_token}").status_code == 404  # a token made for another page


def test_the_preference_centre_changes_only_what_the_person_changed(hub_db: HubDB, site: Any, mailbox) -> None:
    box, _ = mailbox
    cid = customer(hub_db, phone="+7 916 123-45-67", granted=("email/marketing", "email/processing"))
    letter = mail_welcome(hub_db, box, cid, "welcome:1")
    html = letter.get_body(("html",)).get_content()
    path = urlsplit(re.search(rf'{re.escape(PUBLIC)}/preferences/[^"\s]+', html).group(0)).path  # type: ignore[union-attr]

    browser = site.test_client()
    page = browser.get(path)
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    assert body.count('type="checkbox"') == 9  # email, SMS, calls × marketing, surveys, news
    assert re.search(r'value="email/marketing" checked', body) and not re.search(r'value="sms/marketing" checked', body)
    assert "privacy@example.ru" in body  # how to withdraw consent to processing

    # The link came by email and proves only the mailbox: the SMS topic ticked here is not granted
    # (SMS consent is given where the phone is proven); the email topics change as ticked.
    saved = browser.post(path, data={"csrf_token": csrf_of(page), "topic": ["email/news", "sms/marketing"],
                                     "action": "save"}, headers={"User-Agent": "Phone Browser"})
    assert "Настройки сохранены" in saved.get_data(as_text=True)
    assert state(hub_db, cid) == {("email", "marketing"): "withdrawn", ("email", "news"): "granted",
                                  ("email", "processing"): "granted"}
    changed = events(hub_db, cid)[-2:]
    assert {e["source"] for e in changed} == {"preferences"}
    assert all(e["evidence"]["form_id"] == "preferences" and e["evidence"]["user_agent"] == "Phone Browser"
               and e["evidence"]["text_version"] == "1" for e in changed)

    count = len(events(hub_db, cid))
    again = browser.post(path, data={"csrf_token": csrf_of(saved), "topic": ["email/news", "sms/marketing"]})
    assert "Изменений нет" in again.get_data(as_text=True) and len(events(hub_db, cid)) == count

    everything = browser.post(path, data={"csrf_token": csrf_of(again), "action": "unsubscribe_all"})
    assert "Вы отписаны от всех рассылок" in everything.get_data(as_text=True)
    assert state(hub_db, cid) == {("email", "marketing"): "withdrawn", ("email", "news"): "withdrawn",
                                  ("email", "processing"): "granted"}
    with hub_db.engine.connect() as conn:
        assert not consent.can_contact(conn, hub_db.settings, cid, "sms", "marketing").allowed


def test_the_preference_centre_refuses_forged_posts_and_bad_links(hub_db: HubDB, site: Any) -> None:
    cid = customer(hub_db)
    path = urlsplit(links.preferences_url(hub_db.settings, cid)).path
    forged = site.test_client().post(path, data={"action": "unsubscribe_all"})
    assert forged.status_code == 400 and state(hub_db, cid) == {("email", "marketing"): "granted"}
    assert site.test_client().get(path[:-3] + "abc").status_code == 404


def test_links_of_an_erased_person_say_they_no_longer_work(hub_db: HubDB, site: Any) -> None:
    cid = customer(hub_db)
    unsubscribe = urlsplit(links.unsubscribe_url(hub_db.settings, cid)).path
    preferences = urlsplit(links.preferences_url(hub_db.settings, cid)).path
    erasure.erase(hub_db.engine, hub_db.settings, cid)
    client = site.test_client()
    for path in (unsubscribe, preferences):
        page = client.get(path)
        assert page.status_code == 410 and "больше не действует" in page.get_data(as_text=True)
    assert client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert events(hub_db, cid) == []
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(Message)).first() is None
