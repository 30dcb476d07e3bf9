"""The public pages speak the shop's language: Russian by default, English when HUB_LANGUAGE is en.

Customers reach these pages from the shop's letters and website, so they are
in the shop's language (HUB_LANGUAGE), whatever language an admin chose for
themselves. Hostile or broken input still gets a clear page in that language,
never a traceback; the letters themselves are the shop's own words and are
not translated.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from hub import links
from hub.admin import create_app
from hub.config import load_settings
from plugins.gdpr import limits
from tests.conftest import HubDB
from tests.support.public import csrf_of, letters, person, signup_on_hub_form, state

CYRILLIC = re.compile("[а-яё]", re.IGNORECASE)


@pytest.fixture(autouse=True)
def fresh_limits() -> Any:
    limits.reset()
    yield
    limits.reset()


@pytest.fixture
def english(hub_db: HubDB, site: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The same public pages for a shop that chose English."""
    monkeypatch.setenv("HUB_LANGUAGE", "en")
    hub_db.settings = load_settings()
    return create_app(hub_db.settings)


def words(page: Any) -> str:
    """What the visitor reads: the page without its tags, the company's own name left out."""
    return re.sub(r"<[^>]+>", " ", page.get_data(as_text=True)).replace("Цветочная лавка", "")


def unsubscribe_path(db: HubDB, contact_id: int) -> str:
    return urlsplit(links.unsubscribe_url(db.settings, contact_id)).path


def test_the_unsubscribe_page_is_russian_by_default(hub_db: HubDB, site: Any) -> None:
    cid = person(hub_db, email_="anna@example.ru", granted=("email/marketing",))
    client = site.test_client()
    page = client.get(unsubscribe_path(hub_db, cid))
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and '<html lang="ru">' in body
    assert "Отписаться от рассылки?" in body and "«Акции и специальные предложения» (Email)" in body
    done = client.post(unsubscribe_path(hub_db, cid), data={"csrf_token": csrf_of(page)})
    assert "Готово: мы больше не будем присылать вам" in done.get_data(as_text=True)
    bad = client.get("/u/not-a-token")
    assert bad.status_code == 404 and "Ссылка не работает" in bad.get_data(as_text=True)


def test_the_unsubscribe_page_is_english_when_the_shop_chose_english(hub_db: HubDB, english: Any) -> None:
    cid = person(hub_db, email_="anna@example.ru", granted=("email/marketing",))
    client = english.test_client()
    # One link for both: a link is signed with its time, and the form's token is made for the link it is on.
    path = unsubscribe_path(hub_db, cid)
    page = client.get(path)
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and '<html lang="en">' in body
    assert "Unsubscribe from the mailing?" in body and "“Offers and special deals” (Email)" in body
    assert not CYRILLIC.search(words(page)), words(page)
    done = client.post(path, data={"csrf_token": csrf_of(page)})
    assert done.status_code == 200 and "Done: we will no longer send you" in done.get_data(as_text=True)
    assert state(hub_db, cid)[("email", "marketing")] == "withdrawn"
    assert "Choose which mailings to receive" in done.get_data(as_text=True)

    # A broken, forged or hostile link: a page in English saying what is wrong, never a traceback.
    for path in ("/u/not-a-token", "/u/", "/u/%3Cscript%3Ealert(1)%3C%2Fscript%3E", "/confirm/x.y.z"):
        bad = client.get(path)
        assert bad.status_code == 404 and "The link does not work" in bad.get_data(as_text=True), path
        assert "<script>" not in bad.get_data(as_text=True) and not CYRILLIC.search(words(bad))
    forged = client.post(unsubscribe_path(hub_db, cid), data={"csrf_token": "x" * 64})
    assert forged.status_code == 400 and "The form is out of date" in forged.get_data(as_text=True)

    preferences = client.get(urlsplit(links.preferences_url(hub_db.settings, cid)).path)
    assert preferences.status_code == 200 and "Mailing settings" in preferences.get_data(as_text=True)
    assert "Offers and special deals" in preferences.get_data(as_text=True)
    assert not CYRILLIC.search(words(preferences)), words(preferences)


def test_the_signup_pages_are_russian_by_default(hub_db: HubDB, site: Any, mailbox) -> None:
    client = site.test_client()
    form = client.get("/consent/form")
    assert "Подписка на рассылку" in form.get_data(as_text=True)
    assert "Электронная почта" in form.get_data(as_text=True) and "Подписаться" in form.get_data(as_text=True)
    wrong = signup_on_hub_form(client, email="anna@", topic="email/news")
    assert wrong.status_code == 400
    assert "Укажите адрес электронной почты полностью" in wrong.get_data(as_text=True)
    sent = signup_on_hub_form(client, email="olga@example.ru", topic="email/news")
    assert sent.status_code == 200 and "Проверьте почту" in sent.get_data(as_text=True)


def test_the_signup_pages_are_english_when_the_shop_chose_english(hub_db: HubDB, english: Any, mailbox) -> None:
    box, _ = mailbox
    client = english.test_client()
    form = client.get("/consent/form")
    body = form.get_data(as_text=True)
    assert form.status_code == 200 and '<html lang="en">' in body
    assert "Subscribe to the mailing" in body and "Email address" in body and "News" in body
    assert not CYRILLIC.search(words(form)), words(form)

    # Mistakes and hostile input: each named in English on the form, which keeps what was typed, escaped.
    wrong = signup_on_hub_form(client, email="<b>anna@</b>", phone="not a phone", topic="email/fax")
    text = wrong.get_data(as_text=True)
    assert wrong.status_code == 400
    assert "Enter the whole email address, for example anna@example.ru." in text
    assert "The phone number could not be read" in text and "<b>anna@</b>" not in text
    assert not CYRILLIC.search(words(wrong)), words(wrong)
    untrusted = client.post("/consent/form", data={"email": "anna@example.ru", "topic": "email/news"},
                            headers={"Origin": "https://evil.example"})
    assert untrusted.status_code == 403 and "Form not accepted" in untrusted.get_data(as_text=True)
    missing = client.get("/consent/form?form=nope")
    assert missing.status_code == 404 and "Form not found" in missing.get_data(as_text=True)

    sent = signup_on_hub_form(client, email="olga@example.ru", topic="email/news")
    assert sent.status_code == 200 and "Check your email" in sent.get_data(as_text=True)
    assert "We have sent an email to olga@example.ru." in sent.get_data(as_text=True)
    # The confirmation letter is the shop's own words, as written in its template: not translated.
    (letter,) = letters(box)
    assert str(letter["Subject"]).startswith("Подтвердите подписку")
