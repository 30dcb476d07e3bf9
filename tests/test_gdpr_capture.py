"""Consent capture as a website visitor meets it: a form, a real confirmation email, the click.

The confirmation goes through a real SMTP server on loopback (aiosmtpd) and
the link is taken from the received letter; the public pages are driven
with Flask's test client, cookies and all.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import itsdangerous.timed
import pytest
from sqlalchemy import select

from hub import consent, identity, links, messaging, sync
from hub.admin import create_app
from hub.models import AuditEntry, Contact, Message
from hub.records import ContactRecord
from plugins.gdpr import capture, erasure
from plugins.gdpr.models import ConsentRequest
from tests.conftest import HubDB
from tests.support.public import (API_KEY, SHOP_SITE, confirm_path, csrf_of, history, holder, letters,
                                  signup_on_hub_form, state)

pytestmark = pytest.mark.both_databases  # pending signups and their tokens (ON CONFLICT)


def test_a_form_signup_is_pending_until_the_emailed_link_is_clicked(hub_db: HubDB, site: Any, mailbox) -> None:
    box, _ = mailbox
    client = site.test_client()
    sent = signup_on_hub_form(client, email="Anna@Example.RU", first_name="Анна", phone="8 (916) 123-45-67",
                              topic=["email/marketing", "email/news", "email/processing"])
    assert sent.status_code == 200 and "Проверьте почту" in sent.get_data(as_text=True)

    (letter,) = letters(box)
    assert letter["To"].addresses[0].addr_spec == "anna@example.ru"
    assert "Подтвердите подписку" in letter["Subject"]
    assert "List-Unsubscribe" not in letter  # transactional: no unsubscribe header
    with hub_db.engine.connect() as conn:
        (req,) = conn.execute(select(ConsentRequest)).all()
    # Until the click nobody in the base holds the address: the signup is kept apart, pending.
    assert holder(hub_db, "anna@example.ru") is None
    assert req.topics == ["email/marketing", "email/news", "email/processing"] and req.confirmed_at is None

    # Following the link shows a page with the button; it grants nothing by itself (mail scanners open links).
    path = confirm_path(letter)
    page = client.get(path)
    assert page.status_code == 200 and "Подтвердить подписку" in page.get_data(as_text=True)
    assert "«Новости» (Email)" in page.get_data(as_text=True)
    assert "согласие на обработку персональных данных" in page.get_data(as_text=True)
    assert holder(hub_db, "anna@example.ru") is None

    done = client.post(path, data={"csrf_token": csrf_of(page)}, headers={"User-Agent": "Mozilla/5.0 (iPhone) Test"},
                       environ_base={"REMOTE_ADDR": "203.0.113.7"})
    assert done.status_code == 200 and "Подписка подтверждена" in done.get_data(as_text=True)
    contact_id = holder(hub_db, "anna@example.ru")
    assert contact_id is not None
    assert set(state(hub_db, contact_id).values()) == {"granted"}
    with hub_db.engine.connect() as conn:  # the typed name fills the new contact; the unproven phone joins nothing
        assert conn.execute(select(Contact.first_name).where(Contact.id == contact_id)).scalar() == "Анна"
        assert identity.find_contact(conn, "phone", "+79161234567") is None
    with hub_db.engine.connect() as conn:
        assert consent.can_contact(conn, hub_db.settings, contact_id, "email", "marketing").allowed
    grant = [e for e in history(hub_db, contact_id) if e["status"] == "granted"][0]
    assert grant["source"] == "form"
    ev = grant["evidence"]
    assert (ev["ip"], ev["user_agent"], ev["form_id"], ev["text_version"]) == (
        "203.0.113.7", "Mozilla/5.0 (iPhone) Test", "default", "2024-05")
    assert ev["signup"]["user_agent"] == "Mozilla/5.0 (Android) Test" and ev["signup"]["address"] == "anna@example.ru"
    assert ev["signup"]["text_version"] == "2024-05" and ev["signup"]["at"] is not None


def test_a_confirmation_link_used_twice_grants_once_and_says_so(hub_db: HubDB, site: Any, mailbox) -> None:
    box, _ = mailbox
    client = site.test_client()
    signup_on_hub_form(client, email="oleg@example.ru", topic=["email/news"])
    path = confirm_path(letters(box)[0])
    token = csrf_of(client.get(path))
    assert client.post(path, data={"csrf_token": token}).status_code == 200
    again = client.post(path, data={"csrf_token": token})
    assert again.status_code == 200 and "уже подтверждена" in again.get_data(as_text=True)
    assert "уже подтверждена" in client.get(path).get_data(as_text=True)
    assert [e["status"] for e in history(hub_db, holder(hub_db, "oleg@example.ru"))] == ["granted"]


def test_an_expired_or_broken_confirmation_link_gets_a_friendly_page(hub_db: HubDB, site: Any) -> None:
    client = site.test_client()
    with hub_db.engine.begin() as conn:
        cid = sync.write_contacts(conn, [ContactRecord(source="t", emails=["late@example.ru"])], hub_db.settings,
                                  sync.Counts()).contact_ids[0]
    eight_days_ago = int(itsdangerous.timed.time.time()) - 8 * 24 * 3600
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp", lambda self: eight_days_ago)
        old = urlsplit(links.confirm_url(hub_db.settings, cid, "email", "news")).path
    for method in (client.get, client.post):
        page = method(old)
        assert page.status_code == 410 and "Срок действия ссылки истёк" in page.get_data(as_text=True)
    broken = client.get(old[:-5])
    assert broken.status_code == 404 and "Ссылка не работает" in broken.get_data(as_text=True)
    assert "Traceback" not in broken.get_data(as_text=True)
    assert state(hub_db, cid) == {}


def test_a_confirmation_link_sent_by_hand_works_once(hub_db: HubDB, site: Any, mailbox) -> None:
    box, _ = mailbox
    client = site.test_client()
    with hub_db.engine.begin() as conn:
        cid = sync.write_contacts(conn, [ContactRecord(source="t", emails=["paper@example.ru"])], hub_db.settings,
                                  sync.Counts()).contact_ids[0]
    sent = messaging.send(hub_db.engine, hub_db.settings, contact_id=cid, channel="email",
                          template="double_opt_in_email", key="doi:paper", purpose="transactional",
                          context={"confirm_purpose": "surveys"})
    assert sent["status"] == "sent"
    path = confirm_path(letters(box)[0])
    token = csrf_of(client.get(path))
    assert "Подписка подтверждена" in client.post(path, data={"csrf_token": token}).get_data(as_text=True)
    assert "уже подтверждена" in client.post(path, data={"csrf_token": token}).get_data(as_text=True)
    assert [(e["status"], e["source"]) for e in history(hub_db, cid)] == [("granted", "link")]


def test_the_confirm_button_needs_the_pages_csrf_token(hub_db: HubDB, site: Any, mailbox) -> None:
    box, _ = mailbox
    client = site.test_client()
    signup_on_hub_form(client, email="csrf@example.ru", topic=["email/news"])
    path = confirm_path(letters(box)[0])
    stranger = site.test_client()  # another browser: no cookie from our page
    refused = stranger.post(path, data={"csrf_token": "0" * 64})
    assert refused.status_code == 400 and "Форма устарела" in refused.get_data(as_text=True)
    with hub_db.engine.connect() as conn:
        (req,) = conn.execute(select(ConsentRequest)).all()
    assert req.confirmed_at is None and holder(hub_db, "csrf@example.ru") is None


def test_a_signup_never_downgrades_a_granted_topic(hub_db: HubDB, site: Any, mailbox) -> None:
    box, _ = mailbox
    with hub_db.engine.begin() as conn:
        cid = sync.write_contacts(conn, [ContactRecord(source="t", emails=["fan@example.ru"])], hub_db.settings,
                                  sync.Counts()).contact_ids[0]
        consent.record(conn, cid, "email", "marketing", "granted", source="paper form")
    client = site.test_client()
    signup_on_hub_form(client, email="fan@example.ru", topic=["email/marketing", "email/news"])
    assert state(hub_db, cid) == {("email", "marketing"): "granted"}  # nothing changes before the click
    with hub_db.engine.connect() as conn:
        (req,) = conn.execute(select(ConsentRequest)).all()
    assert req.topics == ["email/news"]
    assert len(letters(box)) == 1
    # Nothing left to confirm: no letter, same page.
    again = signup_on_hub_form(client, email="fan@example.ru", topic=["email/marketing"])
    assert "Проверьте почту" in again.get_data(as_text=True) and len(letters(box)) == 1


def test_bad_form_input_is_shown_back_with_what_to_fix(hub_db: HubDB, site: Any) -> None:
    client = site.test_client()
    page = signup_on_hub_form(client, email="anna@", phone="звонить вечером", topic=[])
    text = page.get_data(as_text=True)
    assert page.status_code == 400
    assert "Укажите адрес электронной почты полностью" in text and "Выберите хотя бы одну рассылку" in text
    assert "номер телефона" in text and 'value="anna@"' in text
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(ConsentRequest)).first() is None


def test_a_website_form_is_accepted_only_from_listed_origins(hub_db: HubDB, site: Any, mailbox) -> None:
    box, _ = mailbox
    client = site.test_client()
    data = {"email": "site@example.ru", "topic": "email/news"}
    evil = client.post("/consent/form", data=data, headers={"Origin": "https://evil.example.com"})
    assert evil.status_code == 403 and "form_origins" in evil.get_data(as_text=True)
    # Hub's own form without its token (open too long, cookie gone) is not "a site we do not trust".
    for headers in ({}, {"Origin": "http://localhost"}):
        nothing = client.post("/consent/form", data=data, headers=headers)
        page = nothing.get_data(as_text=True)
        assert nothing.status_code == 403
        assert "Форма устарела или пришла без защитного кода. Обновите страницу" in page
        assert "не доверяем" not in page and "form_origins" not in page
    ours = client.post("/consent/form", data=data, headers={"Origin": SHOP_SITE})
    assert ours.status_code == 200
    assert len(letters(box)) == 1


def test_the_json_api_needs_its_key_and_records_the_visitors_evidence(hub_db: HubDB, site: Any, mailbox) -> None:
    box, _ = mailbox
    client = site.test_client()
    body = {"email": "api@example.ru", "topics": ["email/marketing", "email/news"], "phone": "+7 916 555-00-11",
            "form_id": "default", "text_version": "v7", "ip": "198.51.100.4", "user_agent": "Visitor Browser"}
    wrong = client.post("/api/consent", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and API_KEY not in wrong.get_data(as_text=True)
    assert client.post("/api/consent", json=body).status_code == 401
    ok = client.post("/api/consent", json=body, headers={"Authorization": f"Bearer {API_KEY}"})
    assert ok.status_code == 202
    answer = ok.get_json()
    assert answer["status"] == "pending" and answer["topics"] == ["email/marketing", "email/news"]
    assert answer["contact_id"] is None  # nobody joins the base before the click
    with hub_db.engine.connect() as conn:
        (req,) = conn.execute(select(ConsentRequest)).all()
    assert (req.source, req.evidence["ip"], req.evidence["user_agent"], req.evidence["text_version"]) == (
        "api", "198.51.100.4", "Visitor Browser", "v7")
    assert len(letters(box)) == 1

    bad = client.post("/api/consent", json={"email": "x", "topics": ["fax/news"]},
                      headers={"X-Api-Key": API_KEY})
    assert bad.status_code == 400
    fields = {p["field"] for p in bad.get_json()["problems"]}
    assert fields == {"email", "topics"} and "fax" in bad.get_json()["error"]
    not_json = client.post("/api/consent", data="email=a", headers={"X-Api-Key": API_KEY})
    assert not_json.status_code == 400 and "JSON object" in not_json.get_json()["error"]


def test_the_json_api_answers_in_english_json_whatever_the_shops_language(hub_db: HubDB, site: Any) -> None:
    client = site.test_client()
    key = {"X-Api-Key": API_KEY}
    bad = client.post("/api/consent", json={"email": "anna@", "topics": ["evil/x", "email/nope"]}, headers=key)
    assert bad.status_code == 400 and bad.is_json
    answer = bad.get_json()
    assert all(ord(c) < 0x400 for c in answer["error"]), answer  # no Cyrillic: the topics' messages are English
    assert "evil/x" in answer["error"] and {p["field"] for p in answer["problems"]} == {"email", "topics"}
    big = client.post("/api/consent", data="x" * (site.config["MAX_CONTENT_LENGTH"] + 1),
                      headers={**key, "Content-Type": "application/json"})
    assert big.status_code == 413 and big.is_json and "too large" in big.get_json()["error"]
    wrong_method = client.get("/api/consent")
    assert wrong_method.status_code == 405 and wrong_method.is_json and "POST" in wrong_method.get_json()["error"]
    # The public pages stay in the shop's language.
    page = client.post("/consent/form", data={"email": "x" * (site.config["MAX_CONTENT_LENGTH"] + 1)})
    assert page.status_code == 413 and "Форма слишком большая" in page.get_data(as_text=True)


def test_the_json_api_is_off_without_a_key(hub_db: HubDB, site: Any) -> None:
    extra = {k: v for k, v in hub_db.settings.extra.items() if k != "gdpr_api_key"}
    client = create_app(replace(hub_db.settings, extra=extra)).test_client()
    answer = client.post("/api/consent", json={"email": "a@example.ru", "topics": ["news"]},
                         headers={"Authorization": f"Bearer {API_KEY}"})
    assert answer.status_code == 403 and "api_key" in answer.get_json()["error"]


def test_an_erased_person_cannot_sign_up_again(hub_db: HubDB, site: Any, mailbox) -> None:
    box, _ = mailbox
    with hub_db.engine.begin() as conn:
        cid = sync.write_contacts(conn, [ContactRecord(source="t", emails=["gone@example.ru"])], hub_db.settings,
                                  sync.Counts()).contact_ids[0]
    erasure.erase(hub_db.engine, hub_db.settings, cid)
    client = site.test_client()
    page = signup_on_hub_form(client, email="gone@example.ru", topic=["email/news"])
    assert page.status_code == 200 and "Проверьте почту" in page.get_data(as_text=True)  # tells strangers nothing
    api = client.post("/api/consent", json={"email": "GONE@example.ru", "topics": ["news"]},
                      headers={"X-Api-Key": API_KEY})
    assert api.status_code == 409 and api.get_json()["status"] == "refused"
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(ConsentRequest)).first() is None
        assert conn.execute(select(Message)).first() is None
    assert letters(box) == []


def test_signups_and_confirmations_are_in_the_audit_log_without_personal_data(hub_db: HubDB, site: Any,
                                                                              mailbox) -> None:
    box, _ = mailbox
    client = site.test_client()
    signup_on_hub_form(client, email="audit@example.ru", topic=["email/news"])
    path = confirm_path(letters(box)[0])
    client.post(path, data={"csrf_token": csrf_of(client.get(path))})
    with hub_db.engine.connect() as conn:
        rows = conn.execute(select(AuditEntry.action, AuditEntry.actor, AuditEntry.details)).all()
    assert [(a, actor) for a, actor, _ in rows] == [("consent.granted", "form")]
    assert "audit@example.ru" not in repr(rows)


def test_read_signup_names_every_mistake(hub_db: HubDB) -> None:
    settings = replace(hub_db.settings, extra={**hub_db.settings.extra,
                                               "gdpr": {"forms": {"shop": {"topics": ["email/news"]}}}})
    with pytest.raises(capture.SignupError) as caught:
        capture.read_signup(settings, {"email": "a@b.ru", "topics": ["email/marketing"], "form_id": "shop"},
                            source="api", ip=None, user_agent=None)
    assert caught.value.problems == [("topics", "email/marketing is not offered by form 'shop'")]
    with pytest.raises(capture.SignupError) as caught:
        capture.read_signup(settings, {"email": "a@b.ru", "topics": "news", "form_id": "nope"},
                            source="api", ip=None, user_agent=None)
    assert caught.value.problems[0][0] == "form_id" and "default, shop" in caught.value.problems[0][1]
    ok = capture.read_signup(settings, {"email": " A@B.ru ", "topics": "news", "form_id": "shop"},
                             source="api", ip=None, user_agent=None)
    assert ok.email == "a@b.ru" and [str(t) for t in ok.topics] == ["email/news"]
